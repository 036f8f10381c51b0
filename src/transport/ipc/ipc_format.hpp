// On-disk format of the embedded ipc bus (documented for operators in docs/ipc-bus.md).
//
//   <root>/<bus>/<stream_id>/registry          which publishers and subscribers are attached
//   <root>/<bus>/<stream_id>/pub-<session>.log  one ring per publisher, written by that publisher only
//
// One ring per publisher means publishers never contend with each other and a publisher killed in the middle
// of a write can only leave its own ring with an unfinished record that no reader will ever deliver.
// All integers are little-endian; words shared between processes are accessed with std::atomic_ref.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorpool::transport::ipc {

inline constexpr uint64_t kRegistryMagic = 0x4745524350495054ull;  // "TPIPCREG" as LE bytes
inline constexpr uint64_t kLogMagic = 0x474F4C4350495054ull;       // "TPIPCLOG" as LE bytes
inline constexpr uint32_t kRegistryLayoutVersion = 1;
inline constexpr uint32_t kLogLayoutVersion = 2;  // 2: records found by their header word (1: by a shared tail)
inline constexpr uint32_t kPublisherSlots = 64;
inline constexpr uint32_t kSubscriberSlots = 64;

// Registry: a 64-byte header, then publisher slots, then subscriber slots, 64 bytes each.
struct RegistryHeader {
    uint64_t magic;             // written last (release) by the creator; see create_registry()
    uint32_t layout_version;
    uint32_t publisher_slots;
    uint32_t subscriber_slots;
    uint32_t reserved0;
    uint64_t generation;        // +1 (release) whenever a publisher slot becomes active or free
    uint64_t subscribers;       // attached subscribers: a publication is connected while this is > 0
    uint8_t reserved[24];
};

// A closing publisher (closed, or found dead) keeps its log for the linger time so that subscribers that have
// not polled since it appeared can still drain it; then a sweep frees the slot and unlinks the log.
enum SlotState : uint32_t { kSlotFree = 0, kSlotClaiming = 1, kSlotActive = 2, kSlotClosing = 3 };

// The first 8 bytes of a slot are its "slot word": state and owner together (publisher slot: the session id;
// subscriber slot: the pid). Every state change is a 64-bit compare-and-swap of the whole word, so an actor that
// acts on what it saw earlier (a sweeper delayed between looking and acting) can never change a slot that has
// been freed and claimed by someone else in the meantime: the owner half no longer matches.
struct PublisherSlot {
    uint32_t state;             // SlotState  } the slot word
    int32_t session_id;         //            }
    uint64_t pid;
    uint64_t start_time_ns;     // CLOCK_MONOTONIC when the publisher registered
    uint64_t term_bytes;
    uint64_t close_time_ns;     // CLOCK_MONOTONIC when the slot entered kSlotClosing
    uint8_t reserved[24];
};

struct SubscriberSlot {
    uint32_t state;             // SlotState        } the slot word
    uint32_t owner;             // pid of the owner }
    uint64_t pid;
    uint64_t join_time_ns;
    uint8_t reserved[40];
};

inline constexpr std::size_t kRegistryBytes =
    sizeof(RegistryHeader) + kPublisherSlots * sizeof(PublisherSlot) + kSubscriberSlots * sizeof(SubscriberSlot);

// Publisher log: a 192-byte header, then a ring of term_bytes (a power of two). Position counters grow without
// bound; the ring index of a position is position & (term_bytes - 1) and its lap is position / term_bytes.
//
// Readers find complete records by their header word (as Aeron's readers do), not by a shared tail: the words
// that change with every record are never read on a reader's fast path, so a reader that keeps up costs the
// writer no cache-line transfer beyond the records themselves.
struct LogHeader {
    uint64_t magic;
    uint32_t layout_version;
    int32_t session_id;
    uint64_t term_bytes;
    uint64_t pid;
    uint8_t reserved0[32];
    // Second cache line: changes once per eighth of a ring, so readers check it for nearly nothing.
    uint64_t write_limit;       // no byte at or beyond this position has been (or is being) written
    uint8_t reserved1[56];
    // Third cache line: written after every record, read only to join, to resync and to drain.
    uint64_t tail;              // end of the last complete record
    uint64_t last_record;       // start of the last complete record: where a lapped reader resumes
    uint8_t reserved2[48];
};

