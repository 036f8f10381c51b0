// One (bus, stream id) as this process sees it: the stream directory and its mapped registry, shared by every
// publication and subscription of the process on that stream. Slot claims and the sweep of dead processes
// live here.
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
    SubscriberSlot& subscriber(uint32_t i) noexcept { return subs_[i]; }
    std::atomic_ref<uint64_t> generation() noexcept { return std::atomic_ref<uint64_t>(header_->generation); }
    std::atomic_ref<uint64_t> subscribers() noexcept { return std::atomic_ref<uint64_t>(header_->subscribers); }

    // Registers a publisher; returns its slot index. Frees slots of dead processes first if all are taken.
    Result<uint32_t> claim_publisher_slot(int32_t session_id, uint64_t term_bytes, int64_t start_time_ns);
    // The publisher is done: its log stays readable for the linger time, then a sweep removes it.
    void close_publisher_slot(uint32_t slot) noexcept;
    Result<uint32_t> claim_subscriber_slot(int64_t join_time_ns);
    void release_subscriber_slot(uint32_t slot) noexcept;
    // True if a publisher slot already holds this session id.
    bool session_in_use(int32_t session_id) noexcept;

    // Moves publishers of processes that no longer exist to closing, frees closing publishers whose linger time
    // is over (unlinking their logs) and subscriber slots of dead processes; returns how many slots changed.
    // A publisher killed mid-write therefore never keeps its slot or its file for longer than the linger.
    int sweep_dead() noexcept;

private:
    IpcStream(StreamDir dir, shm::Mapping registry, int64_t linger_ns) noexcept;
    void free_publisher_slot(PublisherSlot& s, uint32_t expected_state) noexcept;

    StreamDir dir_;
    shm::Mapping registry_;
    RegistryHeader* header_;
    PublisherSlot* pubs_;
    SubscriberSlot* subs_;
    int64_t linger_ns_;
};

inline std::atomic_ref<uint32_t> slot_state(uint32_t& word) noexcept { return std::atomic_ref<uint32_t>(word); }

// Whether a process id is gone (kill(pid, 0) says ESRCH).
bool process_is_gone(uint64_t pid) noexcept;

}  // namespace tensorpool::transport::ipc
