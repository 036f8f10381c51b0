// Clocks used across the library. CLOCK_MONOTONIC is the protocol's default clock domain (WIRE_SPEC W-15.7-1);
// clock_gettime on it is served by the vDSO, so reading it is not a system call.
#pragma once

#include <time.h>

#include <cstdint>

namespace tensorpool {

inline int64_t monotonic_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

inline int64_t realtime_ns() noexcept {
    timespec ts;
    ::clock_gettime(CLOCK_REALTIME, &ts);
    return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace tensorpool
