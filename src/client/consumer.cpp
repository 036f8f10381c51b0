#include "tensorpool/client/consumer.hpp"

#include <sys/random.h>

#include <cstring>
#include <utility>

#include "tensorpool/common/clock.hpp"
#include "tensorpool/wire/gen/dispatch.hpp"

namespace tensorpool::client {

namespace wc = wire::control;

namespace {

std::span<const uint8_t> encoded(const uint8_t* buf, const Result<std::size_t>& n) {
    return n.ok() ? std::span<const uint8_t>(buf, *n) : std::span<const uint8_t>();
}

uint32_t random_consumer_id() {
    uint32_t v = 0;
    while (v == 0) {
        if (::getrandom(&v, sizeof v, 0) != static_cast<ssize_t>(sizeof v)) v = static_cast<uint32_t>(monotonic_ns());
    }
    return v;
}

}  // namespace

// ---- FrameView --------------------------------------------------------------------------------------------

bool FrameView::still_valid() const noexcept {
    const bool ok = ticket_ != nullptr && ticket_->still_valid();
    if (!ok && stats_ != nullptr && !counted_torn_) {
        counted_torn_ = true;  // one frame, one drop, however often the handler asks
        ++stats_->torn_detected;
        ++stats_->drops_late;
    }
    return ok;
}

Status FrameView::copy_to(std::span<std::byte> out) const noexcept {
    if (out.size() < payload_.size()) {
        return Error::format(Errc::capacity, "frame %llu: %zu bytes do not fit a %zu-byte buffer",
                             static_cast<unsigned long long>(seq_), payload_.size(), out.size());
    }
    if (!payload_.empty()) std::memcpy(out.data(), payload_.data(), payload_.size());
    if (!still_valid()) {
        return Error::format(Errc::state, "frame %llu was overwritten while it was copied (drop it)",
                             static_cast<unsigned long long>(seq_));
    }
    return {};
}

// ---- Consumer ---------------------------------------------------------------------------------------------

Consumer::Consumer(transport::TransportHub& hub, ConsumerConfig config, shm::AllowedDirs allowed)
    : hub_(hub), config_(std::move(config)), allowed_(std::move(allowed)),
      metadata_(MetadataReceiverConfig{.stream_id = config_.stream_id}) {}

Consumer::~Consumer() = default;

Result<std::unique_ptr<Consumer>> Consumer::create(transport::TransportHub& hub, ConsumerConfig config) {
    auto allowed = shm::AllowedDirs::create(std::span<const std::string>(config.allowed_dirs));
    if (!allowed) return allowed.error();
    if (config.consumer_id == 0) config.consumer_id = random_consumer_id();
    std::unique_ptr<Consumer> c(new Consumer(hub, std::move(config), std::move(*allowed)));
    if (Status s = c->open(monotonic_ns()); !s) return s.error();
    return c;
}

Status Consumer::open(int64_t now_ns) {
    const Channels& ch = config_.channels;
    // Every subscription made here is polled by do_work()/poll_frames(): an unpolled Aeron subscription would
    // eventually stall its publisher.
    auto a = hub_.add_subscription(ch.channel, ch.announce_stream);
    if (!a) return a.error();
    announce_sub_ = std::move(*a);
    auto d = hub_.add_subscription(ch.channel, ch.descriptor_stream);
    if (!d) return d.error();
    descriptor_sub_ = std::move(*d);
    auto cs = hub_.add_subscription(ch.channel, ch.control_stream);
    if (!cs) return cs.error();
    control_sub_ = std::move(*cs);
    auto ms = hub_.add_subscription(ch.channel, ch.metadata_stream);
    if (!ms) return ms.error();
    metadata_sub_ = std::move(*ms);
    auto cp = hub_.add_publication(ch.channel, ch.control_stream);
    if (!cp) return cp.error();
    control_pub_ = std::move(*cp);
    auto q = hub_.add_publication(ch.channel, ch.qos_stream);
    if (!q) return q.error();
    qos_pub_ = std::move(*q);
    pools_.reserve(16);
    pool_infos_.reserve(16);
    next_hello_ns_ = now_ns;
    next_qos_ns_ = now_ns + config_.qos_period_ns;
    next_liveness_ns_ = now_ns + config_.announce_period_ns;
    return {};
}

void Consumer::unmap(const char* why) {
    if (state_ == MappingState::unmapped) return;
    last_error_ = why;
    pools_.clear();
    pool_infos_.clear();
    ring_ = shm::HeaderRingView();
    ring_region_.reset();
    state_ = MappingState::unmapped;
    have_last_seq_ = false;
    resync_to_ = 0;
    validator_.reset();
}

void Consumer::abandon_epoch(const Error& why) {
    // W-15.14-2 / A-14: only the producer writes its regions. Another writer means this epoch's regions cannot be
    // trusted any more: drop the mapping and stay unmapped until a new epoch is announced.
    abandoned_epoch_ = epoch_;
    const std::string message =
        std::string(why.message()) + "; another writer: unmapped until a new epoch (W-15.14-2)";
    unmap(message.c_str());
}

void Consumer::on_announce(std::span<const uint8_t> message, const transport::MessageInfo& info, int64_t now_ns) {
    auto d = wc::ShmPoolAnnounce::Decoder::wrap(message.data(), message.size());
    if (!d || d->streamId() != config_.stream_id) return;
    const uint64_t epoch = d->epoch();
    const int64_t ts = static_cast<int64_t>(d->announceTimestampNs());
    const int64_t window = 3 * config_.announce_period_ns;
    bool fresh = false;
    switch (d->announceClockDomain()) {
        case wc::ClockDomain::MONOTONIC:
            // W-10.1.1-9: nothing stamped before this publisher's stream became available to us (replay guard).
            fresh = ts >= info.join_time_ns && now_ns - ts <= window;
            break;
        case wc::ClockDomain::REALTIME_SYNCED:
            fresh = realtime_ns() - ts <= window;  // W-10.1.1-10: freshness only, no join-time rule
            break;
        default:
            fresh = false;  // unknown clock domain: never guess (W-15.8-2)
    }
    if (!fresh || epoch < highest_epoch_ || epoch == abandoned_epoch_) {  // W-10.1.1-6/-8, A-12, W-15.14-2
        ++stats_.announces_ignored;
        return;
    }
    ++stats_.announces_accepted;
    highest_epoch_seen_ns_ = now_ns;
    if (state_ == MappingState::mapped && epoch == epoch_) {
        // A-10 / W-15.1-3: same epoch — the files must still be the ones we mapped.
        Status s = shm::recheck_identity(ring_at_map_, ring_region_->current_superblock());
        if (!s) abandon_epoch(s.error());
        return;
    } else if (state_ == MappingState::mapped) {
        unmap("new epoch announced (W-15.2-3)");
    }
    highest_epoch_ = epoch;

    auto fail = [&](const Error& e) {
        ++stats_.mapping_failures;
        last_error_ = e.message();
        pools_.clear();
        pool_infos_.clear();
        ring_region_.reset();
    };
    if (d->headerSlotBytes() != shm::kHeaderSlotBytes) {  // W-10.1.1-2
        return fail(Error::format(Errc::malformed, "announce: headerSlotBytes %u, expected 256 (W-10.1.1-2)",
                                  unsigned{d->headerSlotBytes()}));
    }
    if (d->layoutVersion() != config_.expected_layout_version) {  // W-7-7
        return fail(Error::format(Errc::unsupported, "announce: layout version %u, expected %u (W-7-7)",
                                  d->layoutVersion(), config_.expected_layout_version));
    }
    const uint32_t nslots = d->headerNslots();
    auto ring = shm::map_region(d->headerRegionUri(), allowed_,
                                shm::SuperblockExpectations::for_header_ring(config_.stream_id, epoch, nslots));
    if (!ring) return fail(ring.error());
    ring_region_.emplace(std::move(*ring));
    auto view = shm::HeaderRingView::over(*ring_region_);
    if (!view) return fail(view.error());
    for (const auto& p : d->payloadPools()) {
        if (p.poolNslots() != nslots) {  // W-15.5-1
            return fail(Error::format(Errc::mismatch, "announce: pool %u has %u slots, the header ring %u; "
                                      "every pool must use the header ring's nslots (W-15.5-1)",
                                      unsigned{p.poolId()}, p.poolNslots(), nslots));
        }
        auto region = shm::map_region(p.regionUri(), allowed_,
                                      shm::SuperblockExpectations::for_pool(config_.stream_id, epoch, p.poolId(), nslots,
                                                                            p.strideBytes()));
        if (!region) return fail(region.error());
        pools_.push_back(MappedPool{std::move(*region), {}});
        auto pv = shm::PayloadPoolView::over(pools_.back().region);
        if (!pv) return fail(pv.error());
        pools_.back().view = *pv;
        pool_infos_.push_back(shm::PoolInfo{p.poolId(), p.strideBytes()});
    }
    ring_ = *view;
    ring_at_map_ = ring_region_->current_superblock();
    epoch_ = epoch;
    state_ = MappingState::mapped;
    have_last_seq_ = false;
    last_error_.clear();
    ++stats_.mappings;
}

void Consumer::check_liveness(int64_t now_ns) {
    if (state_ != MappingState::mapped) {
        // An epoch we could not map (or gave up) whose announces stopped for the liveness timeout is dead too:
        // forget it, or a restarted producer with a lower epoch could never be followed.
        if (highest_epoch_ != 0 && now_ns - highest_epoch_seen_ns_ > config_.liveness_timeout_ns) highest_epoch_ = 0;
        return;
    }
    const auto sb = ring_region_->current_superblock();
    if (now_ns - static_cast<int64_t>(sb.activity_timestamp_ns) > config_.liveness_timeout_ns) {
        unmap("producer activity timestamp is stale (W-7-4)");
        highest_epoch_ = 0;  // a producer that lost its epoch counter can come back
    } else if (Status s = shm::recheck_identity(ring_at_map_, sb); !s) {
        abandon_epoch(s.error());  // W-15.14-2: another writer (pid, magic or epoch rewritten in place)
    }
}

void Consumer::send_hello() {
    uint8_t buf[wire::MessageHeader::kSize + wc::ConsumerHello::kBlockLength + 8];
    wc::ConsumerHello::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).consumerId(config_.consumer_id).supportsShm(wc::Bool::TRUE);
    e.supportsProgress(wc::Bool::FALSE).mode(wc::Mode::STREAM).maxRateHz(0);
    e.expectedLayoutVersion(config_.expected_layout_version);
    e.progressIntervalUs(e.progressIntervalUsNullValue()).progressBytesDelta(e.progressBytesDeltaNullValue());
    e.progressMajorDeltaUnits(e.progressMajorDeltaUnitsNullValue()).descriptorStreamId(0).controlStreamId(0);
    (void)control_pub_->offer(encoded(buf, e.finish()));
}

