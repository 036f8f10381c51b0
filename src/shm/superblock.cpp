#include "tensorpool/shm/superblock.hpp"

#include "tensorpool/shm/slot_layout.hpp"

namespace tensorpool::shm {

using wire::control::ShmRegionSuperblock;

Superblock Superblock::header_ring(std::uint32_t stream_id, std::uint64_t epoch, std::uint32_t nslots) {
    Superblock sb;
    sb.epoch = epoch;
    sb.stream_id = stream_id;
    sb.region_type = RegionType::HEADER_RING;
    sb.pool_id = 0;
    sb.nslots = nslots;
    sb.slot_bytes = static_cast<std::uint32_t>(kHeaderSlotBytes);
    sb.stride_bytes = kRingStrideBytes;
    return sb;
}

Superblock Superblock::payload_pool(std::uint32_t stream_id, std::uint64_t epoch, std::uint16_t pool_id,
                                    std::uint32_t nslots, std::uint32_t stride_bytes) {
    Superblock sb;
    sb.epoch = epoch;
    sb.stream_id = stream_id;
    sb.region_type = RegionType::PAYLOAD_POOL;
    sb.pool_id = pool_id;
    sb.nslots = nslots;
    sb.slot_bytes = kPoolSlotBytes;
    sb.stride_bytes = stride_bytes;
    return sb;
}

std::uint32_t Superblock::slot_size() const noexcept {
    return region_type == RegionType::HEADER_RING ? static_cast<std::uint32_t>(kHeaderSlotBytes) : stride_bytes;
}

std::uint64_t Superblock::min_file_bytes() const noexcept { return region_min_bytes(nslots, slot_size()); }

SuperblockExpectations SuperblockExpectations::for_header_ring(std::uint32_t stream_id, std::uint64_t epoch,
                                                               std::uint32_t nslots) {
    SuperblockExpectations e;
    e.region_type = RegionType::HEADER_RING;
    e.stream_id = stream_id;
    e.epoch = epoch;
    e.nslots = nslots;
    return e;
}

SuperblockExpectations SuperblockExpectations::for_pool(std::uint32_t stream_id, std::uint64_t epoch,
                                                        std::uint16_t pool_id, std::uint32_t nslots,
                                                        std::uint32_t stride_bytes) {
    SuperblockExpectations e;
    e.region_type = RegionType::PAYLOAD_POOL;
    e.stream_id = stream_id;
    e.epoch = epoch;
    e.nslots = nslots;
    e.pool_id = pool_id;
    e.stride_bytes = stride_bytes;
    return e;
}

Status encode_superblock(const Superblock& sb, std::span<std::uint8_t, kSuperblockBytes> out) {
    ShmRegionSuperblock::Encoder e;
    if (auto s = e.wrap_raw(out.data(), out.size()); !s) return s;
    e.magic(sb.magic)
        .layoutVersion(sb.layout_version)
        .epoch(sb.epoch)
        .streamId(sb.stream_id)
        .regionType(sb.region_type)
        .poolId(sb.pool_id)
        .nslots(sb.nslots)
        .slotBytes(sb.slot_bytes)
        .strideBytes(sb.stride_bytes)
        .pid(sb.pid)
        .startTimestampNs(sb.start_timestamp_ns)
        .activityTimestampNs(sb.activity_timestamp_ns);
    auto n = e.finish();
    if (!n) return n.error();
    if (*n != kSuperblockBytes) {
        return Error::format(Errc::malformed, "superblock encoded to %zu bytes; expected exactly %zu (W-7-6)", *n,
                             kSuperblockBytes);
    }
    return {};
}

Superblock decode_superblock(std::span<const std::uint8_t, kSuperblockBytes> in) {
    // wrap_raw only fails when fewer than blockLength (64) bytes are given, which the span type rules out.
    auto d = ShmRegionSuperblock::Decoder::wrap_raw(in.data(), in.size());
    Superblock sb;
    if (!d) {
        sb.magic = 0;  // unreadable: make validate_superblock() refuse it on the very first rule
        return sb;
    }
    sb.magic = d->magic();
    sb.layout_version = d->layoutVersion();
    sb.epoch = d->epoch();
    sb.stream_id = d->streamId();
    sb.region_type = d->regionType();
    sb.pool_id = d->poolId();
    sb.nslots = d->nslots();
    sb.slot_bytes = d->slotBytes();
    sb.stride_bytes = d->strideBytes();
    sb.pid = d->pid();
    sb.start_timestamp_ns = d->startTimestampNs();
    sb.activity_timestamp_ns = d->activityTimestampNs();
    return sb;
}

const char* region_type_name(RegionType t) noexcept {
    const char* n = wire::control::name_of(t);
    return n != nullptr ? n : "(not a RegionType)";
}

namespace {

unsigned long long ull(std::uint64_t v) { return static_cast<unsigned long long>(v); }

Status check_structure(const Superblock& sb, std::uint64_t file_bytes, std::uint32_t want_layout) {
    if (sb.magic != kMagic) {
        return Error::format(Errc::malformed, "superblock magic is 0x%016llx; expected 0x%016llx (W-7-5)",
                             ull(sb.magic), ull(kMagic));
    }
    if (sb.layout_version != want_layout) {
        return Error::format(Errc::unsupported, "superblock layout_version is %u; expected %u (W-7-7)",
                             sb.layout_version, want_layout);
    }
    if (!wire::control::is_valid(sb.region_type)) {
        return Error::format(Errc::malformed,
                             "superblock region_type is %d; expected HEADER_RING (1) or PAYLOAD_POOL (2)",
                             static_cast<int>(sb.region_type));
    }
    if (sb.region_type == RegionType::HEADER_RING) {
        if (sb.pool_id != 0) {
            return Error::format(Errc::malformed, "header ring superblock pool_id is %u; expected 0 (W-7-9)",
                                 unsigned{sb.pool_id});
        }
        // a ring's slot_bytes must be 256; its stride_bytes does not apply and is not checked.
        if (sb.slot_bytes != kHeaderSlotBytes) {
            return Error::format(Errc::malformed, "header ring superblock slot_bytes is %u; expected %zu (W-8-1, A-15)",
                                 sb.slot_bytes, kHeaderSlotBytes);
        }
    } else {
        // a pool's stride_bytes applies; its slot_bytes does not and is not checked.
        if (sb.stride_bytes == 0 || sb.stride_bytes % kPayloadStrideAlign != 0) {
            return Error::format(Errc::malformed,
                                 "payload pool superblock stride_bytes is %u; expected a non-zero multiple of %zu "
                                 "(W-15.22-9)",
                                 sb.stride_bytes, kPayloadStrideAlign);
        }
    }
    if (!is_power_of_two(sb.nslots)) {
        return Error::format(Errc::malformed, "superblock nslots is %u; expected a non-zero power of two (A-16)",
                             sb.nslots);
    }
    if (file_bytes < sb.min_file_bytes()) {
        return Error::format(Errc::truncated,
                             "region file is %llu bytes; its superblock (%s, nslots %u, slot size %u) needs at least "
                             "%llu (64 + nslots * slot size, A-33)",
                             ull(file_bytes), region_type_name(sb.region_type), sb.nslots, sb.slot_size(),
                             ull(sb.min_file_bytes()));
    }
    return {};
}

}  // namespace

Status validate_superblock(const Superblock& sb, std::uint64_t file_bytes, const SuperblockExpectations& expect) {
    if (auto s = check_structure(sb, file_bytes, expect.layout_version); !s) return s;
    if (expect.region_type && sb.region_type != *expect.region_type) {
        return Error::format(Errc::mismatch, "superblock region_type is %s; expected %s (W-15.1-1)",
                             region_type_name(sb.region_type), region_type_name(*expect.region_type));
    }
    if (expect.stream_id && sb.stream_id != *expect.stream_id) {
        return Error::format(Errc::mismatch, "superblock stream_id is %u; expected %u as announced (W-7-2)",
                             sb.stream_id, *expect.stream_id);
    }
    if (expect.epoch && sb.epoch != *expect.epoch) {
        return Error::format(Errc::mismatch, "superblock epoch is %llu; expected %llu as announced (W-15.1-3)",
                             ull(sb.epoch), ull(*expect.epoch));
    }
    if (expect.nslots && sb.nslots != *expect.nslots) {
        return Error::format(Errc::mismatch, "superblock nslots is %u; expected %u as announced (W-15.1-1, W-15.5-1)",
                             sb.nslots, *expect.nslots);
    }
    if (sb.region_type == RegionType::PAYLOAD_POOL) {
        if (expect.pool_id && sb.pool_id != *expect.pool_id) {
            return Error::format(Errc::mismatch, "payload pool superblock pool_id is %u; expected %u as announced "
                                 "(W-7-10)", unsigned{sb.pool_id}, unsigned{*expect.pool_id});
        }
        if (expect.stride_bytes && sb.stride_bytes != *expect.stride_bytes) {
            return Error::format(Errc::mismatch, "payload pool superblock stride_bytes is %u; expected %u as "
                                 "announced (W-15.1-1, A-15)", sb.stride_bytes, *expect.stride_bytes);
        }
    }
    return {};
}

Status recheck_identity(const Superblock& mapped_at_open, const Superblock& now) {
    if (now.magic != mapped_at_open.magic) {
        return Error::format(Errc::mismatch, "superblock magic changed from 0x%016llx to 0x%016llx since mapping "
                             "(W-15.1-3)", ull(mapped_at_open.magic), ull(now.magic));
    }
    if (now.layout_version != mapped_at_open.layout_version) {
        return Error::format(Errc::mismatch, "superblock layout_version changed from %u to %u since mapping "
                             "(W-15.14-7)", mapped_at_open.layout_version, now.layout_version);
    }
    if (now.epoch != mapped_at_open.epoch) {
        return Error::format(Errc::mismatch, "superblock epoch changed from %llu to %llu since mapping (W-15.1-3)",
                             ull(mapped_at_open.epoch), ull(now.epoch));
    }
    if (now.pid != mapped_at_open.pid) {
        return Error::format(Errc::mismatch, "superblock pid changed from %llu to %llu within epoch %llu; remap "
                             "(A-14)", ull(mapped_at_open.pid), ull(now.pid), ull(now.epoch));
    }
    return {};
}

}  // namespace tensorpool::shm
