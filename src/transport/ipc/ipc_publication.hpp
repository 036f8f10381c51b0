// A publisher on the ipc bus: the single writer of its own ring (pub-<session>.log).
//
// Write protocol per record (readers validate against it, ipc_subscription.cpp):
//   1. if the record would end at or beyond write_limit, raise write_limit an eighth of a ring past it (relaxed store,
//      then a release fence, so no byte of the record can become visible before it);
//   2. write the record's seq word and payload (a padding record first if the ring wraps);
//   3. zero the word where the next record will start (a reader waits there, on the last lap's bytes), then
//      store the record's first header word (length, type, lap) with release: now readers see the record;
//   4. last_record and tail, for readers that join, resync or drain.
// A reader that copied bytes at position p knows they were intact if write_limit <= p + term afterwards.
// Nothing waits for a reader: a slow reader is overwritten and counts the loss. Use a publication from one
// thread at a time.
#pragma once

#include <memory>
#include <string>

#include "ipc_format.hpp"
#include "ipc_stream.hpp"
#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport::ipc {

class IpcPublication final : public Publication {
public:
    static Result<std::unique_ptr<IpcPublication>> create(std::shared_ptr<IpcStream> stream, std::string channel,
                                                          int32_t stream_id, std::size_t term_bytes, bool prefault);
    ~IpcPublication() override;

    OfferResult offer(std::span<const uint8_t> message) noexcept override;
    OfferResult try_claim(std::size_t length, BufferClaim& claim) noexcept override;
    bool is_connected() const noexcept override;
    std::size_t max_message_length() const noexcept override { return max_message_; }
    const std::string& channel() const noexcept override { return channel_; }
    int32_t stream_id() const noexcept override { return stream_id_; }
    int32_t session_id() const noexcept override { return session_id_; }

private:
    IpcPublication(std::shared_ptr<IpcStream> stream, std::string channel, int32_t stream_id, shm::Mapping log,
                   int32_t session_id, uint32_t slot, std::size_t term_bytes) noexcept;

    // Steps 1 and 2a of the protocol: reserves the record's space, writes padding if needed; returns the ring
    // index of the record's header.
    std::size_t begin_record(std::size_t record) noexcept;
    // Steps 3 and 4: publishes the record begun at ring index `index` with this first header word.
    void end_record(std::size_t index, uint64_t word) noexcept;
    // Zero at the ring index where the next record starts: a word no record has ("not written yet").
    void mark_unwritten(std::size_t index) noexcept;
    uint64_t lap_of(uint64_t position) const noexcept { return position >> term_shift_; }

    static void commit_claim(BufferClaim& c) noexcept;
    static void abort_claim(BufferClaim& c) noexcept;

    std::shared_ptr<IpcStream> stream_;
    std::string channel_;
    int32_t stream_id_;
    shm::Mapping log_;
    int32_t session_id_;
    uint32_t slot_;
    uint8_t* ring_;
    uint64_t* write_limit_;
    uint64_t* tail_;
    uint64_t* last_record_;
    std::size_t term_bytes_;
    unsigned term_shift_;     // log2(term_bytes_)
    std::size_t max_message_;
    uint64_t position_ = 0;   // our copy of tail
    uint64_t pending_ = 0;    // end of the record being written
    uint64_t limit_ = 0;      // our copy of write_limit
    uint64_t record_start_ = 0;  // start of the record being written (after any padding)
    uint64_t next_seq_ = 0;
    bool claim_open_ = false;
};

}  // namespace tensorpool::transport::ipc