inline constexpr std::size_t kLogHeaderBytes = sizeof(LogHeader);

// Each record: this header, then `length` bytes, padded to kRecordAlign. A padding record fills the end of
// the ring when the next record would not fit before the wrap. The first word (length, type, lap) is stored
// last, with release: a reader that loads it with acquire and finds the lap of the position it reads at sees
// the whole record. A word of an older lap (or zero) means "not written yet". Before publishing a record, the
// writer zeroes the word where the next one will start (and where padding sends the reader): a reader waiting
// there would otherwise meet the last lap's bytes, message bytes that may look like a header of this lap.
struct RecordHeader {
    uint32_t length;            // payload bytes (for padding: bytes after this header up to the wrap)
    uint32_t type_lap;          // RecordType in the low 8 bits, the record's lap (mod 2^24) in the high 24
    uint64_t seq;               // per-publisher message number from 0 (data records only)
};

enum RecordType : uint32_t { kRecordData = 1, kRecordPadding = 2 };

inline constexpr uint64_t kLapMask = (uint64_t{1} << 24) - 1;

// The first word of a record header (little-endian: length in the low half).
inline constexpr uint64_t record_word(uint32_t length, RecordType type, uint64_t lap) noexcept {
    return uint64_t{length} | uint64_t{type} << 32 | (lap & kLapMask) << 40;
}
inline constexpr uint32_t record_word_length(uint64_t w) noexcept { return static_cast<uint32_t>(w); }
inline constexpr uint32_t record_word_type(uint64_t w) noexcept { return static_cast<uint32_t>(w >> 32) & 0xFFu; }
inline constexpr uint64_t record_word_lap(uint64_t w) noexcept { return w >> 40; }

inline constexpr std::size_t kRecordAlign = 16;
inline constexpr std::size_t kRecordHeaderBytes = sizeof(RecordHeader);
inline constexpr std::size_t kMinTermBytes = std::size_t{1} << 20;
inline constexpr std::size_t kMaxTermBytes = std::size_t{1} << 30;

// The writer raises write_limit this far beyond the record it is about to write, so the word changes once per
// eighth of a ring. Readers treat everything within a ring of write_limit as possibly overwritten, so they lose
// at most the oldest eighth of the ring earlier than strictly needed.
inline constexpr std::size_t write_limit_step(std::size_t term_bytes) noexcept { return term_bytes / 8; }

inline constexpr std::size_t record_bytes(std::size_t payload) noexcept {
    return (kRecordHeaderBytes + payload + kRecordAlign - 1) & ~(kRecordAlign - 1);
}

// Aeron's rule: a message may take at most 1/8 of the term, capped at 16 MiB.
inline constexpr std::size_t max_message_bytes(std::size_t term_bytes) noexcept {
    std::size_t m = term_bytes / 8;
    if (m > (std::size_t{16} << 20)) m = std::size_t{16} << 20;
    return m - kRecordHeaderBytes;
}

static_assert(sizeof(RegistryHeader) == 64 && sizeof(PublisherSlot) == 64 && sizeof(SubscriberSlot) == 64);
static_assert(offsetof(PublisherSlot, session_id) == 4 && offsetof(SubscriberSlot, owner) == 4);

// Slot words (little-endian: the state is the low half).
inline constexpr uint64_t slot_word(uint32_t state, uint32_t owner) noexcept {
    return uint64_t{state} | uint64_t{owner} << 32;
}
inline constexpr uint64_t publisher_word(uint32_t state, int32_t session_id) noexcept {
    return slot_word(state, static_cast<uint32_t>(session_id));
}
inline constexpr uint32_t word_state(uint64_t word) noexcept { return static_cast<uint32_t>(word); }
inline constexpr uint32_t word_owner(uint64_t word) noexcept { return static_cast<uint32_t>(word >> 32); }
inline constexpr int32_t word_session(uint64_t word) noexcept { return static_cast<int32_t>(word >> 32); }
static_assert(sizeof(LogHeader) == 192 && sizeof(RecordHeader) == 16);
static_assert(offsetof(LogHeader, write_limit) == 64 && offsetof(LogHeader, tail) == 128);

}  // namespace tensorpool::transport::ipc
