// Superblock encode/decode and validation: WIRE_SPEC §2.2, W-6-*, W-7-*, W-15.1-1, W-15.5-1, W-15.22-9, A-1, A-14,
//
#include <gtest/gtest.h>

#include <cstring>

#include "tensorpool/shm/superblock.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;

namespace {

std::array<std::uint8_t, 64> encode(const Superblock& sb) {
    std::array<std::uint8_t, 64> raw{};
    auto s = encode_superblock(sb, std::span<std::uint8_t, 64>(raw));
    EXPECT_TRUE(s.ok()) << s.error().message();
    return raw;
}

template <class T>
T at(const std::array<std::uint8_t, 64>& raw, std::size_t off) {
    T v;
    std::memcpy(&v, raw.data() + off, sizeof v);
    return v;
}

void expect_invalid(const Superblock& sb, std::uint64_t file_bytes, const SuperblockExpectations& e, Errc code,
                    const char* needle) {
    auto s = validate_superblock(sb, file_bytes, e);
    ASSERT_FALSE(s.ok()) << "expected a rejection mentioning '" << needle << "'";
    EXPECT_EQ(s.error().code(), code) << s.error().message();
    EXPECT_NE(std::string(s.error().message()).find(needle), std::string::npos)
        << "message '" << s.error().message() << "' does not mention '" << needle << "'";
}

Superblock ring() {
    Superblock sb = Superblock::header_ring(10000, 3, 8);
    sb.pid = 9788;
    return sb;
}
Superblock pool() { return Superblock::payload_pool(10000, 3, 1, 8, 64); }

}  // namespace

// W-6-2, A-2, A-42: little-endian fields at the schema's offsets (epoch unaligned at 12, the heartbeat at 56), layout_version 1.
TEST(Superblock, W_7_6_EncodesAtTheSpecOffsets) {
    Superblock sb = ring();
    sb.start_timestamp_ns = 0x1112131415161718ull;
    sb.activity_timestamp_ns = 0x2122232425262728ull;
    const auto raw = encode(sb);
    // the magic is a little-endian u64; its bytes are "1MHSLPOT".
    EXPECT_EQ(std::memcmp(raw.data(), "\x31\x4D\x48\x53\x4C\x50\x4F\x54", 8), 0);
    EXPECT_EQ(at<std::uint32_t>(raw, 8), 1u);         // layoutVersion
    EXPECT_EQ(at<std::uint64_t>(raw, 12), 3u);        // epoch, unaligned
    EXPECT_EQ(at<std::uint32_t>(raw, 20), 10000u);    // streamId
    EXPECT_EQ(at<std::int16_t>(raw, 24), 1);          // regionType HEADER_RING
    EXPECT_EQ(at<std::uint16_t>(raw, 26), 0u);        // poolId
    EXPECT_EQ(at<std::uint32_t>(raw, 28), 8u);        // nslots
    EXPECT_EQ(at<std::uint32_t>(raw, 32), 256u);      // slotBytes
    EXPECT_EQ(at<std::uint32_t>(raw, 36), 0u);        // strideBytes: the C reference's 0 for a ring
    EXPECT_EQ(at<std::uint64_t>(raw, 40), 9788u);     // pid
    EXPECT_EQ(at<std::uint64_t>(raw, 48), sb.start_timestamp_ns);
    EXPECT_EQ(at<std::uint64_t>(raw, 56), sb.activity_timestamp_ns);
    const auto p = encode(pool());
    EXPECT_EQ(at<std::int16_t>(p, 24), 2);            // PAYLOAD_POOL
    EXPECT_EQ(at<std::uint16_t>(p, 26), 1u);
    EXPECT_EQ(at<std::uint32_t>(p, 32), 0xFFFFFFFFu); // slotBytes: the C reference's filler for a pool
    EXPECT_EQ(at<std::uint32_t>(p, 36), 64u);
}

