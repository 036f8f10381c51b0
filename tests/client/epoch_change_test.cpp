// A producer is SIGKILLed and another starts on the same stream with a new epoch and new files: the consumer
// drops everything still in flight from the old epoch, remaps to the new one and receives its frames.
//
// Requirements: W-10.1.1-5, -7 (keep the highest epoch; a changed epoch means remap and reset), W-10.2.1-8 (ignore
// descriptors of another epoch), W-15.2-2 (seq restarts at 0 in the new epoch, which is no gap and no "seq went
// backwards"), W-15.2-3 (drop stale frames, unmap, map again), W-15.13-3, -4 (a recreated producer is detected
// through its epoch), W-15.18-4 (restart seq tracking), W-15.21-7, -8 (epoch mismatch is a hard boundary: nothing
// of the old epoch is accepted after it), §6.2 (M1(E) -> M0 -> M1(E2)), A-12, A-37.
#include <gtest/gtest.h>

#include <fcntl.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

// W-15.2-1 (a restart with another layout has a higher epoch), W-10.1.1-1, W-15.12-1.
TEST(ClientEpochChange, KilledProducerReplacedByNewEpochDropsInFlightFramesAndRemaps) {
    constexpr uint64_t kFirst = 100;    // A's frames the consumer reads normally
    constexpr uint64_t kInFlight = 50;  // A's frames still unread when A dies
    constexpr uint64_t kSecond = 120;   // B's frames

    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> a;
    SharedBox<ProducerShared> b;
    SharedBox<ConsumerShared> cons;
    ProducerChild pa(bus.options(), test_producer_config(shm_dir.path(), 1024));
    ProducerChild pb(bus.options(), test_producer_config(shm_dir.path(), 512));  // a new layout, too
    pa.burst = pb.burst = 4;
    pa.pace_us = pb.pace_us = 200;
    ConsumerChild cc(bus.options(), test_consumer_config(shm_dir.path()));

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    const pid_t producer_a = procs.start([&] { return producer_main(pa, *a); });
    ASSERT_TRUE(wait_until([&] { return a->ready.load() == 1 && cons->mapped_epoch.load() == a->epoch.load(); }, 10s))
        << describe(*cons);
    const uint64_t epoch_a = a->epoch.load();

    // Phase 1: A's frames flow.
    a->target.store(kFirst);
    ASSERT_TRUE(wait_until([&] { return cons->good.load() == kFirst; }, 20s)) << describe(*cons);

    // Phase 2: the consumer stops reading descriptors; A publishes more, then dies with them unread.
    cons->pause.store(1);
    ASSERT_TRUE(wait_until([&] { return cons->paused.load() == 1; }, 10s));
    a->target.store(kFirst + kInFlight);
    ASSERT_TRUE(wait_until([&] { return a->published.load() == kFirst + kInFlight; }, 20s)) << describe(*a);
    EXPECT_EQ(procs.kill(producer_a), ChildResult::killed(SIGKILL));
    EXPECT_EQ(a->errors.load(), 0u) << a->error.get();

    // Phase 3: B starts on the same stream; the consumer (still not reading descriptors) remaps on B's announce.
    const pid_t producer_b = procs.start([&] { return producer_main(pb, *b); });
    ASSERT_TRUE(wait_until([&] { return b->ready.load() == 1; }, 10s));
    const uint64_t epoch_b = b->epoch.load();
    ASSERT_GT(epoch_b, epoch_a);  // the epoch comes from a source that grows across restarts
    ASSERT_TRUE(wait_until([&] { return cons->mapped_epoch.load() == epoch_b && cons->mapped(); }, 10s))
        << describe(*cons);
    EXPECT_EQ(cons->mappings.load(), 2u);
    EXPECT_EQ(cons->drops_unmapped.load(), 0u);

    // Phase 4: the consumer reads again: A's in-flight descriptors name the old epoch and are all dropped.
    cons->pause.store(0);
    ASSERT_TRUE(wait_until([&] { return cons->drops_unmapped.load() == kInFlight; }, 10s)) << describe(*cons);
    EXPECT_EQ(cons->good.load(), kFirst);

    // Phase 5: B's frames (seq from 0 again) are received.
    b->target.store(kSecond);
    const bool got_b = wait_until([&] { return cons->good.load() == kFirst + kSecond; }, 20s);
    std::this_thread::sleep_for(100ms);
    b->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer_b, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    ASSERT_TRUE(got_b) << describe(*cons) << " " << describe(*b);

    EXPECT_EQ(b->errors.load(), 0u) << b->error.get();
    EXPECT_EQ(cons->good_in_epoch(epoch_a), kFirst);
    EXPECT_EQ(cons->good_in_epoch(epoch_b), kSecond);
    EXPECT_EQ(cons->mapped_epoch.load(), epoch_b);
    EXPECT_EQ(cons->mappings.load(), 2u);
    EXPECT_EQ(cons->mapping_failures.load(), 0u);
    // Nothing from A after the switch, nothing misattributed, nothing torn.
    EXPECT_EQ(cons->old_epoch.load(), 0u) << describe(*cons);
    EXPECT_EQ(cons->bad(), 0u) << "first bad seq " << cons->first_bad_seq.load() << " " << describe(*cons);
    EXPECT_EQ(cons->drops_unmapped.load(), kInFlight);
    EXPECT_EQ(cons->drops_gap.load(), 0u);  // B's seq 0 after A's seq 149 is a new epoch, not a gap
    EXPECT_EQ(cons->drops_late.load(), 0u);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->last_seq.load(), kSecond - 1);
    EXPECT_EQ(cons->frames_accepted.load(), kFirst + kSecond);
}

