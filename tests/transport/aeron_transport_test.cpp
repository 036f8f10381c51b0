// The aeron backend against a real (embedded) Aeron media driver: whole messages over IPC and UDP loopback, per-
// publisher order, join time, late joiners, claims, size limits, ADMIN_ACTION under heavy term rotation, URI errors,
// shutdown order.
//
// Every test starts its own embedded C media driver in a fresh /dev/shm directory; UDP tests use 127.0.0.1 only.
// Without Aeron in the build these tests compile and skip, saying so.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"

#ifdef TENSORPOOL_HAVE_AERON
#include "../../src/transport/aeron/aeron_stats.hpp"
#endif

namespace tensorpool::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

#ifdef TENSORPOOL_HAVE_AERON
#define SKIP_WITHOUT_AERON() (void)0
#else
#define SKIP_WITHOUT_AERON() \
    GTEST_SKIP() << "Aeron not built (not found, or TENSORPOOL_WITH_AERON=OFF): configure with " \
                    "-DCMAKE_PREFIX_PATH=<Aeron install prefix> to test the aeron backend"
#endif

// ---- helpers ------------------------------------------------------------------------------------------------------

// A UDP port on 127.0.0.1 that was free a moment ago.
int free_udp_port() {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
        port = ntohs(a.sin_port);
    }
    ::close(fd);
    return port;
}

std::string udp_channel(const std::string& params = "") {
    return "aeron:udp?endpoint=127.0.0.1:" + std::to_string(free_udp_port()) + params;
}

bool exists(const std::string& path) {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
}

// Self-checking message: 8-byte sequence number, 4-byte publisher index, then bytes derived from both.
constexpr std::size_t kMinMessage = 12;

void fill_message(std::span<uint8_t> m, uint64_t seq, uint32_t publisher) {
    std::memcpy(m.data(), &seq, 8);
    std::memcpy(m.data() + 8, &publisher, 4);
    for (std::size_t i = kMinMessage; i < m.size(); ++i) m[i] = static_cast<uint8_t>(seq * 31 + publisher * 7 + i);
}

std::vector<uint8_t> make_message(uint64_t seq, uint32_t publisher, std::size_t size) {
    std::vector<uint8_t> m(std::max(size, kMinMessage));
    fill_message(m, seq, publisher);
    return m;
}

struct Decoded {
    uint64_t seq = 0;
    uint32_t publisher = 0;
    bool intact = false;
};

Decoded decode(std::span<const uint8_t> m) {
    Decoded d;
    if (m.size() < kMinMessage) return d;
    std::memcpy(&d.seq, m.data(), 8);
    std::memcpy(&d.publisher, m.data() + 8, 4);
    d.intact = true;
    for (std::size_t i = kMinMessage; i < m.size(); ++i) {
        if (m[i] != static_cast<uint8_t>(d.seq * 31 + d.publisher * 7 + i)) {
            d.intact = false;
            break;
        }
    }
    return d;
}

// Waits until the publication sees a subscriber and each subscription sees at least `images` publishers.
bool wait_connected(const Publication& pub, std::initializer_list<const Subscription*> subs, int images = 1,
                    std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        bool all = pub.is_connected();
        for (const Subscription* s : subs) all = all && s->image_count() >= images;
        if (all) return true;
        std::this_thread::sleep_for(1ms);
    }
    return false;
}

// Offers until published or refused for good, polling `sub` meanwhile so back-pressure clears.
OfferResult offer_until_sent(Publication& pub, std::span<const uint8_t> m, Subscription* sub,
                             MessageHandler on_message, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
        const OfferResult r = pub.offer(m);
        if (r.ok() || r.status() != OfferStatus::back_pressured || Clock::now() >= deadline) return r;
        if (sub != nullptr) sub->poll(on_message, 64);
    }
}

// Polls until done() or the timeout; false on timeout.
template <class Done>
bool poll_until(Subscription& sub, MessageHandler on_message, Done done, int limit = 16,
                std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (!done()) {
        if (Clock::now() >= deadline) return false;
        if (sub.poll(on_message, limit) == 0) std::this_thread::yield();
    }
    return true;
}

// ---- fixture: one embedded media driver per test --------------------------------------------------------------------

class AeronTransportTest : public ::testing::Test {
protected:
    void SetUp() override {
        SKIP_WITHOUT_AERON();
        auto t = make_aeron_transport(options());
        ASSERT_TRUE(t.ok()) << t.error().message();
        transport_ = std::move(t).value();
        ASSERT_EQ(transport_->backend(), "aeron");
    }

    static TransportOptions options() {
        TransportOptions o;
        o.aeron_embedded_driver = true;
        o.aeron_driver_timeout_ms = 10000;
        return o;
    }

