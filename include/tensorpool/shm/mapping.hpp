// An mmap()ed range that unmaps itself. Move-only: exactly one owner calls munmap().
//
// Readers get PROT_READ mappings of O_RDONLY descriptors (DESIGN "Consumers map regions read-only"): a stray
// store through a consumer's view faults instead of corrupting the producer's region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "tensorpool/common/result.hpp"

namespace tensorpool::shm {

enum class MapMode { read_only, read_write };

struct MapOptions {
    bool populate = false;  // MAP_POPULATE: fault the pages in now, not on the first frame
};

class Mapping {
public:
    Mapping() noexcept = default;
    Mapping(const Mapping&) = delete;
    Mapping& operator=(const Mapping&) = delete;
    Mapping(Mapping&& o) noexcept
        : addr_(std::exchange(o.addr_, nullptr)), size_(std::exchange(o.size_, 0)), mode_(o.mode_) {}
    Mapping& operator=(Mapping&& o) noexcept {
        if (this != &o) {
            reset();
            addr_ = std::exchange(o.addr_, nullptr);
            size_ = std::exchange(o.size_, 0);
            mode_ = o.mode_;
        }
        return *this;
    }
    ~Mapping() { reset(); }

    // Maps `size` bytes of `fd` from offset 0, MAP_SHARED. read_only uses PROT_READ only.
    static Result<Mapping> map(int fd, std::size_t size, MapMode mode, MapOptions options = {});

    const std::byte* data() const noexcept { return static_cast<const std::byte*>(addr_); }
    // Only a read_write mapping hands out a writable pointer; a read-only one returns nullptr.
    std::byte* writable_data() const noexcept {
        return mode_ == MapMode::read_write ? static_cast<std::byte*>(addr_) : nullptr;
    }
    std::size_t size() const noexcept { return size_; }
    MapMode mode() const noexcept { return mode_; }
    bool valid() const noexcept { return addr_ != nullptr; }

    // Locks the pages in RAM (mlock) so a frame never waits on a page-in. Needs RLIMIT_MEMLOCK headroom.
    Status lock() const;
    // Makes every page resident and mapped before the first frame, for a mapping already made (and, for a file
    // from elsewhere, validated) without MAP_POPULATE: madvise(MADV_POPULATE_*), or touching every page where the
    // kernel has no such advice.
    void prefault() const noexcept;
    void reset() noexcept;

private:
    void* addr_ = nullptr;
    std::size_t size_ = 0;
    MapMode mode_ = MapMode::read_only;
};

}  // namespace tensorpool::shm
