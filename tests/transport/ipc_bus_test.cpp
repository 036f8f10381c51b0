// The embedded ipc bus with real processes: many publishers and subscribers, lapping, a publisher killed in the
// middle of a write, late joiners, oversize messages, claims.
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <thread>
#include <vector>

#include "../../src/transport/ipc/ipc_format.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::transport {
namespace {

using test::BusRoot;
using test::ChildResult;
using test::TestMessage;

constexpr int32_t kStream = 1001;

// Polls until `done` says so or the deadline passes; returns whether `done` was reached.
template <class Done>
bool poll_until(Subscription& sub, MessageHandler handler, Done done, int seconds = 30) {
    const int64_t deadline = monotonic_ns() + int64_t{seconds} * 1'000'000'000;
    while (!done()) {
        if (sub.poll(handler, 256) == 0) {
            if (monotonic_ns() > deadline) return false;
            std::this_thread::yield();
        }
    }
    return true;
}

TEST(IpcBus, ThreePublishersThreeSubscribersEveryMessageInOrder) {
    BusRoot root;
    constexpr int kPublishers = 3, kSubscribers = 3;
    constexpr uint64_t kMessages = 100'000;
    const std::string channel = "ipc:mpmc?term-length=64m";  // large enough that nobody is lapped
    test::Barrier subscribers_ready(kSubscribers), go(1);

    std::vector<pid_t> subs;
    for (int s = 0; s < kSubscribers; ++s) {
        subs.push_back(test::fork_child([&] {
            TransportHub hub(root.options());
            auto sub = hub.add_subscription(channel, kStream);
            if (!sub) return test::child_fail(sub.error().message());
            subscribers_ready.arrive();
            std::array<uint64_t, kPublishers> next{};
            uint64_t received = 0, out_of_order = 0, corrupt = 0;
            auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
                TestMessage t;
                if (!TestMessage::parse(m, t) || t.publisher >= kPublishers) {
                    ++corrupt;
                    return;
                }
                if (t.counter != next[t.publisher]) ++out_of_order;
                next[t.publisher] = t.counter + 1;
                ++received;
            };
            const bool all = poll_until(**sub, handler, [&] { return received == kPublishers * kMessages; }, 60);
            if (!all || out_of_order != 0 || corrupt != 0 || (*sub)->lost_messages() != 0) {
                return test::child_fail("received " + std::to_string(received) + " out_of_order " +
                                        std::to_string(out_of_order) + " corrupt " + std::to_string(corrupt) +
                                        " lost " + std::to_string((*sub)->lost_messages()));
            }
            return 0;
        }));
    }
    ASSERT_TRUE(subscribers_ready.wait(20)) << "subscribers did not start";

    std::vector<pid_t> pubs;
    for (int p = 0; p < kPublishers; ++p) {
        pubs.push_back(test::fork_child([&, p] {
            TransportHub hub(root.options());
            auto pub = hub.add_publication(channel, kStream);
            if (!pub) return test::child_fail(pub.error().message());
            go.wait(20);
            for (uint64_t i = 0; i < kMessages; ++i) {
                auto bytes = TestMessage::make(static_cast<uint32_t>(p), i, 16 + (i * 7) % 200);
                OfferResult r = (*pub)->offer(bytes);
                if (!r.ok()) return test::child_fail(std::string("offer: ") + offer_status_name(r.status()));
            }
            return 0;
        }));
    }
    go.arrive();
    for (pid_t pid : pubs) EXPECT_EQ(test::wait_child(pid, 60), ChildResult::ok()) << "publisher " << pid;
    for (pid_t pid : subs) EXPECT_EQ(test::wait_child(pid, 90), ChildResult::ok()) << "subscriber " << pid;
}

