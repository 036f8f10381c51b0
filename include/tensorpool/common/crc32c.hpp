// CRC32C (Castagnoli), as metadata blobs (WIRE_SPEC W-15.9-2) and `consume --json` use it. Runs on the SSE4.2
// crc32 instruction when the CPU has it (checked once), else on a table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tensorpool {

// CRC32C of `data` continuing from `crc` (0 to start): crc32c(a+b) == crc32c(b, crc32c(a)).
uint32_t crc32c(std::span<const std::byte> data, uint32_t crc = 0) noexcept;

// Whether the hardware instruction is in use.
bool crc32c_hardware() noexcept;

}  // namespace tensorpool
