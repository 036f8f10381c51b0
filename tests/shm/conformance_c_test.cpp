// Interoperability with the C implementation: its header.ring and 1.pool (tests/conformance/shm/c-nodriver-e3)
// open, validate and read exactly as expected.json says, and our encoders reproduce its slot bytes exactly.
// W-6-*, W-7-2, W-7-5, W-8-*, W-9-1, W-15.1-1, W-15.5-1, A-1, A-15.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "shm_test_support.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/slot_image.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;
using Json = nlohmann::json;

namespace {

const std::string kDir = TENSORPOOL_CONFORMANCE_SHM_DIR;

Json expected() {
    std::ifstream in(kDir + "/expected.json");
    return Json::parse(in);
}

AllowedDirs conformance_dir() {
    auto a = AllowedDirs::create({kDir});
    if (!a.ok()) throw std::runtime_error(a.error().message());
    return std::move(*a);
}

void expect_superblock(const Superblock& sb, const Json& e) {
    EXPECT_EQ(sb.magic, e["magic"].get<std::uint64_t>());
    EXPECT_EQ(sb.layout_version, e["layoutVersion"].get<std::uint32_t>());
    EXPECT_EQ(sb.epoch, e["epoch"].get<std::uint64_t>());
    EXPECT_EQ(sb.stream_id, e["streamId"].get<std::uint32_t>());
    EXPECT_EQ(static_cast<int>(sb.region_type), e["regionType"].get<int>());
    EXPECT_EQ(sb.pool_id, e["poolId"].get<std::uint16_t>());
    EXPECT_EQ(sb.nslots, e["nslots"].get<std::uint32_t>());
    EXPECT_EQ(sb.slot_bytes, e["slotBytes"].get<std::uint32_t>());
    EXPECT_EQ(sb.stride_bytes, e["strideBytes"].get<std::uint32_t>());
    EXPECT_EQ(sb.pid, e["pid"].get<std::uint64_t>());
    EXPECT_EQ(sb.start_timestamp_ns, e["startTimestampNs"].get<std::uint64_t>());
    EXPECT_EQ(sb.activity_timestamp_ns, e["activityTimestampNs"].get<std::uint64_t>());
}

std::string hex(const std::byte* p, std::size_t n) {
    static const char* digits = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        const auto b = static_cast<unsigned>(p[i]);
        s += digits[b >> 4];
        s += digits[b & 15];
    }
    return s;
}

}  // namespace

TEST(ConformanceC, W_7_2_HeaderRingValidatesAgainstItsAnnounce) {
    const Json e = expected();
    const Json& ring = e["headerRing"];
    auto r = map_region(kDir + "/header.ring", conformance_dir(),
                        SuperblockExpectations::for_header_ring(ring["streamId"], ring["epoch"], ring["nslots"]));
    ASSERT_TRUE(r.ok()) << r.error().message();
    expect_superblock(r->superblock(), ring);
}

TEST(ConformanceC, W_7_10_PoolValidatesAgainstItsAnnounce) {
    const Json e = expected();
    const Json& pool = e["pool"];
    auto r = map_region("shm:file?path=" + kDir + "/1.pool|require_hugepages=false", conformance_dir(),
                        SuperblockExpectations::for_pool(pool["streamId"], pool["epoch"], pool["poolId"],
                                                         e["headerRing"]["nslots"], pool["strideBytes"]));
    ASSERT_TRUE(r.ok()) << r.error().message();
    expect_superblock(r->superblock(), pool);
}