TEST(IpcBus, LappedSubscriberSkipsAheadCountsTheLossAndNeverSeesATornMessage) {
    BusRoot root;
    const std::string channel = "ipc:lap?term-length=1m";
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    constexpr uint64_t kMessages = 200'000;  // ~50 MiB through a 1 MiB ring: lapped many times
    test::Barrier done(1);
    pid_t writer = test::fork_child([&] {
        TransportHub h(root.options());
        auto pub = h.add_publication(channel, kStream);
        if (!pub) return test::child_fail(pub.error().message());
        for (uint64_t i = 0; i < kMessages; ++i) {
            auto bytes = TestMessage::make(0, i, 64 + (i % 300));
            if (!(*pub)->offer(bytes).ok()) return test::child_fail("offer failed");
        }
        done.arrive();
        return 0;
    });
    // Poll slowly while the writer races ahead, so we are lapped over and over.
    uint64_t received = 0, corrupt = 0, last = 0, backwards = 0;
    bool first = true;
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (!TestMessage::parse(m, t)) {
            ++corrupt;
            return;
        }
        if (!first && t.counter <= last) ++backwards;
        first = false;
        last = t.counter;
        ++received;
    };
    while (!done.wait(0)) {
        (*sub)->poll(handler, 10);
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    poll_until(**sub, handler, [&] { return last == kMessages - 1; }, 10);
    EXPECT_EQ(test::wait_child(writer, 60), ChildResult::ok());
    EXPECT_EQ(corrupt, 0u) << "a torn or half-written message was delivered";
    EXPECT_EQ(backwards, 0u);
    EXPECT_GT((*sub)->lost_messages(), 0u) << "the test did not lap the subscriber";
    EXPECT_GT((*sub)->lost_bytes(), 0u);
    EXPECT_EQ(last, kMessages - 1) << "the subscriber did not resume up to the newest message";
    // Exact accounting: what we received plus what we were told we lost is what was published after we joined.
    EXPECT_EQ(received + (*sub)->lost_messages(), kMessages);
}

// A reader finds records by their header word. One that was lapped while it did not poll sits on bytes of a newer
// lap, which never become the record it waits for: it must notice (write_limit) instead of waiting forever.
TEST(IpcBus, SubscriberLappedWhileIdleNoticesAndResumesAtTheNewest) {
    BusRoot root;
    const std::string channel = "ipc:idle-lap?term-length=1m";
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    constexpr uint64_t kMessages = 3 * (1 << 20) / 128 + 77;  // a little over three laps of 128-byte records
    pid_t writer = test::fork_child([&] {
        TransportHub h(root.options());
        auto pub = h.add_publication(channel, kStream);
        if (!pub) return test::child_fail(pub.error().message());
        for (uint64_t i = 0; i < kMessages; ++i) {
            if (!(*pub)->offer(TestMessage::make(0, i, 112)).ok()) return test::child_fail("offer failed");
        }
        return 0;
    });
    ASSERT_EQ(test::wait_child(writer, 60), ChildResult::ok());
    uint64_t received = 0, corrupt = 0, last = 0;
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (!TestMessage::parse(m, t)) {
            ++corrupt;
            return;
        }
        last = t.counter;
        ++received;
    };
    // The publisher has closed: its log lingers, and the subscriber drains what is left of it.
    poll_until(**sub, handler, [&] { return last == kMessages - 1; }, 10);
    EXPECT_EQ(corrupt, 0u);
    EXPECT_EQ(last, kMessages - 1) << "the lapped subscriber never resumed";
    EXPECT_GT((*sub)->lost_messages(), 0u);
    EXPECT_EQ(received + (*sub)->lost_messages(), kMessages);
}

