#include "ipc_subscription.hpp"

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>

#include "ipc_files.hpp"
#include "tensorpool/common/clock.hpp"

namespace tensorpool::transport::ipc {

namespace {

// Bytes copied per batch: enough to amortise the validation over a hundred small messages, small enough that a
// poll limited to a few messages copies about what it delivers (a 64 KiB batch cut at 256 descriptors copied four
// times what it used). A single larger record gets a batch of its own size; poll_image() takes batches until the
// limit or the tail.
constexpr std::size_t kBatchBytes = 8 * 1024;

uint64_t load_acquire(uint64_t* p) noexcept { return std::atomic_ref<uint64_t>(*p).load(std::memory_order_acquire); }
uint64_t load_relaxed(uint64_t* p) noexcept { return std::atomic_ref<uint64_t>(*p).load(std::memory_order_relaxed); }

// A position taken from the writer's header (tail, last_record) to read from. Our writer only ever stores record
// boundaries, which are kRecordAlign-aligned; a corrupted or hostile header may hold anything, and reading record
// words at a misaligned position would be undefined. Rounded down, the position is at worst inside a record: its
// bytes are then read as record words like any others, bounded and checked the same way (a hostile writer can
// make them look like records, as it can make anything in its log look like records). A writer never reaches
// 2^62 bytes (146 years at 1 TB/s); a header that claims it is corrupted, and reads as position 0, so positions
// never wrap and MessageInfo::position stays positive.
uint64_t record_position(uint64_t p) noexcept {
    constexpr uint64_t kBeyondAnyWriter = uint64_t{1} << 62;
    return p >= kBeyondAnyWriter ? 0 : p & ~uint64_t{kRecordAlign - 1};
}

}  // namespace

Result<std::unique_ptr<IpcSubscription>> IpcSubscription::create(std::shared_ptr<IpcStream> stream,
                                                                 std::string channel, int32_t stream_id) {
    // Start positions first, registration second: a message published before we count as a subscriber either
    // lies beyond the tails we took (so we read it) or was refused as not_connected (so nobody lost it). The
    // other order lost what was published between the two steps.
    const int64_t join = monotonic_ns();
    std::unique_ptr<IpcSubscription> sub(new IpcSubscription(stream, std::move(channel), stream_id, join));
    auto slot = stream->claim_subscriber_slot(join);
    if (!slot) return slot.error();
    sub->slot_ = *slot;
    return sub;
}

IpcSubscription::IpcSubscription(std::shared_ptr<IpcStream> stream, std::string channel, int32_t stream_id,
                                 int64_t join_time_ns)
    : stream_(std::move(stream)), channel_(std::move(channel)), stream_id_(stream_id), join_time_ns_(join_time_ns) {
    images_.reserve(kPublisherSlots);  // rescans never reallocate: Images hold mappings
    scratch_.resize(kBatchBytes);
    seen_generation_ = stream_->generation().load(std::memory_order_acquire);
    seen_ticks_ = stream_->sweep_ticks();
    rescan(true);
}

IpcSubscription::~IpcSubscription() {
    if (slot_ != kNoSlot) stream_->release_subscriber_slot(slot_);
}

// Slow path. Every slot word is read once, whole (state and session together), so what a rescan acts on is one
// consistent state of the slot; reading the state and the session separately let a slot that changed hands in
// between look like "closing, new session", and the new publisher's image was then drained, dropped and never
// read again.
void IpcSubscription::rescan(bool initial) noexcept {
    // Mark images whose publisher left (slot closing, freed, or reused by another session).
    for (Image& im : images_) {
        if (stream_->pub_word(im.slot).load(std::memory_order_acquire) !=
            publisher_word(kSlotActive, im.session_id)) {
            im.retiring = true;
        }
    }
    pending_ = 0;
    for (uint32_t i = 0; i < kPublisherSlots; ++i) {
        const uint64_t w = stream_->pub_word(i).load(std::memory_order_acquire);
        const uint32_t state = word_state(w);
        const int32_t session = word_session(w);
        if (pending_word_[i] != 0 && pending_word_[i] != w) {
            pending_word_[i] = 0;  // that publisher is gone; whatever holds the slot now is judged afresh
            pending_since_join_[i] = false;
        }
        if (state == kSlotFree) drained_session_[i] = 0;
        // A publisher that was already closing when we joined wrote nothing after our join: as good as drained
        // (a later rescan must not read it from its start).
        if (state == kSlotClosing && initial) drained_session_[i] = session;
        if (state != kSlotActive && state != kSlotClosing) continue;
        if (drained_session_[i] == session) continue;  // read to its end already
        bool known = false;
        for (const Image& im : images_) known = known || (im.slot == i && im.session_id == session);
        if (known) continue;
        if (!open_image(i, w, initial || pending_since_join_[i])) {
            if (pending_word_[i] == 0) pending_since_join_[i] = initial;
            pending_word_[i] = w;
            ++pending_;
        } else {
            pending_word_[i] = 0;
            pending_since_join_[i] = false;
        }
    }
    if (pending_ != 0) {
        constexpr int64_t kFirstRetryNs = 1'000'000, kMaxRetryNs = 250'000'000;
        retry_interval_ns_ = retry_interval_ns_ == 0 ? kFirstRetryNs : std::min(2 * retry_interval_ns_, kMaxRetryNs);
        next_retry_ns_ = monotonic_ns() + retry_interval_ns_;
    } else {
        retry_interval_ns_ = 0;
    }
}

// Opens the log of the publisher in slot `i` as the slot word `w` describes it; false if it cannot (yet).
bool IpcSubscription::open_image(uint32_t i, uint64_t w, bool from_tail) noexcept {
    if (images_.size() == images_.capacity()) return false;  // retried once a drained image makes room
    PublisherSlot& s = stream_->publisher(i);
    const uint64_t term = std::atomic_ref<uint64_t>(s.term_bytes).load(std::memory_order_relaxed);
    const int64_t start = static_cast<int64_t>(std::atomic_ref<uint64_t>(s.start_time_ns).load(std::memory_order_relaxed));
    // The fields belong to the publisher of `w` only if the word did not change meanwhile; if it did, that
    // change bumps the generation (or is retried as pending), so a later rescan looks again.
    if (stream_->pub_word(i).load(std::memory_order_acquire) != w) return false;
    const int32_t session = word_session(w);
    auto log = open_log(stream_->dir(), session, static_cast<std::size_t>(term));
    if (!log) {
        if (pending_word_[i] != w) {  // each candidate counted once, however often it is retried
            if (log.error().code() != Errc::not_found) ++refused_images_;
            last_refusal_ = log.error().message();
        }
        return false;
    }
    Image im;
    im.log = std::move(*log);
    auto* base = const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(im.log.data()));
    auto* h = reinterpret_cast<LogHeader*>(base);
    im.ring = base + kLogHeaderBytes;
    im.tail = &h->tail;
    im.write_limit = &h->write_limit;
    im.last_record = &h->last_record;
    im.term_bytes = static_cast<std::size_t>(term);
    im.term_shift = static_cast<unsigned>(std::countr_zero(im.term_bytes));
    im.max_message = max_message_bytes(im.term_bytes);
    im.session_id = session;
    im.slot = i;
    im.retiring = word_state(w) == kSlotClosing;  // drain it, then drop it
    // A publisher already attached when we joined: start at its tail (we see what comes after our join).
    // One that appeared later: everything it wrote came after our join, so read it from the start.
    if (from_tail) {
        im.cursor = record_position(load_acquire(im.tail));
        im.join_time_ns = join_time_ns_;
    } else {
        im.cursor = 0;
        im.seq_known = true;
        im.join_time_ns = start > join_time_ns_ ? start : join_time_ns_;
    }
    if (record_bytes(im.max_message) > scratch_.size()) scratch_.resize(record_bytes(im.max_message));
    images_.push_back(std::move(im));
    return true;
}

