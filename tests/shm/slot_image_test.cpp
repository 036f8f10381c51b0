// Slot image encode -> validate round trip and every drop rule: WIRE_SPEC §2.3, §3.4, W-8-*, W-9-6, A-6, A-7,
// Byte offsets below are the spec's, written out independently of the codec.
#include <gtest/gtest.h>

#include <cstring>

#include "tensorpool/shm/slot_image.hpp"

using namespace tensorpool;
using namespace tensorpool::shm;

namespace {

constexpr std::uint32_t kNslots = 8;
const PoolInfo kPools[] = {{1, 64}, {2, 4096}};

FrameDescription float_2x2(std::uint64_t seq = 9) {
    FrameDescription f;
    f.seq = seq;
    f.values_len_bytes = 16;
    f.pool_id = 1;
    f.timestamp_ns = 2115995711676ull;
    f.meta_version = 7;
    f.tensor.dtype = Dtype::FLOAT32;
    f.tensor.major_order = MajorOrder::ROW;
    f.tensor.ndims = 2;
    f.tensor.dims = {2, 2};
    f.tensor.strides = {8, 4};
    return f;
}

SlotImage encode(const FrameDescription& f) {
    SlotImage img;
    auto s = encode_slot_image(f, kNslots, img);
    EXPECT_TRUE(s.ok()) << s.error().message();
    return img;
}

template <class T>
void put(SlotImage& img, std::size_t off, T v) {
    std::memcpy(img.data() + off, &v, sizeof v);
}
template <class T>
T get(const SlotImage& img, std::size_t off) {
    T v;
    std::memcpy(&v, img.data() + off, sizeof v);
    return v;
}

void expect_dropped(const SlotImage& img, std::uint32_t index, const char* needle) {
    auto r = validate_slot(img, index, kPools);
    ASSERT_FALSE(r.ok()) << "expected a drop mentioning '" << needle << "'";
    EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos)
        << "message '" << r.error().message() << "' does not mention '" << needle << "'";
}

void expect_dropped(const FrameDescription& f, const char* needle) {
    expect_dropped(encode(f), header_index(f.seq, kNslots), needle);
}

Result<SlotContents> accept(const FrameDescription& f) {
    return validate_slot(encode(f), header_index(f.seq, kNslots), kPools);
}

}  // namespace

// W-8-5 (no message header on the slot), W-15.5-2, W-16-4, W-16-5, A-3 (unaligned fields at their schema offsets), A-4.
TEST(SlotImage, W_8_4_EncodesAtTheSpecOffsets) {
    const SlotImage img = encode(float_2x2(9));
    EXPECT_EQ(get<std::uint64_t>(img, 0), (9u << 1) | 1u);  // seq_commit: COMMITTED seq 9
    EXPECT_EQ(get<std::uint32_t>(img, 8), 16u);             // valuesLenBytes
    EXPECT_EQ(get<std::uint32_t>(img, 12), 1u);             // payloadSlot = 9 & 7
    EXPECT_EQ(get<std::uint16_t>(img, 16), 1u);             // poolId
    EXPECT_EQ(get<std::uint32_t>(img, 18), 0u);             // payloadOffset
    EXPECT_EQ(get<std::uint64_t>(img, 22), 2115995711676ull);
    EXPECT_EQ(get<std::uint32_t>(img, 30), 7u);             // metaVersion
    for (std::size_t i = 34; i < 60; ++i) EXPECT_EQ(get<std::uint8_t>(img, i), 0u) << "SlotHeader pad " << i;
    EXPECT_EQ(get<std::uint32_t>(img, 60), 192u);           // headerBytes length (W-8-7)
    EXPECT_EQ(get<std::uint16_t>(img, 64), 184u);           // embedded blockLength
    EXPECT_EQ(get<std::uint16_t>(img, 66), 52u);            // templateId
    EXPECT_EQ(get<std::uint16_t>(img, 68), 900u);           // schemaId
    EXPECT_EQ(get<std::uint16_t>(img, 70), 1u);             // version
    EXPECT_EQ(get<std::int16_t>(img, 72), 9);               // dtype FLOAT32
    EXPECT_EQ(get<std::int16_t>(img, 74), 1);               // majorOrder ROW
    EXPECT_EQ(get<std::uint8_t>(img, 76), 2u);              // ndims
    EXPECT_EQ(get<std::uint8_t>(img, 77), 0u);              // padAlign
    EXPECT_EQ(get<std::uint8_t>(img, 78), 0u);              // progressUnit NONE
    EXPECT_EQ(get<std::uint32_t>(img, 79), 0u);             // progressStrideBytes
    EXPECT_EQ(get<std::int32_t>(img, 83), 2);               // dims[0]
    EXPECT_EQ(get<std::int32_t>(img, 87), 2);               // dims[1]
    EXPECT_EQ(get<std::int32_t>(img, 115), 8);              // strides[0]
    EXPECT_EQ(get<std::int32_t>(img, 119), 4);              // strides[1]
    for (std::size_t i = 147; i < 256; ++i) EXPECT_EQ(get<std::uint8_t>(img, i), 0u) << "TensorHeader pad " << i;
}

