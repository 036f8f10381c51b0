// Containment and symlink-safe open: WIRE_SPEC §7.2, W-15.21a-11..18, W-15.22-5, A-34.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "shm_test_support.hpp"
#include "tensorpool/shm/safe_open.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;
using test::TempDir;

namespace {

AllowedDirs allow(std::initializer_list<std::string_view> dirs) {
    auto a = AllowedDirs::create(dirs);
    if (!a.ok()) throw std::runtime_error(a.error().message());
    return std::move(*a);
}

void expect_refused(const Result<OpenedRegion>& r, Errc code, const char* needle) {
    ASSERT_FALSE(r.ok()) << "expected a refusal mentioning '" << needle << "'";
    EXPECT_EQ(r.error().code(), code) << r.error().message();
    EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos)
        << "message '" << r.error().message() << "' does not mention '" << needle << "'";
}

}  // namespace

TEST(AllowedDirsTest, W_15_21a_13_CanonicalisesOnce) {
    TempDir dir;
    test::make_dir(dir / "real");
    test::make_symlink(dir / "real", dir / "link");
    auto a = AllowedDirs::create({dir / "link", dir / "real/../real"});
    ASSERT_TRUE(a.ok()) << a.error().message();
    EXPECT_EQ(a->canonical(), (std::vector<std::string>{dir / "real", dir / "real"}));
}

// W-15.21a-2: allowed base dirs must be absolute and exist.
TEST(AllowedDirsTest, RejectsBadConfiguration) {
    TempDir dir;
    test::write_file(dir / "file", {1});
    EXPECT_FALSE(AllowedDirs::create(std::span<const std::string>{}).ok());
    EXPECT_FALSE(AllowedDirs::create({"relative/dir"}).ok());
    EXPECT_FALSE(AllowedDirs::create({dir / "missing"}).ok());
    EXPECT_FALSE(AllowedDirs::create({dir / "file"}).ok());
}

TEST(AllowedDirsTest, W_15_21a_14_ComparesWholeComponents) {
    TempDir dir;
    test::make_dir(dir / "shm");
    auto a = allow({dir / "shm"});
    EXPECT_NE(a.containing(dir / "shm/x"), nullptr);
    EXPECT_NE(a.containing(dir / "shm/a/b/c"), nullptr);
    EXPECT_EQ(a.containing(dir / "shm2/x"), nullptr);  // the /dev/shm2 prefix trick
    EXPECT_EQ(a.containing(dir / "shm2"), nullptr);
    EXPECT_EQ(a.containing(dir / "shm"), nullptr);  // the base itself is not inside itself
    EXPECT_EQ(a.containing(dir.path()), nullptr);
    auto root = allow({"/"});
    EXPECT_NE(root.containing("/x"), nullptr);
    EXPECT_EQ(root.containing("/"), nullptr);
}

TEST(SafeOpen, OpensARegularFileInside) {
    TempDir dir;
    test::write_file(dir / "header.ring", std::vector<unsigned char>(64, 0));
    auto a = allow({dir.path()});
    auto r = open_region("shm:file?path=" + (dir / "header.ring") + "|require_hugepages=false", a,
                         Access::read_only);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->canonical_path, dir / "header.ring");
    EXPECT_EQ(r->allowed_base, dir.path());
    EXPECT_EQ(r->size_bytes, 64u);
    EXPECT_EQ(::fcntl(r->fd.get(), F_GETFL) & O_ACCMODE, O_RDONLY);  // consumers open read-only
    EXPECT_NE(::fcntl(r->fd.get(), F_GETFD) & FD_CLOEXEC, 0);
    auto bare = open_region(dir / "header.ring", a, Access::read_only);
    ASSERT_TRUE(bare.ok()) << bare.error().message();
    EXPECT_EQ(bare->dev, r->dev);
    EXPECT_EQ(bare->ino, r->ino);
}

TEST(SafeOpen, W_15_21a_11_RejectsRelativePathsAndOtherSchemes) {
    TempDir dir;
    auto a = allow({dir.path()});
    expect_refused(open_region("header.ring", a, Access::read_only), Errc::invalid_argument, "absolute path");
    expect_refused(open_region("./header.ring", a, Access::read_only), Errc::invalid_argument, "absolute path");
    expect_refused(open_region("shm:file?path=x/y", a, Access::read_only), Errc::invalid_argument, "not absolute");
    expect_refused(open_region("aeron:ipc", a, Access::read_only), Errc::unsupported, "scheme");
}

