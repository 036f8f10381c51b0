// The consumer: maps a producer's regions from its announces and reads frames in place (WIRE_SPEC §3.3, §3.4,
// §6.2, W-8-*, W-10.*, W-11-*, W-15.*).
//
// An agent: call do_work(now) for announces, Hello and QoS; call poll_frames(handler, limit) to receive frames.
// Each frame is handed over as a FrameView over the producer's memory: read what you need, then call
// still_valid() — only a true answer proves the bytes you read were not being overwritten (W-8-31). copy_to()
// copies and validates in one step. Receiving allocates nothing, takes no lock and makes no system call.
//
// Options: ask the producer for a per-consumer descriptor and/or control stream (W-5-*; on a grant the consumer
// reads descriptors there instead of the shared stream, on a decline it stays on the shared one); RATE_LIMITED
// mode with max_rate_hz (the producer caps a granted per-consumer stream, otherwise frames are gated locally,
// §11); supports_progress, to read FrameProgress prefixes of frames still being written with poll_progress().
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "tensorpool/client/channels.hpp"
#include "tensorpool/client/metadata_receiver.hpp"
#include "tensorpool/client/rate_gate.hpp"
#include "tensorpool/common/function_ref.hpp"
#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/allowed_dirs.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/seqlock.hpp"
#include "tensorpool/shm/slot_image.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace tensorpool::client {

enum class ConsumerMode : uint8_t { stream = 1, rate_limited = 2 };  // ConsumerHello.mode (§11)

// A per-consumer stream to ask for: both set, or neither (W-10.1.2-3/-6).
struct StreamRequest {
    std::string channel;
    int32_t stream_id = 0;
    bool requested() const noexcept { return !channel.empty() || stream_id != 0; }
};

struct ConsumerConfig {
    uint32_t stream_id = 10000;
    uint32_t consumer_id = 0;                     // 0: a random id, replaced if another consumer uses it (W-10.1.2-10)
    std::vector<std::string> allowed_dirs = {"/dev/shm"};  // regions outside are refused (W-15.21a-14)
    Channels channels;
    int64_t hello_period_ns = 1'000'000'000;
    int64_t qos_period_ns = 1'000'000'000;
    int64_t announce_period_ns = 1'000'000'000;   // the producer's; freshness window = 3x (W-10.1.1-8)
    int64_t liveness_timeout_ns = 5'000'000'000;  // activity_timestamp older than this: producer dead (W-7-4)
    uint32_t max_outstanding_seq_gap = 256;       // W-15.4-4
    uint32_t expected_layout_version = 1;
    ConsumerMode mode = ConsumerMode::stream;
    uint32_t max_rate_hz = 0;                     // RATE_LIMITED: at most this many frames per second (0 = all)
    StreamRequest descriptor_request;             // per-consumer descriptor stream (W-5-1, W-5-2)
    StreamRequest control_request;                // per-consumer control stream, for FrameProgress (W-5-6)
    bool supports_progress = false;               // receive FrameProgress; read it with poll_progress()
    // Progress hints for the producer (W-10.1.2-8); unset: no preference (the producer's defaults apply).
    std::optional<uint32_t> progress_interval_us;
    std::optional<uint32_t> progress_bytes_delta;
    std::optional<uint32_t> progress_major_delta_units;
};

enum class MappingState : uint8_t { unmapped, mapped, fallback };

struct ConsumerStats {
    uint64_t frames_accepted = 0;   // handed to the handler
    uint64_t drops_gap = 0;         // seqs never seen in the descriptor stream (§15.4)
    uint64_t drops_late = 0;        // seqlock / stale-reuse failures, including still_valid() == false
    uint64_t drops_invalid = 0;     // headers that broke a W-8 rule (not counted as gap or late, A-18)
    uint64_t drops_unmapped = 0;    // descriptors while unmapped or for another epoch
    uint64_t torn_detected = 0;     // still_valid() returned false after the handler read the payload
    uint64_t resyncs = 0;           // gaps, or a lag behind the producer, larger than max_outstanding_seq_gap
    uint64_t announces_accepted = 0;
    uint64_t announces_ignored = 0; // stale, older epoch, before join time, abandoned epoch (W-15.14-2)
    uint64_t mappings = 0;          // successful maps (first map and remaps)
    uint64_t mapping_failures = 0;
    uint64_t last_seq = 0;
    uint64_t drops_rate_limited = 0;  // RATE_LIMITED: gated locally on the shared stream (§11), or skipped by the
                                      // producer's cap on our per-consumer stream (W-5-5)
    uint64_t configs_received = 0;    // ConsumerConfig messages addressed to this consumer
    uint64_t stream_declines = 0;     // requested per-consumer stream halves the producer declined
    uint64_t progress_accepted = 0;   // FrameProgress handed to the progress handler
    uint64_t progress_ignored = 0;    // not for the mapped epoch, an older frame, or a slot already reused
    uint64_t progress_violations = 0; // count went down or past values_len, state went back: frame dropped
    uint64_t id_collisions = 0;       // another consumer's Hello carried our id (W-10.1.2-10)
};

