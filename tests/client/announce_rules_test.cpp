// The consumer's rules for ShmPoolAnnounce, driven by announces encoded by hand with the generated encoder and
// published on the announce stream, pointing at real region files: which announces are ignored (stale, stamped
// before the join time) and which are refused at mapping (superblock disagrees with the announce).
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

namespace {

constexpr uint32_t kNslots = 16;

std::vector<PoolConfig> hand_pools() { return {PoolConfig{1, 1024}, PoolConfig{2, 4096}}; }

// Everything a test needs: a private bus, a private SHM base dir with real (never announced) regions, and one
// consumer process with the given announce period.
struct AnnounceFixture {
    BusRoot bus;
    TempDir shm_dir{"/dev/shm"};
    HandRegions regions;
    SharedBox<ConsumerShared> cons;
    Processes procs;
    pid_t consumer = -1;
    std::optional<transport::TransportHub> hub;
    std::unique_ptr<transport::Publication> announce_pub;

    // Regions first, then the consumer process (which inherits their paths to probe /proc/self/maps), and only
    // then the parent's own hub.
    ::testing::AssertionResult start(int64_t announce_period_ns, bool create_publication_now) {
        auto r = make_hand_regions(shm_dir.path(), 10000, static_cast<uint64_t>(realtime_ns()), kNslots, hand_pools());
        if (!r) return ::testing::AssertionFailure() << r.error().message();
        regions = *r;
        ConsumerConfig cfg = test_consumer_config(shm_dir.path());
        cfg.announce_period_ns = announce_period_ns;
        cfg.liveness_timeout_ns = 600'000'000'000;  // nobody refreshes the hand-made regions' activity timestamp
        ConsumerChild cc(bus.options(), cfg);
        cc.check_layout = false;
        cc.probe_paths = regions.paths();
        consumer = procs.start([&] { return consumer_main(cc, *cons); });
        if (!wait_until([&] { return cons->ready.load() == 1; }, 10s)) {
            return ::testing::AssertionFailure() << "consumer not ready";
        }
        hub.emplace(bus.options());
        if (create_publication_now) return make_publication();
        return ::testing::AssertionSuccess();
    }

    ::testing::AssertionResult make_publication() {
        auto pub = hub->add_publication("ipc:tensorpool", 1001);
        if (!pub) return ::testing::AssertionFailure() << pub.error().message();
        announce_pub = std::move(*pub);
        return ::testing::AssertionSuccess();
    }

    ::testing::AssertionResult send(const AnnounceSpec& a) {
        const std::vector<uint8_t> m = encode_announce(a);
        if (m.empty()) return ::testing::AssertionFailure() << "announce did not encode";
        const auto r = announce_pub->offer(m);
        if (!r.ok()) return ::testing::AssertionFailure() << "offer: " << transport::offer_status_name(r.status());
        return ::testing::AssertionSuccess();
    }

    // Waits until the consumer has judged `n` announces in all (accepted or ignored).
    bool judged(uint64_t n) {
        return wait_until([&] { return cons->announces_accepted.load() + cons->announces_ignored.load() >= n; }, 10s);
    }

    ChildResult stop() {
        cons->stop.store(1);
        return procs.wait(consumer, 30);
    }
};

}  // namespace

// W-10.1.1-6, W-10.1.1-8, W-15.1-5, A-11(a), A-13: an announce stamped further back than 3x the announce period
// (measured against the local receive time) is ignored, even though its files are perfectly valid; the same
// announce stamped now maps. The stale one is stamped after the publication appeared, so only freshness can
// refuse it (not the join-time rule).
TEST(ClientAnnounceRules, AnnounceOlderThanThreePeriodsIsIgnored) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(100'000'000, true));  // window 300 ms
    const int64_t after_join = monotonic_ns();  // >= the image's join time (the publication already exists)
    std::this_thread::sleep_for(500ms);
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(after_join))));  // ~500 ms old
    ASSERT_TRUE(f.judged(1)) << describe(*f.cons);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u) << describe(*f.cons);
    EXPECT_EQ(f.cons->announces_accepted.load(), 0u);
    EXPECT_EQ(f.cons->mappings.load(), 0u);
    EXPECT_EQ(f.cons->mapping_failures.load(), 0u);  // ignored before any file was looked at
    EXPECT_FALSE(f.cons->mapped());
    EXPECT_EQ(probe_mappings(*f.cons), 0);

    // Control: the same announce, fresh, maps.
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(monotonic_ns()))));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.cons->mapped_epoch.load(), f.regions.epoch);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u);
    EXPECT_EQ(probe_mappings(*f.cons), 1 + static_cast<int>(f.regions.pools.size()));
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-10.1.1-9 (MONOTONIC join-time rule; replay guard): the publication appears after the consumer subscribed, so
// its image's join time is the publication's start; an announce stamped 200 ms before that is well inside the
// freshness window (3 s) yet must be ignored. The same announce stamped after the join time maps.
TEST(ClientAnnounceRules, MonotonicAnnounceStampedBeforeJoinTimeIsIgnored) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(1'000'000'000, false));  // window 3 s
    std::this_thread::sleep_for(50ms);
    const int64_t before_join = monotonic_ns() - 200'000'000;
    ASSERT_TRUE(f.make_publication());  // image join time = now, after the consumer subscribed
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(before_join))));
    ASSERT_TRUE(f.judged(1)) << describe(*f.cons);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 0u);
    EXPECT_EQ(f.cons->mapping_failures.load(), 0u);
    EXPECT_FALSE(f.cons->mapped());
    EXPECT_EQ(probe_mappings(*f.cons), 0);

    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(monotonic_ns()))));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u);
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-10.1.1-10: REALTIME_SYNCED announces are judged by the freshness window only, never by the (monotonic)
// join time: one stamped 200 ms ago in realtime maps; one older than the window is ignored.
TEST(ClientAnnounceRules, RealtimeSyncedAnnounceUsesFreshnessOnlyNotJoinTime) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(1'000'000'000, false));
    std::this_thread::sleep_for(50ms);
    ASSERT_TRUE(f.make_publication());
    AnnounceSpec stale = AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(realtime_ns() - 5'000'000'000));
    stale.clock = wc::ClockDomain::REALTIME_SYNCED;
    ASSERT_TRUE(f.send(stale));
    ASSERT_TRUE(f.judged(1)) << describe(*f.cons);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u) << describe(*f.cons);
    EXPECT_FALSE(f.cons->mapped());

    AnnounceSpec fresh = AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(realtime_ns() - 200'000'000));
    fresh.clock = wc::ClockDomain::REALTIME_SYNCED;
    ASSERT_TRUE(f.send(fresh));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->announces_ignored.load(), 1u);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-7-2, W-7-7, W-7-10, W-10.1.1-2, W-15.1-1, W-15.1-2, W-15.5-1, W-15.21-10, W-15.22-11, W-15.22-13, §3.4 rule 22,
