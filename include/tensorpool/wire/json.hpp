// Canonical JSON of any message of the six schemas: what `tensorpool decode` prints and the conformance
// vectors expect (tests/conformance/tools/README.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"

namespace tensorpool::wire {

// A framed message (8-byte header + body), dispatched on (schemaId, templateId). On error `out` is untouched.
Status decode_to_json(const uint8_t* buf, std::size_t len, std::string& out);

// A headerless message named `message`, decoded with its schema's block length and version.
Status decode_raw_to_json(std::string_view message, const uint8_t* buf, std::size_t len, std::string& out);

}  // namespace tensorpool::wire
