#include "tensorpool/client/producer.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "tensorpool/common/clock.hpp"
#include "tensorpool/common/prefetch.hpp"
#include "tensorpool/shm/layout.hpp"
#include "tensorpool/shm/region_uri.hpp"
#include "tensorpool/shm/seqlock.hpp"
#include "encoded_message.hpp"
#include "tensorpool/wire/gen/dispatch.hpp"

namespace tensorpool::client {

namespace wc = wire::control;
using detail::encoded;

namespace {

constexpr std::size_t kDescriptorBytes = wire::MessageHeader::kSize + wc::FrameDescriptor::kBlockLength;

bool same_shape(const TensorShape& a, const TensorShape& b) noexcept {
    return a.dtype == b.dtype && a.major_order == b.major_order && a.ndims == b.ndims && a.dims == b.dims &&
           a.strides == b.strides && a.progress_unit == b.progress_unit &&
           a.progress_stride_bytes == b.progress_stride_bytes;
}

}  // namespace

// ---- FrameClaim -------------------------------------------------------------------------------------------

FrameClaim::FrameClaim(FrameClaim&& o) noexcept
    : producer_(std::exchange(o.producer_, nullptr)), payload_(o.payload_), seq_(o.seq_), pool_index_(o.pool_index_),
      has_shape_(o.has_shape_), options_(o.options_) {}

FrameClaim& FrameClaim::operator=(FrameClaim&& o) noexcept {
    if (this != &o) {
        abort();
        producer_ = std::exchange(o.producer_, nullptr);
        payload_ = o.payload_;
        seq_ = o.seq_;
        pool_index_ = o.pool_index_;
        has_shape_ = o.has_shape_;
        options_ = o.options_;
    }
    return *this;
}

bool FrameClaim::progress(uint64_t bytes_filled) noexcept {
    if (producer_ == nullptr || !has_shape_ || bytes_filled > payload_.size()) return false;
    return producer_->report_progress(seq_, bytes_filled);
}

PublishResult FrameClaim::commit() noexcept { return commit(options_); }

PublishResult FrameClaim::commit(const FrameOptions& options) noexcept {
    if (producer_ == nullptr) return {PublishOutcome::invalid, seq_};  // no open claim: nobody to tell why
    if (!has_shape_) {
        producer_->set_invalid_reason("commit() of a claim made without a shape: use commit(shape, options)");
        return {PublishOutcome::invalid, seq_};
    }
    return commit(producer_->image_shape_, options);
}

PublishResult FrameClaim::commit(const TensorShape& shape, const FrameOptions& options) noexcept {
    if (producer_ == nullptr) return {PublishOutcome::invalid, seq_};
    // A claim made with a shape has its layout in the slot already, where progress readers use it while the slot
    // is IN-PROGRESS; rewriting it now could hand them a mix of two layouts that the seqlock cannot see (the word
    // stays seq << 1 until the commit). So the shape may not change; the claim stays open.
    if (has_shape_ && !same_shape(shape, producer_->image_shape_)) {
        producer_->set_invalid_reason("commit(shape): the claim was made with another shape, which progress readers "
                                      "may already be using; commit with that shape or abort");
        return {PublishOutcome::invalid, seq_};
    }
    // The header image is ready before the claim is given up: a shape that is refused leaves the claim open, to be
    // committed with a valid shape or aborted.
    if (!producer_->prepare_image(pool_index_, seq_, static_cast<uint32_t>(payload_.size()), shape, options)) {
        return {PublishOutcome::invalid, seq_};
    }
    Producer* p = std::exchange(producer_, nullptr);
    p->claim_open_ = false;
    return p->commit_prepared(seq_, options);
}

void FrameClaim::abort() noexcept {
    // The slot stays IN-PROGRESS for this seq and no descriptor is sent; the next frame reuses the seq, so
    // consumers see no gap (A-27 spirit: an unpublished frame uses up nothing) — unless FrameProgress already
    // told consumers about this seq: reusing it would make its byte count go backwards (W-10.2.2-8), so the seq is
    // used up and consumers count one gap.
    if (producer_ != nullptr) {
        Producer* p = std::exchange(producer_, nullptr);
        p->claim_open_ = false;
        if (p->claim_progress_.started) ++p->next_seq_;
        p->claim_progress_ = {};
    }
}

// ---- Producer ---------------------------------------------------------------------------------------------

Producer::Producer(transport::TransportHub& hub, ProducerConfig config) : hub_(hub), config_(std::move(config)) {}

Producer::~Producer() {
    if (config_.remove_regions_on_close && !epoch_dir_.empty()) {
        std::error_code ec;
        std::filesystem::remove_all(epoch_dir_, ec);
    }
}

Result<std::unique_ptr<Producer>> Producer::create(transport::TransportHub& hub, ProducerConfig config) {
    if (config.pools.empty()) return Error(Errc::invalid_argument, "producer: at least one payload pool is needed");
    if (!shm::is_power_of_two(config.header_nslots)) {
        return Error::format(Errc::invalid_argument, "producer: header_nslots %u is not a power of two (A-16)",
                             config.header_nslots);
    }
    for (std::size_t i = 0; i < config.pools.size(); ++i) {
        const auto& p = config.pools[i];
        if (p.stride_bytes == 0 || p.stride_bytes % 64 != 0) {
            return Error::format(Errc::invalid_argument, "producer: pool %u stride %u is not a non-zero multiple of 64 "
                                 "(W-15.22-9)", unsigned{p.pool_id}, p.stride_bytes);
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (config.pools[j].pool_id == p.pool_id) {
                return Error::format(Errc::invalid_argument, "producer: pool id %u appears twice", unsigned{p.pool_id});
            }
        }
    }
    std::unique_ptr<Producer> p(new Producer(hub, std::move(config)));
    if (Status s = p->open(monotonic_ns()); !s) return s.error();
    return p;
}

Status Producer::open(int64_t now_ns) {
    epoch_ = config_.epoch != 0 ? config_.epoch : static_cast<uint64_t>(realtime_ns());
    auto layout = shm::make_canonical_layout(config_.shm_base_dir, config_.ns, config_.stream_id, epoch_);
    if (!layout) return layout.error();
    auto dir = shm::create_epoch_directory(*layout, config_.create);
    if (!dir) return dir.error();
    epoch_dir_ = *dir;

    const uint64_t start = static_cast<uint64_t>(now_ns);
    auto sb = shm::Superblock::header_ring(config_.stream_id, epoch_, config_.header_nslots);
    sb.start_timestamp_ns = start;
    sb.activity_timestamp_ns = start;
    auto ring = shm::create_region(layout->header_ring_path(), sb, config_.create);
    if (!ring) return ring.error();
    ring_ = std::move(*ring);
    auto uri = shm::format_region_uri(shm::RegionUri{ring_.path(), false});
    if (!uri) return uri.error();
    header_uri_ = *uri;

    std::vector<PoolConfig> sorted = config_.pools;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.stride_bytes < b.stride_bytes; });
    for (const auto& pc : sorted) {
        auto psb = shm::Superblock::payload_pool(config_.stream_id, epoch_, pc.pool_id, config_.header_nslots,
                                                 pc.stride_bytes);
        psb.start_timestamp_ns = start;
        psb.activity_timestamp_ns = start;
        auto region = shm::create_region(layout->pool_path(pc.pool_id), psb, config_.create);
        if (!region) return region.error();
        auto puri = shm::format_region_uri(shm::RegionUri{region->path(), false});
        if (!puri) return puri.error();
        pools_.push_back(Pool{pc, std::move(*region), *puri});
    }

    // Regions are complete and fsync'ed (create_region): only now may they be announced (W-15.14-3).
    const Channels& ch = config_.channels;
    auto add_pub = [&](int32_t stream, std::unique_ptr<transport::Publication>& out) -> Status {
        auto p = hub_.add_publication(ch.channel, stream);
        if (!p) return p.error();
        out = std::move(*p);
        return {};
    };
    auto add_sub = [&](int32_t stream, std::unique_ptr<transport::Subscription>& out) -> Status {
        auto s = hub_.add_subscription(ch.channel, stream);
        if (!s) return s.error();
        out = std::move(*s);
        return {};
    };
    for (Status s : {add_pub(ch.descriptor_stream, descriptor_pub_), add_pub(ch.announce_stream, announce_pub_),
                     add_pub(ch.control_stream, control_pub_), add_pub(ch.qos_stream, qos_pub_),
                     add_pub(ch.metadata_stream, metadata_pub_),
                     add_sub(ch.control_stream, control_sub_), add_sub(ch.qos_stream, qos_sub_)}) {
        if (!s) return s;
    }
    // Sized once: header, block, the pool group and every URI (each at most PATH_MAX plus the scheme).
    announce_buf_.resize(wire::MessageHeader::kSize + wc::ShmPoolAnnounce::kBlockLength + 8 +
                         (pools_.size() + 1) * (wc::ShmPoolAnnounce::PayloadPools::kBlockLength + 4 + header_uri_.size() + 64));
    for (const auto& p : pools_) announce_buf_.resize(announce_buf_.size() + p.uri.size());
    MetadataPublisherConfig mc;
    mc.stream_id = config_.stream_id;
    mc.producer_id = config_.producer_id;
    mc.epoch = epoch_;
    mc.announce_period_ns = config_.announce_period_ns;
    mc.meta_period_ns = config_.announce_period_ns;
    auto meta = MetadataPublisher::create(*metadata_pub_, mc);
    if (!meta) return meta.error();
    metadata_ = std::move(*meta);
    ConsumerRegistryConfig rc;
    rc.stream_id = config_.stream_id;
    rc.shared = config_.channels;
    rc.stale_ns = config_.consumer_stale_ns;
    rc.allow_per_consumer_streams = config_.allow_per_consumer_streams;
    rc.max_per_consumer_streams = config_.max_per_consumer_streams;
    rc.allowed_channels = config_.per_consumer_channels;
    rc.progress_min_interval_ns = config_.progress_min_interval_ns;
    rc.progress_min_bytes = config_.progress_min_bytes;
    registry_ = std::make_unique<ConsumerRegistry>(hub_, std::move(rc));
    next_announce_ns_ = now_ns;
    next_qos_ns_ = now_ns;
    return {};
}

