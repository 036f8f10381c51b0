#include "tensorpool/common/crc32c.hpp"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace tensorpool {

namespace {

constexpr uint32_t kPoly = 0x82F63B78u;  // reflected Castagnoli polynomial

constexpr std::array<uint32_t, 256> make_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ kPoly : c >> 1;
        t[i] = c;
    }
    return t;
}
constexpr auto kTable = make_table();

uint32_t crc32c_table(const uint8_t* p, std::size_t n, uint32_t crc) noexcept {
    for (std::size_t i = 0; i < n; ++i) crc = kTable[(crc ^ p[i]) & 0xFFu] ^ (crc >> 8);
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t crc32c_sse42(const uint8_t* p, std::size_t n, uint32_t crc) noexcept {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t v;
        std::memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = static_cast<uint32_t>(c);
    while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
    return c32;
}

bool cpu_has_sse42() noexcept {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_SSE4_2) != 0;
}
#endif

}  // namespace

bool crc32c_hardware() noexcept {
#if defined(__x86_64__)
    static const bool has = cpu_has_sse42();
    return has;
#else
    return false;
#endif
}

uint32_t crc32c(std::span<const std::byte> data, uint32_t crc) noexcept {
    const auto* p = reinterpret_cast<const uint8_t*>(data.data());
    crc = ~crc;
#if defined(__x86_64__)
    if (crc32c_hardware()) return ~crc32c_sse42(p, data.size(), crc);
#endif
    return ~crc32c_table(p, data.size(), crc);
}

}  // namespace tensorpool