TEST(SlotImage, W_8_13_DimsAndStridesBeyondNdimsAreZero) {
    FrameDescription f = float_2x2();
    f.tensor.dims = {2, 2, 99, 99, 99, 99, 99, 99};  // garbage the producer forgot to clear
    f.tensor.strides = {8, 4, 77, 77, 77, 77, 77, 77};
    const SlotImage img = encode(f);
    for (std::size_t k = 2; k < 8; ++k) {
        EXPECT_EQ(get<std::int32_t>(img, 83 + 4 * k), 0) << "dims[" << k << "]";
        EXPECT_EQ(get<std::int32_t>(img, 115 + 4 * k), 0) << "strides[" << k << "]";
    }
}

// W-15.18-1: step 6 of the producer's algorithm.
TEST(SlotImage, W_8_24_EveryByteIsRewritten) {
    // Encoding into an image full of 0xFF leaves no stale byte: reserved and pad bytes come out zero.
    SlotImage dirty;
    std::memset(dirty.data(), 0xFF, sizeof dirty.bytes);
    ASSERT_TRUE(encode_slot_image(float_2x2(), kNslots, dirty).ok());
    const SlotImage clean = encode(float_2x2());
    EXPECT_EQ(std::memcmp(dirty.data(), clean.data(), 256), 0);
}

TEST(SlotImage, RoundTripsThroughValidation) {
    auto c = accept(float_2x2(9));
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->seq, 9u);
    EXPECT_EQ(c->commit_word, 19u);
    EXPECT_EQ(c->values_len_bytes, 16u);
    EXPECT_EQ(c->payload_slot, 1u);
    EXPECT_EQ(c->pool_id, 1u);
    EXPECT_EQ(c->payload_offset, 0u);
    EXPECT_EQ(c->timestamp_ns, 2115995711676ull);
    EXPECT_EQ(c->meta_version, 7u);
    EXPECT_EQ(c->header_bytes_length, 192u);
    EXPECT_EQ(c->embedded_block_length, 184u);
    EXPECT_EQ(c->embedded_template_id, 52u);
    EXPECT_EQ(c->embedded_schema_id, 900u);
    EXPECT_EQ(c->embedded_version, 1u);
    EXPECT_EQ(c->tensor.dtype, Dtype::FLOAT32);
    EXPECT_EQ(c->tensor.major_order, MajorOrder::ROW);
    EXPECT_EQ(c->tensor.ndims, 2u);
    EXPECT_EQ(c->tensor.dims[0], 2);
    EXPECT_EQ(c->tensor.strides[1], 4);
    EXPECT_EQ(c->resolved_strides[0], 8);
    EXPECT_EQ(c->element_bytes, 4u);
    EXPECT_EQ(c->tensor_extent_bytes, 16u);
}

TEST(SlotImage, EncodeRefusesWhatCannotBeEncoded) {
    FrameDescription f = float_2x2();
    SlotImage img;
    f.tensor.ndims = 9;
    EXPECT_FALSE(encode_slot_image(f, kNslots, img).ok());
    EXPECT_FALSE(encode_slot_image(float_2x2(), 6, img).ok());
    EXPECT_FALSE(encode_slot_image(float_2x2(), 0, img).ok());
}

