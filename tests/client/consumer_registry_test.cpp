// ConsumerRegistry in-process: the max_per_consumer_streams limit counts every stream open at the moment of the
// decision, including the one granted for the other half of the same Hello (found by fuzz_client_control: a Hello
// asking for both halves could take the producer past the limit).
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "tensorpool/client/consumer_registry.hpp"
#include "tensorpool/wire/gen/control.hpp"
#include "transport_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using tensorpool::test::BusRoot;
namespace wc = tensorpool::wire::control;

namespace {

constexpr uint32_t kStream = 10000;
const std::string kChannel = "ipc:tensorpool-registry";

// A Hello's FrameProgress part; an unset hint is sent as the field's null value ("no hint").
struct Progress {
    bool supported = false;
    std::optional<uint32_t> interval_us, bytes_delta, major_delta_units;
};

// A request names a channel for every stream id it asks for, unless `without_channels` (a malformed request).
std::vector<uint8_t> hello(uint32_t consumer_id, uint32_t descriptor_stream, uint32_t control_stream,
                           wc::Mode mode = wc::Mode::STREAM, uint32_t max_rate_hz = 0, const Progress& progress = {},
                           bool without_channels = false) {
    std::vector<uint8_t> buf(512);
    wc::ConsumerHello::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(kStream).consumerId(consumer_id).supportsShm(wc::Bool::TRUE);
    e.supportsProgress(progress.supported ? wc::Bool::TRUE : wc::Bool::FALSE);
    e.mode(mode).maxRateHz(max_rate_hz).expectedLayoutVersion(1);
    e.progressIntervalUs(progress.interval_us.value_or(e.progressIntervalUsNullValue()));
    e.progressBytesDelta(progress.bytes_delta.value_or(e.progressBytesDeltaNullValue()));
    e.progressMajorDeltaUnits(progress.major_delta_units.value_or(e.progressMajorDeltaUnitsNullValue()));
    e.descriptorStreamId(descriptor_stream).controlStreamId(control_stream);
    e.descriptorChannel(descriptor_stream != 0 && !without_channels ? kChannel : std::string());
    e.controlChannel(control_stream != 0 && !without_channels ? kChannel : std::string());
    auto n = e.finish();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

// A registry on a private bus, fed Hellos as the producer feeds it: `control` is the shared control stream it answers
// on, `replies` a tap on that stream.
struct RegistryBench {
    BusRoot bus;
    transport::TransportHub hub{bus.options(std::size_t{1} << 20)};
    std::unique_ptr<transport::Publication> control;
    std::unique_ptr<transport::Subscription> replies;
    std::unique_ptr<ConsumerRegistry> registry;

    // `rc` with this stream's id and the shared channel (per-consumer streams on it need no allow-list entry).
    // Returns "" or what failed.
    std::string start(ConsumerRegistryConfig rc) {
        auto pub = hub.add_publication(kChannel, 1000);
        if (!pub) return pub.error().message();
        control = std::move(*pub);
        auto sub = hub.add_subscription(kChannel, 1000);
        if (!sub) return sub.error().message();
        replies = std::move(*sub);
        rc.stream_id = kStream;
        rc.shared.channel = kChannel;
        registry = std::make_unique<ConsumerRegistry>(hub, std::move(rc));
        return "";
    }
    void on_hello(const std::vector<uint8_t>& m, int64_t now_ns) {
        auto d = wc::ConsumerHello::Decoder::wrap(m.data(), m.size());
        ASSERT_TRUE(d) << d.error().message();
        registry->on_hello(*d, now_ns, *control);
    }
};

}  // namespace

// W-5-9 with max_per_consumer_streams = 3: a consumer holding two streams leaves room for one more, so a second
// consumer asking for both halves gets its descriptor stream and a REJECTED control half — never four streams.
// A consumer that moves its descriptor stream to another id while at the limit frees the old one first.
TEST(ClientConsumerRegistry, StreamLimitCountsBothHalvesOfOneHello) {
    RegistryBench b;
    ConsumerRegistryConfig rc;
    rc.max_per_consumer_streams = 3;
    ASSERT_EQ(b.start(rc), "");
    ConsumerRegistry& registry = *b.registry;
    auto on_hello = [&](const std::vector<uint8_t>& m) { b.on_hello(m, 1); };

    on_hello(hello(1, 2001, 2002));
    EXPECT_EQ(registry.stats().streams_granted, 2u);
    on_hello(hello(2, 2003, 2004));
    EXPECT_EQ(registry.stats().streams_granted, 3u);
    EXPECT_EQ(registry.stats().grants, 3u);
    EXPECT_EQ(registry.stats().declines, 1u);

    // At the limit, consumer 1 moves its descriptor stream: the old one closes before the new one is counted.
    on_hello(hello(1, 2005, 2002));
    EXPECT_EQ(registry.stats().streams_granted, 3u);
    EXPECT_EQ(registry.stats().grants, 4u);
    EXPECT_EQ(registry.stats().declines, 1u);
}

// W-11-1, W-11-3, W-5-5: max_rate_hz caps a granted stream only for a RATE_LIMITED consumer (a STREAM consumer
// handles every descriptor); repeats of an unchanged request are answered again only after reply_refresh_ns, so
// periodic Hellos neither undo a supervisor's ConsumerConfig nor count one decline each.
TEST(ClientConsumerRegistry, RateCapOnlyForRateLimitedAndRepeatsAreNotReansweredAtOnce) {
    RegistryBench b;
    ConsumerRegistryConfig rc;
    rc.reply_refresh_ns = 1'000'000'000;
    ASSERT_EQ(b.start(rc), "");
    ConsumerRegistry& registry = *b.registry;
    auto on_hello = [&](const std::vector<uint8_t>& m, int64_t now) { b.on_hello(m, now); };
    auto count_replies = [&] {
        int configs = 0;
        b.replies->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
            if (wc::ConsumerConfig::Decoder::wrap(m.data(), m.size())) ++configs;
        }, 64);
        return configs;
    };

    on_hello(hello(1, 2001, 0, wc::Mode::STREAM, 10), 1);
    EXPECT_EQ(registry.stats().grants, 1u);
    EXPECT_FALSE(registry.has_rate_capped_streams());
    on_hello(hello(1, 2001, 0, wc::Mode::RATE_LIMITED, 10), 2);  // a change: answered, and capped now
    EXPECT_TRUE(registry.has_rate_capped_streams());
    EXPECT_EQ(count_replies(), 2);

    // The same request again and again: no new reply until the refresh time, then one.
    for (int64_t t = 3; t < 100; ++t) on_hello(hello(1, 2001, 0, wc::Mode::RATE_LIMITED, 10), t);
    EXPECT_EQ(count_replies(), 0);
    on_hello(hello(1, 2001, 0, wc::Mode::RATE_LIMITED, 10), 2 + rc.reply_refresh_ns);
    EXPECT_EQ(count_replies(), 1);

    // A repeated decline is counted once.
    on_hello(hello(2, 1000, 0), 10);  // the shared control stream's id: INVALID_PARAMS
    for (int64_t t = 11; t < 50; ++t) on_hello(hello(2, 1000, 0), t);
    EXPECT_EQ(registry.stats().declines, 1u);
}

