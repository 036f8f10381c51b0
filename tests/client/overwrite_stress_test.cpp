// Heavy overwrite: a producer process laps a 2-slot ring as fast as it can while four consumer processes read
// every descriptor they get. Frames overwritten before or while they are read must be late drops — including
// those whose private header copy was taken while the producer rewrote the slot (a torn header may look
// malformed, but it is a seqlock failure, not a malformed header: A-18) — and none may be accepted bad.
//
// Requirements: W-15.13-2, W-15.3-2, W-15.4-2, W-15.13-5, §3.3 steps 6-7, §3.4 rules 4-6 + drop accounting, A-8,
// A-18, W-8-27, W-8-31.
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

TEST(ClientOverwriteStress, FramesOverwrittenWhileReadAreLateDropsNeverInvalidNeverAccepted) {
#ifdef TP_UNDER_ASAN
    constexpr auto kDuration = 3s;
#else
    constexpr auto kDuration = 4s;
#endif
    constexpr auto kMaxDuration = 30s;
    constexpr int kConsumers = 4;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<std::array<ConsumerShared, kConsumers>> cons;
    ProducerChild pc(bus.options(), test_producer_config(shm_dir.path(), 2));
    pc.continuous = true;
    pc.burst = 64;
    Processes procs;
    std::vector<pid_t> consumers;
    for (int i = 0; i < kConsumers; ++i) {
        ConsumerChild cc(bus.options(), test_consumer_config(shm_dir.path()));
        cc.validate_twice = i % 2 == 1;  // half of them ask still_valid() twice per frame
        ConsumerShared& sh = (*cons)[i];
        consumers.push_back(procs.start([&] { return consumer_main(cc, sh); }));
    }
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    // Race for kDuration, and on (up to kMaxDuration) until a torn read that was visibly wrong has been seen: the
    // negative control below needs that proof, which a heavily loaded machine may take longer to produce.
    std::this_thread::sleep_for(kDuration);
    wait_until([&] {
        for (const auto& c : *cons) {
            if (c.torn_bad.load() > 0) return true;
        }
        return false;
    }, kMaxDuration - kDuration);
    prod->stop.store(1);
    for (auto& c : *cons) c.stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    for (pid_t pid : consumers) EXPECT_EQ(procs.wait(pid, 30), ChildResult::ok());
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();

    uint64_t torn_bad = 0;
    for (int i = 0; i < kConsumers; ++i) {
        const ConsumerShared& c = (*cons)[i];
        torn_bad += c.torn_bad.load();
        SCOPED_TRACE("consumer " + std::to_string(i) + " " + describe(c));
        std::printf("[ figures  ] consumer %d: %s\n", i, describe(c).c_str());
        EXPECT_EQ(c.bad(), 0u) << "first bad seq " << c.first_bad_seq.load();
        EXPECT_GT(c.good.load(), 0u);
        EXPECT_GT(c.drops_late.load(), 0u);  // the ring really was lapped
        EXPECT_EQ(c.drops_invalid.load(), 0u);
        EXPECT_EQ(c.frames_accepted.load(), c.good.load() + c.torn.load());
        EXPECT_EQ(c.torn_detected.load(), c.torn.load());
    }
    std::printf("[ figures  ] producer: %s\n", describe(*prod).c_str());
    // Negative control: payloads that still_valid() rejected were really torn often enough for the checker to see
    // it, so the checker would have caught a torn frame accepted as good.
    EXPECT_GT(torn_bad, 0u);
}