// How the consumer reads descriptors and progress right now.
struct StreamAssignment {
    bool per_consumer_descriptor = false;  // granted: descriptors come from descriptor_channel/stream
    std::string descriptor_channel;
    int32_t descriptor_stream_id = 0;
    bool per_consumer_control = false;     // granted: FrameProgress comes from control_channel/stream
    std::string control_channel;
    int32_t control_stream_id = 0;
    bool rate_limited_locally = false;     // RATE_LIMITED without a granted descriptor stream (§11, W-11-2)
};

class Consumer;

// One frame, read in place. Valid only inside the poll_frames() handler.
class FrameView {
public:
    uint64_t seq() const noexcept { return seq_; }
    uint64_t epoch() const noexcept { return epoch_; }
    shm::Dtype dtype() const noexcept { return contents_->tensor.dtype; }
    shm::MajorOrder major_order() const noexcept { return contents_->tensor.major_order; }
    uint8_t ndims() const noexcept { return contents_->tensor.ndims; }
    std::span<const int32_t> dims() const noexcept { return {contents_->tensor.dims.data(), ndims()}; }
    // Byte strides with zero (inferred) strides resolved.
    std::span<const int64_t> strides() const noexcept { return {contents_->resolved_strides.data(), ndims()}; }
    uint32_t element_bytes() const noexcept { return contents_->element_bytes; }
    // The payload in the producer's pool, read-only. Read it, then call still_valid().
    std::span<const std::byte> payload() const noexcept { return payload_; }
    uint64_t capture_timestamp_ns() const noexcept { return contents_->timestamp_ns; }
    std::optional<uint64_t> publish_timestamp_ns() const noexcept { return publish_ts_; }
    uint32_t meta_version() const noexcept { return contents_->meta_version; }
    uint64_t trace_id() const noexcept { return trace_id_; }
    uint16_t pool_id() const noexcept { return contents_->pool_id; }

    // True if the slot still holds this frame, so everything read from payload() so far is untorn (W-8-27).
    // May be asked more than once; a frame found overwritten is counted once (torn_detected, drops_late).
    bool still_valid() const noexcept;
    // Copies the payload into `out` (at least payload().size() bytes) and validates the copy.
    Status copy_to(std::span<std::byte> out) const noexcept;

private:
    friend class Consumer;
    const shm::ReadTicket* ticket_ = nullptr;
    const shm::SlotContents* contents_ = nullptr;
    std::span<const std::byte> payload_;
    uint64_t seq_ = 0;
    uint64_t epoch_ = 0;
    std::optional<uint64_t> publish_ts_;
    uint64_t trace_id_ = 0;
    ConsumerStats* stats_ = nullptr;
    mutable bool counted_torn_ = false;
};

using FrameHandler = FunctionRef<void(const FrameView& frame)>;

