// The producer's (or driver's) side: creating the canonical epoch directory and the region files, writing their
// superblocks, and mapping them read-write (WIRE_SPEC §2.5, §7.4, §7.5; W-7-1, W-7-3, W-15.21a-3, W-15.21a-19).
//
// Directories are 0700 (or 2770 setgid for a shared group), files 0600 (or 0660), set with fchmod so the umask
// cannot loosen or tighten them. Files are created with O_EXCL|O_NOFOLLOW inside a directory opened without
// following any symlink, so a planted file or link is refused rather than reused. The superblock is encoded with
// the generated codec exactly as the C reference writes it, then msync'ed and fsync'ed before the caller may
// announce the region.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/layout.hpp"
#include "tensorpool/shm/mapping.hpp"
#include "tensorpool/shm/slot_image.hpp"
#include "tensorpool/shm/slot_layout.hpp"
#include "tensorpool/shm/superblock.hpp"

namespace tensorpool::shm {

struct CreateOptions {
    bool group_shared = false;  // directories 2770 + files 0660 instead of 0700 + 0600 (§7.4)
    bool prefault = false;      // MAP_POPULATE and touch every page before the first frame
    bool lock_memory = false;   // mlock the mapping (needs RLIMIT_MEMLOCK headroom)

    mode_t directory_mode() const noexcept { return group_shared ? 02770 : 0700; }
    mode_t file_mode() const noexcept { return group_shared ? 0660 : 0600; }
};

// Creates (or reuses, if already ours) every directory of layout.epoch_dir() below layout.base_dir, which must
// exist. A directory on the way that is a symlink, or is owned by another user, is refused. Returns the epoch dir.
Result<std::string> create_epoch_directory(const CanonicalLayout& layout, const CreateOptions& options = {});

// A region this process created and maps read-write. Move-only; unmapped on destruction (the file stays).
class WritableRegion {
public:
    const Superblock& superblock() const noexcept { return sb_; }
    const std::string& path() const noexcept { return path_; }
    std::byte* data() const noexcept { return mapping_.writable_data(); }
    std::size_t size() const noexcept { return mapping_.size(); }

    // Header ring slot / pool payload slot addresses (W-8-1, W-9-1).
    std::byte* header_slot(std::uint32_t index) const noexcept { return data() + header_slot_offset(index); }
    std::byte* payload_slot(std::uint32_t slot) const noexcept {
        return data() + payload_slot_offset(slot, sb_.stride_bytes);
    }

    // W-7-1 / W-7-3: the only superblock field that changes after creation. The superblock is re-encoded with the
    // codec and only the 8-byte words that differ are stored, each with one atomic store.
    void set_activity_timestamp(std::uint64_t ns) noexcept;

private:
    friend Result<WritableRegion> create_region(std::string_view, const Superblock&, const CreateOptions&);
    Mapping mapping_;
    Superblock sb_;
    std::string path_;
};

// Creates region file `path` (absolute; its directory must exist) for superblock `sb`, which must pass
// validate_superblock(). Size is 64 + nslots * slot size, rounded up to the huge page size on hugetlbfs.
// `sb.pid` 0 is replaced by getpid(). On failure nothing is left behind (a half-made file is unlinked).
Result<WritableRegion> create_region(std::string_view path, const Superblock& sb, const CreateOptions& options = {});

// Publishes one frame (WIRE_SPEC §3.2): IN-PROGRESS, payload copy, full header rewrite, COMMITTED. `ring` must be
// the header ring and `pool` the pool named by frame.pool_id; the payload must fit the pool's stride (W-9-4 is
// the caller's pool choice). The header image is built before the slot is touched, so a description that cannot
// be encoded never leaves a slot IN-PROGRESS.
Status publish_frame(const WritableRegion& ring, const WritableRegion& pool, const FrameDescription& frame,
                     std::span<const std::byte> payload);

}  // namespace tensorpool::shm
