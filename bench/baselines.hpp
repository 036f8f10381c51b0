// Baselines a benchmark measures in the same run as the figure it reports, so that the figure reads as a ratio
// to what this machine can do at that moment (shared VMs vary by 2-3x from minute to minute).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace tensorpool::bench {

// How many CPUs the calling thread may use.
int usable_cpu_count();

// Pins the calling thread to the k-th CPU it may use (k modulo their count) and returns that CPU's number; nothing
// and -1 when it may use fewer than two (or the kernel refuses). Keeps the producer and consumers off each other's
// cores: migrations show up as tens of microseconds.
int pin_to_cpu(int k);

// Bytes per second of a bare memcpy of n-byte buffers into `slots` rotating destinations, for `seconds`.
double memcpy_bytes_per_s(std::size_t n, std::uint32_t slots, double seconds);

// One-way time for a cache line written on one CPU to be read on another: half the mean round trip of two
// threads pinned to the k-th and l-th CPUs (as pin_to_cpu counts them) passing a counter back and forth through
// two lines, for `seconds`. A frame's commit -> accepted latency needs at least two such transfers (the
// descriptor, then the slot and payload lines it points at), so this is the floor under that latency.
// Returns 0 when fewer than two CPUs are available.
double line_transfer_ns(int k, int l, double seconds);

// Time the hypervisor took from this machine's CPUs (the "steal" column of /proc/stat) while a run lasted: on a
// virtual machine the latency tail follows it. Take a snapshot before and after; 0 where /proc/stat has no steal.
// /proc/stat counts in clock ticks (10 ms), so a short run reports only the larger preemptions.
struct CpuTimes {
    std::uint64_t steal = 0;
    std::uint64_t total = 0;
};
CpuTimes read_cpu_times();
double steal_percent(const CpuTimes& before, const CpuTimes& after);

// Interrupts each CPU has taken since boot, summed over the sources of /proc/interrupts, indexed by the CPU number
// the header gives each column (an offline CPU's entry stays 0). Lines with one count for the whole machine (ERR,
// MIS) are left out. Empty when the text has no CPU header. A stall of a pinned loop that its CPU's interrupts
// cannot account for did not come from this kernel's interrupts.
std::vector<std::uint64_t> parse_interrupts_per_cpu(std::string_view proc_interrupts);
std::vector<std::uint64_t> read_interrupts_per_cpu();  // of this machine, now; empty if unreadable

// What the kernel did to the calling thread since it started, besides interrupts: involuntary context switches
// (another task took its CPU) and page faults.
struct KernelEvents {
    std::uint64_t preemptions = 0;
    std::uint64_t page_faults = 0;
};
KernelEvents thread_kernel_events();

}  // namespace tensorpool::bench
