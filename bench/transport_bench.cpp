#include "transport_bench.hpp"

#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "baselines.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::bench {

namespace {

using namespace tensorpool::transport;

constexpr int32_t kPingStream = 1, kPongStream = 2, kOneWayStream = 3;
constexpr std::size_t kPingBytes = 32, kOneWayBytes = 64;

// Shared between the two processes (MAP_SHARED, created before fork).
struct Control {
    std::atomic<int> driver_up{0};
    std::atomic<int> child_ready{0};
    std::atomic<int> phase{0};  // 0 ping-pong, 1 one-way, 2 done
    std::atomic<uint64_t> received{0};
    std::atomic<uint64_t> lost{0};
    std::atomic<int> child_failed{0};
    char error[240]{};
};

// Offers until published; a transport that back-pressures (Aeron) makes us wait, one that never does (ipc)
// publishes at once. Gives up on a hard failure.
bool offer_until_sent(Publication& pub, std::span<const uint8_t> msg) {
    for (;;) {
        OfferResult r = pub.offer(msg);
        if (r.ok()) return true;
        if (r.status() != OfferStatus::back_pressured && r.status() != OfferStatus::not_connected) return false;
    }
}

TransportOptions transport_options(const TransportBenchOptions& o, const std::string& root, bool embedded_driver,
                                   const std::string& aeron_dir) {
    TransportOptions t;
    t.ipc_root = root;
    t.ipc_term_bytes = std::size_t{4} << 20;
    t.aeron_dir = aeron_dir;
    t.aeron_embedded_driver = embedded_driver;
    (void)o;
    return t;
}

std::string channel_for(const std::string& backend, pid_t parent) {
    if (backend == "aeron") return "aeron:ipc?term-length=4m";
    return "ipc:bench-" + std::to_string(parent);
}

[[noreturn]] void child_main(Control* c, const TransportBenchOptions& o, const std::string& root,
                             const std::string& aeron_dir, const std::string& channel) {
    auto fail = [c](const std::string& why) {
        std::snprintf(c->error, sizeof c->error, "%s", why.c_str());
        c->child_failed.store(1);
        ::_exit(1);
    };
    while (c->driver_up.load() == 0) ::usleep(100);
    TransportHub hub(transport_options(o, root, false, aeron_dir));
    auto ping = hub.add_subscription(channel, kPingStream);
    if (!ping) fail(ping.error().message());
    auto pong = hub.add_publication(channel, kPongStream);
    if (!pong) fail(pong.error().message());
    auto oneway = hub.add_subscription(channel, kOneWayStream);
    if (!oneway) fail(oneway.error().message());
    pin_to_cpu(1);
    c->child_ready.store(1);

    Publication& out = **pong;
    auto echo = [&out, &fail](std::span<const uint8_t> m, const MessageInfo&) {
        if (!offer_until_sent(out, m)) fail("pong offer failed");
    };
    while (c->phase.load(std::memory_order_relaxed) == 0) {
        (*ping)->poll(echo, 16);
        hub.do_work();
    }
    uint64_t received = 0;
    auto count = [&received](std::span<const uint8_t>, const MessageInfo&) { ++received; };
    for (;;) {
        const int phase = c->phase.load(std::memory_order_acquire);
        const int n = (*oneway)->poll(count, 1024);
        if (n > 0) c->received.store(received, std::memory_order_release);
        c->lost.store((*oneway)->lost_messages(), std::memory_order_release);
        if (phase == 2 && n == 0) break;
    }
    ::_exit(0);
}

}  // namespace

