// The consumer's rules for ShmPoolAnnounce, driven by announces encoded by hand with the generated encoder and
// published on the announce stream, pointing at real region files: which announces are ignored (stale, stamped
// before the join time) and which are refused at mapping (superblock disagrees with the announce).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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

    // Regions first (by default in the canonical layout; `make` may put them anywhere in shm_dir), then the
    // consumer process (which inherits their paths to probe /proc/self/maps), and only then the parent's own hub.
    using RegionMaker = std::function<Result<HandRegions>(const std::string& base, uint64_t epoch)>;
    ::testing::AssertionResult start(int64_t announce_period_ns, bool create_publication_now,
                                     const RegionMaker& make = {}) {
        const uint64_t epoch = static_cast<uint64_t>(realtime_ns());
        auto r = make ? make(shm_dir.path(), epoch) : make_hand_regions(shm_dir.path(), 10000, epoch, kNslots, hand_pools());
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

// Regions under names and directories no layout would give them: only the announce can say where they are.
Result<HandRegions> make_oddly_named_regions(const std::string& base, uint64_t epoch) {
    HandRegions r;
    r.epoch = epoch;
    r.nslots = kNslots;
    const uint64_t now = static_cast<uint64_t>(monotonic_ns());
    auto sb = shm::Superblock::header_ring(10000, epoch, kNslots);
    sb.start_timestamp_ns = sb.activity_timestamp_ns = now;
    auto ring = shm::create_region(base + "/cam.hdr", sb);
    if (!ring) return ring.error();
    r.header_path = ring->path();
    auto uri = shm::format_region_uri(shm::RegionUri{ring->path(), false});
    if (!uri) return uri.error();
    r.header_uri = *uri;
    if (::mkdir((base + "/sub").c_str(), 0700) != 0) return Error(Errc::io, "mkdir sub");
    for (const PoolConfig& pc : hand_pools()) {
        auto psb = shm::Superblock::payload_pool(10000, epoch, pc.pool_id, kNslots, pc.stride_bytes);
        psb.start_timestamp_ns = psb.activity_timestamp_ns = now;
        auto pool = shm::create_region(base + "/sub/blob-" + std::to_string(pc.stride_bytes) + ".bin", psb);
        if (!pool) return pool.error();
        auto puri = shm::format_region_uri(shm::RegionUri{pool->path(), false});
        if (!puri) return puri.error();
        r.pools.emplace_back(pc, *puri);
        r.pool_paths.push_back(pool->path());
    }
    return r;
}

}  // namespace

// W-10.1.1-6, W-10.1.1-8, W-15.1-5, A-11(a), A-13: an announce stamped further back than 3x the announce period
// (measured against the local receive time) is ignored, even though its files are perfectly valid; the same
// announce stamped now maps. The stale one is stamped after the publication appeared, so only freshness can
// refuse it (not the join-time rule).
// W-15.21a-1, W-15.21a-10, A-36: valid regions sit unannounced in the allowed directory and nothing maps them.
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
// W-10.1.1-4, W-9-5, W-15.22-12 (no fallback: stays UNMAPPED with a diagnostic).
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

