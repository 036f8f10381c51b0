// Per-consumer descriptor streams and RATE_LIMITED mode, between real processes (WIRE_SPEC §5, §6.5, §10.1.2,
// §10.1.3, §11): a valid request is granted and the consumer reads its own stream; the producer closes that stream
// once the consumer is killed and goes stale; max_rate_hz caps a granted stream at the producer, and a consumer
// whose request was declined gates locally instead.
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

namespace {

constexpr int32_t kGrantedStream = 2001;

// Counts FrameDescriptors arriving on one stream, as an eavesdropper in the test process.
struct StreamWatch {
    std::unique_ptr<transport::Subscription> sub;
    uint64_t messages = 0;
    int poll() {
        return sub->poll([&](std::span<const uint8_t>, const transport::MessageInfo&) { ++messages; }, 256);
    }
};

}  // namespace

// W-5-1, W-5-2, W-5-3, W-5-4, W-10.1.3-7, §6.5: a consumer asking for its own descriptor stream with a valid
// channel and stream id gets it (ConsumerConfig reports it), reads its frames there (the shared stream is no longer
// its source) and every frame it accepts is untorn; SIGKILLed, it goes stale after consumer_stale_ns and the
// producer closes the publication: the stream's image goes away while the shared stream carries on.
TEST(ClientPerConsumerStreams, GrantedDescriptorStreamIsReadAndClosedWhenTheConsumerGoesStale) {
    constexpr int64_t kStaleNs = 500'000'000;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;
    ProducerConfig pcfg = test_producer_config(shm_dir.path(), 256);
    pcfg.consumer_stale_ns = kStaleNs;
    ProducerChild pc(bus.options(), pcfg);
    pc.continuous = true;
    pc.pace_us = 1000;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.descriptor_request = {"ipc:tensorpool", kGrantedStream};
    ConsumerChild cc(bus.options(), ccfg);

    transport::TransportHub hub(bus.options());
    StreamWatch granted, shared;
    auto gs = hub.add_subscription("ipc:tensorpool", kGrantedStream);
    auto ss = hub.add_subscription("ipc:tensorpool", 1100);
    ASSERT_TRUE(gs.ok() && ss.ok());
    granted.sub = std::move(*gs);
    shared.sub = std::move(*ss);

    Processes procs;
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });

    ASSERT_TRUE(wait_until([&] { return cons->per_consumer_descriptor.load() == 1; }, 10s)) << describe(*cons);
    const uint64_t good_at_grant = cons->good.load();
    ASSERT_TRUE(wait_until([&] { return cons->good.load() >= good_at_grant + 100; }, 20s)) << describe(*cons);
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
    EXPECT_EQ(prod->grants.load(), 1u);
    EXPECT_EQ(prod->streams_granted.load(), 1u);
    // The granted stream carries descriptors (the test eavesdrops on it), and so does the shared one.
    ASSERT_TRUE(wait_until([&] { granted.poll(); shared.poll(); return granted.messages > 50 && shared.messages > 50; }, 10s))
        << "granted " << granted.messages << " shared " << shared.messages;
    EXPECT_GE(granted.sub->image_count(), 1);

    EXPECT_EQ(procs.kill(consumer), ChildResult::killed(SIGKILL));
    // Its last Hello/QoS left at most one period before its last loop turn: measure staleness from there, not
    // from the kill (a consumer starved of CPU before the kill went quiet earlier).
    const int64_t last_alive_ns = cons->last_loop_ns.load();
    // W-5-3: the producer stops publishing to it and closes the publication once it is stale.
    ASSERT_TRUE(wait_until([&] { return prod->streams_granted.load() == 0; }, 10s)) << describe(*prod);
    EXPECT_EQ(prod->streams_closed.load(), 1u);
    EXPECT_EQ(prod->consumers.load(), 0u);
    const int64_t closed_after_ms = (monotonic_ns() - last_alive_ns) / 1'000'000;
    EXPECT_GE(closed_after_ms, (kStaleNs - ccfg.hello_period_ns) / 1'000'000) << "closed before the consumer was stale (W-5-4)";
    ASSERT_TRUE(wait_until([&] { granted.poll(); return granted.sub->image_count() == 0; }, 10s))
        << "the per-consumer publication is still open";
    // Nothing more arrives there, while the shared stream goes on.
    granted.poll();
    const uint64_t granted_after = granted.messages;
    const uint64_t shared_before = shared.messages;
    ASSERT_TRUE(wait_until([&] { shared.poll(); return shared.messages > shared_before + 50; }, 10s));
    granted.poll();
    EXPECT_EQ(granted.messages, granted_after);

    prod->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    std::printf("[ figures  ] per-consumer stream closed %lld ms after the consumer's last loop turn (stale time %lld ms)\n",
                static_cast<long long>(closed_after_ms), static_cast<long long>(kStaleNs / 1'000'000));
}