namespace {

// The path inside a region URI (`shm:file?path=<path>|require_hugepages=...`).
std::string uri_path(const std::string& uri) {
    const auto start = uri.find("path=") + 5;
    return uri.substr(start, uri.find('|', start) - start);
}

}  // namespace

// W-10.1.1-7 (keep the highest epoch: a lower one is ignored while the current producer may be alive), W-7-4,
// W-15.14-1, W-15.14-6, A-11(b), A-12 (once the current epoch is declared dead by the liveness timeout, the
// highest-epoch memory is forgotten, so a producer that lost its epoch counter is followed): A (epoch 2000000) is
// killed and B restarts with the LOWER epoch 1000000. B's announces are ignored until A's activity timestamp is
// older than the liveness timeout; then the consumer unmaps A and maps B.
TEST(ClientEpochChange, ProducerRestartedWithALowerEpochIsFollowedOnlyAfterTheLivenessTimeout) {
    constexpr int64_t kLivenessNs = 1'500'000'000;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> a;
    SharedBox<ProducerShared> b;
    SharedBox<ConsumerShared> cons;
    ProducerConfig acfg = test_producer_config(shm_dir.path(), 64);
    acfg.epoch = 2'000'000;
    ProducerConfig bcfg = acfg;
    bcfg.epoch = 1'000'000;
    ProducerChild pa(bus.options(), acfg);
    ProducerChild pb(bus.options(), bcfg);
    pa.continuous = pb.continuous = true;
    pa.pace_us = pb.pace_us = 2000;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.liveness_timeout_ns = kLivenessNs;
    ConsumerChild cc(bus.options(), ccfg);

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    const pid_t producer_a = procs.start([&] { return producer_main(pa, *a); });
    ASSERT_TRUE(wait_until([&] { return cons->good_in_epoch(acfg.epoch) > 10; }, 10s)) << describe(*cons);

    EXPECT_EQ(procs.kill(producer_a), ChildResult::killed(SIGKILL));
    const int64_t a_last_alive_ns = a->last_loop_ns.load();
    const pid_t producer_b = procs.start([&] { return producer_main(pb, *b); });
    ASSERT_TRUE(wait_until([&] { return b->ready.load() == 1; }, 10s));

    // While A may still be alive, B's lower epoch is ignored.
    const uint64_t ignored_before = cons->announces_ignored.load();
    ASSERT_TRUE(wait_until([&] { return cons->announces_ignored.load() >= ignored_before + 2; }, 5s))
        << describe(*cons);
    EXPECT_EQ(cons->mapped_epoch.load(), acfg.epoch);
    EXPECT_EQ(cons->mappings.load(), 1u);

    // A's activity timestamp goes stale: A is dead, its epoch forgotten, B followed.
    ASSERT_TRUE(wait_until([&] { return cons->mapped_epoch.load() == bcfg.epoch; }, 10s)) << describe(*cons);
    // A's last activity refresh was at most one announce period (50 ms) before its last loop turn, and the
    // consumer may only give up on A once that refresh is older than the liveness timeout.
    EXPECT_GE((monotonic_ns() - a_last_alive_ns) / 1'000'000, (kLivenessNs - 50'000'000) / 1'000'000);
    ASSERT_TRUE(wait_until([&] { return cons->good_in_epoch(bcfg.epoch) > 10; }, 10s)) << describe(*cons);
    EXPECT_EQ(cons->mapped_epoch.load(), bcfg.epoch);
    EXPECT_EQ(cons->mappings.load(), 2u);
    EXPECT_EQ(cons->mapping_failures.load(), 0u);

    b->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer_b, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
    EXPECT_EQ(cons->old_epoch.load(), 0u);  // A's frames never reappear once B's were accepted
}

