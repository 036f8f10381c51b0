// The seqlock under a real race: a writer *process* overwrites a 4-slot ring with 4 KiB payloads as fast as it
// can while reader threads in this process read the newest frame's payload IN PLACE and then ask
// ReadTicket::still_valid(). W-8-23..27, W-8-31, W-15.3-2, §3.3 (zero-copy variant, A-8).
//
// Every payload is [seq, seq*K1 + k*K2 ..., sum of the words before]: any mix of two frames (or a payload that
// does not belong to the header's seq) fails the check, so "torn" is detected exactly.
//   - with still_valid(): no torn payload may ever be accepted, and many reads must have been rejected (so the
//     test really raced);
//   - negative control, same reads without still_valid(): torn payloads must be observed (so the test can see
//     tearing at all).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <optional>
#include <thread>
#include <vector>

#include "shm_test_support.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/region_writer.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;
using Clock = std::chrono::steady_clock;

#include "support/sanitizers.hpp"

namespace {

#ifdef TP_UNDER_ASAN
constexpr std::uint64_t kValidatedReads = 1'000'000;
constexpr std::uint64_t kMinRejected = 100;
constexpr std::uint64_t kControlReads = 500'000;
#else
constexpr std::uint64_t kValidatedReads = 10'000'000;
constexpr std::uint64_t kMinRejected = 1'000;
constexpr std::uint64_t kControlReads = 2'000'000;
#endif
constexpr auto kValidatedDeadline = std::chrono::seconds(50);
constexpr auto kControlDeadline = std::chrono::seconds(10);

constexpr std::uint32_t kNslots = 4;
constexpr std::uint32_t kPayloadBytes = 4096;
constexpr std::size_t kWords = kPayloadBytes / 8;
constexpr std::uint64_t kK1 = 0x9E3779B97F4A7C15ull;  // odd: seq differences never vanish mod 2^64
constexpr std::uint64_t kK2 = 0xC2B2AE3D27D4EB4Full;

// Lives in a MAP_SHARED anonymous page, shared by the writer process and the readers.
struct Shared {
    std::atomic<std::uint64_t> latest{0};  // newest committed seq: stands in for FrameDescriptor
    std::atomic<std::uint32_t> stop{0};
    std::atomic<std::uint64_t> frames{0};
};
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

FrameDescription describe(std::uint64_t seq) {
    FrameDescription f;
    f.seq = seq;
    f.values_len_bytes = kPayloadBytes;
    f.pool_id = 1;
    f.timestamp_ns = seq;
    f.tensor.dtype = Dtype::UINT64;
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 1;
    f.tensor.dims = {static_cast<std::int32_t>(kWords)};
    return f;
}

[[noreturn]] void run_writer(const WritableRegion& ring, const WritableRegion& pool, Shared* shared) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that failed half-way
    SlotImage image;
    std::uint64_t seq = 1;
    for (; shared->stop.load(std::memory_order_relaxed) == 0; ++seq) {
        const std::uint32_t index = header_index(seq, kNslots);
        if (!encode_slot_image(describe(seq), kNslots, image)) ::_exit(3);
        std::byte* slot = ring.header_slot(index);
        auto* words = reinterpret_cast<std::uint64_t*>(pool.payload_slot(index));
        seqlock_begin_write(slot, seq);
        std::uint64_t sum = 0;
        words[0] = seq;
        sum += seq;
        for (std::size_t k = 1; k + 1 < kWords; ++k) {
            const std::uint64_t v = seq * kK1 + k * kK2;
            words[k] = v;
            sum += v;
        }
        words[kWords - 1] = sum;
        seqlock_store_header(slot, image);
        seqlock_commit(slot, seq);
        shared->latest.store(seq, std::memory_order_release);
    }
    shared->frames.store(seq - 1, std::memory_order_relaxed);
    ::_exit(0);
}

