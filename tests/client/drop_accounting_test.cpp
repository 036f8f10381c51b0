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
// max_outstanding_seq_gap is a resync), W-10.2.1-1, W-15.18-2 (each lost descriptor is dropped and counted once, as
// drops_gap, and the consumer goes on with the next). The producer publishes its descriptors on a side stream; this
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

// W-15.4-1 (the producer overwrites without waiting), W-15.4-3 (no back pressure: the producer publishes all 200
// frames while the consumer reads nothing), W-15.4-2, W-15.3-2, W-10.2.1-11, W-8-19, §3.4 rule 6, W-15.13-5, A-18:
// the consumer stops reading descriptors while the producer laps a 16-slot ring many times; when it reads again,
// every frame whose slot now holds a newer seq is drops_late (not a gap, not invalid, never handed over), and the
// last 16, still in their slots, are accepted with the right payload. W-15.18-2, W-15.21-6: each stale descriptor
// is dropped and counted exactly once and never retried (late + accepted is exactly every seq, and the consumer
// carries on to the newest frame).
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

// ---- in one process ----------------------------------------------------------------------------------------------

// W-10.4.1-1: the consumer's periodic QosConsumer carries its drop counters — drops_gap for seqs it never saw and
// drops_late for a frame whose slot did not hold it — with the last seq seen, the mapped epoch and its mode, so a
// supervisor can see the losses without asking. A forged descriptor for seq 2 (seq 1 never sent, slot 2 never
// written) makes exactly one of each.
TEST(ClientDropAccounting, W_10_4_1_1_QosConsumerCarriesTheDropCounters) {
    InProcess t;
    auto qos = t.hub.add_subscription("ipc:tensorpool", 1200);
    auto forger = t.hub.add_publication("ipc:tensorpool", 1100);
    ASSERT_TRUE(qos.ok() && forger.ok());
    ConsumerConfig cfg = test_consumer_config("");
    cfg.consumer_id = 77;
    cfg.qos_period_ns = 50'000'000;
    ASSERT_EQ(t.start({cfg}), "");
    Producer& p = t.p();
    Consumer& c = t.c();
    uint64_t accepted = 0;
    auto spin = [&](auto pred) {
        return t.spin(pred, [&] { c.poll_frames([&](const FrameView& f) { accepted += f.still_valid(); }, 8); });
    };
    ASSERT_TRUE(spin([&] { return t.all_mapped(); })) << t.mapping_errors();

    std::vector<std::byte> payload(64);
    ASSERT_EQ(p.offer(byte_shape(64), payload).seq, 0u);
    ASSERT_TRUE(spin([&] { return accepted == 1; }));
    ASSERT_TRUE((*forger)->offer(forge_descriptor(p.epoch(), 2)).ok());
    ASSERT_TRUE(spin([&] { return c.stats().last_seq == 2; }));
    EXPECT_EQ(c.stats().drops_gap, 1u);
    EXPECT_EQ(c.stats().drops_late, 1u);
    EXPECT_EQ(accepted, 1u);

    struct Qos {
        uint64_t epoch, last_seq, gap, late;
        wc::Mode mode;
    };
    std::optional<Qos> seen;
    auto read_qos = [&] {
        (*qos)->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
            auto d = wc::QosConsumer::Decoder::wrap(m.data(), m.size());
            if (!d || d->consumerId() != 77 || d->streamId() != 10000) return;
            if (d->dropsGap() == 1 && d->dropsLate() == 1) {
                seen = Qos{d->epoch(), d->lastSeqSeen(), d->dropsGap(), d->dropsLate(), d->mode()};
            }
        }, 64);
        return seen.has_value();
    };
    ASSERT_TRUE(spin(read_qos)) << "no QosConsumer with dropsGap 1 and dropsLate 1";
    EXPECT_EQ(seen->epoch, p.epoch());
    EXPECT_EQ(seen->last_seq, 2u);
    EXPECT_EQ(seen->mode, wc::Mode::STREAM);
}

