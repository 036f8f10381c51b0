// Two sweepers free the same dead publisher's slot while a new publisher registers: the one that acts late must
// never take the new publisher's slot away (which hid a live publisher from every subscriber that had not read it
// yet: the ClientProducerKill flake). Deterministic: this binary interposes unlinkat(), so a sweeper process can
// be held exactly while it removes the dead publisher's log, i.e. in the middle of freeing its slot; and
// linkat(), so a publisher can be killed at a chosen point of creating its log.
#include <gtest/gtest.h>
#include <signal.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>

#include "../../src/transport/ipc/ipc_format.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

namespace {

// Shared by the test process and its children (MAP_SHARED, made before fork).
struct Hold {
    std::atomic<int> arrivals{0};  // unlinkat() calls of a publisher log that were held, in arrival order
    std::atomic<int> released{0};  // calls 1..released may go on
};

Hold* g_hold = nullptr;
bool g_armed = false;  // set in the children whose unlinks are held

// Set in a publisher child that must die while creating its log: right before it links the log into place, or
// right after (before it claims a slot).
enum class DieAt { nowhere, link, after_link };
DieAt g_die_at = DieAt::nowhere;
bool g_linked = false;

bool is_publisher_log(const char* name) {
    const std::string_view n(name);
    return n.starts_with("pub-") && n.ends_with(".log");
}

}  // namespace

// Every unlinkat() and linkat() of this binary comes here: the library's calls bind to these definitions at link
// time.
extern "C" int linkat(int olddirfd, const char* oldpath, int newdirfd, const char* newpath, int flags) noexcept {
    if (g_die_at == DieAt::link && is_publisher_log(newpath)) ::kill(::getpid(), SIGKILL);
    const int r = static_cast<int>(::syscall(SYS_linkat, olddirfd, oldpath, newdirfd, newpath, flags));
    g_linked = g_linked || (r == 0 && is_publisher_log(newpath));
    return r;
}

extern "C" int unlinkat(int dirfd, const char* path, int flags) noexcept {
    if (g_die_at == DieAt::after_link && g_linked) ::kill(::getpid(), SIGKILL);
    if (g_armed && g_hold != nullptr && is_publisher_log(path)) {
        const int me = g_hold->arrivals.fetch_add(1) + 1;
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
        while (g_hold->released.load() < me && std::chrono::steady_clock::now() < deadline) ::usleep(200);
    }
    return static_cast<int>(::syscall(SYS_unlinkat, dirfd, path, flags));
}

