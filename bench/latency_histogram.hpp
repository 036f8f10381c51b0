// A fixed-size log-linear histogram of nanosecond latencies (16 sub-buckets per power of two, ~6% resolution)
// whose counters are plain atomics, so it can live in shared memory and be read by another process while it
// is being filled. Recording is two instructions and never allocates.
#pragma once

#include <array>
#include <atomic>
#include <bit>
#include <cstdint>

namespace tensorpool::bench {

class LatencyHistogram {
public:
    static constexpr int kSubBits = 4;
    static constexpr int kBuckets = 64 << kSubBits;

    void record(int64_t ns) noexcept { counts_[index_of(ns < 0 ? 0 : static_cast<uint64_t>(ns))].fetch_add(1, std::memory_order_relaxed); }

    // A copy of the counts (for percentiles of everything so far, or of the delta between two snapshots).
    struct Snapshot {
        std::array<uint64_t, kBuckets> counts{};
        uint64_t total() const noexcept {
            uint64_t t = 0;
            for (uint64_t c : counts) t += c;
            return t;
        }
        // Upper bound of the bucket holding quantile q (0..1); 0 when empty.
        int64_t quantile(double q) const noexcept {
            const uint64_t n = total();
            if (n == 0) return 0;
            const auto want = static_cast<uint64_t>(q * static_cast<double>(n - 1)) + 1;
            uint64_t seen = 0;
            for (int i = 0; i < kBuckets; ++i) {
                seen += counts[i];
                if (seen >= want) return static_cast<int64_t>(upper_of(i));
            }
            return static_cast<int64_t>(upper_of(kBuckets - 1));
        }
        Snapshot minus(const Snapshot& earlier) const noexcept {
            Snapshot d;
            for (int i = 0; i < kBuckets; ++i) d.counts[i] = counts[i] - earlier.counts[i];
            return d;
        }
    };

    Snapshot snapshot() const noexcept {
        Snapshot s;
        for (int i = 0; i < kBuckets; ++i) s.counts[i] = counts_[i].load(std::memory_order_relaxed);
        return s;
    }

private:
    static int index_of(uint64_t v) noexcept {
        if (v < (1u << kSubBits)) return static_cast<int>(v);
        const int msb = 63 - std::countl_zero(v);
        const int shift = msb - kSubBits;
        const int sub = static_cast<int>((v >> shift) & ((1u << kSubBits) - 1));
        return ((shift + 1) << kSubBits) + sub;
    }
    static uint64_t upper_of(int i) noexcept {
        if (i < (1 << kSubBits)) return static_cast<uint64_t>(i);
        const int shift = (i >> kSubBits) - 1;
        const uint64_t sub = static_cast<uint64_t>(i & ((1 << kSubBits) - 1));
        return (((uint64_t{1} << kSubBits) | sub) + 1) << shift;
    }

    std::array<std::atomic<uint64_t>, kBuckets> counts_{};
};

}  // namespace tensorpool::bench
