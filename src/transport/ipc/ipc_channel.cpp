#include "ipc_channel.hpp"

#include <charconv>

#include "ipc_files.hpp"

namespace tensorpool::transport::ipc {

namespace {

Result<std::size_t> parse_size(std::string_view channel, std::string_view v) {
    std::size_t n = 0;
    const char* end = v.data() + v.size();
    auto r = std::from_chars(v.data(), end, n);
    std::size_t mult = 1;
    if (r.ec == std::errc() && r.ptr + 1 == end) {
        switch (*r.ptr) {
            case 'k': case 'K': mult = std::size_t{1} << 10; break;
            case 'm': case 'M': mult = std::size_t{1} << 20; break;
            case 'g': case 'G': mult = std::size_t{1} << 30; break;
            default: mult = 0;
        }
    } else if (r.ec != std::errc() || r.ptr != end) {
        mult = 0;
    }
    if (mult == 0 || v.empty()) {
        return Error::format(Errc::invalid_argument, "channel '%.*s': term-length '%.*s' is not a size (e.g. 8m)",
                             static_cast<int>(channel.size()), channel.data(), static_cast<int>(v.size()), v.data());
    }
    return n * mult;
}

}  // namespace

Result<IpcChannel> parse_ipc_channel(std::string_view channel) {
    constexpr std::string_view kScheme = "ipc:";
    auto fail = [&](const char* why) {
        return Error::format(Errc::invalid_argument, "channel '%.*s': %s (expected ipc:<bus>[?term-length=<size>])",
                             static_cast<int>(channel.size()), channel.data(), why);
    };
    if (channel.substr(0, kScheme.size()) != kScheme) return fail("not an ipc channel");
    std::string_view rest = channel.substr(kScheme.size());
    const auto q = rest.find('?');
    IpcChannel out;
    out.bus = std::string(rest.substr(0, q));
    if (Status s = validate_bus_name(out.bus); !s) return fail("the bus name must be 1..64 characters of [A-Za-z0-9._-]");
    if (q == std::string_view::npos) return out;
    std::string_view params = rest.substr(q + 1);
    bool seen_term = false, seen_prefault = false;
    while (true) {
        const auto bar = params.find('|');
        const std::string_view kv = params.substr(0, bar);
        const auto eq = kv.find('=');
        if (eq == std::string_view::npos || eq == 0 || eq + 1 == kv.size()) return fail("parameters must be key=value");
        const std::string_view key = kv.substr(0, eq), value = kv.substr(eq + 1);
        if (key == "term-length" && !seen_term) {
            auto n = parse_size(channel, value);
            if (!n) return n.error();
            out.term_bytes = *n;
            seen_term = true;
        } else if (key == "prefault" && !seen_prefault && (value == "true" || value == "false")) {
            out.prefault = value == "true";
            seen_prefault = true;
        } else {
            return fail("unknown, duplicate or invalid parameter");
        }
        if (bar == std::string_view::npos) break;
        params = params.substr(bar + 1);
    }
    return out;
}

}  // namespace tensorpool::transport::ipc
