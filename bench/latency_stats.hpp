// Percentiles of a sample of nanosecond durations, computed once at the end of a run (the sample vector is
// reserved up front so the measured loop never allocates).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace tensorpool::bench {

struct LatencySummary {
    uint64_t count = 0;
    int64_t p50 = 0;
    int64_t p99 = 0;
    int64_t p999 = 0;
    int64_t max = 0;
};

inline LatencySummary summarize(std::vector<int64_t>& samples) {
    LatencySummary s;
    s.count = samples.size();
    if (samples.empty()) return s;
    std::sort(samples.begin(), samples.end());
    auto at = [&](double q) {
        std::size_t i = static_cast<std::size_t>(q * static_cast<double>(samples.size() - 1) + 0.5);
        return samples[std::min(i, samples.size() - 1)];
    };
    s.p50 = at(0.50);
    s.p99 = at(0.99);
    s.p999 = at(0.999);
    s.max = samples.back();
    return s;
}

}  // namespace tensorpool::bench