void Producer::set_invalid_reason(const char* why) noexcept {
    std::snprintf(invalid_reason_.data(), invalid_reason_.size(), "%s", why);
}

int Producer::pool_for(std::size_t length) const noexcept {
    for (std::size_t i = 0; i < pools_.size(); ++i) {
        if (pools_[i].config.stride_bytes >= length) return static_cast<int>(i);  // smallest fit (W-9-3)
    }
    return -1;
}

PublishResult Producer::offer(const TensorShape& shape, std::span<const std::byte> payload,
                              const FrameOptions& options) noexcept {
    if (claim_open_) {
        set_invalid_reason("offer() while a claim is open: commit or abort the claim first");
        return {PublishOutcome::invalid, next_seq_};
    }
    const int p = pool_for(payload.size());
    if (p < 0 || payload.size() > UINT32_MAX) {
        ++stats_.frames_no_pool;
        return {PublishOutcome::no_pool_fits, next_seq_};
    }
    const uint64_t seq = next_seq_;
    // The header image is ready before the slot is touched: a shape that cannot be encoded never leaves a slot
    // IN-PROGRESS.
    if (!prepare_image(static_cast<uint32_t>(p), seq, static_cast<uint32_t>(payload.size()), shape, options)) {
        return {PublishOutcome::invalid, seq};
    }
    const uint32_t index = shm::header_index(seq, config_.header_nslots);
    shm::seqlock_begin_write(ring_.header_slot(index), seq);  // W-8-23
    if (!payload.empty()) std::memcpy(pools_[p].region.payload_slot(index), payload.data(), payload.size());
    return commit_prepared(seq, options);
}

