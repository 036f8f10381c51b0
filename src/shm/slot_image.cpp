#include "tensorpool/shm/slot_image.hpp"

#include <algorithm>
#include <atomic>

#include "tensorpool/shm/seqlock.hpp"
#include "tensorpool/wire/byte_io.hpp"
#include "tensorpool/wire/message_header.hpp"

namespace tensorpool::shm {

using wire::control::SlotHeader;
using wire::control::TensorHeader;

namespace {

const char* dtype_name(Dtype d) {
    const char* n = wire::control::name_of(d);
    return n != nullptr ? n : "(not a Dtype)";
}
const char* order_name(MajorOrder m) {
    const char* n = wire::control::name_of(m);
    return n != nullptr ? n : "(not a MajorOrder)";
}
const char* unit_name(ProgressUnit u) {
    const char* n = wire::control::name_of(u);
    return n != nullptr ? n : "(not a ProgressUnit)";
}

const std::uint8_t* bytes_of(const SlotImage& img) { return reinterpret_cast<const std::uint8_t*>(img.data()); }

// Checks a*b and a+b without overflow; byte offsets of a hostile header must not wrap around.
bool mul_ok(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_mul_overflow(a, b, &out); }
bool add_ok(std::int64_t a, std::int64_t b, std::int64_t& out) { return !__builtin_add_overflow(a, b, &out); }

}  // namespace

std::uint32_t dtype_element_bytes(Dtype d) noexcept {
    switch (d) {
        case Dtype::UINT8:
        case Dtype::INT8:
        case Dtype::BOOLEAN:
        case Dtype::BYTES:
        case Dtype::BIT: return 1;
        case Dtype::UINT16:
        case Dtype::INT16: return 2;
        case Dtype::UINT32:
        case Dtype::INT32:
        case Dtype::FLOAT32: return 4;
        case Dtype::UINT64:
        case Dtype::INT64:
        case Dtype::FLOAT64: return 8;
        default: return 0;  // UNKNOWN, 12 (unassigned) and anything else
    }
}

Status encode_slot_image(const FrameDescription& frame, std::uint32_t header_nslots, SlotImage& out) {
    if (!is_power_of_two(header_nslots)) {
        return Error::format(Errc::invalid_argument, "header ring nslots is %u; expected a non-zero power of two "
                             "(A-16)", header_nslots);
    }
    const TensorShape& t = frame.tensor;
    if (t.ndims > kMaxDims) {
        return Error::format(Errc::invalid_argument, "TensorHeader.ndims is %u; at most %u dims can be encoded "
                             "(W-8-2)", unsigned{t.ndims}, kMaxDims);
    }

    // The embedded TensorHeader, framed: 8-byte message header + 184-byte body = 192 bytes (W-8-7).
    std::uint8_t tensor[kHeaderBytesLength];
    TensorHeader::Encoder te;
    if (auto s = te.wrap_and_apply_header(tensor, sizeof tensor); !s) return s;
    te.dtype(t.dtype).majorOrder(t.major_order).ndims(t.ndims).progressUnit(t.progress_unit)
        .progressStrideBytes(t.progress_stride_bytes);
    // Only the first ndims entries are written; wrap zero-filled the rest (W-8-13).
    for (std::size_t i = 0; i < t.ndims; ++i) te.dims(i, t.dims[i]).strides(i, t.strides[i]);
    auto tn = te.finish();
    if (!tn) return tn.error();
    if (*tn != kHeaderBytesLength) {
        return Error::format(Errc::malformed, "TensorHeader encoded to %zu bytes; expected %zu (W-8-7)", *tn,
                             kHeaderBytesLength);
    }

    // The slot: raw SlotHeader block (no message header, W-8-5) + headerBytes var data.
    SlotHeader::Encoder se;
    if (auto s = se.wrap_raw(reinterpret_cast<std::uint8_t*>(out.data()), out.bytes.size()); !s) return s;
    se.seqCommit(committed_word(frame.seq))
        .valuesLenBytes(frame.values_len_bytes)
        .payloadSlot(header_index(frame.seq, header_nslots))  // W-8-22: identity mapping, even when empty
        .poolId(frame.pool_id)
        .payloadOffset(0)  // W-8-12
        .timestampNs(frame.timestamp_ns)
        .metaVersion(frame.meta_version)
        .headerBytes(std::span<const std::uint8_t>(tensor, sizeof tensor));
    auto sn = se.finish();
    if (!sn) return sn.error();
    if (*sn != kHeaderSlotBytes) {
        return Error::format(Errc::malformed, "slot encoded to %zu bytes; expected exactly %zu (W-8-1)", *sn,
                             kHeaderSlotBytes);
    }
    return {};
}

Result<SlotContents> decode_slot_image(const SlotImage& image) {
    auto sh = SlotHeader::Decoder::wrap_raw(bytes_of(image), image.bytes.size());
    if (!sh) {
        Error e = sh.error();
        e.prefix("header slot: ");
        return e;
    }
    SlotContents c;
    c.commit_word = sh->seqCommit();
    c.seq = c.commit_word >> 1;
    c.values_len_bytes = sh->valuesLenBytes();
    c.payload_slot = sh->payloadSlot();
    c.pool_id = sh->poolId();
    c.payload_offset = sh->payloadOffset();
    c.timestamp_ns = sh->timestampNs();
    c.meta_version = sh->metaVersion();

    const auto hb = sh->headerBytesBytes();
    c.header_bytes_length = static_cast<std::uint32_t>(hb.size());
    if (hb.size() != kHeaderBytesLength) {
        return Error::format(Errc::malformed, "SlotHeader.headerBytes length is %zu; expected %zu (8 + TensorHeader "
                             "blockLength 184, W-8-7)", hb.size(), kHeaderBytesLength);
    }
    auto mh = wire::MessageHeader::read(hb.data(), hb.size());
    if (!mh) return mh.error();
    c.embedded_block_length = mh->blockLength;
    c.embedded_template_id = mh->templateId;
    c.embedded_schema_id = mh->schemaId;
    c.embedded_version = mh->version;
    if (mh->templateId != kTensorHeaderTemplateId) {
        return Error::format(Errc::malformed, "embedded header templateId is %u; expected %u (TensorHeader, W-8-28)",
                             unsigned{mh->templateId}, unsigned{kTensorHeaderTemplateId});
    }
    if (mh->schemaId != kControlSchemaId) {
        return Error::format(Errc::malformed, "embedded header schemaId is %u; expected %u (W-8-29)",
                             unsigned{mh->schemaId}, unsigned{kControlSchemaId});
    }
    if (mh->version != kControlSchemaVersion) {
        return Error::format(Errc::unsupported, "embedded header version is %u; expected %u (W-8-29)",
                             unsigned{mh->version}, unsigned{kControlSchemaVersion});
    }
    if (mh->blockLength != kTensorHeaderBlockLength) {
        return Error::format(Errc::malformed, "embedded header blockLength is %u; expected %u (W-8-7)",
                             unsigned{mh->blockLength}, unsigned{kTensorHeaderBlockLength});
    }
    auto th = TensorHeader::Decoder::wrap(hb.data(), hb.size());
    if (!th) return th.error();
    TensorShape& t = c.tensor;
    t.dtype = th->dtype();
    t.major_order = th->majorOrder();
    t.ndims = th->ndims();
    t.progress_unit = th->progressUnit();
    t.progress_stride_bytes = th->progressStrideBytes();
    t.dims = th->dims();
    t.strides = th->strides();
    c.element_bytes = dtype_element_bytes(t.dtype);
    return c;
}

Status resolve_strides(const TensorShape& t, std::array<std::int64_t, kMaxDims>& resolved,
                       std::uint64_t& extent_bytes) {
    if (t.ndims == 0 || t.ndims > kMaxDims) {
        return Error::format(Errc::malformed, "TensorHeader.ndims is %u; expected 1..%u (W-8-11)", unsigned{t.ndims},
                             kMaxDims);
    }
    const std::uint32_t elem = dtype_element_bytes(t.dtype);
    if (elem == 0) {
        return Error::format(Errc::malformed, "TensorHeader.dtype is %d (%s); expected a known Dtype other than "
                             "UNKNOWN (§15.8, A-29)", static_cast<int>(t.dtype), dtype_name(t.dtype));
    }
    if (t.major_order != MajorOrder::ROW && t.major_order != MajorOrder::COLUMN) {
        return Error::format(Errc::malformed, "TensorHeader.majorOrder is %d (%s); expected ROW (1) or COLUMN (2) "
                             "(§15.8, A-29)", static_cast<int>(t.major_order), order_name(t.major_order));
    }
    const std::size_t n = t.ndims;
    for (std::size_t i = 0; i < n; ++i) {
        if (t.dims[i] < 0) {
            return Error::format(Errc::malformed, "TensorHeader.dims[%zu] is %d; expected >= 0", i, t.dims[i]);
        }
        if (t.strides[i] < 0) {
            return Error::format(Errc::malformed, "TensorHeader.strides[%zu] is %d; negative strides are not "
                                 "supported in v1.2 (W-8-15)", i, t.strides[i]);
        }
    }
    // Walk from the innermost dimension outwards: the last one for ROW, the first for COLUMN (W-8-16).
    const bool row = t.major_order == MajorOrder::ROW;
    auto dim_at = [&](std::size_t k) { return row ? n - 1 - k : k; };
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = dim_at(k);
        std::int64_t expected = elem;  // innermost: one element
        if (k > 0) {
            const std::size_t inner = dim_at(k - 1);
            const std::int64_t inner_dim = t.dims[inner] > 0 ? t.dims[inner] : 1;
            if (!mul_ok(resolved[inner], inner_dim, expected)) {
                return Error::format(Errc::malformed, "TensorHeader dims/strides overflow 64-bit byte offsets at "
                                     "dims[%zu]", i);
            }
        }
        if (t.strides[i] == 0) {
            resolved[i] = expected;  // infer contiguous
        } else if (t.strides[i] < expected) {
            return Error::format(Errc::malformed,
                                 "TensorHeader.strides[%zu] is %d; expected 0 or >= %lld (%s-major: no overlap with "
                                 "the next inner dimension, W-8-16, A-29)",
                                 i, t.strides[i], static_cast<long long>(expected), row ? "row" : "column");
        } else {
            resolved[i] = t.strides[i];
        }
    }
    for (std::size_t i = n; i < kMaxDims; ++i) resolved[i] = 0;  // W-8-14: ignore what lies beyond ndims

