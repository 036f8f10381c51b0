#include "tensorpool/shm/region_writer.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "tensorpool/shm/safe_open.hpp"
#include "tensorpool/shm/seqlock.hpp"
#include "tensorpool/shm/unique_fd.hpp"

namespace tensorpool::shm {
namespace {

// Makes (or adopts) directory `name` in `parent` and returns it opened. An existing entry must be a real
// directory owned by us; a new one gets exactly `mode` (fchmod, so the umask does not matter and setgid sticks).
Result<UniqueFd> make_owned_dir(int parent, const std::string& name, const std::string& full, mode_t mode) {
    bool created = false;
    if (::mkdirat(parent, name.c_str(), 0700) == 0) {
        created = true;
    } else if (errno != EEXIST) {
        return Error::format(Errc::io, "creating directory '%s': %s", full.c_str(), std::strerror(errno));
    }
    UniqueFd dir(::openat(parent, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir.valid()) {
        const int err = errno;
        struct stat st {};
        if (::fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode)) {
            return Error::format(Errc::refused, "'%s' is a %s; expected a directory we own", full.c_str(),
                                 file_type_name(st.st_mode));
        }
        return Error::format(Errc::io, "opening directory '%s': %s", full.c_str(), std::strerror(err));
    }
    struct stat st {};
    if (::fstat(dir.get(), &st) != 0) {
        return Error::format(Errc::io, "fstat of directory '%s': %s", full.c_str(), std::strerror(errno));
    }
    if (st.st_uid != ::geteuid()) {
        return Error::format(Errc::refused, "directory '%s' is owned by uid %u; expected our euid %u (someone else "
                             "created it, W-15.21a-19)", full.c_str(), static_cast<unsigned>(st.st_uid),
                             static_cast<unsigned>(::geteuid()));
    }
    if (created && ::fchmod(dir.get(), mode) != 0) {
        return Error::format(Errc::io, "chmod %o of directory '%s': %s", static_cast<unsigned>(mode), full.c_str(),
                             std::strerror(errno));
    }
    return dir;
}

// Deletes a half-created file when any later step fails, so that O_EXCL does not block a retry.
class UnlinkOnFailure {
public:
    UnlinkOnFailure(int dir, std::string name) : dir_(dir), name_(std::move(name)) {}
    ~UnlinkOnFailure() {
        if (armed_) ::unlinkat(dir_, name_.c_str(), 0);
    }
    void disarm() { armed_ = false; }

private:
    int dir_;
    std::string name_;
    bool armed_ = true;
};

}  // namespace

Result<std::string> create_epoch_directory(const CanonicalLayout& layout, const CreateOptions& options) {
    if (auto s = layout.validate(); !s) return s.error();
    auto base = open_directory_nofollow(layout.base_dir);
    if (!base) {
        Error e = base.error();
        e.prefix("shm base directory '%s': ", layout.base_dir.c_str());
        return e;
    }
    const std::string parts[] = {"tensorpool-" + layout.user, layout.ns, std::to_string(layout.stream_id),
                                 std::to_string(layout.epoch)};
    std::string full = layout.base_dir;
    while (full.size() > 1 && full.back() == '/') full.pop_back();
    UniqueFd parent = std::move(*base);
    for (const std::string& part : parts) {
        full += (full == "/" ? "" : "/") + part;
        auto dir = make_owned_dir(parent.get(), part, full, options.directory_mode());
        if (!dir) return dir.error();
        parent = std::move(*dir);
    }
    return full;
}

Result<WritableRegion> create_region(std::string_view path_in, const Superblock& sb_in, const CreateOptions& options) {
    const std::string path(path_in);
    if (path.empty() || path.front() != '/') {
        return Error::format(Errc::invalid_argument, "region path '%s' is not absolute", path.c_str());
    }
    const auto slash = path.find_last_of('/');
    const std::string dir_path = slash == 0 ? "/" : path.substr(0, slash);
    const std::string name = path.substr(slash + 1);
    if (name.empty() || name == "." || name == "..") {
        return Error::format(Errc::invalid_argument, "region path '%s' does not end in a file name", path.c_str());
    }
    Superblock sb = sb_in;
    if (sb.pid == 0) sb.pid = static_cast<std::uint64_t>(::getpid());
    if (auto s = validate_superblock(sb, sb.min_file_bytes(), SuperblockExpectations::any()); !s) {
        Error e = s.error();
        e.prefix("refusing to create '%s': ", path.c_str());
        return e;
    }

    // The directory is opened without following a symlink anywhere on its path; the file is then created
    // relative to that descriptor, so nothing can redirect it between the check and the create.
    auto dirfd = open_directory_nofollow(dir_path);
    if (!dirfd) return dirfd.error();
    const mode_t mode = options.file_mode();
    UniqueFd fd(::openat(dirfd->get(), name.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode));
    if (!fd.valid()) {
        const int err = errno;
        if (err == EEXIST) {
            return Error::format(Errc::refused, "region '%s' already exists; regions are created with O_EXCL and "
                                 "never reused (use a new epoch)", path.c_str());
        }
        return Error::format(Errc::io, "creating region '%s': %s", path.c_str(), std::strerror(err));
    }
    UnlinkOnFailure cleanup(dirfd->get(), name);
    if (::fchmod(fd.get(), mode) != 0) {
        return Error::format(Errc::io, "chmod %o of '%s': %s", static_cast<unsigned>(mode), path.c_str(),
                             std::strerror(errno));
    }

    std::uint64_t size = sb.min_file_bytes();
    struct statfs fs {};
    if (::fstatfs(fd.get(), &fs) != 0) {
        return Error::format(Errc::io, "fstatfs of '%s': %s", path.c_str(), std::strerror(errno));
    }
    if (static_cast<std::uint32_t>(fs.f_type) == static_cast<std::uint32_t>(kHugetlbfsMagic) && fs.f_bsize > 0) {
        const auto page = static_cast<std::uint64_t>(fs.f_bsize);  // the huge page size
        size = (size + page - 1) / page * page;
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) {
        return Error::format(Errc::io, "sizing '%s' to %llu bytes: %s", path.c_str(),
                             static_cast<unsigned long long>(size), std::strerror(errno));
    }
    auto mapping = Mapping::map(fd.get(), static_cast<std::size_t>(size), MapMode::read_write,
                                MapOptions{options.prefault});
    if (!mapping) return mapping.error();

    // Written through the mapping: hugetlbfs files cannot be write()n. Nobody can read it before the announce.
    std::uint8_t raw[kSuperblockBytes];
    if (auto s = encode_superblock(sb, std::span<std::uint8_t, kSuperblockBytes>(raw, kSuperblockBytes)); !s) {
        return s.error();
    }
    std::memcpy(mapping->writable_data(), raw, kSuperblockBytes);
    if (::msync(mapping->writable_data(), kSuperblockBytes, MS_SYNC) != 0 || ::fsync(fd.get()) != 0) {
        return Error::format(Errc::io, "syncing the superblock of '%s': %s", path.c_str(), std::strerror(errno));
    }
    if (options.prefault) mapping->prefault();
    if (options.lock_memory) {
        if (auto s = mapping->lock(); !s) {
            Error e = s.error();
            e.prefix("region '%s': ", path.c_str());
            return e;
        }
    }

    cleanup.disarm();
    WritableRegion out;
    out.mapping_ = std::move(*mapping);
    out.sb_ = sb;
    out.path_ = path;
    return out;
}

void WritableRegion::set_activity_timestamp(std::uint64_t ns) noexcept {
    sb_.activity_timestamp_ns = ns;
    alignas(8) std::uint8_t raw[kSuperblockBytes];
    if (!encode_superblock(sb_, std::span<std::uint8_t, kSuperblockBytes>(raw, kSuperblockBytes))) return;
    for (std::size_t w = 0; w < kSuperblockBytes / 8; ++w) {
        std::uint64_t want;
        std::memcpy(&want, raw + w * 8, 8);
        std::atomic_ref<std::uint64_t> word(*reinterpret_cast<std::uint64_t*>(data() + w * 8));
        if (word.load(std::memory_order_relaxed) != want) word.store(want, std::memory_order_release);
    }
}

Status publish_frame(const WritableRegion& ring, const WritableRegion& pool, const FrameDescription& frame,
                     std::span<const std::byte> payload) {
    const Superblock& r = ring.superblock();
    const Superblock& p = pool.superblock();
    if (r.region_type != RegionType::HEADER_RING || p.region_type != RegionType::PAYLOAD_POOL) {
        return Error(Errc::invalid_argument, "publish_frame needs a header ring and a payload pool");
    }
    if (frame.pool_id != p.pool_id) {
        return Error::format(Errc::invalid_argument, "frame pool_id %u does not name the given pool %u",
                             unsigned{frame.pool_id}, unsigned{p.pool_id});
    }
    if (payload.size() != frame.values_len_bytes || payload.size() > p.stride_bytes) {
        return Error::format(Errc::capacity, "payload of %zu bytes (values_len_bytes %u) does not fit pool %u's "
                             "stride_bytes %u (W-9-4: pick a larger pool or drop)", payload.size(),
                             frame.values_len_bytes, unsigned{p.pool_id}, p.stride_bytes);
    }
    SlotImage image;
    if (auto s = encode_slot_image(frame, r.nslots, image); !s) return s;
    const std::uint32_t index = header_index(frame.seq, r.nslots);
    std::byte* slot = ring.header_slot(index);
    seqlock_begin_write(slot, frame.seq);                                                 // W-8-23
    if (!payload.empty()) std::memcpy(pool.payload_slot(index), payload.data(), payload.size());
    seqlock_store_header(slot, image);                                                    // W-8-24
    seqlock_commit(slot, frame.seq);                                                      // W-8-25
    return {};
}

}  // namespace tensorpool::shm
