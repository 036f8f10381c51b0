// A subscriber on the ipc bus: reads every publisher's ring of its stream, copying each batch out before
// validating it, so a message it hands over can never be torn or half written.
//
// Read protocol per batch (mirror of the write protocol in ipc_publication.hpp):
//   1. from our cursor on, load each record's first header word (acquire) and stop at the first that does not
//      carry the lap of its position (not written yet), at the batch size or at the message limit;
//      when nothing is there, write_limit tells whether the writer lapped us (then: count the loss, resume at
//      the newest record);
//   2. copy those records into private scratch memory;
//   3. acquire fence, then write_limit: if it lies more than a ring beyond our cursor the writer may have
//      overwritten what we copied: discard the copy, count the loss, resume at the newest record;
//   4. deliver the records from the validated copy. Per-publisher sequence numbers make the lost message count
//      exact.
// The words the writer changes with every record (tail, last_record) are read only to join, resync and drain:
// a reader that keeps up touches no cache line of the writer's but the records themselves.
// New publishers are noticed through the registry's generation word (one atomic load per poll) and the stream's
// process-local sweep tick (one more: every Transport::do_work sweep makes each subscription rescan, a safety net
// that bounds how long any missed change can go unnoticed); only then are files opened and mapped, so
// steady-state polling makes no system call and allocates nothing. A publisher whose log could not be opened
// (refused, missing, no room for another image) stays a candidate: it is retried with a backoff (1 ms doubling
// to 250 ms, the clock is read only while such a candidate exists) until it opens or its slot changes.
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "ipc_format.hpp"
#include "ipc_stream.hpp"
#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport::ipc {

class IpcSubscription final : public Subscription {
public:
    static Result<std::unique_ptr<IpcSubscription>> create(std::shared_ptr<IpcStream> stream, std::string channel,
                                                           int32_t stream_id);
    ~IpcSubscription() override;

    int poll(MessageHandler handler, int message_limit) noexcept override;
    bool skip_to_latest() noexcept override;
    int image_count() const noexcept override { return static_cast<int>(images_.size()); }
    uint64_t lost_messages() const noexcept override { return lost_messages_; }
    uint64_t lost_bytes() const noexcept override { return lost_bytes_; }
    const std::string& channel() const noexcept override { return channel_; }
    int32_t stream_id() const noexcept override { return stream_id_; }

    // Publisher logs that failed validation (hostile or foreign files) and were never read, each counted once,
    // and why the last log could not be opened.
    uint64_t refused_images() const noexcept { return refused_images_; }
    const std::string& last_refusal() const noexcept { return last_refusal_; }

private:
    struct Image {
        shm::Mapping log;
        const uint8_t* ring = nullptr;
        uint64_t* tail = nullptr;
        uint64_t* write_limit = nullptr;
        uint64_t* last_record = nullptr;
        std::size_t term_bytes = 0;
        unsigned term_shift = 0;  // log2(term_bytes): a position's lap is position >> term_shift
        std::size_t max_message = 0;
        int32_t session_id = 0;
        uint32_t slot = 0;
        uint64_t cursor = 0;
        uint64_t next_seq = 0;
        bool seq_known = false;
        bool retiring = false;  // the publisher is gone: drain what is left, then drop the image
        int64_t join_time_ns = 0;
    };

    IpcSubscription(std::shared_ptr<IpcStream> stream, std::string channel, int32_t stream_id, int64_t join_time_ns);
    static constexpr uint32_t kNoSlot = ~uint32_t{0};

    void rescan(bool initial) noexcept;
    bool open_image(uint32_t slot, uint64_t word, bool from_tail) noexcept;
    int poll_image(Image& image, MessageHandler& handler, int limit) noexcept;
    int poll_image_once(Image& image, MessageHandler& handler, int limit) noexcept;
    void resync(Image& image) noexcept;

    std::shared_ptr<IpcStream> stream_;
    std::string channel_;
    int32_t stream_id_;
    uint32_t slot_ = kNoSlot;  // our subscriber slot, claimed after the start positions were taken
    int64_t join_time_ns_;
    uint64_t seen_generation_ = 0;
    uint64_t seen_ticks_ = 0;
    std::vector<Image> images_;
    // Per publisher slot: the session whose image we drained and dropped while its slot was still closing, so
    // that a later rescan does not read that log a second time.
    std::array<int32_t, kPublisherSlots> drained_session_{};
    // Per publisher slot: the slot word (active or closing, with its session) whose log we could not open yet,
    // and whether it was already there when we joined (then it is read from its tail once it opens).
    std::array<uint64_t, kPublisherSlots> pending_word_{};
    std::array<bool, kPublisherSlots> pending_since_join_{};
    uint32_t pending_ = 0;
    int64_t next_retry_ns_ = 0;
    int64_t retry_interval_ns_ = 0;
    std::vector<uint8_t> scratch_;
    std::size_t next_image_ = 0;
    uint64_t lost_messages_ = 0;
    uint64_t lost_bytes_ = 0;
    uint64_t refused_images_ = 0;
    std::string last_refusal_;
};

}  // namespace tensorpool::transport::ipc
