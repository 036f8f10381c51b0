// The control plane between producer and consumers: per-consumer stream requests are validated, granted or
// declined with a reason, and the producer tracks live consumers and forgets dead ones after the stale time.
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
    std::vector<std::pair<wc::ResponseCode, std::string>> responses;  // ControlResponses naming this consumer
};

// Polls the control stream for the ConsumerConfig addressed to `consumer_id` (A-38: matched on stream + consumer)
// and the ControlResponses that name it (A-23: they carry no correlation id), until `settle` after the config.
std::optional<ConfigReply> await_config(transport::Subscription& sub, uint32_t consumer_id,
                                        std::chrono::milliseconds timeout, std::chrono::milliseconds settle = 200ms) {
    std::optional<ConfigReply> reply;
    std::vector<std::pair<wc::ResponseCode, std::string>> responses;
    const std::string prefix = "consumer " + std::to_string(consumer_id) + ":";
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        const int n = sub.poll(
            [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                if (auto r = wc::ControlResponse::Decoder::wrap(m.data(), m.size())) {
                    const std::string text(r->errorMessage());
                    if (text.starts_with(prefix)) responses.emplace_back(r->code(), text);
                    return;
                }
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
                deadline = std::min(deadline, Clock::now() + settle);
            },
            32);
        if (n == 0) pause_for(100us);
    }
    if (reply) reply->responses = responses;
    return reply;
}

}  // namespace