// §11, W-5-5, W-11-2, W-11-3, A-25: two RATE_LIMITED consumers asking for 40 Hz from a ~1 kHz producer. One is
// granted its own descriptor stream, which the producer caps (it sees only ~40 descriptors a second and needs no
// local gate); the other asks for a stream id the producer must decline (a shared stream's), stays on the shared
// stream and gates locally. Both end up accepting about 40 frames a second, all untorn; the declined one knows
// why (ControlResponse text).
// W-11-4: the local gate uses the descriptor's publish timestamp when there is one: gating on the SlotHeader
// stamps instead (1000 + seq ns here) would let almost no frame through and fail the rate check.
TEST(ClientRateLimited, GrantedStreamIsCappedByTheProducerAndADeclinedConsumerGatesLocally) {
    constexpr uint32_t kRateHz = 40;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<std::array<ConsumerShared, 2>> cons;
    ProducerChild pc(bus.options(), test_producer_config(shm_dir.path(), 256));
    pc.continuous = true;
    pc.pace_us = 1000;
    ConsumerConfig capped = test_consumer_config(shm_dir.path());
    capped.mode = ConsumerMode::rate_limited;
    capped.max_rate_hz = kRateHz;
    capped.descriptor_request = {"ipc:tensorpool", kGrantedStream};
    ConsumerConfig gated = capped;
    gated.descriptor_request = {"ipc:tensorpool", 1100};  // the shared descriptor stream: declined (W-5-9)
    ConsumerChild capped_child(bus.options(), capped);
    ConsumerChild gated_child(bus.options(), gated);

    Processes procs;
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    const pid_t c0 = procs.start([&] { return consumer_main(capped_child, (*cons)[0]); });
    const pid_t c1 = procs.start([&] { return consumer_main(gated_child, (*cons)[1]); });

    ConsumerShared& a = (*cons)[0];
    ConsumerShared& b = (*cons)[1];
    ASSERT_TRUE(wait_until([&] { return a.per_consumer_descriptor.load() == 1 && a.good.load() > 5; }, 20s)) << describe(a);
    ASSERT_TRUE(wait_until([&] { return b.stream_declines.load() > 0 && b.good.load() > 5; }, 20s)) << describe(b);
    EXPECT_EQ(a.rate_limited_locally.load(), 0);
    EXPECT_EQ(b.rate_limited_locally.load(), 1);
    EXPECT_EQ(b.per_consumer_descriptor.load(), 0);
    EXPECT_NE(b.last_response.get().find("shared streams"), std::string::npos) << b.last_response.get();

    // Measure both over the same two seconds, with the producer's rate alongside.
    const uint64_t a0 = a.good.load(), b0 = b.good.load(), p0 = prod->published.load();
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(2s);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    const double a_hz = static_cast<double>(a.good.load() - a0) / secs;
    const double b_hz = static_cast<double>(b.good.load() - b0) / secs;
    const double p_hz = static_cast<double>(prod->published.load() - p0) / secs;
    std::printf("[ figures  ] producer %.0f fps; capped by the producer %.1f fps; gated locally %.1f fps (cap %u)\n",
                p_hz, a_hz, b_hz, kRateHz);
    ASSERT_GT(p_hz, 4.0 * kRateHz) << "the producer is too slow for this test to mean anything";
    EXPECT_LE(a_hz, kRateHz * 1.15 + 1);
    EXPECT_GE(a_hz, kRateHz * 0.6);
    EXPECT_LE(b_hz, kRateHz * 1.15 + 1);
    EXPECT_GE(b_hz, kRateHz * 0.6);
    EXPECT_GT(prod->descriptors_rate_capped.load(), 0u);  // the producer did the capping for `a`
    EXPECT_GT(b.drops_rate_limited.load(), 0u);           // `b` did its own
    EXPECT_EQ(a.drops_gap.load(), 0u) << "skipped by the cap we asked for: not gaps";

    prod->stop.store(1);
    a.stop.store(1);
    b.stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(c0, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(c1, 30), ChildResult::ok());
    EXPECT_EQ(a.bad() + b.bad(), 0u) << describe(a) << describe(b);
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
}
