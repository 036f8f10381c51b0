#include "tensorpool/shm/region_reader.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "tensorpool/shm/safe_open.hpp"

namespace tensorpool::shm {
namespace {

Status pread_superblock(int fd, const std::string& path, std::uint8_t (&buf)[kSuperblockBytes]) {
    std::size_t got = 0;
    while (got < kSuperblockBytes) {
        const ssize_t n = ::pread(fd, buf + got, kSuperblockBytes - got, static_cast<off_t>(got));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            return Error::format(Errc::io, "region '%s': reading the superblock failed: %s", path.c_str(),
                                 std::strerror(errno));
        }
        if (n == 0) {
            return Error::format(Errc::truncated, "region '%s' ends after %zu bytes; expected a %zu-byte superblock "
                                 "(W-6-1)", path.c_str(), got, kSuperblockBytes);
        }
        got += static_cast<std::size_t>(n);
    }
    return {};
}

}  // namespace

Superblock snapshot_superblock(const std::byte* base) noexcept {
    alignas(8) std::uint8_t copy[kSuperblockBytes];
    for (std::size_t w = 0; w < kSuperblockBytes / 8; ++w) {
        auto* word = reinterpret_cast<std::uint64_t*>(const_cast<std::byte*>(base + w * 8));
        const std::uint64_t v = std::atomic_ref<std::uint64_t>(*word).load(std::memory_order_relaxed);
        std::memcpy(copy + w * 8, &v, 8);
    }
    return decode_superblock(std::span<const std::uint8_t, kSuperblockBytes>(copy, kSuperblockBytes));
}

Superblock MappedRegion::current_superblock() const noexcept { return snapshot_superblock(mapping_.data()); }

Result<MappedRegion> map_region(std::string_view uri_or_path, const AllowedDirs& allowed,
                                const SuperblockExpectations& expect) {
    auto opened = open_region(uri_or_path, allowed, Access::read_only);
    if (!opened) return opened.error();
    const std::string& path = opened->canonical_path;

    // Validate before mapping: a file that is not a region we expect is never mapped (W-15.21a-18).
    std::uint8_t raw[kSuperblockBytes];
    if (auto s = pread_superblock(opened->fd.get(), path, raw); !s) return s.error();
    const Superblock sb = decode_superblock(std::span<const std::uint8_t, kSuperblockBytes>(raw, kSuperblockBytes));
    if (auto s = validate_superblock(sb, opened->size_bytes, expect); !s) {
        Error e = s.error();
        e.prefix("region '%s': ", path.c_str());
        return e;
    }

    auto mapping = Mapping::map(opened->fd.get(), static_cast<std::size_t>(sb.min_file_bytes()), MapMode::read_only);
    if (!mapping) {
        Error e = mapping.error();
        e.prefix("region '%s': ", path.c_str());
        return e;
    }
    // The file could have been rewritten between pread() and mmap(); only the heartbeat may differ.
    Superblock mapped = snapshot_superblock(mapping->data());
    mapped.activity_timestamp_ns = sb.activity_timestamp_ns;
    if (!(mapped == sb)) {
        return Error::format(Errc::mismatch, "region '%s': superblock changed while it was being mapped; remap on the "
                             "next announce", path.c_str());
    }

    // Validated, now populated: the first lap of frames would otherwise take a page fault on every page it reads.
    mapping->prefault();
    MappedRegion out;
    out.mapping_ = std::move(*mapping);
    out.sb_ = sb;
    out.canonical_path_ = path;
    out.uri_ = std::move(opened->uri);
    return out;
}

Result<HeaderRingView> HeaderRingView::over(const MappedRegion& region) {
    const Superblock& sb = region.superblock();
    if (sb.region_type != RegionType::HEADER_RING) {
        return Error::format(Errc::mismatch, "region '%s' is a %s; expected HEADER_RING",
                             region.canonical_path().c_str(), region_type_name(sb.region_type));
    }
    HeaderRingView v;
    v.base_ = region.data();
    v.nslots_ = sb.nslots;
    return v;
}

Result<PayloadPoolView> PayloadPoolView::over(const MappedRegion& region) {
    const Superblock& sb = region.superblock();
    if (sb.region_type != RegionType::PAYLOAD_POOL) {
        return Error::format(Errc::mismatch, "region '%s' is a %s; expected PAYLOAD_POOL",
                             region.canonical_path().c_str(), region_type_name(sb.region_type));
    }
    PayloadPoolView v;
    v.base_ = region.data();
    v.pool_id_ = sb.pool_id;
    v.nslots_ = sb.nslots;
    v.stride_ = sb.stride_bytes;
    return v;
}

}  // namespace tensorpool::shm
