// A frame-rate cap by timestamps: lets through at most `max_rate_hz` frames per second on average, never two
// within one period of each other after a pause. Used by the producer on a granted per-consumer descriptor stream
// (W-5-5) and by a RATE_LIMITED consumer that gates locally on the shared stream (W-11-2, W-11-4).
#pragma once

#include <cstdint>

namespace tensorpool::client {

class RateGate {
public:
    RateGate() = default;
    explicit RateGate(uint32_t max_rate_hz) noexcept { set_rate(max_rate_hz); }

    // 0 = no cap. Setting the rate it already has keeps the schedule (periodic Hellos repeat it).
    void set_rate(uint32_t max_rate_hz) noexcept {
        const int64_t period = max_rate_hz == 0 ? 0 : 1'000'000'000 / static_cast<int64_t>(max_rate_hz);
        if (period == period_ns_) return;
        period_ns_ = period;
        started_ = false;
    }
    bool limited() const noexcept { return period_ns_ != 0; }

    // True if a frame stamped `ts_ns` may pass. On schedule (less than one period late) the next slot is exactly
    // one period on, so the average rate is exact even when frames arrive a little off the grid (30 Hz frames under
    // a 25 Hz cap pass at 25 Hz, not 15 Hz); after a pause the schedule restarts from this frame.
    // Timestamps may come off the wire (FrameDescriptor.timestampNs), so any value is possible: the arithmetic wraps
    // (in uint64_t) instead of overflowing; a stamp near INT64_MAX then restarts the schedule at the next frame.
    // A frame stamped more than a period before the schedule cannot be on it (the clock went back, or one far-future
    // stamp set the schedule): the schedule restarts there instead of refusing every frame until time catches up.
    bool allow(int64_t ts_ns) noexcept {
        if (period_ns_ == 0) return true;
        const auto ts = static_cast<uint64_t>(ts_ns), due = static_cast<uint64_t>(next_due_ns_);
        const auto period = static_cast<uint64_t>(period_ns_);
        if (started_ && ts_ns < next_due_ns_ && due - ts <= period) return false;
        next_due_ns_ = static_cast<int64_t>((started_ && ts - due < period) ? due + period : ts + period);
        started_ = true;
        return true;
    }

private:
    int64_t period_ns_ = 0;
    int64_t next_due_ns_ = 0;
    bool started_ = false;
};

}  // namespace tensorpool::client