    std::unique_ptr<Publication> publication(const std::string& channel, int32_t stream) {
        auto p = transport_->add_publication(channel, stream);
        EXPECT_TRUE(p.ok()) << p.error().message();
        return p.ok() ? std::move(p).value() : nullptr;
    }
    std::unique_ptr<Subscription> subscription(const std::string& channel, int32_t stream) {
        auto s = transport_->add_subscription(channel, stream);
        EXPECT_TRUE(s.ok()) << s.error().message();
        return s.ok() ? std::move(s).value() : nullptr;
    }

    // Small and 200 KiB messages, delivered whole and in order, polled one message at a time.
    void round_trip(const std::string& channel) {
        SCOPED_TRACE(channel);
        auto sub = subscription(channel, 1001);
        auto pub = publication(channel, 1001);
        ASSERT_TRUE(sub && pub);
        ASSERT_TRUE(wait_connected(*pub, {sub.get()}));
        ASSERT_GE(pub->max_message_length(), std::size_t{200} << 10) << "the channel's term is too small here";

        const std::size_t sizes[] = {12, 100, 1400, 4096, 65536, 65536 + 64, 200 * 1024, 32, 200 * 1024 + 3, 12};
        std::vector<std::size_t> got;
        int64_t last_position = 0;
        bool intact = true, positions_grow = true, session_ok = true;
        auto on_message = [&](std::span<const uint8_t> m, const MessageInfo& info) {
            const Decoded d = decode(m);
            intact = intact && d.intact && d.seq == got.size();
            positions_grow = positions_grow && info.position > last_position;
            session_ok = session_ok && info.session_id == pub->session_id();
            last_position = info.position;
            got.push_back(m.size());
        };
        for (std::size_t i = 0; i < std::size(sizes); ++i) {
            const auto m = make_message(i, 0, sizes[i]);
            const OfferResult r = offer_until_sent(*pub, m, nullptr, on_message);
            ASSERT_TRUE(r.ok()) << "message " << i << " (" << sizes[i] << " bytes): " << offer_status_name(r.status());
        }
        // Limit 1: a 200 KiB message over UDP is ~150 MTU fragments; poll still hands it whole, as one message.
        ASSERT_TRUE(poll_until(*sub, on_message, [&] { return got.size() >= std::size(sizes); }, 1));
        ASSERT_EQ(got.size(), std::size(sizes));
        for (std::size_t i = 0; i < std::size(sizes); ++i) EXPECT_EQ(got[i], sizes[i]) << "message " << i;
        EXPECT_TRUE(intact);
        EXPECT_TRUE(positions_grow);
        EXPECT_TRUE(session_ok);
        EXPECT_EQ(sub->lost_messages(), 0U);
        EXPECT_EQ(sub->lost_bytes(), 0U);
        EXPECT_EQ(sub->channel(), channel);
        EXPECT_EQ(sub->stream_id(), 1001);
        EXPECT_EQ(pub->channel(), channel);
        EXPECT_EQ(pub->stream_id(), 1001);
    }

    std::unique_ptr<Transport> transport_;
};

TEST_F(AeronTransportTest, RoundTripOverIpc) { round_trip("aeron:ipc?term-length=4m"); }

TEST_F(AeronTransportTest, RoundTripOverIpcWithDefaultTerm) { round_trip("aeron:ipc"); }

TEST_F(AeronTransportTest, RoundTripOverUdpLoopback) { round_trip(udp_channel()); }

TEST_F(AeronTransportTest, RoundTripOverUdpLoopbackWithSmallTerm) { round_trip(udp_channel("|term-length=2m")); }

// ---- connection state ---------------------------------------------------------------------------------------------

TEST_F(AeronTransportTest, NotConnectedBeforeAnySubscriber) {
    // The backend creates no subscription of its own: with none added, nobody is there to receive.
    auto pub = publication("aeron:ipc?term-length=4m", 2001);
    ASSERT_TRUE(pub);
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(pub->is_connected());
    const auto m = make_message(0, 0, 64);
    EXPECT_EQ(pub->offer(m).status(), OfferStatus::not_connected);
    BufferClaim claim;
    EXPECT_EQ(pub->try_claim(64, claim).status(), OfferStatus::not_connected);
    EXPECT_FALSE(claim.active());

    auto udp = publication(udp_channel(), 2001);
    ASSERT_TRUE(udp);
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(udp->is_connected());
    EXPECT_EQ(udp->offer(m).status(), OfferStatus::not_connected);
}

