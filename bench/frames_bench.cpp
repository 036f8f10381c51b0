#include "frames_bench.hpp"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "baselines.hpp"
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
    std::atomic<uint64_t> stalls{0};     // paced runs: loop turns longer than kStallNs while frames were published
    std::atomic<int64_t> stalled_ns{0};  // and the time they took
    std::atomic<uint64_t> preemptions{0};  // paced runs: times the scheduler took its CPU while frames were published
    std::atomic<uint64_t> page_faults{0};  // and the page faults it took meanwhile
    std::atomic<int64_t> interrupts{-1};   // and the interrupts its CPU took meanwhile; -1: unknown (not pinned)
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

constexpr uint32_t kStream = 77;

// A paced consumer's loop turn (a poll, sometimes a frame read) takes well under a microsecond; one that takes longer
// than this was held up by the machine (an interrupt, a VM exit, the vCPU descheduled), and a frame published
// meanwhile waits for it. Turns that run do_work() are not timed (it may make syscalls).
constexpr int64_t kStallNs = 5'000;

// One bench setup for the processes of the run and for the frame-cost baseline.
struct Setup {
    std::string root;  // private directory: regions under it, the ipc bus in <root>/<bus>
    transport::TransportOptions transport;
    client::Channels channels;
    uint32_t nslots = 0;
    uint32_t stride = 0;

    Setup(const std::string& dir, const std::string& bus, uint32_t slots, std::size_t payload_bytes)
        : root(dir), nslots(slots), stride(static_cast<uint32_t>((payload_bytes + 63) / 64 * 64)) {
        std::filesystem::create_directories(root + "/" + bus);
        std::filesystem::permissions(root + "/" + bus, std::filesystem::perms::owner_all,
                                     std::filesystem::perm_options::replace);
        transport.ipc_root = root + "/" + bus;
        transport.ipc_term_bytes = std::size_t{16} << 20;
        channels.channel = "ipc:frames";
    }
    client::ProducerConfig producer() const {
        client::ProducerConfig pc;
        pc.stream_id = kStream;
        pc.shm_base_dir = root;
        pc.ns = "bench";
        pc.channels = channels;
        pc.header_nslots = nslots;
        pc.pools = {client::PoolConfig{1, stride}};
        pc.announce_period_ns = 100'000'000;
        return pc;
    }
    client::ConsumerConfig consumer() const {
        client::ConsumerConfig cc;
        cc.stream_id = kStream;
        cc.channels = channels;
        cc.allowed_dirs = {root};
        cc.announce_period_ns = 100'000'000;
        return cc;
    }
};

client::TensorShape bytes_shape(std::size_t n) {
    client::TensorShape shape;
    shape.dtype = shm::Dtype::UINT8;
    shape.major_order = shm::MajorOrder::ROW;
    shape.ndims = 1;
    shape.dims[0] = static_cast<int32_t>(n);
    return shape;
}

