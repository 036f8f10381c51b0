#include "tensorpool/shm/safe_open.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tensorpool/shm/constants.hpp"

namespace tensorpool::shm {
namespace {

#ifndef O_NOFOLLOW
#error "symlink-safe open needs O_NOFOLLOW; without it regions must be refused (W-15.21a-17)"
#endif

// O_PATH lets us walk directories we may search but not list; fall back to O_RDONLY where it does not exist.
#ifdef O_PATH
constexpr int kDirWalkFlags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
#else
constexpr int kDirWalkFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
#endif

struct Component {
    std::string_view name;
    std::size_t number;  // 1-based position among the path's components, for messages
};

std::vector<Component> split_components(std::string_view path) {
    std::vector<Component> out;
    std::size_t pos = 0;
    std::size_t number = 0;
    while (pos < path.size()) {
        while (pos < path.size() && path[pos] == '/') ++pos;
        std::size_t end = path.find('/', pos);
        if (end == std::string_view::npos) end = path.size();
        if (end > pos) {
            ++number;
            std::string_view c = path.substr(pos, end - pos);
            if (c != ".") out.push_back({c, number});
        }
        pos = end;
    }
    return out;
}

// Explains why openat() of one component failed: a symlink gets its own clear message (the usual ELOOP or
// ENOTDIR from O_NOFOLLOW says nothing useful to an operator).
Error component_error(int dirfd, const Component& c, std::string_view path, int err, bool final) {
    const std::string name(c.name);
    struct stat st {};
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
        return Error::format(Errc::refused,
                             "symlink at component %zu ('%s') of '%.*s'; symlinks are refused at every component "
                             "(W-15.21a-16, A-34)",
                             c.number, name.c_str(), static_cast<int>(path.size()), path.data());
    }
    if (!final && err == ENOTDIR) {
        return Error::format(Errc::refused, "component %zu ('%s') of '%.*s' is a %s; expected a directory",
                             c.number, name.c_str(), static_cast<int>(path.size()), path.data(),
                             file_type_name(st.st_mode));
    }
    return Error::format(err == ENOENT ? Errc::not_found : Errc::io, "opening component %zu ('%s') of '%.*s': %s",
                         c.number, name.c_str(), static_cast<int>(path.size()), path.data(), std::strerror(err));
}

Result<UniqueFd> walk_directories(std::string_view path, const std::vector<Component>& comps, std::size_t count) {
    UniqueFd dir(::open("/", kDirWalkFlags));
    if (!dir.valid()) return Error::format(Errc::io, "opening '/': %s", std::strerror(errno));
    for (std::size_t i = 0; i < count; ++i) {
        const std::string name(comps[i].name);
        int fd = ::openat(dir.get(), name.c_str(), kDirWalkFlags);
        if (fd < 0) return component_error(dir.get(), comps[i], path, errno, false);
        dir.reset(fd);
    }
    return dir;
}

}  // namespace

const char* file_type_name(unsigned mode) noexcept {
    switch (mode & S_IFMT) {
        case S_IFREG: return "regular file";
        case S_IFDIR: return "directory";
        case S_IFCHR: return "character device";
        case S_IFBLK: return "block device";
        case S_IFIFO: return "FIFO";
        case S_IFSOCK: return "socket";
        case S_IFLNK: return "symlink";
        default: return "file of unknown type";
    }
}

Result<RegionUri> parse_uri_or_path(std::string_view uri_or_path) {
    if (!uri_or_path.empty() && uri_or_path.front() == '/') {
        if (auto s = check_uri_path(uri_or_path, "region path"); !s) return s.error();
        return RegionUri{std::string(uri_or_path), false};
    }
    // Something with a scheme goes to the URI parser, which names the unsupported scheme.
    const auto colon = uri_or_path.find(':');
    if (colon != std::string_view::npos && uri_or_path.find('/') > colon) return parse_region_uri(uri_or_path);
    return Error::format(Errc::invalid_argument,
                         "region '%.*s' is neither a shm:file URI nor an absolute path (W-15.21a-11)",
                         static_cast<int>(uri_or_path.size() > 100 ? 100 : uri_or_path.size()), uri_or_path.data());
}

Result<UniqueFd> open_directory_nofollow(std::string_view path) {
    if (path.empty() || path.front() != '/') {
        return Error::format(Errc::invalid_argument, "directory '%.*s' is not absolute",
                             static_cast<int>(path.size()), path.data());
    }
    const auto comps = split_components(path);
    return walk_directories(path, comps, comps.size());
}

