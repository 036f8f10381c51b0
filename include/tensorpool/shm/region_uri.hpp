// Region URIs: `shm:file?path=<abs-path>[|require_hugepages=true|false]` (WIRE_SPEC §7.1, W-15.22-*).
//
// The parser accepts exactly the ABNF and nothing looser: the `shm:file` scheme only, `path` first and
// absolute, at most one `require_hugepages` with the literal `true` or `false`, no unknown, duplicate or empty
// parameters, and no `?`, `|`, space or non-printable byte in the path. Anything else is rejected with an
// error naming the offending part, so an announce with a bad URI is refused before any file is touched.
#pragma once

#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"

namespace tensorpool::shm {

struct RegionUri {
    std::string path;                // absolute POSIX path, exactly as announced
    bool require_hugepages = false;  // W-15.22-5: defaults to false

    bool operator==(const RegionUri&) const = default;
};

inline constexpr std::string_view kRegionUriPrefix = "shm:file?";

// Parses a region URI. Every rejection says which rule failed (scheme, parameter, path, bool).
Result<RegionUri> parse_region_uri(std::string_view uri);

// Formats the canonical form the C reference writes: `shm:file?path=<path>|require_hugepages=<bool>`.
// The path must satisfy the same rules the parser enforces, so format → parse always round-trips.
Result<std::string> format_region_uri(const RegionUri& uri);

// Checks a path against the URI grammar's abs-path rule plus the POSIX leading `/`. `what` names the
// value in the error ("path", "base directory", ...).
Status check_uri_path(std::string_view path, const char* what);

}  // namespace tensorpool::shm