// W-5-1, W-5-6, W-5-9, W-10.1.2-2..-7, W-10.1.3-3..-6, §15.17, W-15.17-1, W-10.1-3, A-23, A-24, A-38, §6.5: the
// producer validates every request for a per-consumer descriptor or control stream. A complete one on a usable
// channel is granted (the ConsumerConfig names channel and stream); half-filled ones are INVALID_PARAMS, a shared
// stream's id or a channel the transport cannot open is INVALID_PARAMS, a stream already granted to another
// consumer is REJECTED (the codes mean what §4.11 says, W-15.17-1: malformed vs refused by policy) — each declined
// half answered with an empty channel and stream id 0 plus a ControlResponse that says why; the empty channel is
// var data of length 0, "absent" (W-10.1-3), which decodes as an empty string. A Hello for another stream gets no
// answer; and a real consumer whose request is declined stays on the shared stream, keeps receiving, and knows why.
TEST(ClientControl, PerConsumerStreamRequestsAreValidatedGrantedOrDeclinedWithAReason) {
    constexpr uint32_t kRealConsumerId = 4242;
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;
    ProducerConfig pcfg = test_producer_config(shm_dir.path(), 256);
    pcfg.per_consumer_channels = {"ipc:tensorpool-percons", "nonsense:channel"};
    ProducerChild pc(bus.options(), pcfg);
    pc.continuous = true;
    pc.pace_us = 2000;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.consumer_id = kRealConsumerId;
    ccfg.descriptor_request = {"ipc:tensorpool", 1001};  // the announce stream: must be declined
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

    using RC = wc::ResponseCode;
    const std::string ch = "ipc:tensorpool-percons";
    struct Case {
        const char* what;
        HelloRequest hello;
        std::string descriptor_channel;  // expected in the ConsumerConfig
        uint32_t descriptor_stream;
        std::string control_channel;
        uint32_t control_stream;
        std::vector<RC> codes;  // expected ControlResponses, in order
    };
    const std::vector<Case> cases = {
        {"descriptor channel without stream id (W-10.1.2-3/-4)", {10000, 5001, ch, 0, "", 0}, "", 0, "", 0,
         {RC::INVALID_PARAMS}},
        {"descriptor stream id without channel (W-10.1.2-2, W-10.1.3-4)", {10000, 5002, "", 2002, "", 0}, "", 0, "", 0,
         {RC::INVALID_PARAMS}},
        {"a complete control stream request: granted (W-5-6)", {10000, 5003, "", 0, ch, 2003}, "", 0, ch, 2003, {}},
        {"control channel without stream id (W-10.1.2-6/-7)", {10000, 5004, "", 0, ch, 0}, "", 0, "", 0,
         {RC::INVALID_PARAMS}},
        {"both streams requested: both granted (W-5-1)", {10000, 5005, ch, 2005, ch, 2006}, ch, 2005, ch, 2006, {}},
        {"a stream another consumer holds: REJECTED", {10000, 5006, ch, 2005, "", 0}, "", 0, "", 0, {RC::REJECTED}},
        {"a shared stream's id (metadata, 1300)", {10000, 5007, ch, 1300, "", 0}, "", 0, "", 0, {RC::INVALID_PARAMS}},
        {"an allowed channel the transport cannot open", {10000, 5008, "nonsense:channel", 2008, "", 0}, "", 0, "", 0,
         {RC::INVALID_PARAMS}},
        {"a channel the producer does not allow (parameters a consumer must not choose)",
         {10000, 5010, "ipc:tensorpool?term-length=1g|prefault=true", 2010, "", 0}, "", 0, "", 0, {RC::REJECTED}},
        {"the shared channel with another stream id", {10000, 5011, "ipc:tensorpool", 2011, "", 0}, "ipc:tensorpool",
         2011, "", 0, {}},
        {"one half granted, the other declined", {10000, 5009, ch, 2009, ch, 0}, ch, 2009, "", 0, {RC::INVALID_PARAMS}},
    };
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        const std::vector<uint8_t> hello = encode_hello(c.hello);
        ASSERT_FALSE(hello.empty());
        ASSERT_TRUE((*pub)->offer(hello).ok());
        const auto reply = await_config(**sub, c.hello.consumer_id, 5s);
        ASSERT_TRUE(reply.has_value()) << "no ConsumerConfig for consumer " << c.hello.consumer_id;
        EXPECT_EQ(reply->stream_id, 10000u);
        EXPECT_EQ(reply->descriptor_channel, c.descriptor_channel);
        EXPECT_EQ(reply->descriptor_stream_id, c.descriptor_stream);
        EXPECT_EQ(reply->control_channel, c.control_channel);
        EXPECT_EQ(reply->control_stream_id, c.control_stream);
        EXPECT_EQ(reply->use_shm, wc::Bool::TRUE);
        EXPECT_EQ(reply->mode, wc::Mode::STREAM);
        EXPECT_EQ(reply->payload_fallback_uri, "");
        ASSERT_EQ(reply->responses.size(), c.codes.size());
        for (std::size_t i = 0; i < c.codes.size(); ++i) {
            EXPECT_EQ(reply->responses[i].first, c.codes[i]) << reply->responses[i].second;
            EXPECT_FALSE(reply->responses[i].second.empty());
        }
    }

    // A Hello for another stream is not this producer's business.
    ASSERT_TRUE((*pub)->offer(encode_hello({10001, 5100, ch, 2100, "", 0})).ok());
    EXPECT_FALSE(await_config(**sub, 5100, 500ms).has_value());

    // W-10.1.3-6: declined, the real consumer stays on the shared stream, keeps receiving and knows why.
    EXPECT_GT(cons->stream_declines.load(), 0u);
    EXPECT_EQ(cons->per_consumer_descriptor.load(), 0);
    EXPECT_NE(cons->last_response.get().find("shared streams"), std::string::npos) << cons->last_response.get();
    const uint64_t before = cons->good.load();
    EXPECT_TRUE(wait_until([&] { return cons->good.load() >= before + 20; }, 10s)) << describe(*cons);

    prod->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    EXPECT_EQ(cons->bad(), 0u) << describe(*cons);
    // Granted: 5003 (control), 5005 (both), 5009 and 5011 (descriptor); none of the raw "consumers" ever spoke
    // again, but the default stale time (5 s) has not passed.
    EXPECT_EQ(prod->grants.load(), 5u);
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

