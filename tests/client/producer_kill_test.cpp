// The producer is SIGKILLed at random points, over and over, while three consumer processes read every frame in
// place and verify its payload: no torn or misattributed frame may ever be accepted, and every consumer follows
// each restarted producer to its new epoch.
//
// Requirements: W-8-23..27, W-8-31, W-15.21-2, -5 (a frame counts only after a stable committed word, and the
// payload only after still_valid()), W-15.13-2 (heavy overwrite never lets a torn frame through), W-15.4-1,
// W-15.2-3, W-15.13-3, -4, W-10.1.1-5, -7 (remap to each new epoch), W-15.21-7, -8, W-15.14-4 (a crashed producer's
// leftovers), §6.1/§6.2; the ipc bus's "a publisher killed mid-write wedges nobody" (DESIGN.md).
#include <gtest/gtest.h>

#include <cinttypes>
#include <cstdio>
#include <random>

#include "client_test_support.hpp"
#include "tensorpool/shm/layout.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;

namespace {

#ifdef TP_UNDER_ASAN
constexpr int kKills = 50;
#else
constexpr int kKills = 100;
#endif
constexpr int kConsumers = 3;
constexpr uint32_t kNslots = 8;  // a tiny ring: the producer laps the consumers all the time

// True if the dead producer's header ring holds a slot left IN-PROGRESS (it died between the IN-PROGRESS store
// and the commit of a frame, or with a claim open).
bool died_mid_write(const std::string& header_uri, const std::string& base) {
    auto allowed = shm::AllowedDirs::create({std::string_view(base)});
    if (!allowed) return false;
    auto region = shm::map_region(header_uri, *allowed, shm::SuperblockExpectations::any());
    if (!region) return false;
    auto ring = shm::HeaderRingView::over(*region);
    if (!ring) return false;
    for (uint32_t i = 0; i < ring->nslots(); ++i) {
        uint64_t word;
        std::memcpy(&word, ring->slot(i), 8);  // the writer is dead: nothing races this read
        if (word != 0 && (word & 1u) == 0) return true;
    }
    return false;
}

// Removes every epoch directory of the test stream (the dead producers' leftovers: SIGKILL skips the cleanup).
void remove_epoch_dirs(const std::string& base) {
    auto user = shm::effective_user_name();
    if (!user) return;
    const std::filesystem::path stream_dir =
        std::filesystem::path(base) / ("tensorpool-" + *user) / "clienttest" / "10000";
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(stream_dir, ec)) std::filesystem::remove_all(e.path(), ec);
}

}  // namespace

