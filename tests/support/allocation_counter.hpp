// Counts every global operator new of the test binary that includes this header (include it from exactly one
// source file per executable: it defines the replacement allocation functions). Used to prove hot paths
// allocate nothing (DESIGN "Hot-path rules").
#pragma once

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <new>

namespace tensorpool::test {
inline std::atomic<std::uint64_t> g_allocations{0};
inline std::uint64_t allocations() noexcept { return g_allocations.load(std::memory_order_relaxed); }
}  // namespace tensorpool::test

// malloc/free underneath, so every new pairs with its delete. GCC cannot see that through the replacement and
// warns when it inlines one into gtest's code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
    tensorpool::test::g_allocations.fetch_add(1, std::memory_order_relaxed);
    if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
    throw std::bad_alloc();
}
void* operator new[](std::size_t n) { return operator new(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
