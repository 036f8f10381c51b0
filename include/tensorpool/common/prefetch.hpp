// Cache hints for the hot paths. A prefetch never faults and never changes what a program computes; it only asks
// for a line early.
#pragma once

namespace tensorpool {

namespace detail {
// CPUID 0x80000001 ECX bit 8 (PRFCHW / 3DNowPrefetch): probed once at start-up (prefetch.cpp).
extern const bool kCpuHasPrefetchw;
}  // namespace detail

// Asks for the line holding `p` in a state this core may write (PREFETCHW): the invalidation of other cores'
// copies then overlaps other work, instead of holding up the stores that need the line. x86 retires stores in
// order, so one store waiting for a line another core holds stalls every later store behind it.
inline void prefetch_for_write(const void* p) noexcept {
#if defined(__x86_64__)
    if (detail::kCpuHasPrefetchw) {
        asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
        return;
    }
#endif
    __builtin_prefetch(p, 1, 3);
}

}  // namespace tensorpool
