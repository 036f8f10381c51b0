// `tensorpool demo [--seconds S]`: the README's main job. On the embedded ipc transport it starts a producer
// and two consumers as separate processes, streams synthetic camera frames through shared memory, prints one
// line per second (frames/s, MiB/s, drops, commit→accepted latency) and a summary. Exit 0 only if frames flowed
// to both consumers and no torn frame was accepted (every accepted frame is checked word by word).
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <thread>

#include "commands.hpp"
#include "fork_child.hpp"
#include "latency_histogram.hpp"
#include "stream_options.hpp"
#include "synthetic_frames.hpp"
#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"

namespace tensorpool::cli {
namespace {

constexpr int kConsumers = 2;

struct ConsumerShared {
    std::atomic<uint64_t> frames{0};
    std::atomic<uint64_t> bytes{0};
    std::atomic<uint64_t> drops_gap{0};
    std::atomic<uint64_t> drops_late{0};
    std::atomic<uint64_t> torn_accepted{0};
    std::atomic<int> mapped{0};
    std::atomic<int> failed{0};
    char error[240]{};
    bench::LatencyHistogram latency;
};

struct DemoShared {
    std::atomic<int> stop{0};
    std::atomic<uint64_t> produced{0};
    std::atomic<int> producer_failed{0};
    char producer_error[240]{};
    ConsumerShared consumers[kConsumers];
};

struct DemoOptions {
    double seconds = 5;
    double rate_hz = 500;
    uint32_t width = 640;
    uint32_t height = 480;
    StreamOptions stream;
};

// Sleeps a little when there is nothing to do, so three busy processes share two cores gracefully.
void idle(int work, int& idle_rounds) {
    if (work > 0) {
        idle_rounds = 0;
    } else if (++idle_rounds < 64) {
        std::this_thread::yield();
    } else {
        std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
}

// Returns normally when told to stop, so that the producer's destructor removes its regions (an _exit here left
// every run's regions in /dev/shm).
void run_producer(DemoShared* s, const DemoOptions& o) {
    transport::TransportHub hub(o.stream.transport_options());
    client::ProducerConfig pc;
    pc.stream_id = o.stream.stream_id;
    pc.shm_base_dir = o.stream.shm_base_dir;
    pc.ns = o.stream.ns;
    pc.channels = o.stream.channels;
    pc.header_nslots = 64;
    const uint32_t frame_bytes = o.width * o.height;
    pc.pools = {client::PoolConfig{1, (frame_bytes + 63) / 64 * 64}};
    auto p = client::Producer::create(hub, pc);
    if (!p) {
        std::snprintf(s->producer_error, sizeof s->producer_error, "%s", p.error().message());
        s->producer_failed.store(1);
        ::_exit(1);
    }
    client::TensorShape shape;
    shape.dtype = shm::Dtype::UINT8;
    shape.major_order = shm::MajorOrder::ROW;
    shape.ndims = 2;
    shape.dims = {static_cast<int32_t>(o.height), static_cast<int32_t>(o.width)};
    const int64_t period = static_cast<int64_t>(1e9 / o.rate_hz);
    int64_t next = monotonic_ns();
    int idle_rounds = 0;
    while (s->stop.load(std::memory_order_relaxed) == 0) {
        const int64_t now = monotonic_ns();
        int work = (*p)->do_work(now);
        if (now >= next) {
            client::FrameClaim claim;
            if ((*p)->try_claim(frame_bytes, claim).committed()) {
                bench::fill_frame(claim.payload(), claim.seq());  // written straight into shared memory
                client::FrameOptions fo;
                fo.publish_timestamp = true;  // the demo prints commit -> accepted latency
                if (claim.commit(shape, fo).committed()) s->produced.fetch_add(1, std::memory_order_relaxed);
            }
            next += period;
            if (now - next > 100 * period) next = now;  // fell far behind (e.g. suspended): do not burst
            ++work;
        }
        idle(work, idle_rounds);
    }
}

void run_consumer(DemoShared* s, int index, const DemoOptions& o) {
    ConsumerShared& me = s->consumers[index];
    transport::TransportHub hub(o.stream.transport_options());
    client::ConsumerConfig cc;
    cc.stream_id = o.stream.stream_id;
    cc.channels = o.stream.channels;
    cc.allowed_dirs = o.stream.allowed_dirs();
    auto c = client::Consumer::create(hub, cc);
    if (!c) {
        std::snprintf(me.error, sizeof me.error, "%s", c.error().message());
        me.failed.store(1);
        ::_exit(1);
    }
    auto on_frame = [&me](const client::FrameView& f) {
        const bool intact = bench::check_frame(f.payload(), f.seq());
        if (!f.still_valid()) return;  // overwritten while we read it: dropped (counted as late)
        if (!intact) {
            me.torn_accepted.fetch_add(1);  // a torn frame passed the seqlock: must never happen
            return;
        }
        me.frames.fetch_add(1, std::memory_order_relaxed);
        me.bytes.fetch_add(f.payload().size(), std::memory_order_relaxed);
        if (f.publish_timestamp_ns()) me.latency.record(monotonic_ns() - static_cast<int64_t>(*f.publish_timestamp_ns()));
    };
    int idle_rounds = 0;
    while (s->stop.load(std::memory_order_relaxed) == 0) {
        int work = (*c)->do_work(monotonic_ns());
        work += (*c)->poll_frames(on_frame, 16);
        const auto& st = (*c)->stats();
        me.drops_gap.store(st.drops_gap, std::memory_order_relaxed);
        me.drops_late.store(st.drops_late, std::memory_order_relaxed);
        me.mapped.store((*c)->state() == client::MappingState::mapped ? 1 : 0, std::memory_order_relaxed);
        idle(work, idle_rounds);
    }
}


// The demo's ipc bus is private to one run: unless told where the bus files go, they go into a directory of their
// own that is removed at the end. Left in the shared root, every run kept its publishers' logs (8 MiB each, in
// /dev/shm, that is RAM) for good.
class PrivateBusRoot {
public:
    explicit PrivateBusRoot(DemoOptions& o) {
        if (!o.stream.ipc_root.empty() || o.stream.channels.channel.rfind("ipc:", 0) != 0) return;
        char tmpl[] = "/dev/shm/tensorpool-demo-XXXXXX";  // mode 0700, as the ipc bus requires
        if (::mkdtemp(tmpl) == nullptr) return;         // then the default root, as before
        path_ = tmpl;
        o.stream.ipc_root = path_;
    }
    ~PrivateBusRoot() {
        if (path_.empty()) return;
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    PrivateBusRoot(const PrivateBusRoot&) = delete;
    PrivateBusRoot& operator=(const PrivateBusRoot&) = delete;

private:
    std::string path_;
};

int run_demo(DemoOptions o) {
    const PrivateBusRoot bus_root(o);  // removed after every child has been reaped (declared before them)
    void* mem = ::mmap(nullptr, sizeof(DemoShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) {
        std::fprintf(stderr, "tensorpool demo: mmap failed\n");
        return 1;
    }
    auto* s = new (mem) DemoShared();
    std::printf("tensorpool demo: 1 producer and %d consumers (separate processes) on %s, stream %u, %ux%u UINT8 "
                "frames at %.0f Hz for %.0f s\n",
                kConsumers, o.stream.channels.channel.c_str(), o.stream.stream_id, o.width, o.height, o.rate_hz,
                o.seconds);
    // Fork before any transport exists in this process.
    pid_t pids[kConsumers + 1];
    for (int i = 0; i < kConsumers; ++i) pids[i] = bench::fork_child([&, i] { run_consumer(s, i, o); });
    pids[kConsumers] = bench::fork_child([&] { run_producer(s, o); });

    bench::LatencyHistogram::Snapshot last[kConsumers];
    uint64_t last_frames[kConsumers] = {}, last_bytes[kConsumers] = {}, last_produced = 0;
    const int ticks = static_cast<int>(o.seconds + 0.5);
    for (int t = 1; t <= ticks; ++t) {
        std::this_thread::sleep_for(std::chrono::seconds(1));
        const uint64_t produced = s->produced.load();
        std::printf("t=%2ds producer %6.0f fps", t, static_cast<double>(produced - last_produced));
        last_produced = produced;
        for (int i = 0; i < kConsumers; ++i) {
            ConsumerShared& c = s->consumers[i];
            const uint64_t f = c.frames.load(), b = c.bytes.load();
            const auto snap = c.latency.snapshot();
            const auto d = snap.minus(last[i]);
            std::printf(" | consumer %d: %s %6.0f fps %7.1f MiB/s gap %llu late %llu p50 %6.1f us p99 %7.1f us", i + 1,
                        c.mapped.load() ? "mapped  " : "unmapped", static_cast<double>(f - last_frames[i]),
                        static_cast<double>(b - last_bytes[i]) / (1 << 20),
                        static_cast<unsigned long long>(c.drops_gap.load()), static_cast<unsigned long long>(c.drops_late.load()),
                        static_cast<double>(d.quantile(0.5)) / 1e3, static_cast<double>(d.quantile(0.99)) / 1e3);
            last[i] = snap;
            last_frames[i] = f;
            last_bytes[i] = b;
        }
        std::printf("\n");
        std::fflush(stdout);
        if (s->producer_failed.load() != 0) break;
    }
    s->stop.store(1);
    for (pid_t pid : pids) {
        int status = 0;
        for (int i = 0; i < 3000 && ::waitpid(pid, &status, WNOHANG) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (::kill(pid, 0) == 0) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
        }
    }

    bool ok = s->producer_failed.load() == 0;
    if (!ok) std::printf("producer failed: %s\n", s->producer_error);
    std::printf("summary: producer committed %llu frames\n", static_cast<unsigned long long>(s->produced.load()));
    for (int i = 0; i < kConsumers; ++i) {
        ConsumerShared& c = s->consumers[i];
        const auto all = c.latency.snapshot();
        std::printf("summary: consumer %d accepted %llu frames (%.1f MiB), gap drops %llu, late drops %llu, torn "
                    "accepted %llu, latency commit->accepted p50 %.1f us p99 %.1f us p99.9 %.1f us\n",
                    i + 1, static_cast<unsigned long long>(c.frames.load()),
                    static_cast<double>(c.bytes.load()) / (1 << 20), static_cast<unsigned long long>(c.drops_gap.load()),
                    static_cast<unsigned long long>(c.drops_late.load()), static_cast<unsigned long long>(c.torn_accepted.load()),
                    static_cast<double>(all.quantile(0.5)) / 1e3, static_cast<double>(all.quantile(0.99)) / 1e3,
                    static_cast<double>(all.quantile(0.999)) / 1e3);
        if (c.failed.load() != 0) std::printf("consumer %d failed: %s\n", i + 1, c.error);
        ok = ok && c.failed.load() == 0 && c.frames.load() > 0 && c.torn_accepted.load() == 0;
    }
    std::printf("demo %s\n", ok ? "OK: frames flowed to every consumer and no torn frame was accepted"
                                : "FAILED: see above");
    ::munmap(mem, sizeof(DemoShared));
    return ok ? 0 : 1;
}

}  // namespace

void add_demo_command(CLI::App& app, int& exit_code) {
    auto o = std::make_shared<DemoOptions>();
    o->stream.channels.channel = "ipc:demo-" + std::to_string(::getpid());
    o->stream.ns = "demo";
    auto* cmd = app.add_subcommand("demo", "Producer and two consumers moving synthetic camera frames (the main job)");
    cmd->add_option("--seconds", o->seconds, "how long to stream")->check(CLI::Range(1.0, 3600.0))->capture_default_str();
    cmd->add_option("--rate-hz", o->rate_hz, "frames per second")->check(CLI::Range(1.0, 1e6))->capture_default_str();
    cmd->add_option("--width", o->width)->check(CLI::Range(1u, 16384u))->capture_default_str();
    cmd->add_option("--height", o->height)->check(CLI::Range(1u, 16384u))->capture_default_str();
    add_stream_options(cmd, o->stream, true);
    cmd->callback([o, &exit_code] { exit_code = run_demo(*o); });
}

}  // namespace tensorpool::cli