// W-5-7, W-5-6: a granted per-consumer control stream takes only FrameProgress away from the shared control stream;
// the consumer stays subscribed to the shared one for every other control message. In one process for exact
// control: once consumer 77 reads progress from its own stream 2201, a ControlResponse naming it that arrives on the
// shared stream (1000) must still reach it — a consumer that moved its whole control subscription to 2201 would
// never hear of it.
TEST(ClientControl, W_5_7_GrantedControlStreamStillTakesOtherControlMessagesFromTheSharedStream) {
    InProcess t;
    ConsumerConfig cfg = test_consumer_config("");
    cfg.consumer_id = 77;
    cfg.supports_progress = true;
    cfg.control_request = {"ipc:tensorpool", 2201};
    ASSERT_EQ(t.start({cfg}), "");
    Consumer& c = t.c();
    auto shared = t.hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(shared.ok()) << shared.error().message();
    auto spin = [&](auto pred) { return t.spin(pred); };
    ASSERT_TRUE(spin([&] { return c.streams().per_consumer_control; })) << c.last_control_response();
    ASSERT_EQ(c.streams().control_stream_id, 2201);
    ASSERT_EQ(c.last_control_response(), "");  // granted: nothing was declined

    // no correlation id to echo (0); the text names the consumer.
    std::vector<uint8_t> buf(256);
    wc::ControlResponse::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()).ok());
    e.correlationId(0).code(wc::ResponseCode::INVALID_PARAMS).errorMessage(std::string_view("consumer 77: probe"));
    const auto n = e.finish();
    ASSERT_TRUE(n.ok());
    ASSERT_TRUE((*shared)->offer(std::span<const uint8_t>(buf.data(), *n)).ok());

    EXPECT_TRUE(spin([&] { return c.last_control_response() == "consumer 77: probe"; })) << c.last_control_response();
    // ... and progress still comes from the granted stream.
    EXPECT_TRUE(c.streams().per_consumer_control);
    EXPECT_EQ(c.streams().control_channel, "ipc:tensorpool");
    EXPECT_EQ(c.streams().control_stream_id, 2201);
}

// W-10.1.2-1: a consumer says Hello at startup — on its first do_work, not one hello period later (10 s here, so a
// consumer that waited for the period would not be heard within the test) — and not again until the period ends.
TEST(ClientControl, W_10_1_2_1_HelloIsSentOnTheFirstDoWork) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    transport::TransportHub hub(bus.options());
    // Subscribed before the consumer's publication exists, so its first message is read (ipc: a publisher that
    // attaches later is read from its first message).
    auto sub = hub.add_subscription("ipc:tensorpool", 1000);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    ConsumerConfig cfg = test_consumer_config(shm_dir.path());
    cfg.consumer_id = 77;
    cfg.hello_period_ns = 10'000'000'000;
    auto consumer = Consumer::create(hub, cfg);
    ASSERT_TRUE(consumer.ok()) << consumer.error().message();
    Consumer& c = **consumer;

    int hellos = 0, others = 0;
    auto drain = [&](std::chrono::milliseconds settle) {
        const auto end = Clock::now() + settle;
        while (Clock::now() < end) {
            if ((*sub)->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                    auto d = wc::ConsumerHello::Decoder::wrap(m.data(), m.size());
                    if (!d) return;
                    ++(d->consumerId() == 77 && d->streamId() == 10000 ? hellos : others);
                }, 16) == 0) {
                pause_for(100us);
            }
        }
    };
    drain(50ms);
    ASSERT_EQ(hellos, 0);  // nothing before the first do_work
    c.do_work(monotonic_ns());
    drain(200ms);
    EXPECT_EQ(hellos, 1);
    c.do_work(monotonic_ns());
    drain(200ms);
    EXPECT_EQ(hellos, 1) << "a second Hello within the hello period";
    EXPECT_EQ(others, 0);
}
