// The consumer's side of a region: safe open, superblock validation, read-only mapping, and views of the
// header ring's slots and a pool's payload slots (WIRE_SPEC §3.3, §7.2; W-7-2, W-15.1-*, W-15.21a-*).
//
// map_region() reads the 64-byte superblock with pread() and validates it (and the file size) before anything
// is mapped; a region that fails any check is never mapped (W-15.21a-18, W-15.22-13).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/allowed_dirs.hpp"
#include "tensorpool/shm/mapping.hpp"
#include "tensorpool/shm/region_uri.hpp"
#include "tensorpool/shm/seqlock.hpp"
#include "tensorpool/shm/slot_layout.hpp"
#include "tensorpool/shm/superblock.hpp"

namespace tensorpool::shm {

// A validated region mapped PROT_READ from an O_RDONLY descriptor. Move-only; unmapped on destruction.
class MappedRegion {
public:
    const Superblock& superblock() const noexcept { return sb_; }
    const std::byte* data() const noexcept { return mapping_.data(); }
    std::size_t size() const noexcept { return mapping_.size(); }
    const std::string& canonical_path() const noexcept { return canonical_path_; }
    const RegionUri& uri() const noexcept { return uri_; }

    // The superblock as it is now (copied with atomic 8-byte loads, since the producer keeps refreshing
    // activity_timestamp_ns): for liveness (W-7-4) and recheck_identity() on each announce.
    Superblock current_superblock() const noexcept;

private:
    friend Result<MappedRegion> map_region(std::string_view, const AllowedDirs&, const SuperblockExpectations&);
    Mapping mapping_;
    Superblock sb_;
    std::string canonical_path_;
    RegionUri uri_;
};

// Safe-opens `uri_or_path` read-only (safe_open.hpp), validates its superblock against `expect` and the file size,
// and maps exactly 64 + nslots * slot size bytes read-only. Errors name the rule that refused the region.
Result<MappedRegion> map_region(std::string_view uri_or_path, const AllowedDirs& allowed,
                                const SuperblockExpectations& expect);

// Slots of a mapped header ring. Cheap to copy; the MappedRegion must outlive it.
class HeaderRingView {
public:
    // Fails unless the region is a HEADER_RING.
    static Result<HeaderRingView> over(const MappedRegion& region);

    std::uint32_t nslots() const noexcept { return nslots_; }
    std::uint32_t index_of(std::uint64_t seq) const noexcept { return header_index(seq, nslots_); }
    const std::byte* slot(std::uint32_t index) const noexcept { return base_ + header_slot_offset(index); }
    // Starts a seqlock read of frame `seq` in its slot (seq & (nslots - 1)).
    ReadBegin begin_read(std::uint64_t seq, ReadTicket& ticket) const noexcept {
        return ticket.begin(slot(index_of(seq)), seq);
    }

private:
    const std::byte* base_ = nullptr;
    std::uint32_t nslots_ = 0;
};

// Payload slots of a mapped pool. Cheap to copy; the MappedRegion must outlive it.
class PayloadPoolView {
public:
    // Fails unless the region is a PAYLOAD_POOL.
    static Result<PayloadPoolView> over(const MappedRegion& region);

    std::uint16_t pool_id() const noexcept { return pool_id_; }
    std::uint32_t nslots() const noexcept { return nslots_; }
    std::uint32_t stride_bytes() const noexcept { return stride_; }
    // The payload slot `slot` (< nslots, as validate_slot() guarantees through payload_slot == header index).
    const std::byte* payload(std::uint32_t slot) const noexcept { return base_ + payload_slot_offset(slot, stride_); }

private:
    const std::byte* base_ = nullptr;
    std::uint16_t pool_id_ = 0;
    std::uint32_t nslots_ = 0;
    std::uint32_t stride_ = 0;
};

// Copies the 64 superblock bytes at `base` (8-byte aligned) with relaxed atomic loads and decodes them.
Superblock snapshot_superblock(const std::byte* base) noexcept;

}  // namespace tensorpool::shm
