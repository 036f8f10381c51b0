// Hostile or foreign bus files are refused with an error naming the file and the rule, and never read.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "../../src/transport/ipc/ipc_files.hpp"
#include "../../src/transport/ipc/ipc_format.hpp"
#include "../../src/transport/ipc/ipc_subscription.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

namespace tensorpool::transport {
namespace {

using test::BusRoot;

std::string error_of(const Result<std::unique_ptr<Subscription>>& r) { return r.ok() ? "" : r.error().message(); }

// Creates the stream directory and registry the normal way, then returns the registry path.
std::string make_stream(const BusRoot& root, const std::string& bus) {
    TransportHub hub(root.options());
    EXPECT_TRUE(hub.add_subscription("ipc:" + bus, 7).ok());
    return root.path() + "/" + bus + "/7/registry";
}

TEST(IpcHostileFiles, RegistryWithWrongMagicIsRefused) {
    BusRoot root;
    const std::string reg = make_stream(root, "magic");
    {
        std::fstream f(reg, std::ios::in | std::ios::out | std::ios::binary);
        f.write("NOTMAGIC", 8);
    }
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:magic", 7);
    ASSERT_FALSE(sub.ok());
    EXPECT_NE(error_of(sub).find("magic"), std::string::npos) << error_of(sub);
    EXPECT_NE(error_of(sub).find(reg), std::string::npos) << "the error names the file: " << error_of(sub);
}

TEST(IpcHostileFiles, TruncatedRegistryIsRefused) {
    BusRoot root;
    const std::string reg = make_stream(root, "trunc");
    ASSERT_EQ(::truncate(reg.c_str(), 100), 0);
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:trunc", 7);
    ASSERT_FALSE(sub.ok());
    EXPECT_NE(error_of(sub).find("truncated"), std::string::npos) << error_of(sub);
}

TEST(IpcHostileFiles, SymlinkedRegistryAndStreamDirectoryAreRefused) {
    BusRoot root;
    const std::string reg = make_stream(root, "link");
    ASSERT_EQ(::rename(reg.c_str(), (reg + ".real").c_str()), 0);
    ASSERT_EQ(::symlink((reg + ".real").c_str(), reg.c_str()), 0);
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:link", 7);
    ASSERT_FALSE(sub.ok());
    EXPECT_NE(error_of(sub).find("symlink"), std::string::npos) << error_of(sub);

    const std::string elsewhere = root.path() + "/elsewhere";
    ASSERT_EQ(::mkdir(elsewhere.c_str(), 0700), 0);
    ASSERT_EQ(::symlink(elsewhere.c_str(), (root.path() + "/linkbus").c_str()), 0);
    auto sub2 = hub.add_subscription("ipc:linkbus", 7);
    ASSERT_FALSE(sub2.ok());
    EXPECT_NE(error_of(sub2).find("symlink"), std::string::npos) << error_of(sub2);
}

TEST(IpcHostileFiles, GroupOrWorldAccessibleFilesAndDirectoriesAreRefused) {
    BusRoot root;
    const std::string reg = make_stream(root, "mode");
    ASSERT_EQ(::chmod(reg.c_str(), 0666), 0);
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:mode", 7);
    ASSERT_FALSE(sub.ok());
    EXPECT_NE(error_of(sub).find("0666"), std::string::npos) << error_of(sub);

    ASSERT_EQ(::chmod(root.path().c_str(), 0755), 0);
    auto sub2 = hub.add_subscription("ipc:other", 7);
    ASSERT_FALSE(sub2.ok());
    EXPECT_NE(error_of(sub2).find("owner-only"), std::string::npos) << error_of(sub2);
}

TEST(IpcHostileFiles, FileOwnedBySomeoneElseIsRefused) {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a file to another user";
    BusRoot root;
    const std::string reg = make_stream(root, "owner");
    ASSERT_EQ(::chown(reg.c_str(), 65534, 65534), 0);
    TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:owner", 7);
    ASSERT_FALSE(sub.ok());
    EXPECT_NE(error_of(sub).find("uid 65534"), std::string::npos) << error_of(sub);
}

TEST(IpcHostileFiles, ForeignPublisherLogIsNeverRead) {
    BusRoot root;
    TransportHub hub(root.options());
    auto pub = hub.add_publication("ipc:foreign", 7);
    ASSERT_TRUE(pub.ok());
    // Replace the publisher's log with a same-sized file whose magic is wrong.
    const std::string log = root.path() + "/foreign/7/" + ipc::log_file_name((*pub)->session_id());
    struct stat st {};
    ASSERT_EQ(::stat(log.c_str(), &st), 0);
    ASSERT_EQ(::unlink(log.c_str()), 0);
    int fd = ::open(log.c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, st.st_size), 0);
    ::close(fd);
    auto sub = hub.add_subscription("ipc:foreign", 7);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    auto* ipc_sub = dynamic_cast<ipc::IpcSubscription*>(sub->get());
    ASSERT_NE(ipc_sub, nullptr);
    EXPECT_EQ(ipc_sub->image_count(), 0);
    EXPECT_EQ(ipc_sub->refused_images(), 1u);
    EXPECT_NE(ipc_sub->last_refusal().find("magic"), std::string::npos) << ipc_sub->last_refusal();
}

// A record word our writer never produces, written beyond the tail of a live log (the writer's header untouched),
// after records that are fine: those are delivered once, the foreign one never, and every poll returns. The reader
// used to resync back to the tail behind it and deliver the same records again on every turn, never returning
// while it only met padding (found by fuzz_ipc_log).
TEST(IpcHostileFiles, ForeignRecordAfterGoodOnesIsNeverReadTwice) {
    BusRoot root;
    TransportHub hub(root.options());
    auto pub = hub.add_publication("ipc:foreign", 7);
    ASSERT_TRUE(pub.ok());
    auto sub = hub.add_subscription("ipc:foreign", 7);
    ASSERT_TRUE(sub.ok()) << sub.error().message();
    const std::vector<uint8_t> msg(8, 0x42);
    ASSERT_TRUE((*pub)->offer(msg).ok());  // an image to join, and a tail past the first record
    int seen = 0;
    auto count = [&](std::span<const uint8_t>, const MessageInfo&) { ++seen; };
    ASSERT_EQ((*sub)->poll(count, 16), 1);

    const std::string path = root.path() + "/foreign/7/" + ipc::log_file_name((*pub)->session_id());
    int fd = ::open(path.c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    ipc::LogHeader h{};
    ASSERT_EQ(::pread(fd, &h, sizeof h, 0), static_cast<ssize_t>(sizeof h));
    // Two good data records (lap 0) then a padding record, then a word of type 9, all beyond the writer's tail.
    std::vector<uint8_t> bytes;
    auto record = [&](uint32_t length, uint32_t type, uint64_t seq) {
        ipc::RecordHeader r{length, type, seq};  // lap 0 in the high bits of type_lap
        const std::size_t at = bytes.size();
        bytes.resize(at + ipc::record_bytes(length), 0x24);
        std::memcpy(bytes.data() + at, &r, sizeof r);
    };
    record(8, ipc::kRecordData, 1);
    record(8, ipc::kRecordData, 2);
    record(16, ipc::kRecordPadding, 0);
    record(8, 9, 3);
    const auto at = static_cast<off_t>(ipc::kLogHeaderBytes + h.tail);
    ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), at), static_cast<ssize_t>(bytes.size()));
    ::close(fd);

    seen = 0;
    for (int i = 0; i < 5; ++i) (void)(*sub)->poll(count, 1024);
    EXPECT_EQ(seen, 2) << "the two good records, once each";
}

}  // namespace
}  // namespace tensorpool::transport
