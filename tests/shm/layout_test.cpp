// Canonical layout: WIRE_SPEC §2.5, W-15.21a-3..7.
#include <gtest/gtest.h>
#include <unistd.h>

#include "shm_test_support.hpp"
#include "tensorpool/shm/layout.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;

TEST(Layout, W_15_21a_5_SanitizesUserNames) {
    EXPECT_EQ(sanitize_user_name("alice"), "alice");
    EXPECT_EQ(sanitize_user_name("a.b-c_d9"), "a.b-c_d9");
    EXPECT_EQ(sanitize_user_name("../../etc"), "______etc");
    EXPECT_EQ(sanitize_user_name(".."), "__");
    EXPECT_EQ(sanitize_user_name("..."), "__.");
    EXPECT_EQ(sanitize_user_name("."), "_");
    EXPECT_EQ(sanitize_user_name("a/b"), "a_b");
    EXPECT_EQ(sanitize_user_name("DOMAIN\\user name"), "DOMAIN_user_name");
    EXPECT_EQ(sanitize_user_name("\xc3\xa9t\xc3\xa9"), "__t__");
    EXPECT_EQ(sanitize_user_name("", "uid1000"), "uid1000");
    EXPECT_EQ(sanitize_user_name("", ""), "_");
    EXPECT_EQ(sanitize_user_name(std::string(200, 'x')).size(), kMaxNameComponent);
    for (const char* raw : {"..", "a/../b", "/", "./.", "x..y", "....."}) {
        const std::string s = sanitize_user_name(raw);
        EXPECT_FALSE(s.empty()) << raw;
        EXPECT_EQ(s.find('/'), std::string::npos) << raw;
        EXPECT_EQ(s.find(".."), std::string::npos) << raw;
        EXPECT_NE(s, ".") << raw;
    }
}

TEST(Layout, W_15_21a_4_EffectiveUserNameIsSafe) {
    auto u = effective_user_name();
    ASSERT_TRUE(u.ok()) << u.error().message();
    EXPECT_FALSE(u->empty());
    EXPECT_EQ(*u, sanitize_user_name(*u));
    if (::geteuid() == 0) {
        EXPECT_EQ(*u, "root");
    }
}

TEST(Layout, W_15_21a_6_ValidatesNamespaces) {
    for (const char* ok : {"default", "lab1", "sim", "a.b", "A_B-c"}) EXPECT_TRUE(validate_namespace(ok).ok()) << ok;
    for (const char* bad : {"", ".", "..", "a/b", "a..b", "../x", "with space", "tab\t"}) {
        auto s = validate_namespace(bad);
        EXPECT_FALSE(s.ok()) << "accepted '" << bad << "'";
    }
    EXPECT_FALSE(validate_namespace(std::string(kMaxNameComponent + 1, 'n')).ok());
}

TEST(Layout, W_15_21a_3_BuildsCanonicalPaths) {
    CanonicalLayout l{"/dev/shm", "alice", "default", 10000, 3};
    ASSERT_TRUE(l.validate().ok());
    EXPECT_EQ(l.user_dir(), "/dev/shm/tensorpool-alice");
    EXPECT_EQ(l.epoch_dir(), "/dev/shm/tensorpool-alice/default/10000/3");
    EXPECT_EQ(l.header_ring_path(), "/dev/shm/tensorpool-alice/default/10000/3/header.ring");
    EXPECT_EQ(l.pool_path(1), "/dev/shm/tensorpool-alice/default/10000/3/1.pool");
    EXPECT_EQ(l.pool_path(65535), "/dev/shm/tensorpool-alice/default/10000/3/65535.pool");
    CanonicalLayout trailing{"/dev/shm/", "alice", "default", 1, 18446744073709551615ull};
    EXPECT_EQ(trailing.epoch_dir(), "/dev/shm/tensorpool-alice/default/1/18446744073709551615");
}

TEST(Layout, W_15_21a_5_RejectsUnsanitisedParts) {
    EXPECT_FALSE((CanonicalLayout{"/dev/shm", "../x", "default", 1, 1}.validate().ok()));
    EXPECT_FALSE((CanonicalLayout{"/dev/shm", "", "default", 1, 1}.validate().ok()));
    EXPECT_FALSE((CanonicalLayout{"/dev/shm", "u", "../x", 1, 1}.validate().ok()));
    EXPECT_FALSE((CanonicalLayout{"relative", "u", "ns", 1, 1}.validate().ok()));
    EXPECT_FALSE((CanonicalLayout{"/dev/sh m", "u", "ns", 1, 1}.validate().ok()));
}

TEST(Layout, W_15_21a_8_CanonicalisesTheBaseDirectory) {
    test::TempDir dir;
    test::make_dir(dir / "real");
    test::make_symlink(dir / "real", dir / "link");
    auto l = make_canonical_layout(dir / "link", "default", 7, 9);
    ASSERT_TRUE(l.ok()) << l.error().message();
    EXPECT_EQ(l->base_dir, dir / "real");  // announced paths must not contain the symlink
    EXPECT_FALSE(make_canonical_layout(dir / "missing", "default", 7, 9).ok());
    EXPECT_FALSE(make_canonical_layout(dir / "real", "bad/ns", 7, 9).ok());
}