// W-10.1.1-3, W-15.8-2: an announce is judged only in the clock domain it names, and only if its stamp could be in
// that domain. Stamped 10 s in the future (a realtime stamp sent as MONOTONIC looks like that, by decades), or in a
// clock domain that is not MONOTONIC or REALTIME_SYNCED, it is ignored before any file is looked at; the same
// announce stamped now maps.
TEST(ClientAnnounceRules, W_10_1_1_3_AnnounceInTheFutureOrInAnUnknownClockDomainIsIgnored) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(1'000'000'000, true));  // window 3 s
    const auto now = [] { return static_cast<uint64_t>(monotonic_ns()); };
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now() + 10'000'000'000)));
    AnnounceSpec realtime_ahead = AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(realtime_ns()) + 10'000'000'000);
    realtime_ahead.clock = wc::ClockDomain::REALTIME_SYNCED;
    ASSERT_TRUE(f.send(realtime_ahead));
    for (const uint8_t domain : {uint8_t{0}, uint8_t{3}, uint8_t{255}}) {
        AnnounceSpec unknown = AnnounceSpec::truthful(f.regions, now());
        unknown.clock = static_cast<wc::ClockDomain>(domain);
        ASSERT_TRUE(f.send(unknown));
    }
    // Hostile stamps at the ends of the u64 range, in both domains: ignored, with no arithmetic overflow (UBSan).
    for (const uint64_t stamp : {uint64_t{1} << 63, ~uint64_t{0}}) {
        for (const auto clock : {wc::ClockDomain::MONOTONIC, wc::ClockDomain::REALTIME_SYNCED}) {
            AnnounceSpec hostile = AnnounceSpec::truthful(f.regions, stamp);
            hostile.clock = clock;
            ASSERT_TRUE(f.send(hostile));
        }
    }
    ASSERT_TRUE(f.judged(9)) << describe(*f.cons);
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(f.cons->announces_ignored.load(), 9u) << describe(*f.cons);
    EXPECT_EQ(f.cons->announces_accepted.load(), 0u);
    EXPECT_EQ(f.cons->mapping_failures.load(), 0u);
    EXPECT_FALSE(f.cons->mapped());
    EXPECT_EQ(probe_mappings(*f.cons), 0);

    // Control: a stamp a little ahead of the consumer's clock (inside the window) and then one of now both count.
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now() + 500'000'000)));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->announces_ignored.load(), 9u);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-15.1-3, A-10: the announce carries no magic, so each announce of the mapped epoch makes the consumer re-check
// the mapped superblock. Here the ring's magic is overwritten in place after mapping; the next announce (the
// announce period is 60 s, so no liveness check runs meanwhile) unmaps, naming the rule, and the epoch stays
// abandoned (W-15.14-2): with the magic put back, a truthful announce of it is ignored.
TEST(ClientAnnounceRules, W_15_1_3_EachAnnounceOfTheMappedEpochRechecksTheMagic) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(60'000'000'000, true));
    const auto now = [] { return static_cast<uint64_t>(monotonic_ns()); };
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    ASSERT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);

    const int fd = ::open(f.regions.header_path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    const uint64_t zero = 0;
    ASSERT_EQ(::pwrite(fd, &zero, sizeof zero, 0), static_cast<ssize_t>(sizeof zero));
    ::close(fd);
    std::this_thread::sleep_for(50ms);
    EXPECT_TRUE(f.cons->mapped()) << "unmapped before any announce: something else re-checked";

    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    EXPECT_TRUE(wait_until([&] { return !f.cons->mapped(); }, 10s)) << describe(*f.cons);
    const std::string error = f.cons->last_error.get();
    EXPECT_NE(error.find("magic changed"), std::string::npos) << error;
    EXPECT_NE(error.find("W-15.1-3"), std::string::npos) << error;
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(probe_mappings(*f.cons), 0) << "the replaced regions stayed mapped";

    // Even with the magic put back, the epoch is not mapped again: a truthful announce of it is ignored.
    const int fd2 = ::open(f.regions.header_path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd2, 0);
    const uint64_t magic = shm::kMagic;
    ASSERT_EQ(::pwrite(fd2, &magic, sizeof magic, 0), static_cast<ssize_t>(sizeof magic));
    ::close(fd2);
    const uint64_t ignored = f.cons->announces_ignored.load();
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    EXPECT_TRUE(wait_until([&] { return f.cons->announces_ignored.load() == ignored + 1; }, 10s)) << describe(*f.cons);
    EXPECT_FALSE(f.cons->mapped());
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-15.14-7, W-7-7: an announce of the mapped epoch with another layout version forces a remap: the consumer
// unmaps and judges the announce as it would any other, so the unsupported version is refused (UNMAPPED, with the
// W-7-7 reason) and nothing stays mapped. The files did not change, so this is no second writer: the next truthful
// announce of the same epoch maps it again.
TEST(ClientAnnounceRules, W_15_14_7_AnotherLayoutVersionWithinTheMappedEpochForcesARemap) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(60'000'000'000, true));
    const auto now = [] { return static_cast<uint64_t>(monotonic_ns()); };
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    ASSERT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    AnnounceSpec relaid = AnnounceSpec::truthful(f.regions, now());
    relaid.layout_version = shm::kLayoutVersion + 1;
    ASSERT_TRUE(f.send(relaid));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapping_failures.load() == 1; }, 10s)) << describe(*f.cons);
    EXPECT_FALSE(f.cons->mapped());
    const std::string error = f.cons->last_error.get();
    EXPECT_NE(error.find("layout version 2"), std::string::npos) << error;
    EXPECT_NE(error.find("W-7-7"), std::string::npos) << error;
    EXPECT_EQ(probe_mappings(*f.cons), 0);

    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, now())));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 2u);
    EXPECT_EQ(probe_mappings(*f.cons), 1 + static_cast<int>(f.regions.pools.size()));
    EXPECT_EQ(f.stop(), ChildResult::ok());
}

// W-15.21a-9, W-15.21a-1: a consumer never builds a region path itself; it maps exactly the URIs an announce gives,
// whatever their names (here no canonical layout at all: cam.hdr and sub/blob-<stride>.bin).
TEST(ClientAnnounceRules, W_15_21a_9_MapsExactlyTheAnnouncedPathsWhateverTheirNames) {
    AnnounceFixture f;
    ASSERT_TRUE(f.start(1'000'000'000, true, make_oddly_named_regions));
    ASSERT_TRUE(f.send(AnnounceSpec::truthful(f.regions, static_cast<uint64_t>(monotonic_ns()))));
    EXPECT_TRUE(wait_until([&] { return f.cons->mapped(); }, 10s)) << describe(*f.cons);
    EXPECT_EQ(f.cons->mappings.load(), 1u);
    EXPECT_EQ(f.cons->mapping_failures.load(), 0u);
    EXPECT_EQ(f.cons->last_error.get(), "");
    EXPECT_EQ(probe_mappings(*f.cons), 1 + static_cast<int>(f.regions.pools.size()));
    EXPECT_EQ(f.stop(), ChildResult::ok());
}