PublishResult Producer::try_claim(uint32_t length, FrameClaim& claim) noexcept {
    return claim_slot(length, claim, nullptr, FrameOptions{});
}

PublishResult Producer::try_claim(const TensorShape& shape, uint32_t length, FrameClaim& claim,
                                  const FrameOptions& options) noexcept {
    return claim_slot(length, claim, &shape, options);
}

PublishResult Producer::claim_slot(uint32_t length, FrameClaim& claim, const TensorShape* shape,
                                   const FrameOptions& options) noexcept {
    claim.abort();
    if (claim_open_) {
        set_invalid_reason("try_claim() while another claim is open: commit or abort it first");
        return {PublishOutcome::invalid, next_seq_};
    }
    const int p = pool_for(length);
    if (p < 0) {
        ++stats_.frames_no_pool;
        return {PublishOutcome::no_pool_fits, next_seq_};
    }
    const uint64_t seq = next_seq_;
    // A shaped claim's header image is ready before the slot is touched: a shape that cannot be encoded never
    // leaves a slot IN-PROGRESS.
    if (shape != nullptr && !prepare_image(static_cast<uint32_t>(p), seq, length, *shape, options)) {
        return {PublishOutcome::invalid, seq};
    }
    const uint32_t index = shm::header_index(seq, config_.header_nslots);
    std::byte* slot = ring_.header_slot(index);
    shm::seqlock_begin_write(slot, seq);  // W-8-23: before any payload byte is written
    if (shape != nullptr) shm::seqlock_store_header(slot, image_, seq >= config_.header_nslots);  // for prefix readers
    claim.producer_ = this;
    claim.payload_ = std::span<std::byte>(pools_[p].region.payload_slot(index), length);
    claim.seq_ = seq;
    claim.pool_index_ = static_cast<uint32_t>(p);
    claim.has_shape_ = shape != nullptr;
    claim.options_ = options;
    claim_open_ = true;
    if (shape != nullptr) start_progress(seq, length, *shape);
    return {PublishOutcome::published, seq};
}

