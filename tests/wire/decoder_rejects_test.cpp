// Decoders and the dispatcher on malformed input: every rule of the conformance error list, each with a message
// that names what was wrong. The conformance vectors (ctest conformance.*) cover the same rules in bulk.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tensorpool/wire/gen/control.hpp"
#include "tensorpool/wire/gen/dispatch.hpp"
#include "tensorpool/wire/gen/tracelink.hpp"

namespace tensorpool::wire {
namespace {

using control::ShmPoolAnnounce;

std::vector<uint8_t> announce_with_one_pool() {
    std::vector<uint8_t> buf(512);
    ShmPoolAnnounce::Encoder e;
    EXPECT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.streamId(1).epoch(2);
    e.payloadPoolsCount(1).next().poolId(1).regionUri("shm:file?path=/a");
    e.headerRegionUri("shm:file?path=/b");
    auto n = e.finish();
    buf.resize(*n);
    return buf;
}

std::string message_of(const Error& e) { return e.message(); }

TEST(Decoder, RejectsInputShorterThanTheHeader) {
    const uint8_t b[7] = {};
    auto d = control::FrameDescriptor::Decoder::wrap(b, sizeof b);
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().code(), Errc::truncated);
}

TEST(Decoder, RejectsABlockLengthSmallerThanTheSchemas) {
    auto buf = announce_with_one_pool();
    store_le<uint16_t>(buf.data(), 34);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_FALSE(d.ok());
    EXPECT_NE(message_of(d.error()).find("blockLength 34"), std::string::npos) << d.error().message();
}

TEST(Decoder, UsesTheHeadersLongerBlockLengthToFindGroups) {
    // A newer producer appends 5 bytes to the block: groups and var data move, old fields stay put.
    auto buf = announce_with_one_pool();
    buf.insert(buf.begin() + 8 + 35, 5, 0x7F);
    store_le<uint16_t>(buf.data(), 40);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(d->epoch(), 2u);
    ASSERT_EQ(d->payloadPools().size(), 1u);
    EXPECT_EQ(d->payloadPools().begin()->regionUri(), "shm:file?path=/a");
    EXPECT_EQ(d->headerRegionUri(), "shm:file?path=/b");
}

TEST(Decoder, RejectsEveryTruncation) {
    auto buf = announce_with_one_pool();
    for (size_t len = 0; len < buf.size(); ++len) {
        auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), len);
        EXPECT_FALSE(d.ok()) << "accepted " << len << " of " << buf.size() << " bytes";
    }
    EXPECT_TRUE(ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size()).ok());
}

TEST(Decoder, RejectsAGroupCountThatOverrunsTheBuffer) {
    auto buf = announce_with_one_pool();
    store_le<uint16_t>(buf.data() + 8 + 35 + 2, 60000);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_FALSE(d.ok());
    EXPECT_NE(message_of(d.error()).find("payloadPools"), std::string::npos) << d.error().message();
}

TEST(Decoder, RejectsAGroupBlockLengthSmallerThanTheSchemas) {
    auto buf = announce_with_one_pool();
    store_le<uint16_t>(buf.data() + 8 + 35, 9);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_FALSE(d.ok());
    EXPECT_NE(message_of(d.error()).find("blockLength 9 is smaller than the schema's 10"), std::string::npos)
        << d.error().message();
}

TEST(Decoder, AcceptsAnEmptyGroupWithAnyBlockLength) {
    std::vector<uint8_t> buf(64);
    tracelink::TraceLinkSet::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    auto n = e.finish();
    ASSERT_TRUE(n.ok());
    store_le<uint16_t>(buf.data() + 8 + 28, 0);  // parents: blockLength 0 < 8, but numInGroup is 0
    EXPECT_TRUE(tracelink::TraceLinkSet::Decoder::wrap(buf.data(), *n).ok());
}

TEST(Decoder, RejectsAVarLengthPastTheEnd) {
    auto buf = announce_with_one_pool();
    const size_t uri_len_at = buf.size() - 4 - std::string("shm:file?path=/b").size();
    store_le<uint32_t>(buf.data() + uri_len_at, 0xFFFFFFFFu);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_FALSE(d.ok());
    EXPECT_NE(message_of(d.error()).find("headerRegionUri"), std::string::npos) << d.error().message();
    EXPECT_NE(message_of(d.error()).find("4294967295"), std::string::npos) << d.error().message();
}