// §6.2 (M0 stays M0): an announce whose nslots, stride, pool id, pool nslots, header slot size or layout version
// disagrees with the real files (or with the protocol) is refused: the consumer stays unmapped with nothing of the
// regions mapped, counts a mapping failure, and last_mapping_error() names the field, the values and the rule.
// A truthful announce of the same files then maps.
TEST(ClientAnnounceRules, AnnounceDisagreeingWithSuperblocksIsRefused) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(1'000'000'000, true));
    const auto now = [] { return static_cast<uint64_t>(monotonic_ns()); };

    struct Case {
        const char* what;
        std::function<void(AnnounceSpec&)> lie;
        std::vector<const char*> error_mentions;
    };
    const std::vector<Case> cases = {
        {"header nslots 32 (files have 16)",
         [](AnnounceSpec& a) {
             a.header_nslots = 2 * kNslots;
             for (auto& p : a.pools) p.nslots = 2 * kNslots;
         },
         {"nslots", "W-15.1-1"}},
        {"pool 2 stride 8192 (file has 4096)", [](AnnounceSpec& a) { a.pools[1].stride = 8192; },
         {"stride_bytes", "W-15.1-1"}},
        {"pool nslots 8 != header nslots 16", [](AnnounceSpec& a) { a.pools[0].nslots = kNslots / 2; },
         {"8", "16", "W-15.5-1"}},
        {"pool id 3 for the file of pool 2", [](AnnounceSpec& a) { a.pools[1].pool_id = 3; }, {"pool_id", "W-7-10"}},
        {"stride 2048 for pool 1 whose file has 1024", [](AnnounceSpec& a) { a.pools[0].stride = 2048; },
         {"stride_bytes", "1024"}},
        {"headerSlotBytes 512", [](AnnounceSpec& a) { a.header_slot_bytes = 512; }, {"512", "W-10.1.1-2"}},
        {"layoutVersion 2", [](AnnounceSpec& a) { a.layout_version = 2; }, {"layout", "W-7-7"}},
        {"pool 1 announced twice (a second region under one id)",
         [](AnnounceSpec& a) { a.pools.push_back(a.pools[0]); }, {"pool id 1", "twice"}},
    };
    uint64_t failures = 0;
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        AnnounceSpec a = AnnounceSpec::truthful(f.regions, now());
        c.lie(a);
        ASSERT_TRUE(f.send(a));
        ++failures;
        ASSERT_TRUE(wait_until([&] { return f.cons->mapping_failures.load() == failures; }, 10s)) << describe(*f.cons);
        std::this_thread::sleep_for(20ms);
        EXPECT_FALSE(f.cons->mapped()) << describe(*f.cons);
        EXPECT_EQ(f.cons->state.load(), static_cast<int>(MappingState::unmapped));
        EXPECT_EQ(f.cons->mappings.load(), 0u);
        EXPECT_EQ(probe_mappings(*f.cons), 0) << "a refused region stayed mapped (W-15.22-13)";
        const std::string error = f.cons->last_error.get();
        for (const char* m : c.error_mentions) EXPECT_NE(error.find(m), std::string::npos) << error;
    }

    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.cons->mapping_failures.load(), failures);
    EXPECT_EQ(f.cons->last_error.get(), "");
    EXPECT_EQ(probe_mappings(*f.cons), 1 + static_cast<int>(f.regions.pools.size()));
    EXPECT_EQ(f.stop(), ChildResult::ok());
}