TEST(IpcBus, PublisherKilledMidWriteLeavesOthersAndSubscribersWorking) {
    BusRoot root;
    const std::string channel = "ipc:kill";
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(sub.ok()) << sub.error().message();

    // Victim: claims space for a message (write_limit moves past it; its header word is never stored) and dies
    // before committing it.
    test::Barrier claimed(1);
    pid_t victim = test::fork_child([&] {
        TransportHub h(root.options());
        auto pub = h.add_publication(channel, kStream);
        if (!pub) return test::child_fail(pub.error().message());
        for (uint64_t i = 0; i < 1000; ++i) (void)(*pub)->offer(TestMessage::make(9, i, 100));
        BufferClaim claim;
        if (!(*pub)->try_claim(4096, claim).ok()) return test::child_fail("claim failed");
        std::memset(claim.data(), 0xAB, 2000);  // half written
        claimed.arrive();
        ::kill(::getpid(), SIGKILL);
        return 0;
    });
    ASSERT_TRUE(claimed.wait(20));
    EXPECT_EQ(test::wait_child(victim, 20), ChildResult::killed(SIGKILL));

    // Survivors publish after the death.
    constexpr uint64_t kMessages = 20'000;
    std::vector<pid_t> survivors;
    for (uint32_t p = 0; p < 2; ++p) {
        survivors.push_back(test::fork_child([&, p] {
            TransportHub h(root.options());
            auto pub = h.add_publication(channel, kStream);
            if (!pub) return test::child_fail(pub.error().message());
            for (uint64_t i = 0; i < kMessages; ++i) {
                if (!(*pub)->offer(TestMessage::make(p, i, 48)).ok()) return test::child_fail("offer failed");
            }
            return 0;
        }));
    }
    std::map<uint32_t, uint64_t> next;
    uint64_t victim_msgs = 0, bad = 0;
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (!TestMessage::parse(m, t)) {
            ++bad;
            return;
        }
        if (t.publisher == 9) {
            ++victim_msgs;
            return;
        }
        if (t.counter != next[t.publisher]) ++bad;
        next[t.publisher] = t.counter + 1;
    };
    EXPECT_TRUE(poll_until(**sub, handler, [&] { return next[0] == kMessages && next[1] == kMessages; }));
    for (pid_t pid : survivors) EXPECT_EQ(test::wait_child(pid, 30), ChildResult::ok());
    EXPECT_EQ(bad, 0u);
    EXPECT_EQ(victim_msgs, 1000u) << "the victim's committed messages are delivered, its unfinished one never";

    // The sweep frees the dead publisher's slot and removes its file; the subscriber drops its image.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_GE(hub.do_work(), 1);
    (*sub)->poll(handler, 10);
    EXPECT_EQ((*sub)->image_count(), 0);
    EXPECT_EQ(root.count_files("pub-"), 0u) << "stale publisher logs were not cleaned up";
}