TEST(SlotImage, A_29_ElementSizes) {
    for (Dtype d : {Dtype::UINT8, Dtype::INT8, Dtype::BOOLEAN, Dtype::BYTES, Dtype::BIT}) {
        EXPECT_EQ(dtype_element_bytes(d), 1u);
    }
    for (Dtype d : {Dtype::UINT16, Dtype::INT16}) EXPECT_EQ(dtype_element_bytes(d), 2u);
    for (Dtype d : {Dtype::UINT32, Dtype::INT32, Dtype::FLOAT32}) EXPECT_EQ(dtype_element_bytes(d), 4u);
    for (Dtype d : {Dtype::UINT64, Dtype::INT64, Dtype::FLOAT64}) EXPECT_EQ(dtype_element_bytes(d), 8u);
    EXPECT_EQ(dtype_element_bytes(Dtype::UNKNOWN), 0u);
    EXPECT_EQ(dtype_element_bytes(static_cast<Dtype>(12)), 0u);
}

TEST(SlotImage, A_29_InfersZeroStridesRowMajor) {
    FrameDescription f = float_2x2();
    f.tensor.ndims = 3;
    f.tensor.dims = {2, 3, 4};
    f.tensor.strides = {};
    f.values_len_bytes = 64;
    f.pool_id = 2;
    auto c = accept(f);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->resolved_strides[0], 48);
    EXPECT_EQ(c->resolved_strides[1], 16);
    EXPECT_EQ(c->resolved_strides[2], 4);
    EXPECT_EQ(c->tensor_extent_bytes, 96u);
}

TEST(SlotImage, A_29_InfersZeroStridesColumnMajor) {
    FrameDescription f = float_2x2();
    f.tensor.major_order = MajorOrder::COLUMN;
    f.tensor.ndims = 3;
    f.tensor.dims = {2, 3, 4};
    f.tensor.strides = {};
    auto c = accept(f);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->resolved_strides[0], 4);
    EXPECT_EQ(c->resolved_strides[1], 8);
    EXPECT_EQ(c->resolved_strides[2], 24);
}

TEST(SlotImage, A_29_MixesExplicitAndInferredStrides) {
    FrameDescription f = float_2x2();
    f.tensor.ndims = 3;
    f.tensor.dims = {2, 3, 4};
    f.tensor.strides = {0, 32, 0};  // padded rows: 32 >= 16
    auto c = accept(f);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->resolved_strides[2], 4);
    EXPECT_EQ(c->resolved_strides[1], 32);
    EXPECT_EQ(c->resolved_strides[0], 96);
}

TEST(SlotImage, A_29_ZeroDimCountsAsOneForInference) {
    FrameDescription f = float_2x2();
    f.tensor.dims = {3, 0};
    f.tensor.strides = {};
    f.values_len_bytes = 0;
    auto c = accept(f);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->resolved_strides[0], 4);  // stride[1] * max(dims[1], 1)
    EXPECT_EQ(c->tensor_extent_bytes, 0u);
}

// W-15.18-3, W-15.21-3.
TEST(SlotImage, W_8_7_DropsWrongHeaderBytesLength) {
    SlotImage img = encode(float_2x2());
    put<std::uint32_t>(img, 60, 191);
    expect_dropped(img, 1, "headerBytes length is 191; expected 192");
    put<std::uint32_t>(img, 60, 193);  // would run past the slot: the decoder refuses it
    expect_dropped(img, 1, "headerBytes");
    put<std::uint32_t>(img, 60, 0xFFFFFFFF);
    expect_dropped(img, 1, "headerBytes");
}

// W-15.18-3, W-15.21-3.
TEST(SlotImage, W_8_28_DropsWrongTemplateId) {
    SlotImage img = encode(float_2x2());
    put<std::uint16_t>(img, 66, 51);
    expect_dropped(img, 1, "templateId is 51; expected 52");
}

