// The 256-byte header slot: SlotHeader (60-byte raw block) + u32 headerBytes length (192) + a framed
// TensorHeader (8-byte message header, 184-byte body). WIRE_SPEC §2.3, W-8-*, W-9-*, A-29.
//
// encode_slot_image() builds the whole slot from a plain description with the generated encoders, so every
// reserved byte, pad and unused dims/strides entry is zero (W-8-13, W-8-24). validate_slot() applies the
// consumer's drop rules (WIRE_SPEC §3.4) to a private copy of a slot (a ReadTicket's header, A-8); each
// rejection is an Error naming the field, its value and what was expected. Neither touches the live slot.
#pragma once

#include <array>
#include <cstdint>
#include <span>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/constants.hpp"
#include "tensorpool/shm/slot_layout.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace tensorpool::shm {

using wire::control::Dtype;
using wire::control::MajorOrder;
using wire::control::ProgressUnit;

// Bytes per element: 1 for UINT8/INT8/BOOLEAN/BYTES/BIT, 2, 4, 8 as usual; 0 for UNKNOWN or any value
// that is not a Dtype (which makes the frame invalid).
std::uint32_t dtype_element_bytes(Dtype d) noexcept;

struct TensorShape {
    Dtype dtype = Dtype::UNKNOWN;
    MajorOrder major_order = MajorOrder::UNKNOWN;
    std::uint8_t ndims = 0;
    std::array<std::int32_t, kMaxDims> dims{};     // entries >= ndims are ignored on read, written as 0
    std::array<std::int32_t, kMaxDims> strides{};  // bytes; 0 = infer contiguous (W-8-15)
    ProgressUnit progress_unit = ProgressUnit::NONE;
    std::uint32_t progress_stride_bytes = 0;
};

// What a producer says about one frame. payload_slot (= header index) and payload_offset (= 0) are not
// choices in v1.2, so they are not in here (W-8-12, W-8-22).
struct FrameDescription {
    std::uint64_t seq = 0;
    std::uint32_t values_len_bytes = 0;
    std::uint16_t pool_id = 0;
    std::uint64_t timestamp_ns = 0;
    std::uint32_t meta_version = 0;
    TensorShape tensor;
};

// Builds the slot image for `frame` in a ring of `header_nslots` slots. Bytes 0..7 hold the COMMITTED word for
// frame.seq (what the slot will read once committed; the seqlock writer never copies them). Fails only if the
// description cannot be encoded (ndims > 8, header_nslots not a power of two); it does not judge semantics.
Status encode_slot_image(const FrameDescription& frame, std::uint32_t header_nslots, SlotImage& out);

// Everything a slot says, as decoded, plus the layout after zero strides were inferred.
struct SlotContents {
    std::uint64_t commit_word = 0;
    std::uint64_t seq = 0;  // commit_word >> 1
    std::uint32_t values_len_bytes = 0;
    std::uint32_t payload_slot = 0;
    std::uint16_t pool_id = 0;
    std::uint32_t payload_offset = 0;
    std::uint64_t timestamp_ns = 0;
    std::uint32_t meta_version = 0;
    std::uint32_t header_bytes_length = 0;
    std::uint16_t embedded_block_length = 0;
    std::uint16_t embedded_template_id = 0;
    std::uint16_t embedded_schema_id = 0;
    std::uint16_t embedded_version = 0;
    TensorShape tensor;                                // strides exactly as written (0 = inferred)
    std::array<std::int64_t, kMaxDims> resolved_strides{};  // after A-29 inference; valid after validation
    std::uint32_t element_bytes = 0;
    // Bytes spanned by the tensor: 0 if any dim is 0, else elem + sum((dim-1) * stride). Not checked against
    // values_len_bytes (the spec has no such rule); consumers indexing the payload may compare themselves.
    std::uint64_t tensor_extent_bytes = 0;
};

// The pools of the mapped stream, for the pool rules (W-9-6, A-28, §3.4 rule 16).
struct PoolInfo {
    std::uint16_t pool_id = 0;
    std::uint32_t stride_bytes = 0;
};

