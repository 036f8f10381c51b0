// RateGate with timestamps taken off the wire: any int64 value, including ones whose sum with the period
// overflows (found by fuzz_client_control: a FrameDescriptor stamped near INT64_MAX under a consumer gating locally;
// signed overflow there is undefined behaviour, which the ASan/UBSan build turns into a crash).
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

#include "tensorpool/client/rate_gate.hpp"

using tensorpool::client::RateGate;

TEST(ClientRateGate, TimestampsAtTheEndsOfTheRangeAreWellDefined) {
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
    constexpr int64_t kPeriod = 20'000'000;  // 50 Hz

    RateGate gate(50);
    EXPECT_TRUE(gate.allow(1'000'000'000));
    EXPECT_FALSE(gate.allow(1'000'000'000 + kPeriod / 2));
    EXPECT_TRUE(gate.allow(kMax - 5));  // far in the future: passes; the next due time wraps
    EXPECT_TRUE(gate.allow(1'000'000'000 + 2 * kPeriod));  // the schedule restarts from here
    EXPECT_FALSE(gate.allow(1'000'000'000 + 2 * kPeriod + 1));
    EXPECT_TRUE(gate.allow(1'000'000'000 + 3 * kPeriod));

    RateGate low(50);
    EXPECT_TRUE(low.allow(kMin));  // a due time at the bottom of the range...
    EXPECT_TRUE(low.allow(kMax));  // ...then one at the top: the lateness does not fit an int64
    EXPECT_TRUE(low.allow(0));

    // One far-future stamp (not near the wrap) does not stall the gate until real time catches up: the next
    // ordinary frame is more than a period before the schedule, which restarts there.
    RateGate future(50);
    EXPECT_TRUE(future.allow(1'000'000'000));
    EXPECT_TRUE(future.allow(1'000'000'000'000'000));  // ~11.6 days ahead
    EXPECT_TRUE(future.allow(1'000'000'000 + kPeriod));
    EXPECT_FALSE(future.allow(1'000'000'000 + kPeriod + kPeriod / 2));
    EXPECT_TRUE(future.allow(1'000'000'000 + 2 * kPeriod));

    // Ordinary stamps keep the exact-average schedule: 30 Hz frames under a 25 Hz cap pass at 25 Hz.
    RateGate cap(25);
    int passed = 0;
    for (int i = 0; i < 300; ++i) passed += cap.allow(int64_t{i} * 1'000'000'000 / 30) ? 1 : 0;
    EXPECT_EQ(passed, 250);
}