// Frames of one stream nearly always share a shape, so the 256-byte slot image is encoded (with the generated
// codecs, every reserved byte zero) only when the shape changes; otherwise the five SlotHeader fields that
// change per frame are patched in place at the offsets the schema gives. W-8-24 still holds: the whole image
// is written to the slot every time.
bool Producer::prepare_image(uint32_t pool_index, uint64_t seq, uint32_t length, const TensorShape& shape,
                             const FrameOptions& options) noexcept {
    using Off = wc::SlotHeader::Offsets;
    const uint64_t ts = options.capture_timestamp_ns != 0 ? options.capture_timestamp_ns : static_cast<uint64_t>(monotonic_ns());
    const uint32_t meta = options.meta_version.value_or(metadata_->meta_version());
    const uint16_t pool_id = pools_[pool_index].config.pool_id;
    last_pool_ = pool_index;
    if (!image_valid_ || !same_shape(shape, image_shape_)) {
        shm::FrameDescription f;
        f.seq = seq;
        f.values_len_bytes = length;
        f.pool_id = pool_id;
        f.timestamp_ns = ts;
        f.meta_version = meta;
        f.tensor = shape;
        image_valid_ = false;
        // The shape is checked as a consumer will check it (W-8-8, W-8-11, W-8-15..17, W-15.8-2, A-29): one every
        // consumer would drop is refused here, with the reason, instead of being published. Only when the shape
        // changes, so not per frame for a stream of one shape.
        Status s = shm::validate_tensor_shape(shape);
        if (s) s = shm::encode_slot_image(f, config_.header_nslots, image_);
        if (!s) {
            set_invalid_reason(s.error().message());
            ++stats_.frames_invalid;
            return false;
        }
        image_shape_ = shape;
        image_valid_ = true;
        return true;
    }
    auto* base = reinterpret_cast<uint8_t*>(image_.data());
    wire::store_le<uint32_t>(base + Off::valuesLenBytes, length);
    wire::store_le<uint32_t>(base + Off::payloadSlot, shm::header_index(seq, config_.header_nslots));
    wire::store_le<uint16_t>(base + Off::poolId, pool_id);
    wire::store_le<uint64_t>(base + Off::timestampNs, ts);
    wire::store_le<uint32_t>(base + Off::metaVersion, meta);
    return true;
}

PublishResult Producer::commit_prepared(uint64_t seq, const FrameOptions& options) noexcept {
    const uint32_t nslots = config_.header_nslots;
    std::byte* slot = ring_.header_slot(shm::header_index(seq, nslots));
    // W-8-24: every header field, every time. The padding after them is zero from the region's creation (ours,
    // and nobody else writes it, W-15.14-2); it is written again during the first lap only.
    shm::seqlock_store_header(slot, image_, seq >= nslots);
    shm::seqlock_commit(slot, seq);  // W-8-25
    ++next_seq_;
    ++stats_.frames_committed;
    const PublishResult r = send_descriptor(seq, options);
    if (claim_progress_.started) {
        // COMPLETE and the descriptor both follow the commit; consumers may not rely on their order.
        send_progress(seq, claim_progress_.length, wc::FrameProgressState::COMPLETE);
        claim_progress_ = {};
    }
    prefetch_next_slot();
    return r;
}