// A publisher that dies inside a claim that did not fit before the wrap had already published the padding record
// in front of it, but never the tail: a subscriber skips the padding and ends up past the tail for good. Its image
// must still be dropped once the publisher is swept (it was kept for ever, found in review).
TEST(IpcBus, PublisherKilledInsideAClaimAfterPaddingIsStillDropped) {
    BusRoot root;
    constexpr std::size_t kTerm = std::size_t{1} << 20;
    const std::string channel = "ipc:padded";
    TransportHub hub(root.options(kTerm));
    auto sub = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    test::Barrier claimed(1);
    pid_t victim = test::fork_child([&] {
        TransportHub h(root.options(kTerm));
        auto pub = h.add_publication(channel, kStream);
        if (!pub) return test::child_fail(pub.error().message());
        const std::vector<uint8_t> msg(48, 1);  // 64-byte records: the last one ends 192 bytes before the wrap
        for (;;) {
            const auto r = (*pub)->offer(msg);
            if (!r.ok()) return test::child_fail("offer failed");
            if (static_cast<std::size_t>(r.position()) >= kTerm - 192) break;
        }
        BufferClaim claim;
        if (!(*pub)->try_claim(1000, claim).ok()) return test::child_fail("claim failed");  // 1016 > 192: padding
        claimed.arrive();
        ::kill(::getpid(), SIGKILL);
        return 0;
    });
    ASSERT_TRUE(claimed.wait(20));
    EXPECT_EQ(test::wait_child(victim, 20), ChildResult::killed(SIGKILL));

    uint64_t delivered = 0;
    auto count = [&](std::span<const uint8_t>, const MessageInfo&) { ++delivered; };
    EXPECT_TRUE(test::wait_until([&] {
        (void)(*sub)->poll(count, 100'000);
        hub.do_work();
        return (*sub)->image_count() == 0;
    }, std::chrono::seconds(10))) << "the dead publisher's image was never dropped";
    // Joined more than seven eighths of a ring behind, the subscriber resumed at the newest record, then met the
    // padding.
    EXPECT_GE(delivered, 1u);
}

TEST(IpcBus, LateSubscriberSeesOnlyLaterMessages) {
    BusRoot root;
    const std::string channel = "ipc:late";
    TransportHub hub(root.options());
    auto early = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(early.ok());
    test::Barrier first_batch(1), late_joined(1);
    pid_t pub = test::fork_child([&] {
        TransportHub h(root.options());
        auto p = h.add_publication(channel, kStream);
        if (!p) return test::child_fail(p.error().message());
        for (uint64_t i = 0; i < 100; ++i) (void)(*p)->offer(TestMessage::make(0, i, 32));
        first_batch.arrive();
        late_joined.wait(20);
        for (uint64_t i = 100; i < 200; ++i) (void)(*p)->offer(TestMessage::make(0, i, 32));
        return 0;
    });
    ASSERT_TRUE(first_batch.wait(20));
    auto late = hub.add_subscription(channel, kStream);
    ASSERT_TRUE(late.ok());
    late_joined.arrive();
    EXPECT_EQ(test::wait_child(pub, 20), ChildResult::ok());
    std::vector<uint64_t> seen_early, seen_late;
    auto collect = [](std::vector<uint64_t>& v) {
        return [&v](std::span<const uint8_t> m, const MessageInfo&) {
            TestMessage t;
            if (TestMessage::parse(m, t)) v.push_back(t.counter);
        };
    };
    auto he = collect(seen_early);
    auto hl = collect(seen_late);
    poll_until(**early, he, [&] { return seen_early.size() == 200; }, 5);
    poll_until(**late, hl, [&] { return seen_late.size() == 100; }, 5);
    ASSERT_EQ(seen_early.size(), 200u);
    ASSERT_EQ(seen_late.size(), 100u);
    EXPECT_EQ(seen_late.front(), 100u);
    EXPECT_EQ(seen_late.back(), 199u);
}

TEST(IpcBus, PublisherStartedAfterTheSubscriberIsReadFromItsFirstMessage) {
    BusRoot root;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:fresh", kStream);
    ASSERT_TRUE(sub.ok());
    const int64_t before = monotonic_ns();
    pid_t pub = test::fork_child([&] {
        TransportHub h(root.options());
        auto p = h.add_publication("ipc:fresh", kStream);
        if (!p) return test::child_fail(p.error().message());
        for (uint64_t i = 0; i < 50; ++i) (void)(*p)->offer(TestMessage::make(0, i, 32));
        return 0;  // exits (publication closed) before the subscriber even looks
    });
    EXPECT_EQ(test::wait_child(pub, 20), ChildResult::ok());
    std::vector<uint64_t> seen;
    int64_t join = 0;
    auto h = [&](std::span<const uint8_t> m, const MessageInfo& info) {
        TestMessage t;
        if (TestMessage::parse(m, t)) seen.push_back(t.counter);
        join = info.join_time_ns;
    };
    poll_until(**sub, h, [&] { return seen.size() == 50; }, 5);
    ASSERT_EQ(seen.size(), 50u);
    EXPECT_EQ(seen.front(), 0u);
    EXPECT_GE(join, before) << "join time is when the publisher's stream became available";
}

TEST(IpcBus, OversizeMessageIsRefusedWithItsCode) {
    BusRoot root;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:big?term-length=1m", kStream);
    auto pub = hub.add_publication("ipc:big?term-length=1m", kStream);
    ASSERT_TRUE(sub.ok() && pub.ok());
    const std::size_t max = (*pub)->max_message_length();
    EXPECT_GE(max, std::size_t{64 * 1024 + 64}) << "metadata chunks of 64 KiB + headers must fit";
    std::vector<uint8_t> big(max + 1, 1);
    EXPECT_EQ((*pub)->offer(big).status(), OfferStatus::message_too_large);
    big.resize(max);
    EXPECT_TRUE((*pub)->offer(big).ok());
    std::size_t got = 0;
    auto h = [&](std::span<const uint8_t> m, const MessageInfo&) { got = m.size(); };
    poll_until(**sub, h, [&] { return got != 0; }, 5);
    EXPECT_EQ(got, max) << "a maximal message arrives whole";
}

TEST(IpcBus, NotConnectedUntilASubscriberAttaches) {
    BusRoot root;
    TransportHub hub(root.options());
    auto pub = hub.add_publication("ipc:nc", kStream);
    ASSERT_TRUE(pub.ok());
    EXPECT_FALSE((*pub)->is_connected());
    EXPECT_EQ((*pub)->offer(TestMessage::make(0, 0, 8)).status(), OfferStatus::not_connected);
    auto sub = hub.add_subscription("ipc:nc", kStream);
    ASSERT_TRUE(sub.ok());
    EXPECT_TRUE((*pub)->is_connected());
    EXPECT_TRUE((*pub)->offer(TestMessage::make(0, 0, 8)).ok());
}

TEST(IpcBus, ClaimCommitDeliversAndAbortDeliversNothing) {
    BusRoot root;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:claim", kStream);
    auto pub = hub.add_publication("ipc:claim", kStream);
    ASSERT_TRUE(sub.ok() && pub.ok());
    {
        BufferClaim c;
        ASSERT_TRUE((*pub)->try_claim(100, c).ok());
        std::memset(c.data(), 'a', c.length());
        c.abort();
    }
    {
        BufferClaim c;
        ASSERT_TRUE((*pub)->try_claim(10, c).ok());
        std::memcpy(c.data(), "0123456789", 10);
        c.commit();
    }
    {
        BufferClaim c;  // destroyed without commit: aborted
        ASSERT_TRUE((*pub)->try_claim(10, c).ok());
    }
    EXPECT_TRUE((*pub)->offer(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("xyz"), 3)).ok());
    std::vector<std::string> got;
    auto h = [&](std::span<const uint8_t> m, const MessageInfo&) {
        got.emplace_back(reinterpret_cast<const char*>(m.data()), m.size());
    };
    poll_until(**sub, h, [&] { return got.size() == 2; }, 5);
    EXPECT_EQ(got, (std::vector<std::string>{"0123456789", "xyz"}));
    EXPECT_EQ((*sub)->lost_messages(), 0u) << "aborted claims consume no sequence number";
}