Result<OpenedRegion> open_region(std::string_view uri_or_path, const AllowedDirs& allowed, Access access) {
    auto uri = parse_uri_or_path(uri_or_path);
    if (!uri) return uri.error();
    const std::string& path = uri->path;

    // 2. Canonicalise and check containment against the canonical bases (W-15.21a-12..14).
    char resolved[PATH_MAX];
    if (::realpath(path.c_str(), resolved) == nullptr) {
        const int err = errno;
        return Error::format(err == ENOENT ? Errc::not_found : Errc::io, "region '%s': realpath failed: %s",
                             path.c_str(), std::strerror(err));
    }
    const std::string canonical(resolved);
    const std::string* base = allowed.containing(canonical);
    if (base == nullptr) {
        std::string bases;
        for (const auto& b : allowed.canonical()) bases += (bases.empty() ? "" : ", ") + b;
        if (canonical == path) {
            return Error::format(Errc::refused, "region '%s' is outside every allowed directory (%s) (W-15.21a-14)",
                                 path.c_str(), bases.c_str());
        }
        return Error::format(Errc::refused, "region '%s' resolves to '%s', outside every allowed directory (%s) "
                             "(W-15.21a-14)", path.c_str(), canonical.c_str(), bases.c_str());
    }

    // 3. Only regular files; decided before anything is opened, so a device node is never opened (W-15.21a-15).
    struct stat want {};
    if (::stat(canonical.c_str(), &want) != 0) {
        return Error::format(Errc::io, "region '%s': stat failed: %s", canonical.c_str(), std::strerror(errno));
    }
    if (!S_ISREG(want.st_mode)) {
        return Error::format(Errc::refused, "region '%s' is a %s; expected a regular file (W-15.21a-15)",
                             canonical.c_str(), file_type_name(want.st_mode));
    }

    // 4. Open the announced path without following a symlink anywhere (W-15.21a-16, A-34).
    const auto comps = split_components(path);
    if (comps.empty() || comps.back().name == "..") {
        return Error::format(Errc::refused, "region path '%s' does not name a file", path.c_str());
    }
    auto dir = walk_directories(path, comps, comps.size() - 1);
    if (!dir) return dir.error();
    const int mode = access == Access::read_write ? O_RDWR : O_RDONLY;
    const std::string last(comps.back().name);
    UniqueFd fd(::openat(dir->get(), last.c_str(), mode | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) return component_error(dir->get(), comps.back(), path, errno, true);

    // 5. Validate the handle itself: still a regular file, and the very inode realpath() led us to.
    struct stat got {};
    if (::fstat(fd.get(), &got) != 0) {
        return Error::format(Errc::io, "region '%s': fstat failed: %s", path.c_str(), std::strerror(errno));
    }
    if (!S_ISREG(got.st_mode)) {
        return Error::format(Errc::refused, "region '%s' opened as a %s; expected a regular file (W-15.21a-16)",
                             path.c_str(), file_type_name(got.st_mode));
    }
    if (got.st_dev != want.st_dev || got.st_ino != want.st_ino) {
        return Error::format(Errc::refused,
                             "region '%s': opened file (dev %lu, ino %lu) is not the canonical file '%s' (dev %lu, "
                             "ino %lu); it was swapped between check and open (W-15.21a-16)",
                             path.c_str(), static_cast<unsigned long>(got.st_dev),
                             static_cast<unsigned long>(got.st_ino), canonical.c_str(),
                             static_cast<unsigned long>(want.st_dev), static_cast<unsigned long>(want.st_ino));
    }

    // 6. Hugepage backing, verified on the fd, never assumed (W-15.22-5, W-15.22-6).
    struct statfs fs {};
    if (::fstatfs(fd.get(), &fs) != 0) {
        return Error::format(Errc::io, "region '%s': fstatfs failed: %s", path.c_str(), std::strerror(errno));
    }
    // f_type is a signed word on some ABIs; hugetlbfs' magic has the top bit set, so compare the low 32 bits.
    const bool huge = static_cast<std::uint32_t>(fs.f_type) == static_cast<std::uint32_t>(kHugetlbfsMagic);
    if (uri->require_hugepages && !huge) {
        return Error::format(Errc::refused,
                             "region '%s' has require_hugepages=true but lives on filesystem type 0x%lx; expected "
                             "hugetlbfs (0x958458f6) (W-15.22-5)",
                             path.c_str(), static_cast<unsigned long>(static_cast<std::uint32_t>(fs.f_type)));
    }

    OpenedRegion out;
    out.fd = std::move(fd);
    out.uri = std::move(*uri);
    out.canonical_path = canonical;
    out.allowed_base = *base;
    out.size_bytes = static_cast<std::uint64_t>(got.st_size);
    out.dev = got.st_dev;
    out.ino = got.st_ino;
    out.on_hugetlbfs = huge;
    return out;
}

}  // namespace tensorpool::shm
