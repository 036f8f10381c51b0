// What processes killed at the wrong moment leave in a stream directory, and that nothing of it keeps a live
// publisher from being heard: abandoned slot claims, logs of publishers killed before they registered, a log a
// subscriber could not open when it first looked. The registry and files are made by hand in the documented
// format (docs/ipc-bus.md), exactly as such a process leaves them.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "../../src/transport/ipc/ipc_files.hpp"
#include "../../src/transport/ipc/ipc_format.hpp"
#include "../../src/transport/ipc/ipc_subscription.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::transport {
namespace {

using test::BusRoot;
using test::TestMessage;

constexpr int32_t kStream = 7;

// A pid that belonged to a process that has exited and been reaped.
uint64_t dead_pid() {
    const pid_t pid = ::fork();
    if (pid == 0) ::_exit(0);
    ::waitpid(pid, nullptr, 0);
    return static_cast<uint64_t>(pid);
}

// The stream's registry mapped read-write, to put slots in the states a killed process leaves.
class Registry {
public:
    explicit Registry(const std::string& path) {
        const int fd = ::open(path.c_str(), O_RDWR);
        if (fd >= 0) {
            base_ = static_cast<uint8_t*>(::mmap(nullptr, ipc::kRegistryBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
            ::close(fd);
        }
    }
    ~Registry() {
        if (ok()) ::munmap(base_, ipc::kRegistryBytes);
    }
    bool ok() const { return base_ != MAP_FAILED; }
    ipc::PublisherSlot& pub(uint32_t i) {
        return *reinterpret_cast<ipc::PublisherSlot*>(base_ + sizeof(ipc::RegistryHeader) + i * sizeof(ipc::PublisherSlot));
    }
    std::atomic_ref<uint64_t> word(uint32_t i) { return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(&pub(i))); }
    void set(uint32_t i, uint32_t state, int32_t session, uint64_t pid, uint64_t term = uint64_t{1} << 20) {
        pub(i).pid = pid;
        pub(i).term_bytes = term;
        pub(i).start_time_ns = static_cast<uint64_t>(monotonic_ns());
        word(i).store(ipc::publisher_word(state, session));
        std::atomic_ref<uint64_t>(reinterpret_cast<ipc::RegistryHeader*>(base_)->generation).fetch_add(1);
    }
    uint32_t busy_publisher_slots() {
        uint32_t n = 0;
        for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) n += ipc::word_state(word(i).load()) != ipc::kSlotFree;
        return n;
    }

private:
    uint8_t* base_ = static_cast<uint8_t*>(MAP_FAILED);
};

// A publisher log as create_log() makes it, naming `pid` as its creator.
bool write_log(const std::string& path, int32_t session, uint64_t pid, std::size_t term = std::size_t{1} << 20) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return false;
    ipc::LogHeader h{};
    h.magic = ipc::kLogMagic;
    h.layout_version = ipc::kLogLayoutVersion;
    h.session_id = session;
    h.term_bytes = term;
    h.pid = pid;
    const bool ok = ::ftruncate(fd, static_cast<off_t>(ipc::kLogHeaderBytes + term)) == 0 &&
                    ::pwrite(fd, &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
    ::close(fd);
    return ok;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::lstat(path.c_str(), &st) == 0;
}

TEST(IpcRegistry, SlotsLeftClaimingByKilledPublishersOrSweepersAreFreedAndLiveClaimsAreNot) {
    BusRoot root;
    const std::string dir = root.path() + "/abandon/" + std::to_string(kStream);
    {
        TransportHub hub(root.options());
        ASSERT_TRUE(hub.add_subscription("ipc:abandon", kStream).ok());  // creates the registry
    }
    Registry reg(dir + "/registry");
    ASSERT_TRUE(reg.ok());
    const uint64_t gone = dead_pid();
    // Slot 3: a publisher killed right after its claim, before it wrote anything else into the slot (pid 0).
    ASSERT_TRUE(write_log(dir + "/pub-1003.log", 1003, gone));
    reg.set(3, ipc::kSlotClaiming, 1003, 0);
    // Slot 4: a sweeper killed while freeing a slot, after it unlinked the log.
    reg.set(4, ipc::kSlotClaiming, 1004, 0);
    // Slot 5: a publisher registering right now (its log names a live process: us).
    ASSERT_TRUE(write_log(dir + "/pub-1005.log", 1005, static_cast<uint64_t>(::getpid())));
    reg.set(5, ipc::kSlotClaiming, 1005, 0);

    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:abandon", kStream);  // opening the stream sweeps it
    ASSERT_TRUE(sub.ok());
    EXPECT_EQ(ipc::word_state(reg.word(3).load()), ipc::kSlotFree) << "a claim abandoned by a killed publisher stays";
    EXPECT_FALSE(exists(dir + "/pub-1003.log"));
    EXPECT_EQ(ipc::word_state(reg.word(4).load()), ipc::kSlotFree) << "a slot a killed sweeper was freeing stays";
    EXPECT_EQ(reg.word(5).load(), ipc::publisher_word(ipc::kSlotClaiming, 1005)) << "a live claim was taken away";
    EXPECT_TRUE(exists(dir + "/pub-1005.log"));

    // The live claimer dies too: the next sweep frees its slot and removes its log.
    ASSERT_EQ(::unlink((dir + "/pub-1005.log").c_str()), 0);
    ASSERT_TRUE(write_log(dir + "/pub-1005.log", 1005, gone));
    EXPECT_TRUE(test::wait_until([&] {
        hub.do_work();
        return reg.busy_publisher_slots() == 0 && root.count_files("pub-") == 0;
    }, std::chrono::seconds(10))) << reg.busy_publisher_slots() << " busy publisher slots, " << root.count_files("pub-") << " logs";
}

// A closing publisher slot whose close time lies in the future (a corrupted or hostile registry; found by
// fuzz_ipc_registry as a signed overflow) is freed one linger after the sweep first sees it. It used to stay
// closing for ever, its age negative.
TEST(IpcRegistry, AClosingSlotWithACloseTimeInTheFutureIsFreedOneLingerLater) {
    BusRoot root;
    const std::string dir = root.path() + "/future/" + std::to_string(kStream);
    {
        TransportHub hub(root.options());
        ASSERT_TRUE(hub.add_subscription("ipc:future", kStream).ok());  // creates the registry
    }
    Registry reg(dir + "/registry");
    ASSERT_TRUE(reg.ok());
    reg.set(6, ipc::kSlotClosing, 1006, static_cast<uint64_t>(::getpid()));
    std::atomic_ref<uint64_t>(reg.pub(6).close_time_ns).store(static_cast<uint64_t>(monotonic_ns()) + (uint64_t{1} << 62));

    TransportHub hub(root.options());  // linger 200 ms
    auto sub = hub.add_subscription("ipc:future", kStream);
    ASSERT_TRUE(sub.ok());
    EXPECT_EQ(reg.busy_publisher_slots(), 1u) << "freed before a linger had passed";
    EXPECT_TRUE(test::wait_until([&] {
        hub.do_work();
        return reg.busy_publisher_slots() == 0;
    }, std::chrono::seconds(10))) << "the slot stayed closing";
}

TEST(IpcRegistry, LogsOfPublishersKilledBeforeTheyRegisteredAreRemoved) {
    BusRoot root;
    const std::string dir = root.path() + "/orphans/" + std::to_string(kStream);
    {
        TransportHub hub(root.options());
        ASSERT_TRUE(hub.add_subscription("ipc:orphans", kStream).ok());
    }
    const uint64_t gone = dead_pid();
    const uint64_t alive = static_cast<uint64_t>(::getpid());
    // Killed after its log was in place, before it claimed a slot: in no slot, its creator is dead.
    ASSERT_TRUE(write_log(dir + "/pub-2001.log", 2001, gone));
    // Killed while building its log or the registry under a temporary name.
    ASSERT_TRUE(write_log(dir + "/pub-2002.log.tmp." + std::to_string(gone), 2002, gone));
    ASSERT_TRUE(write_log(dir + "/registry.tmp." + std::to_string(gone) + ".12345", 0, gone));
    // About to claim a slot (its creator lives), and files that are not the bus's: all stay.
    ASSERT_TRUE(write_log(dir + "/pub-2003.log", 2003, alive));
    ASSERT_TRUE(write_log(dir + "/pub-2004.log.tmp." + std::to_string(alive), 2004, alive));
    ASSERT_TRUE(write_log(dir + "/pub-02005.log", 2005, gone));
    ASSERT_TRUE(write_log(dir + "/notes.txt", 0, gone));

    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:orphans", kStream);  // opening the stream sweeps its files
    ASSERT_TRUE(sub.ok());
    EXPECT_FALSE(exists(dir + "/pub-2001.log"));
    EXPECT_FALSE(exists(dir + "/pub-2002.log.tmp." + std::to_string(gone)));
    EXPECT_FALSE(exists(dir + "/registry.tmp." + std::to_string(gone) + ".12345"));
    EXPECT_TRUE(exists(dir + "/pub-2003.log"));
    EXPECT_TRUE(exists(dir + "/pub-2004.log.tmp." + std::to_string(alive)));
    EXPECT_TRUE(exists(dir + "/pub-02005.log"));
    EXPECT_TRUE(exists(dir + "/notes.txt"));
    EXPECT_TRUE(exists(dir + "/registry"));

    // The periodic sweep (Transport::do_work) finds new leftovers too, within about a second.
    ASSERT_TRUE(write_log(dir + "/pub-2006.log", 2006, gone));
    EXPECT_TRUE(test::wait_until([&] {
        hub.do_work();
        return !exists(dir + "/pub-2006.log");
    }, std::chrono::seconds(10))) << "the periodic sweep never removed a leftover log";
}

// A subscription that could not open a publisher's log when it first saw it keeps trying, without needing any
// other registry change (before, it waited for the next publisher to come or go, possibly forever).
TEST(IpcRegistry, AnImageThatCouldNotBeOpenedIsRetriedUntilItOpens) {
    BusRoot root;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:retry", kStream);
    auto pub = hub.add_publication("ipc:retry", kStream);
    ASSERT_TRUE(sub.ok() && pub.ok());
    auto* ipc_sub = dynamic_cast<ipc::IpcSubscription*>(sub->get());
    ASSERT_NE(ipc_sub, nullptr);
    const std::string log = root.path() + "/retry/" + std::to_string(kStream) + "/" +
                            ipc::log_file_name((*pub)->session_id());
    // The subscription looks while the log is (transiently) not acceptable.
    ASSERT_EQ(::chmod(log.c_str(), 0640), 0);
    std::vector<uint64_t> seen;
    auto h = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (TestMessage::parse(m, t)) seen.push_back(t.counter);
    };
    (*sub)->poll(h, 10);
    EXPECT_EQ((*sub)->image_count(), 0);
    EXPECT_EQ(ipc_sub->refused_images(), 1u);
    // It becomes acceptable; nothing else changes on the bus. The subscription must find it by itself.
    ASSERT_EQ(::chmod(log.c_str(), 0600), 0);
    for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE((*pub)->offer(TestMessage::make(0, i, 32)).ok());
    EXPECT_TRUE(test::wait_until([&] {
        (*sub)->poll(h, 10);
        return seen.size() == 10;
    }, std::chrono::seconds(5))) << "the subscription never retried the publisher's log";
    ASSERT_EQ(seen.size(), 10u);
    EXPECT_EQ(seen.front(), 0u) << "a publisher that came after the subscriber is read from its first message";
    EXPECT_EQ(ipc_sub->refused_images(), 1u) << "retries of one candidate are counted once";
    EXPECT_EQ((*sub)->image_count(), 1);
}