TEST(Superblock, W_7_6_RoundTrips) {
    Superblock sb = pool();
    sb.pid = 1234;
    sb.start_timestamp_ns = 5;
    sb.activity_timestamp_ns = 6;
    const auto raw = encode(sb);
    EXPECT_EQ(decode_superblock(std::span<const std::uint8_t, 64>(raw)), sb);
}

TEST(Superblock, ValidRegionsPass) {
    EXPECT_TRUE(validate_superblock(ring(), 64 + 8 * 256, SuperblockExpectations::for_header_ring(10000, 3, 8)).ok());
    EXPECT_TRUE(validate_superblock(pool(), 64 + 8 * 64, SuperblockExpectations::for_pool(10000, 3, 1, 8, 64)).ok());
    EXPECT_TRUE(validate_superblock(ring(), 64 + 8 * 256, SuperblockExpectations::any()).ok());
}

// W-15.13-1: a wrong (or byte-swapped) magic fails closed.
TEST(Superblock, W_7_5_RejectsWrongMagic) {
    Superblock sb = ring();
    sb.magic = 0x544F504C53484D32ull;
    expect_invalid(sb, 4096, {}, Errc::malformed, "magic");
    sb.magic = 0x314D48534C504F54ull;  // the byte-swapped value: still wrong
    expect_invalid(sb, 4096, {}, Errc::malformed, "expected 0x544f504c53484d31");
}

// W-15.13-1, A-42: a layout version other than 1 fails closed.
TEST(Superblock, W_7_7_RejectsOtherLayoutVersions) {
    Superblock sb = ring();
    sb.layout_version = 2;
    expect_invalid(sb, 4096, {}, Errc::unsupported, "layout_version is 2");
}

TEST(Superblock, RejectsUnknownRegionType) {
    Superblock sb = ring();
    sb.region_type = static_cast<RegionType>(3);
    expect_invalid(sb, 4096, {}, Errc::malformed, "region_type is 3");
}

TEST(Superblock, W_7_9_HeaderRingPoolIdMustBeZero) {
    Superblock sb = ring();
    sb.pool_id = 1;
    expect_invalid(sb, 4096, {}, Errc::malformed, "pool_id is 1; expected 0");
}

TEST(Superblock, A_15_HeaderRingChecksOnlySlotBytes) {
    Superblock sb = ring();
    sb.slot_bytes = 128;
    expect_invalid(sb, 4096, {}, Errc::malformed, "slot_bytes is 128; expected 256");
    sb = ring();
    sb.stride_bytes = 12345;  // does not apply to a ring: ignored
    EXPECT_TRUE(validate_superblock(sb, 4096, SuperblockExpectations::for_header_ring(10000, 3, 8)).ok());
}

TEST(Superblock, A_15_PoolChecksOnlyStrideBytes) {
    Superblock sb = pool();
    sb.slot_bytes = 7;  // does not apply to a pool: ignored
    EXPECT_TRUE(validate_superblock(sb, 4096, SuperblockExpectations::for_pool(10000, 3, 1, 8, 64)).ok());
}

// W-15.22-10: a stride that is no page size (192) is accepted.
TEST(Superblock, W_15_22_9_PoolStrideIsANonZeroMultipleOf64) {
    Superblock sb = pool();
    sb.stride_bytes = 0;
    expect_invalid(sb, 1 << 20, {}, Errc::malformed, "stride_bytes is 0");
    sb.stride_bytes = 100;
    expect_invalid(sb, 1 << 20, {}, Errc::malformed, "non-zero multiple of 64");
    sb.stride_bytes = 192;  // a multiple of 64 that is not a power of two is fine (v1.2)
    EXPECT_TRUE(validate_superblock(sb, 1 << 20, {}).ok());
    sb.stride_bytes = 640 * 1024;
    EXPECT_TRUE(validate_superblock(sb, 64 + 8ull * 640 * 1024, {}).ok());
}