Result<TransportBenchResult> run_transport_bench(const TransportBenchOptions& o) {
    if (o.backend != "ipc" && o.backend != "aeron") {
        return Error::format(Errc::invalid_argument, "bench transport: unknown backend '%s'", o.backend.c_str());
    }
    if (!backend_built(o.backend)) {
        return Error::format(Errc::unsupported, "bench transport: the %s backend is not built", o.backend.c_str());
    }
    const pid_t parent = ::getpid();
    std::string root = o.ipc_root;
    bool own_root = false;
    if (root.empty()) {
        char tmpl[] = "/dev/shm/tensorpool-bench-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) return Error::format(Errc::io, "bench transport: cannot create a bus directory");
        root = tmpl;
        own_root = true;
    }
    const std::string aeron_dir = "/dev/shm/tensorpool-bench-aeron-" + std::to_string(parent);
    const std::string channel = channel_for(o.backend, parent);

    void* mem = ::mmap(nullptr, sizeof(Control), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return Error::format(Errc::io, "bench transport: mmap failed");
    auto* c = new (mem) Control();
    struct Cleanup {
        Control* c;
        pid_t child = -1;
        std::string root;
        bool own_root;
        ~Cleanup() {
            if (child > 0) {
                c->phase.store(2);
                int status = 0;
                for (int i = 0; i < 2000 && ::waitpid(child, &status, WNOHANG) == 0; ++i) ::usleep(1000);
                ::kill(child, SIGKILL);
                ::waitpid(child, &status, 0);
            }
            ::munmap(c, sizeof(Control));
            if (own_root) {
                std::error_code ec;
                std::filesystem::remove_all(root, ec);
            }
        }
    } cleanup{c, -1, root, own_root};

    // Fork before any transport exists: Aeron's client and driver threads must not be forked.
    std::fflush(nullptr);
    const pid_t child = ::fork();
    if (child < 0) return Error::format(Errc::io, "bench transport: fork failed");
    if (child == 0) child_main(c, o, root, aeron_dir, channel);
    cleanup.child = child;

    TransportHub hub(transport_options(o, root, o.backend == "aeron", aeron_dir));
    auto ping = hub.add_publication(channel, kPingStream);
    if (!ping) return ping.error();
    c->driver_up.store(1);
    auto pong = hub.add_subscription(channel, kPongStream);
    if (!pong) return pong.error();
    auto oneway = hub.add_publication(channel, kOneWayStream);
    if (!oneway) return oneway.error();

    const int64_t ready_deadline = monotonic_ns() + 20'000'000'000;
    while (c->child_ready.load() == 0 || !(*ping)->is_connected() || !(*oneway)->is_connected()) {
        if (c->child_failed.load() != 0) return Error::format(Errc::io, "bench transport child: %s", c->error);
        if (monotonic_ns() > ready_deadline) return Error(Errc::io, "bench transport: the other process did not connect");
        hub.do_work();
        ::usleep(100);
    }
    pin_to_cpu(0);

    // (a) ping-pong.
    TransportBenchResult result;
    std::vector<int64_t> samples;
    samples.reserve(o.min_round_trips);
    uint8_t msg[kPingBytes] = {};
    bool got = false;
    auto on_pong = [&got](std::span<const uint8_t>, const MessageInfo&) { got = true; };
    const uint64_t total = o.warmup_round_trips + o.min_round_trips;
    for (uint64_t i = 0; i < total; ++i) {
        std::memcpy(msg, &i, sizeof i);
        got = false;
        const int64_t t0 = monotonic_ns();
        if (!offer_until_sent(**ping, msg)) return Error(Errc::io, "bench transport: ping offer failed");
        const int64_t deadline = t0 + 5'000'000'000;
        while (!got) {
            if ((*pong)->poll(on_pong, 1) == 0 && monotonic_ns() > deadline) {
                return Error::format(Errc::io, "bench transport: no pong within 5 s (round trip %llu)",
                                     static_cast<unsigned long long>(i));
            }
        }
        const int64_t rtt = monotonic_ns() - t0;
        if (i >= o.warmup_round_trips) samples.push_back(rtt);
    }
    result.rtt_ns = summarize(samples);

    // (b) one-way: publish as fast as the subscriber keeps up. The harness (not the transport) keeps the
    // publisher at most a quarter ring ahead of the subscriber, so the figure is a loss-free rate.
    c->phase.store(1, std::memory_order_release);
    const uint64_t window = (std::size_t{4} << 20) / 4 / 80;
    uint8_t data[kOneWayBytes] = {};
    uint64_t published = 0;
    const int64_t start = monotonic_ns();
    const int64_t stop_at = start + static_cast<int64_t>(o.seconds * 1e9);
    uint64_t budget = 0;  // messages we may send before looking at the subscriber's progress again
    for (;;) {
        if ((published & 1023) == 0 && monotonic_ns() >= stop_at) break;
        if (budget == 0) {
            const uint64_t ahead = published - c->received.load(std::memory_order_acquire);
            if (ahead >= window) continue;
            budget = window - ahead;
        }
        std::memcpy(data, &published, sizeof published);
        if (!offer_until_sent(**oneway, data)) return Error(Errc::io, "bench transport: one-way offer failed");
        ++published;
        --budget;
    }
    const int64_t drain_deadline = monotonic_ns() + 5'000'000'000;
    while (c->received.load(std::memory_order_acquire) + c->lost.load(std::memory_order_acquire) < published &&
           monotonic_ns() < drain_deadline) {
    }
    const int64_t end = monotonic_ns();
    c->phase.store(2, std::memory_order_release);
    result.oneway_messages = c->received.load();
    result.lost = published > result.oneway_messages ? published - result.oneway_messages : 0;
    result.oneway_msgs_per_s = static_cast<double>(result.oneway_messages) / (static_cast<double>(end - start) / 1e9);
    return result;
}

}  // namespace tensorpool::bench
