// `tensorpool bench frames`: a producer and K consumer processes moving N-byte frames over the embedded ipc
// transport, as fast as possible or paced; compared with a bare memcpy loop over the same working set (N-byte
// copies into nslots rotating destinations) measured in the same run.
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensorpool/common/result.hpp"

namespace tensorpool::bench {

struct FramesBenchOptions {
    std::size_t payload_bytes = 655360;
    int consumers = 1;
    double seconds = 3.0;
    double rate_hz = 0;      // 0: as fast as possible
    uint32_t nslots = 0;     // header ring / pool slots; 0: about 8 MiB of pool, between 8 and 4096 slots
    bool pin = true;         // pin the producer and each consumer to their own CPU (round robin) when it helps
};

// Time per frame on each side, in ns, producer and consumer taking turns a batch at a time (frames_bench.cpp).
struct FrameCost {
    double producer_ns = 0;
    double consumer_ns = 0;
};

struct FramesBenchResult {
    std::size_t payload_bytes = 0;
    uint32_t nslots = 0;
    uint64_t published = 0;
    uint64_t accepted = 0;       // over all consumers
    double published_fps = 0;
    double fps = 0;              // accepted frames per second of the slowest consumer
    double bytes_per_s = 0;      // published_fps * payload_bytes (the producer's copy into shared memory)
    double memcpy_bytes_per_s = 0;
    double ratio_to_memcpy = 0;
    double line_transfer_ns = 0;  // one-way cache-line transfer producer CPU -> consumer CPU (0 when not pinned)
    FrameCost frame_cost;         // both in one thread: the CPU cost alone
    FrameCost handoff_cost;       // on the producer's and the first consumer's CPUs: with the cache-line traffic
                                  // (0 when not pinned)
    double steal_percent = 0;     // CPU time the hypervisor took while frames moved (/proc/stat steal)
    double consumer_stalls_per_s = 0;     // paced runs: consumer loop turns held up > 5 us, per second (mean over
    double consumer_stalled_percent = 0;  // consumers), and the share of the run they took; 0 when unpaced
    // What of those stalls this kernel saw, per second over the same window (paced runs): the consumers' preemptions
    // by the scheduler, their page faults, and the interrupts their CPUs took (mean over the consumers whose figure
    // is known; -1 when none is: unpaced, not pinned, or /proc/interrupts unreadable). The stalls none of these can
    // account for were not this kernel's doing (on a virtual machine, most likely the hypervisor's).
    double consumer_preemptions_per_s = 0;
    double consumer_page_faults_per_s = 0;
    double consumer_cpu_interrupts_per_s = -1;
    int64_t latency_p50_ns = 0;  // publish (after commit) -> accepted by a consumer
    int64_t latency_p99_ns = 0;
    int64_t latency_p999_ns = 0;
    uint64_t drops_gap = 0;
    uint64_t drops_late = 0;
    uint64_t torn_accepted = 0;
};

Result<FramesBenchResult> run_frames_bench(const FramesBenchOptions& options);

}  // namespace tensorpool::bench
