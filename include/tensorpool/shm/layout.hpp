// The canonical directory layout producers create regions in (WIRE_SPEC §2.5, W-15.21a-3..7):
//
//     <base>/tensorpool-<user>/<namespace>/<stream_id>/<epoch>/{header.ring,<pool_id>.pool}
//
// Only the side that creates regions uses this. Consumers never build paths (W-15.21a-9): they open exactly the
// absolute path they were announced, through safe_open.hpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"

namespace tensorpool::shm {

inline constexpr std::string_view kDefaultShmBaseDir = "/dev/shm";
inline constexpr std::string_view kHeaderRingFileName = "header.ring";
inline constexpr std::size_t kMaxNameComponent = 64;

// Turns any user name into one safe path component (W-15.21a-5): bytes outside [A-Za-z0-9._-] become '_', every
// ".." becomes "__" (so the component can never climb), a lone "." becomes "_", and an empty result becomes
// `fallback` (itself sanitised, "_" as a last resort). Longer than kMaxNameComponent is cut.
std::string sanitize_user_name(std::string_view raw, std::string_view fallback = "_");

// The effective user's name from geteuid()/getpwuid_r() (W-15.21a-4), sanitised. A uid with no passwd entry
// becomes "uid<N>", which the spec allows as "an equivalent identifier".
Result<std::string> effective_user_name();

// Namespaces are configured, not derived (W-15.21a-6), so a bad one is an error rather than silently rewritten:
// 1..64 bytes of [A-Za-z0-9._-], not "." and containing no "..".
Status validate_namespace(std::string_view ns);

struct CanonicalLayout {
    std::string base_dir;   // absolute, e.g. "/dev/shm" (kDefaultShmBaseDir)
    std::string user;       // already sanitised (sanitize_user_name / effective_user_name)
    std::string ns;         // validated (validate_namespace)
    std::uint32_t stream_id = 0;
    std::uint64_t epoch = 0;

    // Checks every part: base absolute and URI-safe, user a safe component, namespace valid.
    Status validate() const;

    std::string user_dir() const;       // <base>/tensorpool-<user>
    std::string epoch_dir() const;      // <base>/tensorpool-<user>/<ns>/<stream_id>/<epoch>
    std::string header_ring_path() const;              // <epoch_dir>/header.ring
    std::string pool_path(std::uint16_t pool_id) const;  // <epoch_dir>/<pool_id>.pool
};

// Builds a validated layout for the effective user. The base directory is canonicalised with realpath() so that
// the announced paths contain no symlink (consumers refuse any symlink component, safe_open.hpp).
Result<CanonicalLayout> make_canonical_layout(std::string_view base_dir, std::string_view ns,
                                              std::uint32_t stream_id, std::uint64_t epoch);

}  // namespace tensorpool::shm
