#include "ipc_stream.hpp"

#include <unistd.h>

#include "tensorpool/common/clock.hpp"

namespace tensorpool::transport::ipc {

namespace {

constexpr int64_t kFileSweepIntervalNs = 1'000'000'000;

uint32_t own_pid() noexcept { return static_cast<uint32_t>(::getpid()); }

}  // namespace

IpcStream::IpcStream(StreamDir dir, shm::Mapping registry, int64_t linger_ns) noexcept
    : dir_(std::move(dir)), registry_(std::move(registry)), linger_ns_(linger_ns) {
    auto* base = reinterpret_cast<uint8_t*>(registry_.writable_data());
    header_ = reinterpret_cast<RegistryHeader*>(base);
    pubs_ = reinterpret_cast<PublisherSlot*>(base + sizeof(RegistryHeader));
    subs_ = reinterpret_cast<SubscriberSlot*>(base + sizeof(RegistryHeader) + kPublisherSlots * sizeof(PublisherSlot));
}

Result<std::shared_ptr<IpcStream>> IpcStream::open(const std::string& root, std::string_view bus, int32_t stream_id,
                                                   int64_t linger_ns) {
    auto dir = open_stream_dir(root, bus, stream_id);
    if (!dir) return dir.error();
    auto reg = open_registry(*dir);
    if (!reg) return reg.error();
    return std::shared_ptr<IpcStream>(new IpcStream(std::move(*dir), std::move(*reg), linger_ns));
}

bool IpcStream::session_in_use(int32_t session_id) noexcept {
    for (uint32_t i = 0; i < kPublisherSlots; ++i) {
        const uint64_t w = pub_word(i).load(std::memory_order_acquire);
        if (word_state(w) != kSlotFree && word_session(w) == session_id) return true;
    }
    return false;
}

Result<uint32_t> IpcStream::claim_publisher_slot(int32_t session_id, uint64_t term_bytes, int64_t start_time_ns) {
    const uint64_t claiming = publisher_word(kSlotClaiming, session_id);
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (uint32_t i = 0; i < kPublisherSlots; ++i) {
            uint64_t w = pub_word(i).load(std::memory_order_acquire);
            if (word_state(w) != kSlotFree) continue;
            if (!pub_word(i).compare_exchange_strong(w, claiming, std::memory_order_acq_rel)) continue;
            PublisherSlot& s = pubs_[i];
            std::atomic_ref<uint64_t>(s.pid).store(static_cast<uint64_t>(::getpid()), std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.start_time_ns).store(static_cast<uint64_t>(start_time_ns), std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.term_bytes).store(term_bytes, std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.close_time_ns).store(0, std::memory_order_relaxed);
            // Release: whoever sees the slot active sees the fields above. The CAS fails only if a sweeper found
            // our claim abandoned, which it does only when our log is missing or names a dead process.
            uint64_t expected = claiming;
            if (!pub_word(i).compare_exchange_strong(expected, publisher_word(kSlotActive, session_id),
                                                           std::memory_order_acq_rel)) {
                return Error::format(Errc::state, "ipc bus %s: publisher slot %u of session %d was taken over while "
                                     "registering (its log %s went missing)", dir_.path.c_str(), i, session_id,
                                     log_file_name(session_id).c_str());
            }
            generation().fetch_add(1, std::memory_order_acq_rel);
            return i;
        }
        if (sweep_dead() == 0) break;
    }
    return Error::format(Errc::capacity, "ipc bus %s: all %u publisher slots are in use by live processes",
                         dir_.path.c_str(), kPublisherSlots);
}

void IpcStream::close_publisher_slot(uint32_t slot, int32_t session_id) noexcept {
    std::atomic_ref<uint64_t>(pubs_[slot].close_time_ns).store(static_cast<uint64_t>(monotonic_ns()), std::memory_order_relaxed);
    uint64_t expected = publisher_word(kSlotActive, session_id);
    if (pub_word(slot).compare_exchange_strong(expected, publisher_word(kSlotClosing, session_id),
                                                     std::memory_order_acq_rel)) {
        generation().fetch_add(1, std::memory_order_acq_rel);
    }
}