// A reader that keeps up waits at the tail, where the ring still holds the last lap's bytes. When those are message
// bytes (records of the two laps start at different places), nothing stops them looking like a record header of the
// current lap: an application's payload can hold any 8 bytes. A reader that took them for a record delivered
// garbage and then sat inside a record for good, on that image and every later message of it (a fuzz run found a
// consumer deaf to the control stream this way). The writer now marks where its next record goes before
// publishing the one in front of it, on every path: offer, a committed and an aborted claim, padding at the wrap.
TEST(IpcBus, PayloadBytesOfTheLastLapAreNeverReadAsARecord) {
    BusRoot root;
    const std::string channel = "ipc:mimic?term-length=1m";
    constexpr std::size_t kTerm = std::size_t{1} << 20;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription(channel, kStream);
    auto pub = hub.add_publication(channel, kStream);
    ASSERT_TRUE(sub.ok() && pub.ok());
    // Payloads made of nothing but header words of an 8-byte message. Records start 16-byte aligned, as payloads
    // do, so the words at even offsets are the ones a record start can fall on: there, lap 1's and lap 2's header
    // words take turns (in the odd ones, lap 1's). Wherever a record of laps 1 or 2 starts inside a mimic of the lap
    // before, the reader may find a well-formed header of its own lap.
    std::vector<uint8_t> mimic(1000);
    for (std::size_t i = 0; i + 8 <= mimic.size(); i += 8) {
        const uint64_t lap = (i / 8) % 2 == 0 ? 1 + (i / 16) % 2 : 1;
        const uint64_t w = ipc::record_word(8, ipc::kRecordData, lap);
        std::memcpy(mimic.data() + i, &w, 8);
    }
    uint64_t mimics = 0, next = 0, wrong = 0;
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) {
        TestMessage t;
        if (m.size() == mimic.size() && std::memcmp(m.data(), mimic.data(), m.size()) == 0) {
            ++mimics;
        } else if (TestMessage::parse(m, t) && t.counter == next) {
            ++next;
        } else {
            ++wrong;
        }
    };
    // Offers one message, then reads until the subscriber is at the tail, and once more there.
    uint64_t position = 0, offered_tests = 0, offered_mimics = 0, extra = 0;
    auto step = [&](auto&& publish) {
        position = publish();
        for (int i = 0; i < 4 && (*sub)->poll(handler, 16) != 0; ++i) {
        }
        extra += static_cast<uint64_t>((*sub)->poll(handler, 16));  // nothing can be there: we are at the tail
    };
    auto offer_mimic = [&] { ++offered_mimics; return static_cast<uint64_t>((*pub)->offer(mimic).position()); };
    auto offer_test = [&](std::size_t size) {
        return [&, size] {
            return static_cast<uint64_t>((*pub)->offer(TestMessage::make(0, offered_tests++, size)).position());
        };
    };
    // Lap 0 of mimics; laps 1 and 2 of 64-byte messages (80-byte records), every path of the writer on the way.
    while (position < kTerm) step(offer_mimic);
    uint64_t round = 0;
    while (position < 3 * kTerm) {
        switch (round++ % 4) {
            case 0: step(offer_test(64)); break;
            case 1: step([&] {  // committed claim
                        BufferClaim c;
                        const uint64_t at = static_cast<uint64_t>((*pub)->try_claim(64, c).position());
                        const auto m = TestMessage::make(0, offered_tests++, 64);
                        std::memcpy(c.data(), m.data(), m.size());
                        c.commit();
                        return at;
                    });
                    break;
            case 2: step([&] {  // aborted claim: padding of a record's size
                        BufferClaim c;
                        const uint64_t at = static_cast<uint64_t>((*pub)->try_claim(48, c).position());
                        c.abort();
                        return at;
                    });
                    break;
            default:
                if (position < 2 * kTerm && position > 2 * kTerm - 4096) {
                    step(offer_mimic);  // near the wrap: a mimic record that needs padding before it
                } else {
                    step(offer_test(64));
                }
                break;
        }
    }
    EXPECT_EQ(wrong, 0u) << "bytes that were no record of this lap were delivered as messages";
    EXPECT_EQ(extra, 0u) << "a poll at the tail delivered something";
    EXPECT_EQ(next, offered_tests) << "the subscriber stopped reading after a false record";
    EXPECT_EQ(mimics, offered_mimics);
    EXPECT_EQ((*sub)->lost_messages(), 0u);
}

}  // namespace
}  // namespace tensorpool::transport

