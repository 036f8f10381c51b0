// The producer: owns the SHM regions of one stream in the driver-less mode, writes frames into them and tells
// consumers about them over the transport (WIRE_SPEC §3.2, W-5-*, W-8-*, W-9-*, W-10.*, W-15.*).
//
// An agent: call do_work(now) from your loop (or a thread) for announces, QoS and consumer tracking; publish
// frames with offer() (copy) or try_claim()/commit() (zero-copy, write straight into the payload slot). A frame
// that no pool fits is dropped and counted, never blocks (W-9-4). Publishing allocates nothing, takes no lock
// and makes no system call beyond the transport's own (none for `ipc`).
//
// Consumers that ask for per-consumer descriptor/control streams get them when the request is valid (see
// ConsumerRegistry); consumers that support progress get FrameProgress for frames claimed with a shape
// (try_claim(shape, length, claim)) while the application reports how far it has written (FrameClaim::progress).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tensorpool/client/channels.hpp"
#include "tensorpool/client/consumer_registry.hpp"
#include "tensorpool/client/metadata_publisher.hpp"
#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/region_writer.hpp"
#include "tensorpool/shm/slot_image.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::client {

using shm::TensorShape;

struct PoolConfig {
    uint16_t pool_id = 1;
    uint32_t stride_bytes = 1 << 20;  // a non-zero multiple of 64
};

struct ProducerConfig {
    uint32_t stream_id = 10000;
    uint32_t producer_id = 1;
    std::string shm_base_dir = "/dev/shm";
    std::string ns = "default";             // <namespace> of the canonical layout (W-15.21a-6)
    uint32_t header_nslots = 1024;          // power of two; every pool gets the same count (W-9-5)
    std::vector<PoolConfig> pools = {PoolConfig{}};
    Channels channels;
    int64_t announce_period_ns = 1'000'000'000;  // ShmPoolAnnounce, activity timestamp (W-15.11-2)
    int64_t qos_period_ns = 1'000'000'000;
    int64_t consumer_stale_ns = 5'000'000'000;   // no Hello/QoS for this long: the consumer is gone (W-5-4, A-26)
    bool allow_per_consumer_streams = true;      // grant valid per-consumer stream requests (W-5-1, W-5-6)
    uint32_t max_per_consumer_streams = 64;      // beyond this, requests are declined with REJECTED
    // Channels per-consumer streams may use besides channels.channel (exact strings; others are REJECTED).
    std::vector<std::string> per_consumer_channels;
    int64_t progress_min_interval_ns = 250'000;  // FrameProgress floors: consumer hints never go below (W-10.2.2-15)
    uint32_t progress_min_bytes = 64 * 1024;
    uint64_t epoch = 0;                          // 0: CLOCK_REALTIME ns, which grows across restarts
    shm::CreateOptions create;
    bool remove_regions_on_close = true;         // unlink the epoch directory when the producer is destroyed
};

// Per-frame values besides the tensor layout.
struct FrameOptions {
    uint64_t capture_timestamp_ns = 0;   // SlotHeader.timestampNs (W-10.2.1-4); 0: now (CLOCK_MONOTONIC)
    std::optional<uint32_t> meta_version;  // unset: the metadata's current version (metadata().meta_version())
    uint64_t trace_id = 0;               // FrameDescriptor.traceId: 0 = not traced
    // FrameDescriptor.timestampNs = publish time, read after the commit: for latency measurement or publish-time
    // alignment only; null by default as W-10.2.1-5 recommends (it costs a clock read per frame).
    bool publish_timestamp = false;
};

enum class PublishOutcome : uint8_t {
    published,        // committed in SHM and the descriptor was sent
    no_subscriber,    // committed in SHM; nobody listens on the descriptor stream
    descriptor_lost,  // committed in SHM; the transport refused the descriptor (back pressure): consumers see a gap
    no_pool_fits,     // dropped before using a seq (W-9-4, A-27)
    invalid,          // the tensor description breaks a header rule (see invalid_reason()); nothing written
};

struct PublishResult {
    PublishOutcome outcome;
    uint64_t seq = 0;
    bool committed() const noexcept { return outcome <= PublishOutcome::descriptor_lost; }
};

