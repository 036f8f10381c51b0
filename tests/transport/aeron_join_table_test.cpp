// The aeron backend's JoinTable (image correlation id -> join time), written by one thread and read by others
// without a lock. Header-only and free of Aeron types, so this runs whether or not Aeron is built.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "../../src/transport/aeron/join_table.hpp"

namespace tensorpool::transport::aeron_backend {
namespace {

int64_t join_of(int64_t id) { return id * 1000 + 7; }

TEST(AeronJoinTable, AddFindRemoveAndReuse) {
    auto t = std::make_unique<JoinTable>();
    int64_t j = 0;
    EXPECT_EQ(t->find(5, j), JoinTable::Lookup::absent);
    ASSERT_TRUE(t->add(5, 500));
    ASSERT_TRUE(t->add(6, 600));
    EXPECT_EQ(t->find(5, j), JoinTable::Lookup::found);
    EXPECT_EQ(j, 500);
    EXPECT_EQ(t->find(6, j), JoinTable::Lookup::found);
    EXPECT_EQ(j, 600);
    ASSERT_TRUE(t->add(5, 550));  // re-recorded, not duplicated
    EXPECT_EQ(t->find(5, j), JoinTable::Lookup::found);
    EXPECT_EQ(j, 550);
    t->remove(5);
    EXPECT_EQ(t->find(5, j), JoinTable::Lookup::absent);
    EXPECT_EQ(t->find(6, j), JoinTable::Lookup::found);
    ASSERT_TRUE(t->add(7, 700));  // takes the freed slot
    EXPECT_EQ(t->find(7, j), JoinTable::Lookup::found);
    EXPECT_EQ(j, 700);
    EXPECT_EQ(t->overflowed(), 0U);
}

TEST(AeronJoinTable, FullTableCountsTheOverflowAndKeepsWhatItHas) {
    auto t = std::make_unique<JoinTable>();
    for (int64_t id = 0; id < static_cast<int64_t>(JoinTable::kCapacity); ++id) ASSERT_TRUE(t->add(id, join_of(id)));
    EXPECT_FALSE(t->add(1'000'000, 1));
    EXPECT_EQ(t->overflowed(), 1U);
    int64_t j = 0;
    EXPECT_EQ(t->find(1'000'000, j), JoinTable::Lookup::absent);
    EXPECT_EQ(t->find(17, j), JoinTable::Lookup::found);
    EXPECT_EQ(j, join_of(17));
    t->remove(17);
    EXPECT_TRUE(t->add(1'000'000, 1));  // room again
}

// One writer adds and removes images the way the Aeron conductor does; readers must only ever see the join time
// that belongs to the id they asked for (a torn slot would pair one image's id with another's time).
TEST(AeronJoinTable, ReadersNeverSeeAMismatchedPairWhileTheWriterChurns) {
    auto t = std::make_unique<JoinTable>();
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> mismatches{0}, found{0};
    std::thread writer([&] {
        int64_t next = 0;
        std::vector<int64_t> live;
        while (!stop.load(std::memory_order_relaxed)) {
            // Keep ~40 live images; remove the oldest, add a new one (slots get reused constantly).
            if (live.size() >= 40) {
                t->remove(live.front());
                live.erase(live.begin());
            }
            const int64_t id = next % 4096;  // ids come back (long after removal), as slots do
            if (t->add(id, join_of(id))) live.push_back(id);
            ++next;
        }
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 2; ++r) {
        readers.emplace_back([&, r] {
            uint64_t x = 88172645463325252ULL + static_cast<uint64_t>(r);
            const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
            while (std::chrono::steady_clock::now() < end) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Ask for ids around the writer's current range.
                for (int64_t probe = 0; probe < 64; ++probe) {
                    const int64_t id = static_cast<int64_t>(x % 4096) + probe;
                    int64_t j = 0;
                    if (t->find(id, j) == JoinTable::Lookup::found) {
                        found.fetch_add(1, std::memory_order_relaxed);
                        if (j != join_of(id)) mismatches.fetch_add(1, std::memory_order_relaxed);
                    }
                }
            }
        });
    }
    for (auto& th : readers) th.join();
    stop = true;
    writer.join();
    EXPECT_EQ(mismatches.load(), 0U);
    EXPECT_GT(found.load(), 0U) << "the readers never overlapped the writer's ids";
}

}  // namespace
}  // namespace tensorpool::transport::aeron_backend
