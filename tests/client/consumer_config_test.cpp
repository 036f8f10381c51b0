// The consumer's FALLBACK state and identity (WIRE_SPEC §6.3, §15.12, W-10.1.3-1/-2, W-10.1.2-10): told by
// ConsumerConfig not to use SHM,
// or unable to map the announced regions, a consumer offered a usable payload fallback URI goes to FALLBACK and
// says where; one offered an unsupported scheme ignores it and stays UNMAPPED; allowed SHM again, it maps the next
// announce. In one process (producer, consumer and a forged supervisor on one bus) for exact control.
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

namespace {

std::vector<uint8_t> consumer_config(uint32_t consumer_id, bool use_shm, std::string_view fallback) {
    std::vector<uint8_t> buf(256);
    wc::ConsumerConfig::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(10000).consumerId(consumer_id).useShm(use_shm ? wc::Bool::TRUE : wc::Bool::FALSE).mode(wc::Mode::STREAM);
    e.descriptorStreamId(0).controlStreamId(0).payloadFallbackUri(fallback).descriptorChannel("").controlChannel("");
    const auto n = e.finish();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

}  // namespace

// W-10.1-4 (an empty fallback URI is no fallback), W-10.1.1-1, W-15.12-1, W-15.22-12.
TEST(ClientFallback, UseShmFalseOrRefusedRegionsGoToFallbackOnlyWithAUsableUri) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    TempDir elsewhere("/dev/shm");
    transport::TransportHub hub(bus.options());
    auto producer = Producer::create(hub, test_producer_config(shm_dir.path(), 64));
    ASSERT_TRUE(producer.ok()) << producer.error().message();
    Producer& p = **producer;
    ConsumerConfig cfg = test_consumer_config(shm_dir.path());
    cfg.consumer_id = 77;
    auto consumer = Consumer::create(hub, cfg);
    ASSERT_TRUE(consumer.ok()) << consumer.error().message();
    Consumer& c = **consumer;
    auto supervisor = hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(supervisor.ok());
    auto spin = [&](auto pred) {
        return wait_until([&] {
            p.do_work(monotonic_ns());
            c.do_work(monotonic_ns());
            return pred();
        }, 10s);
    };
    ASSERT_TRUE(spin([&] { return c.state() == MappingState::mapped; }));

    // An unsupported scheme is ignored (W-10.1.3-2); with no usable fallback, useShm = FALSE leaves it UNMAPPED.
    ASSERT_TRUE((*supervisor)->offer(consumer_config(77, false, "http://example/frames")).ok());
    ASSERT_TRUE(spin([&] { return c.stats().configs_received == 1; }));
    EXPECT_EQ(c.state(), MappingState::unmapped);
    EXPECT_EQ(c.fallback_uri(), "");
    EXPECT_NE(c.last_control_response().find("unsupported scheme"), std::string::npos) << c.last_control_response();
    EXPECT_NE(c.last_mapping_error().find("useShm"), std::string::npos) << c.last_mapping_error();
    // Announces keep coming but are not mapped while SHM is forbidden.
    const uint64_t ignored = c.stats().announces_ignored;
    ASSERT_TRUE(spin([&] { return c.stats().announces_ignored > ignored + 1; }));
    EXPECT_EQ(c.state(), MappingState::unmapped);

    // useShm = FALSE with a bridge fallback: FALLBACK, and the URI is reported.
    ASSERT_TRUE((*supervisor)->offer(consumer_config(77, false, "bridge://camera-7")).ok());
    ASSERT_TRUE(spin([&] { return c.stats().configs_received == 2; }));
    EXPECT_EQ(c.fallback_uri(), "bridge://camera-7");
    EXPECT_EQ(c.state(), MappingState::fallback);

    // SHM allowed again: the next announce maps (FALLBACK -> MAPPED), and frames flow.
    ASSERT_TRUE((*supervisor)->offer(consumer_config(77, true, "bridge://camera-7")).ok());
    ASSERT_TRUE(spin([&] { return c.state() == MappingState::mapped; }));
    uint64_t frames = 0;
    std::string why;
    ASSERT_TRUE(publish_test_frame(p, false, why)) << why;
    ASSERT_TRUE(spin([&] { c.poll_frames([&](const FrameView& f) { frames += f.still_valid(); }, 8); return frames == 1; }));