struct ProducerStats {
    uint64_t frames_committed = 0;
    uint64_t frames_no_pool = 0;
    uint64_t frames_invalid = 0;  // refused: their tensor description breaks a rule consumers drop frames for
    uint64_t descriptors_not_sent = 0;
    uint64_t announces_sent = 0;
    uint64_t progress_sent = 0;  // FrameProgress messages (STARTED, PROGRESS, COMPLETE) offered
    uint64_t consumers = 0;      // currently tracked (not stale); details in Producer::consumers().stats()
};

class Producer;

// Space for one frame claimed in its payload slot: write the payload into payload(), then commit() with its
// layout, or abort(). The slot is IN-PROGRESS from try_claim() until then (W-8-23). Destroying an open claim
// aborts it.
class FrameClaim {
public:
    FrameClaim() = default;
    FrameClaim(FrameClaim&& o) noexcept;
    FrameClaim& operator=(FrameClaim&& o) noexcept;
    FrameClaim(const FrameClaim&) = delete;
    FrameClaim& operator=(const FrameClaim&) = delete;
    ~FrameClaim() { abort(); }

    std::span<std::byte> payload() const noexcept { return payload_; }
    uint64_t seq() const noexcept { return seq_; }
    bool active() const noexcept { return producer_ != nullptr; }
    // Reports that bytes [0, bytes_filled) of payload() are written and final (FrameProgress, §10.2.2). Only for
    // a claim made with a shape; never decreasing and at most payload().size() (W-10.2.2-7/-8), else false and
    // nothing is sent. Throttled to the consumers' merged hints; a no-op while no consumer supports progress.
    bool progress(uint64_t bytes_filled) noexcept;
    // A claim made with a shape: commit() uses the FrameOptions given to try_claim, commit(options) these instead;
    // commit(shape, ...) with another shape is refused (invalid, the claim stays open): progress readers already
    // use the layout in the slot. A claim made without a shape needs commit(shape, options).
    PublishResult commit() noexcept;
    PublishResult commit(const FrameOptions& options) noexcept;
    PublishResult commit(const TensorShape& shape, const FrameOptions& options = {}) noexcept;
    void abort() noexcept;

private:
    friend class Producer;
    Producer* producer_ = nullptr;
    std::span<std::byte> payload_;
    uint64_t seq_ = 0;
    uint32_t pool_index_ = 0;
    bool has_shape_ = false;  // the slot header already holds the frame's layout (claimed with a shape)
    FrameOptions options_;    // given to try_claim(shape, ...)
};

class Producer {
public:
    static Result<std::unique_ptr<Producer>> create(transport::TransportHub& hub, ProducerConfig config);
    ~Producer();
    Producer(const Producer&) = delete;
    Producer& operator=(const Producer&) = delete;

    // Announces, activity refresh, QoS, consumer tracking. Returns the amount of work done.
    int do_work(int64_t now_ns);

    // Copies `payload` into the smallest pool whose stride fits it and publishes the frame.
    PublishResult offer(const TensorShape& shape, std::span<const std::byte> payload, const FrameOptions& options = {}) noexcept;
    // Claims a payload slot of at least `length` bytes for a zero-copy write; on failure the claim is inactive
    // and the result says why (no_pool_fits).
    PublishResult try_claim(uint32_t length, FrameClaim& claim) noexcept;
    // As above, and writes the frame's header (layout, values_len = length) into the slot at once, so consumers
    // that support progress can read a prefix while the payload is being written (W-10.2.2-11, A-30); sends
    // FrameProgress STARTED when some consumer supports progress.
    PublishResult try_claim(const TensorShape& shape, uint32_t length, FrameClaim& claim,
                            const FrameOptions& options = {}) noexcept;

