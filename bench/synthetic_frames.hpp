// Synthetic frames whose every 8-byte word is a function of the frame's seq, so that a consumer can prove a
// payload it accepted is exactly the one that was written (any torn or mixed read fails check_frame()).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace tensorpool::bench {

inline uint64_t frame_word(uint64_t seq, std::size_t i) noexcept { return seq * 0x9E3779B97F4A7C15ull ^ (i + 1) * 0xD6E8FEB86659FD93ull; }

inline void fill_frame(std::span<std::byte> p, uint64_t seq) noexcept {
    const std::size_t words = p.size() / 8;
    for (std::size_t i = 0; i < words; ++i) {
        const uint64_t w = frame_word(seq, i);
        std::memcpy(p.data() + i * 8, &w, 8);
    }
    const uint64_t last = frame_word(seq, words);
    std::memcpy(p.data() + words * 8, &last, p.size() - words * 8);
}

inline bool check_frame(std::span<const std::byte> p, uint64_t seq) noexcept {
    const std::size_t words = p.size() / 8;
    for (std::size_t i = 0; i < words; ++i) {
        uint64_t w;
        std::memcpy(&w, p.data() + i * 8, 8);
        if (w != frame_word(seq, i)) return false;
    }
    const uint64_t last = frame_word(seq, words);
    return std::memcmp(p.data() + words * 8, &last, p.size() - words * 8) == 0;
}

}  // namespace tensorpool::bench
