// Where things are inside a region (WIRE_SPEC §2.3, §2.4): pure arithmetic, no I/O.
//
//   header slot i      at 64 + i * 256                      (W-8-1)
//   payload slot k     at 64 + k * stride_bytes             (W-9-1)
//   slot for seq       i = seq & (nslots - 1), nslots a power of two
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "tensorpool/shm/constants.hpp"

namespace tensorpool::shm {

static_assert(std::endian::native == std::endian::little,
              "the SHM layout is little-endian and this implementation does not byte-swap (W-15.1-6)");

// A private copy of one 256-byte header slot. Aligned like the slot itself so the seqlock can copy it word by
// word and the generated decoders can wrap it.
struct alignas(64) SlotImage {
    std::array<std::byte, kHeaderSlotBytes> bytes{};

    std::byte* data() noexcept { return bytes.data(); }
    const std::byte* data() const noexcept { return bytes.data(); }
};

constexpr bool is_power_of_two(std::uint64_t n) noexcept { return n != 0 && (n & (n - 1)) == 0; }

constexpr std::uint32_t header_index(std::uint64_t seq, std::uint32_t nslots) noexcept {
    return static_cast<std::uint32_t>(seq & (static_cast<std::uint64_t>(nslots) - 1));
}

constexpr std::uint64_t header_slot_offset(std::uint32_t index) noexcept {
    return kSuperblockBytes + static_cast<std::uint64_t>(index) * kHeaderSlotBytes;
}

constexpr std::uint64_t payload_slot_offset(std::uint32_t slot, std::uint32_t stride_bytes) noexcept {
    return kSuperblockBytes + static_cast<std::uint64_t>(slot) * stride_bytes;
}

// Minimum file size of a region: 64 + nslots * slot_size. Both factors are < 2^32, so the product fits.
constexpr std::uint64_t region_min_bytes(std::uint32_t nslots, std::uint32_t slot_size) noexcept {
    return kSuperblockBytes + static_cast<std::uint64_t>(nslots) * slot_size;
}

}  // namespace tensorpool::shm