// A FrameProgress report for a frame still being written (§10.2.2), valid only inside the poll_progress()
// handler. prefix() is bytes [0, bytes_filled) in place when the layout makes a prefix meaningful (contiguous
// strides, or a ROWS/COLUMNS progress unit; W-10.2.2-11), else empty. Prefix data is provisional: read
// it, then still_valid() proves the slot still belongs to this frame; the frame is final only with its
// FrameDescriptor (W-10.2.2-10).
class ProgressView {
public:
    uint64_t seq() const noexcept { return seq_; }
    uint64_t epoch() const noexcept { return epoch_; }
    wire::control::FrameProgressState state() const noexcept { return state_; }
    uint64_t bytes_filled() const noexcept { return bytes_filled_; }
    uint32_t values_len_bytes() const noexcept { return contents_->values_len_bytes; }
    bool layout_safe() const noexcept { return layout_safe_; }
    std::span<const std::byte> prefix() const noexcept { return prefix_; }
    shm::Dtype dtype() const noexcept { return contents_->tensor.dtype; }
    std::span<const int32_t> dims() const noexcept { return {contents_->tensor.dims.data(), contents_->tensor.ndims}; }
    shm::ProgressUnit progress_unit() const noexcept { return contents_->tensor.progress_unit; }
    uint32_t progress_stride_bytes() const noexcept { return contents_->tensor.progress_stride_bytes; }
    bool still_valid() const noexcept { return ticket_ != nullptr && ticket_->still_valid(); }

private:
    friend class Consumer;
    const shm::ReadTicket* ticket_ = nullptr;
    const shm::SlotContents* contents_ = nullptr;
    std::span<const std::byte> prefix_;
    uint64_t seq_ = 0;
    uint64_t epoch_ = 0;
    uint64_t bytes_filled_ = 0;
    wire::control::FrameProgressState state_ = wire::control::FrameProgressState::UNKNOWN;
    bool layout_safe_ = false;
};

using ProgressHandler = FunctionRef<void(const ProgressView& progress)>;

class Consumer {
public:
    static Result<std::unique_ptr<Consumer>> create(transport::TransportHub& hub, ConsumerConfig config);
    ~Consumer();
    Consumer(const Consumer&) = delete;
    Consumer& operator=(const Consumer&) = delete;

    // Announces (mapping state machine), Hello and QoS cadence, producer liveness. `now_ns` is CLOCK_MONOTONIC
    // (monotonic_ns()): it is compared with announce stamps, join times and activity timestamps.
    int do_work(int64_t now_ns);
    // Reads descriptors and hands each accepted frame to `handler`; returns how many descriptors were handled.
    int poll_frames(FrameHandler handler, int limit);
    // With supports_progress: reads FrameProgress (from the granted per-consumer control stream, else the shared
    // one) and hands each usable report to `handler`. Returns how many messages were read; 0 without progress.
    int poll_progress(ProgressHandler handler, int limit);

    MappingState state() const noexcept { return state_; }
    uint64_t mapped_epoch() const noexcept { return epoch_; }
    uint32_t consumer_id() const noexcept { return config_.consumer_id; }
    const ConsumerStats& stats() const noexcept { return stats_; }
    // Why the last announce could not be mapped (empty if it could).
    const std::string& last_mapping_error() const noexcept { return last_error_; }
    // Which streams this consumer reads, after the producer's ConsumerConfig.
    const StreamAssignment& streams() const noexcept { return streams_; }
    // The latest ControlResponse addressed to this consumer (e.g. why a stream request was declined); empty if none.
    const std::string& last_control_response() const noexcept { return last_response_; }
    // The payload fallback the producer offered (ConsumerConfig.payloadFallbackUri; aeron: or bridge:// only,
    // W-10.1.3-2); with state() == fallback the payload is to be fetched there instead of SHM.
    const std::string& fallback_uri() const noexcept { return fallback_uri_; }
    // Lifts a ConsumerConfig.useShm = FALSE (which otherwise holds until a ConsumerConfig says TRUE, e.g. when the
    // supervisor that said it is gone): the next announce maps again.
    void allow_shm() noexcept;
    // The producer's metadata (name, attributes by meta_version, blobs) received on the metadata stream;
    // FrameView::meta_version() says which attribute set a frame uses.
    const MetadataReceiver& metadata() const noexcept { return metadata_; }
    MetadataReceiver& metadata() noexcept { return metadata_; }

private:
    struct MappedPool {
        shm::MappedRegion region;
        shm::PayloadPoolView view;
    };

