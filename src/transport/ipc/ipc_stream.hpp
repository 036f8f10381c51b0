// One (bus, stream id) as this process sees it: the stream directory and its mapped registry, shared by every
// publication and subscription of the process on that stream. Slot claims and the sweep of dead processes
// live here.
//
// Slot protocol. A slot's first 8 bytes are its slot word (state + owner: the session id of a publisher slot, the
// pid of a subscriber slot), and every state change is a compare-and-swap of the whole word:
//
//   publisher slot   free ──claim──▶ claiming(S) ──▶ active(S) ──close / found dead──▶ closing(S)
//                      ▲                 │                                               │ linger over
//                      └── claimer dead ─┘◀────────────── claiming(S) ◀── sweeper ───────┘
//                                        (log unlinked, then free)
//
// A publisher creates its log (pub-S.log, whose header names its pid) before it claims, so whoever finds a slot
// claiming(S) decides whether it is abandoned by looking at that log: missing, or its creator dead, means
// abandoned (a claimer killed while registering, or a sweeper killed while freeing); anything else is left
// alone. Because the owner is part of the word, a sweeper acting on a stale observation fails its CAS instead of
// freeing a slot somebody has claimed since (the old code compared the state alone, and a delayed sweeper could
// free a new publisher's slot under it: see docs/ipc-bus.md).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "ipc_files.hpp"
#include "ipc_format.hpp"
#include "tensorpool/common/result.hpp"

namespace tensorpool::transport::ipc {

class IpcStream {
public:
    static Result<std::shared_ptr<IpcStream>> open(const std::string& root, std::string_view bus, int32_t stream_id,
                                                   int64_t linger_ns);

    const StreamDir& dir() const noexcept { return dir_; }
    const std::string& path() const noexcept { return dir_.path; }

    PublisherSlot& publisher(uint32_t i) noexcept { return pubs_[i]; }
    // The slot words (ipc_format.hpp), as atomics.
    SubscriberSlot& subscriber(uint32_t i) noexcept { return subs_[i]; }
    std::atomic_ref<uint64_t> pub_word(uint32_t i) noexcept {
        return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(&pubs_[i]));
    }
    std::atomic_ref<uint64_t> sub_word(uint32_t i) noexcept {
        return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(&subs_[i]));
    }
    std::atomic_ref<uint64_t> generation() noexcept { return std::atomic_ref<uint64_t>(header_->generation); }
    std::atomic_ref<uint64_t> subscribers() noexcept { return std::atomic_ref<uint64_t>(header_->subscribers); }

    // Process-local: advanced by every periodic sweep (Transport::do_work). Subscriptions of this process rescan
    // the registry when it moves, so anything a rescan could have missed is picked up within one sweep period.
    uint64_t sweep_ticks() const noexcept { return sweep_ticks_.load(std::memory_order_relaxed); }

    // Registers a publisher whose log already exists; returns its slot index. Frees slots of dead processes
    // first if all are taken.
    Result<uint32_t> claim_publisher_slot(int32_t session_id, uint64_t term_bytes, int64_t start_time_ns);
    // The publisher is done: its log stays readable for the linger time, then a sweep removes it.
    void close_publisher_slot(uint32_t slot, int32_t session_id) noexcept;
    Result<uint32_t> claim_subscriber_slot(int64_t join_time_ns);
    void release_subscriber_slot(uint32_t slot) noexcept;
    // True if a publisher slot already holds this session id.
    bool session_in_use(int32_t session_id) noexcept;

    // Moves publishers of processes that no longer exist to closing, frees closing publishers whose linger time
    // is over (unlinking their logs), abandoned claims, and subscriber slots of dead processes; returns how many
    // slots changed. A publisher killed mid-write therefore never keeps its slot or its file for longer than the
    // linger.
    int sweep_dead() noexcept;

    // The periodic sweep: sweep_dead(), then at most once a second (and at once if `force`) the leftover files
    // (logs of publishers killed before they registered, temporary files of dead creators). Advances
    // sweep_ticks(). Returns the work done.
    int periodic_sweep(bool force = false) noexcept;

    // Removes leftover files now; returns how many.
    int sweep_files() noexcept;

private:
    IpcStream(StreamDir dir, shm::Mapping registry, int64_t linger_ns) noexcept;
    // closing(S) past its linger, or an abandoned claiming(S): unlink pub-S.log and free the slot.
    bool free_publisher_slot(uint32_t i, uint64_t word) noexcept;

    StreamDir dir_;
    shm::Mapping registry_;
    RegistryHeader* header_;
    PublisherSlot* pubs_;
    SubscriberSlot* subs_;
    int64_t linger_ns_;
    std::atomic<uint64_t> sweep_ticks_{0};
    std::atomic<int64_t> next_file_sweep_ns_{0};
};

}  // namespace tensorpool::transport::ipc
