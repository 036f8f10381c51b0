// Creating, mapping and validating region files: WIRE_SPEC §2, §7.2, §7.4, §7.5; W-6-1, W-7-*, W-8-20, W-9-1,
// W-15.1-1, W-15.21a-3/18/19, W-15.22-13, A-15, A-16, A-33.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "shm_test_support.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/region_writer.hpp"
#include "tensorpool/shm/safe_open.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;
using test::TempDir;

namespace {

AllowedDirs allow(const std::string& dir) {
    auto a = AllowedDirs::create({dir});
    if (!a.ok()) throw std::runtime_error(a.error().message());
    return std::move(*a);
}

std::vector<unsigned char> superblock_bytes(const Superblock& sb) {
    std::array<std::uint8_t, 64> raw{};
    EXPECT_TRUE(encode_superblock(sb, std::span<std::uint8_t, 64>(raw)).ok());
    return {raw.begin(), raw.end()};
}

// A region file made of `sb` followed by zeros up to `total` bytes.
void write_region(const std::string& path, const Superblock& sb, std::size_t total) {
    auto bytes = superblock_bytes(sb);
    bytes.resize(total, 0);
    test::write_file(path, bytes);
}

// Maps `path` expecting a refusal that mentions `needle`, and checks nothing of it stayed mapped.
void expect_map_refused(const std::string& path, const AllowedDirs& a, const SuperblockExpectations& e,
                        const char* needle) {
    auto r = map_region(path, a, e);
    ASSERT_FALSE(r.ok()) << path << " was mapped";
    EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos)
        << "message '" << r.error().message() << "' does not mention '" << needle << "'";
    EXPECT_EQ(test::mappings_of(path), 0) << path << " is mapped after a refusal (W-15.21a-18)";
}

CanonicalLayout layout_in(const TempDir& dir, std::uint64_t epoch = 3) {
    auto l = make_canonical_layout(dir.path(), "default", 10000, epoch);
    if (!l.ok()) throw std::runtime_error(l.error().message());
    return *l;
}

// Restores the process umask when a test that changes it ends.
struct UmaskGuard {
    explicit UmaskGuard(mode_t m) : old(::umask(m)) {}
    ~UmaskGuard() { ::umask(old); }
    mode_t old;
};

}  // namespace

// W-15.10-1, W-15.14-5: restrictive modes whatever the umask.
TEST(RegionWriter, W_15_21a_3_CreatesTheCanonicalTreePrivately) {
    TempDir dir;
    UmaskGuard umask(0);  // the modes must not depend on the umask
    const CanonicalLayout l = layout_in(dir);
    auto epoch_dir = create_epoch_directory(l);
    ASSERT_TRUE(epoch_dir.ok()) << epoch_dir.error().message();
    EXPECT_EQ(*epoch_dir, l.epoch_dir());
    EXPECT_EQ(test::mode_of(l.user_dir()), 0700u);
    EXPECT_EQ(test::mode_of(l.user_dir() + "/default"), 0700u);
    EXPECT_EQ(test::mode_of(l.user_dir() + "/default/10000"), 0700u);
    EXPECT_EQ(test::mode_of(l.epoch_dir()), 0700u);

    auto ring = create_region(l.header_ring_path(), Superblock::header_ring(10000, 3, 8));
    ASSERT_TRUE(ring.ok()) << ring.error().message();
    EXPECT_EQ(test::mode_of(l.header_ring_path()), 0600u);
    auto pool = create_region(l.pool_path(1), Superblock::payload_pool(10000, 3, 1, 8, 64));
    ASSERT_TRUE(pool.ok()) << pool.error().message();
    EXPECT_EQ(test::mode_of(l.pool_path(1)), 0600u);
    // Reusing the tree for the next epoch is fine; only the new epoch dir is created.
    EXPECT_TRUE(create_epoch_directory(layout_in(dir, 4)).ok());
}

// W-15.10-1, W-15.14-5: group-shared files are 0660 in setgid 2770 directories.
TEST(RegionWriter, W_15_21a_19_GroupModeIsSetgid2770And0660) {
    TempDir dir;
    UmaskGuard umask(077);
    CreateOptions shared;
    shared.group_shared = true;
    const CanonicalLayout l = layout_in(dir);
    ASSERT_TRUE(create_epoch_directory(l, shared).ok());
    EXPECT_EQ(test::mode_of(l.user_dir()), 02770u);
    EXPECT_EQ(test::mode_of(l.epoch_dir()), 02770u);
    ASSERT_TRUE(create_region(l.header_ring_path(), Superblock::header_ring(10000, 3, 8), shared).ok());
    EXPECT_EQ(test::mode_of(l.header_ring_path()), 0660u);
}

