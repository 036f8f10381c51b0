// The producer's metadata reaches the consumer over the metadata stream, and frames carry the meta_version of
// the attribute set that describes them (W-10.3.1-1, W-10.3.2-1, W-10.3.2-2, W-10.3.2-3). The producer runs in
// its own process.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::client {
namespace {

TEST(ClientMetadata, ConsumerSeesTheAttributeSetOfEachFramesMetaVersion) {
    test::BusRoot bus;
    char tmpl[] = "/dev/shm/tp-meta-regions-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string regions = tmpl;
    test::Barrier consumer_ready(1), done(1);

    pid_t producer = test::fork_child([&] {
        transport::TransportHub hub(bus.options());
        ProducerConfig pc;
        pc.shm_base_dir = regions;
        pc.announce_period_ns = 50'000'000;
        pc.pools = {PoolConfig{1, 64}};
        auto p = Producer::create(hub, pc);
        if (!p) return test::child_fail(p.error().message());
        if (!(*p)->metadata().set_name("cam0") || !(*p)->metadata().set_attributes({{"camera_serial", "text/plain", {'4', '2'}}})) {
            return test::child_fail("set metadata");
        }
        consumer_ready.wait(20);
        TensorShape shape;
        shape.dtype = shm::Dtype::UINT8;
        shape.major_order = shm::MajorOrder::ROW;
        shape.ndims = 1;
        shape.dims[0] = 8;
        const std::byte payload[8]{};
        const int64_t deadline = monotonic_ns() + 20'000'000'000;
        while (!done.wait(0) && monotonic_ns() < deadline) {
            (*p)->do_work(monotonic_ns());
            (void)(*p)->offer(shape, payload);
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
        return 0;
    });

    transport::TransportHub hub(bus.options());
    ConsumerConfig cc;
    cc.allowed_dirs = {regions};
    cc.announce_period_ns = 50'000'000;
    auto c = Consumer::create(hub, cc);
    ASSERT_TRUE(c.ok()) << c.error().message();
    consumer_ready.arrive();
    bool described = false;
    std::string serial;
    auto on_frame = [&](const FrameView& f) {
        const AttributeSet* set = (*c)->metadata().attributes_for(f.meta_version());
        if (set == nullptr) return;  // the DataSourceMeta for this version has not arrived yet
        if (const MetadataAttribute* a = set->find("camera_serial")) {
            serial.assign(a->value.begin(), a->value.end());
            described = true;
        }
    };
    const int64_t deadline = monotonic_ns() + 20'000'000'000;
    while (!described && monotonic_ns() < deadline) {
        (*c)->do_work(monotonic_ns());
        (*c)->poll_frames(on_frame, 16);
    }
    done.arrive();
    EXPECT_EQ(test::wait_child(producer, 20), test::ChildResult::ok());
    EXPECT_TRUE(described) << "no frame could be matched to its attribute set";
    EXPECT_EQ(serial, "42");
    ASSERT_TRUE((*c)->metadata().source().has_value());
    EXPECT_EQ((*c)->metadata().source()->name, "cam0");
    std::error_code ec;
    std::filesystem::remove_all(regions, ec);
}

}  // namespace
}  // namespace tensorpool::client
