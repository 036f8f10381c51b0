// `tensorpool bench transport`: two-process ping-pong latency and one-way throughput of a transport backend.
#pragma once

#include <cstdint>
#include <string>

#include "latency_stats.hpp"
#include "tensorpool/common/result.hpp"

namespace tensorpool::bench {

struct TransportBenchOptions {
    std::string backend = "ipc";  // "ipc" or "aeron"
    double seconds = 2.0;         // one-way run length; ping-pong runs at least min_round_trips
    uint64_t min_round_trips = 200'000;
    uint64_t warmup_round_trips = 20'000;
    std::string ipc_root;         // empty: a private directory under /dev/shm
};

struct TransportBenchResult {
    LatencySummary rtt_ns;        // 32-byte ping-pong round trips
    double oneway_msgs_per_s = 0; // 64-byte messages received per second by a subscriber keeping up
    uint64_t oneway_messages = 0;
    uint64_t lost = 0;            // messages the subscriber lost in the one-way run
};

Result<TransportBenchResult> run_transport_bench(const TransportBenchOptions& options);

}  // namespace tensorpool::bench