TEST(Superblock, A_16_NslotsIsANonZeroPowerOfTwo) {
    Superblock sb = ring();
    sb.nslots = 0;
    expect_invalid(sb, 1 << 20, {}, Errc::malformed, "nslots is 0");
    sb.nslots = 6;
    expect_invalid(sb, 1 << 20, {}, Errc::malformed, "nslots is 6; expected a non-zero power of two");
    sb.nslots = 1;
    EXPECT_TRUE(validate_superblock(sb, 1 << 20, {}).ok());
}

TEST(Superblock, A_33_FileMustHoldEverySlotButMayBeLarger) {
    expect_invalid(ring(), 64 + 8 * 256 - 1, {}, Errc::truncated, "needs at least 2112");
    expect_invalid(pool(), 64 + 7 * 64, {}, Errc::truncated, "needs at least 576");
    EXPECT_TRUE(validate_superblock(ring(), 2 * 1024 * 1024, {}).ok());  // e.g. rounded up to a huge page
}

TEST(Superblock, W_15_1_1_ChecksTheAnnouncedValues) {
    const std::uint64_t big = 1 << 20;
    expect_invalid(ring(), big, SuperblockExpectations::for_pool(10000, 3, 1, 8, 64), Errc::mismatch,
                   "region_type is HEADER_RING; expected PAYLOAD_POOL");
    expect_invalid(ring(), big, SuperblockExpectations::for_header_ring(10001, 3, 8), Errc::mismatch,
                   "stream_id is 10000; expected 10001");
    expect_invalid(ring(), big, SuperblockExpectations::for_header_ring(10000, 4, 8), Errc::mismatch,
                   "epoch is 3; expected 4");
    expect_invalid(ring(), big, SuperblockExpectations::for_header_ring(10000, 3, 16), Errc::mismatch,
                   "nslots is 8; expected 16");
}

// W-9-5: every pool has the header ring's nslots.
TEST(Superblock, W_15_5_1_PoolNslotsMustEqualTheRings) {
    expect_invalid(pool(), 1 << 20, SuperblockExpectations::for_pool(10000, 3, 1, 16, 64), Errc::mismatch,
                   "nslots is 8; expected 16");
}

TEST(Superblock, W_7_10_PoolIdMustMatchTheAnnounce) {
    expect_invalid(pool(), 1 << 20, SuperblockExpectations::for_pool(10000, 3, 2, 8, 64), Errc::mismatch,
                   "pool_id is 1; expected 2");
    expect_invalid(pool(), 1 << 20, SuperblockExpectations::for_pool(10000, 3, 1, 8, 128), Errc::mismatch,
                   "stride_bytes is 64; expected 128");
}

// A-10, W-15.1-3: the announce carries no magic, so a consumer re-checks the mapped superblock's magic and epoch
// on each announce of its epoch (the consumer side: ClientAnnounceRules.W_15_1_3_...).
TEST(Superblock, A_14_RecheckDetectsReplacement) {
    Superblock a = ring();
    Superblock b = a;
    b.activity_timestamp_ns += 1'000'000'000;  // heartbeat moves: fine
    EXPECT_TRUE(recheck_identity(a, b).ok());
    b.pid = 1;
    EXPECT_FALSE(recheck_identity(a, b).ok());
    b = a;
    b.epoch = 4;
    EXPECT_FALSE(recheck_identity(a, b).ok());
    b = a;
    b.magic = 0;
    EXPECT_FALSE(recheck_identity(a, b).ok());
}

// W-15.14-7: a change of magic, layout_version or epoch forces a remap; the layout version is part of what is
// re-checked, and the error names both versions and the rule.
TEST(Superblock, W_15_14_7_RecheckDetectsALayoutVersionChange) {
    const Superblock a = ring();
    Superblock b = a;
    b.layout_version = a.layout_version + 1;
    const Status s = recheck_identity(a, b);
    ASSERT_FALSE(s.ok());
    const std::string message = s.error().message();
    EXPECT_NE(message.find("layout_version changed from 1 to 2"), std::string::npos) << message;
    EXPECT_NE(message.find("W-15.14-7"), std::string::npos) << message;
}