// Consumers read each slot after its frame is committed, and their cores' stream prefetchers pull in the slots
// after it, so the lines of the next frames are usually cached by a consumer's core. Asking for them in a writable
// state a few frames early lets the invalidations happen meanwhile instead of stalling a frame's stores (x86
// commits stores in order: one store waiting for a line stalls all behind it). Those lines: the header fields (and
// the padding on a slot's first use) and the first payload line of the pool the last frame used; larger payloads
// are streamed by memcpy and the hardware prefetcher. Each call asks for the slot kPrefetchAheadFrames on, so every
// slot is asked for once (but the first few of a producer's life). Measured on 64-byte frames, toggled every 5 ms
// within runs: 2 frames ahead published up to 1.96x (median 1.05x) as many frames as the next one, 4 ahead about
// 2% more than 2, and 8 to 32 ahead nothing more.
void Producer::prefetch_next_slot() const noexcept {
    const uint32_t nslots = config_.header_nslots;
    const uint64_t seq = next_seq_ + kPrefetchAheadFrames;
    const uint32_t index = shm::header_index(seq, nslots);
    const std::byte* slot = ring_.header_slot(index);
    const std::size_t end = seq >= nslots ? shm::kSlotFieldWordsEnd : shm::kHeaderSlotBytes;
    for (std::size_t line = 0; line < end; line += 64) prefetch_for_write(slot + line);
    prefetch_for_write(pools_[last_pool_].region.payload_slot(index));
}

PublishResult Producer::send_descriptor(uint64_t seq, const FrameOptions& options) noexcept {
    // W-10.2.1-7: only after the commit above.
    alignas(8) uint8_t buf[kDescriptorBytes];
    wc::FrameDescriptor::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).epoch(epoch_).seq(seq).traceId(options.trace_id);
    e.metaVersion(options.meta_version.value_or(metadata_->meta_version()));
    const bool capped = registry_->has_rate_capped_streams();
    const int64_t now = options.publish_timestamp || capped ? monotonic_ns() : 0;
    e.timestampNs(options.publish_timestamp ? static_cast<uint64_t>(now)
                                            : wc::FrameDescriptor::Encoder::timestampNsNullValue());
    const auto n = e.finish();
    // Consumers granted their own descriptor stream read it instead of the shared one (W-5-2); the shared stream
    // still carries every frame for everyone else.
    if (registry_->has_descriptor_streams()) registry_->offer_descriptor(encoded(buf, n), now);
    const transport::OfferResult r = descriptor_pub_->offer(encoded(buf, n));
    if (r.ok()) return {PublishOutcome::published, seq};
    if (r.status() == transport::OfferStatus::not_connected) return {PublishOutcome::no_subscriber, seq};
    ++stats_.descriptors_not_sent;
    return {PublishOutcome::descriptor_lost, seq};
}

// ---- FrameProgress (§10.2.2) ---------------------------------------------------------------------------------

void Producer::start_progress(uint64_t seq, uint32_t length, const TensorShape& shape) noexcept {
    claim_progress_ = {};
    claim_progress_.seq = seq;
    claim_progress_.length = length;
    const ProgressPolicy& policy = registry_->progress();
    if (!policy.enabled) return;  // W-10.2.2-14: nobody asked for progress
    claim_progress_.started = true;
    // "≥64 KiB or ≥N rows" (W-10.2.2-13): a row/column hint converts to bytes through the frame's progress stride,
    // and the byte floor still applies.
    uint64_t threshold = policy.bytes_delta;
    if (policy.major_delta_units != 0 && shape.progress_unit != shm::ProgressUnit::NONE && shape.progress_stride_bytes != 0) {
        threshold = std::max<uint64_t>(config_.progress_min_bytes,
                                       std::min<uint64_t>(threshold, uint64_t{policy.major_delta_units} * shape.progress_stride_bytes));
    }
    claim_progress_.threshold = threshold;
    send_progress(seq, 0, wc::FrameProgressState::STARTED);  // W-10.2.2-2: once, when acquisition starts
}

bool Producer::report_progress(uint64_t seq, uint64_t bytes_filled) noexcept {
    ClaimProgress& cp = claim_progress_;
    if (cp.seq != seq || bytes_filled < cp.pending) return false;  // W-10.2.2-8: never decreasing
    cp.pending = bytes_filled;
    if (cp.started) flush_progress(monotonic_ns());  // else nobody wanted progress when the frame was claimed
    return true;
}

// W-10.2.2-13: at most one PROGRESS per interval on this stream, only once the count has grown by the threshold;
// a report held back by the interval goes out when the interval ends (from here or from do_work()).
void Producer::flush_progress(int64_t now_ns) noexcept {
    ClaimProgress& cp = claim_progress_;
    if (!cp.started || cp.pending < cp.reported + cp.threshold) return;
    if (now_ns - last_progress_ns_ < registry_->progress().interval_ns) return;
    cp.reported = cp.pending;
    last_progress_ns_ = now_ns;
    send_progress(cp.seq, cp.reported, wc::FrameProgressState::PROGRESS);
}

