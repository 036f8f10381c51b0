// The client layer over the aeron backend (a real embedded C media driver), on the channel other implementations
// use by default (`aeron:ipc?term-length=4m`): frames flow, a per-consumer descriptor stream and control stream are
// granted and used (W-5-1/-2/-6), and FrameProgress reaches the consumer on its own control stream. In one process:
// what is under test is that nothing in the protocol depends on the embedded ipc bus. Skips, saying so, without
// Aeron in the build.
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

TEST(ClientOverAeron, FramesPerConsumerStreamsAndProgressFlow) {
#ifndef TENSORPOOL_HAVE_AERON
    GTEST_SKIP() << "Aeron not built (not found, or TENSORPOOL_WITH_AERON=OFF): configure with "
                    "-DCMAKE_PREFIX_PATH=<Aeron install prefix> to run the client over Aeron";
#else
    TempDir shm_dir("/dev/shm");
    transport::TransportOptions topt;
    topt.aeron_embedded_driver = true;
    topt.aeron_driver_timeout_ms = 10000;
    transport::TransportHub hub(topt);
    const Channels channels = Channels::aeron_defaults();

    ProducerConfig pcfg = test_producer_config(shm_dir.path(), 64);
    pcfg.channels = channels;
    pcfg.progress_min_interval_ns = 0;  // every report goes out: this test counts them
    pcfg.progress_min_bytes = 1;
    auto producer = Producer::create(hub, pcfg);
    ASSERT_TRUE(producer.ok()) << producer.error().message();
    Producer& p = **producer;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.channels = channels;
    ccfg.descriptor_request = {channels.channel, 2001};
    ccfg.control_request = {channels.channel, 2201};
    ccfg.supports_progress = true;
    auto consumer = Consumer::create(hub, ccfg);
    ASSERT_TRUE(consumer.ok()) << consumer.error().message();
    Consumer& c = **consumer;

    auto spin = [&](auto pred) {
        return wait_until([&] {
            p.do_work(monotonic_ns());
            c.do_work(monotonic_ns());
            return pred();
        }, 20s);
    };
    ASSERT_TRUE(spin([&] {
        return c.state() == MappingState::mapped && c.streams().per_consumer_descriptor &&
               c.streams().per_consumer_control && p.consumers().progress().enabled;
    })) << "state " << static_cast<int>(c.state()) << " error '" << c.last_mapping_error() << "' response '"
        << c.last_control_response() << "'";
    EXPECT_EQ(c.streams().descriptor_stream_id, 2001);
    EXPECT_EQ(c.streams().control_stream_id, 2201);
    EXPECT_EQ(p.consumers().stats().streams_granted, 2u);

    uint64_t good = 0, bad = 0, progress = 0;
    auto on_frame = [&](const FrameView& f) {
        const bool ok = frame_matches_spec(f) && check_payload(f.payload(), f.seq(), f.epoch());
        if (!f.still_valid()) return;
        (ok ? good : bad) += 1;
    };
    auto on_progress = [&](const ProgressView& v) { progress += v.still_valid() ? 1 : 0; };
    std::string why;
    constexpr uint64_t kFrames = 600;
    for (uint64_t i = 0; i < kFrames; ++i) {
        // Alternate the copy API, plain claims and shaped claims with progress reports.
        if (i % 3 == 2) {
            const FrameSpec s = frame_spec(p.next_seq());
            FrameClaim claim;
            ASSERT_TRUE(p.try_claim(s.shape, s.length, claim, frame_options(p.next_seq())).committed());
            fill_payload(claim.payload(), claim.seq(), p.epoch());
            ASSERT_TRUE(claim.progress(s.length / 2));
            ASSERT_TRUE(claim.commit().committed());
        } else {
            ASSERT_TRUE(publish_test_frame(p, i % 3 == 1, why)) << why;
        }
        c.poll_progress(on_progress, 16);
        c.poll_frames(on_frame, 16);
    }
    ASSERT_TRUE(spin([&] {
        c.poll_progress(on_progress, 64);
        c.poll_frames(on_frame, 64);
        return good + bad >= kFrames;
    })) << "good " << good << " bad " << bad << " gap " << c.stats().drops_gap << " late " << c.stats().drops_late;
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(good, kFrames);
    EXPECT_GT(progress, 0u);
    EXPECT_EQ(c.stats().drops_gap, 0u);
    std::printf("[ figures  ] over Aeron: %llu frames on the per-consumer stream, %llu progress reports\n",
                static_cast<unsigned long long>(good), static_cast<unsigned long long>(progress));
#endif
}
