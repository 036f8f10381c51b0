// The seq_commit seqlock on a header slot (WIRE_SPEC §3, W-8-10, W-8-23..31, W-15.3-*).
//
// The commit word is the aligned u64 at slot byte 0: (seq << 1) | committed. It is only ever accessed through
// std::atomic_ref. Everything else in the slot is written and copied with relaxed 8-byte atomics, so the
// header copy is race-free; payload bytes are the application's and are read in place.
//
// Writer (producer):
//     seqlock_begin_write(slot, seq);        // (seq<<1) release, then a release fence
//     seqlock_store_header(slot, image);     // slot bytes 8..255 (8..151: fields only)
//     memcpy(payload, ...);                  // application payload
//     seqlock_commit(slot, seq);             // (seq<<1)|1 release
//
// Reader (consumer), zero-copy:
//     ReadTicket t;
//     if (t.begin(slot, seq) != ReadBegin::ok) drop;                 // c1 acquire + header copy
//     decide everything from t.header() (never from the live slot, A-8), read the payload in place, then
//     if (!t.still_valid()) discard what was read;                   // acquire fence + c2 == c1
//
// No allocation, no lock, no system call on either side.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "tensorpool/shm/slot_layout.hpp"

namespace tensorpool::shm {

static_assert(std::atomic_ref<std::uint64_t>::is_always_lock_free,
              "seq_commit needs a lock-free 8-byte atomic: it is shared between processes (W-8-10)");
static_assert(std::atomic_ref<std::uint64_t>::required_alignment <= 8);
static_assert(kHeaderSlotBytes % 8 == 0);

namespace seqlock_detail {

// Processes share the word, so it must be a real hardware atomic on the mapped memory; atomic_ref<const T> is
// C++26, so loads cast the const away. A load never writes, so this is safe on a PROT_READ mapping.
inline std::atomic_ref<std::uint64_t> word(const std::byte* p) noexcept {
    return std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(p)));
}

inline constexpr std::size_t kFirstBodyWord = 1;  // bytes 0..7 are the commit word itself
inline constexpr std::size_t kWords = kHeaderSlotBytes / 8;
inline constexpr std::size_t kFieldWords = kSlotFieldWordsEnd / 8;  // the words a frame read needs (W-8-18)

}  // namespace seqlock_detail

constexpr std::uint64_t in_progress_word(std::uint64_t seq) noexcept { return seq << 1; }
constexpr std::uint64_t committed_word(std::uint64_t seq) noexcept { return (seq << 1) | 1u; }

// ---- writer -----------------------------------------------------------------------------------------------

// W-8-23: mark the slot IN-PROGRESS before touching anything else in it. The release fence after the store
// keeps every later store (header words, payload) from becoming visible before the IN-PROGRESS word.
inline void seqlock_begin_write(std::byte* slot, std::uint64_t seq) noexcept {
    seqlock_detail::word(slot).store(in_progress_word(seq), std::memory_order_release);
    std::atomic_thread_fence(std::memory_order_release);
}

// W-8-24: rewrite slot bytes 8..255 from a fully built image; bytes 0..7 of the image are ignored.
// With fields_only, bytes 8..151 only: every field, but not the TensorHeader padding after them (W-8-18), which a
// producer that owns the region and wrote it once (zero) need not write again on every frame.
inline void seqlock_store_header(std::byte* slot, const SlotImage& image, bool fields_only = false) noexcept {
    const std::size_t end = fields_only ? seqlock_detail::kFieldWords : seqlock_detail::kWords;
    for (std::size_t w = seqlock_detail::kFirstBodyWord; w < end; ++w) {
        std::uint64_t v;
        std::memcpy(&v, image.data() + w * 8, 8);
        seqlock_detail::word(slot + w * 8).store(v, std::memory_order_relaxed);
    }
}

// W-8-25: publish; every header and payload store above happens-before a reader's acquire of this value.
inline void seqlock_commit(std::byte* slot, std::uint64_t seq) noexcept {
    seqlock_detail::word(slot).store(committed_word(seq), std::memory_order_release);
}

// ---- reader -----------------------------------------------------------------------------------------------

enum class ReadBegin : std::uint8_t {
    ok,
    not_committed,  // LSB 0: being written or overwritten (drop, W-8-26)
    stale,          // committed, but an older seq than asked for (W-15.3-1)
    overwritten,    // committed, but a newer seq: the frame is gone (drops_late)
};

const char* read_begin_name(ReadBegin r) noexcept;

