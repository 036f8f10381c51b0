// libFuzzer target: superblock decoding and validation (W-7-*, A-15, A-16, A-33) on arbitrary 64-byte blocks,
// file sizes and expectations taken from the input. Validation must never crash, and whatever it accepts must
// really satisfy the structural rules a mapper relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "tensorpool/shm/superblock.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace tensorpool::shm;
    uint8_t block[kSuperblockBytes] = {};
    std::memcpy(block, data, size < sizeof block ? size : sizeof block);
    uint64_t file_bytes = 0;
    if (size >= sizeof block + 8) std::memcpy(&file_bytes, data + sizeof block, 8);
    const Superblock sb = decode_superblock(std::span<const uint8_t, kSuperblockBytes>(block));
    SuperblockExpectations expect = SuperblockExpectations::any();
    if (size > sizeof block + 8 && (data[sizeof block + 8] & 1) != 0) {
        expect = sb.region_type == RegionType::PAYLOAD_POOL
                     ? SuperblockExpectations::for_pool(sb.stream_id, sb.epoch, sb.pool_id, sb.nslots, sb.stride_bytes)
                     : SuperblockExpectations::for_header_ring(sb.stream_id, sb.epoch, sb.nslots);
    }
    if (validate_superblock(sb, file_bytes, expect).ok()) {
        if (sb.magic != kMagic) std::abort();
        if (sb.nslots == 0 || (sb.nslots & (sb.nslots - 1)) != 0) std::abort();
        if (file_bytes < sb.min_file_bytes()) std::abort();
        if (sb.region_type == RegionType::PAYLOAD_POOL && (sb.stride_bytes == 0 || sb.stride_bytes % 64 != 0)) std::abort();
        if (sb.region_type == RegionType::HEADER_RING && (sb.slot_bytes != 256 || sb.pool_id != 0)) std::abort();
    }
    // Round trip: what we encode decodes to the same superblock.
    uint8_t out[kSuperblockBytes];
    if (encode_superblock(sb, std::span<uint8_t, kSuperblockBytes>(out)).ok()) {
        if (!(decode_superblock(std::span<const uint8_t, kSuperblockBytes>(out)) == sb)) std::abort();
    }
    return 0;
}