void Consumer::send_qos() {
    uint8_t buf[wire::MessageHeader::kSize + wc::QosConsumer::kBlockLength];
    wc::QosConsumer::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).consumerId(config_.consumer_id).epoch(epoch_).lastSeqSeen(stats_.last_seq);
    e.dropsGap(stats_.drops_gap).dropsLate(stats_.drops_late).mode(wc::Mode::STREAM);
    (void)qos_pub_->offer(encoded(buf, e.finish()));
}

int Consumer::do_work(int64_t now_ns) {
    int work = 0;
    auto announce = [&](std::span<const uint8_t> m, const transport::MessageInfo& info) { on_announce(m, info, now_ns); };
    work += announce_sub_->poll(announce, 16);
    // Replies to our Hello (ConsumerConfig declining per-consumer streams) need no action: we stay on the shared
    // streams (W-10.1.3-6). The subscription is still drained so it never back-pressures its publisher.
    auto ignore = [](std::span<const uint8_t>, const transport::MessageInfo&) {};
    work += control_sub_->poll(ignore, 64);
    auto on_metadata = [this](std::span<const uint8_t> m, const transport::MessageInfo&) { metadata_.on_message(m); };
    work += metadata_sub_->poll(on_metadata, 64);
    if (now_ns >= next_hello_ns_) {
        send_hello();
        next_hello_ns_ = now_ns + config_.hello_period_ns;
        ++work;
    }
    if (now_ns >= next_qos_ns_) {
        send_qos();
        next_qos_ns_ = now_ns + config_.qos_period_ns;
        ++work;
    }
    if (now_ns >= next_liveness_ns_) {
        check_liveness(now_ns);
        next_liveness_ns_ = now_ns + config_.announce_period_ns;
    }
    work += hub_.do_work();
    return work;
}