TEST(RegionWriter, CreateIsExclusive) {
    TempDir dir;
    const std::string path = dir / "header.ring";
    ASSERT_TRUE(create_region(path, Superblock::header_ring(1, 1, 4)).ok());
    auto again = create_region(path, Superblock::header_ring(1, 1, 4));
    ASSERT_FALSE(again.ok());
    EXPECT_EQ(again.error().code(), Errc::refused);
    EXPECT_NE(std::string(again.error().message()).find("already exists"), std::string::npos);
}

TEST(RegionWriter, RefusesAPlantedSymlink) {
    TempDir dir;
    test::write_file(dir / "victim", {1, 2, 3});
    test::make_symlink(dir / "victim", dir / "header.ring");
    EXPECT_FALSE(create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4)).ok());
    EXPECT_EQ(test::read_file(dir / "victim"), (std::vector<unsigned char>{1, 2, 3}));  // untouched
    test::make_dir(dir / "real");
    test::make_symlink(dir / "real", dir / "linkdir");
    auto r = create_region(dir / "linkdir/header.ring", Superblock::header_ring(1, 1, 4));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.error().message()).find("symlink at component"), std::string::npos);
}

TEST(RegionWriter, W_15_21a_19_RefusesADirectoryOwnedBySomeoneElse) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a directory to another user";
    TempDir dir;
    const CanonicalLayout l = layout_in(dir);
    test::make_dir(l.user_dir());
    ASSERT_EQ(::chown(l.user_dir().c_str(), 12345, 12345), 0);
    auto r = create_epoch_directory(l);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code(), Errc::refused);
    EXPECT_NE(std::string(r.error().message()).find("owned by uid 12345"), std::string::npos) << r.error().message();
}

TEST(RegionWriter, RefusesAnInvalidSuperblock) {
    TempDir dir;
    auto r = create_region(dir / "x.pool", Superblock::payload_pool(1, 1, 1, 6, 64));
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.error().message()).find("power of two"), std::string::npos);
    EXPECT_FALSE(create_region(dir / "y.pool", Superblock::payload_pool(1, 1, 1, 4, 100)).ok());
    EXPECT_FALSE(create_region("relative.pool", Superblock::payload_pool(1, 1, 1, 4, 64)).ok());
    // Nothing half-made is left behind.
    EXPECT_NE(::access((dir / "x.pool").c_str(), F_OK), 0);
}

// W-15.22-8: the stride is written as given, not derived from the page size.
TEST(RegionWriter, W_7_1_WritesTheSuperblockLikeTheCReference) {
    TempDir dir;
    Superblock want = Superblock::header_ring(10000, 3, 8);
    want.pid = 9788;
    want.start_timestamp_ns = 1;
    want.activity_timestamp_ns = 1;
    ASSERT_TRUE(create_region(dir / "header.ring", want).ok());
    const auto bytes = test::read_file(dir / "header.ring");
    ASSERT_EQ(bytes.size(), 64u + 8 * 256);  // W-8-1: 64 + nslots * 256
    const auto c_file = test::read_file(std::string(TENSORPOOL_CONFORMANCE_SHM_DIR) + "/header.ring");
    ASSERT_GE(c_file.size(), 64u);
    EXPECT_EQ(std::memcmp(bytes.data(), c_file.data(), 64), 0) << "superblock differs from the C implementation's";
    for (std::size_t i = 64; i < bytes.size(); ++i) ASSERT_EQ(bytes[i], 0u) << "slot byte " << i << " not zero";

    Superblock pool = Superblock::payload_pool(10000, 3, 1, 8, 64);
    pool.pid = 9789;
    pool.start_timestamp_ns = 1;
    pool.activity_timestamp_ns = 1;
    ASSERT_TRUE(create_region(dir / "1.pool", pool).ok());
    const auto pool_bytes = test::read_file(dir / "1.pool");
    ASSERT_EQ(pool_bytes.size(), 64u + 8 * 64);  // W-9-1: 64 + nslots * stride
    const auto c_pool = test::read_file(std::string(TENSORPOOL_CONFORMANCE_SHM_DIR) + "/1.pool");
    EXPECT_EQ(std::memcmp(pool_bytes.data(), c_pool.data(), 64), 0) << "pool superblock differs from the C one";
}

