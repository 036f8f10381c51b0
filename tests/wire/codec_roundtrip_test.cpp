// Generated codecs: encode -> decode round trips, the SBE layout the other implementations expect, and the
// encoder's ordering and capacity rules (docs/wire-codecs.md).
#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "tensorpool/wire/gen/control.hpp"
#include "tensorpool/wire/gen/discovery.hpp"
#include "tensorpool/wire/gen/bridge.hpp"
#include "tensorpool/wire/json.hpp"

namespace tensorpool::wire {
namespace {

using control::ShmPoolAnnounce;

std::vector<uint8_t> encode_announce(int pools) {
    std::vector<uint8_t> buf(1024, 0xAA);
    ShmPoolAnnounce::Encoder e;
    EXPECT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.streamId(10000).producerId(7).epoch(3).announceTimestampNs(123456789).announceClockDomain(
        control::ClockDomain::MONOTONIC);
    e.layoutVersion(1).headerNslots(8).headerSlotBytes(256);
    auto g = e.payloadPoolsCount(static_cast<size_t>(pools));
    for (int i = 0; i < pools; ++i) {
        std::string uri = "shm:file?path=/dev/shm/p" + std::to_string(i);
        g.next().poolId(static_cast<uint16_t>(i + 1)).poolNslots(8).strideBytes(64u << i).regionUri(uri);
    }
    e.headerRegionUri("shm:file?path=/dev/shm/header.ring");
    auto n = e.finish();
    EXPECT_TRUE(n.ok()) << n.error().message();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

TEST(Codec, AnnounceRoundTripsWithGroupsAndVarData) {
    auto buf = encode_announce(3);
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), buf.size());
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(d->streamId(), 10000u);
    EXPECT_EQ(d->epoch(), 3u);
    EXPECT_EQ(d->announceClockDomain(), control::ClockDomain::MONOTONIC);
    EXPECT_EQ(d->headerSlotBytes(), 256);
    EXPECT_EQ(d->encoded_length(), buf.size());
    auto pools = d->payloadPools();
    ASSERT_EQ(pools.size(), 3u);
    int i = 0;
    for (const auto& p : pools) {
        EXPECT_EQ(p.poolId(), i + 1);
        EXPECT_EQ(p.strideBytes(), 64u << i);
        EXPECT_EQ(p.regionUri(), "shm:file?path=/dev/shm/p" + std::to_string(i));
        ++i;
    }
    EXPECT_EQ(i, 3);
    EXPECT_EQ(d->headerRegionUri(), "shm:file?path=/dev/shm/header.ring");
}

// W-16-1, W-16-3, W-16-4, W-16-6, W-16-7, A-4: the 8-byte header, group dimensions, enum widths and field offsets of the schema.
TEST(Codec, HeaderAndFieldOffsetsFollowSbePackingWithoutAlignment) {
    auto buf = encode_announce(1);
    // message header: blockLength 35, templateId 1, schemaId 900, version 1
    EXPECT_EQ(load_le<uint16_t>(buf.data() + 0), 35);
    EXPECT_EQ(load_le<uint16_t>(buf.data() + 2), 1);
    EXPECT_EQ(load_le<uint16_t>(buf.data() + 4), 900);
    EXPECT_EQ(load_le<uint16_t>(buf.data() + 6), 1);
    const uint8_t* body = buf.data() + 8;
    EXPECT_EQ(load_le<uint64_t>(body + 8), 3u);   // epoch @8
    EXPECT_EQ(body[24], 1);                       // announceClockDomain @24
    EXPECT_EQ(load_le<uint32_t>(body + 25), 1u);  // layoutVersion @25 (odd offset)
    EXPECT_EQ(load_le<uint16_t>(body + 33), 256); // headerSlotBytes @33
    // group header right after the 35-byte block: blockLength 10, numInGroup 1
    EXPECT_EQ(load_le<uint16_t>(body + 35), 10);
    EXPECT_EQ(load_le<uint16_t>(body + 37), 1);

    uint8_t sb[64];
    control::ShmRegionSuperblock::Encoder s;
    ASSERT_TRUE(s.wrap_raw(sb, sizeof sb));
    s.magic(0x544F504C53484D31ull).epoch(0x0102030405060708ull).regionType(control::RegionType::PAYLOAD_POOL);
    ASSERT_TRUE(s.finish().ok());
    const uint8_t magic_bytes[] = {0x31, 0x4D, 0x48, 0x53, 0x4C, 0x50, 0x4F, 0x54};  // WIRE_SPEC A-1
    EXPECT_EQ(std::memcmp(sb, magic_bytes, 8), 0);
    EXPECT_EQ(load_le<uint64_t>(sb + 12), 0x0102030405060708ull);  // epoch @12
    EXPECT_EQ(load_le<int16_t>(sb + 24), 2);                       // regionType @24 (int16)
}

// W-8-2, W-15.8-1: maxDims is a constant (8) that takes no bytes.
TEST(Codec, FieldAttributesAreReadTheWaySbeReadsThem) {
    // nullValue on a <field> is ignored: traceId's codec null is UINT64_MAX (0 is an ordinary value).
    EXPECT_EQ(control::FrameDescriptor::Decoder::traceIdNullValue(), UINT64_MAX);
    // length on a <field> is ignored: SlotHeader.pad and TensorHeader.pad are single bytes; blocks are padded.
    EXPECT_EQ(control::SlotHeader::kBlockLength, 60);
    EXPECT_EQ(control::TensorHeader::kBlockLength, 184);
    EXPECT_EQ(control::TensorHeader::Decoder::maxDims(), 8);  // constant: no bytes on the wire
    EXPECT_EQ(control::TensorHeader::Decoder::dimsLength(), 8u);
    EXPECT_EQ(discovery::DiscoveryResponse::Results::kBlockLength, 39);
}

TEST(Codec, EncoderZeroFillsBlockAndPadding) {
    std::array<uint8_t, 192> buf;
    buf.fill(0xEE);
    control::TensorHeader::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    const int32_t dims[] = {2, 3};
    e.dtype(control::Dtype::FLOAT32).majorOrder(control::MajorOrder::ROW).ndims(2).dims(dims);
    auto n = e.finish();
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(*n, 192u);
    auto d = control::TensorHeader::Decoder::wrap(buf.data(), buf.size());
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->dims(0), 2);
    EXPECT_EQ(d->dims(1), 3);
    for (size_t i = 2; i < 8; ++i) EXPECT_EQ(d->dims(i), 0) << i;
    for (size_t off = 8 + 75; off < 192; ++off) EXPECT_EQ(buf[off], 0) << "padding byte " << off;
}