    // A fallback withdrawn while in FALLBACK leaves it UNMAPPED (§6.3); allow_shm() lifts a useShm = FALSE whose
    // sender will never say otherwise, and the next announce maps.
    ASSERT_TRUE((*supervisor)->offer(consumer_config(77, false, "bridge://camera-7")).ok());
    ASSERT_TRUE(spin([&] { return c.state() == MappingState::fallback; }));
    ASSERT_TRUE((*supervisor)->offer(consumer_config(77, false, "")).ok());
    ASSERT_TRUE(spin([&] { return c.stats().configs_received == 5; }));
    EXPECT_EQ(c.state(), MappingState::unmapped);
    EXPECT_EQ(c.fallback_uri(), "");
    c.allow_shm();
    ASSERT_TRUE(spin([&] { return c.state() == MappingState::mapped; }));

    // Regions the consumer must refuse (outside its allowed directories) with a fallback offered: FALLBACK.
    ConsumerConfig strict = cfg;
    strict.consumer_id = 78;
    strict.allowed_dirs = {elsewhere.path()};
    auto refusing = Consumer::create(hub, strict);
    ASSERT_TRUE(refusing.ok());
    ASSERT_TRUE((*supervisor)->offer(consumer_config(78, true, "aeron:udp?endpoint=10.0.0.1:40123")).ok());
    ASSERT_TRUE(wait_until([&] {
        p.do_work(monotonic_ns());
        (*refusing)->do_work(monotonic_ns());
        return (*refusing)->stats().mapping_failures > 0 && (*refusing)->stats().configs_received > 0;
    }, 10s));
    ASSERT_TRUE(wait_until([&] {
        p.do_work(monotonic_ns());
        (*refusing)->do_work(monotonic_ns());
        return (*refusing)->state() == MappingState::fallback;
    }, 10s)) << (*refusing)->last_mapping_error();
    EXPECT_EQ((*refusing)->fallback_uri(), "aeron:udp?endpoint=10.0.0.1:40123");
}

// W-10.1.2-10: a consumer that chose its id at random takes a new one when another publisher's Hello carries the
// same id (and says so at once); one with an assigned id keeps it and only counts the collision; a consumer's own
// Hellos are never mistaken for a collision.
TEST(ClientIdentity, ASelfAssignedIdIsReplacedOnACollisionAnAssignedOneIsKept) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    transport::TransportHub hub(bus.options());
    ConsumerConfig random_cfg = test_consumer_config(shm_dir.path());
    random_cfg.hello_period_ns = 1'000'000;
    ConsumerConfig assigned_cfg = random_cfg;
    assigned_cfg.consumer_id = 4711;
    auto random_id = Consumer::create(hub, random_cfg);
    auto assigned = Consumer::create(hub, assigned_cfg);
    ASSERT_TRUE(random_id.ok() && assigned.ok());
    Consumer& r = **random_id;
    Consumer& a = **assigned;
    auto other = hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(other.ok());
    auto run_for = [&](std::chrono::milliseconds d) {
        const auto end = Clock::now() + d;
        while (Clock::now() < end) {
            r.do_work(monotonic_ns());
            a.do_work(monotonic_ns());
        }
    };
    // Dozens of their own Hellos each: no collision.
    run_for(100ms);
    const uint32_t first = r.consumer_id();
    EXPECT_NE(first, 0u);
    EXPECT_EQ(r.stats().id_collisions, 0u);
    EXPECT_EQ(a.stats().id_collisions, 0u);

    auto hello = [](uint32_t id) {
        std::vector<uint8_t> buf(256);
        wc::ConsumerHello::Encoder e;
        (void)e.wrap_and_apply_header(buf.data(), buf.size());
        e.streamId(10000).consumerId(id).supportsShm(wc::Bool::TRUE).supportsProgress(wc::Bool::FALSE);
        e.mode(wc::Mode::STREAM).maxRateHz(0).expectedLayoutVersion(1);
        e.progressIntervalUs(e.progressIntervalUsNullValue()).progressBytesDelta(e.progressBytesDeltaNullValue());
        e.progressMajorDeltaUnits(e.progressMajorDeltaUnitsNullValue()).descriptorStreamId(0).controlStreamId(0);
        e.descriptorChannel("").controlChannel("");
        buf.resize(*e.finish());
        return buf;
    };
    ASSERT_TRUE((*other)->offer(hello(first)).ok());
    ASSERT_TRUE((*other)->offer(hello(4711)).ok());
    run_for(50ms);
    EXPECT_EQ(r.stats().id_collisions, 1u);
    EXPECT_NE(r.consumer_id(), first);
    EXPECT_NE(r.consumer_id(), 0u);
    EXPECT_EQ(a.stats().id_collisions, 1u);
    EXPECT_EQ(a.consumer_id(), 4711u);
    // And the new id holds: no further collisions from its own Hellos.
    run_for(100ms);
    EXPECT_EQ(r.stats().id_collisions, 1u);
}
