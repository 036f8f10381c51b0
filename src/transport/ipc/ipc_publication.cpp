#include "ipc_publication.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstring>

#include "tensorpool/common/clock.hpp"
#include "tensorpool/common/prefetch.hpp"

namespace tensorpool::transport::ipc {

namespace {

constexpr std::size_t kLineBytes = 64;

int32_t random_session_id() noexcept {
    uint32_t v = 0;
    if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) {
        v = static_cast<uint32_t>(monotonic_ns()) ^ static_cast<uint32_t>(::getpid()) << 16;
    }
    v &= 0x7FFFFFFFu;
    return static_cast<int32_t>(v == 0 ? 1 : v);
}

// The first header word is shared with readers that poll it: always a whole-word atomic store.
void store_word(uint8_t* at, uint64_t word, std::memory_order order) noexcept {
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(at)).store(word, order);
}

void store_seq(uint8_t* record, uint64_t seq) noexcept {
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(record + offsetof(RecordHeader, seq)))
        .store(seq, std::memory_order_relaxed);
}

}  // namespace

Result<std::unique_ptr<IpcPublication>> IpcPublication::create(std::shared_ptr<IpcStream> stream, std::string channel,
                                                               int32_t stream_id, std::size_t term_bytes,
                                                               bool prefault) {
    if (term_bytes < kMinTermBytes || term_bytes > kMaxTermBytes || (term_bytes & (term_bytes - 1)) != 0) {
        return Error::format(Errc::invalid_argument, "channel %s: term length %zu is not a power of two in [%zu, %zu]",
                             channel.c_str(), term_bytes, kMinTermBytes, kMaxTermBytes);
    }
    const uint64_t pid = static_cast<uint64_t>(::getpid());
    for (int attempt = 0; attempt < 8; ++attempt) {
        const int32_t session = random_session_id();
        if (stream->session_in_use(session)) continue;
        // The log exists, complete and naming us, before we claim a slot (the sweep relies on it, ipc_stream.hpp).
        auto log = create_log(stream->dir(), session, term_bytes, pid, prefault);
        if (!log) {
            if (log.error().code() == Errc::io && attempt < 7) continue;  // e.g. a leftover file with this name
            return log.error();
        }
        auto slot = stream->claim_publisher_slot(session, term_bytes, monotonic_ns());
        if (!slot) {
            unlink_log(stream->dir(), session);
            if (slot.error().code() == Errc::state && attempt < 7) continue;  // lost the slot while registering
            return slot.error();
        }
        return std::unique_ptr<IpcPublication>(new IpcPublication(std::move(stream), std::move(channel), stream_id,
                                                                  std::move(*log), session, *slot, term_bytes));
    }
    return Error::format(Errc::io, "channel %s: could not create a publisher log in %s", channel.c_str(),
                         stream->path().c_str());
}

IpcPublication::IpcPublication(std::shared_ptr<IpcStream> stream, std::string channel, int32_t stream_id,
                               shm::Mapping log, int32_t session_id, uint32_t slot, std::size_t term_bytes) noexcept
    : stream_(std::move(stream)),
      channel_(std::move(channel)),
      stream_id_(stream_id),
      log_(std::move(log)),
      session_id_(session_id),
      slot_(slot),
      term_bytes_(term_bytes),
      term_shift_(static_cast<unsigned>(std::countr_zero(term_bytes))),
      max_message_(max_message_bytes(term_bytes)) {
    auto* base = reinterpret_cast<uint8_t*>(log_.writable_data());
    auto* h = reinterpret_cast<LogHeader*>(base);
    ring_ = base + kLogHeaderBytes;
    write_limit_ = &h->write_limit;
    tail_ = &h->tail;
    last_record_ = &h->last_record;
}

IpcPublication::~IpcPublication() {
    // The log stays for the linger time so that subscribers can drain it; a later sweep removes it.
    stream_->close_publisher_slot(slot_, session_id_);
}

bool IpcPublication::is_connected() const noexcept {
    return stream_->subscribers().load(std::memory_order_relaxed) > 0;
}

