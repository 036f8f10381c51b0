// The README's main job, `tensorpool demo`, run as a user runs it: frames flow to both consumers, nothing torn is
// accepted, and the run leaves nothing behind in /dev/shm (its ipc bus and its regions are removed at the end).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <set>
#include <string>

#include "support/run_process.hpp"

namespace {

std::set<std::string> demo_bus_roots() {
    std::set<std::string> found;
    for (const auto& e : std::filesystem::directory_iterator("/dev/shm")) {
        const std::string name = e.path().filename().string();
        if (name.rfind("tensorpool-demo-", 0) == 0) found.insert(name);
    }
    return found;
}

std::size_t files_under(const std::string& dir) {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) n += e.is_regular_file() ? 1 : 0;
    return n;
}

}  // namespace

TEST(DemoCli, FramesFlowToBothConsumersAndTheRunLeavesNoFilesBehind) {
    char tmpl[] = "/dev/shm/tp-demo-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    const std::string base = tmpl;
    const auto before = demo_bus_roots();
    // 3 s: the producer announces once a second and a consumer ignores announces stamped before it joined
    // (W-10.1.1-9), so a consumer that starts just after an announce maps up to a second later.
    const auto r = tensorpool::test::run_process({TENSORPOOL_CLI_PATH, "demo", "--seconds", "3", "--base-dir", base});
    EXPECT_FALSE(r.signalled);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    EXPECT_NE(r.out.find("demo OK"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("consumer 2 accepted"), std::string::npos) << r.out;
    EXPECT_EQ(demo_bus_roots(), before) << "the demo left its ipc bus in /dev/shm";
    EXPECT_EQ(files_under(base), 0u) << "the demo left region files under " << base;
    std::error_code ec;
    std::filesystem::remove_all(base, ec);
}