void IpcSubscription::resync(Image& im) noexcept {
    // Resume at the newest complete record (the freshest data is what a lapped reader wants), or at the tail
    // when the writer is between records. The copy-and-validate step still guards what is read from there.
    const uint64_t tail = record_position(load_acquire(im.tail));
    const uint64_t newest = record_position(load_acquire(im.last_record));
    const uint64_t target = newest < tail && tail - newest <= im.term_bytes && newest > im.cursor ? newest : tail;
    // Never back: everything behind the cursor was delivered or skipped already. Only a corrupted or hostile log
    // has its tail behind a reader that must resync (at a foreign record word, or lapped by a write_limit the tail
    // contradicts); going back to it re-delivered the same records for ever. Staying put, the reader waits at the
    // record it cannot read and each poll returns at once.
    if (target <= im.cursor) return;
    lost_bytes_ += target - im.cursor;
    im.cursor = target;
    // next_seq stays: the first record read after the jump tells exactly how many messages were skipped.
}

bool IpcSubscription::skip_to_latest() noexcept {
    // As a lapped reader resumes (resync), but on request: the newest complete record, or the tail. Not loss.
    for (Image& im : images_) {
        const uint64_t lost = lost_bytes_;
        resync(im);
        lost_bytes_ = lost;
        im.seq_known = false;  // the records jumped over are not lost messages
    }
    return true;
}

int IpcSubscription::poll_image(Image& im, MessageHandler& handler, int limit) noexcept {
    // Batch after batch until the limit or the tail. After skipping ahead once, read from the new position in the
    // same call, so that a poll returning 0 means there is nothing to read now. A second lap in one call (a writer
    // far faster than us) ends the call.
    int total = 0;
    int laps = 0;
    while (total < limit) {
        const uint64_t before = im.cursor;
        const int n = poll_image_once(im, handler, limit - total);
        if (n < 0) {
            if (++laps == 2) break;
            continue;
        }
        total += n;
        if (im.cursor == before) break;  // nothing more to read now
    }
    return total;
}