TEST(RegionWriter, W_7_3_HeartbeatTouchesOnlyActivityTimestamp) {
    TempDir dir;
    auto ring = create_region(dir / "header.ring", Superblock::header_ring(1, 2, 4));
    ASSERT_TRUE(ring.ok());
    const auto before = test::read_file(dir / "header.ring");
    ring->set_activity_timestamp(0x0102030405060708ull);
    const auto after = test::read_file(dir / "header.ring");
    for (std::size_t i = 0; i < before.size(); ++i) {
        if (i >= 56 && i < 64) continue;
        ASSERT_EQ(before[i], after[i]) << "byte " << i << " changed";
    }
    std::uint64_t ts;
    std::memcpy(&ts, after.data() + 56, 8);
    EXPECT_EQ(ts, 0x0102030405060708ull);

    auto mapped = map_region(dir / "header.ring", allow(dir.path()), SuperblockExpectations::for_header_ring(1, 2, 4));
    ASSERT_TRUE(mapped.ok()) << mapped.error().message();
    ring->set_activity_timestamp(99);
    EXPECT_EQ(mapped->current_superblock().activity_timestamp_ns, 99u);  // W-7-4: liveness is observable
    EXPECT_TRUE(recheck_identity(mapped->superblock(), mapped->current_superblock()).ok());
}

TEST(RegionReader, MapsAValidRegionReadOnly) {
    TempDir dir;
    ASSERT_TRUE(create_region(dir / "header.ring", Superblock::header_ring(7, 1, 4)).ok());
    auto r = map_region("shm:file?path=" + (dir / "header.ring") + "|require_hugepages=false", allow(dir.path()),
                        SuperblockExpectations::for_header_ring(7, 1, 4));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->size(), 64u + 4 * 256);
    EXPECT_EQ(r->superblock().nslots, 4u);
    // Consumers map regions read-only: PROT_READ, shared ("r--s" in /proc/self/maps).
    EXPECT_EQ(test::mapping_perms(dir / "header.ring"), "r--s");
}

TEST(RegionReader, ReadOnlyMappingFaultsOnWrite) {
    TempDir dir;
    ASSERT_TRUE(create_region(dir / "header.ring", Superblock::header_ring(7, 1, 4)).ok());
    auto r = map_region(dir / "header.ring", allow(dir.path()), SuperblockExpectations::for_header_ring(7, 1, 4));
    ASSERT_TRUE(r.ok()) << r.error().message();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        // A consumer bug that writes through its view must fault, not corrupt the producer's region. Restore
        // the default action first: sanitizers install their own SIGSEGV handler, which would exit instead.
        ::signal(SIGSEGV, SIG_DFL);
        auto* p = const_cast<volatile std::byte*>(r->data() + 64);
        *p = std::byte{1};
        ::_exit(0);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status)) << "the write through the read-only mapping did not fault";
    EXPECT_EQ(WTERMSIG(status), SIGSEGV);
    EXPECT_EQ(test::read_file(dir / "header.ring")[64], 0u);
}

// W-15.13-1: refused before anything is mapped.
TEST(RegionReader, W_7_5_RefusesWrongMagicUnmapped) {
    TempDir dir;
    Superblock sb = Superblock::header_ring(1, 1, 4);
    sb.magic = 0x1122334455667788ull;
    write_region(dir / "header.ring", sb, 64 + 4 * 256);
    expect_map_refused(dir / "header.ring", allow(dir.path()), {}, "magic");
}

TEST(RegionReader, W_6_1_RefusesFilesShorterThanASuperblock) {
    TempDir dir;
    test::write_file(dir / "empty.ring", {});
    test::write_file(dir / "short.ring", std::vector<unsigned char>(63, 0));
    expect_map_refused(dir / "empty.ring", allow(dir.path()), {}, "64-byte superblock");
    expect_map_refused(dir / "short.ring", allow(dir.path()), {}, "ends after 63 bytes");
}

