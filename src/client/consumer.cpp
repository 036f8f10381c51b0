#include "tensorpool/client/consumer.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

#include "tensorpool/common/clock.hpp"
#include "encoded_message.hpp"
#include "tensorpool/wire/gen/dispatch.hpp"

namespace tensorpool::client {

namespace wc = wire::control;
using detail::encoded;

namespace {

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
    const bool self_assigned = config.consumer_id == 0;
    if (self_assigned) config.consumer_id = random_consumer_id();
    for (const auto* r : {&config.descriptor_request, &config.control_request}) {
        if (r->requested() && (r->channel.empty() || r->stream_id <= 0)) {  // W-10.1.2-3/-6
            return Error::format(Errc::invalid_argument, "consumer: a per-consumer %s stream request needs both a "
                                 "channel and a positive stream id (got '%s' and %d; W-10.1.2-3)",
                                 r == &config.descriptor_request ? "descriptor" : "control", r->channel.c_str(),
                                 r->stream_id);
        }
    }
    // The freshness window is 3 announce periods, in signed 64-bit nanoseconds.
    if (config.announce_period_ns <= 0 || config.announce_period_ns > INT64_MAX / 3) {
        return Error::format(Errc::invalid_argument, "consumer: announce_period_ns %lld must be positive and at most "
                             "%lld", static_cast<long long>(config.announce_period_ns),
                             static_cast<long long>(INT64_MAX / 3));
    }
    std::unique_ptr<Consumer> c(new Consumer(hub, std::move(config), std::move(*allowed)));
    c->id_self_assigned_ = self_assigned;
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
    if (config_.supports_progress) {
        // Its own subscription to the shared control stream, so do_work() (ConsumerConfig) and poll_progress()
        // never take each other's messages.
        auto ps = hub_.add_subscription(ch.channel, ch.control_stream);
        if (!ps) return ps.error();
        progress_sub_ = std::move(*ps);
    }
    gate_.set_rate(config_.mode == ConsumerMode::rate_limited ? config_.max_rate_hz : 0);
    streams_.rate_limited_locally = gate_.limited();  // until a grant says otherwise
    pools_.reserve(16);
    pool_infos_.reserve(16);
    hello_buf_.resize(wire::MessageHeader::kSize + wc::ConsumerHello::kBlockLength + 8 +
                      config_.descriptor_request.channel.size() + config_.control_request.channel.size());
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
    const uint64_t ts = d->announceTimestampNs();
    const uint64_t window = 3 * static_cast<uint64_t>(config_.announce_period_ns);  // create() bounds the period
    // Fresh means within the window of the local clock on either side: an announce stamped later than now by more
    // than the window was not stamped in the domain it names (a realtime stamp sent as MONOTONIC would otherwise
    // stay fresh for decades, W-10.1.1-3). Unsigned distances: a hostile stamp cannot overflow anything.
    const auto within_window = [window](int64_t local_ns, uint64_t stamp) {
        if (local_ns < 0) return false;
        const uint64_t local = static_cast<uint64_t>(local_ns);
        return (local >= stamp ? local - stamp : stamp - local) <= window;
    };
    bool fresh = false;
    switch (d->announceClockDomain()) {
        case wc::ClockDomain::MONOTONIC:
            // W-10.1.1-9: nothing stamped before this publisher's stream became available to us (replay guard).
            fresh = info.join_time_ns >= 0 && ts >= static_cast<uint64_t>(info.join_time_ns) &&
                    within_window(now_ns, ts);
            break;
        case wc::ClockDomain::REALTIME_SYNCED:
            fresh = within_window(realtime_ns(), ts);  // W-10.1.1-10: freshness only, no join-time rule
            break;
        default:
            fresh = false;  // unknown clock domain: never guess (W-15.8-2)
    }
    if (!fresh || epoch < highest_epoch_ || epoch == abandoned_epoch_ || shm_forbidden_) {  // W-10.1.1-6/-8, A-12,
        ++stats_.announces_ignored;                                                          // W-15.14-2
        return;
    }
    ++stats_.announces_accepted;
    highest_epoch_seen_ns_ = now_ns;
    if (state_ == MappingState::mapped && epoch == epoch_) {
        // A-10 / W-15.1-3: same epoch — the files must still be the ones we mapped; a change in them is a second
        // writer (W-15.14-2).
        if (Status s = shm::recheck_identity(ring_at_map_, ring_region_->current_superblock()); !s) {
            abandon_epoch(s.error());
            return;
        }
        if (d->layoutVersion() == ring_at_map_.layout_version) return;
        // W-15.14-7: an announce of this epoch with another layout version forces a remap. The files are unchanged,
        // so only the announce is wrong: the mapping below judges it like any other (W-7-7 refuses it, FALLBACK or
        // UNMAPPED), and the next truthful announce maps again.
        unmap("announce of the mapped epoch with another layout version: remap (W-15.14-7)");
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
        // §6.3: regions refused and a usable fallback was offered: FALLBACK; otherwise UNMAPPED.
        state_ = fallback_uri_.empty() ? MappingState::unmapped : MappingState::fallback;
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
        for (const auto& seen : pool_infos_) {
            if (seen.pool_id == p.poolId()) {
                // A header names its pool by id: two regions under one id would let a frame be checked against one
                // pool's stride and read from the other's mapping.
                return fail(Error::format(Errc::malformed, "announce: pool id %u appears twice; every payload pool "
                                          "needs its own id (W-9-6)", unsigned{p.poolId()}));
            }
        }
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
    have_progress_ = false;
    poisoned_seq_.reset();
    last_error_.clear();
    ++stats_.mappings;
    // A new producer (epoch) knows nothing of our per-consumer streams: ask again now, not a hello period later.
    if (config_.descriptor_request.requested() || config_.control_request.requested()) next_hello_ns_ = 0;
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
    wc::ConsumerHello::Encoder e;
    (void)e.wrap_and_apply_header(hello_buf_.data(), hello_buf_.size());
    e.streamId(config_.stream_id).consumerId(config_.consumer_id).supportsShm(wc::Bool::TRUE);
    e.supportsProgress(config_.supports_progress ? wc::Bool::TRUE : wc::Bool::FALSE);
    e.mode(config_.mode == ConsumerMode::rate_limited ? wc::Mode::RATE_LIMITED : wc::Mode::STREAM);
    e.maxRateHz(config_.max_rate_hz).expectedLayoutVersion(config_.expected_layout_version);
    e.progressIntervalUs(config_.progress_interval_us.value_or(e.progressIntervalUsNullValue()));
    e.progressBytesDelta(config_.progress_bytes_delta.value_or(e.progressBytesDeltaNullValue()));
    e.progressMajorDeltaUnits(config_.progress_major_delta_units.value_or(e.progressMajorDeltaUnitsNullValue()));
    e.descriptorStreamId(static_cast<uint32_t>(config_.descriptor_request.stream_id));
    e.controlStreamId(static_cast<uint32_t>(config_.control_request.stream_id));
    e.descriptorChannel(config_.descriptor_request.channel).controlChannel(config_.control_request.channel);
    (void)control_pub_->offer(encoded(hello_buf_.data(), e.finish()));
}

void Consumer::send_qos() {
    uint8_t buf[wire::MessageHeader::kSize + wc::QosConsumer::kBlockLength];
    wc::QosConsumer::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).consumerId(config_.consumer_id).epoch(epoch_).lastSeqSeen(stats_.last_seq);
    e.dropsGap(stats_.drops_gap).dropsLate(stats_.drops_late);
    e.mode(config_.mode == ConsumerMode::rate_limited ? wc::Mode::RATE_LIMITED : wc::Mode::STREAM);
    (void)qos_pub_->offer(encoded(buf, e.finish()));
}

int Consumer::do_work(int64_t now_ns) {
    int work = 0;
    auto announce = [&](std::span<const uint8_t> m, const transport::MessageInfo& info) { on_announce(m, info, now_ns); };
    work += announce_sub_->poll(announce, 16);
    // ConsumerConfig / ControlResponse replies to our Hello; everything else on the shared control stream (other
    // consumers' Hellos, FrameProgress read by poll_progress' own subscription) is drained and dropped here.
    auto control = [this](std::span<const uint8_t> m, const transport::MessageInfo& info) { on_control(m, info); };
    work += control_sub_->poll(control, 64);
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

// ---- replies from the producer (§10.1.3, §15.17) -----------------------------------------------------------

void Consumer::on_control(std::span<const uint8_t> message, const transport::MessageInfo& info) {
    (void)wire::dispatch(message.data(), message.size(), [&](const auto& d) {
        using D = std::decay_t<decltype(d)>;
        if constexpr (std::is_same_v<D, wc::ConsumerHello::Decoder>) {
            // W-10.1.2-10: a Hello with our id that another publisher sent is a collision. A self-assigned id is
            // given up for a new random one (and announced at once); an assigned one is only counted.
            if (d.streamId() == config_.stream_id && d.consumerId() == config_.consumer_id &&
                info.session_id != control_pub_->session_id()) {
                ++stats_.id_collisions;
                if (id_self_assigned_) {
                    uint32_t fresh = config_.consumer_id;
                    while (fresh == config_.consumer_id) fresh = random_consumer_id();
                    config_.consumer_id = fresh;
                    next_hello_ns_ = 0;
                    next_qos_ns_ = 0;
                }
            }
        } else if constexpr (std::is_same_v<D, wc::ConsumerConfig::Decoder>) {
            if (d.streamId() == config_.stream_id && d.consumerId() == config_.consumer_id) on_consumer_config(d);
        } else if constexpr (std::is_same_v<D, wc::ControlResponse::Decoder>) {
            // no correlation id to match; the producer names the consumer at the start of the text.
            char prefix[32];
            const int n = std::snprintf(prefix, sizeof prefix, "consumer %u:", config_.consumer_id);
            const std::string_view text = d.errorMessage();
            if (n > 0 && text.substr(0, static_cast<std::size_t>(n)) == std::string_view(prefix, static_cast<std::size_t>(n))) {
                last_response_.assign(text);
            }
        }
    });
}

Status Consumer::resubscribe(std::unique_ptr<transport::Subscription>& sub, const std::string& channel, int32_t stream) {
    if (sub && sub->channel() == channel && sub->stream_id() == stream) return {};
    auto s = hub_.add_subscription(channel, stream);
    if (!s) return s.error();
    sub = std::move(*s);  // the old subscription closes here: W-5-2 "instead of" the shared stream
    return {};
}

void Consumer::on_consumer_config(const wc::ConsumerConfig::Decoder& d) {
    ++stats_.configs_received;
    const Channels& ch = config_.channels;
    // Descriptor half (W-5-2, W-10.1.3-3/-6): a grant is a non-empty channel with a non-zero stream id; anything
    // else is the decline form (or "not requested"), and the consumer reads the shared stream.
    const std::string_view dch = d.descriptorChannel();
    bool granted = !dch.empty() && d.descriptorStreamId() != 0 && d.descriptorStreamId() <= INT32_MAX;
    // Only on the channel we asked for, or the shared one: a channel string carries transport parameters, and a
    // grant is no reason to take whatever the other side names.
    if (granted && dch != config_.descriptor_request.channel && dch != ch.channel) {
        last_response_ = "granted descriptor channel '" + std::string(dch) + "' is neither the one requested nor the "
                         "shared one: ignored";
        granted = false;
    }
    if (granted) {
        const std::string channel(dch);
        if (Status s = resubscribe(descriptor_sub_, channel, static_cast<int32_t>(d.descriptorStreamId())); !s) {
            last_response_ = std::string("granted descriptor stream unusable: ") + s.error().message();
            granted = false;
        } else {
            streams_.descriptor_channel = channel;
            streams_.descriptor_stream_id = static_cast<int32_t>(d.descriptorStreamId());
        }
    }
    if (!granted) {
        // Counted when the answer changes, not on every repeat of it.
        if (config_.descriptor_request.requested() && !descriptor_declined_) ++stats_.stream_declines;
        if (Status s = resubscribe(descriptor_sub_, ch.channel, ch.descriptor_stream); !s) last_error_ = s.error().message();
        streams_.descriptor_channel.clear();
        streams_.descriptor_stream_id = 0;
    }
    if (granted != streams_.per_consumer_descriptor) have_last_seq_ = false;  // another stream: no gap across it
    streams_.per_consumer_descriptor = granted;
    descriptor_declined_ = !granted && config_.descriptor_request.requested();

    // Control half (W-5-6/-7): only FrameProgress moves to a granted stream; do_work() keeps the shared one.
    const std::string_view cch = d.controlChannel();
    bool control_granted = !cch.empty() && d.controlStreamId() != 0 && d.controlStreamId() <= INT32_MAX &&
                           (cch == config_.control_request.channel || cch == ch.channel);
    if (!control_granted && config_.control_request.requested() && !control_declined_) ++stats_.stream_declines;
    control_declined_ = !control_granted && config_.control_request.requested();
    if (config_.supports_progress) {
        if (control_granted) {
            if (Status s = resubscribe(progress_sub_, std::string(cch), static_cast<int32_t>(d.controlStreamId())); !s) {
                last_response_ = std::string("granted control stream unusable: ") + s.error().message();
                control_granted = false;
            }
        }
        if (!control_granted) (void)resubscribe(progress_sub_, ch.channel, ch.control_stream);
    }
    streams_.per_consumer_control = control_granted;
    streams_.control_channel = control_granted ? std::string(cch) : std::string();
    streams_.control_stream_id = control_granted ? static_cast<int32_t>(d.controlStreamId()) : 0;

    // §11: a producer may force RATE_LIMITED (a GUI); the cap is ours. On the shared stream we gate locally
    // (W-11-2). On a granted stream the producer may cap (W-5-5 is a MAY): a gate 25% looser than the cap stays as
    // a safety net against a producer that does not, without dropping frames a capping producer let through.
    forced_rate_limited_ = d.mode() == wc::Mode::RATE_LIMITED;
    const bool rate_limited = config_.mode == ConsumerMode::rate_limited || forced_rate_limited_;
    const uint32_t cap = config_.max_rate_hz;
    gate_.set_rate(!rate_limited || cap == 0 ? 0 : granted ? cap + cap / 4 + 1 : cap);
    streams_.rate_limited_locally = rate_limited && cap != 0 && !granted;
    capped_stream_ = granted && rate_limited && cap != 0;

    // Payload fallback (§6.3, W-10.1.3-1/-2): only the schemes we know; anything else is unsupported.
    const std::string_view fb = d.payloadFallbackUri();
    if (fb.empty()) {
        fallback_uri_.clear();
    } else if (fb.starts_with("aeron:") || fb.starts_with("bridge://")) {
        fallback_uri_.assign(fb);
    } else {
        fallback_uri_.clear();
        last_response_ = "payload fallback URI with an unsupported scheme ignored (W-10.1.3-2): " + std::string(fb);
    }
    if (state_ == MappingState::fallback && fallback_uri_.empty()) state_ = MappingState::unmapped;  // §6.3
    const bool forbid = d.useShm() == wc::Bool::FALSE;
    const MappingState forbidden_state = fallback_uri_.empty() ? MappingState::unmapped : MappingState::fallback;
    if (forbid && (!shm_forbidden_ || state_ != forbidden_state)) {
        shm_forbidden_ = true;
        enter_fallback_or_unmap("the producer said not to use SHM (ConsumerConfig.useShm = FALSE)");
    } else if (!forbid && shm_forbidden_) {
        shm_forbidden_ = false;  // the next announce maps again (§6.3 FALLBACK -> MAPPED)
        if (state_ == MappingState::fallback) state_ = MappingState::unmapped;
    }
}

void Consumer::allow_shm() noexcept {
    if (!shm_forbidden_) return;
    shm_forbidden_ = false;
    if (state_ == MappingState::fallback) state_ = MappingState::unmapped;
}

void Consumer::enter_fallback_or_unmap(const std::string& why) {
    if (state_ == MappingState::mapped) unmap(why.c_str());
    last_error_ = why;
    highest_epoch_ = 0;  // whatever was announced before may be mapped again once SHM is allowed
    state_ = fallback_uri_.empty() ? MappingState::unmapped : MappingState::fallback;
    if (state_ == MappingState::unmapped) last_error_ += "; no usable payload fallback was offered";
}

bool Consumer::local_gate_rejects(int64_t ts_ns) noexcept {
    if (gate_.allow(ts_ns)) return false;
    ++stats_.drops_rate_limited;
    return true;
}

// ---- frames -------------------------------------------------------------------------------------------------

// Only what the frame read needs is kept: a descriptor for another stream is dropped here, before it takes a place.
void Consumer::stage_descriptor(std::span<const uint8_t> message) noexcept {
    auto d = wc::FrameDescriptor::Decoder::wrap(message.data(), message.size());
    if (!d || d->streamId() != config_.stream_id) return;
    if (staged_count_ == kStageCapacity) return;  // a poll delivers at most the `want` asked for; never write past
    StagedDescriptor& s = staged_[staged_count_++];
    s.epoch = d->epoch();
    s.seq = d->seq();
    s.trace_id = d->traceId();
    s.publish_ts = d->timestampNsIsNull() ? std::nullopt : std::optional<uint64_t>(d->timestampNs());
}

void Consumer::on_descriptor(const StagedDescriptor& d, FrameHandler& handler) {
    if (state_ != MappingState::mapped || d.epoch != epoch_) {  // W-10.2.1-8, W-15.21-7..9
        ++stats_.drops_unmapped;
        return;
    }
    const uint64_t seq = d.seq;
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
        // On a per-consumer stream the producer caps at our max_rate_hz (W-5-5), the seqs it skipped for us are
        // rate limiting, not losses.
        (capped_stream_ ? stats_.drops_rate_limited : stats_.drops_gap) += gap;
        if (gap > config_.max_outstanding_seq_gap) ++stats_.resyncs;
    }
    stats_.last_seq = seq;
    have_last_seq_ = true;
    if (poisoned_seq_ == seq) {  // its FrameProgress broke W-10.2.2-7/-8/-12: the frame is dropped
        ++stats_.drops_invalid;
        return;
    }
    // §11 / W-11-4: gate on the publish timestamp when there is one, before touching SHM.
    const bool gating = gate_.limited();
    if (gating && d.publish_ts && local_gate_rejects(static_cast<int64_t>(*d.publish_ts))) return;

    const uint32_t slot_index = ring_.index_of(seq);

    if (const auto r = ring_.begin_read(seq, ticket_); r != shm::ReadBegin::ok) {  // W-8-26, W-10.2.1-11
        ++stats_.drops_late;
        // W-15.4-4: the producer is more than max_outstanding_seq_gap frames ahead of the descriptors we are
        // reading. Every seq older than a ring behind it is overwritten: drop those descriptors without touching
        // their slots until we are back within a ring of the producer.
        const uint64_t ahead = ticket_.observed_seq();
        if (r == shm::ReadBegin::overwritten && ahead - seq > config_.max_outstanding_seq_gap && ahead >= ring_.nslots()) {
            resync_to_ = ahead - ring_.nslots() + 1;
            ++stats_.resyncs;
            skip_requested_ = true;  // and jump to the newest descriptor once this poll returns
        }
        return;
    }
    auto c = validator_.validate(ticket_.header(), slot_index, pool_infos_);
    if (!c) {
        // A header copied while the producer was rewriting the slot can look malformed: that is a seqlock failure
        // (drops_late, §3.4 rules 4-6). Only a copy the commit word proves stable is a malformed header, which
        // A-18 counts apart from gap and late.
        ++(ticket_.still_valid() ? stats_.drops_invalid : stats_.drops_late);
        return;
    }
    const shm::SlotContents& contents = **c;
    const shm::PayloadPoolView* pool = pool_view(contents.pool_id);
    if (pool == nullptr) {
        ++stats_.drops_invalid;
        return;
    }
    if (gating && !d.publish_ts) {  // W-11-4: else the capture time, else our clock
        const int64_t ts = contents.timestamp_ns != 0 ? static_cast<int64_t>(contents.timestamp_ns) : monotonic_ns();
        if (local_gate_rejects(ts)) return;
    }
    FrameView v;
    v.ticket_ = &ticket_;
    v.contents_ = &contents;
    v.payload_ = std::span<const std::byte>(pool->payload(contents.payload_slot), contents.values_len_bytes);
    v.seq_ = seq;
    v.epoch_ = epoch_;
    v.publish_ts_ = d.publish_ts;
    v.trace_id_ = d.trace_id;
    v.stats_ = &stats_;
    ++stats_.frames_accepted;
    handler(v);
}

const shm::PayloadPoolView* Consumer::pool_view(uint16_t pool_id) const noexcept {
    for (const auto& p : pools_) {
        if (p.view.pool_id() == pool_id) return &p.view;
    }
    return nullptr;  // a pool no announce named
}

// ---- progress (§10.2.2, A-30) -------------------------------------------------------------------------------

void Consumer::on_progress(std::span<const uint8_t> message, ProgressHandler& handler) {
    auto d = wc::FrameProgress::Decoder::wrap(message.data(), message.size());
    if (!d || d->streamId() != config_.stream_id) return;
    if (state_ != MappingState::mapped || d->epoch() != epoch_) {
        ++stats_.progress_ignored;
        return;
    }
    const uint64_t seq = d->seq();
    const uint64_t filled = d->payloadBytesFilled();
    const auto state = d->state();
    if (state != wc::FrameProgressState::STARTED && state != wc::FrameProgressState::PROGRESS &&
        state != wc::FrameProgressState::COMPLETE) {
        ++stats_.progress_ignored;
        return;
    }
    if ((have_last_seq_ && seq <= stats_.last_seq) || (have_progress_ && seq < progress_seq_) || poisoned_seq_ == seq) {
        ++stats_.progress_ignored;  // the frame is already delivered, superseded, or dropped
        return;
    }
    auto violate = [&] {
        poisoned_seq_ = seq;
        ++stats_.progress_violations;
    };
    if (have_progress_ && seq == progress_seq_) {
        // W-10.2.2-8 / -12: never fewer bytes, never an earlier state, within one frame.
        if (filled < progress_filled_ || static_cast<uint8_t>(state) < progress_state_) return violate();
    }
    have_progress_ = true;
    progress_seq_ = seq;
    progress_filled_ = filled;
    progress_state_ = static_cast<uint8_t>(state);

    // W-10.2.2-4: the slot from the ring actually mapped; A-30: the slot must hold this seq, committed or not.
    if (progress_ticket_.begin_prefix(ring_.slot(ring_.index_of(seq)), seq) != shm::ReadBegin::ok) {
        ++stats_.progress_ignored;
        return;
    }
    auto c = progress_validator_.validate(progress_ticket_.header(), ring_.index_of(seq), pool_infos_);
    if (!c) {
        // A stable header that breaks a rule (e.g. an inconsistent progress unit, W-10.2.2-6) drops the frame; one
        // copied while the slot moved on is just late.
        if (progress_ticket_.still_valid()) violate(); else ++stats_.progress_ignored;
        return;
    }
    const shm::SlotContents& contents = **c;
    if (filled > contents.values_len_bytes) return violate();  // W-10.2.2-7
    const shm::PayloadPoolView* pool = pool_view(contents.pool_id);
    if (pool == nullptr) return violate();
    ProgressView v;
    v.ticket_ = &progress_ticket_;
    v.contents_ = &contents;
    v.seq_ = seq;
    v.epoch_ = epoch_;
    v.bytes_filled_ = filled;
    v.state_ = state;
    // W-10.2.2-11: a prefix means something only for packed strides (payload_offset is 0 in v1.2), or when the
    // header declares the unit it is written in (validated above, W-10.2.2-6).
    v.layout_safe_ = contents.payload_offset == 0 &&
                     (contents.tensor.progress_unit != shm::ProgressUnit::NONE ||
                      shm::is_contiguous(contents.tensor, contents.resolved_strides, contents.element_bytes));
    if (v.layout_safe_) v.prefix_ = std::span<const std::byte>(pool->payload(contents.payload_slot), filled);
    ++stats_.progress_accepted;
    handler(v);
}

int Consumer::poll_progress(ProgressHandler handler, int limit) {
    if (!progress_sub_) return 0;
    auto on_message = [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
        on_progress(m, handler);  // other control messages fail to wrap as FrameProgress and are skipped
    };
    return progress_sub_->poll(on_message, limit);
}

// Descriptors are taken from the transport a batch at a time and decoded into staged_, and only then are their
// frames read, so the application's handler never runs inside the transport's poll. Slots and payloads are read in
// seq order, so the hardware's stream prefetchers fetch their lines ahead: software prefetches of the slot lines
// eight frames ahead changed nothing measurable (64-byte frames, toggled every 5 ms within runs) and were removed.
int Consumer::poll_frames(FrameHandler handler, int limit) {
    int total = 0;
    auto stage = [this](std::span<const uint8_t> m, const transport::MessageInfo&) { stage_descriptor(m); };
    while (total < limit) {
        const int want = std::min(limit - total, kStageCapacity);
        staged_count_ = 0;
        const int n = descriptor_sub_->poll(stage, want);
        total += n;
        for (int i = 0; i < staged_count_; ++i) {
            on_descriptor(staged_[i], handler);
        }
        if (skip_requested_) {
            // W-15.4-4: every descriptor still queued behind the lapped one points at an overwritten slot. Where
            // the transport can, jump past them instead of reading each (a consumer that reads them one by one at
            // the producer's own pace never catches up); the seqs jumped over are counted as gaps when the next
            // arrives.
            skip_requested_ = false;
            (void)descriptor_sub_->skip_to_latest();
            break;
        }
        if (n < want) break;  // nothing more queued now
    }
    return total;
}

}  // namespace tensorpool::client