TEST(ConformanceC, W_8_27_EveryCommittedSlotReadsAsExpected) {
    const Json e = expected();
    const Json& ring_e = e["headerRing"];
    const Json& pool_e = e["pool"];
    const auto allowed = conformance_dir();
    auto ring = map_region(kDir + "/header.ring", allowed,
                           SuperblockExpectations::for_header_ring(ring_e["streamId"], ring_e["epoch"], ring_e["nslots"]));
    auto pool = map_region(kDir + "/1.pool", allowed,
                           SuperblockExpectations::for_pool(pool_e["streamId"], pool_e["epoch"], pool_e["poolId"],
                                                            ring_e["nslots"], pool_e["strideBytes"]));
    ASSERT_TRUE(ring.ok() && pool.ok());
    auto rv = HeaderRingView::over(*ring);
    auto pv = PayloadPoolView::over(*pool);
    ASSERT_TRUE(rv.ok() && pv.ok());
    const PoolInfo pools[] = {{pv->pool_id(), pv->stride_bytes()}};

    ASSERT_EQ(e["committedSlots"].size(), 8u);
    for (const Json& s : e["committedSlots"]) {
        const std::uint64_t seq = s["seq"];
        SCOPED_TRACE("seq " + std::to_string(seq));
        ReadTicket t;
        ASSERT_EQ(rv->begin_read(seq, t), ReadBegin::ok);
        ASSERT_EQ(rv->index_of(seq), s["index"].get<std::uint32_t>());
        auto c = validate_slot(t.header(), rv->index_of(seq), pools);
        ASSERT_TRUE(c.ok()) << c.error().message();
        EXPECT_EQ(c->seq, seq);
        EXPECT_EQ(c->values_len_bytes, s["valuesLenBytes"].get<std::uint32_t>());
        EXPECT_EQ(c->payload_slot, s["payloadSlot"].get<std::uint32_t>());
        EXPECT_EQ(c->pool_id, s["poolId"].get<std::uint16_t>());
        EXPECT_EQ(c->payload_offset, s["payloadOffset"].get<std::uint32_t>());
        EXPECT_EQ(c->timestamp_ns, s["timestampNs"].get<std::uint64_t>());
        EXPECT_EQ(c->meta_version, s["metaVersion"].get<std::uint32_t>());
        EXPECT_EQ(c->header_bytes_length, s["headerBytesLength"].get<std::uint32_t>());
        EXPECT_EQ(c->embedded_block_length, s["embeddedHeader"]["blockLength"].get<std::uint16_t>());
        EXPECT_EQ(c->embedded_template_id, s["embeddedHeader"]["templateId"].get<std::uint16_t>());
        EXPECT_EQ(c->embedded_schema_id, s["embeddedHeader"]["schemaId"].get<std::uint16_t>());
        EXPECT_EQ(c->embedded_version, s["embeddedHeader"]["version"].get<std::uint16_t>());
        EXPECT_EQ(static_cast<int>(c->tensor.dtype), s["dtype"].get<int>());
        EXPECT_EQ(static_cast<int>(c->tensor.major_order), s["majorOrder"].get<int>());
        ASSERT_EQ(c->tensor.ndims, s["ndims"].get<std::uint8_t>());
        for (std::size_t k = 0; k < c->tensor.ndims; ++k) {
            EXPECT_EQ(c->tensor.dims[k], s["dims"][k].get<std::int32_t>());
            EXPECT_EQ(c->tensor.strides[k], s["strides"][k].get<std::int32_t>());
        }
        // Zero-copy read of the payload, proven untorn afterwards.
        const std::string payload = hex(pv->payload(c->payload_slot), c->values_len_bytes);
        ASSERT_TRUE(t.still_valid());
        EXPECT_EQ(payload, s["payloadHex"].get<std::string>());
    }
}

// W-6-2, W-8-5, W-16-6: byte for byte the C reference's little-endian, headerless slots.
TEST(ConformanceC, W_8_24_OurEncoderReproducesTheCSlotsByteForByte) {
    const auto bytes = test::read_file(kDir + "/header.ring");
    const Json e = expected();
    const std::uint32_t nslots = e["headerRing"]["nslots"];
    ASSERT_GE(bytes.size(), 64u + nslots * 256u);
    for (std::uint32_t i = 0; i < nslots; ++i) {
        SCOPED_TRACE("slot " + std::to_string(i));
        SlotImage theirs;
        std::memcpy(theirs.data(), bytes.data() + header_slot_offset(i), 256);
        auto c = decode_slot_image(theirs);
        ASSERT_TRUE(c.ok()) << c.error().message();
        FrameDescription f;
        f.seq = c->seq;
        f.values_len_bytes = c->values_len_bytes;
        f.pool_id = c->pool_id;
        f.timestamp_ns = c->timestamp_ns;
        f.meta_version = c->meta_version;
        f.tensor = c->tensor;
        SlotImage ours;
        ASSERT_TRUE(encode_slot_image(f, nslots, ours).ok());
        EXPECT_EQ(std::memcmp(ours.data(), theirs.data(), 256), 0) << "our slot image differs from the C one";
    }
}
