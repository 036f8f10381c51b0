// Channel URIs select their backend explicitly; a malformed URI or a backend that was not built is an error
// naming the URI.
#include <gtest/gtest.h>

#include <string>

#include "../../src/transport/ipc/ipc_channel.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::transport {
namespace {

TEST(TransportHub, ChannelSchemeSelectsTheBackend) {
    EXPECT_EQ(*backend_of("ipc:bus"), "ipc");
    EXPECT_EQ(*backend_of("aeron:ipc?term-length=4m"), "aeron");
    EXPECT_EQ(*backend_of("aeron:udp?endpoint=127.0.0.1:40123"), "aeron");
    auto bad = backend_of("udp://127.0.0.1:1");
    ASSERT_FALSE(bad.ok());
    EXPECT_NE(std::string(bad.error().message()).find("udp://127.0.0.1:1"), std::string::npos);
}

TEST(TransportHub, AskingForABackendThatWasNotBuiltNamesTheUri) {
    if (backend_built("aeron")) GTEST_SKIP() << "the aeron backend is built in this configuration";
    test::BusRoot root;
    TransportHub hub(root.options());
    auto pub = hub.add_publication("aeron:ipc?term-length=4m", 1000);
    ASSERT_FALSE(pub.ok());
    const std::string msg = pub.error().message();
    EXPECT_NE(msg.find("aeron:ipc?term-length=4m"), std::string::npos) << msg;
    EXPECT_NE(msg.find("not built"), std::string::npos) << msg;
}

TEST(TransportHub, MalformedIpcChannelsAreRejected) {
    for (const char* c : {"ipc:", "ipc:a/b", "ipc:..", "ipc:x?term-length=", "ipc:x?term-length=12q",
                          "ipc:x?foo=1", "ipc:x?term-length=1m|term-length=2m", "ipc:x?prefault=yes"}) {
        auto r = ipc::parse_ipc_channel(c);
        EXPECT_FALSE(r.ok()) << c;
        if (!r.ok()) {
            EXPECT_NE(std::string(r.error().message()).find(c), std::string::npos) << r.error().message();
        }
    }
    auto ok = ipc::parse_ipc_channel("ipc:cam-0.main?term-length=16m|prefault=false");
    ASSERT_TRUE(ok.ok()) << ok.error().message();
    EXPECT_EQ(ok->bus, "cam-0.main");
    EXPECT_EQ(ok->term_bytes, std::size_t{16} << 20);
    EXPECT_FALSE(ok->prefault);
    // By default a publisher faults its whole log in at creation, not a page at a time in its first lap.
    auto plain = ipc::parse_ipc_channel("ipc:cam-0.main");
    ASSERT_TRUE(plain.ok()) << plain.error().message();
    EXPECT_TRUE(plain->prefault);
    EXPECT_EQ(plain->term_bytes, 0u);
}

TEST(TransportHub, TermLengthMustBeAPowerOfTwoOfAtLeastOneMiB) {
    test::BusRoot root;
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:t", 1);
    ASSERT_TRUE(sub.ok());
    EXPECT_FALSE(hub.add_publication("ipc:t?term-length=3m", 1).ok());
    EXPECT_FALSE(hub.add_publication("ipc:t?term-length=64k", 1).ok());
    EXPECT_TRUE(hub.add_publication("ipc:t?term-length=2m", 1).ok());
}

}  // namespace
}  // namespace tensorpool::transport