void Consumer::on_descriptor(std::span<const uint8_t> message, FrameHandler& handler) {
    auto d = wc::FrameDescriptor::Decoder::wrap(message.data(), message.size());
    if (!d || d->streamId() != config_.stream_id) return;
    if (state_ != MappingState::mapped || d->epoch() != epoch_) {  // W-10.2.1-8, W-15.21-7..9
        ++stats_.drops_unmapped;
        return;
    }
    const uint64_t seq = d->seq();
    if (seq < resync_to_) {
        // Behind by more than max_outstanding_seq_gap: these frames are already overwritten (W-15.4-4 resync).
        ++stats_.drops_late;
        stats_.last_seq = seq;
        return;
    }
    if (have_last_seq_) {
        if (seq < stats_.last_seq) {  // seq going backwards within an epoch means remap
            unmap("descriptor seq went backwards within the epoch (A-12)");
            ++stats_.drops_unmapped;
            return;
        }
        if (seq == stats_.last_seq) return;  // a duplicate descriptor
        const uint64_t gap = seq - stats_.last_seq - 1;
        stats_.drops_gap += gap;
        if (gap > config_.max_outstanding_seq_gap) ++stats_.resyncs;
    }
    stats_.last_seq = seq;
    have_last_seq_ = true;

    if (const auto r = ring_.begin_read(seq, ticket_); r != shm::ReadBegin::ok) {  // W-8-26, W-10.2.1-11
        ++stats_.drops_late;
        // W-15.4-4: the producer is more than max_outstanding_seq_gap frames ahead of the descriptors we are
        // reading. Every seq older than a ring behind it is overwritten: drop those descriptors without touching
        // their slots until we are back within a ring of the producer.
        const uint64_t ahead = ticket_.observed_seq();
        if (r == shm::ReadBegin::overwritten && ahead - seq > config_.max_outstanding_seq_gap && ahead >= ring_.nslots()) {
            resync_to_ = ahead - ring_.nslots() + 1;
            ++stats_.resyncs;
        }
        return;
    }
    const uint32_t index = ring_.index_of(seq);
    auto c = validator_.validate(ticket_.header(), index, pool_infos_);
    if (!c) {
        // A header copied while the producer was rewriting the slot can look malformed: that is a seqlock failure
        // (drops_late, §3.4 rules 4-6). Only a copy the commit word proves stable is a malformed header, which
        // A-18 counts apart from gap and late.
        ++(ticket_.still_valid() ? stats_.drops_invalid : stats_.drops_late);
        return;
    }
    const shm::SlotContents& contents = **c;
    const shm::PayloadPoolView* pool = nullptr;
    for (const auto& p : pools_) {
        if (p.view.pool_id() == contents.pool_id) pool = &p.view;
    }
    if (pool == nullptr) {
        ++stats_.drops_invalid;
        return;
    }
    FrameView v;
    v.ticket_ = &ticket_;
    v.contents_ = &contents;
    v.payload_ = std::span<const std::byte>(pool->payload(contents.payload_slot), contents.values_len_bytes);
    v.seq_ = seq;
    v.epoch_ = epoch_;
    if (!d->timestampNsIsNull()) v.publish_ts_ = d->timestampNs();
    v.trace_id_ = d->traceId();
    v.stats_ = &stats_;
    ++stats_.frames_accepted;
    handler(v);
}

int Consumer::poll_frames(FrameHandler handler, int limit) {
    auto on_message = [&](std::span<const uint8_t> m, const transport::MessageInfo&) { on_descriptor(m, handler); };
    return descriptor_sub_->poll(on_message, limit);
}

}  // namespace tensorpool::client
