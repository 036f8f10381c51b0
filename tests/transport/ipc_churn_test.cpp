// Publishers SIGKILLed over and over, some while they are still creating their log or registering, with
// sweepers that are themselves killed and restarted while they free slots: every publisher that lives must be
// heard by every long-lived subscriber within a bounded time, no message may be torn or go backwards, and once
// everything is dead the stream directory must be clean (no slot held, no file left). The race that made a
// subscriber miss a live publisher for good is reproduced deterministically in ipc_sweep_race_test.cpp; this
// test is the same situation as ClientProducerKill, at the transport level and with more churn.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <fcntl.h>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../../src/transport/ipc/ipc_format.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

#include "support/sanitizers.hpp"

namespace tensorpool::transport {
namespace {

using test::BusRoot;
using test::ChildResult;
using test::TestMessage;

#ifdef TP_UNDER_ASAN
constexpr int kPublishers = 40;
#else
constexpr int kPublishers = 80;
#endif
constexpr int kSubscribers = 2;
constexpr int kSweepers = 2;
// A live publisher is normally heard within milliseconds; the bound is generous for a loaded 2-core CI machine
// running sanitizers. What it guards against is a publisher that is never heard.
constexpr int kHeardWithinSeconds = 5;
constexpr int32_t kStream = 1001;
const std::string kChannel = "ipc:churn";

struct Board {
    std::atomic<int> stop{0};
    std::array<std::atomic<int>, kSubscribers> ready{};
    std::array<std::atomic<int64_t>, kPublishers> registered_ns{};  // when add_publication() returned, 0 before
    std::array<std::array<std::atomic<int64_t>, kPublishers>, kSubscribers> heard_ns{};  // first message, 0 never
    std::array<std::atomic<uint64_t>, kSubscribers> received{};
    std::array<std::atomic<uint64_t>, kSubscribers> corrupt{};
    std::array<std::atomic<uint64_t>, kSubscribers> backwards{};
    std::atomic<uint64_t> sweeps{0};
};

// A long-lived subscriber that also sweeps (do_work), like a consumer.
int subscriber_main(const BusRoot& root, Board& b, int s) {
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(kChannel, kStream);
    if (!sub) return test::child_fail(sub.error().message());
    b.ready[s].store(1);
    std::vector<int64_t> last(kPublishers, -1);
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (!TestMessage::parse(m, t) || t.publisher >= static_cast<uint32_t>(kPublishers)) {
            b.corrupt[s].fetch_add(1);
            return;
        }
        if (b.heard_ns[s][t.publisher].load(std::memory_order_relaxed) == 0) b.heard_ns[s][t.publisher].store(monotonic_ns());
        if (static_cast<int64_t>(t.counter) <= last[t.publisher]) b.backwards[s].fetch_add(1);
        last[t.publisher] = static_cast<int64_t>(t.counter);
        b.received[s].fetch_add(1, std::memory_order_relaxed);
    };
    while (b.stop.load() == 0) {
        const int n = (*sub)->poll(handler, 256);
        hub.do_work();
        if (n == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return 0;
}

int publisher_main(const BusRoot& root, Board& b, int k) {
    TransportHub hub(root.options());
    auto pub = hub.add_publication(kChannel, kStream);
    if (!pub) return test::child_fail(pub.error().message());
    b.registered_ns[k].store(monotonic_ns());
    for (uint64_t counter = 0;;) {
        if ((*pub)->offer(TestMessage::make(static_cast<uint32_t>(k), counter, 64)).ok()) ++counter;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
}

// Opens the stream over and over (every opening sweeps slots and files) with no linger, so slots of dead
// publishers are freed as soon as they are found; now and then registers a short-lived publisher of its own.
// The test SIGKILLs sweepers at random, also while they free a slot.
int sweeper_main(const BusRoot& root, Board& b) {
    TransportOptions o = root.options();
    o.ipc_linger_ms = 0;
    std::minstd_rand rng(static_cast<unsigned>(::getpid()));
    while (b.stop.load() == 0) {
        TransportHub hub(o);
        auto sub = hub.add_subscription(kChannel, kStream);
        if (rng() % 8 == 0) (void)hub.add_publication(kChannel, kStream);
        hub.do_work();
        b.sweeps.fetch_add(1, std::memory_order_relaxed);
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 3000));
    }
    return 0;
}

// Publisher slots that are not free, read from the registry by hand (docs/ipc-bus.md).
int busy_publisher_slots(const std::string& registry) {
    const int fd = ::open(registry.c_str(), O_RDONLY);
    if (fd < 0) return -1;
    void* p = ::mmap(nullptr, ipc::kRegistryBytes, PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) return -1;
    int n = 0;
    for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) {
        auto* w = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(p) + sizeof(ipc::RegistryHeader) +
                                              i * sizeof(ipc::PublisherSlot));
        n += ipc::word_state(std::atomic_ref<uint64_t>(*w).load()) != ipc::kSlotFree;
    }
    ::munmap(p, ipc::kRegistryBytes);
    return n;
}