// `word` is closing(S) past its linger or an abandoned claiming(S), as the caller saw it. A closing slot is
// taken over first (closing(S) -> claiming(S), one sweeper wins); an abandoned claim may be finished by several
// sweepers at once, which is harmless: unlinking twice is, and only one final CAS succeeds. Neither CAS can
// succeed on a slot that was freed and claimed again since, because the new claimer's session is in the word.
bool IpcStream::free_publisher_slot(uint32_t i, uint64_t word) noexcept {
    const int32_t session = word_session(word);
    const uint64_t freeing = publisher_word(kSlotClaiming, session);
    if (word_state(word) == kSlotClosing &&
        !pub_word(i).compare_exchange_strong(word, freeing, std::memory_order_acq_rel)) {
        return false;
    }
    // The log goes before the slot is free: a free slot never has a file left behind by its last publisher. A
    // sweeper killed here leaves claiming(S) without a log, which the next sweep finds abandoned.
    unlink_log(dir_, session);
    uint64_t expected = freeing;
    if (!pub_word(i).compare_exchange_strong(expected, publisher_word(kSlotFree, session),
                                                   std::memory_order_acq_rel)) {
        return false;
    }
    generation().fetch_add(1, std::memory_order_acq_rel);
    return true;
}

Result<uint32_t> IpcStream::claim_subscriber_slot(int64_t join_time_ns) {
    const uint32_t me = own_pid();
    const uint64_t claiming = slot_word(kSlotClaiming, me);
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (uint32_t i = 0; i < kSubscriberSlots; ++i) {
            uint64_t w = sub_word(i).load(std::memory_order_acquire);
            if (word_state(w) != kSlotFree) continue;
            if (!sub_word(i).compare_exchange_strong(w, claiming, std::memory_order_acq_rel)) continue;
            std::atomic_ref<uint64_t>(subs_[i].pid).store(me, std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(subs_[i].join_time_ns).store(static_cast<uint64_t>(join_time_ns), std::memory_order_relaxed);
            // Counted before it is active: a sweep decrements only for active slots, so a subscriber killed in
            // between leaves the count one too high (publishers think someone listens), never too low (publishers
            // would refuse to send to live subscribers).
            subscribers().fetch_add(1, std::memory_order_acq_rel);
            uint64_t expected = claiming;
            if (!sub_word(i).compare_exchange_strong(expected, slot_word(kSlotActive, me),
                                                            std::memory_order_acq_rel)) {
                subscribers().fetch_sub(1, std::memory_order_acq_rel);  // cannot happen while we live
                continue;
            }
            return i;
        }
        if (sweep_dead() == 0) break;
    }
    return Error::format(Errc::capacity, "ipc bus %s: all %u subscriber slots are in use by live processes",
                         dir_.path.c_str(), kSubscriberSlots);
}

void IpcStream::release_subscriber_slot(uint32_t slot) noexcept {
    uint64_t expected = slot_word(kSlotActive, own_pid());
    if (sub_word(slot).compare_exchange_strong(expected, slot_word(kSlotFree, 0), std::memory_order_acq_rel)) {
        subscribers().fetch_sub(1, std::memory_order_acq_rel);
    }
}