TEST(ClientProducerKill, ProducerSigkilledAtRandomPointsNeverYieldsABadFrameAndConsumersFollowEachEpoch) {
    const auto started = Clock::now();
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<std::array<ConsumerShared, kConsumers>> cons;
    Processes procs;

    std::vector<pid_t> consumers;
    for (int i = 0; i < kConsumers; ++i) {
        ConsumerChild cc(bus.options(), test_consumer_config(shm_dir.path()));
        cc.validate_twice = i == 1;  // one of them asks still_valid() before and after reading the payload
        ConsumerShared& sh = (*cons)[i];
        consumers.push_back(procs.start([&] { return consumer_main(cc, sh); }));
    }
    ASSERT_TRUE(wait_until([&] {
        for (const auto& c : *cons) {
            if (c.ready.load() != 1) return false;
        }
        return true;
    }, 10s));

    const uint64_t seed = std::random_device{}();
    std::mt19937_64 rng(seed);
    SCOPED_TRACE("seed " + std::to_string(seed));
    std::uniform_int_distribution<int> late_delay_us(0, 20'000);
    std::uniform_int_distribution<int> early_delay_us(0, 3'000);

    int late_kills = 0;
    int early_kills = 0;
    int mid_write = 0;
    for (int k = 0; k < kKills; ++k) {
        SharedBox<ProducerShared> prod;
        ProducerChild pc(bus.options(), test_producer_config(shm_dir.path(), kNslots));
        pc.continuous = true;
        pc.burst = 16;
        pc.pace_us = 200;
        const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
        // Every tenth producer dies young: while creating its regions, registering on the bus or announcing.
        const bool early = k % 10 == 9;
        if (early) {
            std::this_thread::sleep_for(std::chrono::microseconds(early_delay_us(rng)));
        } else {
            const bool followed = wait_until([&] {
                if (prod->ready.load() != 1) return false;
                for (const auto& c : *cons) {
                    if (c.last_good_epoch.load() != prod->epoch.load()) return false;
                }
                return true;
            }, 20s);
            ASSERT_TRUE(followed) << "kill " << k << ": not every consumer received a frame of epoch "
                                  << prod->epoch.load() << "\n" << describe((*cons)[0]) << "\n"
                                  << describe((*cons)[1]) << "\n" << describe((*cons)[2]) << "\n" << describe(*prod);
            std::this_thread::sleep_for(std::chrono::microseconds(late_delay_us(rng)));
        }
        ASSERT_EQ(procs.kill(producer), ChildResult::killed(SIGKILL)) << describe(*prod);
        EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
        (early ? early_kills : late_kills)++;
        if (prod->ready.load() == 1 && died_mid_write(prod->header_uri.get(), shm_dir.path())) ++mid_write;
        remove_epoch_dirs(shm_dir.path());
    }

    for (auto& c : *cons) c.stop.store(1);
    for (pid_t pid : consumers) EXPECT_EQ(procs.wait(pid, 30), ChildResult::ok());
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();

    uint64_t good = 0, torn = 0, torn_bad = 0, bad = 0, remaps = 0;
    for (int i = 0; i < kConsumers; ++i) {
        const ConsumerShared& c = (*cons)[i];
        SCOPED_TRACE("consumer " + std::to_string(i) + " " + describe(c));
        EXPECT_EQ(c.bad(), 0u) << "first bad seq " << c.first_bad_seq.load();
        EXPECT_EQ(c.old_epoch.load(), 0u);
        EXPECT_GT(c.good.load(), 0u);
        // Every frame handed over was either proven good by still_valid() or counted torn (and late).
        EXPECT_EQ(c.frames_accepted.load(), c.good.load() + c.torn.load());
        EXPECT_EQ(c.torn_detected.load(), c.torn.load());
        EXPECT_GE(c.drops_late.load(), c.torn.load());
        // A header copied while the producer overwrote it is a late drop, never a malformed one.
        EXPECT_EQ(c.drops_invalid.load(), 0u);
        // Each producer that lived to publish was mapped once; the young ones at most once each.
        EXPECT_GE(c.mappings.load(), static_cast<uint64_t>(late_kills));
        EXPECT_LE(c.mappings.load(), static_cast<uint64_t>(kKills));
        EXPECT_LE(c.mapping_failures.load(), static_cast<uint64_t>(early_kills));
        good += c.good.load();
        torn += c.torn.load();
        torn_bad += c.torn_bad.load();
        bad += c.bad();
        remaps += c.mappings.load();
    }
    std::printf("[ figures  ] %d kills (%d after consumers followed, %d young, %d mid-write), %.1f s\n", kKills,
                late_kills, early_kills, mid_write, seconds);
    std::printf("[ figures  ] %" PRIu64 " frames accepted and verified, %" PRIu64 " bad frames accepted, %" PRIu64
                " torn reads rejected by still_valid() (%" PRIu64 " of them visibly wrong), %" PRIu64
                " mappings over %d consumers\n",
                good, bad, torn, torn_bad, remaps, kConsumers);
    for (int i = 0; i < kConsumers; ++i) std::printf("[ consumer ] %d %s\n", i, describe((*cons)[i]).c_str());
    RecordProperty("kills", kKills);
    RecordProperty("mid_write_kills", mid_write);
    RecordProperty("frames_verified", static_cast<int>(good));
    RecordProperty("bad_frames", static_cast<int>(bad));
    EXPECT_EQ(late_kills + early_kills, kKills);
}