// The cost of a frame on each side, producer and consumer taking turns: the producer publishes a batch of frames,
// then the consumer reads them, and so on. Nothing runs concurrently, so neither side waits for the other.
// - consumer_cpu < 0: both in this thread, so every line stays in this core's caches: the CPU cost alone.
// - consumer_cpu >= 0: the consumer in a process of its own pinned there (as pin_to_cpu counts), this thread on the
//   first CPU, as in the run itself: the consumer reads every line from the producer's core and the producer takes
//   back every line the consumer read, but no line is contended by both at once. When the consumer's figure is the
//   larger, a consumer that falls behind stays behind, and a free-running producer laps it.
Result<FrameCost> measure_frame_cost(const Setup& setup, std::size_t payload_bytes, double seconds, int consumer_cpu) {
    // The word both sides spin on has a line of its own: the consumer's figures, written per batch, must not drag
    // it away from the producer, or the figure measures that.
    struct Turns {
        alignas(64) std::atomic<int> turn{0};  // 0: the producer's, 1: the consumer's, 2: stop
        alignas(64) std::atomic<int> mapped{0};  // 1: mapped, -1: failed
        int64_t consumer_ns = 0;
        uint64_t accepted = 0, torn = 0;
        int rounds = 0;  // batches read
    };
    const int batch = static_cast<int>(std::min<uint32_t>(256, setup.nslots / 2));
    constexpr int kWarmRounds = 64;  // not timed: the first lap of every line
    // Spins until done(turn); -1 after 10 s (a peer that died or hung).
    auto wait_for = [](std::atomic<int>& a, auto done) {
        const int64_t give_up = monotonic_ns() + 10'000'000'000;
        for (uint32_t spins = 0;; ++spins) {
            const int v = a.load(std::memory_order_acquire);
            if (done(v)) return v;
            if ((spins & 0xFFFF) == 0 && monotonic_ns() > give_up) return -1;
        }
    };
    // Reads batch after batch when it is the consumer's turn; returns when told to stop.
    auto consume = [&](Turns& t, transport::TransportHub& hub, client::Consumer* shared) {
        std::unique_ptr<client::Consumer> own;
        client::Consumer* c = shared;
        if (c == nullptr) {
            auto made = client::Consumer::create(hub, setup.consumer());
            if (!made) {
                t.mapped.store(-1, std::memory_order_release);
                return;
            }
            own = std::move(*made);
            c = own.get();
            for (int i = 0; i < 20000 && c->state() != client::MappingState::mapped; ++i) {
                c->do_work(monotonic_ns());
                std::this_thread::sleep_for(std::chrono::microseconds(100));
            }
            t.mapped.store(c->state() == client::MappingState::mapped ? 1 : -1, std::memory_order_release);
        }
        uint64_t accepted = 0, torn = 0;
        auto on_frame = [&](const client::FrameView& f) {
            const bool ok = intact(f.payload(), f.seq());
            if (!f.still_valid()) return;
            torn += ok ? 0 : 1;
            ++accepted;
        };
        for (;;) {
            const int turn = wait_for(t.turn, [](int v) { return v != 0; });
            if (turn == 2 || turn < 0) return;
            const int64_t a = monotonic_ns();
            for (int got = 0; got < batch;) {
                const int n = c->poll_frames(on_frame, batch - got);
                got += n;
                if (n == 0 && monotonic_ns() - a > 1'000'000'000) break;  // frames lost: counted below, not waited for
            }
            if (t.rounds >= kWarmRounds) t.consumer_ns += monotonic_ns() - a;
            t.accepted += std::exchange(accepted, 0);
            t.torn += std::exchange(torn, 0);
            if ((t.rounds++ & 63) == 0) c->do_work(monotonic_ns());
            t.turn.store(0, std::memory_order_release);
            if (shared != nullptr) return;  // in the producer's thread: one batch per call
        }
    };

    void* mem = ::mmap(nullptr, sizeof(Turns), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return Error(Errc::io, "bench frames: frame cost: mmap failed");
    auto* t = new (mem) Turns();
    struct Cleanup {
        void* mem;
        pid_t child = -1;
        ~Cleanup() {
            if (child > 0) {  // only on a failure: the child may be stuck, and its figures are not wanted
                ::kill(child, SIGKILL);
                ::waitpid(child, nullptr, 0);
            }
            ::munmap(mem, sizeof(Turns));
        }
    } cleanup{mem};
    if (consumer_cpu >= 0) {
        // Forked before this process creates its transport: the child builds its own, as a consumer process does.
        cleanup.child = fork_child([&] {
            pin_to_cpu(consumer_cpu);
            transport::TransportHub hub(setup.transport);
            consume(*t, hub, nullptr);
        });
        pin_to_cpu(0);
    }
    transport::TransportHub hub(setup.transport);
    auto p = client::Producer::create(hub, setup.producer());
    if (!p) return p.error();
    std::unique_ptr<client::Consumer> local;
    if (consumer_cpu < 0) {
        auto c = client::Consumer::create(hub, setup.consumer());
        if (!c) return c.error();
        local = std::move(*c);
    }
    for (int i = 0; i < 2000; ++i) {
        (*p)->do_work(monotonic_ns());
        if (local) local->do_work(monotonic_ns());
        const bool mapped = local ? local->state() == client::MappingState::mapped
                                  : t->mapped.load(std::memory_order_acquire) != 0;
        if (mapped) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    const bool mapped = local ? local->state() == client::MappingState::mapped : t->mapped.load() == 1;
    if (!mapped) return Error(Errc::io, "bench frames: frame cost: the consumer did not map");

    std::vector<std::byte> src(payload_bytes, std::byte{0xAB});
    const client::TensorShape shape = bytes_shape(payload_bytes);
    uint64_t frames = 0, total = 0;
    int64_t producer_ns = 0;
    const int64_t end = monotonic_ns() + static_cast<int64_t>(seconds * 1e9);
    for (int round = 0;; ++round) {
        if (wait_for(t->turn, [](int v) { return v == 0; }) < 0) {
            return Error(Errc::io, "bench frames: frame cost: the consumer process stopped taking its turns");
        }
        if ((round & 63) == 0) (*p)->do_work(monotonic_ns());
        const int64_t a = monotonic_ns();
        for (int k = 0; k < batch; ++k) {
            stamp(src.data(), src.size(), (*p)->next_seq());
            client::FrameOptions fo;
            fo.capture_timestamp_ns = static_cast<uint64_t>(a);
            (void)(*p)->offer(shape, src, fo);
        }
        if (round >= kWarmRounds) {
            producer_ns += monotonic_ns() - a;
            frames += static_cast<uint64_t>(batch);
        }
        total += static_cast<uint64_t>(batch);
        t->turn.store(1, std::memory_order_release);
        if (local) consume(*t, hub, local.get());
        if (monotonic_ns() >= end && round >= 2 * kWarmRounds) break;
    }
    if (wait_for(t->turn, [](int v) { return v == 0; }) < 0) {
        return Error(Errc::io, "bench frames: frame cost: the consumer process stopped taking its turns");
    }
    t->turn.store(2, std::memory_order_release);
    if (cleanup.child > 0) {
        const bool clean = reap_child(cleanup.child, 3000);
        cleanup.child = -1;
        if (!clean) return Error(Errc::io, "bench frames: frame cost: the consumer process did not exit cleanly");
    }
    if (t->torn != 0 || t->accepted != total) {
        return Error::format(Errc::state, "bench frames: frame cost: %llu of %llu frames accepted, %llu torn",
                             static_cast<unsigned long long>(t->accepted), static_cast<unsigned long long>(total),
                             static_cast<unsigned long long>(t->torn));
    }
    return FrameCost{static_cast<double>(producer_ns) / static_cast<double>(frames),
                     static_cast<double>(t->consumer_ns) / static_cast<double>(frames)};
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

    FramesBenchOptions opts = o;
    if (opts.nslots == 0) {
        opts.nslots = 8;
        while (opts.nslots < 4096 && static_cast<std::size_t>(opts.nslots) * 2 * o.payload_bytes <= (std::size_t{8} << 20)) opts.nslots *= 2;
    }
    const Setup setup(root, "bus", opts.nslots, o.payload_bytes);
    FramesBenchResult result;
    result.payload_bytes = o.payload_bytes;
    result.nslots = opts.nslots;
    Status status;
    {
        // The baselines are measured where the producer will run: on the producer's CPU when pinning.
        cpu_set_t saved;
        const bool restore = o.pin && ::sched_getaffinity(0, sizeof saved, &saved) == 0;
        // Threads and processes inherit their creator's CPUs: what needs the consumer's CPU runs before this thread
        // is pinned.
        // The handoff needs a CPU for each side: on one, both would spin on it by turns and the figure mean nothing.
        if (o.pin && usable_cpu_count() >= 2) {
            result.line_transfer_ns = line_transfer_ns(0, 1, 0.2);
            auto handoff = measure_frame_cost(Setup(root + "/handoff", "bus", opts.nslots, o.payload_bytes), o.payload_bytes, 0.5, 1);
            if (handoff) result.handoff_cost = *handoff;
            else status = handoff.error();
        }
        if (o.pin) pin_to_cpu(0);
        result.memcpy_bytes_per_s = memcpy_bytes_per_s(o.payload_bytes, opts.nslots, 1.0);
        auto cost = measure_frame_cost(Setup(root + "/cost", "bus", opts.nslots, o.payload_bytes), o.payload_bytes, 0.5, -1);
        if (!cost) status = cost.error();
        else result.frame_cost = *cost;
        if (restore) (void)::sched_setaffinity(0, sizeof saved, &saved);
    }
    if (!status) {
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
        return status.error();
    }

    void* mem = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return Error(Errc::io, "bench frames: mmap failed");
    auto* s = new (mem) Shared();

    const transport::TransportOptions& topt = setup.transport;

    std::vector<pid_t> pids;
    for (int i = 0; i < o.consumers; ++i) {
        pids.push_back(fork_child([&, i] {
            ConsumerShared& me = s->consumers[i];
            const int cpu = o.pin ? pin_to_cpu(1 + i) : -1;
            // Interrupts its CPU has taken so far, or -1 when that is unknown.
            auto cpu_interrupts = [cpu]() -> int64_t {
                if (cpu < 0) return -1;
                const std::vector<uint64_t> per_cpu = read_interrupts_per_cpu();
                return static_cast<std::size_t>(cpu) < per_cpu.size() ? static_cast<int64_t>(per_cpu[cpu]) : -1;
            };
            transport::TransportHub hub(topt);
            auto c = client::Consumer::create(hub, setup.consumer());
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
            // Paced runs time every loop turn while frames are published, to tell the machine's stalls from ours.
            const bool time_turns = o.rate_hz > 0;
            uint64_t stalls = 0;
            int64_t stalled_ns = 0;
            // Stalls, and the kernel's doings, are counted over one window: from the first turn with frames coming
            // to the first turn after the last was published.
            enum class Window { before, open, closed } window = Window::before;
            KernelEvents at_open;
            int64_t interrupts_at_open = -1;
            int64_t turn_start = monotonic_ns();
            while (s->stop.load(std::memory_order_relaxed) == 0) {
                if (time_turns && window != Window::closed) {
                    const bool publishing = s->go.load(std::memory_order_relaxed) == 1 &&
                                            s->publish_ns.load(std::memory_order_relaxed) == 0;
                    if (window == Window::before && publishing) {
                        interrupts_at_open = cpu_interrupts();  // first: reading the file may fault a page in
                        at_open = thread_kernel_events();
                        window = Window::open;
                        turn_start = monotonic_ns();
                    } else if (window == Window::open && !publishing) {
                        const KernelEvents at_close = thread_kernel_events();
                        me.preemptions.store(at_close.preemptions - at_open.preemptions);
                        me.page_faults.store(at_close.page_faults - at_open.page_faults);
                        const int64_t interrupts_at_close = cpu_interrupts();
                        // A source removed meanwhile takes its counts out of the sum: then the figure is unknown.
                        if (interrupts_at_open >= 0 && interrupts_at_close >= interrupts_at_open) {
                            me.interrupts.store(interrupts_at_close - interrupts_at_open);
                        }
                        window = Window::closed;
                    }
                }
                if ((++loops & 255) == 0 || me.ready.load(std::memory_order_relaxed) == 0) {
                    (*c)->do_work(monotonic_ns());
                    me.ready.store((*c)->state() == client::MappingState::mapped ? 1 : 0, std::memory_order_relaxed);
                    me.drops_gap.store((*c)->stats().drops_gap, std::memory_order_relaxed);
                    me.drops_late.store((*c)->stats().drops_late, std::memory_order_relaxed);
                    // do_work() may sweep the bus (a syscall per busy slot, a directory listing now and then):
                    // our own work, not the machine's, so its turn is not timed.
                    if (time_turns) turn_start = monotonic_ns();
                }
                (*c)->poll_frames(on_frame, 256);
                if (time_turns) {
                    const int64_t now = monotonic_ns();
                    if (now - turn_start > kStallNs && window == Window::open) {
                        ++stalls;
                        stalled_ns += now - turn_start;
                    }
                    turn_start = now;
                }
            }
            me.drops_gap.store((*c)->stats().drops_gap);
            me.drops_late.store((*c)->stats().drops_late);
            me.stalls.store(stalls);
            me.stalled_ns.store(stalled_ns);
        }));
    }
    pids.push_back(fork_child([&] {
        if (o.pin) pin_to_cpu(0);
        transport::TransportHub hub(topt);
        auto p = client::Producer::create(hub, setup.producer());
        if (!p) {
            std::snprintf(s->error, sizeof s->error, "%s", p.error().message());
            s->producer_failed.store(1);
            return;
        }
        std::vector<std::byte> src(o.payload_bytes, std::byte{0xAB});
        const client::TensorShape shape = bytes_shape(o.payload_bytes);
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
    if (!ready) {
        status = s->producer_failed.load() != 0 ? Error::format(Errc::io, "bench frames: producer: %s", s->error)
                                                : Error(Errc::io, "bench frames: consumers did not map the regions in 20 s");
    }
    const CpuTimes cpu_before = read_cpu_times();
    s->go.store(1);
    // One long sleep for the run, then short ones: each wake-up of this process takes a CPU from the producer or a
    // consumer for a moment, and shows in the latency tail.
    if (status.ok()) std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
    while (status.ok() && s->publish_ns.load() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    result.steal_percent = steal_percent(cpu_before, read_cpu_times());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the consumers drain
    s->stop.store(1);
    for (pid_t pid : pids) (void)reap_child(pid, 3000);
    if (status.ok()) {
        const double secs = static_cast<double>(s->publish_ns.load()) / 1e9;
        result.published = s->published.load();
        result.published_fps = static_cast<double>(result.published) / secs;
        LatencyHistogram::Snapshot all;
        double min_fps = -1;
        double interrupts_per_s = 0;
        int interrupts_known = 0;
        for (int i = 0; i < o.consumers; ++i) {
            ConsumerShared& c = s->consumers[i];
            const double fps = static_cast<double>(c.accepted.load()) / secs;
            min_fps = min_fps < 0 || fps < min_fps ? fps : min_fps;
            result.accepted += c.accepted.load();
            result.drops_gap += c.drops_gap.load();
            result.drops_late += c.drops_late.load();
            result.torn_accepted += c.torn_accepted.load();
            result.consumer_stalls_per_s += static_cast<double>(c.stalls.load()) / secs / o.consumers;
            result.consumer_stalled_percent += 100.0 * static_cast<double>(c.stalled_ns.load()) / 1e9 / secs / o.consumers;
            result.consumer_preemptions_per_s += static_cast<double>(c.preemptions.load()) / secs / o.consumers;
            result.consumer_page_faults_per_s += static_cast<double>(c.page_faults.load()) / secs / o.consumers;
            if (c.interrupts.load() >= 0) {
                interrupts_per_s += static_cast<double>(c.interrupts.load()) / secs;
                ++interrupts_known;
            }
            const auto snap = c.latency.snapshot();
            for (int k = 0; k < LatencyHistogram::kBuckets; ++k) all.counts[k] += snap.counts[k];
        }
        result.fps = min_fps;
        if (interrupts_known != 0) result.consumer_cpu_interrupts_per_s = interrupts_per_s / interrupts_known;
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
