#include "tensorpool/shm/region_uri.hpp"

#include <cstdio>

namespace tensorpool::shm {
namespace {

constexpr std::string_view kPathParam = "path";
constexpr std::string_view kHugepagesParam = "require_hugepages";

// Error messages quote user input; keep the quoted part short so the rule itself is never truncated away.
int quoted_len(std::string_view s) { return static_cast<int>(s.size() < 72 ? s.size() : 72); }

}  // namespace

Status check_uri_path(std::string_view path, const char* what) {
    if (path.empty()) {
        return Error::format(Errc::invalid_argument, "%s is empty; expected an absolute path starting with '/'",
                             what);
    }
    if (path.front() != '/') {
        return Error::format(Errc::invalid_argument,
                             "%s '%.*s' is not absolute; expected a path starting with '/' (W-15.22-3)", what,
                             quoted_len(path), path.data());
    }
    for (std::size_t i = 0; i < path.size(); ++i) {
        const auto c = static_cast<unsigned char>(path[i]);
        // abs-path = 1*( VCHAR except "?" and "|" and SP ); VCHAR is 0x21..0x7E.
        if (c == '?' || c == '|' || c == ' ' || c < 0x21 || c > 0x7E) {
            return Error::format(Errc::invalid_argument,
                                 "%s '%.*s' has byte 0x%02x at offset %zu; expected printable ASCII without "
                                 "'?', '|' or space (URI grammar, A-32)",
                                 what, quoted_len(path), path.data(), c, i);
        }
    }
    return {};
}

Result<RegionUri> parse_region_uri(std::string_view uri) {
    if (uri.substr(0, kRegionUriPrefix.size()) != kRegionUriPrefix) {
        const auto colon = uri.find(':');
        const std::string_view scheme = colon == std::string_view::npos ? uri : uri.substr(0, colon);
        return Error::format(Errc::unsupported,
                             "region URI '%.*s': scheme '%.*s' is not supported; expected 'shm:file?path=<absolute "
                             "path>' (W-15.22-1)",
                             quoted_len(uri), uri.data(), quoted_len(scheme), scheme.data());
    }

    RegionUri out;
    bool seen_path = false;
    bool seen_hugepages = false;
    std::string_view rest = uri.substr(kRegionUriPrefix.size());
    std::size_t index = 0;
    // Parameters are separated by '|' (W-15.22-2). Splitting first means a '|' can never end up in a path.
    while (true) {
        const auto bar = rest.find('|');
        const std::string_view param = rest.substr(0, bar);
        const auto eq = param.find('=');
        if (eq == std::string_view::npos || eq == 0) {
            return Error::format(Errc::malformed,
                                 "region URI '%.*s': parameter %zu '%.*s' is not name=value; expected "
                                 "'path=<absolute path>' or 'require_hugepages=true|false'",
                                 quoted_len(uri), uri.data(), index + 1, quoted_len(param), param.data());
        }
        const std::string_view name = param.substr(0, eq);
        const std::string_view value = param.substr(eq + 1);
        if (value.empty()) {
            return Error::format(Errc::malformed, "region URI '%.*s': parameter '%.*s' has an empty value (A-32)",
                                 quoted_len(uri), uri.data(), quoted_len(name), name.data());
        }
        if (index == 0 && name == kHugepagesParam) {
            return Error::format(Errc::malformed,
                                 "region URI '%.*s': first parameter is '%.*s'; expected 'path' first (ABNF, A-32)",
                                 quoted_len(uri), uri.data(), quoted_len(name), name.data());
        }
        if (name == kPathParam) {
            if (seen_path) {
                return Error::format(Errc::malformed, "region URI '%.*s': duplicate parameter 'path' (A-32)",
                                     quoted_len(uri), uri.data());
            }
            if (auto s = check_uri_path(value, "region URI path"); !s) return s.error();
            out.path = std::string(value);
            seen_path = true;
        } else if (name == kHugepagesParam) {
            if (seen_hugepages) {
                return Error::format(Errc::malformed,
                                     "region URI '%.*s': duplicate parameter 'require_hugepages' (A-32)",
                                     quoted_len(uri), uri.data());
            }
            if (value == "true") {
                out.require_hugepages = true;
            } else if (value == "false") {
                out.require_hugepages = false;
            } else {
                return Error::format(Errc::malformed,
                                     "region URI '%.*s': require_hugepages='%.*s'; expected the literal 'true' or "
                                     "'false' (W-15.22-14)",
                                     quoted_len(uri), uri.data(), quoted_len(value), value.data());
            }
            seen_hugepages = true;
        } else {
            return Error::format(Errc::unsupported,
                                 "region URI '%.*s': unknown parameter '%.*s'; only 'path' and 'require_hugepages' "
                                 "exist (W-15.22-7)",
                                 quoted_len(uri), uri.data(), quoted_len(name), name.data());
        }
        if (bar == std::string_view::npos) break;
        rest = rest.substr(bar + 1);
        ++index;
    }
    if (!seen_path) {
        return Error::format(Errc::malformed,
                             "region URI '%.*s': 'path' is missing; expected 'shm:file?path=<absolute path>' "
                             "(W-15.22-3)",
                             quoted_len(uri), uri.data());
    }
    return out;
}

Result<std::string> format_region_uri(const RegionUri& uri) {
    if (auto s = check_uri_path(uri.path, "region path"); !s) return s.error();
    std::string out;
    out.reserve(kRegionUriPrefix.size() + 5 + uri.path.size() + 24);
    out += kRegionUriPrefix;
    out += "path=";
    out += uri.path;
    out += uri.require_hugepages ? "|require_hugepages=true" : "|require_hugepages=false";
    return out;
}

}  // namespace tensorpool::shm