    std::int64_t extent = elem;
    for (std::size_t i = 0; i < n; ++i) {
        if (t.dims[i] == 0) {
            extent = 0;
            break;
        }
        std::int64_t span = 0;
        if (!mul_ok(static_cast<std::int64_t>(t.dims[i]) - 1, resolved[i], span) || !add_ok(extent, span, extent)) {
            return Error::format(Errc::malformed, "TensorHeader dims/strides overflow 64-bit byte offsets at "
                                 "dims[%zu]", i);
        }
    }
    extent_bytes = static_cast<std::uint64_t>(extent);
    return {};
}

namespace {

Status check_progress(const TensorShape& t, const std::array<std::int64_t, kMaxDims>& resolved) {
    switch (t.progress_unit) {
        case ProgressUnit::NONE: return {};  // the stride is not checked when progress is off
        case ProgressUnit::ROWS:
        case ProgressUnit::COLUMNS: break;
        default:
            return Error::format(Errc::malformed, "TensorHeader.progressUnit is %u (%s); expected NONE, ROWS or "
                                 "COLUMNS (§15.8)", static_cast<unsigned>(t.progress_unit),
                                 unit_name(t.progress_unit));
    }
    if (t.progress_stride_bytes == 0) {
        return Error::format(Errc::malformed, "TensorHeader.progressStrideBytes is 0 with progressUnit %s; expected "
                             "> 0 (W-8-8, W-8-17)", unit_name(t.progress_unit));
    }
    // ROWS advance along dims[0], COLUMNS along dims[1].
    const std::size_t axis = t.progress_unit == ProgressUnit::ROWS ? 0 : 1;
    if (axis >= t.ndims) {
        return Error::format(Errc::malformed, "TensorHeader.progressUnit is COLUMNS with ndims %u; expected ndims >= 2 "
                             "(A-7)", unsigned{t.ndims});
    }
    if (static_cast<std::int64_t>(t.progress_stride_bytes) != resolved[axis]) {
        return Error::format(Errc::malformed, "TensorHeader.progressStrideBytes is %u; expected strides[%zu] = %lld "
                             "for progressUnit %s (W-8-8, W-8-17, A-7)", t.progress_stride_bytes, axis,
                             static_cast<long long>(resolved[axis]), unit_name(t.progress_unit));
    }
    return {};
}

}  // namespace