int IpcStream::sweep_dead() noexcept {
    int changed = 0;
    const int64_t now = monotonic_ns();
    for (uint32_t i = 0; i < kPublisherSlots; ++i) {
        const uint64_t w = pub_word(i).load(std::memory_order_acquire);
        PublisherSlot& s = pubs_[i];
        switch (word_state(w)) {
            case kSlotClosing: {
                // A close time after now is a corrupted or hostile registry's (or a slot closed since `now` was
                // read): restart the linger from now rather than keep the slot for ever (or compute a negative
                // age). Compare-and-swap, so a slot freed, claimed and closed again meanwhile keeps its own time.
                std::atomic_ref<uint64_t> close_time(s.close_time_ns);
                uint64_t closed = close_time.load(std::memory_order_relaxed);
                if (closed > static_cast<uint64_t>(now)) {
                    (void)close_time.compare_exchange_strong(closed, static_cast<uint64_t>(now), std::memory_order_relaxed);
                    break;
                }
                if (static_cast<uint64_t>(now) - closed >= static_cast<uint64_t>(linger_ns_) && free_publisher_slot(i, w)) {
                    ++changed;
                }
                break;
            }
            case kSlotClaiming: {
                // A claimer (or a sweeper freeing the slot) that is alive has its log in place, naming a live pid.
                const LogOwner owner = log_owner(dir_, word_session(w));
                if ((owner == LogOwner::missing || owner == LogOwner::dead) && free_publisher_slot(i, w)) ++changed;
                break;
            }
            case kSlotActive: {
                const uint64_t pid = std::atomic_ref<uint64_t>(s.pid).load(std::memory_order_relaxed);
                if (!process_is_gone(pid)) break;
                std::atomic_ref<uint64_t>(s.close_time_ns).store(static_cast<uint64_t>(now), std::memory_order_relaxed);
                uint64_t expected = w;
                if (pub_word(i).compare_exchange_strong(expected, publisher_word(kSlotClosing, word_session(w)),
                                                              std::memory_order_acq_rel)) {
                    generation().fetch_add(1, std::memory_order_acq_rel);
                    ++changed;
                }
                break;
            }
            default:
                break;
        }
    }
    for (uint32_t i = 0; i < kSubscriberSlots; ++i) {
        uint64_t w = sub_word(i).load(std::memory_order_acquire);
        if (word_state(w) == kSlotFree) continue;
        uint64_t owner = word_owner(w);
        if (owner == 0) owner = std::atomic_ref<uint64_t>(subs_[i].pid).load(std::memory_order_relaxed);  // older writer
        if (!process_is_gone(owner)) continue;
        const bool was_active = word_state(w) == kSlotActive;
        if (sub_word(i).compare_exchange_strong(w, slot_word(kSlotFree, 0), std::memory_order_acq_rel)) {
            if (was_active) subscribers().fetch_sub(1, std::memory_order_acq_rel);
            ++changed;
        }
    }
    return changed;
}

int IpcStream::sweep_files() noexcept {
    int removed = 0;
    for (const std::string& name : list_entries(dir_)) {
        const BusFileName f = parse_bus_file_name(name);
        bool remove = false;
        if (f.kind == BusFileName::log) {
            // A log in a slot is the slot's business. One in no slot whose creator is dead can never be registered
            // (only its creator would): a publisher killed between creating its log and claiming a slot.
            remove = !session_in_use(f.session_id) && log_owner(dir_, f.session_id) == LogOwner::dead;
        } else if (f.kind == BusFileName::log_temp || f.kind == BusFileName::registry_temp) {
            remove = process_is_gone(f.pid);
        }
        if (remove) {
            unlink_entry(dir_, name);
            ++removed;
        }
    }
    return removed;
}

int IpcStream::periodic_sweep(bool force) noexcept {
    int work = sweep_dead();
    sweep_ticks_.fetch_add(1, std::memory_order_relaxed);
    const int64_t now = monotonic_ns();
    int64_t next = next_file_sweep_ns_.load(std::memory_order_relaxed);
    if ((force || now >= next) &&
        next_file_sweep_ns_.compare_exchange_strong(next, now + kFileSweepIntervalNs, std::memory_order_relaxed)) {
        work += sweep_files();
    }
    return work;
}

}  // namespace tensorpool::transport::ipc