TEST_F(AeronTransportTest, OversizeMessagesAreRefusedBeforeAeronSeesThem) {
    const std::string channel = "aeron:ipc?term-length=1m";  // max message = term / 8 = 128 KiB
    auto sub = subscription(channel, 2002);
    auto pub = publication(channel, 2002);
    ASSERT_TRUE(sub && pub);
    ASSERT_TRUE(wait_connected(*pub, {sub.get()}));
    const std::size_t max = pub->max_message_length();
    EXPECT_EQ(max, std::size_t{128} << 10);

    std::vector<uint8_t> big(max + 1);
    EXPECT_EQ(pub->offer(big).status(), OfferStatus::message_too_large);
    std::vector<uint8_t> huge(std::size_t{64} << 20);
    EXPECT_EQ(pub->offer(huge).status(), OfferStatus::message_too_large);

    // A claim is one frame: up to the MTU's payload (1376 bytes with Aeron's default 1408-byte MTU).
    BufferClaim claim;
    EXPECT_EQ(pub->try_claim(max, claim).status(), OfferStatus::message_too_large);
    EXPECT_FALSE(claim.active());

    // Exactly the maximum goes through, whole.
    const auto at_max = make_message(7, 0, max);
    std::size_t got = 0;
    bool intact = false;
    auto on_message = [&](std::span<const uint8_t> m, const MessageInfo&) {
        got = m.size();
        intact = decode(m).intact;
    };
    ASSERT_TRUE(offer_until_sent(*pub, at_max, sub.get(), on_message).ok());
    ASSERT_TRUE(poll_until(*sub, on_message, [&] { return got != 0; }));
    EXPECT_EQ(got, max);
    EXPECT_TRUE(intact);
}

// ---- order and joining ---------------------------------------------------------------------------------------------

TEST_F(AeronTransportTest, EachSubscriberGetsEveryPublishersMessagesInOrder) {
    // Three publishers (threads) and three subscriptions on one channel and stream. Aeron's concurrent publications
    // of one media driver share the stream's log (one session), so order per publisher is checked in the payload.
    const std::string channel = "aeron:ipc?term-length=1m";
    constexpr int kPublishers = 3, kSubscribers = 3;
    constexpr uint64_t kPerPublisher = 20000;
    std::vector<std::unique_ptr<Subscription>> subs;
    std::vector<std::unique_ptr<Publication>> pubs;
    for (int i = 0; i < kSubscribers; ++i) subs.push_back(subscription(channel, 3001));
    for (int i = 0; i < kPublishers; ++i) pubs.push_back(publication(channel, 3001));
    for (auto& p : pubs) ASSERT_TRUE(p && wait_connected(*p, {subs[0].get(), subs[1].get(), subs[2].get()}));

    std::atomic<bool> failed{false};
    std::vector<std::thread> threads;
    for (int pi = 0; pi < kPublishers; ++pi) {
        threads.emplace_back([&, pi] {
            std::vector<uint8_t> m(48);
            const auto deadline = Clock::now() + 60s;
            for (uint64_t seq = 0; seq < kPerPublisher && !failed.load();) {
                fill_message(m, seq, static_cast<uint32_t>(pi));
                const OfferResult r = pubs[pi]->offer(m);
                if (r.ok()) {
                    ++seq;
                } else if (r.status() != OfferStatus::back_pressured || Clock::now() > deadline) {
                    failed = true;
                } else {
                    std::this_thread::yield();
                }
            }
        });
    }

    uint64_t next[kSubscribers][kPublishers] = {};
    uint64_t received[kSubscribers] = {};
    bool ok = true;
    const auto deadline = Clock::now() + 60s;
    while (!failed.load() && Clock::now() < deadline) {
        bool done = true;
        for (int si = 0; si < kSubscribers; ++si) {
            subs[si]->poll(
                [&](std::span<const uint8_t> m, const MessageInfo& info) {
                    const Decoded d = decode(m);
                    if (!d.intact || d.publisher >= kPublishers || d.seq != next[si][d.publisher] ||
                        info.session_id != pubs[0]->session_id()) {
                        ok = false;
                    }
                    next[si][d.publisher % kPublishers] = d.seq + 1;
                    ++received[si];
                },
                256);
            done = done && received[si] == kPublishers * kPerPublisher;
        }
        if (done) break;
    }
    for (auto& t : threads) t.join();
    ASSERT_FALSE(failed.load()) << "a publisher was refused";
    EXPECT_TRUE(ok) << "a message arrived torn, out of its publisher's order, or from an unknown publisher";
    for (int si = 0; si < kSubscribers; ++si) {
        EXPECT_EQ(received[si], kPublishers * kPerPublisher) << "subscriber " << si;
        for (int pi = 0; pi < kPublishers; ++pi) EXPECT_EQ(next[si][pi], kPerPublisher);
    }
}

