// Join times of the images of one Aeron subscription: written by the Aeron client conductor thread (from the
// on-available / on-unavailable image handlers), read by the thread that polls the subscription, with no lock.
//
// Each slot maps an image's correlation id (unique per image for the life of the media driver, unlike its session
// id, which a reconnecting publisher may reuse) to the CLOCK_MONOTONIC ns at which the image became available.
// There is exactly one writer (the conductor runs the image handlers of a client one at a time), so a slot is a
// small seqlock: the writer makes the sequence odd, writes the pair, makes it even again; a reader that sees an odd
// or changed sequence does not wait for it — find() says "busy" and the caller tries again later. All fields are
// atomics, so there is no data race in the C++ sense.
//
// Header-only and free of Aeron types so that it can be tested without Aeron.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

namespace tensorpool::transport::aeron_backend {

class JoinTable {
public:
    // More images than any real subscription has at once (an image per publishing media driver and session);
    // slots of images that went away are reused.
    static constexpr std::size_t kCapacity = 1024;
    static constexpr int64_t kEmpty = INT64_MIN;

    enum class Lookup { found, absent, busy };

    JoinTable() = default;
    JoinTable(const JoinTable&) = delete;
    JoinTable& operator=(const JoinTable&) = delete;

    // ---- writer (one thread at a time) ----------------------------------------------------------------------
    // Records (or re-records) an image; false when every slot is taken (the caller counts it, see overflowed()).
    bool add(int64_t image_id, int64_t join_ns) noexcept {
        const uint32_t used = used_.load(std::memory_order_relaxed);
        Slot* free_slot = nullptr;
        for (uint32_t i = 0; i < used; ++i) {
            const int64_t id = slots_[i].id.load(std::memory_order_relaxed);  // only this thread writes ids
            if (id == image_id) {
                write(slots_[i], image_id, join_ns);
                return true;
            }
            if (id == kEmpty && free_slot == nullptr) free_slot = &slots_[i];
        }
        if (free_slot != nullptr) {
            write(*free_slot, image_id, join_ns);
            return true;
        }
        if (used == kCapacity) {
            overflows_.fetch_add(1, std::memory_order_relaxed);
            return false;
        }
        write(slots_[used], image_id, join_ns);
        used_.store(used + 1, std::memory_order_release);  // publishes the filled slot to readers
        return true;
    }

    void remove(int64_t image_id) noexcept {
        const uint32_t used = used_.load(std::memory_order_relaxed);
        for (uint32_t i = 0; i < used; ++i) {
            if (slots_[i].id.load(std::memory_order_relaxed) == image_id) write(slots_[i], kEmpty, 0);
        }
    }

    // ---- readers (any thread) ---------------------------------------------------------------------------------
    Lookup find(int64_t image_id, int64_t& join_ns) const noexcept {
        const uint32_t used = used_.load(std::memory_order_acquire);
        bool busy = false;
        for (uint32_t i = 0; i < used; ++i) {
            const Slot& s = slots_[i];
            const uint64_t before = s.seq.load(std::memory_order_acquire);
            const int64_t id = s.id.load(std::memory_order_relaxed);
            const int64_t t = s.join_ns.load(std::memory_order_relaxed);
            std::atomic_thread_fence(std::memory_order_acquire);
            const uint64_t after = s.seq.load(std::memory_order_relaxed);
            if ((before & 1U) != 0 || before != after) {
                busy = true;  // being rewritten right now: it may be the one we want
                continue;
            }
            if (id == image_id) {
                join_ns = t;
                return Lookup::found;
            }
        }
        return busy ? Lookup::busy : Lookup::absent;
    }

    // Images that could not be recorded because every slot was taken.
    uint64_t overflowed() const noexcept { return overflows_.load(std::memory_order_relaxed); }

private:
    struct Slot {
        std::atomic<uint64_t> seq{0};
        std::atomic<int64_t> id{kEmpty};
        std::atomic<int64_t> join_ns{0};
    };

    static void write(Slot& s, int64_t id, int64_t join_ns) noexcept {
        const uint64_t seq = s.seq.load(std::memory_order_relaxed);
        s.seq.store(seq + 1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_release);  // the odd sequence is visible before the new fields
        s.id.store(id, std::memory_order_relaxed);
        s.join_ns.store(join_ns, std::memory_order_relaxed);
        s.seq.store(seq + 2, std::memory_order_release);
    }

    std::array<Slot, kCapacity> slots_{};
    std::atomic<uint32_t> used_{0};
    std::atomic<uint64_t> overflows_{0};
};

}  // namespace tensorpool::transport::aeron_backend
