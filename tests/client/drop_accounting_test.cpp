// Drop accounting: seqs missing from the descriptor stream are drops_gap, exactly; frames whose slot was
// overwritten before the consumer got to them are drops_late, exactly, and are never accepted.
#include <gtest/gtest.h>

#include <set>

#include "client_test_support.hpp"
#include "tensorpool/wire/gen/control.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

// W-15.4-2, W-15.13-5, §3.4 "drop accounting" (drops_gap = seq - last_seq_seen - 1), W-15.4-4 (a gap larger than
// max_outstanding_seq_gap is a resync), W-10.2.1-1. The producer publishes its descriptors on a side stream; this
// process relays them to the consumer's descriptor stream and loses a chosen set on the way, as a lossy transport
// would. The frames themselves are all committed in SHM, so nothing but the gap may be counted.
TEST(ClientDropAccounting, SeqGapsInTheDescriptorStreamCountDropsGapExactly) {
    constexpr uint64_t kFrames = 100;
    const std::set<uint64_t> lost = {10, 20, 21, 22, 23, 24, 50, 51};  // gaps of 1, 5 (> 4: a resync) and 2

    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;
    ProducerConfig pcfg = test_producer_config(shm_dir.path(), 256);
    pcfg.channels.descriptor_stream = 1101;
    ProducerChild pc(bus.options(), pcfg);
    pc.burst = 4;
    pc.pace_us = 200;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.max_outstanding_seq_gap = 4;
    ConsumerChild cc(bus.options(), ccfg);

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });

    transport::TransportHub hub(bus.options());
    auto from = hub.add_subscription("ipc:tensorpool", 1101);
    ASSERT_TRUE(from) << from.error().message();
    auto to = hub.add_publication("ipc:tensorpool", 1100);
    ASSERT_TRUE(to) << to.error().message();

    ASSERT_TRUE(wait_until([&] { return prod->ready.load() == 1 && cons->mapped_epoch.load() == prod->epoch.load(); },
                           10s))
        << describe(*cons);
    prod->target.store(kFrames);

    uint64_t seen = 0;
    uint64_t relayed = 0;
    bool relay_ok = true;
    const auto deadline = Clock::now() + 20s;
    while (seen < kFrames && Clock::now() < deadline) {
        const int n = (*from)->poll(
            [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                auto d = wc::FrameDescriptor::Decoder::wrap(m.data(), m.size());
                if (!d || d->seq() != seen) relay_ok = false;  // the side stream itself must be lossless
                ++seen;
                if (d && lost.count(d->seq()) == 0) {
                    if (!(*to)->offer(m).ok()) relay_ok = false;
                    ++relayed;
                }
            },
            16);
        if (n == 0) pause_for(50us);
    }
    ASSERT_EQ(seen, kFrames);
    ASSERT_TRUE(relay_ok);
    const bool done =
        wait_until([&] { return cons->good.load() == relayed && cons->last_seq.load() == kFrames - 1; }, 20s);
    std::this_thread::sleep_for(100ms);
    prod->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    ASSERT_TRUE(done) << describe(*cons);

    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    EXPECT_EQ(relayed, kFrames - lost.size());
    EXPECT_EQ(cons->drops_gap.load(), lost.size()) << describe(*cons);
    EXPECT_EQ(cons->resyncs.load(), 1u);
    EXPECT_EQ(cons->drops_late.load(), 0u);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->drops_unmapped.load(), 0u);
    EXPECT_EQ(cons->good.load(), relayed);
    EXPECT_EQ(cons->frames_accepted.load(), relayed);
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
}