std::size_t IpcPublication::begin_record(std::size_t record) noexcept {
    std::size_t index = static_cast<std::size_t>(position_) & (term_bytes_ - 1);
    const std::size_t to_end = term_bytes_ - index;
    const std::size_t pad = record > to_end ? to_end : 0;
    pending_ = position_ + pad + record;
    // >=: the limit also covers the word end_record() marks at pending_.
    if (pending_ >= limit_) {
        limit_ = pending_ + write_limit_step(term_bytes_);
        std::atomic_ref<uint64_t>(*write_limit_).store(limit_, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);
    }
    if (pad != 0) {
        // Where the padding sends the reader. That word is the last lap's first record header, which no reader
        // takes for this lap's, so this only keeps the rule without exception: every record start is zeroed first.
        mark_unwritten(0);
        store_word(ring_ + index, record_word(static_cast<uint32_t>(pad - kRecordHeaderBytes), kRecordPadding,
                                              lap_of(position_)), std::memory_order_release);
        index = 0;
    }
    record_start_ = position_ + pad;
    return index;
}

void IpcPublication::mark_unwritten(std::size_t index) noexcept {
    store_word(ring_ + index, 0, std::memory_order_relaxed);
}

void IpcPublication::end_record(std::size_t index, uint64_t word) noexcept {
    // A reader that keeps up reads the word at pending_ next, and finds there the last lap's bytes: message bytes,
    // wherever the records of the two laps start at different places, and those can look like a header of this
    // lap (an application's payload may hold any 8 bytes). Read as a record, they were delivered as a message and
    // left the reader inside a record for good. So that word turns into "not written" before this record is
    // published (the release below orders it first).
    mark_unwritten(static_cast<std::size_t>(pending_) & (term_bytes_ - 1));
    store_word(ring_ + index, word, std::memory_order_release);
    position_ = pending_;
    std::atomic_ref<uint64_t>(*last_record_).store(record_start_, std::memory_order_relaxed);
    std::atomic_ref<uint64_t>(*tail_).store(position_, std::memory_order_release);
    // A reader that keeps up polls the line of the next record, and its core's stream prefetcher pulls in the
    // lines after it: each record's first store would then wait for another core to give its line up, and x86
    // commits stores in order, so every store behind it waits too. Ask now for the line after the polled one in a
    // writable state (the polled line itself would only be taken back by the reader's next poll). Measured on
    // 64-byte frames: 4-13% more frames published while the consumer keeps up, no change when it lags.
    prefetch_for_write(ring_ + ((position_ + kLineBytes) & (term_bytes_ - 1)));
}

OfferResult IpcPublication::offer(std::span<const uint8_t> message) noexcept {
    if (message.size() > max_message_) return OfferStatus::message_too_large;
    if (claim_open_) return OfferStatus::failed;
    if (!is_connected()) return OfferStatus::not_connected;
    const std::size_t index = begin_record(record_bytes(message.size()));
    store_seq(ring_ + index, next_seq_++);
    if (!message.empty()) std::memcpy(ring_ + index + kRecordHeaderBytes, message.data(), message.size());
    end_record(index, record_word(static_cast<uint32_t>(message.size()), kRecordData, lap_of(record_start_)));
    return OfferResult(static_cast<int64_t>(position_));
}

OfferResult IpcPublication::try_claim(std::size_t length, BufferClaim& claim) noexcept {
    if (length > max_message_) return OfferStatus::message_too_large;
    if (claim_open_ || claim.active()) return OfferStatus::failed;
    if (!is_connected()) return OfferStatus::not_connected;
    const std::size_t record = record_bytes(length);
    const std::size_t index = begin_record(record);
    store_seq(ring_ + index, next_seq_);
    static constexpr BufferClaim::Ops kOps{&IpcPublication::commit_claim, &IpcPublication::abort_claim};
    claim.state[0] = reinterpret_cast<uintptr_t>(this);
    claim.state[1] = index;
    claim.state[2] = record;
    claim.state[3] = length;
    claim.arm(ring_ + index + kRecordHeaderBytes, length, &kOps);
    claim_open_ = true;
    return OfferResult(static_cast<int64_t>(pending_));
}

void IpcPublication::commit_claim(BufferClaim& c) noexcept {
    auto* self = reinterpret_cast<IpcPublication*>(c.state[0]);
    ++self->next_seq_;
    self->claim_open_ = false;
    self->end_record(c.state[1], record_word(static_cast<uint32_t>(c.state[3]), kRecordData,
                                             self->lap_of(self->record_start_)));
}

void IpcPublication::abort_claim(BufferClaim& c) noexcept {
    // The space stays used but turns into padding, which readers skip; no sequence number is consumed.
    auto* self = reinterpret_cast<IpcPublication*>(c.state[0]);
    self->claim_open_ = false;
    self->end_record(c.state[1], record_word(static_cast<uint32_t>(c.state[2] - kRecordHeaderBytes), kRecordPadding,
                                             self->lap_of(self->record_start_)));
}

}  // namespace tensorpool::transport::ipc
