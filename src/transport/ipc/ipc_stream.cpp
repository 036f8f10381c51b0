#include "ipc_stream.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "tensorpool/common/clock.hpp"

namespace tensorpool::transport::ipc {

bool process_is_gone(uint64_t pid) noexcept {
    if (pid == 0 || pid > static_cast<uint64_t>(INT32_MAX)) return true;
    return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

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
        if (slot_state(pubs_[i].state).load(std::memory_order_acquire) != kSlotFree &&
            std::atomic_ref<int32_t>(pubs_[i].session_id).load(std::memory_order_relaxed) == session_id) {
            return true;
        }
    }
    return false;
}

Result<uint32_t> IpcStream::claim_publisher_slot(int32_t session_id, uint64_t term_bytes, int64_t start_time_ns) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (uint32_t i = 0; i < kPublisherSlots; ++i) {
            uint32_t expected = kSlotFree;
            if (!slot_state(pubs_[i].state).compare_exchange_strong(expected, kSlotClaiming, std::memory_order_acq_rel)) {
                continue;
            }
            PublisherSlot& s = pubs_[i];
            std::atomic_ref<int32_t>(s.session_id).store(session_id, std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.pid).store(static_cast<uint64_t>(::getpid()), std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.start_time_ns).store(static_cast<uint64_t>(start_time_ns), std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(s.term_bytes).store(term_bytes, std::memory_order_relaxed);
            slot_state(s.state).store(kSlotActive, std::memory_order_release);
            generation().fetch_add(1, std::memory_order_acq_rel);
            return i;
        }
        if (sweep_dead() == 0) break;
    }
    return Error::format(Errc::capacity, "ipc bus %s: all %u publisher slots are in use by live processes",
                         dir_.path.c_str(), kPublisherSlots);
}

void IpcStream::close_publisher_slot(uint32_t slot) noexcept {
    std::atomic_ref<uint64_t>(pubs_[slot].close_time_ns).store(static_cast<uint64_t>(monotonic_ns()), std::memory_order_relaxed);
    slot_state(pubs_[slot].state).store(kSlotClosing, std::memory_order_release);
    generation().fetch_add(1, std::memory_order_acq_rel);
}

// A slot's pid is zeroed before the slot is freed, so a sweeper that finds a slot in kSlotClaiming with pid 0
// knows someone is filling it in right now and leaves it alone. The slot is taken over (claiming) first, so two
// sweepers never free it twice.
void IpcStream::free_publisher_slot(PublisherSlot& s, uint32_t expected_state) noexcept {
    const int32_t session = std::atomic_ref<int32_t>(s.session_id).load(std::memory_order_relaxed);
    if (!slot_state(s.state).compare_exchange_strong(expected_state, kSlotClaiming, std::memory_order_acq_rel)) return;
    unlink_log(dir_, session);
    std::atomic_ref<uint64_t>(s.pid).store(0, std::memory_order_relaxed);
    slot_state(s.state).store(kSlotFree, std::memory_order_release);
    generation().fetch_add(1, std::memory_order_acq_rel);
}

Result<uint32_t> IpcStream::claim_subscriber_slot(int64_t join_time_ns) {
    for (int attempt = 0; attempt < 2; ++attempt) {
        for (uint32_t i = 0; i < kSubscriberSlots; ++i) {
            uint32_t expected = kSlotFree;
            if (!slot_state(subs_[i].state).compare_exchange_strong(expected, kSlotClaiming, std::memory_order_acq_rel)) {
                continue;
            }
            std::atomic_ref<uint64_t>(subs_[i].pid).store(static_cast<uint64_t>(::getpid()), std::memory_order_relaxed);
            std::atomic_ref<uint64_t>(subs_[i].join_time_ns).store(static_cast<uint64_t>(join_time_ns), std::memory_order_relaxed);
            slot_state(subs_[i].state).store(kSlotActive, std::memory_order_release);
            subscribers().fetch_add(1, std::memory_order_acq_rel);
            return i;
        }
        if (sweep_dead() == 0) break;
    }
    return Error::format(Errc::capacity, "ipc bus %s: all %u subscriber slots are in use by live processes",
                         dir_.path.c_str(), kSubscriberSlots);
}

void IpcStream::release_subscriber_slot(uint32_t slot) noexcept {
    uint32_t expected = kSlotActive;
    if (slot_state(subs_[slot].state).compare_exchange_strong(expected, kSlotClaiming, std::memory_order_acq_rel)) {
        std::atomic_ref<uint64_t>(subs_[slot].pid).store(0, std::memory_order_relaxed);
        slot_state(subs_[slot].state).store(kSlotFree, std::memory_order_release);
        subscribers().fetch_sub(1, std::memory_order_acq_rel);
    }
}

int IpcStream::sweep_dead() noexcept {
    int freed = 0;
    const int64_t now = monotonic_ns();
    for (uint32_t i = 0; i < kPublisherSlots; ++i) {
        PublisherSlot& s = pubs_[i];
        uint32_t state = slot_state(s.state).load(std::memory_order_acquire);
        if (state == kSlotFree) continue;
        if (state == kSlotClosing) {
            const auto closed = static_cast<int64_t>(std::atomic_ref<uint64_t>(s.close_time_ns).load(std::memory_order_relaxed));
            if (now - closed >= linger_ns_) {
                free_publisher_slot(s, kSlotClosing);
                ++freed;
            }
            continue;
        }
        const uint64_t pid = std::atomic_ref<uint64_t>(s.pid).load(std::memory_order_relaxed);
        if (state == kSlotClaiming && pid == 0) continue;  // being filled in right now
        if (!process_is_gone(pid)) continue;
        if (state == kSlotClaiming) {  // died while registering: nothing to drain
            free_publisher_slot(s, kSlotClaiming);
        } else {
            std::atomic_ref<uint64_t>(s.close_time_ns).store(static_cast<uint64_t>(now), std::memory_order_relaxed);
            if (!slot_state(s.state).compare_exchange_strong(state, kSlotClosing, std::memory_order_acq_rel)) continue;
            generation().fetch_add(1, std::memory_order_acq_rel);
        }
        ++freed;
    }
    for (uint32_t i = 0; i < kSubscriberSlots; ++i) {
        SubscriberSlot& s = subs_[i];
        uint32_t state = slot_state(s.state).load(std::memory_order_acquire);
        if (state == kSlotFree) continue;
        const uint64_t pid = std::atomic_ref<uint64_t>(s.pid).load(std::memory_order_relaxed);
        if (state == kSlotClaiming && pid == 0) continue;
        if (!process_is_gone(pid)) continue;
        const uint32_t was = state;
        if (slot_state(s.state).compare_exchange_strong(state, kSlotClaiming, std::memory_order_acq_rel)) {
            std::atomic_ref<uint64_t>(s.pid).store(0, std::memory_order_relaxed);
            slot_state(s.state).store(kSlotFree, std::memory_order_release);
            if (was == kSlotActive) subscribers().fetch_sub(1, std::memory_order_acq_rel);
            ++freed;
        }
    }
    return freed;
}

}  // namespace tensorpool::transport::ipc