TEST(RegionReader, A_33_RefusesTruncatedRegionsAcceptsLargerOnes) {
    TempDir dir;
    write_region(dir / "header.ring", Superblock::header_ring(1, 1, 4), 64 + 3 * 256);
    expect_map_refused(dir / "header.ring", allow(dir.path()), {}, "needs at least 1088");
    write_region(dir / "big.ring", Superblock::header_ring(1, 1, 4), 2 * 1024 * 1024);
    auto r = map_region(dir / "big.ring", allow(dir.path()), SuperblockExpectations::for_header_ring(1, 1, 4));
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->size(), 64u + 4 * 256);  // only what the superblock describes is mapped
}

TEST(RegionReader, A_16_RefusesNslotsNotAPowerOfTwoOrZero) {
    TempDir dir;
    write_region(dir / "six.ring", Superblock::header_ring(1, 1, 6), 64 + 8 * 256);
    expect_map_refused(dir / "six.ring", allow(dir.path()), {}, "nslots is 6");
    write_region(dir / "zero.ring", Superblock::header_ring(1, 1, 0), 64 + 8 * 256);
    expect_map_refused(dir / "zero.ring", allow(dir.path()), {}, "nslots is 0");
}

TEST(RegionReader, W_15_22_9_RefusesPoolStrideNotAMultipleOf64) {
    TempDir dir;
    write_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 4, 100), 64 + 4 * 128);
    expect_map_refused(dir / "1.pool", allow(dir.path()), {}, "stride_bytes is 100");
}

// W-15.20-2: a v1.2 reader refuses another slot size.
TEST(RegionReader, A_15_RefusesRingSlotBytesOtherThan256) {
    TempDir dir;
    Superblock sb = Superblock::header_ring(1, 1, 4);
    sb.slot_bytes = 512;
    write_region(dir / "header.ring", sb, 64 + 4 * 512);
    expect_map_refused(dir / "header.ring", allow(dir.path()), {}, "slot_bytes is 512; expected 256");
}

TEST(RegionReader, W_15_1_1_RefusesWrongRegionType) {
    TempDir dir;
    write_region(dir / "1.pool", Superblock::header_ring(1, 1, 4), 64 + 4 * 256);
    expect_map_refused(dir / "1.pool", allow(dir.path()), SuperblockExpectations::for_pool(1, 1, 1, 4, 64),
                       "region_type is HEADER_RING; expected PAYLOAD_POOL");
}

TEST(RegionReader, W_7_10_RefusesWrongPoolId) {
    TempDir dir;
    write_region(dir / "1.pool", Superblock::payload_pool(1, 1, 2, 4, 64), 64 + 4 * 64);
    expect_map_refused(dir / "1.pool", allow(dir.path()), SuperblockExpectations::for_pool(1, 1, 1, 4, 64),
                       "pool_id is 2; expected 1");
}

TEST(RegionReader, W_15_1_1_RefusesAnnounceMismatches) {
    TempDir dir;
    write_region(dir / "header.ring", Superblock::header_ring(1, 5, 4), 64 + 4 * 256);
    const auto a = allow(dir.path());
    expect_map_refused(dir / "header.ring", a, SuperblockExpectations::for_header_ring(1, 6, 4), "epoch is 5");
    expect_map_refused(dir / "header.ring", a, SuperblockExpectations::for_header_ring(2, 5, 4), "stream_id is 1");
    expect_map_refused(dir / "header.ring", a, SuperblockExpectations::for_header_ring(1, 5, 8), "nslots is 4");
}

TEST(RegionReader, W_15_21a_18_RefusedPathsAreNeverMapped) {
    TempDir dir;
    test::make_dir(dir / "allowed");
    write_region(dir / "outside.ring", Superblock::header_ring(1, 1, 4), 64 + 4 * 256);
    test::make_symlink(dir / "outside.ring", dir / "allowed/header.ring");
    expect_map_refused(dir / "allowed/header.ring", allow(dir / "allowed"), {}, "outside every allowed");
    EXPECT_EQ(test::mappings_of(dir / "outside.ring"), 0);
}

