// Issue 4 / DESIGN "Hot-path rules": after start-up, publishing (offer and claim/commit) and receiving
// (poll_frames, the FrameView, still_valid, copy_to) allocate nothing, and neither do the agents' periodic
// do_work() calls. Counted with a replacement global operator new (its own test binary).
#include "support/allocation_counter.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <array>
#include <filesystem>
#include <string>

#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::client {
namespace {

TEST(ClientHotPath, PublishAndReceiveAllocateNothingAfterStartUp) {
    test::BusRoot bus;
    char tmpl[] = "/dev/shm/tp-hot-regions-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string regions = tmpl;
    transport::TransportHub hub(bus.options());
    ProducerConfig pc;
    pc.shm_base_dir = regions;
    pc.header_nslots = 64;
    pc.pools = {PoolConfig{1, 256}, PoolConfig{2, 4096}};
    pc.announce_period_ns = 1'000'000;  // announces inside the measured loop too
    auto p = Producer::create(hub, pc);
    ASSERT_TRUE(p.ok()) << p.error().message();
    ConsumerConfig cc;
    cc.allowed_dirs = {regions};
    cc.announce_period_ns = 1'000'000;
    cc.hello_period_ns = 1'000'000;
    cc.qos_period_ns = 1'000'000;
    cc.supports_progress = true;  // FrameProgress on the publish and receive paths too
    auto c = Consumer::create(hub, cc);
    ASSERT_TRUE(c.ok()) << c.error().message();

    TensorShape shape;
    shape.dtype = shm::Dtype::UINT8;
    shape.major_order = shm::MajorOrder::ROW;
    shape.ndims = 1;
    std::array<std::byte, 4096> payload{};
    std::array<std::byte, 4096> copy{};
    uint64_t received = 0, valid = 0;
    auto on_frame = [&](const FrameView& f) {
        ++received;
        if (f.copy_to(copy).ok() && f.still_valid()) ++valid;
    };
    // Start-up: map the regions, meet every transport image once.
    const int64_t deadline = monotonic_ns() + 10'000'000'000;
    while (((*c)->state() != MappingState::mapped || !(*p)->consumers().progress().enabled) && monotonic_ns() < deadline) {
        (*p)->do_work(monotonic_ns());
        (*c)->do_work(monotonic_ns());
    }
    ASSERT_EQ((*c)->state(), MappingState::mapped);
    uint64_t progress_reports = 0;
    auto on_progress = [&](const ProgressView& v) { progress_reports += v.still_valid() ? 1 : 0; };
    shape.dims[0] = 8;
    (void)(*p)->offer(shape, std::span(payload.data(), 8));
    (*c)->poll_frames(on_frame, 8);

    const uint64_t before = test::allocations();
    for (int i = 0; i < 5000; ++i) {
        const std::size_t n = i % 3 == 0 ? 3000 : 100;
        shape.dims[0] = static_cast<int32_t>(n);
        if (i % 4 == 0) {
            ASSERT_TRUE((*p)->offer(shape, std::span(payload.data(), n)).committed());
        } else if (i % 4 == 2) {  // a shaped claim with progress reports
            FrameClaim claim;
            ASSERT_TRUE((*p)->try_claim(shape, static_cast<uint32_t>(n), claim).committed());
            ASSERT_TRUE(claim.progress(n / 2));
            ASSERT_TRUE(claim.progress(n));
            ASSERT_TRUE(claim.commit().committed());
        } else {
            FrameClaim claim;
            ASSERT_TRUE((*p)->try_claim(static_cast<uint32_t>(n), claim).committed());
            claim.payload()[0] = std::byte{1};
            ASSERT_TRUE(claim.commit(shape).committed());
        }
        (*c)->poll_progress(on_progress, 8);  // before the frames: progress of a delivered frame is ignored
        (*c)->poll_frames(on_frame, 8);
        if (i % 50 == 0) {
            (*p)->do_work(monotonic_ns());
            (*c)->do_work(monotonic_ns());
        }
    }
    const uint64_t allocated = test::allocations() - before;
    EXPECT_EQ(allocated, 0u) << "allocations on the publish/receive path";
    EXPECT_GE(received, 5000u);
    EXPECT_EQ(valid, received);
    EXPECT_GT(progress_reports, 1000u);  // STARTED and COMPLETE of each shaped claim at least
    std::error_code ec;
    std::filesystem::remove_all(regions, ec);
}

}  // namespace
}  // namespace tensorpool::client