Status validate_tensor_shape(const TensorShape& shape) {
    std::array<std::int64_t, kMaxDims> resolved{};
    std::uint64_t extent = 0;
    if (auto s = resolve_strides(shape, resolved, extent); !s) return s;
    return check_progress(shape, resolved);
}

Status check_slot_position(const SlotContents& c, std::uint32_t index) noexcept {
    if (c.payload_offset != 0) {
        return Error::format(Errc::malformed, "SlotHeader.payloadOffset is %u; expected 0 in v1.2 (W-8-12)",
                             c.payload_offset);
    }
    if (c.payload_slot != index) {
        return Error::format(Errc::malformed, "SlotHeader.payloadSlot is %u; expected the header index %u (W-8-22, "
                             "W-15.5-2)", c.payload_slot, index);
    }
    return {};
}

Status check_slot_pool(const SlotContents& c, std::span<const PoolInfo> pools) noexcept {
    for (const PoolInfo& p : pools) {
        if (p.pool_id != c.pool_id) continue;
        if (c.values_len_bytes > p.stride_bytes) {
            return Error::format(Errc::malformed, "SlotHeader.valuesLenBytes is %u; expected <= stride_bytes %u of "
                                 "pool %u (§10.2.1)", c.values_len_bytes, p.stride_bytes, unsigned{p.pool_id});
        }
        return {};
    }
    return Error::format(Errc::mismatch, "SlotHeader.poolId is %u; expected the id of a mapped pool (A-28)",
                         unsigned{c.pool_id});
}

