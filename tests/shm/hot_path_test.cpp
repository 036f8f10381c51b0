// DESIGN "Hot-path rules": publishing and receiving a frame allocate nothing, including the paths that reject a
// frame with an Error. Measured with a counting global operator new for this test binary.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/allocation_counter.hpp"
#include "shm_test_support.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/region_writer.hpp"


using namespace tensorpool;
using namespace tensorpool::shm;

TEST(HotPath, PublishAndReceiveAllocateNothing) {
    shm::test::TempDir dir("/dev/shm");
    auto wring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, 8));
    auto wpool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 8, 256));
    ASSERT_TRUE(wring.ok() && wpool.ok());
    auto allowed = AllowedDirs::create({dir.path()});
    ASSERT_TRUE(allowed.ok());
    auto ring = map_region(dir / "header.ring", *allowed, SuperblockExpectations::for_header_ring(1, 1, 8));
    auto pool = map_region(dir / "1.pool", *allowed, SuperblockExpectations::for_pool(1, 1, 1, 8, 256));
    ASSERT_TRUE(ring.ok() && pool.ok());
    auto rv = HeaderRingView::over(*ring);
    auto pv = PayloadPoolView::over(*pool);
    ASSERT_TRUE(rv.ok() && pv.ok());
    const PoolInfo pools[] = {{1, 256}};
    std::byte payload[128]{};
    FrameDescription f;
    f.pool_id = 1;
    f.values_len_bytes = sizeof payload;
    f.tensor.dtype = Dtype::UINT8;
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 1;
    f.tensor.dims = {128};

    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;
    std::uint64_t sum = 0;
    const std::uint64_t before = tensorpool::test::allocations();
    for (std::uint64_t seq = 1; seq <= 1000; ++seq) {
        f.seq = seq;
        payload[0] = static_cast<std::byte>(seq);
        if (!publish_frame(*wring, *wpool, f, payload)) continue;
        ReadTicket t;
        if (rv->begin_read(seq, t) != ReadBegin::ok) continue;
        auto c = validate_slot(t.header(), rv->index_of(seq), pools);
        if (c) sum += static_cast<std::uint64_t>(pv->payload(c->payload_slot)[0]);
        if (c && t.still_valid()) ++accepted;
        // The drop paths build an Error; that must not allocate either.
        if (rv->begin_read(seq + 8, t) != ReadBegin::ok) ++rejected;
        const PoolInfo none[] = {{9, 64}};
        if (!validate_slot(t.header(), 0, none)) ++rejected;
    }
    const std::uint64_t after = tensorpool::test::allocations();
    EXPECT_EQ(after - before, 0u) << "the publish/receive path allocated";
    EXPECT_EQ(accepted, 1000u);
    EXPECT_EQ(rejected, 2000u);
    EXPECT_GT(sum, 0u);
}
