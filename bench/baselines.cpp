#include "baselines.hpp"

#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "tensorpool/common/clock.hpp"

namespace tensorpool::bench {

namespace {

int usable_cpus(cpu_set_t& allowed) {
    if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 0;
    return CPU_COUNT(&allowed);
}

// Runs batch() again and again for about `seconds` (the clock is read between batches only); returns the ns taken.
template <class Batch>
std::int64_t repeat_for(double seconds, Batch batch) {
    const std::int64_t start = monotonic_ns();
    const std::int64_t end = start + static_cast<std::int64_t>(seconds * 1e9);
    std::int64_t now = start;
    while (now < end) {
        batch();
        now = monotonic_ns();
    }
    return now - start;
}

}  // namespace

int usable_cpu_count() {
    cpu_set_t allowed;
    return usable_cpus(allowed);
}

int pin_to_cpu(int k) {
    cpu_set_t allowed;
    const int n = usable_cpus(allowed);
    if (n < 2) return -1;
    int want = k % n;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (want-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            return ::sched_setaffinity(0, sizeof one, &one) == 0 ? cpu : -1;
        }
    }
    return -1;
}

double memcpy_bytes_per_s(std::size_t n, std::uint32_t slots, double seconds) {
    std::vector<std::byte> src(n, std::byte{0xAB});
    std::vector<std::byte> dst(static_cast<std::size_t>(slots) * n);
    std::uint64_t copies = 0;
    const std::int64_t ns = repeat_for(seconds, [&] {
        for (int k = 0; k < 64; ++k) {
            std::memcpy(dst.data() + (copies % slots) * n, src.data(), n);
            ++copies;
        }
    });
    volatile std::byte sink = dst[(copies - 1) % slots * n];
    (void)sink;
    return static_cast<double>(copies) * static_cast<double>(n) / (static_cast<double>(ns) / 1e9);
}

double line_transfer_ns(int k, int l, double seconds) {
    cpu_set_t allowed;
    if (usable_cpus(allowed) < 2) return 0;
    struct alignas(64) Line {
        std::atomic<std::uint64_t> v{0};
    };
    Line ping, pong;
    std::atomic<bool> stop{false};
    std::thread other([&] {
        pin_to_cpu(l);
        std::uint64_t seen = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            const std::uint64_t v = ping.v.load(std::memory_order_acquire);
            if (v != seen) {
                seen = v;
                pong.v.store(v, std::memory_order_release);
            }
        }
    });
    cpu_set_t saved;
    const bool restore = ::sched_getaffinity(0, sizeof saved, &saved) == 0;
    pin_to_cpu(k);
    // Let the other thread reach its CPU before timing.
    ping.v.store(1, std::memory_order_release);
    while (pong.v.load(std::memory_order_acquire) != 1) {
    }
    std::uint64_t trips = 0;
    const std::int64_t ns = repeat_for(seconds, [&] {
        for (int i = 0; i < 256; ++i) {
            const std::uint64_t v = trips + 2;
            ping.v.store(v, std::memory_order_release);
            while (pong.v.load(std::memory_order_acquire) != v) {
            }
            ++trips;
        }
    });
    stop.store(true);
    other.join();
    if (restore) (void)::sched_setaffinity(0, sizeof saved, &saved);
    return static_cast<double>(ns) / static_cast<double>(trips) / 2.0;
}

CpuTimes read_cpu_times() {
    CpuTimes t;
    std::FILE* f = std::fopen("/proc/stat", "r");
    if (f == nullptr) return t;
    // "cpu  user nice system idle iowait irq softirq steal ...", in clock ticks, summed over the CPUs.
    unsigned long long v[8] = {};
    if (std::fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                    &v[7]) == 8) {
        for (unsigned long long x : v) t.total += x;
        t.steal = v[7];
    }
    std::fclose(f);
    return t;
}

double steal_percent(const CpuTimes& before, const CpuTimes& after) {
    if (after.total <= before.total) return 0;
    return 100.0 * static_cast<double>(after.steal - before.steal) / static_cast<double>(after.total - before.total);
}

std::vector<std::uint64_t> parse_interrupts_per_cpu(std::string_view text) {
    // "           CPU0       CPU1\n  0:         35          0   IO-APIC   2-edge      timer\n ... LOC:  2168  1418 ..."
    // Columns follow the header, which names only online CPUs (CPU0 CPU2 ... when CPU1 is offline).
    auto next_line = [&text]() {
        const std::size_t end = text.find('\n');
        std::string_view line = text.substr(0, end);
        text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
        return line;
    };
    auto skip_spaces = [](std::string_view& v) {
        while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
    };
    auto take_number = [](std::string_view& v, std::uint64_t& out) {
        const auto [ptr, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
        if (ec != std::errc() || (ptr != v.data() + v.size() && *ptr != ' ')) return false;
        v.remove_prefix(static_cast<std::size_t>(ptr - v.data()));
        return true;
    };
    std::vector<std::size_t> column_cpu;  // column -> CPU number
    for (std::string_view header = next_line();;) {
        skip_spaces(header);
        if (!header.starts_with("CPU")) break;
        header.remove_prefix(3);
        std::uint64_t cpu = 0;
        if (!take_number(header, cpu) || cpu >= 4096) return {};
        column_cpu.push_back(static_cast<std::size_t>(cpu));
    }
    if (column_cpu.empty()) return {};
    std::vector<std::uint64_t> per_cpu(*std::max_element(column_cpu.begin(), column_cpu.end()) + 1, 0);
    while (!text.empty()) {
        std::string_view line = next_line();
        const std::size_t colon = line.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view name = line.substr(0, colon);
        skip_spaces(name);
        if (name == "ERR" || name == "MIS") continue;  // one count for the whole machine
        line.remove_prefix(colon + 1);
        std::vector<std::uint64_t> counts;
        while (counts.size() < column_cpu.size()) {
            skip_spaces(line);
            std::uint64_t v = 0;
            if (!take_number(line, v)) break;
            counts.push_back(v);
        }
        if (counts.size() != column_cpu.size()) continue;  // not a line of per-CPU counts
        for (std::size_t c = 0; c < counts.size(); ++c) per_cpu[column_cpu[c]] += counts[c];
    }
    return per_cpu;
}

std::vector<std::uint64_t> read_interrupts_per_cpu() {
    std::ifstream in("/proc/interrupts");
    if (!in) return {};
    std::ostringstream text;
    text << in.rdbuf();
    return parse_interrupts_per_cpu(text.str());
}

KernelEvents thread_kernel_events() {
    struct rusage ru {};
    if (::getrusage(RUSAGE_THREAD, &ru) != 0) return {};
    return {static_cast<std::uint64_t>(ru.ru_nivcsw), static_cast<std::uint64_t>(ru.ru_minflt + ru.ru_majflt)};
}

}  // namespace tensorpool::bench