// W-15.21-3.
TEST(SlotImage, W_8_29_DropsWrongSchemaIdOrVersion) {
    SlotImage img = encode(float_2x2());
    put<std::uint16_t>(img, 68, 901);
    expect_dropped(img, 1, "schemaId is 901; expected 900");
    img = encode(float_2x2());
    put<std::uint16_t>(img, 70, 2);
    expect_dropped(img, 1, "version is 2; expected 1");
}

TEST(SlotImage, W_8_7_DropsWrongEmbeddedBlockLength) {
    SlotImage img = encode(float_2x2());
    put<std::uint16_t>(img, 64, 183);
    expect_dropped(img, 1, "blockLength is 183; expected 184");
    img = encode(float_2x2());
    put<std::uint16_t>(img, 64, 185);
    expect_dropped(img, 1, "blockLength is 185; expected 184");
}

// W-15.8-1: MAX_DIMS is 8.
TEST(SlotImage, W_8_11_DropsNdimsOutOfRange) {
    FrameDescription f = float_2x2();
    f.tensor.ndims = 0;
    expect_dropped(f, "ndims is 0; expected 1..8");
    SlotImage img = encode(float_2x2());
    put<std::uint8_t>(img, 76, 9);
    expect_dropped(img, 1, "ndims is 9; expected 1..8");
    f = float_2x2();
    f.tensor.ndims = 8;
    f.tensor.dims = {1, 1, 1, 1, 1, 1, 2, 2};
    f.tensor.strides = {};
    EXPECT_TRUE(accept(f).ok());
}

TEST(SlotImage, W_8_12_DropsNonZeroPayloadOffset) {
    SlotImage img = encode(float_2x2());
    put<std::uint32_t>(img, 18, 64);
    expect_dropped(img, 1, "payloadOffset is 64; expected 0");
}

TEST(SlotImage, W_15_8_2_DropsUnknownDtype) {
    FrameDescription f = float_2x2();
    f.tensor.dtype = Dtype::UNKNOWN;
    expect_dropped(f, "dtype is 0 (UNKNOWN)");
    f.tensor.dtype = static_cast<Dtype>(12);
    expect_dropped(f, "dtype is 12");
    f.tensor.dtype = static_cast<Dtype>(-3);
    expect_dropped(f, "dtype is -3");
}

TEST(SlotImage, W_15_8_2_DropsUnknownMajorOrder) {
    FrameDescription f = float_2x2();
    f.tensor.major_order = MajorOrder::UNKNOWN;
    expect_dropped(f, "majorOrder is 0 (UNKNOWN)");
    f.tensor.major_order = static_cast<MajorOrder>(3);
    expect_dropped(f, "majorOrder is 3");
}

TEST(SlotImage, W_8_15_DropsNegativeStridesAndDims) {
    FrameDescription f = float_2x2();
    f.tensor.strides = {-8, 4};
    expect_dropped(f, "strides[0] is -8");
    f = float_2x2();
    f.tensor.dims = {2, -1};
    expect_dropped(f, "dims[1] is -1");
}

TEST(SlotImage, W_8_16_DropsOverlappingStridesRowMajor) {
    FrameDescription f = float_2x2();
    f.tensor.strides = {4, 4};  // rows overlap: row stride must be >= 2 * 4
    expect_dropped(f, "strides[0] is 4; expected 0 or >= 8");
    f.tensor.strides = {8, 2};  // innermost smaller than one FLOAT32
    expect_dropped(f, "strides[1] is 2; expected 0 or >= 4");
}

TEST(SlotImage, W_8_16_DropsStridesContradictingMajorOrder) {
    // Column-major strides labelled ROW: the last dim's stride (8) is the outer one, which ROW forbids.
    FrameDescription f = float_2x2();
    f.tensor.strides = {4, 8};
    expect_dropped(f, "strides[0] is 4; expected 0 or >= 16");
    // The same strides are fine when labelled COLUMN.
    f.tensor.major_order = MajorOrder::COLUMN;
    EXPECT_TRUE(accept(f).ok());
    f.tensor.strides = {8, 4};  // row-major strides labelled COLUMN
    expect_dropped(f, "strides[1] is 4; expected 0 or >= 16");
}