namespace tensorpool::transport {
namespace {

using test::BusRoot;
using test::ChildResult;
using test::TestMessage;

constexpr int32_t kStream = 1001;
const std::string kChannel = "ipc:race";

template <class T>
T* shared_object() {
    void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return new (p) T();
}

struct Report {
    std::atomic<int> stop{0};
    std::atomic<int> ready{0};
    std::atomic<int64_t> last[4] = {-1, -1, -1, -1};  // newest counter received per publisher id
    std::atomic<int64_t> published[4] = {-1, -1, -1, -1};  // newest counter a publisher got accepted
    std::atomic<uint64_t> corrupt{0};
};

// A subscriber that never sweeps (it never calls do_work), so only the processes the test drives free slots.
int subscriber_main(const BusRoot& root, Report& r) {
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(kChannel, kStream);
    if (!sub) return test::child_fail(sub.error().message());
    r.ready.store(1);
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (!TestMessage::parse(m, t) || t.publisher >= 4) {
            r.corrupt.fetch_add(1);
            return;
        }
        r.last[t.publisher].store(static_cast<int64_t>(t.counter));
    };
    while (r.stop.load() == 0) {
        if ((*sub)->poll(handler, 64) == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    return 0;
}

// Publishes TestMessages of publisher `id` until killed.
int publisher_main(const BusRoot& root, Report& r, uint32_t id) {
    TransportHub hub(root.options());
    auto pub = hub.add_publication(kChannel, kStream);
    if (!pub) return test::child_fail(pub.error().message());
    for (uint64_t counter = 0;; ++counter) {
        if ((*pub)->offer(TestMessage::make(id, counter, 48)).ok()) r.published[id].store(static_cast<int64_t>(counter));
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
}

// The registry's publisher slot words, read by hand (docs/ipc-bus.md).
struct RegistryView {
    void* base = MAP_FAILED;
    explicit RegistryView(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDONLY);
        if (fd >= 0) {
            base = ::mmap(nullptr, ipc::kRegistryBytes, PROT_READ, MAP_SHARED, fd, 0);
            ::close(fd);
        }
    }
    ~RegistryView() {
        if (base != MAP_FAILED) ::munmap(base, ipc::kRegistryBytes);
    }
    uint64_t word(uint32_t i) const {
        auto* p = reinterpret_cast<uint64_t*>(static_cast<uint8_t*>(base) + sizeof(ipc::RegistryHeader) +
                                              i * sizeof(ipc::PublisherSlot));
        return std::atomic_ref<uint64_t>(*p).load();
    }
    // The slot holding `session`, or -1.
    int slot_of(int32_t session, uint32_t state) const {
        for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) {
            if (word(i) == ipc::publisher_word(state, session)) return static_cast<int>(i);
        }
        return -1;
    }
};

TEST(IpcSweepRace, ASweeperDelayedWhileFreeingADeadPublishersSlotNeverFreesTheSlotOfItsSuccessor) {
    BusRoot root;
    Hold* hold = shared_object<Hold>();
    Report* r = shared_object<Report>();
    g_hold = hold;

    const pid_t sub = test::fork_child([&] { return subscriber_main(root, *r); });
    ASSERT_TRUE(test::wait_until([&] { return r->ready.load() == 1; }, std::chrono::seconds(30)));

    // A publishes, the subscriber reads it, A is killed: its slot is active with a dead pid.
    const pid_t a = test::fork_child([&] { return publisher_main(root, *r, 1); });
    ASSERT_TRUE(test::wait_until([&] { return r->last[1].load() >= 0; }, std::chrono::seconds(30))) << "the subscriber never heard A";
    ::kill(a, SIGKILL);
    ASSERT_EQ(test::wait_child(a, 30), ChildResult::killed(SIGKILL));

    // Sweeper 1 marks A closing (opening the stream sweeps), then frees it (linger 0) and is held while it
    // unlinks A's log, i.e. with the slot half freed.
    TransportOptions no_linger = root.options();
    no_linger.ipc_linger_ms = 0;
    const pid_t x1 = test::fork_child([&] {
        g_armed = true;
        TransportHub hub(no_linger);
        auto s = hub.add_subscription(kChannel, kStream);
        if (!s) return test::child_fail(s.error().message());
        hub.do_work();
        return 0;
    });
    ASSERT_TRUE(test::wait_until([&] { return hold->arrivals.load() == 1; }, std::chrono::seconds(30))) << "sweeper 1 never freed A's slot";

    // Sweeper 2 opens the stream now: it finds the half-freed slot and starts freeing it too; it is held as well.
    const pid_t x2 = test::fork_child([&] {
        g_armed = true;
        TransportHub hub(no_linger);
        auto s = hub.add_subscription(kChannel, kStream);
        if (!s) return test::child_fail(s.error().message());
        return 0;
    });
    ASSERT_TRUE(test::wait_until([&] { return hold->arrivals.load() == 2; }, std::chrono::seconds(30))) << "sweeper 2 never touched A's slot";

    // Sweeper 1 finishes: the slot is free. The new publisher P takes it.
    hold->released.store(1);
    ASSERT_EQ(test::wait_child(x1, 30), ChildResult::ok());
    const pid_t p = test::fork_child([&] { return publisher_main(root, *r, 2); });
    ASSERT_TRUE(test::wait_until([&] { return r->last[2].load() >= 0; }, std::chrono::seconds(30))) << "the subscriber never heard P";

    // Sweeper 2 finishes what it started, on a slot that is P's by now.
    hold->released.store(2);
    ASSERT_EQ(test::wait_child(x2, 30), ChildResult::ok());

    // P must still be registered, and every subscriber must go on hearing it: the long-lived one and a new one.
    const std::string registry = root.path() + "/race/" + std::to_string(kStream) + "/registry";
    {
        RegistryView reg(registry);
        ASSERT_NE(reg.base, MAP_FAILED);
        int active = 0;
        for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) active += ipc::word_state(reg.word(i)) == ipc::kSlotActive;
        EXPECT_EQ(active, 1) << "P's slot is no longer active: a late sweeper freed it under P";
    }
    const int64_t after = r->published[2].load();
    EXPECT_TRUE(test::wait_until([&] { return r->last[2].load() > after; }, std::chrono::seconds(10)))
        << "the long-lived subscriber stopped hearing P after the late sweeper acted (last " << r->last[2].load()
        << ", P published " << r->published[2].load() << ")";
    {
        TransportHub hub(root.options());
        auto late = hub.add_subscription(kChannel, kStream);
        ASSERT_TRUE(late.ok());
        bool heard = false;
        auto h = [&](std::span<const uint8_t> m, const MessageInfo&) {
            TestMessage t;
            heard = heard || (TestMessage::parse(m, t) && t.publisher == 2);
        };
        EXPECT_TRUE(test::wait_until([&] { return (*late)->poll(h, 64) >= 0 && heard; }, std::chrono::seconds(10)))
            << "a subscriber that joined after the race never hears P";
    }