// Returns the number delivered, or -1 when it had to skip ahead (lapped) and delivered nothing.
int IpcSubscription::poll_image_once(Image& im, MessageHandler& handler, int limit) noexcept {
    const std::size_t mask = im.term_bytes - 1;
    const std::size_t index = static_cast<std::size_t>(im.cursor) & mask;
    const uint64_t lap = (im.cursor >> im.term_shift) & kLapMask;
    // Step 1: find the complete records from the cursor on. Records never straddle the wrap (padding fills the
    // end), so the batch ends at the wrap at the latest and is one contiguous span of the ring. A padding record
    // ends the batch and is skipped, never copied (a hostile one may claim any length up to the wrap).
    std::size_t batch = 0;
    std::size_t pad = 0;
    int found = 0;
    bool foreign = false;
    while (found < limit && index + batch < im.term_bytes) {
        const uint64_t w = load_acquire(reinterpret_cast<uint64_t*>(const_cast<uint8_t*>(im.ring + index + batch)));
        const uint32_t type = record_word_type(w);
        // An older lap's word, or a zero one (a fresh ring): not written yet. Or, if we were lapped, a newer lap's
        // bytes: checked below.
        if (record_word_lap(w) != lap || type == 0) break;
        const uint32_t length = record_word_length(w);
        const std::size_t rec = record_bytes(length);
        if ((type != kRecordData && type != kRecordPadding) || (type == kRecordData && length > im.max_message) ||
            rec > im.term_bytes - index - batch) {
            foreign = batch == 0;  // not something our writer produces; judged after the lap check below
            break;
        }
        if (type == kRecordPadding) {
            pad = rec;
            break;
        }
        if (batch != 0 && batch + rec > kBatchBytes) break;  // the next batch's (a single large record: its own)
        batch += rec;
        ++found;
        if (batch >= kBatchBytes) break;
    }
    if (batch == 0 && pad == 0) {
        // Nothing to read here, unless the writer lapped us: then what lies at the cursor is a newer lap's bytes
        // and will never turn into the record we wait for. write_limit changes once per eighth of a ring, so
        // this check costs a reader that keeps up nearly nothing.
        if (load_relaxed(im.write_limit) - im.cursor > im.term_bytes) {
            resync(im);
            return -1;
        }
        // A record header our writer never produces: a foreign or corrupted ring. Skip what is written so far.
        if (foreign) resync(im);
        return 0;
    }
    // Steps 2 and 3: copy, then prove that neither the copy nor the padding word we trusted was overwritten.
    if (batch != 0) std::memcpy(scratch_.data(), im.ring + index, batch);
    std::atomic_thread_fence(std::memory_order_acquire);
    if (load_relaxed(im.write_limit) - im.cursor > im.term_bytes) {
        resync(im);  // overwritten while we copied: nothing of this batch is trusted
        return -1;
    }
    // Step 4: deliver from the copy: data records only, their header words the ones found above (the copy is
    // proven intact).
    std::size_t off = 0;
    int delivered = 0;
    while (off < batch) {
        RecordHeader h;
        std::memcpy(&h, scratch_.data() + off, sizeof h);
        const std::size_t rec = record_bytes(h.length);
        if (im.seq_known && h.seq > im.next_seq) lost_messages_ += h.seq - im.next_seq;
        im.next_seq = h.seq + 1;
        im.seq_known = true;
        const MessageInfo info{im.session_id, static_cast<int64_t>(im.cursor + off + rec), im.join_time_ns};
        handler(std::span<const uint8_t>(scratch_.data() + off + kRecordHeaderBytes, h.length), info);
        ++delivered;
        off += rec;
    }
    im.cursor += batch + pad;
    return delivered;
}

int IpcSubscription::poll(MessageHandler handler, int message_limit) noexcept {
    const uint64_t generation = stream_->generation().load(std::memory_order_acquire);
    const uint64_t ticks = stream_->sweep_ticks();
    if (generation != seen_generation_ || ticks != seen_ticks_ || (pending_ != 0 && monotonic_ns() >= next_retry_ns_)) {
        seen_generation_ = generation;
        seen_ticks_ = ticks;
        rescan(false);
    }
    int total = 0;
    const std::size_t n = images_.size();
    for (std::size_t k = 0; k < n && total < message_limit; ++k) {
        Image& im = images_[(next_image_ + k) % n];
        total += poll_image(im, handler, message_limit - total);
    }
    if (n != 0) next_image_ = (next_image_ + 1) % n;  // rotate the first image polled, for fairness
    // Drop images of departed publishers once drained.
    for (std::size_t i = 0; i < images_.size();) {
        Image& im = images_[i];
        // Drained: nothing left before the tail. The cursor may be past it for good: a publisher that died inside
        // a claim had already published the padding before it, which the reader skips, but never its tail.
        if (im.retiring && record_position(load_acquire(im.tail)) <= im.cursor) {
            drained_session_[im.slot] = im.session_id;
            images_[i] = std::move(images_.back());
            images_.pop_back();
        } else {
            ++i;
        }
    }
    return total;
}

}  // namespace tensorpool::transport::ipc