struct Stats {
    std::uint64_t attempts = 0;        // newest seq picked
    std::uint64_t begin_rejected = 0;  // begin() refused: slot in progress or already overwritten
    std::uint64_t header_rejected = 0; // the header copy failed validation
    std::uint64_t reads = 0;           // payloads read in place
    std::uint64_t accepted = 0;
    std::uint64_t rejected_late = 0;   // still_valid() false (drops_late)
    std::uint64_t torn_accepted = 0;
    std::uint64_t torn_rejected = 0;

    void add(const Stats& o) {
        attempts += o.attempts;
        begin_rejected += o.begin_rejected;
        header_rejected += o.header_rejected;
        reads += o.reads;
        accepted += o.accepted;
        rejected_late += o.rejected_late;
        torn_accepted += o.torn_accepted;
        torn_rejected += o.torn_rejected;
    }
};

// One consumer: newest seq, begin(), validate the copy, read the payload in place, then (if asked) still_valid().
// Runs until `target` reads are done and `min_evidence` races were seen (late rejections when revalidating,
// torn payloads in the negative control). How often the writer laps a reader depends on how the scheduler
// places the two, so the loop keeps racing until it has that proof, within the deadline.
Stats read_loop(const HeaderRingView& ring, const PayloadPoolView& pool, const Shared* shared, std::uint64_t target,
                std::uint64_t min_evidence, bool revalidate, Clock::time_point deadline) {
    const PoolInfo pools[] = {{pool.pool_id(), pool.stride_bytes()}};
    Stats s;
    ReadTicket ticket;
    while (s.reads < target || (revalidate ? s.rejected_late : s.torn_accepted) < min_evidence) {
        if ((s.attempts & 1023) == 0 && Clock::now() > deadline) break;
        ++s.attempts;
        const std::uint64_t seq = shared->latest.load(std::memory_order_acquire);
        if (seq == 0) continue;
        if (ring.begin_read(seq, ticket) != ReadBegin::ok) {
            ++s.begin_rejected;
            continue;
        }
        auto header = validate_slot(ticket.header(), ring.index_of(seq), pools);
        if (!header) {
            ++s.header_rejected;
            continue;
        }
        // Zero-copy: the application reads the mapped payload directly.
        const auto* words = reinterpret_cast<const volatile std::uint64_t*>(pool.payload(header->payload_slot));
        std::uint64_t sum = 0;
        for (std::size_t k = 0; k + 1 < kWords; ++k) sum += words[k];
        const bool torn = words[0] != seq || words[kWords - 1] != sum;
        ++s.reads;
        if (!revalidate || ticket.still_valid()) {
            ++s.accepted;
            if (torn) ++s.torn_accepted;
        } else {
            ++s.rejected_late;
            if (torn) ++s.torn_rejected;
        }
    }
    return s;
}

Stats run_readers(const HeaderRingView& ring, const PayloadPoolView& pool, const Shared* shared,
                  std::uint64_t total, std::uint64_t min_evidence, bool revalidate, Clock::duration budget) {
    const unsigned hw = std::thread::hardware_concurrency();
    const unsigned threads = hw > 2 ? std::min(hw - 1, 3u) : 1u;  // the writer process needs a core too
    const auto deadline = Clock::now() + budget;
    std::vector<Stats> per(threads);
    std::vector<std::thread> pool_threads;
    for (unsigned t = 0; t < threads; ++t) {
        pool_threads.emplace_back([&, t] {
            per[t] = read_loop(ring, pool, shared, (total + threads - 1) / threads,
                               (min_evidence + threads - 1) / threads, revalidate, deadline);
        });
    }
    Stats all;
    for (unsigned t = 0; t < threads; ++t) {
        pool_threads[t].join();
        all.add(per[t]);
    }
    return all;
}