// A publisher that had already closed when a subscriber joined wrote nothing after the join: its lingering log
// must never be read by that subscriber, whatever makes it rescan the registry later (another publisher coming,
// the periodic sweep).
TEST(IpcRegistry, ALingeringLogOfAPublisherClosedBeforeTheJoinIsNeverReplayed) {
    BusRoot root;
    TransportHub hub(root.options());
    auto early = hub.add_subscription("ipc:linger", kStream);
    ASSERT_TRUE(early.ok());
    {
        auto gone = hub.add_publication("ipc:linger", kStream);
        ASSERT_TRUE(gone.ok());
        for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE((*gone)->offer(TestMessage::make(1, i, 32)).ok());
    }  // closed: its log lingers (200 ms here)
    auto late = hub.add_subscription("ipc:linger", kStream);
    ASSERT_TRUE(late.ok());
    std::vector<uint32_t> from;
    auto h = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (TestMessage::parse(m, t)) from.push_back(t.publisher);
    };
    (*late)->poll(h, 100);
    auto next = hub.add_publication("ipc:linger", kStream);  // the registry changes: the late subscriber rescans
    ASSERT_TRUE(next.ok());
    hub.do_work();  // and the periodic sweep makes it rescan too
    for (uint64_t i = 0; i < 5; ++i) ASSERT_TRUE((*next)->offer(TestMessage::make(2, i, 32)).ok());
    EXPECT_TRUE(test::wait_until([&] {
        (*late)->poll(h, 100);
        return from.size() >= 5;
    }, std::chrono::seconds(5)));
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    (*late)->poll(h, 100);
    EXPECT_EQ(std::count(from.begin(), from.end(), 1u), 0) << "messages published before the join were delivered";
    EXPECT_EQ(std::count(from.begin(), from.end(), 2u), 5);
}

}  // namespace
}  // namespace tensorpool::transport