namespace {

// The consumer reads `before` frames, stops reading while the producer publishes `lapped` more on an `nslots` ring,
// then reads again until it has seen the last seq; both processes are stopped after. What the consumer counted is
// in `cons`.
struct LappedRun {
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;
};

::testing::AssertionResult run_lapped(LappedRun& r, uint32_t nslots, uint64_t before, uint64_t lapped, int burst) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    ProducerChild pc(bus.options(), test_producer_config(shm_dir.path(), nslots));
    pc.burst = burst;
    ConsumerChild cc(bus.options(), test_consumer_config(shm_dir.path()));
    ProducerShared& prod = *r.prod;
    ConsumerShared& cons = *r.cons;

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, cons); });
    const pid_t producer = procs.start([&] { return producer_main(pc, prod); });
    auto fail = [&](const char* what) { return ::testing::AssertionFailure() << what << ": " << describe(cons); };
    if (!wait_until([&] { return prod.ready.load() == 1 && cons.mapped_epoch.load() == prod.epoch.load(); }, 10s)) {
        return fail("the consumer did not map the producer");
    }
    prod.target.store(before);
    if (!wait_until([&] { return cons.good.load() == before; }, 20s)) return fail("the first frames did not arrive");
    cons.pause.store(1);
    if (!wait_until([&] { return cons.paused.load() == 1; }, 10s)) return fail("the consumer did not pause");
    prod.target.store(before + lapped);
    if (!wait_until([&] { return prod.published.load() == before + lapped; }, 20s)) return fail("not all published");
    cons.pause.store(0);
    const bool done = wait_until([&] { return cons.last_seq.load() == before + lapped - 1; }, 20s);
    std::this_thread::sleep_for(100ms);
    prod.stop.store(1);
    cons.stop.store(1);
    const ChildResult pr = procs.wait(producer, 30), cr = procs.wait(consumer, 30);
    if (!(pr == ChildResult::ok()) || !(cr == ChildResult::ok())) return fail("a child did not exit cleanly");
    if (!done) return fail("the consumer never reached the last seq");
    if (prod.errors.load() != 0) return ::testing::AssertionFailure() << prod.error.get();
    return ::testing::AssertionSuccess();
}

}  // namespace

// W-15.4-1 (the producer overwrites without waiting), W-15.4-2, W-15.3-2, W-10.2.1-11, W-8-19, §3.4 rule 6,
// W-15.13-5, A-18: the consumer stops reading descriptors while the producer laps a 16-slot ring many times; when
// it reads again, every frame whose slot now holds a newer seq is drops_late (not a gap, not invalid, never handed
// over), and the last 16, still in their slots, are accepted with the right payload.
TEST(ClientDropAccounting, SlotsOverwrittenBeforeTheyAreReadCountDropsLateExactly) {
    constexpr uint32_t kNslots = 16;
    constexpr uint64_t kBefore = 8;    // read normally (fewer than kNslots: cannot be lapped, however slow we are)
    constexpr uint64_t kLapped = 200;  // published while the consumer is not reading
    LappedRun run;
    ASSERT_TRUE(run_lapped(run, kNslots, kBefore, kLapped, 8));
    auto& cons = run.cons;
    EXPECT_EQ(cons->drops_late.load(), kLapped - kNslots) << describe(*cons);
    EXPECT_EQ(cons->good.load(), kBefore + kNslots);
    EXPECT_EQ(cons->frames_accepted.load(), kBefore + kNslots);
    EXPECT_EQ(cons->last_good_seq.load(), kBefore + kLapped - 1);
    EXPECT_EQ(cons->drops_gap.load(), 0u);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->torn.load(), 0u);
    EXPECT_EQ(cons->bad(), 0u) << "first bad seq " << cons->first_bad_seq.load() << " " << describe(*cons);
}

// W-15.4-4: lapped by far more than max_outstanding_seq_gap, the consumer does not read its way through every
// stale descriptor (at the producer's own pace it would never catch up): it jumps to the newest one. Every seq is
// still accounted for exactly once — accepted, late (read and found overwritten) or gap (jumped over) — and only
// the descriptors read before the jump are late.
TEST(ClientDropAccounting, ConsumerLappedFarBeyondTheGapLimitSkipsToTheNewestAndAccountsForEverySeq) {
    constexpr uint32_t kNslots = 16;
    constexpr uint64_t kBefore = 8;
    constexpr uint64_t kLapped = 3000;  // far more than max_outstanding_seq_gap (256)
    LappedRun run;
    ASSERT_TRUE(run_lapped(run, kNslots, kBefore, kLapped, 64));
    auto& cons = run.cons;

    const uint64_t accepted = cons->frames_accepted.load(), late = cons->drops_late.load(), gap = cons->drops_gap.load();
    EXPECT_EQ(accepted + late + gap, kBefore + kLapped) << describe(*cons);
    EXPECT_GE(cons->resyncs.load(), 1u);
    EXPECT_GE(accepted, kBefore + 1);              // the newest frame at least
    EXPECT_LE(late, 256u + 64u) << describe(*cons);  // read before the jump: within the gap limit plus one poll
    EXPECT_GT(gap, kLapped / 2) << "the stale descriptors were read one by one instead of jumped over";
    EXPECT_EQ(cons->good.load(), accepted);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
    std::printf("[ figures  ] lapped by %llu frames (ring %u): %llu accepted, %llu late, %llu jumped over\n",
                static_cast<unsigned long long>(kLapped), kNslots, static_cast<unsigned long long>(accepted),
                static_cast<unsigned long long>(late), static_cast<unsigned long long>(gap));
}