    uint32_t stream_id() const noexcept { return config_.stream_id; }
    uint64_t epoch() const noexcept { return epoch_; }
    uint64_t next_seq() const noexcept { return next_seq_; }
    const ProducerStats& stats() const noexcept { return stats_; }
    // Why the last `invalid` outcome was refused, naming the field, its value and the rule; "" before any.
    const char* invalid_reason() const noexcept { return invalid_reason_.data(); }
    const std::string& header_region_uri() const noexcept { return header_uri_; }
    const ProducerConfig& config() const noexcept { return config_; }
    // The data source's name, summary, attributes and blobs (DataSourceAnnounce, DataSourceMeta, MetaBlob*),
    // sent on the metadata stream by do_work(); frames are stamped with its meta_version unless told otherwise.
    MetadataPublisher& metadata() noexcept { return *metadata_; }
    // The consumers heard from, their per-consumer streams and the FrameProgress policy merged from their hints.
    const ConsumerRegistry& consumers() const noexcept { return *registry_; }

private:
    friend class FrameClaim;
    struct Pool {
        PoolConfig config;
        shm::WritableRegion region;
        std::string uri;
    };
    // FrameProgress of the open claim (§10.2.2): STARTED sent, how far the application says it has written and how
    // far consumers were told.
    struct ClaimProgress {
        bool started = false;
        uint64_t seq = 0;
        uint64_t length = 0;
        uint64_t pending = 0;
        uint64_t reported = 0;
        uint64_t threshold = 0;  // bytes between PROGRESS messages for this frame
    };

    Producer(transport::TransportHub& hub, ProducerConfig config);
    Status open(int64_t now_ns);
    int pool_for(std::size_t length) const noexcept;
    void set_invalid_reason(const char* why) noexcept;
    PublishResult claim_slot(uint32_t length, FrameClaim& claim, const TensorShape* shape,
                             const FrameOptions& options) noexcept;
    bool prepare_image(uint32_t pool_index, uint64_t seq, uint32_t length, const TensorShape& shape,
                       const FrameOptions& options) noexcept;
    PublishResult commit_prepared(uint64_t seq, const FrameOptions& options) noexcept;
    PublishResult send_descriptor(uint64_t seq, const FrameOptions& options) noexcept;
    static constexpr uint64_t kPrefetchAheadFrames = 4;  // see prefetch_next_slot()
    void prefetch_next_slot() const noexcept;
    void start_progress(uint64_t seq, uint32_t length, const TensorShape& shape) noexcept;
    bool report_progress(uint64_t seq, uint64_t bytes_filled) noexcept;
    void flush_progress(int64_t now_ns) noexcept;
    void send_progress(uint64_t seq, uint64_t bytes_filled, wire::control::FrameProgressState state) noexcept;
    void send_announce(int64_t now_ns);
    void send_qos();
    int poll_control(int64_t now_ns);

    transport::TransportHub& hub_;
    ProducerConfig config_;
    uint64_t epoch_ = 0;
    uint64_t next_seq_ = 0;
    std::string epoch_dir_;
    shm::WritableRegion ring_;
    std::string header_uri_;
    std::vector<Pool> pools_;  // sorted by stride
    std::unique_ptr<transport::Publication> descriptor_pub_;
    std::unique_ptr<transport::Publication> announce_pub_;
    std::unique_ptr<transport::Publication> control_pub_;
    std::unique_ptr<transport::Publication> qos_pub_;
    std::unique_ptr<transport::Publication> metadata_pub_;
    std::unique_ptr<MetadataPublisher> metadata_;
    std::unique_ptr<transport::Subscription> control_sub_;
    std::unique_ptr<transport::Subscription> qos_sub_;
    std::unique_ptr<ConsumerRegistry> registry_;
    ClaimProgress claim_progress_;
    int64_t last_progress_ns_ = 0;  // the last PROGRESS on this stream (the interval is per stream)
    std::vector<uint8_t> announce_buf_;  // sized in open(): announcing never allocates
    int64_t next_announce_ns_ = 0;
    int64_t next_qos_ns_ = 0;
    bool claim_open_ = false;
    uint32_t last_pool_ = 0;    // index into pools_ of the last frame's pool
    shm::SlotImage image_;      // the slot image of the last frame (see prepare_image)
    TensorShape image_shape_{};
    bool image_valid_ = false;
    std::array<char, 256> invalid_reason_{};  // fixed, so refusing a frame never allocates
    ProducerStats stats_;
};

}  // namespace tensorpool::client