// W-15.14-2, A-14, W-15.1-4 (a second writer: the pid in a mapped superblock changes within the epoch): the
// consumer drops its mapping and stays unmapped, ignoring further announces of that epoch, until a new epoch is
// announced. The "second writer" here is this process, which keeps rewriting the pid field of the producer's
// header ring for a while (the producer puts its own pid back whenever it refreshes the activity timestamp).
// W-15.21-9: frames of an epoch being unmapped are dropped.
TEST(ClientEpochChange, SecondWriterDetectedThroughPidUnmapsUntilANewEpoch) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> a;
    SharedBox<ProducerShared> b;
    SharedBox<ConsumerShared> cons;
    ProducerChild pa(bus.options(), test_producer_config(shm_dir.path(), 64));
    ProducerChild pb(bus.options(), test_producer_config(shm_dir.path(), 64));
    pa.continuous = pb.continuous = true;
    pa.pace_us = pb.pace_us = 2000;
    ConsumerChild cc(bus.options(), test_consumer_config(shm_dir.path()));

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    const pid_t producer_a = procs.start([&] { return producer_main(pa, *a); });
    ASSERT_TRUE(wait_until([&] { return a->ready.load() == 1 && cons->good_in_epoch(a->epoch.load()) > 10; }, 10s))
        << describe(*cons);

    const std::string ring_path = uri_path(a->header_uri.get());
    const int fd = ::open(ring_path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << ring_path;
    const uint64_t foreign_pid = 0x7FFF0000u + static_cast<uint64_t>(::getpid());
    const bool unmapped = wait_until([&] {
        (void)::pwrite(fd, &foreign_pid, sizeof foreign_pid, 40);  // superblock pid @40 (§2.2)
        return cons->state.load() == static_cast<int>(MappingState::unmapped);
    }, 5s);
    ::close(fd);
    ASSERT_TRUE(unmapped) << describe(*cons);
    EXPECT_NE(cons->last_error.get().find("pid"), std::string::npos) << cons->last_error.get();

    // The producer keeps announcing the same epoch (and has put its pid back): the consumer must not map it again.
    const uint64_t ignored_before = cons->announces_ignored.load();
    std::this_thread::sleep_for(500ms);
    EXPECT_EQ(cons->state.load(), static_cast<int>(MappingState::unmapped)) << describe(*cons);
    EXPECT_EQ(cons->mappings.load(), 1u) << describe(*cons);
    EXPECT_GE(cons->announces_ignored.load(), ignored_before + 5);
    const uint64_t good_a = cons->good_in_epoch(a->epoch.load());

    // A new epoch is announced: mapped.
    EXPECT_EQ(procs.kill(producer_a), ChildResult::killed(SIGKILL));
    const pid_t producer_b = procs.start([&] { return producer_main(pb, *b); });
    ASSERT_TRUE(wait_until([&] { return b->ready.load() == 1 && cons->good_in_epoch(b->epoch.load()) > 10; }, 10s))
        << describe(*cons);
    EXPECT_EQ(cons->mappings.load(), 2u);
    EXPECT_EQ(cons->good_in_epoch(a->epoch.load()), good_a);  // nothing of A after the unmap

    b->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer_b, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
}
