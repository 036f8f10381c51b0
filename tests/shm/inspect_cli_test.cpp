// `tensorpool inspect`, run as the real binary: reads the C implementation's files and reports what
// expected.json says; refuses hostile files with exit code 2, nothing on stdout and one line on stderr.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "shm_test_support.hpp"
#include "tensorpool/shm/region_writer.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;
using Json = nlohmann::json;
using test::TempDir;

namespace {

const std::string kDir = TENSORPOOL_CONFORMANCE_SHM_DIR;

struct CliRun {
    int exit_code = -1;
    std::string out;
    std::string err;
};

std::string slurp(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs the CLI with `args`, stdout/stderr captured in files; killed (and the test failed) after 30 s.
CliRun run_cli(const std::vector<std::string>& args) {
    TempDir io;
    const std::string out_path = io / "stdout";
    const std::string err_path = io / "stderr";
    const pid_t pid = ::fork();
    if (pid == 0) {
        int out = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || err < 0) ::_exit(127);
        ::dup2(out, 1);
        ::dup2(err, 2);
        std::vector<char*> argv;
        argv.push_back(const_cast<char*>(TENSORPOOL_CLI_PATH));
        for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
        argv.push_back(nullptr);
        ::execv(TENSORPOOL_CLI_PATH, argv.data());
        ::_exit(127);
    }
    CliRun r;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    while (true) {
        const pid_t done = ::waitpid(pid, &status, WNOHANG);
        if (done == pid) break;
        if (std::chrono::steady_clock::now() > deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            ADD_FAILURE() << "tensorpool inspect did not finish within 30 s (blocked?)";
            return r;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out_path);
    r.err = slurp(err_path);
    return r;
}

Json expected() {
    std::ifstream in(kDir + "/expected.json");
    return Json::parse(in);
}

// expected.json writes enums as numbers; inspect prints their schema names.
std::string region_type_of(int v) { return v == 1 ? "HEADER_RING" : v == 2 ? "PAYLOAD_POOL" : "?"; }

void expect_superblock(const Json& got, const Json& want) {
    for (const char* key : {"magic", "layoutVersion", "epoch", "streamId", "poolId", "nslots", "slotBytes",
                            "strideBytes", "pid", "startTimestampNs", "activityTimestampNs"}) {
        EXPECT_EQ(got.at(key), want.at(key)) << "superblock field " << key;
    }
    EXPECT_EQ(got.at("regionType"), region_type_of(want.at("regionType")));
}

void expect_refused(const CliRun& r, const char* needle) {
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_TRUE(r.out.empty()) << "stdout: " << r.out;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "expected exactly one line: " << r.err;
    EXPECT_NE(r.err.find(needle), std::string::npos) << "stderr '" << r.err << "' does not mention '" << needle << "'";
}

}  // namespace

TEST(InspectCli, ReadsTheCHeaderRingAsExpectedJsonSays) {
    const CliRun r = run_cli({"inspect", "--allow-dir", kDir, kDir + "/header.ring", "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(r.err.empty()) << r.err;
    const Json got = Json::parse(r.out);
    const Json want = expected();
    expect_superblock(got.at("superblock"), want.at("headerRing"));
    const Json& slots = got.at("slots");
    const Json& want_slots = want.at("committedSlots");
    ASSERT_EQ(slots.size(), want_slots.size());
    for (std::size_t i = 0; i < slots.size(); ++i) {
        const Json& s = slots[i];
        const Json& w = want_slots[i];
        SCOPED_TRACE("slot " + std::to_string(i));
        EXPECT_FALSE(s.contains("error")) << s.dump();
        for (const char* key : {"index", "seq", "valuesLenBytes", "payloadSlot", "poolId", "payloadOffset",
                                "timestampNs", "metaVersion", "headerBytesLength", "embeddedHeader", "ndims", "dims",
                                "strides"}) {
            EXPECT_EQ(s.at(key), w.at(key)) << "slot field " << key;
        }
        const char* dtype = wire::control::name_of(static_cast<Dtype>(w.at("dtype").get<int>()));
        const char* order = wire::control::name_of(static_cast<MajorOrder>(w.at("majorOrder").get<int>()));
        ASSERT_NE(dtype, nullptr);
        ASSERT_NE(order, nullptr);
        EXPECT_EQ(s.at("dtype"), dtype);
        EXPECT_EQ(s.at("majorOrder"), order);
    }
}

TEST(InspectCli, ReadsTheCPoolSuperblockOnly) {
    const CliRun r = run_cli({"inspect", "--allow-dir", kDir, "--json", "shm:file?path=" + kDir + "/1.pool"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Json got = Json::parse(r.out);
    expect_superblock(got.at("superblock"), expected().at("pool"));
    EXPECT_FALSE(got.contains("slots"));
}

TEST(InspectCli, PrintsAHumanSummary) {
    const CliRun r = run_cli({"inspect", "--allow-dir", kDir, kDir + "/header.ring"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("HEADER_RING"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("0x544f504c53484d31"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("committed slots: 8 of 8"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("FLOAT32"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("[2,2]"), std::string::npos) << r.out;
}

TEST(InspectCli, HelpNamesTheDefaultAllowedDir) {
    const CliRun r = run_cli({"inspect", "--help"});
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_NE(r.out.find("/dev/shm"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("NOT implicitly allowed"), std::string::npos) << r.out;
}

TEST(InspectCli, W_15_21a_14_DefaultAllowsOnlyDevShm) {
    // Without --allow-dir the file's own directory is not allowed: the C files live outside /dev/shm.
    expect_refused(run_cli({"inspect", kDir + "/header.ring"}), "outside every allowed directory (/dev/shm)");
}

TEST(InspectCli, W_15_21a_16_RefusesASymlink) {
    TempDir dir;
    test::make_symlink(kDir + "/header.ring", dir / "header.ring");
    expect_refused(run_cli({"inspect", "--allow-dir", dir.path(), "--allow-dir", kDir, dir / "header.ring"}),
                   "symlink at component");
}

TEST(InspectCli, W_15_21a_15_RefusesAFifoWithoutBlocking) {
    TempDir dir;
    test::make_fifo(dir / "header.ring");
    expect_refused(run_cli({"inspect", "--allow-dir", dir.path(), dir / "header.ring", "--json"}), "FIFO");
}

TEST(InspectCli, W_7_5_RefusesWrongMagic) {
    TempDir dir;
    std::vector<unsigned char> bytes(64 + 4 * 256, 0);
    bytes[0] = 'X';
    test::write_file(dir / "header.ring", bytes);
    expect_refused(run_cli({"inspect", "--allow-dir", dir.path(), dir / "header.ring", "--json"}), "magic");
}

TEST(InspectCli, A_33_RefusesATruncatedRing) {
    TempDir dir;
    auto bytes = test::read_file(kDir + "/header.ring");
    bytes.resize(1000);
    test::write_file(dir / "header.ring", bytes);
    expect_refused(run_cli({"inspect", "--allow-dir", dir.path(), dir / "header.ring"}), "needs at least 2112");
}

TEST(InspectCli, W_15_22_1_RefusesOtherSchemes) {
    expect_refused(run_cli({"inspect", "aeron:ipc"}), "scheme");
    expect_refused(run_cli({"inspect", "relative/header.ring"}), "absolute path");
}

TEST(InspectCli, ListsInvalidSlotsWithTheirError) {
    TempDir dir;
    auto ring = create_region(dir / "header.ring", Superblock::header_ring(1, 1, 4));
    auto pool = create_region(dir / "1.pool", Superblock::payload_pool(1, 1, 1, 4, 64));
    ASSERT_TRUE(ring.ok() && pool.ok());
    FrameDescription f;
    f.seq = 5;
    f.pool_id = 1;
    f.tensor.dtype = Dtype::UNKNOWN;  // a frame a consumer must drop
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 1;
    ASSERT_TRUE(publish_frame(*ring, *pool, f, {}).ok());
    const CliRun r = run_cli({"inspect", "--allow-dir", dir.path(), "--json", dir / "header.ring"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Json got = Json::parse(r.out);
    ASSERT_EQ(got.at("slots").size(), 1u);
    const Json& s = got.at("slots")[0];
    EXPECT_EQ(s.at("index"), 1);
    EXPECT_EQ(s.at("seq"), 5);
    EXPECT_EQ(s.at("dtype"), "UNKNOWN");
    EXPECT_NE(s.at("error").get<std::string>().find("dtype is 0"), std::string::npos) << s.dump();
}
