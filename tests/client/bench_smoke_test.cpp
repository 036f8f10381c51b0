// `tensorpool bench frames` end to end, short: the benchmark's own processes move frames, its baselines are
// measured, and nothing torn is ever counted as accepted. Figures are not asserted (they belong to the machine);
// what is asserted is that the run measured something real.
#include <gtest/gtest.h>

#include <fstream>
#include <vector>

#include "baselines.hpp"
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
    EXPECT_GE(r->consumer_preemptions_per_s, 0.0);
    EXPECT_GE(r->consumer_page_faults_per_s, 0.0);
    if (bench::read_interrupts_per_cpu().empty()) {
        EXPECT_EQ(r->consumer_cpu_interrupts_per_s, -1.0) << "no /proc/interrupts here: the figure is unknown";
    } else {
        // Pinned (the default, on two CPUs): the consumer's CPU is known, and a busy CPU takes timer interrupts.
        EXPECT_GT(r->consumer_cpu_interrupts_per_s, 0.0) << "the interrupts of the consumer's CPU were not counted";
    }
}

TEST(BenchFrames, InterruptsAreCountedPerCpuFromProcInterrupts) {
    const char* text =
        "           CPU0       CPU1       \n"
        "  0:         35          0   IO-APIC   2-edge      timer\n"
        "  4:          0       1200   IO-APIC   4-edge      ttyS0\n"
        "NMI:          0          0   Non-maskable interrupts\n"
        "LOC:       2168       1418   Local timer interrupts\n"
        "ERR:          7\n"
        "MIS:          0\n";
    EXPECT_EQ(bench::parse_interrupts_per_cpu(text), (std::vector<uint64_t>{35 + 2168, 1200 + 1418}));
    EXPECT_TRUE(bench::parse_interrupts_per_cpu("no header\n 0: 1 2\n").empty());
    // CPU1 offline: the columns are CPU0 and CPU2, and the counts go to those numbers.
    EXPECT_EQ(bench::parse_interrupts_per_cpu("    CPU0  CPU2\nLOC:  5  7  Local timer interrupts\n"),
              (std::vector<uint64_t>{5, 0, 7}));
    if (!std::ifstream("/proc/interrupts")) GTEST_SKIP() << "this machine has no readable /proc/interrupts";
    EXPECT_GE(bench::read_interrupts_per_cpu().size(), 1u) << "/proc/interrupts of this machine did not parse";
}