TEST_F(AeronTransportTest, LateSubscriberSeesOnlyLaterMessages) {
    const std::string channel = "aeron:ipc?term-length=1m";
    auto early = subscription(channel, 3002);
    auto pub = publication(channel, 3002);
    ASSERT_TRUE(early && pub && wait_connected(*pub, {early.get()}));

    uint64_t early_count = 0;
    auto on_early = [&](std::span<const uint8_t>, const MessageInfo&) { ++early_count; };
    for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE(offer_until_sent(*pub, make_message(i, 0, 64), early.get(), on_early).ok());
    // Aeron joins a new IPC subscriber at the position of the slowest existing one, so let the early one catch up:
    // then "published before the late subscriber joined" is exactly messages 0..99.
    ASSERT_TRUE(poll_until(*early, on_early, [&] { return early_count == 100; }));

    const int64_t before_join = monotonic_ns();
    auto late = subscription(channel, 3002);
    ASSERT_TRUE(late && wait_connected(*pub, {late.get()}));
    for (uint64_t i = 100; i < 200; ++i) ASSERT_TRUE(offer_until_sent(*pub, make_message(i, 0, 64), early.get(), on_early).ok());

    std::vector<uint64_t> seen;
    int64_t join = 0;
    auto on_late = [&](std::span<const uint8_t> m, const MessageInfo& info) {
        seen.push_back(decode(m).seq);
        join = info.join_time_ns;
    };
    ASSERT_TRUE(poll_until(*late, on_late, [&] { return seen.size() >= 100; }));
    std::this_thread::sleep_for(20ms);
    late->poll(on_late, 1000);
    ASSERT_EQ(seen.size(), 100U);
    for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 100 + i);
    EXPECT_GE(join, before_join);
}

TEST_F(AeronTransportTest, JoinTimeIsWhenTheImageBecameAvailable) {
    for (const std::string& channel : {std::string("aeron:ipc?term-length=1m"), udp_channel("|term-length=1m")}) {
        SCOPED_TRACE(channel);
        auto pub = publication(channel, 3003);
        ASSERT_TRUE(pub);
        std::this_thread::sleep_for(20ms);  // the publication exists well before the subscription
        const int64_t before_subscribe = monotonic_ns();
        auto sub = subscription(channel, 3003);
        ASSERT_TRUE(sub);

        std::vector<int64_t> joins, received_at;
        auto on_message = [&](std::span<const uint8_t>, const MessageInfo& info) {
            received_at.push_back(monotonic_ns());
            joins.push_back(info.join_time_ns);
        };
        // Offer as soon as Aeron lets us: the first message races the image handler on purpose.
        for (uint64_t i = 0; i < 50; ++i) {
            const auto m = make_message(i, 0, 64);
            const auto deadline = Clock::now() + 10s;
            OfferResult r = pub->offer(m);
            while (!r.ok() && Clock::now() < deadline) {
                sub->poll(on_message, 8);
                r = pub->offer(m);
            }
            ASSERT_TRUE(r.ok()) << offer_status_name(r.status());
        }
        ASSERT_TRUE(poll_until(*sub, on_message, [&] { return joins.size() >= 50; }));
        EXPECT_EQ(sub->image_count(), 1);
        EXPECT_GE(joins.front(), before_subscribe);
        EXPECT_LE(joins.front(), received_at.front());
        EXPECT_LE(joins.front(), monotonic_ns());
        for (int64_t j : joins) EXPECT_EQ(j, joins.front()) << "one image, one join time";
    }
#ifdef TENSORPOOL_HAVE_AERON
    std::printf("[ JOIN TIME  ] polls that met an image before its join time was recorded (left for later): %llu\n",
                static_cast<unsigned long long>(aeron_backend::join_time_deferrals()));
#endif
}