TEST(SlotImage, A_6_ProgressStrideIgnoredWhenUnitIsNone) {
    FrameDescription f = float_2x2();
    f.tensor.progress_unit = ProgressUnit::NONE;
    f.tensor.progress_stride_bytes = 12345;
    EXPECT_TRUE(accept(f).ok());
}

TEST(SlotImage, W_8_17_DropsZeroOrWrongProgressStride) {
    FrameDescription f = float_2x2();
    f.tensor.progress_unit = ProgressUnit::ROWS;
    f.tensor.progress_stride_bytes = 0;
    expect_dropped(f, "progressStrideBytes is 0");
    f.tensor.progress_stride_bytes = 4;
    expect_dropped(f, "progressStrideBytes is 4; expected strides[0] = 8");
    f.tensor.progress_stride_bytes = 8;
    EXPECT_TRUE(accept(f).ok());
}

TEST(SlotImage, A_7_ProgressColumnsUsesStrides1) {
    FrameDescription f = float_2x2();
    f.tensor.progress_unit = ProgressUnit::COLUMNS;
    f.tensor.progress_stride_bytes = 4;
    EXPECT_TRUE(accept(f).ok());
    f.tensor.progress_stride_bytes = 8;
    expect_dropped(f, "expected strides[1] = 4");
    f.tensor.ndims = 1;
    f.tensor.dims = {4};
    f.tensor.strides = {};
    expect_dropped(f, "COLUMNS with ndims 1; expected ndims >= 2");
}

TEST(SlotImage, W_8_8_ProgressStrideMatchesInferredStrides) {
    FrameDescription f = float_2x2();
    f.tensor.strides = {};  // inferred: {8, 4}
    f.tensor.progress_unit = ProgressUnit::ROWS;
    f.tensor.progress_stride_bytes = 8;
    EXPECT_TRUE(accept(f).ok());
}

TEST(SlotImage, W_15_8_2_DropsUnknownProgressUnit) {
    FrameDescription f = float_2x2();
    f.tensor.progress_unit = static_cast<ProgressUnit>(3);
    f.tensor.progress_stride_bytes = 8;
    expect_dropped(f, "progressUnit is 3");
}

// W-10.2.1-12, W-15.5-2, W-15.20-2.
TEST(SlotImage, W_8_22_DropsPayloadSlotOtherThanHeaderIndex) {
    const SlotImage img = encode(float_2x2(9));  // payloadSlot 1
    expect_dropped(img, 2, "payloadSlot is 1; expected the header index 2");
    SlotImage patched = img;
    put<std::uint32_t>(patched, 12, 9);  // out of range for 8 slots
    expect_dropped(patched, 1, "payloadSlot is 9; expected the header index 1");
}

TEST(SlotImage, A_28_DropsUnknownPoolId) {
    FrameDescription f = float_2x2();
    f.pool_id = 3;
    expect_dropped(f, "poolId is 3; expected the id of a mapped pool");
    EXPECT_TRUE(validate_slot_header(encode(f), 1).ok());  // the pool-free checks alone accept it
}

// W-10.2.1-13.
TEST(SlotImage, W_9_3_DropsValuesLongerThanThePoolStride) {
    FrameDescription f = float_2x2();
    f.values_len_bytes = 65;
    expect_dropped(f, "valuesLenBytes is 65; expected <= stride_bytes 64 of pool 1");
    f.values_len_bytes = 64;
    EXPECT_TRUE(accept(f).ok());
}

TEST(SlotImage, W_8_21_EmptyFrameIsValid) {
    FrameDescription f = float_2x2(12);
    f.values_len_bytes = 0;
    auto c = accept(f);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->values_len_bytes, 0u);
    EXPECT_EQ(c->payload_slot, 4u);  // W-8-22: still the header index
}

TEST(SlotImage, W_8_14_IgnoresDimsAndStridesBeyondNdims) {
    SlotImage img = encode(float_2x2());
    put<std::int32_t>(img, 83 + 4 * 5, -7);   // dims[5]
    put<std::int32_t>(img, 115 + 4 * 7, -9);  // strides[7]
    auto c = validate_slot(img, 1, kPools);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ(c->resolved_strides[7], 0);
}

