// Region URI grammar: WIRE_SPEC §7.1, W-15.22-1/2/3/7/14, A-32.
#include <gtest/gtest.h>

#include "tensorpool/shm/region_uri.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;

namespace {

void expect_rejected(const char* uri, Errc code, const char* needle) {
    auto r = parse_region_uri(uri);
    ASSERT_FALSE(r.ok()) << uri << " was accepted";
    EXPECT_EQ(r.error().code(), code) << uri << ": " << r.error().message();
    EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos)
        << uri << ": message '" << r.error().message() << "' does not mention '" << needle << "'";
}

}  // namespace

TEST(RegionUri, W_15_22_3_ParsesPathOnly) {
    auto r = parse_region_uri("shm:file?path=/dev/shm/tensorpool-u/ns/1/2/header.ring");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->path, "/dev/shm/tensorpool-u/ns/1/2/header.ring");
    EXPECT_FALSE(r->require_hugepages);  // W-15.22-5: defaults to false
}

TEST(RegionUri, W_15_22_14_ParsesHugepagesLiterals) {
    auto t = parse_region_uri("shm:file?path=/dev/hugepages/x|require_hugepages=true");
    ASSERT_TRUE(t.ok()) << t.error().message();
    EXPECT_TRUE(t->require_hugepages);
    auto f = parse_region_uri("shm:file?path=/dev/shm/x|require_hugepages=false");
    ASSERT_TRUE(f.ok()) << f.error().message();
    EXPECT_FALSE(f->require_hugepages);
}

TEST(RegionUri, W_15_22_1_RejectsOtherSchemes) {
    expect_rejected("aeron:ipc", Errc::unsupported, "scheme");
    expect_rejected("shm:memfd?path=/x", Errc::unsupported, "scheme");
    expect_rejected("file:///dev/shm/x", Errc::unsupported, "scheme");
    expect_rejected("SHM:FILE?path=/x", Errc::unsupported, "scheme");
    expect_rejected("shm:file", Errc::unsupported, "scheme");
    expect_rejected("", Errc::unsupported, "scheme");
}

TEST(RegionUri, W_15_22_7_RejectsUnknownParameters) {
    expect_rejected("shm:file?path=/x|mode=ro", Errc::unsupported, "unknown parameter 'mode'");
    expect_rejected("shm:file?name=/x", Errc::unsupported, "unknown parameter 'name'");
    expect_rejected("shm:file?path=/x|Require_Hugepages=true", Errc::unsupported, "unknown parameter");
}

TEST(RegionUri, W_15_22_2_AmpersandIsNotASeparator) {
    // '&' is not the separator, so "path=/x&require_hugepages=true" is one path; '&' is VCHAR, so it parses
    // as a strange path and the hugepage flag stays false.
    auto r = parse_region_uri("shm:file?path=/x&require_hugepages=true");
    ASSERT_TRUE(r.ok()) << r.error().message();
    EXPECT_EQ(r->path, "/x&require_hugepages=true");
    EXPECT_FALSE(r->require_hugepages);
}

TEST(RegionUri, A_32_RejectsDuplicates) {
    expect_rejected("shm:file?path=/x|path=/y", Errc::malformed, "duplicate parameter 'path'");
    expect_rejected("shm:file?path=/x|require_hugepages=true|require_hugepages=true", Errc::malformed,
                    "duplicate parameter 'require_hugepages'");
}

TEST(RegionUri, A_32_RejectsEmptyValuesAndBareNames) {
    expect_rejected("shm:file?path=", Errc::malformed, "empty value");
    expect_rejected("shm:file?path=/x|require_hugepages=", Errc::malformed, "empty value");
    expect_rejected("shm:file?", Errc::malformed, "not name=value");
    expect_rejected("shm:file?path=/x|", Errc::malformed, "not name=value");
    expect_rejected("shm:file?path=/x||require_hugepages=true", Errc::malformed, "not name=value");
    expect_rejected("shm:file?path=/x|=true", Errc::malformed, "not name=value");
    expect_rejected("shm:file?path", Errc::malformed, "not name=value");
}

TEST(RegionUri, A_32_PathMustComeFirst) {
    expect_rejected("shm:file?require_hugepages=false|path=/x", Errc::malformed, "expected 'path' first");
    expect_rejected("shm:file?require_hugepages=false", Errc::malformed, "expected 'path' first");
}

TEST(RegionUri, W_15_22_3_RejectsRelativePaths) {
    expect_rejected("shm:file?path=dev/shm/x", Errc::invalid_argument, "not absolute");
    expect_rejected("shm:file?path=./x", Errc::invalid_argument, "not absolute");
    expect_rejected("shm:file?path=C:\\aeron\\x", Errc::invalid_argument, "not absolute");
}

TEST(RegionUri, W_15_22_14_RejectsNonLiteralBools) {
    for (const char* b : {"TRUE", "True", "1", "0", "yes", "no", "false ", "truee", "tru"}) {
        std::string uri = std::string("shm:file?path=/x|require_hugepages=") + b;
        expect_rejected(uri.c_str(), Errc::malformed, "expected the literal 'true' or 'false'");
    }
}

TEST(RegionUri, A_32_RejectsForbiddenPathBytes) {
    expect_rejected("shm:file?path=/dev/shm/a?b", Errc::invalid_argument, "byte 0x3f");
    expect_rejected("shm:file?path=/dev/shm/a b", Errc::invalid_argument, "byte 0x20");
    expect_rejected("shm:file?path=/dev/shm/a\tb", Errc::invalid_argument, "byte 0x09");
    expect_rejected("shm:file?path=/dev/shm/\xc3\xa9", Errc::invalid_argument, "byte 0xc3");
    // '|' can never reach the path: it splits parameters, so the tail is a malformed parameter.
    expect_rejected("shm:file?path=/dev/shm/a|b", Errc::malformed, "not name=value");
}

TEST(RegionUri, RoundTripsFormatAndParse) {
    for (const RegionUri& u : {RegionUri{"/dev/shm/tensorpool-u/default/10000/3/header.ring", false},
                               RegionUri{"/dev/hugepages/tp/1.pool", true}, RegionUri{"/a=b/c~d/e.f_g-h", false}}) {
        auto s = format_region_uri(u);
        ASSERT_TRUE(s.ok()) << s.error().message();
        auto back = parse_region_uri(*s);
        ASSERT_TRUE(back.ok()) << *s << ": " << back.error().message();
        EXPECT_EQ(*back, u);
    }
    auto s = format_region_uri({"/dev/shm/x", false});
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(*s, "shm:file?path=/dev/shm/x|require_hugepages=false");  // the C reference's form
}

TEST(RegionUri, FormatRefusesWhatParseWouldRefuse) {
    EXPECT_FALSE(format_region_uri({"relative/x", false}).ok());
    EXPECT_FALSE(format_region_uri({"/a|b", false}).ok());
    EXPECT_FALSE(format_region_uri({"/a?b", false}).ok());
    EXPECT_FALSE(format_region_uri({"/a b", false}).ok());
    EXPECT_FALSE(format_region_uri({"", false}).ok());
}
