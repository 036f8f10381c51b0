// Seqlock single-thread semantics: WIRE_SPEC §3.1-3.3, W-8-10, W-8-23..27, W-8-31, W-15.3-1.
#include <gtest/gtest.h>

#include <cstring>

#include "tensorpool/shm/seqlock.hpp"

using namespace tensorpool::shm;

namespace {

struct alignas(64) FakeSlot {
    std::byte bytes[kHeaderSlotBytes]{};
};

SlotImage patterned_image(std::uint8_t salt) {
    SlotImage img;
    for (std::size_t i = 0; i < kHeaderSlotBytes; ++i) img.bytes[i] = static_cast<std::byte>(i * 7 + salt);
    return img;
}

}  // namespace

TEST(Seqlock, W_8_26_ZeroedSlotReadsAsSeqZeroInProgress) {
    FakeSlot slot;
    ReadTicket t;
    EXPECT_EQ(t.begin(slot.bytes, 0), ReadBegin::not_committed);
    EXPECT_EQ(t.begin_any(slot.bytes), ReadBegin::not_committed);
}

TEST(Seqlock, W_8_31_AnUnbegunTicketIsNeverValid) {
    FakeSlot slot;
    ReadTicket t;
    EXPECT_FALSE(t.still_valid());
    ASSERT_EQ(t.begin(slot.bytes, 3), ReadBegin::not_committed);
    EXPECT_FALSE(t.still_valid());
    seqlock_begin_write(slot.bytes, 3);
    seqlock_commit(slot.bytes, 3);
    ASSERT_EQ(t.begin(slot.bytes, 3), ReadBegin::ok);
    EXPECT_TRUE(t.still_valid());
    ASSERT_EQ(t.begin(slot.bytes, 4), ReadBegin::stale);
    EXPECT_FALSE(t.still_valid());  // a refused begin() ends the previous read
}

// W-15.18-1: step 4 of the producer's algorithm.
TEST(Seqlock, W_8_23_BeginWriteMarksInProgress) {
    FakeSlot slot;
    seqlock_begin_write(slot.bytes, 5);
    std::uint64_t w;
    std::memcpy(&w, slot.bytes, 8);
    EXPECT_EQ(w, 5u << 1);
    ReadTicket t;
    EXPECT_EQ(t.begin(slot.bytes, 5), ReadBegin::not_committed);
}

// W-15.18-1: step 8 of the producer's algorithm.
TEST(Seqlock, W_8_25_CommitPublishesAndTheCopyMatches) {
    FakeSlot slot;
    const SlotImage img = patterned_image(3);
    seqlock_begin_write(slot.bytes, 42);
    seqlock_store_header(slot.bytes, img);
    seqlock_commit(slot.bytes, 42);
    std::uint64_t w;
    std::memcpy(&w, slot.bytes, 8);
    EXPECT_EQ(w, (42u << 1) | 1u);
    // Bytes 8..255 were written from the image; bytes 0..7 are the commit word, not the image.
    EXPECT_EQ(std::memcmp(slot.bytes + 8, img.data() + 8, kHeaderSlotBytes - 8), 0);

    ReadTicket t;
    ASSERT_EQ(t.begin(slot.bytes, 42), ReadBegin::ok);
    EXPECT_EQ(t.seq(), 42u);
    EXPECT_EQ(t.commit_word(), w);
    // A frame read copies the field bytes only (W-8-18: the TensorHeader padding is ignored); the rest reads zero.
    EXPECT_EQ(std::memcmp(t.header().data(), slot.bytes, kSlotFieldWordsEnd), 0);
    for (std::size_t i = kSlotFieldWordsEnd; i < kHeaderSlotBytes; ++i) EXPECT_EQ(t.header().bytes[i], std::byte{0}) << i;
    EXPECT_TRUE(t.still_valid());
    // begin_any (tools) copies the whole slot, padding included.
    ASSERT_EQ(t.begin_any(slot.bytes), ReadBegin::ok);
    EXPECT_EQ(std::memcmp(t.header().data(), slot.bytes, kHeaderSlotBytes), 0);
}