Result<SlotContents> validate_slot_header(const SlotImage& image, std::uint32_t index) {
    auto c = decode_slot_image(image);
    if (!c) return c.error();
    if (c->payload_offset != 0) return check_slot_position(*c, index).error();  // before judging the layout
    if (auto s = resolve_strides(c->tensor, c->resolved_strides, c->tensor_extent_bytes); !s) return s.error();
    if (auto s = check_progress(c->tensor, c->resolved_strides); !s) return s.error();
    if (auto s = check_slot_position(*c, index); !s) return s.error();
    return c;
}

Result<SlotContents> validate_slot(const SlotImage& image, std::uint32_t index, std::span<const PoolInfo> pools) {
    auto c = validate_slot_header(image, index);
    if (!c) return c;
    if (auto s = check_slot_pool(*c, pools); !s) return s.error();
    return c;
}

// The tensor part, slot bytes 60..146, as the 8-byte words 7..18 (bytes 56..151) with the bytes outside it masked
// off: bytes 56..59 are SlotHeader padding and 147..151 TensorHeader padding, which consumers ignore (W-8-6,
// W-8-18). Comparing a dozen words costs less than a call to memcmp on every frame.
// Word by word, 8 bytes at a time: the image was just written 8 bytes at a time (ReadTicket), and a wider load
// that spans two of those stores cannot be forwarded from them: it stalls until they reach the cache.
std::uint64_t SlotValidator::tensor_word(const SlotImage& image, std::size_t w) noexcept {
    static_assert(SlotHeader::kBlockLength == 60 && kSlotFieldBytes == 147);
    // A relaxed atomic load is a plain 8-byte load the vectoriser leaves alone (the image is private: no race).
    auto* word = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(image.data() + 56 + 8 * w));
    std::uint64_t v = std::atomic_ref<std::uint64_t>(*word).load(std::memory_order_relaxed);
    if (w == 0) v &= ~std::uint64_t{0xFFFFFFFF};               // keep bytes 60..63
    if (w == kTensorWords - 1) v &= std::uint64_t{0xFFFFFF};   // keep bytes 144..146
    return v;
}

