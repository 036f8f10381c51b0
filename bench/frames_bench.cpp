#include "frames_bench.hpp"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <new>
#include <thread>
#include <vector>

#include "fork_child.hpp"
#include "latency_histogram.hpp"
#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"

namespace tensorpool::bench {

namespace {

constexpr int kMaxConsumers = 8;

struct ConsumerShared {
    std::atomic<uint64_t> accepted{0};
    std::atomic<uint64_t> torn_accepted{0};
    std::atomic<uint64_t> drops_gap{0};
    std::atomic<uint64_t> drops_late{0};
    std::atomic<int> ready{0};
    std::atomic<int> failed{0};
    std::atomic<int64_t> first_ns{0};
    std::atomic<int64_t> last_ns{0};
    LatencyHistogram latency;
};

struct Shared {
    std::atomic<int> go{0};
    std::atomic<int> stop{0};
    std::atomic<uint64_t> published{0};
    std::atomic<int64_t> publish_ns{0};
    std::atomic<int> producer_failed{0};
    char error[240]{};
    ConsumerShared consumers[kMaxConsumers];
};

// Payload words 0 and last carry the seq; the rest is a constant pattern. A torn or mixed read breaks one of them.
void stamp(std::byte* p, std::size_t n, uint64_t seq) noexcept {
    const uint64_t a = seq, b = ~seq;
    std::memcpy(p, &a, 8);
    std::memcpy(p + n - 8, &b, 8);
}

bool intact(std::span<const std::byte> p, uint64_t seq) noexcept {
    uint64_t a = 0, b = 0;
    std::memcpy(&a, p.data(), 8);
    std::memcpy(&b, p.data() + p.size() - 8, 8);
    if (a != seq || b != ~seq) return false;
    // Small frames: every byte, compared against the pattern a vector at a time.
    static const std::array<std::byte, 4096> pattern = [] {
        std::array<std::byte, 4096> filled;
        filled.fill(std::byte{0xAB});
        return filled;
    }();
    if (p.size() <= pattern.size() && p.size() > 16) return std::memcmp(p.data() + 8, pattern.data(), p.size() - 16) == 0;
    return true;
}

// Keeps a process on one CPU (k modulo the CPUs it may use): no migrations between the producer's and the
// consumers' cores, which otherwise show up as tens of microseconds in the latency tail.
void pin_to_cpu(int k) {
    cpu_set_t allowed;
    if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) return;
    const int n = CPU_COUNT(&allowed);
    if (n < 2) return;
    int want = k % n;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &allowed)) continue;
        if (want-- == 0) {
            cpu_set_t one;
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            (void)::sched_setaffinity(0, sizeof one, &one);
            return;
        }
    }
}

double memcpy_bytes_per_s(std::size_t n, uint32_t slots, double seconds) {
    std::vector<std::byte> src(n, std::byte{0xAB});
    std::vector<std::byte> dst(static_cast<std::size_t>(slots) * n);
    uint64_t copies = 0;
    const int64_t start = monotonic_ns();
    const int64_t end = start + static_cast<int64_t>(seconds * 1e9);
    int64_t now = start;
    while (now < end) {
        for (int k = 0; k < 64; ++k) {
            std::memcpy(dst.data() + (copies % slots) * n, src.data(), n);
            ++copies;
        }
        now = monotonic_ns();
    }
    volatile std::byte sink = dst[(copies - 1) % slots * n];
    (void)sink;
    return static_cast<double>(copies) * static_cast<double>(n) / (static_cast<double>(now - start) / 1e9);
}


}  // namespace

