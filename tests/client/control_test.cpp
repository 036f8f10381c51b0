// The control plane between producer and consumers: per-consumer stream requests are declined (this producer
// offers none), and the producer tracks live consumers and forgets dead ones after the stale time.
#include <gtest/gtest.h>

#include "client_test_support.hpp"
#include "tensorpool/wire/gen/control.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

namespace {

struct HelloRequest {
    uint32_t stream_id = 10000;
    uint32_t consumer_id = 0;
    std::string descriptor_channel;
    uint32_t descriptor_stream_id = 0;
    std::string control_channel;
    uint32_t control_stream_id = 0;
};

std::vector<uint8_t> encode_hello(const HelloRequest& h) {
    std::vector<uint8_t> buf(512);
    wc::ConsumerHello::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(h.stream_id).consumerId(h.consumer_id).supportsShm(wc::Bool::TRUE).supportsProgress(wc::Bool::FALSE);
    e.mode(wc::Mode::STREAM).maxRateHz(0).expectedLayoutVersion(1);
    e.progressIntervalUs(e.progressIntervalUsNullValue()).progressBytesDelta(e.progressBytesDeltaNullValue());
    e.progressMajorDeltaUnits(e.progressMajorDeltaUnitsNullValue());
    e.descriptorStreamId(h.descriptor_stream_id).controlStreamId(h.control_stream_id);
    e.descriptorChannel(h.descriptor_channel).controlChannel(h.control_channel);
    auto n = e.finish();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

struct ConfigReply {
    uint32_t stream_id = 0;
    wc::Bool use_shm = wc::Bool::NULL_VALUE;
    wc::Mode mode = wc::Mode::NULL_VALUE;
    uint32_t descriptor_stream_id = 0;
    uint32_t control_stream_id = 0;
    std::string payload_fallback_uri, descriptor_channel, control_channel;
};

// Polls the control stream for a ConsumerConfig addressed to `consumer_id` (A-38: matched on stream + consumer).
std::optional<ConfigReply> await_config(transport::Subscription& sub, uint32_t consumer_id,
                                        std::chrono::milliseconds timeout) {
    std::optional<ConfigReply> reply;
    const auto deadline = Clock::now() + timeout;
    while (!reply && Clock::now() < deadline) {
        const int n = sub.poll(
            [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                auto d = wc::ConsumerConfig::Decoder::wrap(m.data(), m.size());
                if (!d || d->consumerId() != consumer_id || reply) return;
                ConfigReply r;
                r.stream_id = d->streamId();
                r.use_shm = d->useShm();
                r.mode = d->mode();
                r.descriptor_stream_id = d->descriptorStreamId();
                r.control_stream_id = d->controlStreamId();
                r.payload_fallback_uri = d->payloadFallbackUri();
                r.descriptor_channel = d->descriptorChannel();
                r.control_channel = d->controlChannel();
                reply = r;
            },
            32);
        if (n == 0) pause_for(100us);
    }
    return reply;
}

}  // namespace

// W-5-1, W-5-9, W-10.1.2-2..-7, W-10.1.3-3..-6, A-24, A-38, §6.5: every request for a per-consumer descriptor or
// control stream — complete, or half-filled (channel without stream id, stream id without channel) — is answered
// with a ConsumerConfig that declines it: empty channels and stream ids 0; a Hello for another stream gets no
// answer; and the consumer whose request was declined stays on the shared descriptor stream and keeps receiving.
TEST(ClientControl, PerConsumerStreamRequestsAreDeclinedAndTheConsumerStaysOnTheSharedStream) {
    constexpr uint32_t kRealConsumerId = 4242;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;
    ProducerChild pc(bus.options(), test_producer_config(shm_dir.path(), 256));
    pc.continuous = true;
    pc.pace_us = 2000;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.consumer_id = kRealConsumerId;
    ConsumerChild cc(bus.options(), ccfg);

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });

    transport::TransportHub hub(bus.options());
    auto sub = hub.add_subscription("ipc:tensorpool", 1000);
    ASSERT_TRUE(sub) << sub.error().message();
    auto pub = hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(pub) << pub.error().message();
    ASSERT_TRUE(wait_until([&] { return cons->good.load() > 10; }, 10s)) << describe(*cons);
    EXPECT_EQ(cons->consumer_id.load(), kRealConsumerId);

    struct Case {
        const char* what;
        HelloRequest hello;
    };
    const std::vector<Case> cases = {
        {"a complete per-consumer descriptor stream request (from the running consumer)",
         {10000, kRealConsumerId, "ipc:tensorpool-percons", 2001, "", 0}},
        {"descriptor channel without stream id (W-10.1.2-3/-4)", {10000, 5001, "ipc:tensorpool-percons", 0, "", 0}},
        {"descriptor stream id without channel (W-10.1.2-2, W-10.1.3-4)", {10000, 5002, "", 2002, "", 0}},
        {"a complete per-consumer control stream request", {10000, 5003, "", 0, "ipc:tensorpool-percons", 2003}},
        {"control channel without stream id (W-10.1.2-6/-7)", {10000, 5004, "", 0, "ipc:tensorpool-percons", 0}},
        {"both streams requested", {10000, 5005, "ipc:tensorpool-percons", 2005, "ipc:tensorpool-percons", 2006}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        const std::vector<uint8_t> hello = encode_hello(c.hello);
        ASSERT_FALSE(hello.empty());
        ASSERT_TRUE((*pub)->offer(hello).ok());
        const auto reply = await_config(**sub, c.hello.consumer_id, 5s);
        ASSERT_TRUE(reply.has_value()) << "no ConsumerConfig for consumer " << c.hello.consumer_id;
        EXPECT_EQ(reply->stream_id, 10000u);
        EXPECT_EQ(reply->descriptor_channel, "");
        EXPECT_EQ(reply->descriptor_stream_id, 0u);
        EXPECT_EQ(reply->control_channel, "");
        EXPECT_EQ(reply->control_stream_id, 0u);
        EXPECT_EQ(reply->use_shm, wc::Bool::TRUE);
        EXPECT_EQ(reply->payload_fallback_uri, "");
    }

    // A Hello for another stream is not this producer's business.
    ASSERT_TRUE((*pub)->offer(encode_hello({10001, 5100, "ipc:tensorpool-percons", 2100, "", 0})).ok());
    EXPECT_FALSE(await_config(**sub, 5100, 500ms).has_value());

    // W-10.1.3-6: declined, the consumer stays on the shared stream and keeps receiving.
    const uint64_t before = cons->good.load();
    EXPECT_TRUE(wait_until([&] { return cons->good.load() >= before + 20; }, 10s)) << describe(*cons);

    prod->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
}

