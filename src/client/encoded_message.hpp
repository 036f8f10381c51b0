// The bytes an encoder's finish() produced in `buf`, or nothing if encoding failed (an offer of nothing is then
// refused by the transport, so a message that could not be encoded is never sent half-made).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "tensorpool/common/result.hpp"

namespace tensorpool::client::detail {

inline std::span<const uint8_t> encoded(const uint8_t* buf, const Result<std::size_t>& n) noexcept {
    return n.ok() ? std::span<const uint8_t>(buf, *n) : std::span<const uint8_t>();
}

}  // namespace tensorpool::client::detail
