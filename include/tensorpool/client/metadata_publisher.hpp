// The producer's metadata half (WIRE_SPEC §4.8-§4.10, W-10.3.*, W-15.9-*, A-22): DataSourceAnnounce,
// DataSourceMeta and chunked meta blobs on the metadata stream.
//
// An agent part: the producer owns one and calls do_work(now) from its own do_work. Setters only record what
// changed; do_work sends. Nothing here blocks: a message the transport refuses is retried on a later do_work.
//
//   * DataSourceAnnounce (name, summary, meta_version, epoch) goes out every `announce_period_ns` and on the
//     first do_work after any metadata change (W-10.3.1-1, W-15.11-2).
//   * DataSourceMeta (the attribute set of the current meta_version) goes out on change and every
//     `meta_period_ns` (W-10.3.2-1).
//   * Any change of name, summary or attributes bumps meta_version (W-10.3.1-1, W-10.3.2-3); setting the same
//     values again is not a change. Stamp frames with meta_version() (W-10.3.2-2).
//   * publish_blob() queues a blob under the current meta_version; do_work sends MetaBlobAnnounce(totalLen,
//     checksum = CRC32C of the blob, A-22), MetaBlobChunk x ceil(len / chunk_bytes) with offsets 0, c, 2c, ...
//     (strictly increasing, non-overlapping, covering [0, totalLen): W-10.3.3-1, W-15.9-1, W-15.9-3) and
//     MetaBlobComplete(same checksum). Blobs go out one after another, never interleaved, at most
//     `max_messages_per_work` blob messages per do_work.
//
// Transport refusals (never a blocking retry loop):
//   * back_pressured / failed: nothing was published, so the same message is offered again on the next
//     do_work; the receiver sees an unbroken sequence.
//   * not_connected: nobody is listening. A blob not yet started waits; a blob part-way through is restarted
//     from its MetaBlobAnnounce once a subscriber is attached (a subscriber that joined later missed the
//     Announce and would discard the rest anyway). Announce and Meta stay due and go out as soon as someone
//     listens.
//   * closed / max_position_exceeded / message_too_large: the blob cannot be sent on this publication; it is
//     dropped and counted (blobs_dropped).
//
// Memory: every encoding buffer is sized when the values are set (the Announce and Meta buffers) or at
// creation (chunk, MetaBlobAnnounce and MetaBlobComplete buffers); do_work allocates nothing. publish_blob()
// copies the blob once into its queue entry; queued bytes are capped by `max_queued_blob_bytes`.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/common/result.hpp"
#include "tensorpool/transport/transport.hpp"

namespace tensorpool::client {

// One DataSourceMeta attribute (W-10.3.2-*): key and format are US-ASCII, value is raw bytes in that format.
struct MetadataAttribute {
    std::string key;     // e.g. "camera_serial", "intrinsics"
    std::string format;  // e.g. "text/plain", "application/json", "sbe:<schemaId>.<templateId>"
    std::vector<uint8_t> value;

    bool operator==(const MetadataAttribute&) const = default;
};

struct MetadataPublisherConfig {
    uint32_t stream_id = 10000;
    uint32_t producer_id = 1;
    uint64_t epoch = 0;
    uint32_t initial_meta_version = 0;                // the version before any change; frames start with it
    int64_t announce_period_ns = 1'000'000'000;       // DataSourceAnnounce cadence (W-15.11-2)
    int64_t meta_period_ns = 1'000'000'000;           // DataSourceMeta re-send cadence (W-10.3.2-1)
    std::size_t chunk_bytes = 64 * 1024;              // CHUNK_MAX (W-15.9-1); lowered to fit the publication
    std::size_t max_blob_bytes = std::size_t{64} << 20;         // largest blob publish_blob() accepts
    std::size_t max_queued_blob_bytes = std::size_t{64} << 20;  // all queued blobs together
    int max_messages_per_work = 16;                   // blob messages (Announce/Chunk/Complete) per do_work
};

struct MetadataPublisherStats {
    uint64_t announces_sent = 0;      // DataSourceAnnounce
    uint64_t metas_sent = 0;          // DataSourceMeta
    uint64_t blob_announces_sent = 0;
    uint64_t chunks_sent = 0;
    uint64_t blobs_completed = 0;     // MetaBlobComplete sent
    uint64_t blobs_restarted = 0;     // part-sent blob started over after not_connected
    uint64_t blobs_dropped = 0;       // the publication cannot take it (closed, too large, ...)
    uint64_t offers_refused = 0;      // any refused offer (each is retried or counted above)
    uint64_t version_bumps = 0;
};

class MetadataPublisher {
public:
    // `publication` is the metadata stream; it must outlive the publisher. Fails when the publication cannot
    // carry even a small chunk or the config is unusable.
    static Result<std::unique_ptr<MetadataPublisher>> create(transport::Publication& publication,
                                                             MetadataPublisherConfig config);
    MetadataPublisher(const MetadataPublisher&) = delete;
    MetadataPublisher& operator=(const MetadataPublisher&) = delete;