    Consumer(transport::TransportHub& hub, ConsumerConfig config, shm::AllowedDirs allowed);
    Status open(int64_t now_ns);
    void on_announce(std::span<const uint8_t> message, const transport::MessageInfo& info, int64_t now_ns);
    void unmap(const char* why);
    void abandon_epoch(const Error& why);
    void check_liveness(int64_t now_ns);
    void send_hello();
    void send_qos();
    // A FrameDescriptor taken from the transport and decoded, waiting for its frame to be read (see poll_frames).
    struct StagedDescriptor {
        uint64_t epoch = 0;
        uint64_t seq = 0;
        uint64_t trace_id = 0;
        std::optional<uint64_t> publish_ts;
    };
    static constexpr int kStageCapacity = 256;
    void stage_descriptor(std::span<const uint8_t> message) noexcept;
    void on_descriptor(const StagedDescriptor& d, FrameHandler& handler);
    void on_progress(std::span<const uint8_t> message, ProgressHandler& handler);
    void on_control(std::span<const uint8_t> message, const transport::MessageInfo& info);
    void on_consumer_config(const wire::control::ConsumerConfig::Decoder& d);
    Status resubscribe(std::unique_ptr<transport::Subscription>& sub, const std::string& channel, int32_t stream);
    void enter_fallback_or_unmap(const std::string& why);
    bool local_gate_rejects(int64_t ts_ns) noexcept;
    const shm::PayloadPoolView* pool_view(uint16_t pool_id) const noexcept;

    transport::TransportHub& hub_;
    ConsumerConfig config_;
    shm::AllowedDirs allowed_;
    std::unique_ptr<transport::Subscription> announce_sub_;
    std::unique_ptr<transport::Subscription> descriptor_sub_;
    std::unique_ptr<transport::Subscription> control_sub_;
    std::unique_ptr<transport::Subscription> metadata_sub_;
    std::unique_ptr<transport::Subscription> progress_sub_;  // shared or per-consumer control; with supports_progress
    MetadataReceiver metadata_;
    std::unique_ptr<transport::Publication> control_pub_;
    std::unique_ptr<transport::Publication> qos_pub_;

    MappingState state_ = MappingState::unmapped;
    uint64_t epoch_ = 0;
    uint64_t highest_epoch_ = 0;  // W-10.1.1-7
    int64_t highest_epoch_seen_ns_ = 0;  // when an announce of highest_epoch_ was last accepted
    // An epoch whose mapped regions showed a second writer (pid, magic or epoch changed in place): never mapped
    // again; the consumer waits for a new epoch (W-15.14-2, A-14).
    std::optional<uint64_t> abandoned_epoch_;
    std::optional<shm::MappedRegion> ring_region_;
    shm::HeaderRingView ring_;
    std::vector<MappedPool> pools_;
    std::vector<shm::PoolInfo> pool_infos_;
    shm::Superblock ring_at_map_;
    bool have_last_seq_ = false;
    uint64_t resync_to_ = 0;  // descriptors below this seq are known overwritten (W-15.4-4)
    int64_t next_hello_ns_ = 0;
    int64_t next_qos_ns_ = 0;
    int64_t next_liveness_ns_ = 0;
    ConsumerStats stats_;
    std::string last_error_;
    StreamAssignment streams_;
    std::string last_response_;
    std::vector<uint8_t> hello_buf_;  // sized in open(): periodic Hellos allocate nothing
    std::string fallback_uri_;
    bool id_self_assigned_ = false;  // ConsumerConfig::consumer_id was 0: a collision picks a new random id
    bool shm_forbidden_ = false;  // ConsumerConfig.useShm = FALSE: do not map until told otherwise
    bool forced_rate_limited_ = false;  // ConsumerConfig.mode = RATE_LIMITED
    bool skip_requested_ = false;       // lapped by the ring: skip the transport to the newest descriptor
    bool capped_stream_ = false;        // a granted descriptor stream the producer caps at our max_rate_hz
    bool descriptor_declined_ = false;  // the last ConsumerConfig declined our descriptor request
    bool control_declined_ = false;
    RateGate gate_;
    // FrameProgress of the newest frame reported (W-10.2.2-8/-12), and a frame whose progress broke the rules.
    uint64_t progress_seq_ = 0;
    uint64_t progress_filled_ = 0;
    uint8_t progress_state_ = 0;
    bool have_progress_ = false;
    std::optional<uint64_t> poisoned_seq_;
    shm::ReadTicket progress_ticket_;
    shm::SlotValidator progress_validator_;
    std::array<StagedDescriptor, kStageCapacity> staged_{};
    int staged_count_ = 0;
    // Reused for every frame: the seqlock ticket and the validated header live here, not on the heap.
    shm::ReadTicket ticket_;
    shm::SlotValidator validator_;
};

}  // namespace tensorpool::client