TEST(Decoder, ReadsEnumValuesThatAreNotValidValuesAsRawIntegers) {
    auto buf = announce_with_one_pool();
    buf[8 + 24] = 9;  // announceClockDomain
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_TRUE(d.ok());
    EXPECT_FALSE(control::is_valid(d->announceClockDomain()));
    EXPECT_EQ(control::name_of(d->announceClockDomain()), nullptr);
    EXPECT_EQ(d->announceClockDomainRaw(), 9);
    EXPECT_TRUE(control::is_valid(control::Dtype::BIT));
    EXPECT_FALSE(control::is_valid(static_cast<control::Dtype>(12)));  // unassigned
    EXPECT_STREQ(control::name_of(control::Dtype::FLOAT32), "FLOAT32");
}

TEST(Decoder, WrapRejectsTheWrongSchemaOrTemplate) {
    auto buf = announce_with_one_pool();
    auto d = control::FrameDescriptor::Decoder::wrap(buf.data(), buf.size());
    ASSERT_FALSE(d.ok());
    EXPECT_EQ(d.error().code(), Errc::mismatch);
}

TEST(Dispatch, RoutesByTemplateAndSkipsTypesTheVisitorDoesNotTake) {
    auto buf = announce_with_one_pool();
    int announces = 0;
    Status s = dispatch(buf.data(), buf.size(), [&](const ShmPoolAnnounce::Decoder& d) {
        EXPECT_EQ(d.streamId(), 1u);
        ++announces;
    });
    EXPECT_TRUE(s.ok()) << s.error().message();
    EXPECT_EQ(announces, 1);
    std::vector<uint8_t> fd(48);
    control::FrameDescriptor::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(fd.data(), fd.size()));
    ASSERT_TRUE(e.finish().ok());
    s = dispatch(fd.data(), fd.size(), [&](const ShmPoolAnnounce::Decoder&) { ++announces; });
    EXPECT_TRUE(s.ok());
    EXPECT_EQ(announces, 1);
}

TEST(Dispatch, NamesUnknownSchemaAndTemplate) {
    auto buf = announce_with_one_pool();
    store_le<uint16_t>(buf.data() + 4, 905);
    Status s = dispatch(buf.data(), buf.size(), [](const auto&) {});
    ASSERT_FALSE(s.ok());
    EXPECT_NE(message_of(s.error()).find("schemaId 905"), std::string::npos) << s.error().message();
    EXPECT_NE(message_of(s.error()).find("templateId 1"), std::string::npos) << s.error().message();

    store_le<uint16_t>(buf.data() + 4, 900);
    store_le<uint16_t>(buf.data() + 2, 77);
    s = dispatch(buf.data(), buf.size(), [](const auto&) {});
    ASSERT_FALSE(s.ok());
    EXPECT_NE(message_of(s.error()).find("schemaId 900"), std::string::npos) << s.error().message();
    EXPECT_NE(message_of(s.error()).find("templateId 77"), std::string::npos) << s.error().message();
}

// W-16-2, A-39: templates 50-52 are SHM-only.
TEST(Dispatch, RefusesShmOnlyTemplatesOnTheWireButDispatchAllDecodesThem) {
    std::vector<uint8_t> th(192);
    control::TensorHeader::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(th.data(), th.size()));
    ASSERT_TRUE(e.finish().ok());
    int seen = 0;
    Status s = dispatch(th.data(), th.size(), [&](const auto&) { ++seen; });
    ASSERT_FALSE(s.ok());
    EXPECT_NE(message_of(s.error()).find("SHM-only"), std::string::npos) << s.error().message();
    EXPECT_TRUE(dispatch_all(th.data(), th.size(), [&](const control::TensorHeader::Decoder&) { ++seen; }).ok());
    EXPECT_EQ(seen, 1);
}

}  // namespace
}  // namespace tensorpool::wire