// Decodes a slot image through the generated decoders and checks what decoding depends on: the headerBytes
// length (192, W-8-7) and the embedded message header (blockLength 184, templateId 52, schemaId 900, version 1;
// W-8-28, W-8-29). The tensor fields are returned as found, unjudged.
Result<SlotContents> decode_slot_image(const SlotImage& image);

// decode_slot_image() plus every rule that needs no pool table: ndims 1..8 (W-8-11), payload_offset 0 (W-8-12),
// known dtype and major order (§3.4 rule 12), non-negative dims and strides (W-8-15), stride inference and
// no-overlap / major-order consistency (W-8-16, A-29), progress unit and stride (W-8-8, W-8-17, A-6, A-7), and
// payload_slot == header_index (W-8-22, W-15.5-2). `header_index` is where the slot was read from.
Result<SlotContents> validate_slot_header(const SlotImage& image, std::uint32_t header_index);

// The consumer's full rule set: validate_slot_header() plus pool_id naming a mapped pool and
// values_len_bytes <= that pool's stride_bytes (§3.4 rule 16). payload_slot < nslots follows from
// payload_slot == header_index < nslots.
Result<SlotContents> validate_slot(const SlotImage& image, std::uint32_t header_index,
                                   std::span<const PoolInfo> pools);

// The SlotHeader rules on their own: payload_offset 0 (W-8-12) and payload_slot == header_index (W-8-22), and
// pool_id naming a mapped pool whose stride holds values_len_bytes (§3.4 rule 16).
Status check_slot_position(const SlotContents& c, std::uint32_t header_index) noexcept;
Status check_slot_pool(const SlotContents& c, std::span<const PoolInfo> pools) noexcept;

// validate_slot() for a stream of slots: it remembers the tensor part (slot bytes 60..146: the headerBytes length
// and the embedded TensorHeader's fields; its padding is ignored, W-8-18) of the last slot that passed, and a
// slot whose tensor part is byte-identical reuses that decode and layout check, so only its SlotHeader fields are
// checked again. Frames of one stream nearly always share a shape, so this is the consumer's per-frame cost. The result points into the validator
// and stays valid until the next call.
class SlotValidator {
public:
    Result<const SlotContents*> validate(const SlotImage& image, std::uint32_t header_index,
                                         std::span<const PoolInfo> pools) noexcept;
    void reset() noexcept { have_ = false; }

private:
    static constexpr std::size_t kTensorWords = 12;  // slot words 7..18: bytes 56..151
    static std::uint64_t tensor_word(const SlotImage& image, std::size_t w) noexcept;
    bool same_tensor_part(const SlotImage& image) const noexcept;

    bool have_ = false;
    std::array<std::uint64_t, kTensorWords> tensor_words_{};  // of the last slot that passed, padding masked off
    SlotContents last_;
};

// Zero strides filled in from the next inner dimension; rejects what the reference rejects. Exposed for
// producers that want to check a description before publishing it.
Status resolve_strides(const TensorShape& shape, std::array<std::int64_t, kMaxDims>& resolved,
                       std::uint64_t& extent_bytes);

// Every rule a consumer applies to the tensor part of a slot (validate_slot_header() less what the encoder fixes:
// lengths, ids, payload_slot): ndims 1..8, known dtype and major order, non-negative dims and strides, no overlap
// progress unit and stride (W-8-8, W-8-17). For producers, before they publish a shape.
Status validate_tensor_shape(const TensorShape& shape);

// True when the resolved strides are exactly the contiguous ones for the major order (every element packed, the
// innermost dimension one element apart): then the first N payload bytes are the first N bytes of the tensor, and
// a FrameProgress prefix is layout-safe (W-10.2.2-11).
bool is_contiguous(const TensorShape& shape, const std::array<std::int64_t, kMaxDims>& resolved,
                   std::uint32_t element_bytes) noexcept;

}  // namespace tensorpool::shm