bool SlotValidator::same_tensor_part(const SlotImage& image) const noexcept {
    // Unrolled, so the masks of the first and last word are constants, not branches taken on every word.
    std::uint64_t diff = 0;
#pragma GCC unroll 16
    for (std::size_t w = 0; w < kTensorWords; ++w) diff |= tensor_word(image, w) ^ tensor_words_[w];
    return diff == 0;
}

Result<const SlotContents*> SlotValidator::validate(const SlotImage& image, std::uint32_t index,
                                                    std::span<const PoolInfo> pools) noexcept {
    if (have_ && same_tensor_part(image)) {
        // Same headerBytes length and embedded TensorHeader as the last slot that passed: its decode and layout
        // checks stand; only the SlotHeader fields are new. They sit at fixed offsets of a fixed-size image, so
        // they are read straight from it, and checked without building a Status unless a check fails.
        using Off = SlotHeader::Offsets;
        const auto* b = reinterpret_cast<const std::uint8_t*>(image.data());
        last_.commit_word = wire::load_le<std::uint64_t>(b + Off::seqCommit);
        last_.seq = last_.commit_word >> 1;
        last_.values_len_bytes = wire::load_le<std::uint32_t>(b + Off::valuesLenBytes);
        last_.payload_slot = wire::load_le<std::uint32_t>(b + Off::payloadSlot);
        last_.pool_id = wire::load_le<std::uint16_t>(b + Off::poolId);
        last_.payload_offset = wire::load_le<std::uint32_t>(b + Off::payloadOffset);
        last_.timestamp_ns = wire::load_le<std::uint64_t>(b + Off::timestampNs);
        last_.meta_version = wire::load_le<std::uint32_t>(b + Off::metaVersion);
        if (last_.payload_offset == 0 && last_.payload_slot == index) {
            for (const PoolInfo& p : pools) {
                if (p.pool_id == last_.pool_id && last_.values_len_bytes <= p.stride_bytes) return &last_;
            }
        }
        if (auto s = check_slot_position(last_, index); !s) return s.error();
        if (auto s = check_slot_pool(last_, pools); !s) return s.error();
        return &last_;  // not reached: one of the checks above failed
    }
    have_ = false;
    auto c = validate_slot(image, index, pools);
    if (!c) return c.error();
    last_ = *c;
    for (std::size_t w = 0; w < kTensorWords; ++w) tensor_words_[w] = tensor_word(image, w);
    have_ = true;
    return &last_;
}

bool is_contiguous(const TensorShape& shape, const std::array<std::int64_t, kMaxDims>& resolved,
                   std::uint32_t element_bytes) noexcept {
    const std::size_t n = std::min<std::size_t>(shape.ndims, kMaxDims);
    const bool row = shape.major_order == MajorOrder::ROW;
    std::int64_t expected = element_bytes;
    for (std::size_t k = 0; k < n; ++k) {
        const std::size_t i = row ? n - 1 - k : k;
        if (resolved[i] != expected) return false;
        // The extent check stops at a zero dim, so the product past it is unchecked: an overflow means no tensor
        // of that many bytes exists to be contiguous.
        if (__builtin_mul_overflow(expected, std::int64_t{shape.dims[i] > 0 ? shape.dims[i] : 1}, &expected)) return false;
    }
    return true;
}

}  // namespace tensorpool::shm