// W-6-3 (offsets from the 64-byte superblock constant), W-15.21-1 (the index from the mapped ring's nslots), W-15.22-8, W-15.22-10 (stride 192 honoured as given).
TEST(RegionViews, W_9_1_SlotAddresses) {
    TempDir dir;
    ASSERT_TRUE(create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4)).ok());
    ASSERT_TRUE(create_region(dir / "2.pool", Superblock::payload_pool(1, 1, 2, 4, 192)).ok());
    const auto a = allow(dir.path());
    auto ring = map_region(dir / "header.ring", a, SuperblockExpectations::for_header_ring(1, 1, 4));
    auto pool = map_region(dir / "2.pool", a, SuperblockExpectations::for_pool(1, 1, 2, 4, 192));
    ASSERT_TRUE(ring.ok() && pool.ok());
    auto rv = HeaderRingView::over(*ring);
    auto pv = PayloadPoolView::over(*pool);
    ASSERT_TRUE(rv.ok() && pv.ok());
    EXPECT_EQ(rv->slot(3) - ring->data(), 64 + 3 * 256);
    EXPECT_EQ(rv->index_of(7), 3u);
    EXPECT_EQ(pv->payload(3) - pool->data(), 64 + 3 * 192);
    EXPECT_EQ(pv->stride_bytes(), 192u);
    EXPECT_FALSE(HeaderRingView::over(*pool).ok());
    EXPECT_FALSE(PayloadPoolView::over(*ring).ok());
}

TEST(RegionViews, PublishThenConsumeAFrame) {
    TempDir dir;
    auto wring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4));
    auto wpool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 4, 64));
    ASSERT_TRUE(wring.ok() && wpool.ok());
    FrameDescription f;
    f.seq = 6;
    f.values_len_bytes = 16;
    f.pool_id = 1;
    f.tensor.dtype = Dtype::FLOAT32;
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 1;
    f.tensor.dims = {4};
    const float values[4] = {1.f, 2.f, 3.f, 4.f};
    ASSERT_TRUE(publish_frame(*wring, *wpool, f, std::as_bytes(std::span(values))).ok());

    const auto a = allow(dir.path());
    auto ring = map_region(dir / "header.ring", a, SuperblockExpectations::for_header_ring(1, 1, 4));
    auto pool = map_region(dir / "1.pool", a, SuperblockExpectations::for_pool(1, 1, 1, 4, 64));
    ASSERT_TRUE(ring.ok() && pool.ok());
    auto rv = HeaderRingView::over(*ring);
    auto pv = PayloadPoolView::over(*pool);
    ReadTicket t;
    ASSERT_EQ(rv->begin_read(6, t), ReadBegin::ok);
    const PoolInfo pools[] = {{pv->pool_id(), pv->stride_bytes()}};
    auto c = validate_slot(t.header(), rv->index_of(6), pools);
    ASSERT_TRUE(c.ok()) << c.error().message();
    float got[4];
    std::memcpy(got, pv->payload(c->payload_slot), sizeof got);
    ASSERT_TRUE(t.still_valid());
    EXPECT_EQ(std::memcmp(got, values, sizeof got), 0);
    EXPECT_EQ(rv->begin_read(2, t), ReadBegin::overwritten);  // slot 2 now holds the newer seq 6
    EXPECT_EQ(rv->begin_read(10, t), ReadBegin::stale);
}

TEST(RegionViews, W_8_20_EmptyFrameIsCommitted) {
    TempDir dir;
    auto wring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4));
    auto wpool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 4, 64));
    ASSERT_TRUE(wring.ok() && wpool.ok());
    FrameDescription f;
    f.seq = 1;
    f.pool_id = 1;
    f.tensor.dtype = Dtype::UINT8;
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 1;
    ASSERT_TRUE(publish_frame(*wring, *wpool, f, {}).ok());
    ReadTicket t;
    ASSERT_EQ(t.begin(wring->header_slot(1), 1), ReadBegin::ok);
    EXPECT_EQ(t.commit_word(), 3u);
}

TEST(RegionViews, PublishRefusesAPayloadLargerThanThePool) {
    TempDir dir;
    auto wring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4));
    auto wpool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 4, 64));
    ASSERT_TRUE(wring.ok() && wpool.ok());
    FrameDescription f;
    f.seq = 1;
    f.pool_id = 1;
    f.values_len_bytes = 65;
    std::vector<std::byte> big(65);
    EXPECT_FALSE(publish_frame(*wring, *wpool, f, big).ok());
    ReadTicket t;
    EXPECT_EQ(t.begin_any(wring->header_slot(1)), ReadBegin::not_committed);  // the slot was never touched
}