TEST(SlotImage, W_8_6_W_8_18_IgnoresPadBytes) {
    SlotImage img = encode(float_2x2());
    for (std::size_t i = 34; i < 60; ++i) put<std::uint8_t>(img, i, 0xAB);    // SlotHeader.pad
    put<std::uint8_t>(img, 77, 0xCD);                                           // padAlign
    for (std::size_t i = 147; i < 256; ++i) put<std::uint8_t>(img, i, 0xEF);  // TensorHeader.pad
    EXPECT_TRUE(validate_slot(img, 1, kPools).ok());
}

TEST(SlotImage, RejectsOverflowingLayouts) {
    FrameDescription f = float_2x2();
    f.tensor.ndims = 8;
    f.tensor.dims = {0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF, 0x7FFFFFFF};
    f.tensor.strides = {};
    expect_dropped(f, "overflow");
}

// The consumer's per-frame validator reuses the decode of the last slot that passed while the tensor part (bytes
// 60..146) is byte-identical. Every byte of that part must be compared, the first and the last included, no
// padding byte around it may matter, and the per-frame SlotHeader rules still apply on the reuse path.
TEST(SlotValidator, ReusesADecodeOnlyForAnIdenticalTensorPartAndStillChecksEveryFrame) {
    FrameDescription f = float_2x2(9);
    f.tensor.ndims = 8;  // every dims/strides entry counts, so the last tensor byte (146, strides[7]) is live
    f.tensor.dims = {1, 1, 1, 1, 1, 1, 2, 2};
    f.tensor.strides = {0, 0, 0, 0, 0, 0, 8, 4};
    const SlotImage good = encode(f);
    SlotValidator v;
    ASSERT_TRUE(v.validate(good, 1, kPools).ok());

    SlotImage padded = good;  // padding on both sides of the tensor part: still the cached decode, still valid
    for (std::size_t i = 34; i < 60; ++i) put<std::uint8_t>(padded, i, 0xAB);
    for (std::size_t i = 147; i < 256; ++i) put<std::uint8_t>(padded, i, 0xEF);
    auto c = v.validate(padded, 1, kPools);
    ASSERT_TRUE(c.ok()) << c.error().message();
    EXPECT_EQ((*c)->tensor.ndims, 8u);

    auto expect_refused = [&v](const SlotImage& img, std::uint32_t index, const char* needle) {
        auto r = v.validate(img, index, kPools);
        ASSERT_FALSE(r.ok()) << "expected a refusal mentioning '" << needle << "'";
        EXPECT_NE(std::string(r.error().message()).find(needle), std::string::npos) << r.error().message();
    };
    SlotImage first = good;  // byte 60: headerBytes length 192 -> 191
    put<std::uint8_t>(first, 60, 191);
    expect_refused(first, 1, "headerBytes length");

    ASSERT_TRUE(v.validate(good, 1, kPools).ok());
    SlotImage last = good;  // byte 146: the top byte of strides[7], now negative
    put<std::uint8_t>(last, 146, 0x80);
    expect_refused(last, 1, "strides[7]");

    // The reuse path: identical tensor part, SlotHeader fields checked per frame.
    ASSERT_TRUE(v.validate(good, 1, kPools).ok());
    expect_refused(good, 2, "payloadSlot is 1; expected the header index 2");
    SlotImage other = good;
    put<std::uint16_t>(other, 16, 3);
    expect_refused(other, 1, "poolId is 3");
    other = good;
    put<std::uint32_t>(other, 8, 65);
    expect_refused(other, 1, "valuesLenBytes is 65");
    other = good;
    put<std::uint32_t>(other, 18, 64);
    expect_refused(other, 1, "payloadOffset is 64");
    other = good;
    put<std::uint64_t>(other, 22, 77);
    put<std::uint32_t>(other, 30, 5);
    c = v.validate(other, 1, kPools);
    ASSERT_TRUE(c.ok());
    EXPECT_EQ((*c)->timestamp_ns, 77u);
    EXPECT_EQ((*c)->meta_version, 5u);
}