void report(const char* what, const Stats& s, double seconds) {
    std::printf("[ seqlock  ] %s: %.1f s, %llu attempts, %llu begin-rejected, %llu header-rejected, %llu payload reads, "
                "%llu accepted, %llu rejected by still_valid, %llu torn accepted, %llu torn rejected\n",
                what, seconds, static_cast<unsigned long long>(s.attempts),
                static_cast<unsigned long long>(s.begin_rejected), static_cast<unsigned long long>(s.header_rejected),
                static_cast<unsigned long long>(s.reads), static_cast<unsigned long long>(s.accepted),
                static_cast<unsigned long long>(s.rejected_late), static_cast<unsigned long long>(s.torn_accepted),
                static_cast<unsigned long long>(s.torn_rejected));
}

}  // namespace

TEST(SeqlockConcurrency, W_8_27_NoTornPayloadIsEverAcceptedAcrossProcesses) {
    test::TempDir dir("/dev/shm");
    auto wring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, kNslots));
    auto wpool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, kNslots, kPayloadBytes));
    ASSERT_TRUE(wring.ok() && wpool.ok());

    void* page = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(page, MAP_FAILED);
    auto* shared = new (page) Shared();

    const pid_t writer = ::fork();
    ASSERT_GE(writer, 0);
    if (writer == 0) run_writer(*wring, *wpool, shared);

    // From here on this process holds only read-only mappings of the regions, like a real consumer.
    std::optional<WritableRegion> drop_ring(std::move(*wring)), drop_pool(std::move(*wpool));
    drop_ring.reset();
    drop_pool.reset();
    auto allowed = AllowedDirs::create({dir.path()});
    ASSERT_TRUE(allowed.ok());
    auto ring = map_region(dir / "header.ring", *allowed, SuperblockExpectations::for_header_ring(1, 1, kNslots));
    auto pool = map_region(dir / "1.pool", *allowed,
                           SuperblockExpectations::for_pool(1, 1, 1, kNslots, kPayloadBytes));
    ASSERT_TRUE(ring.ok() && pool.ok());
    auto rv = HeaderRingView::over(*ring);
    auto pv = PayloadPoolView::over(*pool);
    ASSERT_TRUE(rv.ok() && pv.ok());
    while (shared->latest.load(std::memory_order_acquire) == 0) std::this_thread::yield();

    auto t0 = Clock::now();
    const Stats validated = run_readers(*rv, *pv, shared, kValidatedReads, kMinRejected, true, kValidatedDeadline);
    const double validated_s = std::chrono::duration<double>(Clock::now() - t0).count();
    t0 = Clock::now();
    const Stats control = run_readers(*rv, *pv, shared, kControlReads, 1, false, kControlDeadline);
    const double control_s = std::chrono::duration<double>(Clock::now() - t0).count();

    shared->stop.store(1, std::memory_order_relaxed);
    int status = 0;
    ASSERT_EQ(::waitpid(writer, &status, 0), writer);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer process failed";
    std::printf("[ seqlock  ] writer published %llu frames\n",
                static_cast<unsigned long long>(shared->frames.load()));
    report("with still_valid()", validated, validated_s);
    report("negative control (no still_valid())", control, control_s);
    RecordProperty("validated_reads", std::to_string(validated.reads));
    RecordProperty("validated_rejected_late", std::to_string(validated.rejected_late));
    RecordProperty("validated_torn_accepted", std::to_string(validated.torn_accepted));
    RecordProperty("control_torn_seen", std::to_string(control.torn_accepted));
    ::munmap(page, sizeof(Shared));

    EXPECT_EQ(validated.torn_accepted, 0u) << "a torn payload passed still_valid()";
    EXPECT_GE(validated.reads, kValidatedReads) << "not enough reads within the time budget";
    EXPECT_GE(validated.rejected_late, kMinRejected) << "too few late rejections: the test did not really race";
    EXPECT_GT(validated.torn_rejected, 0u) << "no torn payload was ever caught: the test did not really race";
    EXPECT_GT(control.torn_accepted, 0u) << "negative control saw no torn payload: the test cannot detect tearing";
}
