// Fixed numbers of the SHM layout (WIRE_SPEC §2, §8). They are protocol constants, not SBE metadata: W-6-3
// forbids deriving the superblock size from a blockLength, so they are spelled out once, here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tensorpool::shm {

inline constexpr std::size_t kSuperblockBytes = 64;     // W-6-3: always 64, never from SBE metadata
inline constexpr std::size_t kHeaderSlotBytes = 256;    // W-8-1
inline constexpr std::size_t kHeaderBytesLength = 192;  // W-8-7: embedded 8-byte SBE header + 184-byte body
inline constexpr std::size_t kCommitWordOffset = 0;     // W-8-4: seq_commit at slot byte 0
// Slot bytes [0, 147) hold every field; [147, 256) is the TensorHeader's reserved padding, which consumers ignore
// (W-8-18). A reader that copies only the field bytes, rounded up to whole words (152), reads three cache lines of
// the slot instead of four.
inline constexpr std::size_t kSlotFieldBytes = 147;
inline constexpr std::size_t kSlotFieldWordsEnd = (kSlotFieldBytes + 7) / 8 * 8;
inline constexpr std::size_t kPayloadStrideAlign = 64;  // W-15.22-9
inline constexpr std::uint32_t kMaxDims = 8;            // W-8-2: compile-time constant, never encoded

inline constexpr std::uint64_t kMagic = 0x544F504C53484D31ULL;  // W-7-5, compared as a LE u64
inline constexpr std::uint32_t kLayoutVersion = 1;              // reference TP_LAYOUT_VERSION

// Values the C reference writes into the superblock field that does not apply; we write the same so
// that each implementation accepts the other's files, and we never check them on read.
inline constexpr std::uint32_t kRingStrideBytes = 0;
inline constexpr std::uint32_t kPoolSlotBytes = 0xFFFFFFFFu;

// Embedded TensorHeader message header (slot bytes 64..71) that v1.2 requires (W-8-28, W-8-29).
inline constexpr std::uint16_t kTensorHeaderBlockLength = 184;
inline constexpr std::uint16_t kTensorHeaderTemplateId = 52;
inline constexpr std::uint16_t kControlSchemaId = 900;
inline constexpr std::uint16_t kControlSchemaVersion = 1;

// Linux statfs f_type of hugetlbfs (linux/magic.h), used for require_hugepages=true (W-15.22-5).
inline constexpr std::uint64_t kHugetlbfsMagic = 0x958458f6ULL;

}  // namespace tensorpool::shm
