#include "tensorpool/common/crc32c.hpp"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace tensorpool {
namespace {

std::span<const std::byte> bytes(std::string_view s) { return std::as_bytes(std::span(s.data(), s.size())); }

TEST(Crc32c, KnownAnswers) {
    EXPECT_EQ(crc32c(bytes("")), 0u);
    EXPECT_EQ(crc32c(bytes("123456789")), 0xE3069283u);  // the CRC-32C check value
    std::vector<std::byte> zeros(32);
    EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);                // RFC 3720 B.4: 32 bytes of zeros
}

TEST(Crc32c, ContinuesAcrossChunks) {
    const std::string_view s = "The quick brown fox jumps over the lazy dog, twice over, to cover odd tails";
    for (std::size_t cut = 0; cut <= s.size(); ++cut) {
        EXPECT_EQ(crc32c(bytes(s.substr(cut)), crc32c(bytes(s.substr(0, cut)))), crc32c(bytes(s))) << cut;
    }
}

}  // namespace
}  // namespace tensorpool