#ifdef TENSORPOOL_HAVE_AERON
// Aeron adds an image to the subscription before it runs the available-image handler that records the join time.
// Here the handler is made to take 250 ms, with messages already waiting in the image: poll() must hold them back
// until the join time exists, never hand one out without it (or with a made-up one).
TEST_F(AeronTransportTest, NoMessageIsHandedOutBeforeItsImagesJoinTimeIsRecorded) {
    struct DelayGuard {
        DelayGuard() { aeron_backend::set_join_record_delay_for_testing(250000); }
        ~DelayGuard() { aeron_backend::set_join_record_delay_for_testing(0); }
    } delay;
    const std::string channel = "aeron:ipc?term-length=1m";
    auto pub = publication(channel, 3005);
    ASSERT_TRUE(pub);
    const int64_t before_subscribe = monotonic_ns();
    auto sub = subscription(channel, 3005);
    ASSERT_TRUE(sub);
    const auto deadline = Clock::now() + 10s;
    while (!pub->is_connected() && Clock::now() < deadline) std::this_thread::yield();
    for (uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(pub->offer(make_message(i, 0, 64)).ok());

    const uint64_t deferrals_before = aeron_backend::join_time_deferrals();
    std::vector<int64_t> joins, received_at;
    std::vector<uint64_t> seqs;
    auto on_message = [&](std::span<const uint8_t> m, const MessageInfo& info) {
        received_at.push_back(monotonic_ns());
        joins.push_back(info.join_time_ns);
        seqs.push_back(decode(m).seq);
    };
    ASSERT_TRUE(poll_until(*sub, on_message, [&] { return seqs.size() >= 10; }));
    const uint64_t deferrals = aeron_backend::join_time_deferrals() - deferrals_before;
    EXPECT_GT(deferrals, 0U) << "poll never met the image before its join time was recorded: the test missed its case";
    EXPECT_GE(joins.front(), before_subscribe + 250'000'000) << "the join time was not the handler's";
    EXPECT_LE(joins.front(), received_at.front());
    for (std::size_t i = 0; i < seqs.size(); ++i) {
        EXPECT_EQ(seqs[i], i);
        EXPECT_EQ(joins[i], joins.front());
    }
    std::printf("[ JOIN TIME  ] slow image handler: %llu polls held messages back until the join time existed\n",
                static_cast<unsigned long long>(deferrals));
}
#endif

TEST_F(AeronTransportTest, APublisherThatComesBackGetsANewJoinTime) {
    const std::string channel = "aeron:ipc?term-length=1m";
    auto sub = subscription(channel, 3004);
    ASSERT_TRUE(sub);
    int64_t first_join = 0, second_join = 0;
    {
        auto pub = publication(channel, 3004);
        ASSERT_TRUE(pub && wait_connected(*pub, {sub.get()}));
        auto on_message = [&](std::span<const uint8_t>, const MessageInfo& info) { first_join = info.join_time_ns; };
        ASSERT_TRUE(offer_until_sent(*pub, make_message(0, 0, 32), sub.get(), on_message).ok());
        ASSERT_TRUE(poll_until(*sub, on_message, [&] { return first_join != 0; }));
    }
    // The publication closed: its image goes away (after Aeron's linger), then a new publication is a new image.
    const auto deadline = Clock::now() + 20s;
    while (sub->image_count() != 0 && Clock::now() < deadline) {
        sub->poll([](std::span<const uint8_t>, const MessageInfo&) {}, 16);
        std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(sub->image_count(), 0);
    const int64_t before_second = monotonic_ns();
    auto pub = publication(channel, 3004);
    ASSERT_TRUE(pub && wait_connected(*pub, {sub.get()}));
    auto on_message = [&](std::span<const uint8_t>, const MessageInfo& info) { second_join = info.join_time_ns; };
    ASSERT_TRUE(offer_until_sent(*pub, make_message(1, 0, 32), sub.get(), on_message).ok());
    ASSERT_TRUE(poll_until(*sub, on_message, [&] { return second_join != 0; }));
    EXPECT_GT(second_join, first_join);
    EXPECT_GE(second_join, before_second);
}

// ---- claims and limits ---------------------------------------------------------------------------------------------

TEST_F(AeronTransportTest, TryClaimCommitPublishesAndAbortDropsTheMessage) {
    const std::string channel = "aeron:ipc?term-length=1m";
    auto sub = subscription(channel, 4001);
    auto pub = publication(channel, 4001);
    ASSERT_TRUE(sub && pub && wait_connected(*pub, {sub.get()}));

    std::vector<uint64_t> seen;
    std::vector<std::size_t> sizes;
    auto on_message = [&](std::span<const uint8_t> m, const MessageInfo&) {
        const Decoded d = decode(m);
        EXPECT_TRUE(d.intact);
        seen.push_back(d.seq);
        sizes.push_back(m.size());
    };
    auto claim_and = [&](uint64_t seq, std::size_t size, bool commit) {
        BufferClaim claim;
        OfferResult r = pub->try_claim(size, claim);
        const auto deadline = Clock::now() + 10s;
        while (!r.ok() && r.status() == OfferStatus::back_pressured && Clock::now() < deadline) {
            sub->poll(on_message, 16);
            r = pub->try_claim(size, claim);
        }
        ASSERT_TRUE(r.ok()) << offer_status_name(r.status());
        ASSERT_TRUE(claim.active());
        ASSERT_EQ(claim.length(), size);
        fill_message(claim.span(), seq, 0);
        if (commit) {
            claim.commit();
        } else {
            claim.abort();
        }
        EXPECT_FALSE(claim.active());
    };
    claim_and(0, 64, true);
    claim_and(1, 1000, false);  // aborted: becomes padding, never delivered
    claim_and(2, 1376, true);   // the largest claim with the default MTU
    {
        BufferClaim dropped;  // destroyed uncommitted: aborted
        ASSERT_TRUE(pub->try_claim(100, dropped).ok());
        fill_message(dropped.span(), 3, 0);
    }
    ASSERT_TRUE(offer_until_sent(*pub, make_message(4, 0, 80), sub.get(), on_message).ok());
    ASSERT_TRUE(poll_until(*sub, on_message, [&] { return seen.size() >= 3; }));
    std::this_thread::sleep_for(20ms);
    sub->poll(on_message, 100);
    EXPECT_EQ(seen, (std::vector<uint64_t>{0, 2, 4}));
    EXPECT_EQ(sizes, (std::vector<std::size_t>{64, 1376, 80}));
}

TEST_F(AeronTransportTest, PollHandsAtMostTheLimit) {
    const std::string channel = udp_channel("|term-length=1m");
    auto sub = subscription(channel, 4002);
    auto pub = publication(channel, 4002);
    ASSERT_TRUE(sub && pub && wait_connected(*pub, {sub.get()}));
    int got = 0;
    auto on_message = [&](std::span<const uint8_t> m, const MessageInfo&) {
        EXPECT_TRUE(decode(m).intact);
        ++got;
    };
    // Ten fragmented messages (5 KiB each over a 1408-byte MTU) and ten small ones.
    for (uint64_t i = 0; i < 20; ++i) {
        ASSERT_TRUE(offer_until_sent(*pub, make_message(i, 0, i < 10 ? 5000 : 40), nullptr, on_message).ok());
    }
    // Wait until everything has arrived at the receiver, then take it three at a time.
    int total = 0;
    const auto deadline = Clock::now() + 10s;
    while (total < 20 && Clock::now() < deadline) {
        const int n = sub->poll(on_message, 3);
        EXPECT_LE(n, 3);
        EXPECT_EQ(n, got - total);
        total = got;
        if (n == 0) std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(total, 20);
    EXPECT_EQ(sub->poll(on_message, 0), 0);
}

// ---- ADMIN_ACTION: many term rotations, no message lost --------------------------------------------------------------

// A 64 KiB term rotates every ~1000 small messages; each rotation answers one offer with ADMIN_ACTION (the C
// implementation lost that message). 200,000 messages through it must all arrive, in order.
void admin_action_run(Transport& transport, int publishers, uint64_t per_publisher, int32_t stream) {
    const std::string channel = "aeron:ipc?term-length=64k";
    auto s = transport.add_subscription(channel, stream);
    ASSERT_TRUE(s.ok()) << s.error().message();
    std::vector<std::unique_ptr<Publication>> pubs;
    for (int i = 0; i < publishers; ++i) {
        auto p = transport.add_publication(channel, stream);
        ASSERT_TRUE(p.ok()) << p.error().message();
        pubs.push_back(std::move(p).value());
    }
    Subscription& sub = **s;
    for (auto& p : pubs) ASSERT_TRUE(wait_connected(*p, {&sub}));
    EXPECT_EQ(pubs[0]->max_message_length(), 8192U);

#ifdef TENSORPOOL_HAVE_AERON
    const uint64_t admin_before = aeron_backend::admin_action_retries();
#endif
    const uint64_t total = per_publisher * static_cast<uint64_t>(publishers);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> received{0};
    std::atomic<uint64_t> disorder{0};
    std::atomic<int64_t> last_position{0};
    std::vector<uint64_t> next(static_cast<std::size_t>(publishers), 0);
    std::thread subscriber([&] {
        while (!stop.load(std::memory_order_relaxed) && received.load(std::memory_order_relaxed) < total) {
            const int n = sub.poll(
                [&](std::span<const uint8_t> m, const MessageInfo& info) {
                    const Decoded d = decode(m);
                    if (!d.intact || d.publisher >= next.size() || d.seq != next[d.publisher]) {
                        disorder.fetch_add(1, std::memory_order_relaxed);
                    }
                    if (d.publisher < next.size()) next[d.publisher] = d.seq + 1;
                    last_position.store(info.position, std::memory_order_relaxed);
                    received.fetch_add(1, std::memory_order_relaxed);
                },
                512);
            if (n == 0) std::this_thread::yield();
        }
    });

    std::atomic<uint64_t> refused{0};
    // With one publisher thread, an offer during which the ADMIN_ACTION counter moved is one that met ADMIN_ACTION:
    // the backend's own retry must have published it (not handed the caller a back-pressure to retry).
    std::atomic<uint64_t> admin_not_published{0};
    const auto start = Clock::now();
    std::vector<std::thread> producers;
    for (int pi = 0; pi < publishers; ++pi) {
        producers.emplace_back([&, pi] {
            std::vector<uint8_t> m(40);  // 32-byte header + 40 rounds to a 96-byte frame: ~680 per 64 KiB term
            const auto deadline = Clock::now() + 120s;
            for (uint64_t seq = 0; seq < per_publisher;) {
                fill_message(m, seq, static_cast<uint32_t>(pi));
#ifdef TENSORPOOL_HAVE_AERON
                const uint64_t exhausted_before = aeron_backend::admin_action_exhausted();
#endif
                const OfferResult r = pubs[static_cast<std::size_t>(pi)]->offer(m);
#ifdef TENSORPOOL_HAVE_AERON
                // An offer that met ADMIN_ACTION, retried, and then was back-pressured by a slow subscriber is
                // ordinary back pressure (retried below). What must not happen is giving up on ADMIN_ACTION itself.
                if (publishers == 1 && !r.ok() && aeron_backend::admin_action_exhausted() != exhausted_before) {
                    admin_not_published.fetch_add(1);
                }
#endif
                if (r.ok()) {
                    ++seq;
                } else if (r.status() == OfferStatus::back_pressured && Clock::now() < deadline) {
                    std::this_thread::yield();
                } else {
                    refused.fetch_add(1);
                    return;
                }
            }
        });
    }
    for (auto& t : producers) t.join();
    const auto deadline = Clock::now() + 30s;
    while (received.load() < total && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    stop = true;
    subscriber.join();

    ASSERT_EQ(refused.load(), 0U) << "an offer failed with something other than back-pressure";
    EXPECT_EQ(admin_not_published.load(), 0U) << "offers gave up on ADMIN_ACTION after every retry";
    EXPECT_EQ(received.load(), total) << "messages lost";
    EXPECT_EQ(disorder.load(), 0U) << "messages torn or out of order";
    for (uint64_t n : next) EXPECT_EQ(n, per_publisher);
    const int64_t terms = last_position.load() / (64 * 1024);
    EXPECT_GT(terms, 150) << "the term did not rotate as often as the test needs";
    std::printf("[ ADMIN_ACTION ] %d publisher(s): %llu messages in %.3f s (%.0f msg/s), %lld term rotations",
                publishers, static_cast<unsigned long long>(total), secs, static_cast<double>(total) / secs,
                static_cast<long long>(terms));
#ifdef TENSORPOOL_HAVE_AERON
    const uint64_t admin = aeron_backend::admin_action_retries() - admin_before;
    std::printf(", %llu ADMIN_ACTION answers retried", static_cast<unsigned long long>(admin));
    EXPECT_GT(admin, 0U) << "no ADMIN_ACTION was met: the test did not test what it claims";
#endif
    std::printf("\n");
}

TEST_F(AeronTransportTest, AdminActionNeverLosesAMessageOnePublisher) {
    admin_action_run(*transport_, 1, 200000, 5001);
}

TEST_F(AeronTransportTest, AdminActionNeverLosesAMessageTwoConcurrentPublishers) {
    admin_action_run(*transport_, 2, 100000, 5002);
}

// ---- errors --------------------------------------------------------------------------------------------------------

TEST_F(AeronTransportTest, MalformedUrisAreErrorsNamingTheUri) {
    for (const char* channel : {"aeron:bogus", "aeron:udp?endpoint=", "aeron:udp?endpoint=127.0.0.1:notaport",
                                "aeron:ipc?term-length=3m", "ipc:not-aeron", "aeron:udp"}) {
        SCOPED_TRACE(channel);
        auto p = transport_->add_publication(channel, 6001);
        ASSERT_FALSE(p.ok());
        EXPECT_NE(std::string(p.error().message()).find(channel), std::string::npos) << p.error().message();
        EXPECT_NE(std::string(p.error().message()).find("6001"), std::string::npos) << p.error().message();
        auto s = transport_->add_subscription(channel, 6001);
        if (std::string(channel) == "aeron:ipc?term-length=3m") continue;  // subscriptions take no term length
        ASSERT_FALSE(s.ok());
        EXPECT_NE(std::string(s.error().message()).find(channel), std::string::npos) << s.error().message();
    }
    // The transport is still usable after refusals.
    EXPECT_TRUE(transport_->add_publication("aeron:ipc?term-length=1m", 6001).ok());
}

TEST_F(AeronTransportTest, ASecondPublicationWithAnotherTermLengthIsAClearError) {
    auto first = publication("aeron:ipc?term-length=4m", 6002);
    ASSERT_TRUE(first);
    auto second = transport_->add_publication("aeron:ipc?term-length=8m", 6002);
    ASSERT_FALSE(second.ok());
    const std::string msg = second.error().message();
    EXPECT_EQ(second.error().code(), Errc::mismatch) << msg;
    EXPECT_NE(msg.find("aeron:ipc?term-length=8m"), std::string::npos) << msg;
    EXPECT_NE(msg.find("term length"), std::string::npos) << msg;
    // Same term length: fine (the two share the stream's log and session).
    auto third = publication("aeron:ipc?term-length=4m", 6002);
    ASSERT_TRUE(third);
    EXPECT_EQ(third->session_id(), first->session_id());
}

// ---- lifetime ------------------------------------------------------------------------------------------------------

TEST(AeronTransportLifetime, PublicationsAndSubscriptionsMayOutliveTheTransport) {
    SKIP_WITHOUT_AERON();
    TransportOptions o;
    o.aeron_embedded_driver = true;
    auto t = make_aeron_transport(o);
    ASSERT_TRUE(t.ok()) << t.error().message();
    auto sub = (*t)->add_subscription("aeron:ipc?term-length=1m", 7001);
    auto pub = (*t)->add_publication("aeron:ipc?term-length=1m", 7001);
    ASSERT_TRUE(sub.ok() && pub.ok());
    ASSERT_TRUE(wait_connected(**pub, {sub->get()}));
    t.value().reset();  // the client and the driver stay up until the last publication/subscription is gone
    int got = 0;
    auto on_message = [&](std::span<const uint8_t>, const MessageInfo&) { ++got; };
    ASSERT_TRUE(offer_until_sent(**pub, make_message(0, 0, 32), sub->get(), on_message).ok());
    ASSERT_TRUE(poll_until(**sub, on_message, [&] { return got == 1; }));
    pub.value().reset();
    sub.value().reset();
}

TEST(AeronTransportLifetime, TheEmbeddedDriverRemovesItsDirectory) {
    SKIP_WITHOUT_AERON();
    char tmpl[] = "/dev/shm/tp-aeron-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string dir = std::string(tmpl) + "/driver";
    {
        TransportOptions o;
        o.aeron_embedded_driver = true;
        o.aeron_dir = dir;
        auto t = make_aeron_transport(o);
        ASSERT_TRUE(t.ok()) << t.error().message();
        EXPECT_TRUE(exists(dir + "/cnc.dat"));
        auto sub = (*t)->add_subscription("aeron:ipc?term-length=1m", 7002);
        auto pub = (*t)->add_publication("aeron:ipc?term-length=1m", 7002);
        ASSERT_TRUE(sub.ok() && pub.ok());

        // A second embedded driver on the same directory is refused, naming it: it never takes over a live one.
        auto clash = make_aeron_transport(o);
        ASSERT_FALSE(clash.ok());
        EXPECT_NE(std::string(clash.error().message()).find(dir), std::string::npos) << clash.error().message();
    }
    EXPECT_FALSE(exists(dir)) << "the embedded driver left " << dir << " behind";
    std::filesystem::remove_all(tmpl);
}

TEST(AeronTransportLifetime, GeneratedDriverDirectoriesAreUniqueAndRemoved) {
    SKIP_WITHOUT_AERON();
    auto list = [] {
        std::vector<std::string> v;
        const std::string prefix = "tensorpool-aeron-" + std::to_string(::getpid()) + "-";
        for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
            if (e.path().filename().string().rfind(prefix, 0) == 0) v.push_back(e.path().string());
        }
        return v;
    };
    const auto before = list();
    {
        TransportOptions o;
        o.aeron_embedded_driver = true;
        auto a = make_aeron_transport(o);
        auto b = make_aeron_transport(o);  // two drivers in one process: two directories
        ASSERT_TRUE(a.ok() && b.ok());
        EXPECT_EQ(list().size(), before.size() + 2);
    }
    EXPECT_EQ(list().size(), before.size());
}

TEST(AeronTransportLifetime, NoDriverIsAClearErrorNamingTheDirectory) {
    SKIP_WITHOUT_AERON();
    TransportOptions o;
    o.aeron_dir = "/dev/shm/tp-aeron-test-no-driver-here";
    o.aeron_driver_timeout_ms = 300;
    const auto start = Clock::now();
    auto t = make_aeron_transport(o);
    ASSERT_FALSE(t.ok());
    EXPECT_NE(std::string(t.error().message()).find(o.aeron_dir), std::string::npos) << t.error().message();
    EXPECT_LT(Clock::now() - start, 5s);
}

}  // namespace
}  // namespace tensorpool::transport
