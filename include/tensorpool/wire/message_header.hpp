// The 8-byte SBE message header shared by all six schemas: blockLength, templateId, schemaId, version (u16 LE).
#pragma once

#include <cstddef>
#include <cstdint>

#include "tensorpool/common/result.hpp"
#include "tensorpool/wire/byte_io.hpp"

namespace tensorpool::wire {

struct MessageHeader {
    static constexpr std::size_t kSize = 8;

    uint16_t blockLength = 0;
    uint16_t templateId = 0;
    uint16_t schemaId = 0;
    uint16_t version = 0;

    [[nodiscard]] static Result<MessageHeader> read(const uint8_t* buf, std::size_t len) noexcept {
        if (len < kSize) {
            return Error::format(Errc::truncated, "message header: need %zu bytes, have %zu", kSize, len);
        }
        MessageHeader h;
        h.blockLength = load_le<uint16_t>(buf + 0);
        h.templateId = load_le<uint16_t>(buf + 2);
        h.schemaId = load_le<uint16_t>(buf + 4);
        h.version = load_le<uint16_t>(buf + 6);
        return h;
    }

    void write(uint8_t* buf) const noexcept {
        store_le<uint16_t>(buf + 0, blockLength);
        store_le<uint16_t>(buf + 2, templateId);
        store_le<uint16_t>(buf + 4, schemaId);
        store_le<uint16_t>(buf + 6, version);
    }
};

}  // namespace tensorpool::wire
