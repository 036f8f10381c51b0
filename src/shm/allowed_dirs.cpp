#include "tensorpool/shm/allowed_dirs.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace tensorpool::shm {

Result<AllowedDirs> AllowedDirs::create(std::span<const std::string> dirs) {
    if (dirs.empty()) {
        return Error(Errc::invalid_argument, "no allowed base directory given; expected at least one (W-15.21a-2)");
    }
    AllowedDirs out;
    for (const std::string& dir : dirs) {
        if (dir.empty() || dir.front() != '/') {
            return Error::format(Errc::invalid_argument, "allowed base directory '%s' is not absolute",
                                 dir.c_str());
        }
        char resolved[PATH_MAX];
        if (::realpath(dir.c_str(), resolved) == nullptr) {
            return Error::format(Errc::not_found, "allowed base directory '%s': realpath failed: %s", dir.c_str(),
                                 std::strerror(errno));
        }
        struct stat st {};
        if (::stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
            return Error::format(Errc::invalid_argument, "allowed base directory '%s' (canonical '%s') is not a "
                                 "directory", dir.c_str(), resolved);
        }
        out.canonical_.emplace_back(resolved);
    }
    return out;
}

Result<AllowedDirs> AllowedDirs::create(std::initializer_list<std::string_view> dirs) {
    std::vector<std::string> v(dirs.begin(), dirs.end());
    return create(std::span<const std::string>(v));
}

const std::string* AllowedDirs::containing(std::string_view canonical_path) const noexcept {
    for (const std::string& base : canonical_) {
        // realpath("/") is "/", the only canonical path ending in '/'; everything else needs base + "/".
        const std::size_t prefix = base == "/" ? 1 : base.size() + 1;
        if (canonical_path.size() <= prefix) continue;  // equal to the base, or shorter: not strictly inside
        if (canonical_path.compare(0, base.size(), base) != 0) continue;
        if (base != "/" && canonical_path[base.size()] != '/') continue;  // "/dev/shm2" vs "/dev/shm"
        return &base;
    }
    return nullptr;
}

}  // namespace tensorpool::shm