Result<FramesBenchResult> run_frames_bench(const FramesBenchOptions& o) {
    if (o.payload_bytes < 16 || o.payload_bytes > (std::size_t{1} << 30)) {
        return Error::format(Errc::invalid_argument, "bench frames: payload %zu bytes outside [16, 1 GiB]", o.payload_bytes);
    }
    if (o.consumers < 1 || o.consumers > kMaxConsumers) {
        return Error::format(Errc::invalid_argument, "bench frames: %d consumers outside [1, %d]", o.consumers, kMaxConsumers);
    }
    char root_tmpl[] = "/dev/shm/tensorpool-bench-XXXXXX";
    if (::mkdtemp(root_tmpl) == nullptr) return Error(Errc::io, "bench frames: cannot create a private directory");
    const std::string root = root_tmpl;
    std::filesystem::create_directories(root + "/bus");
    std::filesystem::permissions(root + "/bus", std::filesystem::perms::owner_all, std::filesystem::perm_options::replace);

    FramesBenchOptions opts = o;
    if (opts.nslots == 0) {
        opts.nslots = 8;
        while (opts.nslots < 4096 && static_cast<std::size_t>(opts.nslots) * 2 * o.payload_bytes <= (std::size_t{8} << 20)) opts.nslots *= 2;
    }
    FramesBenchResult result;
    result.payload_bytes = o.payload_bytes;
    result.nslots = opts.nslots;
    {
        // The bound is measured where the producer will run: on the producer's CPU when pinning.
        cpu_set_t saved;
        const bool restore = o.pin && ::sched_getaffinity(0, sizeof saved, &saved) == 0;
        if (o.pin) pin_to_cpu(0);
        result.memcpy_bytes_per_s = memcpy_bytes_per_s(o.payload_bytes, opts.nslots, 1.0);
        if (restore) (void)::sched_setaffinity(0, sizeof saved, &saved);
    }

    void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return Error(Errc::io, "bench frames: mmap failed");
    auto* s = new (mem) Shared();

    transport::TransportOptions topt;
    topt.ipc_root = root + "/bus";
    topt.ipc_term_bytes = std::size_t{16} << 20;
    client::Channels channels;
    channels.channel = "ipc:frames";
    const uint32_t stride = static_cast<uint32_t>((o.payload_bytes + 63) / 64 * 64);

    std::vector<pid_t> pids;
    for (int i = 0; i < o.consumers; ++i) {
        pids.push_back(fork_child([&, i] {
            if (o.pin) pin_to_cpu(1 + i);
            ConsumerShared& me = s->consumers[i];
            transport::TransportHub hub(topt);
            client::ConsumerConfig cc;
            cc.stream_id = 77;
            cc.channels = channels;
            cc.allowed_dirs = {root};
            cc.announce_period_ns = 100'000'000;
            auto c = client::Consumer::create(hub, cc);
            if (!c) {
                me.failed.store(1);
                return;
            }
            auto on_frame = [&me](const client::FrameView& f) {
                const bool ok = intact(f.payload(), f.seq());
                if (!f.still_valid()) return;
                if (!ok) me.torn_accepted.fetch_add(1, std::memory_order_relaxed);
                const uint64_t n = me.accepted.load(std::memory_order_relaxed);
                me.accepted.store(n + 1, std::memory_order_relaxed);  // only this process writes it
                // The clock only where it is needed: latency samples, the first frame, and every 64th.
                if (!f.publish_timestamp_ns() && n != 0 && (n & 63) != 0) return;
                const int64_t now = monotonic_ns();
                if (n == 0) me.first_ns.store(now, std::memory_order_relaxed);
                me.last_ns.store(now, std::memory_order_relaxed);
                if (f.publish_timestamp_ns()) me.latency.record(now - static_cast<int64_t>(*f.publish_timestamp_ns()));
            };
            uint64_t loops = 0;
            while (s->stop.load(std::memory_order_relaxed) == 0) {
                if ((++loops & 255) == 0 || me.ready.load(std::memory_order_relaxed) == 0) {
                    (*c)->do_work(monotonic_ns());
                    me.ready.store((*c)->state() == client::MappingState::mapped ? 1 : 0, std::memory_order_relaxed);
                    me.drops_gap.store((*c)->stats().drops_gap, std::memory_order_relaxed);
                    me.drops_late.store((*c)->stats().drops_late, std::memory_order_relaxed);
                }
                (*c)->poll_frames(on_frame, 256);
            }
            me.drops_gap.store((*c)->stats().drops_gap);
            me.drops_late.store((*c)->stats().drops_late);
        }));
    }
    pids.push_back(fork_child([&] {
        if (o.pin) pin_to_cpu(0);
        transport::TransportHub hub(topt);
        client::ProducerConfig pc;
        pc.stream_id = 77;
        pc.shm_base_dir = root;
        pc.ns = "bench";
        pc.channels = channels;
        pc.header_nslots = opts.nslots;
        pc.pools = {client::PoolConfig{1, stride}};
        pc.announce_period_ns = 100'000'000;
        auto p = client::Producer::create(hub, pc);
        if (!p) {
            std::snprintf(s->error, sizeof s->error, "%s", p.error().message());
            s->producer_failed.store(1);
            return;
        }
        std::vector<std::byte> src(o.payload_bytes, std::byte{0xAB});
        client::TensorShape shape;
        shape.dtype = shm::Dtype::UINT8;
        shape.major_order = shm::MajorOrder::ROW;
        shape.ndims = 1;
        shape.dims[0] = static_cast<int32_t>(o.payload_bytes);
        while (s->go.load() == 0) {
            (*p)->do_work(monotonic_ns());
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        const int64_t start = monotonic_ns();
        const int64_t end = start + static_cast<int64_t>(o.seconds * 1e9);
        const int64_t period = o.rate_hz > 0 ? static_cast<int64_t>(1e9 / o.rate_hz) : 0;
        int64_t next = start;
        uint64_t published = 0;
        int64_t now = start;
        while (now < end) {
            if (period == 0 || now >= next) {
                stamp(src.data(), src.size(), (*p)->next_seq());
                // A camera hands over its capture time; ours is the bench clock. Publish timestamps (a clock read
                // each) go on every paced frame and on one unpaced frame in 64: enough samples for the latency
                // quantiles without making the clock the cost being measured.
                client::FrameOptions fo;
                fo.capture_timestamp_ns = static_cast<uint64_t>(now);
                fo.publish_timestamp = period != 0 || (published & 63) == 0;
                if ((*p)->offer(shape, src, fo).committed()) ++published;  // the copy API
                next += period;
            }
            if ((published & 1023) == 0) (*p)->do_work(now);
            // Unpaced, the clock is read once per 64 frames: a clock read costs as much as a small frame.
            if (period != 0 || (published & 63) == 0) now = monotonic_ns();
        }
        s->published.store(published);
        s->publish_ns.store(now - start);
        // Keep announcing until the consumers drained.
        const int64_t linger = monotonic_ns() + 1'000'000'000;
        while (s->stop.load() == 0 && monotonic_ns() < linger) {
            (*p)->do_work(monotonic_ns());
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }));

    // Wait until every consumer has mapped the producer's regions, then start the clock.
    const int64_t ready_deadline = monotonic_ns() + 20'000'000'000;
    bool ready = false;
    while (!ready && monotonic_ns() < ready_deadline && s->producer_failed.load() == 0) {
        ready = true;
        for (int i = 0; i < o.consumers; ++i) ready = ready && s->consumers[i].ready.load() == 1;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    Status status;
    if (!ready) {
        status = s->producer_failed.load() != 0 ? Error::format(Errc::io, "bench frames: producer: %s", s->error)
                                                : Error(Errc::io, "bench frames: consumers did not map the regions in 20 s");
    }
    s->go.store(1);
    while (status.ok() && s->publish_ns.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the consumers drain
    s->stop.store(1);
    for (pid_t pid : pids) {
        int st = 0;
        for (int i = 0; i < 3000 && ::waitpid(pid, &st, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (::kill(pid, 0) == 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &st, 0);
        }
    }
    if (status.ok()) {
        const double secs = static_cast<double>(s->publish_ns.load()) / 1e9;
        result.published = s->published.load();
        result.published_fps = static_cast<double>(result.published) / secs;
        LatencyHistogram::Snapshot all;
        double min_fps = -1;
        for (int i = 0; i < o.consumers; ++i) {
            ConsumerShared& c = s->consumers[i];
            const double fps = static_cast<double>(c.accepted.load()) / secs;
            min_fps = min_fps < 0 || fps < min_fps ? fps : min_fps;
            result.accepted += c.accepted.load();
            result.drops_gap += c.drops_gap.load();
            result.drops_late += c.drops_late.load();
            result.torn_accepted += c.torn_accepted.load();
            const auto snap = c.latency.snapshot();
            for (int k = 0; k < LatencyHistogram::kBuckets; ++k) all.counts[k] += snap.counts[k];
        }
        result.fps = min_fps;
        result.latency_p50_ns = all.quantile(0.5);
        result.latency_p99_ns = all.quantile(0.99);
        result.latency_p999_ns = all.quantile(0.999);
        result.bytes_per_s = result.published_fps * static_cast<double>(o.payload_bytes);
        result.ratio_to_memcpy = result.bytes_per_s / result.memcpy_bytes_per_s;
    }
    ::munmap(mem, sizeof(Shared));
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
    if (!status) return status.error();
    return result;
}

}  // namespace tensorpool::bench