void Producer::send_progress(uint64_t seq, uint64_t bytes_filled, wc::FrameProgressState state) noexcept {
    alignas(8) uint8_t buf[wire::MessageHeader::kSize + wc::FrameProgress::kBlockLength];
    wc::FrameProgress::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).epoch(epoch_).seq(seq).payloadBytesFilled(bytes_filled).state(state);
    const auto msg = encoded(buf, e.finish());
    // W-5-6 / W-5-8: a consumer with its own control stream takes progress there; the shared control stream
    // carries it for the others.
    registry_->offer_progress(msg);
    if (registry_->progress().on_shared) (void)control_pub_->offer(msg);
    ++stats_.progress_sent;
}

// ---- announces, QoS, consumers ------------------------------------------------------------------------------

void Producer::send_announce(int64_t now_ns) {
    for (auto& p : pools_) p.region.set_activity_timestamp(static_cast<uint64_t>(now_ns));  // W-7-3
    ring_.set_activity_timestamp(static_cast<uint64_t>(now_ns));
    std::vector<uint8_t>& buf = announce_buf_;
    wc::ShmPoolAnnounce::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(config_.stream_id).producerId(config_.producer_id).epoch(epoch_);
    e.announceTimestampNs(static_cast<uint64_t>(now_ns)).announceClockDomain(wc::ClockDomain::MONOTONIC);
    e.layoutVersion(shm::kLayoutVersion).headerNslots(config_.header_nslots).headerSlotBytes(256);
    auto g = e.payloadPoolsCount(pools_.size());
    for (const auto& p : pools_) {
        g.next().poolId(p.config.pool_id).poolNslots(config_.header_nslots).strideBytes(p.config.stride_bytes).regionUri(p.uri);
    }
    e.headerRegionUri(header_uri_);
    const auto n = e.finish();
    if (n.ok() && announce_pub_->offer(std::span<const uint8_t>(buf.data(), *n)).ok()) ++stats_.announces_sent;
}

void Producer::send_qos() {
    alignas(8) uint8_t buf[wire::MessageHeader::kSize + wc::QosProducer::kBlockLength];
    wc::QosProducer::Encoder e;
    (void)e.wrap_and_apply_header(buf, sizeof buf);
    e.streamId(config_.stream_id).producerId(config_.producer_id).epoch(epoch_);
    e.currentSeq(next_seq_ == 0 ? 0 : next_seq_ - 1).watermark(wc::QosProducer::Encoder::watermarkNullValue());
    (void)qos_pub_->offer(encoded(buf, e.finish()));
}

int Producer::poll_control(int64_t now_ns) {
    int work = 0;
    auto on_message = [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
        (void)wire::dispatch(m.data(), m.size(), [&](const auto& d) {
            using D = std::decay_t<decltype(d)>;
            if constexpr (std::is_same_v<D, wc::ConsumerHello::Decoder>) {
                if (d.streamId() == config_.stream_id) registry_->on_hello(d, now_ns, *control_pub_);
            } else if constexpr (std::is_same_v<D, wc::QosConsumer::Decoder>) {
                if (d.streamId() == config_.stream_id) registry_->on_qos(d.consumerId(), now_ns);
            }
        });
        ++work;
    };
    control_sub_->poll(on_message, 64);
    qos_sub_->poll(on_message, 64);
    return work;
}

int Producer::do_work(int64_t now_ns) {
    int work = poll_control(now_ns);
    work += metadata_->do_work(now_ns);
    if (now_ns >= next_announce_ns_) {
        send_announce(now_ns);
        next_announce_ns_ = now_ns + config_.announce_period_ns;
        ++work;
    }
    if (now_ns >= next_qos_ns_) {
        send_qos();
        next_qos_ns_ = now_ns + config_.qos_period_ns;
        ++work;
    }
    // W-5-3 / W-5-4: a consumer heard from neither by Hello nor by QoS for the stale time is gone, and so are
    // its per-consumer streams.
    work += registry_->expire(now_ns);
    stats_.consumers = registry_->stats().consumers;
    if (claim_open_) flush_progress(now_ns);
    work += hub_.do_work();
    return work;
}

}  // namespace tensorpool::client
