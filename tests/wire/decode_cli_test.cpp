// `tensorpool decode` as a user runs it: JSON on stdout for a valid message; for a malformed one nothing on
// stdout, one line on stderr that says what was wrong, and a non-zero exit.
#include <gtest/gtest.h>

#include <string>

#include "support/run_process.hpp"

namespace tensorpool {
namespace {

const std::string kVectors = std::string(TENSORPOOL_SOURCE_DIR) + "/tests/conformance/vectors/";

TEST(DecodeCli, PrintsCanonicalJsonForAFramedMessage) {
    auto r = test::run_process({TENSORPOOL_CLI_PATH, "decode", kVectors + "wire/FrameDescriptor-valid-000.bin"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind(R"({"schemaId":900,"version":1,"templateId":4,"message":"FrameDescriptor")", 0), 0u) << r.out;
}

// W-16-5: the superblock and slot header carry no message header.
TEST(DecodeCli, DecodesHeaderlessShmStructures) {
    auto r = test::run_process(
        {TENSORPOOL_CLI_PATH, "decode", "--raw", "SlotHeader", kVectors + "wire/raw-SlotHeader-000.bin"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.rfind(R"({"message":"SlotHeader","body":{"seqCommit":)", 0), 0u) << r.out;
}

TEST(DecodeCli, MalformedInputPrintsOneLineOnStderrAndNothingOnStdout) {
    for (const char* name : {"wire/ShmPoolAnnounce-bad-count-000.bin", "wire/FrameDescriptor-bad-trunc-000.bin",
                             "driver/ShmAttachRequest-bad-schema-000.bin"}) {
        auto r = test::run_process({TENSORPOOL_CLI_PATH, "decode", kVectors + name});
        EXPECT_FALSE(r.signalled) << name;
        EXPECT_NE(r.exit_code, 0) << name;
        EXPECT_TRUE(r.out.empty()) << name << ": " << r.out;
        ASSERT_FALSE(r.err.empty()) << name;
        EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
    }
}

TEST(DecodeCli, UnknownRawMessageAndMissingFileAreClearErrors) {
    auto r = test::run_process({TENSORPOOL_CLI_PATH, "decode", "--raw", "NoSuchMessage",
                                kVectors + "wire/raw-SlotHeader-000.bin"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("NoSuchMessage"), std::string::npos) << r.err;
    r = test::run_process({TENSORPOOL_CLI_PATH, "decode", "/nonexistent/file.bin"});
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.err.find("/nonexistent/file.bin"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace tensorpool