// W-10.1-3: absent var data is written with length 0.
TEST(Codec, SkippedMembersAreWrittenEmpty) {
    std::vector<uint8_t> buf(256);
    ShmPoolAnnounce::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.headerRegionUri("shm:file?path=/x");  // payloadPools never written: count 0
    auto n = e.finish();
    ASSERT_TRUE(n.ok()) << n.error().message();
    auto d = ShmPoolAnnounce::Decoder::wrap(buf.data(), *n);
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_TRUE(d->payloadPools().empty());
    EXPECT_EQ(d->headerRegionUri(), "shm:file?path=/x");

    ShmPoolAnnounce::Encoder bare;
    ASSERT_TRUE(bare.wrap_and_apply_header(buf.data(), buf.size()));
    auto m = bare.finish();  // nothing but the block: an empty group and an empty string are appended
    ASSERT_TRUE(m.ok());
    EXPECT_EQ(*m, 8u + 35u + 4u + 4u);
}

TEST(Codec, EncoderRefusesOutOfOrderAndDoubleWrites) {
    std::vector<uint8_t> buf(256);
    ShmPoolAnnounce::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.headerRegionUri("a");
    e.payloadPoolsCount(0);  // the group precedes the var data in the schema
    auto n = e.finish();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(std::string(n.error().message()).find("payloadPools"), std::string::npos) << n.error().message();

    ShmPoolAnnounce::Encoder twice;
    ASSERT_TRUE(twice.wrap_and_apply_header(buf.data(), buf.size()));
    twice.headerRegionUri("a").headerRegionUri("b");
    EXPECT_FALSE(twice.finish().ok());
}

TEST(Codec, EncoderCountsGroupEntries) {
    std::vector<uint8_t> buf(256);
    ShmPoolAnnounce::Encoder fewer;
    ASSERT_TRUE(fewer.wrap_and_apply_header(buf.data(), buf.size()));
    auto g = fewer.payloadPoolsCount(2);
    g.next().poolId(1);
    auto n = fewer.finish();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(std::string(n.error().message()).find("2 entries declared but 1 written"), std::string::npos)
        << n.error().message();

    ShmPoolAnnounce::Encoder more;
    ASSERT_TRUE(more.wrap_and_apply_header(buf.data(), buf.size()));
    auto g2 = more.payloadPoolsCount(1);
    g2.next();
    g2.next();
    EXPECT_FALSE(more.finish().ok());
}

TEST(Codec, StaleEntryEncoderIsRefused) {
    std::vector<uint8_t> buf(256);
    ShmPoolAnnounce::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    auto g = e.payloadPoolsCount(2);
    auto first = g.next();
    auto second = g.next();
    second.regionUri("b");
    first.regionUri("a");  // would land inside the second entry: refused
    auto n = e.finish();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(std::string(n.error().message()).find("regionUri"), std::string::npos) << n.error().message();
}

TEST(Codec, EncoderNeverWritesPastTheBuffer) {
    std::vector<uint8_t> buf(80, 0x55);
    const size_t cap = 60;  // header + block + group header fit; the URIs do not
    ShmPoolAnnounce::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), cap));
    e.payloadPoolsCount(1).next().regionUri(std::string(100, 'x'));
    auto n = e.finish();
    ASSERT_FALSE(n.ok());
    EXPECT_EQ(n.error().code(), Errc::capacity);
    for (size_t i = cap; i < buf.size(); ++i) ASSERT_EQ(buf[i], 0x55) << "byte " << i << " written past capacity";

    ShmPoolAnnounce::Encoder tiny;
    Status s = tiny.wrap_and_apply_header(buf.data(), 20);
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.error().code(), Errc::capacity);
}