    // DataSourceAnnounce var data (varAscii: US-ASCII only; empty = absent). A change bumps meta_version.
    Status set_name(std::string_view name);
    Status set_summary(std::string_view summary);
    // Replaces the attribute set (order is kept as given). Keys must be unique and non-empty; key and format
    // US-ASCII; the encoded DataSourceMeta must fit the publication. A different set bumps meta_version.
    Status set_attributes(std::vector<MetadataAttribute> attributes);
    // A new meta_version without changing name, summary or attributes (e.g. before publishing a new blob
    // that replaces one sent under the current version). Announce and Meta go out on the next do_work.
    void bump_meta_version() noexcept;

    // Queues `bytes` as one blob of `blob_type` (opaque, A-22) under the current meta_version. Errors:
    // larger than max_blob_bytes, or the queue would exceed max_queued_blob_bytes (Errc::capacity).
    Status publish_blob(uint32_t blob_type, std::span<const uint8_t> bytes);

    // Sends what is due. Returns the number of messages published.
    int do_work(int64_t now_ns) noexcept;

    uint32_t meta_version() const noexcept { return meta_version_; }
    const std::vector<MetadataAttribute>& attributes() const noexcept { return attributes_; }
    const std::string& name() const noexcept { return name_; }
    const std::string& summary() const noexcept { return summary_; }
    std::size_t chunk_bytes() const noexcept { return chunk_bytes_; }
    std::size_t queued_blobs() const noexcept { return blobs_.size(); }
    bool blob_in_progress() const noexcept { return !blobs_.empty() && blobs_.front().phase != Phase::announce; }
    const MetadataPublisherStats& stats() const noexcept { return stats_; }
    const MetadataPublisherConfig& config() const noexcept { return config_; }

private:
    enum class Phase : uint8_t { announce, chunks, complete };
    struct PendingBlob {
        uint32_t blob_type = 0;
        uint32_t meta_version = 0;
        uint64_t checksum = 0;  // CRC32C in the low 32 bits; 0 for an empty blob (CRC32C of nothing)
        std::vector<uint8_t> bytes;
        Phase phase = Phase::announce;
        std::size_t next_offset = 0;
    };
    enum class Sent : uint8_t { ok, retry, not_connected, fatal };

    MetadataPublisher(transport::Publication& publication, MetadataPublisherConfig config, std::size_t chunk_bytes);
    void changed() noexcept;
    Status resize_announce_buffer(std::size_t name_len, std::size_t summary_len);
    Sent offer(std::span<const uint8_t> message) noexcept;
    Sent send_announce() noexcept;
    Sent send_meta(int64_t now_ns) noexcept;
    Sent send_blob_message(PendingBlob& blob) noexcept;
    int pump_blobs() noexcept;

    transport::Publication& pub_;
    MetadataPublisherConfig config_;
    std::size_t chunk_bytes_;
    uint32_t meta_version_;
    std::string name_;
    std::string summary_;
    std::vector<MetadataAttribute> attributes_;

    std::vector<uint8_t> announce_buf_;  // DataSourceAnnounce, sized by set_name/set_summary
    std::vector<uint8_t> meta_buf_;      // DataSourceMeta, sized by set_attributes
    std::vector<uint8_t> chunk_buf_;     // one MetaBlobChunk of chunk_bytes_, sized at creation
    std::vector<uint8_t> small_buf_;     // MetaBlobAnnounce / MetaBlobComplete

    std::deque<PendingBlob> blobs_;  // front() is the one being sent
    std::size_t queued_bytes_ = 0;

    bool announce_due_ = true;
    bool meta_due_ = true;
    int64_t next_announce_ns_ = 0;
    int64_t next_meta_ns_ = 0;
    MetadataPublisherStats stats_;
};

}  // namespace tensorpool::client