// W-5-3, W-5-4, W-10.1.3-7, A-26: the producer counts each live consumer (kept alive by its Hello/QoS), never
// drops one that keeps talking, and forgets one that was SIGKILLed once consumer_stale_ns has passed without a
// Hello or QoS from it — not before.
TEST(ClientControl, ProducerCountsLiveConsumersAndDropsAKilledOneAfterTheStaleTime) {
    constexpr int64_t kStaleNs = 500'000'000;
    constexpr int64_t kPeriodNs = 50'000'000;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<std::array<ConsumerShared, 2>> cons;
    ProducerConfig pcfg = test_producer_config(shm_dir.path(), 64);
    pcfg.consumer_stale_ns = kStaleNs;
    ProducerChild pc(bus.options(), pcfg);
    // One consumer keeps itself alive with Hellos only, the other with QoS only (after its first Hello): either
    // message must do (W-5-4).
    ConsumerConfig hello_only = test_consumer_config(shm_dir.path());
    hello_only.hello_period_ns = kPeriodNs;
    hello_only.qos_period_ns = 100 * kStaleNs;
    ConsumerConfig qos_only = hello_only;
    qos_only.hello_period_ns = 100 * kStaleNs;
    qos_only.qos_period_ns = kPeriodNs;

    Processes procs;
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    ConsumerChild doomed_child(bus.options(), hello_only);
    ConsumerChild survivor_child(bus.options(), qos_only);
    const pid_t doomed = procs.start([&] { return consumer_main(doomed_child, (*cons)[0]); });
    const pid_t survivor = procs.start([&] { return consumer_main(survivor_child, (*cons)[1]); });

    ASSERT_TRUE(wait_until([&] { return prod->consumers.load() == 2; }, 10s)) << describe(*prod);
    // Both keep talking, for twice the stale time: neither is ever declared stale.
    uint64_t lowest = 2;
    for (auto end = Clock::now() + 1s; Clock::now() < end; std::this_thread::sleep_for(1ms)) {
        lowest = std::min<uint64_t>(lowest, prod->consumers.load());
    }
    EXPECT_EQ(lowest, 2u);

    EXPECT_EQ(procs.kill(doomed), ChildResult::killed(SIGKILL));
    // The doomed consumer's last Hello left at most one period before its last loop turn.
    const int64_t last_alive_ns = (*cons)[0].last_loop_ns.load();
    ASSERT_TRUE(wait_until([&] { return prod->consumers.load() == 1; }, 10s)) << describe(*prod);
    const int64_t forgotten_after_ms = (monotonic_ns() - last_alive_ns) / 1'000'000;
    // Not before the stale time has passed since its last Hello, and not much later either.
    EXPECT_GE(forgotten_after_ms, (kStaleNs - kPeriodNs) / 1'000'000) << "declared stale too early";
    EXPECT_LE(forgotten_after_ms, kStaleNs / 1'000'000 + 2000) << "declared stale too late";

    // The survivor is still counted.
    lowest = 1;
    for (auto end = Clock::now() + 1s; Clock::now() < end; std::this_thread::sleep_for(1ms)) {
        lowest = std::min<uint64_t>(lowest, prod->consumers.load());
    }
    EXPECT_EQ(lowest, 1u);

    prod->stop.store(1);
    (*cons)[1].stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(survivor, 30), ChildResult::ok());
    std::printf("[ figures  ] killed consumer forgotten %lld ms after its last loop turn (stale time %lld ms)\n",
                static_cast<long long>(forgotten_after_ms), static_cast<long long>(kStaleNs / 1'000'000));
}
