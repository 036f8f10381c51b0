// The ipc channel URI: `ipc:<bus>[?term-length=<size>][|prefault=true|false]` (prefault: default true), sizes in
// bytes or with a k/m/g suffix (powers of 1024), parameters separated by '|' as in Aeron URIs.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"

namespace tensorpool::transport::ipc {

struct IpcChannel {
    std::string bus;
    std::size_t term_bytes = 0;  // 0: the transport's default
    // The publisher maps its log with MAP_POPULATE (every page allocated and mapped at creation: a few milliseconds
    // for the default 8 MiB), so that its first lap takes no page fault per page on the hot path.
    bool prefault = true;
};

Result<IpcChannel> parse_ipc_channel(std::string_view channel);

}  // namespace tensorpool::transport::ipc
