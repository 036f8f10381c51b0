#include "ipc_files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <climits>
#include <cerrno>
#include <cstring>
#include <new>

#include "ipc_format.hpp"
#include "tensorpool/shm/layout.hpp"
#include "tensorpool/shm/safe_open.hpp"

namespace tensorpool::transport::ipc {

namespace {

// A directory or file of the bus must belong to us and be closed to group and others.
Status check_owner_only(const struct stat& st, const std::string& path, bool directory) {
    if (directory ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode)) {
        return Error::format(Errc::refused, "ipc bus: %s is a %s, expected a %s", path.c_str(),
                             shm::file_type_name(st.st_mode), directory ? "directory" : "regular file");
    }
    if (st.st_uid != ::geteuid()) {
        return Error::format(Errc::refused, "ipc bus: %s is owned by uid %u, expected uid %u (the bus is per-user)",
                             path.c_str(), unsigned{st.st_uid}, unsigned{::geteuid()});
    }
    if ((st.st_mode & 077) != 0) {
        return Error::format(Errc::refused, "ipc bus: %s has mode %04o, expected owner-only (%s)", path.c_str(),
                             unsigned{st.st_mode & 07777}, directory ? "0700" : "0600");
    }
    return {};
}

// openat() a child directory without following a symlink, creating it (0700) when missing.
Result<shm::UniqueFd> open_child_dir(int parent, const std::string& parent_path, std::string_view name) {
    const std::string n(name);
    const std::string path = parent_path + "/" + n;
    if (::mkdirat(parent, n.c_str(), 0700) != 0 && errno != EEXIST) {
        return Error::format(Errc::io, "ipc bus: cannot create %s: %s", path.c_str(), std::strerror(errno));
    }
    shm::UniqueFd fd(::openat(parent, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!fd.valid()) {
        const int e = errno;
        if (e == ELOOP || e == ENOTDIR) {
            return Error::format(Errc::refused, "ipc bus: %s is a symlink or not a directory (refused)", path.c_str());
        }
        return Error::format(Errc::io, "ipc bus: cannot open %s: %s", path.c_str(), std::strerror(e));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::format(Errc::io, "ipc bus: fstat %s: %s", path.c_str(), std::strerror(errno));
    if (Status s = check_owner_only(st, path, true); !s) return s.error();
    return fd;
}

// Opens a bus file without following a symlink and checks owner, mode and exact size.
Result<shm::UniqueFd> open_bus_file(int dir, const std::string& dir_path, const std::string& name, int flags,
                                    std::size_t expected_size) {
    const std::string path = dir_path + "/" + name;
    shm::UniqueFd fd(::openat(dir, name.c_str(), flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) {
        const int e = errno;
        if (e == ELOOP) return Error::format(Errc::refused, "ipc bus: %s is a symlink (refused)", path.c_str());
        return Error::format(e == ENOENT ? Errc::not_found : Errc::io, "ipc bus: cannot open %s: %s", path.c_str(),
                             std::strerror(e));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Error::format(Errc::io, "ipc bus: fstat %s: %s", path.c_str(), std::strerror(errno));
    if (Status s = check_owner_only(st, path, false); !s) return s.error();
    if (static_cast<std::size_t>(st.st_size) != expected_size) {
        return Error::format(Errc::malformed, "ipc bus: %s is %lld bytes, expected %zu (truncated or foreign file)",
                             path.c_str(), static_cast<long long>(st.st_size), expected_size);
    }
    return fd;
}

uint64_t random_u64() noexcept {
    uint64_t v = 0;
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
        v = static_cast<uint64_t>(::getpid()) * 0x9E3779B97F4A7C15ull ^ reinterpret_cast<uintptr_t>(&v);
    }
    return v;
}

Status check_registry(const shm::Mapping& m, const std::string& path) {
    RegistryHeader h;
    std::memcpy(&h, m.data(), sizeof h);
    const uint64_t magic = std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(m.writable_data()))
                               .load(std::memory_order_acquire);
    if (magic != kRegistryMagic) {
        return Error::format(Errc::malformed, "ipc bus: %s has magic 0x%016llx, expected 0x%016llx", path.c_str(),
                             static_cast<unsigned long long>(magic), static_cast<unsigned long long>(kRegistryMagic));
    }
    if (h.layout_version != kRegistryLayoutVersion || h.publisher_slots != kPublisherSlots ||
        h.subscriber_slots != kSubscriberSlots) {
        return Error::format(Errc::unsupported,
                             "ipc bus: %s has layout %u with %u/%u slots, expected layout %u with %u/%u slots",
                             path.c_str(), h.layout_version, h.publisher_slots, h.subscriber_slots, kRegistryLayoutVersion,
                             kPublisherSlots, kSubscriberSlots);
    }
    return {};
}

}  // namespace

Result<std::string> default_root() {
    auto user = shm::effective_user_name();
    if (!user) return user.error();
    return "/dev/shm/tensorpool-ipc-" + *user;
}

Status validate_bus_name(std::string_view bus) {
    bool ok = !bus.empty() && bus.size() <= 64 && bus != "." && bus != "..";
    for (char c : bus) {
        ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-');
    }
    if (!ok) {
        return Error::format(Errc::invalid_argument,
                             "ipc bus name '%.*s' must be 1..64 characters of [A-Za-z0-9._-], not '.' or '..'",
                             static_cast<int>(bus.size()), bus.data());
    }
    return {};
}

Result<StreamDir> open_stream_dir(const std::string& root, std::string_view bus, int32_t stream_id) {
    if (Status s = validate_bus_name(bus); !s) return s.error();
    if (root.empty() || root.front() != '/') {
        return Error::format(Errc::invalid_argument, "ipc bus root '%s' must be an absolute path", root.c_str());
    }
    if (::mkdir(root.c_str(), 0700) != 0 && errno != EEXIST) {
        return Error::format(Errc::io, "ipc bus: cannot create root %s: %s", root.c_str(), std::strerror(errno));
    }
    auto root_fd = shm::open_directory_nofollow(root);
    if (!root_fd) return root_fd.error();
    struct stat st {};
    if (::fstat(root_fd->get(), &st) != 0) return Error::format(Errc::io, "ipc bus: fstat %s: %s", root.c_str(), std::strerror(errno));
    if (Status s = check_owner_only(st, root, true); !s) return s.error();
    auto bus_fd = open_child_dir(root_fd->get(), root, bus);
    if (!bus_fd) return bus_fd.error();
    const std::string bus_path = root + "/" + std::string(bus);
    auto stream_fd = open_child_dir(bus_fd->get(), bus_path, std::to_string(stream_id));
    if (!stream_fd) return stream_fd.error();
    return StreamDir{std::move(*stream_fd), bus_path + "/" + std::to_string(stream_id)};
}

Result<shm::Mapping> open_registry(const StreamDir& dir) {
    const std::string path = dir.path + "/registry";
    auto fd = open_bus_file(dir.fd.get(), dir.path, "registry", O_RDWR, kRegistryBytes);
    if (!fd && fd.error().code() == Errc::not_found) {
        // Build the registry completely in a private temporary file, then publish it with link(), which fails
        // if another process won the race; either way everyone ends up opening one fully written registry.
        const std::string tmp = "registry.tmp." + std::to_string(::getpid()) + "." + std::to_string(random_u64());
        shm::UniqueFd t(::openat(dir.fd.get(), tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
        if (!t.valid()) return Error::format(Errc::io, "ipc bus: cannot create %s/%s: %s", dir.path.c_str(), tmp.c_str(), std::strerror(errno));
        if (::ftruncate(t.get(), static_cast<off_t>(kRegistryBytes)) != 0) {
            const int e = errno;
            ::unlinkat(dir.fd.get(), tmp.c_str(), 0);
            return Error::format(Errc::io, "ipc bus: cannot size %s: %s", path.c_str(), std::strerror(e));
        }
        RegistryHeader h{};
        h.magic = kRegistryMagic;
        h.layout_version = kRegistryLayoutVersion;
        h.publisher_slots = kPublisherSlots;
        h.subscriber_slots = kSubscriberSlots;
        const bool written = ::pwrite(t.get(), &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h) && ::fsync(t.get()) == 0;
        const bool linked = written && ::linkat(dir.fd.get(), tmp.c_str(), dir.fd.get(), "registry", 0) == 0;
        const int link_errno = errno;
        ::unlinkat(dir.fd.get(), tmp.c_str(), 0);
        if (!written) return Error::format(Errc::io, "ipc bus: cannot write %s", path.c_str());
        if (!linked && link_errno != EEXIST) {
            return Error::format(Errc::io, "ipc bus: cannot link %s: %s", path.c_str(), std::strerror(link_errno));
        }
        fd = open_bus_file(dir.fd.get(), dir.path, "registry", O_RDWR, kRegistryBytes);
    }
    if (!fd) return fd.error();
    auto m = shm::Mapping::map(fd->get(), kRegistryBytes, shm::MapMode::read_write);
    if (!m) return m.error();
    if (Status s = check_registry(*m, path); !s) return s.error();
    return m;
}

std::string log_file_name(int32_t session_id) { return "pub-" + std::to_string(session_id) + ".log"; }

Result<shm::Mapping> create_log(const StreamDir& dir, int32_t session_id, std::size_t term_bytes, uint64_t pid,
                                bool prefault) {
    // Built complete under a temporary name that carries our pid (so the sweep can remove it if we die here),
    // then link()ed to its final name: nobody ever finds a pub-<session>.log without a full header.
    const std::string name = log_file_name(session_id);
    const std::string tmp = name + ".tmp." + std::to_string(pid);
    const std::size_t size = kLogHeaderBytes + term_bytes;
    ::unlinkat(dir.fd.get(), tmp.c_str(), 0);  // a leftover of an earlier process with our pid
    shm::UniqueFd fd(::openat(dir.fd.get(), tmp.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd.valid()) {
        return Error::format(Errc::io, "ipc bus: cannot create %s/%s: %s", dir.path.c_str(), tmp.c_str(), std::strerror(errno));
    }
    auto fail = [&](Error e) {
        ::unlinkat(dir.fd.get(), tmp.c_str(), 0);
        return e;
    };
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return fail(Error::format(Errc::io, "ipc bus: cannot size %s/%s to %zu bytes: %s", dir.path.c_str(),
                                  name.c_str(), size, std::strerror(errno)));
    }
    auto m = shm::Mapping::map(fd.get(), size, shm::MapMode::read_write, shm::MapOptions{prefault});
    if (!m) return fail(m.error());
    auto* h = reinterpret_cast<LogHeader*>(m->writable_data());
    h->layout_version = kLogLayoutVersion;
    h->session_id = session_id;
    h->term_bytes = term_bytes;
    h->pid = pid;
    std::atomic_ref<uint64_t>(h->magic).store(kLogMagic, std::memory_order_release);
    if (::linkat(dir.fd.get(), tmp.c_str(), dir.fd.get(), name.c_str(), 0) != 0) {
        return fail(Error::format(Errc::io, "ipc bus: cannot link %s/%s: %s", dir.path.c_str(), name.c_str(),
                                  std::strerror(errno)));
    }
    ::unlinkat(dir.fd.get(), tmp.c_str(), 0);
    return m;
}

LogOwner log_owner(const StreamDir& dir, int32_t session_id) noexcept {
    const std::string name = log_file_name(session_id);
    shm::UniqueFd fd(::openat(dir.fd.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK));
    if (!fd.valid()) return errno == ENOENT ? LogOwner::missing : LogOwner::unreadable;
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_uid != ::geteuid()) return LogOwner::unreadable;
    LogHeader h;
    if (::pread(fd.get(), &h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return LogOwner::unreadable;
    if (h.magic != kLogMagic || h.session_id != session_id) return LogOwner::unreadable;
    return process_is_gone(h.pid) ? LogOwner::dead : LogOwner::alive;
}

Result<shm::Mapping> open_log(const StreamDir& dir, int32_t session_id, std::size_t expected_term_bytes) {
    const std::string name = log_file_name(session_id);
    const std::string path = dir.path + "/" + name;
    if (expected_term_bytes < kMinTermBytes || expected_term_bytes > kMaxTermBytes ||
        (expected_term_bytes & (expected_term_bytes - 1)) != 0) {
        return Error::format(Errc::malformed, "ipc bus: registry gives %s a term of %zu bytes, expected a power of two "
                             "in [%zu, %zu]", path.c_str(), expected_term_bytes, kMinTermBytes, kMaxTermBytes);
    }
    auto fd = open_bus_file(dir.fd.get(), dir.path, name, O_RDONLY, kLogHeaderBytes + expected_term_bytes);
    if (!fd) return fd.error();
    auto m = shm::Mapping::map(fd->get(), kLogHeaderBytes + expected_term_bytes, shm::MapMode::read_only);
    if (!m) return m.error();
    LogHeader h;
    std::memcpy(&h, m->data(), sizeof h);
    if (h.magic != kLogMagic) {
        return Error::format(Errc::malformed, "ipc bus: %s has magic 0x%016llx, expected 0x%016llx", path.c_str(),
                             static_cast<unsigned long long>(h.magic), static_cast<unsigned long long>(kLogMagic));
    }
    if (h.layout_version != kLogLayoutVersion || h.session_id != session_id || h.term_bytes != expected_term_bytes) {
        return Error::format(Errc::mismatch,
                             "ipc bus: %s says layout %u session %d term %llu, expected layout %u session %d term %zu",
                             path.c_str(), h.layout_version, h.session_id, static_cast<unsigned long long>(h.term_bytes),
                             kLogLayoutVersion, session_id, expected_term_bytes);
    }
    // Validated, now populated: a reader that keeps up reads every page of the ring in its first lap, and each first
    // read would be a page fault on the hot path (hundreds a second at 20 kHz, several microseconds each on a VM).
    // Once per publisher a subscriber meets: 0.6 ms for the default 8 MiB term on the development VM.
    m->prefault();
    return m;
}

void unlink_log(const StreamDir& dir, int32_t session_id) noexcept {
    ::unlinkat(dir.fd.get(), log_file_name(session_id).c_str(), 0);
}

namespace {

// Parses the decimal number at the start of `s` (at most `max`); returns how many characters it used, 0 if none.
std::size_t parse_decimal(std::string_view s, uint64_t max, uint64_t& out) noexcept {
    std::size_t i = 0;
    uint64_t v = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9' && i < 20) {
        v = v * 10 + static_cast<uint64_t>(s[i] - '0');
        if (v > max) return 0;
        ++i;
    }
    out = v;
    return i;
}

}  // namespace

BusFileName parse_bus_file_name(std::string_view name) noexcept {
    BusFileName f;
    if (name.starts_with("pub-")) {
        uint64_t session = 0;
        const std::size_t n = parse_decimal(name.substr(4), INT32_MAX, session);
        if (n == 0 || (name[4] == '0' && n > 1)) return f;  // only the names log_file_name() makes
        const std::string_view rest = name.substr(4 + n);
        f.session_id = static_cast<int32_t>(session);
        if (rest == ".log") {
            f.kind = BusFileName::log;
        } else if (rest.starts_with(".log.tmp.")) {
            const std::string_view pid = rest.substr(9);
            if (parse_decimal(pid, INT32_MAX, f.pid) == pid.size() && !pid.empty()) f.kind = BusFileName::log_temp;
        }
    } else if (name.starts_with("registry.tmp.")) {
        const std::string_view rest = name.substr(13);
        const std::size_t n = parse_decimal(rest, INT32_MAX, f.pid);
        if (n != 0 && n < rest.size() && rest[n] == '.') f.kind = BusFileName::registry_temp;
    }
    return f;
}

std::vector<std::string> list_entries(const StreamDir& dir) noexcept {
    std::vector<std::string> names;
    // Our own open file description: the stream's directory descriptor may be listed by another thread.
    const int fd = ::openat(dir.fd.get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return names;
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
        ::close(fd);
        return names;
    }
    ::rewinddir(d);
    try {
        while (const dirent* e = ::readdir(d)) {
            if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) names.emplace_back(e->d_name);
        }
    } catch (...) {
        names.clear();
    }
    ::closedir(d);
    return names;
}

void unlink_entry(const StreamDir& dir, const std::string& name) noexcept {
    ::unlinkat(dir.fd.get(), name.c_str(), 0);
}

bool process_is_gone(uint64_t pid) noexcept {
    if (pid == 0 || pid > static_cast<uint64_t>(INT32_MAX)) return true;
    return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

}  // namespace tensorpool::transport::ipc