namespace tensorpool::transport {
namespace {

// A publisher offering flat out while a subscriber attaches: the first message offer() accepted must be the
// first one delivered. (The subscription used to count itself as a subscriber before taking its start positions,
// losing what was published in between.)
TEST(IpcBus, NoMessageAcceptedWhileASubscriberAttachesIsLost) {
    for (int run = 0; run < 20; ++run) {
        test::BusRoot root;
        auto* first_ok = static_cast<std::atomic<int64_t>*>(
            ::mmap(nullptr, sizeof(std::atomic<int64_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
        new (first_ok) std::atomic<int64_t>(-1);
        test::Barrier ready(1), done(1);
        pid_t child = test::fork_child([&] {
            TransportHub hub(root.options());
            auto pub = hub.add_publication("ipc:attach", kStream);
            if (!pub) return test::child_fail(pub.error().message());
            ready.arrive();
            for (uint64_t counter = 0; counter <= 1000 && !done.wait(0);) {
                if ((*pub)->offer(TestMessage::make(0, counter, 16)).ok()) {
                    int64_t none = -1;
                    first_ok->compare_exchange_strong(none, static_cast<int64_t>(counter));
                    ++counter;
                }
            }
            return 0;
        });
        ASSERT_TRUE(ready.wait(20));
        TransportHub hub(root.options());
        auto sub = hub.add_subscription("ipc:attach", kStream);
        ASSERT_TRUE(sub.ok());
        int64_t first_seen = -1;
        auto h = [&](std::span<const uint8_t> m, const MessageInfo&) {
            TestMessage t;
            if (first_seen < 0 && TestMessage::parse(m, t)) first_seen = static_cast<int64_t>(t.counter);
        };
        poll_until(**sub, h, [&] { return first_seen >= 0; }, 10);
        done.arrive();
        EXPECT_EQ(test::wait_child(child, 20), ChildResult::ok());
        EXPECT_EQ(first_seen, first_ok->load()) << "run " << run;
        ::munmap(first_ok, sizeof(std::atomic<int64_t>));
    }
}

}  // namespace
}  // namespace tensorpool::transport
