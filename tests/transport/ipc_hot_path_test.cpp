// DESIGN "Hot-path rules" for the ipc bus: offer(), try_claim() and poll() allocate nothing once the
// publication and subscription exist. Counted with a replacement global operator new for this binary only.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "support/allocation_counter.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"


namespace tensorpool::transport {
namespace {

TEST(IpcHotPath, OfferClaimAndPollAllocateNothing) {
    test::BusRoot root;
    TransportHub hub(root.options(std::size_t{1} << 20));
    auto sub = hub.add_subscription("ipc:hot", 5);
    auto pub = hub.add_publication("ipc:hot", 5);
    ASSERT_TRUE(sub.ok() && pub.ok());
    uint8_t msg[200] = {};
    uint64_t received = 0;
    auto handler = [&received](std::span<const uint8_t>, const MessageInfo&) { ++received; };
    (*sub)->poll(handler, 10);  // first poll notices the publisher (slow path, may map files)

    const uint64_t before = tensorpool::test::allocations();
    for (int round = 0; round < 20'000; ++round) {  // ~4 MB through a 1 MiB ring: wraps and padding included
        msg[0] = static_cast<uint8_t>(round);
        ASSERT_TRUE((*pub)->offer(std::span<const uint8_t>(msg, 20 + round % 180)).ok());
        BufferClaim claim;
        ASSERT_TRUE((*pub)->try_claim(64, claim).ok());
        if (round % 2 == 0) claim.commit(); else claim.abort();
        (*sub)->poll(handler, 4);
    }
    while ((*sub)->poll(handler, 100) > 0) {
    }
    EXPECT_EQ(tensorpool::test::allocations() - before, 0u) << "allocations on the publish/receive path";
    EXPECT_EQ(received, 30'000u);
    EXPECT_EQ((*sub)->lost_messages(), 0u);
}

}  // namespace
}  // namespace tensorpool::transport