TEST(Seqlock, AFrameReadAfterAToolReadLeavesNoPaddingOfTheOtherSlot) {
    FakeSlot a, b;
    seqlock_begin_write(a.bytes, 1);
    seqlock_store_header(a.bytes, patterned_image(1));
    seqlock_commit(a.bytes, 1);
    seqlock_begin_write(b.bytes, 2);
    seqlock_store_header(b.bytes, patterned_image(2));
    seqlock_commit(b.bytes, 2);
    ReadTicket t;
    ASSERT_EQ(t.begin_any(a.bytes), ReadBegin::ok);
    ASSERT_EQ(t.begin(b.bytes, 2), ReadBegin::ok);
    EXPECT_EQ(std::memcmp(t.header().data(), b.bytes, kSlotFieldWordsEnd), 0);
    for (std::size_t i = kSlotFieldWordsEnd; i < kHeaderSlotBytes; ++i) EXPECT_EQ(t.header().bytes[i], std::byte{0}) << i;
}

TEST(Seqlock, W_8_27_OverwriteInvalidatesAnOpenTicket) {
    FakeSlot slot;
    seqlock_begin_write(slot.bytes, 1);
    seqlock_store_header(slot.bytes, patterned_image(1));
    seqlock_commit(slot.bytes, 1);
    ReadTicket t;
    ASSERT_EQ(t.begin(slot.bytes, 1), ReadBegin::ok);
    const SlotImage before = t.header();

    seqlock_begin_write(slot.bytes, 5);  // the producer laps the ring
    EXPECT_FALSE(t.still_valid());
    seqlock_store_header(slot.bytes, patterned_image(9));
    seqlock_commit(slot.bytes, 5);
    EXPECT_FALSE(t.still_valid());
    // The copy is private: the live slot changed, the ticket's header did not.
    EXPECT_EQ(std::memcmp(t.header().data(), before.data(), kHeaderSlotBytes), 0);
}

// W-15.21-4, A-9: a committed slot of another seq is always dropped.
TEST(Seqlock, W_8_9_SeqMustMatch) {
    FakeSlot slot;
    seqlock_begin_write(slot.bytes, 10);
    seqlock_commit(slot.bytes, 10);
    ReadTicket t;
    EXPECT_EQ(t.begin(slot.bytes, 14), ReadBegin::stale);        // W-15.3-1: older than asked
    EXPECT_EQ(t.begin(slot.bytes, 6), ReadBegin::overwritten);   // newer: the asked frame is gone
    EXPECT_EQ(t.begin(slot.bytes, 10), ReadBegin::ok);
    ASSERT_EQ(t.begin_any(slot.bytes), ReadBegin::ok);
    EXPECT_EQ(t.seq(), 10u);
}

TEST(Seqlock, W_8_10_CommitWordEncoding) {
    EXPECT_EQ(in_progress_word(0), 0u);
    EXPECT_EQ(committed_word(0), 1u);
    EXPECT_EQ(committed_word(7), 15u);
    EXPECT_EQ(in_progress_word(7), 14u);
    EXPECT_EQ(committed_word((1ull << 62) + 3) >> 1, (1ull << 62) + 3);
    EXPECT_STRNE(read_begin_name(ReadBegin::stale), read_begin_name(ReadBegin::overwritten));
}

// W-6-3: slot 0 starts at the superblock size, 64, a constant.
TEST(SlotLayout, W_8_1_W_9_1_Offsets) {
    EXPECT_EQ(header_slot_offset(0), 64u);
    EXPECT_EQ(header_slot_offset(3), 64u + 3 * 256);
    EXPECT_EQ(payload_slot_offset(0, 4096), 64u);
    EXPECT_EQ(payload_slot_offset(7, 640 * 1024), 64u + 7ull * 640 * 1024);
    EXPECT_EQ(header_index(8, 8), 0u);
    EXPECT_EQ(header_index(13, 8), 5u);
    EXPECT_EQ(header_index(~0ull, 1), 0u);
    EXPECT_EQ(region_min_bytes(8, 256), 64u + 2048);
    EXPECT_EQ(region_min_bytes(0x80000000u, 0xFFFFFFC0u), 64u + 0x80000000ull * 0xFFFFFFC0ull);
    EXPECT_TRUE(is_power_of_two(1));
    EXPECT_TRUE(is_power_of_two(1u << 31));
    EXPECT_FALSE(is_power_of_two(0));
    EXPECT_FALSE(is_power_of_two(6));
}