TEST(SafeOpen, W_15_21a_14_RefusesPathsOutsideEveryAllowedDir) {
    TempDir dir;
    test::make_dir(dir / "allowed");
    test::make_dir(dir / "other");
    test::write_file(dir / "other/x", std::vector<unsigned char>(64, 0));
    test::write_file(dir / "top", std::vector<unsigned char>(64, 0));
    auto a = allow({dir / "allowed"});
    expect_refused(open_region(dir / "other/x", a, Access::read_only), Errc::refused, "outside every allowed");
    // `..` escapes are resolved by realpath() first, then refused by containment.
    expect_refused(open_region(dir / "allowed/../top", a, Access::read_only), Errc::refused,
                   "outside every allowed");
    expect_refused(open_region(dir / "allowed/../other/x", a, Access::read_only), Errc::refused,
                   "outside every allowed");
}

TEST(SafeOpen, W_15_21a_14_RefusesThePrefixTrick) {
    TempDir dir;
    test::make_dir(dir / "shm");
    test::make_dir(dir / "shm2");
    test::write_file(dir / "shm2/header.ring", std::vector<unsigned char>(64, 0));
    auto a = allow({dir / "shm"});
    expect_refused(open_region(dir / "shm2/header.ring", a, Access::read_only), Errc::refused,
                   "outside every allowed");
}

TEST(SafeOpen, W_15_21a_14_DotDotThatStaysInsideIsFine) {
    TempDir dir;
    test::make_dir(dir / "a");
    test::write_file(dir / "x", std::vector<unsigned char>(64, 0));
    auto a = allow({dir.path()});
    auto r = open_region(dir / "a/../x", a, Access::read_only);
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->canonical_path, dir / "x");
}

TEST(SafeOpen, W_15_21a_18_RefusesMissingFiles) {
    TempDir dir;
    auto a = allow({dir.path()});
    expect_refused(open_region(dir / "missing", a, Access::read_only), Errc::not_found, "realpath failed");
}

TEST(SafeOpen, A_34_RefusesSymlinkAsFirstComponentBelowTheBase) {
    TempDir dir;
    test::make_dir(dir / "real");
    test::write_file(dir / "real/header.ring", std::vector<unsigned char>(64, 0));
    test::make_symlink(dir / "real", dir / "link");
    auto a = allow({dir.path()});
    auto r = open_region(dir / "link/header.ring", a, Access::read_only);
    expect_refused(r, Errc::refused, "symlink at component");
    EXPECT_NE(std::string(r.error().message()).find("'link'"), std::string::npos) << r.error().message();
}

TEST(SafeOpen, A_34_RefusesSymlinkAsMiddleComponent) {
    TempDir dir;
    test::make_dir(dir / "ns");
    test::make_dir(dir / "ns/real");
    test::make_dir(dir / "ns/real/3");
    test::write_file(dir / "ns/real/3/header.ring", std::vector<unsigned char>(64, 0));
    test::make_symlink("real", dir / "ns/10000");  // relative target, still inside the base
    auto a = allow({dir.path()});
    auto r = open_region(dir / "ns/10000/3/header.ring", a, Access::read_only);
    expect_refused(r, Errc::refused, "symlink at component");
    EXPECT_NE(std::string(r.error().message()).find("'10000'"), std::string::npos) << r.error().message();
}

TEST(SafeOpen, W_15_21a_16_RefusesSymlinkAsLastComponent) {
    TempDir dir;
    test::write_file(dir / "real.ring", std::vector<unsigned char>(64, 0));
    test::make_symlink(dir / "real.ring", dir / "header.ring");
    auto a = allow({dir.path()});
    auto r = open_region(dir / "header.ring", a, Access::read_only);
    expect_refused(r, Errc::refused, "symlink at component");
    EXPECT_NE(std::string(r.error().message()).find("'header.ring'"), std::string::npos) << r.error().message();
}

TEST(SafeOpen, A_34_RefusesSymlinkInTheBaseDirectoryPath) {
    // The allowlist names the link; it is canonicalised, so containment passes, but the announced path still
    // walks through a symlink and is refused. Producers announce canonical paths (make_canonical_layout).
    TempDir dir;
    test::make_dir(dir / "real");
    test::write_file(dir / "real/x", std::vector<unsigned char>(64, 0));
    test::make_symlink(dir / "real", dir / "base");
    auto a = allow({dir / "base"});
    expect_refused(open_region(dir / "base/x", a, Access::read_only), Errc::refused, "symlink at component");
    EXPECT_TRUE(open_region(dir / "real/x", a, Access::read_only).ok());
}