    ::kill(p, SIGKILL);
    test::wait_child(p, 30);
    r->stop.store(1);
    EXPECT_EQ(test::wait_child(sub, 30), ChildResult::ok());
    EXPECT_EQ(r->corrupt.load(), 0u);
    g_hold = nullptr;
    ::munmap(hold, sizeof(Hold));
    ::munmap(r, sizeof(Report));
}

// A publisher killed while it creates its log, before or after the log is in place but before it registered,
// leaves files that no slot names; the next sweep removes them, and the bus works on.
TEST(IpcSweepRace, APublisherKilledWhileCreatingItsLogLeavesNothingBehindAfterTheNextSweep) {
    for (DieAt where : {DieAt::link, DieAt::after_link}) {
        SCOPED_TRACE(where == DieAt::link ? "killed before linking its log" : "killed after linking its log");
        BusRoot root;
        Report* r = shared_object<Report>();
        const pid_t victim = test::fork_child([&] {
            g_die_at = where;
            TransportHub hub(root.options());
            auto pub = hub.add_publication(kChannel, kStream);
            return test::child_fail(pub ? "registered: it should have died first" : pub.error().message());
        });
        ASSERT_EQ(test::wait_child(victim, 30), ChildResult::killed(SIGKILL));
        EXPECT_GE(root.count_files("pub-"), 1u) << "the victim died before creating anything";
        {
            RegistryView reg(root.path() + "/race/" + std::to_string(kStream) + "/registry");
            ASSERT_NE(reg.base, MAP_FAILED);
            for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) EXPECT_EQ(ipc::word_state(reg.word(i)), ipc::kSlotFree);
        }
        const pid_t sub = test::fork_child([&] { return subscriber_main(root, *r); });  // opening sweeps the files
        ASSERT_TRUE(test::wait_until([&] { return r->ready.load() == 1; }, std::chrono::seconds(30)));
        EXPECT_EQ(root.count_files("pub-"), 0u) << "files of a publisher killed while creating its log remain";
        const pid_t p = test::fork_child([&] { return publisher_main(root, *r, 3); });
        EXPECT_TRUE(test::wait_until([&] { return r->last[3].load() >= 0; }, std::chrono::seconds(30)));
        ::kill(p, SIGKILL);
        test::wait_child(p, 30);
        r->stop.store(1);
        EXPECT_EQ(test::wait_child(sub, 30), ChildResult::ok());
        ::munmap(r, sizeof(Report));
    }
}

}  // namespace
}  // namespace tensorpool::transport
