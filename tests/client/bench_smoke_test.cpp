// `tensorpool bench frames` end to end, short: the benchmark's own processes move frames, its baselines are
// measured, and nothing torn is ever counted as accepted. Figures are not asserted (they belong to the machine);
// what is asserted is that the run measured something real.
#include <gtest/gtest.h>

#include "frames_bench.hpp"

using namespace tensorpool;

namespace {

void expect_a_real_run(const bench::FramesBenchResult& r, std::size_t payload) {
    EXPECT_EQ(r.payload_bytes, payload);
    EXPECT_GT(r.published, 0u);
    EXPECT_GT(r.accepted, 0u) << "the consumer accepted nothing";
    EXPECT_LE(r.accepted, r.published);
    EXPECT_EQ(r.torn_accepted, 0u);
    EXPECT_GT(r.memcpy_bytes_per_s, 0.0);
    EXPECT_GT(r.frame_cost.producer_ns, 0.0);
    EXPECT_GT(r.frame_cost.consumer_ns, 0.0);
    // Pinned by default: the two-process turn-taking baseline ran too.
    EXPECT_GT(r.handoff_cost.producer_ns, 0.0);
    EXPECT_GT(r.handoff_cost.consumer_ns, 0.0);
    EXPECT_GE(r.line_transfer_ns, 0.0);
    EXPECT_GE(r.steal_percent, 0.0);
    EXPECT_LE(r.steal_percent, 100.0);
    EXPECT_GT(r.fps, 0.0);
    EXPECT_LE(r.fps, r.published_fps * 1.0001);
}

}  // namespace

TEST(BenchFrames, SmallFramesUnpacedRunWithItsBaselines) {
    bench::FramesBenchOptions o;
    o.payload_bytes = 64;
    o.seconds = 0.3;
    auto r = bench::run_frames_bench(o);
    ASSERT_TRUE(r.ok()) << r.error().message();
    expect_a_real_run(*r, 64);
    // Unpaced, a loop turn is a batch of frames: stalls are timed only in paced runs.
    EXPECT_EQ(r->consumer_stalls_per_s, 0.0);
    EXPECT_EQ(r->consumer_stalled_percent, 0.0);
}

TEST(BenchFrames, LargeFramesPacedRunRecordsLatency) {
    bench::FramesBenchOptions o;
    o.payload_bytes = 256 * 1024;
    o.seconds = 0.3;
    o.rate_hz = 1000;
    auto r = bench::run_frames_bench(o);
    ASSERT_TRUE(r.ok()) << r.error().message();
    expect_a_real_run(*r, 256 * 1024);
    EXPECT_GT(r->latency_p50_ns, 0);
    EXPECT_LE(r->latency_p50_ns, r->latency_p99_ns);
    EXPECT_GE(r->consumer_stalls_per_s, 0.0);
    EXPECT_GE(r->consumer_stalled_percent, 0.0);
    EXPECT_LE(r->consumer_stalled_percent, 100.0);
    // A stall is longer than 5 us, so n stalls a second take at least n * 5 us of it.
    EXPECT_GE(r->consumer_stalled_percent * 1e-2 * 1e9, r->consumer_stalls_per_s * 5'000.0 * 0.999);
}
