// Frames flow from a producer process to a consumer process, both through offer() and through
// try_claim()/commit(), and arrive with the layout, metadata and payload that were published.
//
// Requirements: W-8-9, W-8-13..16, W-8-20..25 (a full seqlock cycle per frame, empty frames included),
// W-8-27, W-8-31 (payload trusted only after still_valid()), W-9-3 (smallest fitting pool), W-9-4 + A-27 (a frame
// no pool fits is dropped without using a seq, so consumers see no gap), W-10.2.1-1..7, -9, -10 (one descriptor per
// frame, after commit; layout only from SHM), A-29 (inferred strides), W-15.4-2 (no drops when nothing is lost),
// W-15.21-2 (accept only a stable committed word).
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

namespace {

constexpr uint64_t kFrames = 240;    // 40 of each frame kind, half by offer() and half by try_claim()
constexpr uint64_t kHookAtSeq = 50;  // where the producer checks its refusals

// The producer API's refusals, checked in the producer process before frame kHookAtSeq: none of them may use up
// a seq or leave the producer unable to publish the next frame.
bool check_refusals(Producer& p, std::string& why) {
    const uint64_t seq = p.next_seq();
    std::vector<std::byte> big(kLargestFrame + 64);
    shm::TensorShape shape = frame_spec(0).shape;
    // W-9-4: no pool fits -> dropped, counted, no seq used.
    PublishResult r = p.offer(shape, big);
    if (r.outcome != PublishOutcome::no_pool_fits || p.next_seq() != seq) {
        why = "offer() of a frame larger than every pool was not refused as no_pool_fits";
        return false;
    }
    FrameClaim claim;
    r = p.try_claim(static_cast<uint32_t>(big.size()), claim);
    if (r.outcome != PublishOutcome::no_pool_fits || claim.active() || p.next_seq() != seq) {
        why = "try_claim() larger than every pool was not refused as no_pool_fits";
        return false;
    }
    // An open claim blocks offer(); aborting it uses up nothing.
    r = p.try_claim(100, claim);
    if (!claim.active() || r.seq != seq) {
        why = "try_claim(100) failed";
        return false;
    }
    r = p.offer(shape, std::span<const std::byte>(big.data(), 128));
    if (r.outcome != PublishOutcome::invalid || p.next_seq() != seq) {
        why = "offer() while a claim is open was not refused";
        return false;
    }
    claim.abort();
    if (claim.active() || p.next_seq() != seq) {
        why = "abort() left the claim active or used a seq";
        return false;
    }
    {
        FrameClaim dropped;  // destroyed open: aborted
        if (!p.try_claim(64, dropped).committed() || !dropped.active()) {
            why = "try_claim(64) after abort() failed";
            return false;
        }
    }
    if (p.next_seq() != seq) {
        why = "a claim destroyed without commit used a seq";
        return false;
    }
    return true;
}

}  // namespace

TEST(ClientFramesFlow, OfferAndClaimFramesArriveWithLayoutPayloadAndConsistentStats) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;

    ProducerChild pc{bus.options(), test_producer_config(shm_dir.path(), 256)};
    pc.hook = check_refusals;
    pc.hook_at_seq = kHookAtSeq;
    pc.burst = 4;
    pc.pace_us = 200;
    ConsumerChild cc{bus.options(), test_consumer_config(shm_dir.path())};

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    ASSERT_TRUE(wait_until([&] { return cons->ready.load() == 1; }, 10s));
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    ASSERT_TRUE(wait_until([&] { return cons->mapped() && cons->mapped_epoch.load() == prod->epoch.load(); }, 10s))
        << describe(*cons);

    prod->target.store(kFrames);
    const bool all = wait_until([&] { return cons->good.load() >= kFrames; }, 30s);
    // A moment for anything unexpected (a duplicate, a late drop) to show up in the counters.
    std::this_thread::sleep_for(100ms);
    prod->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    ASSERT_TRUE(all) << describe(*cons) << " " << describe(*prod);

    // Producer side.
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    EXPECT_EQ(prod->published.load(), kFrames);
    EXPECT_EQ(prod->frames_committed.load(), kFrames);
    EXPECT_EQ(prod->frames_no_pool.load(), 2u);  // one offer(), one try_claim()
    EXPECT_EQ(prod->descriptors_not_sent.load(), 0u);
    EXPECT_GE(prod->announces_sent.load(), 1u);

    // Consumer side: every frame, each exactly once, each checked (layout, metadata, payload bytes + checksum).
    EXPECT_EQ(cons->good.load(), kFrames) << describe(*cons);
    EXPECT_EQ(cons->bad(), 0u) << "first bad seq " << cons->first_bad_seq.load() << " " << describe(*cons);
    EXPECT_EQ(cons->torn.load(), 0u);
    EXPECT_EQ(cons->frames_accepted.load(), kFrames);
    EXPECT_EQ(cons->drops_gap.load(), 0u);  // no seq was used by the refused frames
    EXPECT_EQ(cons->drops_late.load(), 0u);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->drops_unmapped.load(), 0u);
    EXPECT_EQ(cons->torn_detected.load(), 0u);
    EXPECT_EQ(cons->resyncs.load(), 0u);
    EXPECT_EQ(cons->last_seq.load(), kFrames - 1);
    EXPECT_EQ(cons->mappings.load(), 1u);
    EXPECT_EQ(cons->mapping_failures.load(), 0u);
    EXPECT_GE(cons->announces_accepted.load(), 1u);
    EXPECT_EQ(cons->good_in_epoch(prod->epoch.load()), kFrames);
}