// W-15.2-4, A-12: a FrameDescriptor whose seq goes backwards within the mapped epoch (here: frame 3's descriptor
// again, after frame 9) means the consumer's view of the stream can no longer be trusted: it unmaps at once,
// counts that descriptor as drops_unmapped (nothing is handed over, frame 3 is not accepted twice), maps again from
// the next announce of the same epoch, and restarts seq tracking, so the next frame is no gap. The producer sends
// its descriptors to a side stream; the test relays them and keeps them, to send one again.
TEST(ClientDropAccounting, W_15_2_4_DescriptorSeqGoingBackwardsWithinTheEpochRemaps) {
    InProcess t;
    auto from = t.hub.add_subscription("ipc:tensorpool", 1101);
    auto to = t.hub.add_publication("ipc:tensorpool", 1100);
    ASSERT_TRUE(from.ok() && to.ok());
    ProducerConfig pcfg = test_producer_config("", 64);
    pcfg.channels.descriptor_stream = 1101;
    ASSERT_EQ(t.start(pcfg, {test_consumer_config("")}), "");
    Producer& p = t.p();
    Consumer& c = t.c();
    uint64_t accepted = 0;
    uint64_t last_accepted = 0;
    auto spin = [&](auto pred) {
        return t.spin(pred, [&] {
            c.poll_frames([&](const FrameView& f) {
                if (!f.still_valid()) return;
                ++accepted;
                last_accepted = f.seq();
            }, 16);
        });
    };
    std::vector<std::vector<uint8_t>> kept;  // every descriptor, by seq
    auto relay = [&] {
        (*from)->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
            kept.emplace_back(m.begin(), m.end());
            EXPECT_TRUE((*to)->offer(m).ok());
        }, 64);
    };
    std::vector<std::byte> payload(64);
    auto publish = [&] { return p.offer(byte_shape(64), payload).committed(); };
    ASSERT_TRUE(spin([&] { return t.all_mapped(); })) << t.mapping_errors();

    for (int i = 0; i < 10; ++i) ASSERT_TRUE(publish());
    relay();
    ASSERT_EQ(kept.size(), 10u);
    ASSERT_TRUE(spin([&] { return accepted == 10; }));
    EXPECT_EQ(c.stats().last_seq, 9u);

    // Frame 3's descriptor again: backwards within the epoch.
    auto d3 = wc::FrameDescriptor::Decoder::wrap(kept[3].data(), kept[3].size());
    ASSERT_TRUE(d3.ok());
    ASSERT_EQ(d3->seq(), 3u);
    ASSERT_TRUE((*to)->offer(kept[3]).ok());
    int polled = 0;
    ASSERT_TRUE(wait_until([&] {
        polled += c.poll_frames([&](const FrameView&) { ++accepted; }, 16);
        return polled == 1;
    }, 10s));
    EXPECT_EQ(c.state(), MappingState::unmapped);
    EXPECT_NE(c.last_mapping_error().find("went backwards"), std::string::npos) << c.last_mapping_error();
    EXPECT_EQ(c.stats().drops_unmapped, 1u);
    EXPECT_EQ(c.stats().frames_accepted, 10u);
    EXPECT_EQ(accepted, 10u);

    // The next announce of the same epoch maps it again.
    ASSERT_TRUE(spin([&] { return c.state() == MappingState::mapped; })) << c.last_mapping_error();
    EXPECT_EQ(c.stats().mappings, 2u);
    EXPECT_EQ(c.mapped_epoch(), p.epoch());
    ASSERT_TRUE(publish());
    relay();
    ASSERT_EQ(kept.size(), 11u);
    ASSERT_TRUE(spin([&] { return accepted == 11; }));
    EXPECT_EQ(last_accepted, 10u);
    EXPECT_EQ(c.stats().drops_gap, 0u);  // seq tracking restarted with the mapping
    EXPECT_EQ(c.stats().drops_late, 0u);
    EXPECT_EQ(c.stats().drops_unmapped, 1u);
}