TEST(IpcChurn, EveryLivePublisherIsHeardByEverySubscriberWhilePublishersAndSweepersAreKilled) {
    BusRoot root;
    void* mem = ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    Board& b = *new (mem) Board();

    std::vector<pid_t> subs;
    for (int s = 0; s < kSubscribers; ++s) subs.push_back(test::fork_child([&, s] { return subscriber_main(root, b, s); }));
    ASSERT_TRUE(test::wait_until([&] { return b.ready[0].load() == 1 && b.ready[1].load() == 1; }, std::chrono::seconds(30)));
    std::array<pid_t, kSweepers> sweepers{};
    for (auto& pid : sweepers) pid = test::fork_child([&] { return sweeper_main(root, b); });

    const uint64_t seed = std::random_device{}();
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::mt19937_64 rng(seed);
    int young = 0, followed = 0, sweeper_kills = 0;
    int64_t worst_ns = 0;
    std::vector<int64_t> latencies;
    for (int k = 0; k < kPublishers; ++k) {
        const pid_t pub = test::fork_child([&, k] { return publisher_main(root, b, k); });
        if (k % 4 == 3) {
            // Dies young: while its process starts, creates its log, registers, or just after.
            std::this_thread::sleep_for(std::chrono::microseconds(rng() % 4000));
            ::kill(pub, SIGKILL);
            test::wait_child(pub, 30);
            ++young;
            continue;
        }
        ASSERT_TRUE(test::wait_until([&] { return b.registered_ns[k].load() != 0; }, std::chrono::seconds(30)))
            << "publisher " << k << " did not register: " << test::wait_child(pub, 1);
        const bool heard = test::wait_until([&] {
            for (int s = 0; s < kSubscribers; ++s) {
                if (b.heard_ns[s][k].load() == 0) return false;
            }
            return true;
        }, std::chrono::seconds(kHeardWithinSeconds));
        ASSERT_TRUE(heard) << "publisher " << k << " registered but subscriber 0 heard it: "
                           << (b.heard_ns[0][k].load() != 0) << ", subscriber 1: " << (b.heard_ns[1][k].load() != 0)
                           << " (within " << kHeardWithinSeconds << " s)";
        for (int s = 0; s < kSubscribers; ++s) {
            const int64_t l = b.heard_ns[s][k].load() - b.registered_ns[k].load();
            latencies.push_back(l);
            worst_ns = std::max(worst_ns, l);
        }
        ++followed;
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
        ::kill(pub, SIGKILL);
        EXPECT_EQ(test::wait_child(pub, 30), ChildResult::killed(SIGKILL));
        if (k % 5 == 4) {  // a sweeper dies wherever it is, and another takes its place
            pid_t& victim = sweepers[rng() % kSweepers];
            ::kill(victim, SIGKILL);
            test::wait_child(victim, 30);
            victim = test::fork_child([&] { return sweeper_main(root, b); });
            ++sweeper_kills;
        }
    }
    for (pid_t pid : sweepers) {
        ::kill(pid, SIGKILL);
        test::wait_child(pid, 30);
    }
    b.stop.store(1);
    for (pid_t pid : subs) EXPECT_EQ(test::wait_child(pid, 30), ChildResult::ok());
    for (int s = 0; s < kSubscribers; ++s) {
        EXPECT_EQ(b.corrupt[s].load(), 0u) << "subscriber " << s;
        EXPECT_EQ(b.backwards[s].load(), 0u) << "subscriber " << s;
    }

    // Everything is dead: the sweeps of one more process leave neither a held slot nor a file behind.
    const std::string registry = root.path() + "/churn/" + std::to_string(kStream) + "/registry";
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(kChannel, kStream);
    ASSERT_TRUE(sub.ok());
    EXPECT_TRUE(test::wait_until([&] {
        hub.do_work();
        return busy_publisher_slots(registry) == 0 && root.count_files("pub-") == 0;
    }, std::chrono::seconds(15))) << busy_publisher_slots(registry) << " publisher slots still held, " << root.count_files("pub-")
            << " publisher files left";

    std::sort(latencies.begin(), latencies.end());
    std::printf("[ figures  ] %d publishers followed, %d killed young, %d sweepers killed, %" PRIu64
                " sweeps; first message heard after registering: median %.2f ms, worst %.2f ms; %" PRIu64 "/%" PRIu64
                " messages received\n",
                followed, young, sweeper_kills, b.sweeps.load(),
                latencies.empty() ? 0.0 : static_cast<double>(latencies[latencies.size() / 2]) / 1e6,
                static_cast<double>(worst_ns) / 1e6, b.received[0].load(), b.received[1].load());
    b.~Board();
    ::munmap(mem, sizeof(Board));
}

}  // namespace
}  // namespace tensorpool::transport