TEST(Codec, VarDataLongerThanTheSchemaMaximumIsRefused) {
    std::vector<uint8_t> buf(2048);
    bridge::BridgeFrameChunk::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    std::vector<uint8_t> header(257);
    e.headerBytes(std::span<const uint8_t>(header));
    auto n = e.finish();
    ASSERT_FALSE(n.ok());
    EXPECT_NE(std::string(n.error().message()).find("256"), std::string::npos) << n.error().message();
}

TEST(Codec, DiscoveryTagsAreHandCodedLengthPrefixedEntries) {
    std::vector<uint8_t> buf(1024);
    discovery::DiscoveryResponse::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.requestId(77).status(discovery::DiscoveryStatus::OK);
    auto results = e.resultsCount(1);
    auto r = results.next();
    r.streamId(10).dataSourceId(UINT64_MAX).driverControlStreamId(1000);
    r.payloadPoolsCount(1).next().poolId(1).poolNslots(8).strideBytes(64).regionUri("shm:file?path=/p");
    auto tags = r.tagsCount(2);
    tags.next().tag("camera");
    tags.next().tag("lab1");
    r.headerRegionUri("shm:file?path=/h").dataSourceName("cam0");
    e.errorMessage("");
    auto n = e.finish();
    ASSERT_TRUE(n.ok()) << n.error().message();

    auto d = discovery::DiscoveryResponse::Decoder::wrap(buf.data(), *n);
    ASSERT_TRUE(d.ok()) << d.error().message();
    ASSERT_EQ(d->results().size(), 1u);
    const auto& res = *d->results().begin();
    EXPECT_TRUE(res.dataSourceIdIsNull());
    std::vector<std::string> seen;
    for (const auto& t : res.tags()) seen.emplace_back(t.tag());
    EXPECT_EQ(seen, (std::vector<std::string>{"camera", "lab1"}));
    EXPECT_EQ(res.headerRegionUri(), "shm:file?path=/h");
    EXPECT_EQ(res.dataSourceName(), "cam0");

    // The tags group on the wire: blockLength 0, count 2, then u32 length + bytes per entry (SERVICES_SPEC §2.2).
    const std::string wire(reinterpret_cast<const char*>(buf.data()), *n);
    const std::string expect_tags = std::string("\x00\x00\x02\x00", 4) + std::string("\x06\x00\x00\x00", 4) +
                                    "camera" + std::string("\x04\x00\x00\x00", 4) + "lab1";
    EXPECT_NE(wire.find(expect_tags), std::string::npos);
}

}  // namespace
}  // namespace tensorpool::wire

// W-15.8-4, W-15.8-3: the Dtype and MajorOrder registries are frozen for v1.x (WIRE_SPEC §8): every value, the
// unassigned 12 that must never be read as a type, and the int16 encoding. A schema edit that renumbered one would
// make frames of other implementations misread, so the generated enums are pinned here value by value.
TEST(Codec, W_15_8_4_DtypeAndMajorOrderValuesAreFrozen) {
    using tensorpool::wire::control::Dtype;
    using tensorpool::wire::control::MajorOrder;
    static_assert(std::is_same_v<std::underlying_type_t<Dtype>, int16_t>);
    static_assert(std::is_same_v<std::underlying_type_t<MajorOrder>, int16_t>);
    const std::pair<Dtype, int> dtypes[] = {
        {Dtype::UNKNOWN, 0}, {Dtype::UINT8, 1},   {Dtype::INT8, 2},    {Dtype::UINT16, 3},   {Dtype::INT16, 4},
        {Dtype::UINT32, 5},  {Dtype::INT32, 6},   {Dtype::UINT64, 7},  {Dtype::INT64, 8},    {Dtype::FLOAT32, 9},
        {Dtype::FLOAT64, 10}, {Dtype::BOOLEAN, 11}, {Dtype::BYTES, 13}, {Dtype::BIT, 14}};
    for (const auto& [d, v] : dtypes) {
        EXPECT_EQ(static_cast<int>(d), v) << tensorpool::wire::control::name_of(d);
        EXPECT_TRUE(tensorpool::wire::control::is_valid(d)) << v;
    }
    EXPECT_FALSE(tensorpool::wire::control::is_valid(static_cast<Dtype>(12))) << "12 is unassigned";
    EXPECT_FALSE(tensorpool::wire::control::is_valid(static_cast<Dtype>(15)));
    EXPECT_EQ(static_cast<int>(MajorOrder::UNKNOWN), 0);
    EXPECT_EQ(static_cast<int>(MajorOrder::ROW), 1);
    EXPECT_EQ(static_cast<int>(MajorOrder::COLUMN), 2);
    EXPECT_FALSE(tensorpool::wire::control::is_valid(static_cast<MajorOrder>(3)));
}