class ReadTicket {
public:
    // The consumer's entry point. Takes the first commit load (acquire); if it shows `seq` committed, copies the
    // slot's field bytes (8..151) with relaxed atomic loads (W-8-26, W-8-9); the TensorHeader padding after them is
    // ignored (W-8-18), not copied, and reads as zero in header(). Anything else returns without copying.
    // A refused begin() also ends the previous read: still_valid() is then false until the next success.
    ReadBegin begin(const std::byte* slot, std::uint64_t seq) noexcept {
        const std::uint64_t c1 = seqlock_detail::word(slot).load(std::memory_order_acquire);
        ReadBegin r = ReadBegin::ok;
        if ((c1 & 1u) == 0) {
            r = ReadBegin::not_committed;
        } else if ((c1 >> 1) < seq) {
            r = ReadBegin::stale;
        } else if ((c1 >> 1) > seq) {
            r = ReadBegin::overwritten;
        }
        if (r != ReadBegin::ok) {
            slot_ = nullptr;
            c1_ = c1;  // kept so a consumer can see how far ahead an overwriting producer is (observed_seq)
            return r;
        }
        copy(slot, c1, seqlock_detail::kFieldWords);
        return ReadBegin::ok;
    }

    // For FrameProgress prefix reads (W-10.2.2-5, A-30): accepts the slot while `seq` is still being written
    // (either LSB) and copies the header; still_valid() then proves the slot was not handed to a newer seq while
    // the prefix was read, whether or not the frame was committed meanwhile. The bytes below the producer's
    // payload_bytes_filled are final once reported, so a commit in between does not tear them.
    ReadBegin begin_prefix(const std::byte* slot, std::uint64_t seq) noexcept {
        const std::uint64_t c1 = seqlock_detail::word(slot).load(std::memory_order_acquire);
        if ((c1 >> 1) != seq) {
            slot_ = nullptr;
            c1_ = c1;
            return (c1 >> 1) < seq ? ReadBegin::stale : ReadBegin::overwritten;
        }
        copy(slot, c1, seqlock_detail::kFieldWords);
        same_mask_ = ~std::uint64_t{1};
        return ReadBegin::ok;
    }

    // The seq the slot held at the last begin(), whatever its outcome: after `overwritten`, proof that the
    // producer has reached at least this seq.
    std::uint64_t observed_seq() const noexcept { return c1_ >> 1; }

    // As begin(), but accepts whatever seq is committed and copies all 256 bytes, padding included (tools such as
    // `tensorpool inspect`).
    ReadBegin begin_any(const std::byte* slot) noexcept {
        const std::uint64_t c1 = seqlock_detail::word(slot).load(std::memory_order_acquire);
        if ((c1 & 1u) == 0) {
            slot_ = nullptr;
            return ReadBegin::not_committed;
        }
        copy(slot, c1, seqlock_detail::kWords);
        return ReadBegin::ok;
    }

    // The private copy taken under the first commit load; bytes 0..7 hold that commit word.
    const SlotImage& header() const noexcept { return copy_; }
    std::uint64_t commit_word() const noexcept { return c1_; }
    std::uint64_t seq() const noexcept { return c1_ >> 1; }

    // W-8-27 / W-8-31: call after the application has read the payload in place. True proves that nothing it
    // read (header copy or payload) was torn by a concurrent overwrite. False for a ticket never begun.
    bool still_valid() const noexcept {
        if (slot_ == nullptr) return false;
        std::atomic_thread_fence(std::memory_order_acquire);  // payload loads above stay above the reload
        return ((seqlock_detail::word(slot_).load(std::memory_order_acquire) ^ c1_) & same_mask_) == 0;
    }

private:
    void copy(const std::byte* slot, std::uint64_t c1, std::size_t words) noexcept {
        slot_ = slot;
        c1_ = c1;
        same_mask_ = ~std::uint64_t{0};  // a committed read: the whole word must be unchanged
        std::memcpy(copy_.data(), &c1, 8);
        // Fully unrolled where `words` is a constant (every caller): a loop of a few cycles per word is a large
        // part of a small frame's read.
#pragma GCC unroll 32
        for (std::size_t w = seqlock_detail::kFirstBodyWord; w < words; ++w) {
            const std::uint64_t v = seqlock_detail::word(slot + w * 8).load(std::memory_order_relaxed);
            std::memcpy(copy_.data() + w * 8, &v, 8);
        }
        // What a full copy (begin_any) left beyond the fields is padding: zero it, so header() never mixes slots.
        if (words < seqlock_detail::kWords && padding_dirty_) {
            std::memset(copy_.data() + words * 8, 0, kHeaderSlotBytes - words * 8);
        }
        padding_dirty_ = words == seqlock_detail::kWords;
    }

    const std::byte* slot_ = nullptr;
    std::uint64_t c1_ = 0;
    std::uint64_t same_mask_ = ~std::uint64_t{0};  // the bits of the commit word still_valid() compares
    bool padding_dirty_ = false;                   // copy_ holds padding bytes from a begin_any()
    SlotImage copy_;
};

}  // namespace tensorpool::shm
