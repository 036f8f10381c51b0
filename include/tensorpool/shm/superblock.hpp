// The 64-byte ShmRegionSuperblock at offset 0 of every region (WIRE_SPEC §2.2, W-6-*, W-7-*, W-15.1-*, W-15.5-1).
//
// Bytes are read and written only through the generated codec (tensorpool/wire/gen/control.hpp); this file
// turns them into a plain struct and decides whether a region may be trusted. validate_superblock() runs before
// anything else of a file is looked at, and before anything is mapped.
#pragma once

#include <cstdint>
#include <optional>
#include <span>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/constants.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace tensorpool::shm {

using wire::control::RegionType;

struct Superblock {
    std::uint64_t magic = kMagic;
    std::uint32_t layout_version = kLayoutVersion;
    std::uint64_t epoch = 0;
    std::uint32_t stream_id = 0;
    RegionType region_type = RegionType::HEADER_RING;  // may hold a value that is not a validValue
    std::uint16_t pool_id = 0;
    std::uint32_t nslots = 0;
    std::uint32_t slot_bytes = 0;
    std::uint32_t stride_bytes = 0;
    std::uint64_t pid = 0;
    std::uint64_t start_timestamp_ns = 0;
    std::uint64_t activity_timestamp_ns = 0;

    bool operator==(const Superblock&) const = default;

    // The superblock the C reference writes for a header ring / a payload pool (A-15 filler values included).
    static Superblock header_ring(std::uint32_t stream_id, std::uint64_t epoch, std::uint32_t nslots);
    static Superblock payload_pool(std::uint32_t stream_id, std::uint64_t epoch, std::uint16_t pool_id,
                                   std::uint32_t nslots, std::uint32_t stride_bytes);

    // Bytes of one slot of this region: 256 for a header ring, stride_bytes for a pool.
    std::uint32_t slot_size() const noexcept;
    // 64 + nslots * slot_size(): the least a file must hold (larger is fine, A-33).
    std::uint64_t min_file_bytes() const noexcept;
};

// What the announce said about a region (W-7-2, W-15.1-1). Unset fields are not compared; a consumer sets all of
// them (see for_header_ring / for_pool), a diagnostic tool may leave them unset.
struct SuperblockExpectations {
    std::optional<RegionType> region_type;
    std::optional<std::uint32_t> stream_id;
    std::optional<std::uint64_t> epoch;
    std::uint32_t layout_version = kLayoutVersion;
    std::optional<std::uint32_t> nslots;        // W-15.5-1: pools carry the header ring's nslots
    std::optional<std::uint16_t> pool_id;       // pools only (W-7-10); a header ring's must be 0 regardless
    std::optional<std::uint32_t> stride_bytes;  // pools only

    static SuperblockExpectations for_header_ring(std::uint32_t stream_id, std::uint64_t epoch,
                                                  std::uint32_t nslots);
    static SuperblockExpectations for_pool(std::uint32_t stream_id, std::uint64_t epoch, std::uint16_t pool_id,
                                           std::uint32_t nslots, std::uint32_t stride_bytes);
    static SuperblockExpectations any() { return {}; }
};

// Encodes `sb` into 64 bytes with the generated ShmRegionSuperblock encoder (no message header, W-7-6).
Status encode_superblock(const Superblock& sb, std::span<std::uint8_t, kSuperblockBytes> out);

// Decodes 64 bytes with the generated decoder. Never fails on content; validate_superblock() judges it.
Superblock decode_superblock(std::span<const std::uint8_t, kSuperblockBytes> in);

// Every structural rule, then the expectations. `file_bytes` is the file's size. The first failure is returned,
// naming the field, its value and what was expected. Order: magic (W-7-5), layout_version (W-7-7), region_type,
// pool_id of a ring (W-7-9), slot_bytes of a ring / stride of a pool (A-15, W-15.22-9), nslots power of two
// file size, then the announced values (W-7-2, W-7-10, W-15.1-1, W-15.5-1).
Status validate_superblock(const Superblock& sb, std::uint64_t file_bytes, const SuperblockExpectations& expect);

// A-10 / A-14 / W-15.14-7: what a consumer re-checks on a mapped region when a new announce arrives. magic,
// layout_version, epoch and pid must be what they were when it was mapped; a change means the region was replaced
// and must be remapped.
Status recheck_identity(const Superblock& mapped_at_open, const Superblock& now);

const char* region_type_name(RegionType t) noexcept;

}  // namespace tensorpool::shm
