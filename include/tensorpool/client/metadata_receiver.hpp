// The consumer's metadata half (WIRE_SPEC §4.8-§4.10, W-10.3.*, W-15.9-*, A-22): reads DataSourceAnnounce,
// DataSourceMeta and MetaBlobAnnounce/Chunk/Complete of one stream.
//
// Feed it every message of the metadata stream with on_message(); anything else (other schemas, other
// templates, other stream ids) is ignored and counted. It keeps
//   * the latest DataSourceAnnounce (name, summary, producer id, epoch, meta_version);
//   * the DataSourceMeta attribute sets by meta_version, the `max_cached_versions` most recently received
//     (attributes_for(v) answers for the version a frame names, W-10.3.2-2);
//   * blobs being reassembled, one per meta_version (at most `max_inflight_blobs`), and the latest completed
//     blob of each blob_type (latest_blob(type)); set_blob_handler() is also called for every completed blob.
//
// Blob rules (W-10.3.3-1/-2, W-15.9-3, A-22). Chunks must arrive with offsets contiguous from 0, each starting
// exactly where the previous one ended. The first violation discards the blob, counted by why:
//   gap (offset beyond the end so far), duplicate (the previous chunk's offset again), overlap (any other
//   offset before the end so far), size (a chunk past totalLen), incomplete (Complete before totalLen bytes),
//   checksum_mismatch (Complete's checksum differs from Announce's), crc (non-zero checksum that is not the
//   CRC32C of the reassembled bytes, zero-extended to 64 bits). checksum 0 = no checksum: not checked.
// A chunk or Complete without a preceding Announce for its meta_version is ignored and counted (orphan).
// A new Announce for a meta_version whose blob is still open discards the open one (superseded). Empty chunks
// carry nothing and are ignored (counted). No retransmission exists in v1.2: a discarded blob stays lost.
//
// Memory bounds: an Announce whose totalLen exceeds `max_blob_bytes` is refused (blobs_refused_too_large).
// Open and retained blobs together never hold more than `max_blob_bytes` (reserved at Announce, by
// totalLen): to make room the oldest retained completed blobs are evicted first, then the oldest open ones
// (counted). A reassembly buffer is allocated at the blob's first chunk, once, at its announced size.
//
// A DataSourceAnnounce with a different epoch than the last one (a restarted producer, whose meta_version
// counting starts over) clears the attribute cache, the open blobs and the retained blobs.
//
// Not thread-safe; call it from one thread (the consumer's). Pointers and references it returns stay valid
// until the next on_message()/reset().
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/client/metadata_publisher.hpp"

namespace tensorpool::client {

struct MetadataReceiverConfig {
    uint32_t stream_id = 10000;
    std::size_t max_blob_bytes = std::size_t{64} << 20;  // cap on one blob and on all blobs held together
    std::size_t max_inflight_blobs = 4;                   // blobs being reassembled at once
    std::size_t max_cached_versions = 16;                 // attribute sets kept
    bool retain_blobs = true;                             // keep the latest completed blob of each type
};

struct DataSourceInfo {
    uint32_t producer_id = 0;
    uint64_t epoch = 0;
    uint32_t meta_version = 0;
    std::string name;
    std::string summary;
};

struct AttributeSet {
    uint32_t meta_version = 0;
    uint64_t timestamp_ns = 0;
    std::vector<MetadataAttribute> attributes;

    // The first attribute with this key, or nullptr.
    const MetadataAttribute* find(std::string_view key) const noexcept;
};

struct CompletedBlob {
    uint32_t blob_type = 0;
    uint32_t meta_version = 0;
    uint64_t checksum = 0;  // as announced; 0 = none
    std::vector<uint8_t> bytes;
};

struct MetadataReceiverStats {
    uint64_t messages_ignored = 0;       // other schemas/templates
    uint64_t messages_other_stream = 0;  // one of ours, another stream id
    uint64_t messages_malformed = 0;     // one of ours that does not decode
    uint64_t announces = 0;
    uint64_t epoch_changes = 0;
    uint64_t metas = 0;                  // DataSourceMeta received (including periodic repeats)
    uint64_t meta_versions_cached = 0;   // new or changed attribute sets stored
    uint64_t meta_versions_evicted = 0;
    uint64_t blobs_started = 0;          // Announces accepted
    uint64_t blobs_completed = 0;
    uint64_t blobs_discarded_gap = 0;
    uint64_t blobs_discarded_overlap = 0;
    uint64_t blobs_discarded_duplicate = 0;
    uint64_t blobs_discarded_size = 0;
    uint64_t blobs_discarded_incomplete = 0;
    uint64_t blobs_discarded_checksum_mismatch = 0;
    uint64_t blobs_discarded_crc = 0;
    uint64_t blobs_discarded_superseded = 0;  // re-announced, evicted for room/inflight limit, or epoch change
    uint64_t blobs_refused_too_large = 0;     // announced totalLen > max_blob_bytes
    uint64_t blobs_evicted = 0;               // retained completed blobs dropped for room
    uint64_t chunks = 0;                      // chunks appended to an open blob
    uint64_t chunks_empty = 0;
    uint64_t chunks_orphaned = 0;             // no open blob for their meta_version
    uint64_t completes_orphaned = 0;