// W-10.1.2-8, W-10.2.2-15: the producer merges the progress hints of the consumers that support progress — the
// smallest interval and deltas, but never below its own floors (default 250 us and 64 KiB) — and a null hint is no
// hint: it neither pulls a value down to the floor nor stands for 0. A consumer that gives no hint at all leaves
// the defaults: 250 us, 65,536 bytes, major-delta 0.
TEST(ClientConsumerRegistry, W_10_1_2_8_ProgressHintsMergeSmallestAboveTheFloorsNullIsNoHint) {
    RegistryBench b;
    ConsumerRegistryConfig rc;
    ASSERT_EQ(rc.progress_min_interval_ns, 250'000);
    ASSERT_EQ(rc.progress_min_bytes, 64u * 1024);
    ASSERT_EQ(b.start(rc), "");
    ConsumerRegistry& registry = *b.registry;
    auto on_hello = [&](uint32_t id, const Progress& progress) {
        b.on_hello(hello(id, 0, 0, wc::Mode::STREAM, 0, progress), 1);
    };
    auto expect_policy = [&](int64_t interval_ns, uint64_t bytes_delta, uint32_t major_delta_units) {
        const ProgressPolicy& p = registry.progress();
        EXPECT_TRUE(p.enabled);
        EXPECT_TRUE(p.on_shared);  // nobody has a control stream of its own
        EXPECT_EQ(p.interval_ns, interval_ns);
        EXPECT_EQ(p.bytes_delta, bytes_delta);
        EXPECT_EQ(p.major_delta_units, major_delta_units);
    };

    EXPECT_FALSE(registry.progress().enabled);
    on_hello(9, {});  // does not support progress: its hints (none) do not count, and progress stays off
    EXPECT_FALSE(registry.progress().enabled);

    {
        SCOPED_TRACE("one consumer, every hint null: the defaults");
        on_hello(1, {true, std::nullopt, std::nullopt, std::nullopt});
        expect_policy(250'000, 65'536, 0);
    }
    {
        SCOPED_TRACE("1000 us, 128 KiB, 4 rows: above the floors, and consumer 1's nulls do not pull them down");
        on_hello(2, {true, 1000, 128 * 1024, 4});
        expect_policy(1'000'000, 131'072, 4);
    }
    {
        SCOPED_TRACE("500 us wins; 100 bytes is below the floor (64 KiB); a null major delta keeps 4");
        on_hello(3, {true, 500, 100, std::nullopt});
        expect_policy(500'000, 65'536, 4);
    }
}

// W-10.1.2-9, W-5-5: max_rate_hz = 0 means unlimited, even for a RATE_LIMITED consumer with a granted descriptor
// stream: the producer caps nothing (every descriptor goes out, however close together). 25 Hz does cap.
TEST(ClientConsumerRegistry, W_10_1_2_9_ZeroMaxRateIsUnlimited) {
    RegistryBench b;
    ASSERT_EQ(b.start(ConsumerRegistryConfig{}), "");
    ConsumerRegistry& registry = *b.registry;
    auto on_hello = [&](const std::vector<uint8_t>& m) { b.on_hello(m, 1); };
    const std::vector<uint8_t> descriptor(64);  // its contents do not matter to the cap
    auto offer_three = [&](int64_t t0) {
        for (int64_t i = 0; i < 3; ++i) registry.offer_descriptor(descriptor, t0 + i * 1'000'000);  // 1 ms apart
    };

    on_hello(hello(1, 2001, 0, wc::Mode::RATE_LIMITED, 0));
    EXPECT_EQ(registry.stats().grants, 1u);
    EXPECT_TRUE(registry.has_descriptor_streams());
    EXPECT_FALSE(registry.has_rate_capped_streams());
    offer_three(1'000'000'000);
    EXPECT_EQ(registry.stats().descriptors_rate_capped, 0u);

    on_hello(hello(1, 2001, 0, wc::Mode::RATE_LIMITED, 25));
    EXPECT_TRUE(registry.has_rate_capped_streams());
    offer_three(2'000'000'000);
    EXPECT_EQ(registry.stats().descriptors_rate_capped, 2u);  // 40 ms apart at 25 Hz: only the first goes
}

// W-15.17-1, W-5-9, W-10.1.3-5: a producer configured to grant no per-consumer streams answers a request for one
// with UNSUPPORTED (the request is well formed; this producer just does not do it), an empty channel and stream id
// 0 in the ConsumerConfig, and a message that says so; a malformed request (half a channel) is INVALID_PARAMS
// whatever the policy.
TEST(ClientConsumerRegistry, W_15_17_1_AProducerWithoutPerConsumerStreamsAnswersUnsupported) {
    RegistryBench b;
    ConsumerRegistryConfig rc;
    rc.allow_per_consumer_streams = false;
    ASSERT_EQ(b.start(rc), "");
    ConsumerRegistry& registry = *b.registry;
    struct Reply {
        wc::ResponseCode code;
        std::string message;
    };
    auto answer = [&](const std::vector<uint8_t>& m, int64_t now) {
        b.on_hello(m, now);
        std::vector<Reply> responses;
        int configs = 0;
        b.replies->poll([&](std::span<const uint8_t> msg, const transport::MessageInfo&) {
            if (auto c = wc::ConsumerConfig::Decoder::wrap(msg.data(), msg.size())) {
                ++configs;
                EXPECT_EQ(c->descriptorStreamId(), 0u);
                EXPECT_EQ(c->descriptorChannel(), "");
            } else if (auto r = wc::ControlResponse::Decoder::wrap(msg.data(), msg.size())) {
                responses.push_back({r->code(), std::string(r->errorMessage())});
            }
        }, 64);
        EXPECT_EQ(configs, 1);
        return responses;
    };

    auto r = answer(hello(1, 2001, 0), 1);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].code, wc::ResponseCode::UNSUPPORTED);
    EXPECT_NE(r[0].message.find("grants no per-consumer streams"), std::string::npos) << r[0].message;
    EXPECT_EQ(registry.stats().grants, 0u);
    EXPECT_EQ(registry.stats().declines, 1u);

    // Half a request (a stream id without a channel) is malformed before it is a policy question.
    r = answer(hello(2, 2003, 0, wc::Mode::STREAM, 0, {}, true), 2);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].code, wc::ResponseCode::INVALID_PARAMS);
    EXPECT_NE(r[0].message.find("W-10.1.2-4"), std::string::npos) << r[0].message;
}