TEST(SafeOpen, W_15_21a_16_RefusesSymlinkEscapingTheBase) {
    TempDir dir;
    test::make_dir(dir / "allowed");
    test::write_file(dir / "secret", std::vector<unsigned char>(64, 0));
    test::make_symlink(dir / "secret", dir / "allowed/header.ring");
    auto a = allow({dir / "allowed"});
    expect_refused(open_region(dir / "allowed/header.ring", a, Access::read_only), Errc::refused,
                   "outside every allowed");
}

TEST(SafeOpen, W_15_21a_15_RefusesFifoWithoutBlocking) {
    TempDir dir;
    test::make_fifo(dir / "header.ring");
    auto a = allow({dir.path()});
    // Read-only and read-write both: neither may block waiting for a FIFO writer/reader.
    expect_refused(open_region(dir / "header.ring", a, Access::read_only), Errc::refused, "FIFO");
    expect_refused(open_region(dir / "header.ring", a, Access::read_write), Errc::refused, "FIFO");
}

TEST(SafeOpen, W_15_21a_15_RefusesSocket) {
    TempDir dir;
    test::make_socket(dir / "header.ring");
    auto a = allow({dir.path()});
    expect_refused(open_region(dir / "header.ring", a, Access::read_only), Errc::refused, "socket");
}

TEST(SafeOpen, W_15_21a_15_RefusesDirectory) {
    TempDir dir;
    test::make_dir(dir / "header.ring");
    auto a = allow({dir.path()});
    expect_refused(open_region(dir / "header.ring", a, Access::read_only), Errc::refused, "directory");
    expect_refused(open_region(dir / "header.ring/", a, Access::read_only), Errc::refused, "directory");
}

TEST(SafeOpen, W_15_21a_15_RefusesCharacterDevice) {
    auto a = allow({"/dev"});
    expect_refused(open_region("/dev/null", a, Access::read_only), Errc::refused, "character device");
    expect_refused(open_region("shm:file?path=/dev/zero", a, Access::read_write), Errc::refused,
                   "character device");
}

TEST(SafeOpen, W_15_21a_15_RefusesCharacterDeviceNodeInsideTheBase) {
    TempDir dir;
    if (::mknod((dir / "header.ring").c_str(), S_IFCHR | 0600, makedev(1, 3)) != 0) {
        GTEST_SKIP() << "mknod needs CAP_MKNOD: " << std::strerror(errno);
    }
    auto a = allow({dir.path()});
    expect_refused(open_region(dir / "header.ring", a, Access::read_only), Errc::refused, "character device");
}

TEST(SafeOpen, W_15_22_5_RefusesRequireHugepagesOnTmpfs) {
    TempDir dir("/dev/shm");
    test::write_file(dir / "1.pool", std::vector<unsigned char>(64, 0));
    auto a = allow({dir.path()});
    auto r = open_region("shm:file?path=" + (dir / "1.pool") + "|require_hugepages=true", a, Access::read_only);
    expect_refused(r, Errc::refused, "hugetlbfs");
    auto ok = open_region("shm:file?path=" + (dir / "1.pool") + "|require_hugepages=false", a, Access::read_only);
    ASSERT_TRUE(ok.ok()) << ok.error().message();
    EXPECT_FALSE(ok->on_hugetlbfs);
}

TEST(SafeOpen, W_15_21a_16_DirectoryWalkRefusesSymlinks) {
    TempDir dir;
    test::make_dir(dir / "real");
    test::make_symlink(dir / "real", dir / "link");
    EXPECT_TRUE(open_directory_nofollow(dir / "real").ok());
    auto r = open_directory_nofollow(dir / "link");
    ASSERT_FALSE(r.ok());
    EXPECT_NE(std::string(r.error().message()).find("symlink at component"), std::string::npos);
    test::write_file(dir / "file", {1});
    auto f = open_directory_nofollow(dir / "file/x");
    ASSERT_FALSE(f.ok());
    EXPECT_NE(std::string(f.error().message()).find("expected a directory"), std::string::npos)
        << f.error().message();
}