    uint64_t blobs_discarded() const noexcept {
        return blobs_discarded_gap + blobs_discarded_overlap + blobs_discarded_duplicate + blobs_discarded_size +
               blobs_discarded_incomplete + blobs_discarded_checksum_mismatch + blobs_discarded_crc +
               blobs_discarded_superseded;
    }
};

class MetadataReceiver {
public:
    using BlobHandler = std::function<void(const CompletedBlob&)>;

    explicit MetadataReceiver(MetadataReceiverConfig config = {});

    // One framed message (8-byte SBE header + body) from the metadata stream. Returns true when it was one of
    // the five metadata templates for this stream and decoded (whatever it then did to a blob).
    bool on_message(std::span<const uint8_t> message);

    // Called with each completed blob (before it is retained), from inside on_message(): it may read the
    // receiver (source(), attributes_for(), latest_blob()) but must not call on_message() or reset(). May be empty.
    void set_blob_handler(BlobHandler handler) { blob_handler_ = std::move(handler); }

    // The latest DataSourceAnnounce, if any was received.
    const std::optional<DataSourceInfo>& source() const noexcept { return source_; }
    // The attribute set of `meta_version`, if it is cached.
    const AttributeSet* attributes_for(uint32_t meta_version) const noexcept;
    // The most recently received attribute set, if any.
    const AttributeSet* latest_attributes() const noexcept;
    // The latest completed blob of `blob_type`, if retained.
    const CompletedBlob* latest_blob(uint32_t blob_type) const noexcept;

    // Bytes held by open and retained blobs (by announced size); never above max_blob_bytes.
    std::size_t blob_bytes_held() const noexcept { return held_bytes_; }
    std::size_t open_blobs() const noexcept { return open_.size(); }

    // Forgets everything received (counters stay).
    void reset();

    const MetadataReceiverStats& stats() const noexcept { return stats_; }
    const MetadataReceiverConfig& config() const noexcept { return config_; }

private:
    struct OpenBlob {
        uint32_t meta_version = 0;
        uint32_t blob_type = 0;
        uint64_t total = 0;
        uint64_t checksum = 0;
        uint64_t received = 0;     // bytes so far == the offset the next chunk must have
        uint64_t last_offset = 0;  // offset of the previous chunk (valid when any chunk arrived)
        bool any_chunk = false;
        uint32_t crc = 0;          // CRC32C of the bytes so far
        uint64_t order = 0;        // announce order, for eviction
        std::vector<uint8_t> bytes;
    };
    struct Retained {
        CompletedBlob blob;
        uint64_t order = 0;
    };
    struct CachedSet {
        AttributeSet set;
        uint64_t order = 0;
    };

    template <class D> void on_announce(const D& d);
    template <class D> void on_meta(const D& d);
    template <class D> void on_blob_announce(const D& d);
    template <class D> void on_chunk(const D& d);
    template <class D> void on_complete(const D& d);

    OpenBlob* find_open(uint32_t meta_version) noexcept;
    void close_open(std::size_t index);  // erases without counting
    void discard(std::size_t index, uint64_t& counter);
    bool make_room(uint64_t bytes);
    void clear_blobs();

    MetadataReceiverConfig config_;
    BlobHandler blob_handler_;
    std::optional<DataSourceInfo> source_;
    std::vector<CachedSet> sets_;  // at most max_cached_versions; the highest order is the latest received
    std::vector<OpenBlob> open_;
    std::vector<Retained> retained_;  // one per blob_type
    std::size_t held_bytes_ = 0;
    uint64_t order_ = 0;
    MetadataReceiverStats stats_;
};

}  // namespace tensorpool::client
