// Little-endian loads and stores at any alignment.
//
// SBE packs fields without alignment, so many u64s sit at odd offsets (e.g. ShmRegionSuperblock.epoch at 12).
// memcpy is the only portable way to read them; compilers turn it into a single mov on x86-64 and aarch64.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tensorpool::wire {

static_assert(std::endian::native == std::endian::little,
              "tensorpool targets little-endian hosts only (WIRE_SPEC W-15.1-6)");

template <class T>
[[nodiscard]] inline T load_le(const uint8_t* p) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class T>
inline void store_le(uint8_t* p, T v) noexcept {
    static_assert(std::is_trivially_copyable_v<T>);
    std::memcpy(p, &v, sizeof v);
}

// Reads an unsigned little-endian integer of `size` bytes (1, 2 or 4): used for group dimensions and
// var-data length prefixes, whose widths come from the schema.
[[nodiscard]] inline uint64_t load_uint(const uint8_t* p, unsigned size) noexcept {
    switch (size) {
        case 1: return p[0];
        case 2: return load_le<uint16_t>(p);
        case 4: return load_le<uint32_t>(p);
        default: return load_le<uint64_t>(p);
    }
}

inline void store_uint(uint8_t* p, unsigned size, uint64_t v) noexcept {
    switch (size) {
        case 1: p[0] = static_cast<uint8_t>(v); break;
        case 2: store_le<uint16_t>(p, static_cast<uint16_t>(v)); break;
        case 4: store_le<uint32_t>(p, static_cast<uint32_t>(v)); break;
        default: store_le<uint64_t>(p, v); break;
    }
}

}  // namespace tensorpool::wire
