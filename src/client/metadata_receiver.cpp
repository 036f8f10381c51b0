#include "tensorpool/client/metadata_receiver.hpp"

#include <algorithm>
#include <type_traits>
#include <utility>

#include "tensorpool/common/crc32c.hpp"
#include "tensorpool/wire/gen/dispatch.hpp"

namespace tensorpool::client {

namespace wc = wire::control;

namespace {

bool is_metadata_template(uint16_t template_id) noexcept {
    switch (template_id) {
        case wc::DataSourceAnnounce::kTemplateId:
        case wc::DataSourceMeta::kTemplateId:
        case wc::MetaBlobAnnounce::kTemplateId:
        case wc::MetaBlobChunk::kTemplateId:
        case wc::MetaBlobComplete::kTemplateId: return true;
        default: return false;
    }
}

bool same_bytes(std::span<const uint8_t> a, std::string_view b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), reinterpret_cast<const uint8_t*>(b.data()));
}

bool same_bytes(std::span<const uint8_t> a, const std::vector<uint8_t>& b) noexcept {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

}  // namespace

const MetadataAttribute* AttributeSet::find(std::string_view key) const noexcept {
    for (const auto& a : attributes) {
        if (a.key == key) return &a;
    }
    return nullptr;
}

MetadataReceiver::MetadataReceiver(MetadataReceiverConfig config) : config_(std::move(config)) {
    config_.max_inflight_blobs = std::max<std::size_t>(config_.max_inflight_blobs, 1);
    config_.max_cached_versions = std::max<std::size_t>(config_.max_cached_versions, 1);
    sets_.reserve(config_.max_cached_versions);
    open_.reserve(config_.max_inflight_blobs);
}

bool MetadataReceiver::on_message(std::span<const uint8_t> message) {
    auto h = wire::MessageHeader::read(message.data(), message.size());
    if (!h || h->schemaId != wc::DataSourceAnnounce::kSchemaId || !is_metadata_template(h->templateId)) {
        ++stats_.messages_ignored;
        return false;
    }
    bool handled = false;
    const Status s = wire::dispatch(message.data(), message.size(), [&](const auto& d) {
        using D = std::decay_t<decltype(d)>;
        constexpr bool kOurs = std::is_same_v<D, wc::DataSourceAnnounce::Decoder> ||
                               std::is_same_v<D, wc::DataSourceMeta::Decoder> ||
                               std::is_same_v<D, wc::MetaBlobAnnounce::Decoder> ||
                               std::is_same_v<D, wc::MetaBlobChunk::Decoder> ||
                               std::is_same_v<D, wc::MetaBlobComplete::Decoder>;
        if constexpr (kOurs) {
            if (d.streamId() != config_.stream_id) {
                ++stats_.messages_other_stream;
                return;
            }
            handled = true;
            if constexpr (std::is_same_v<D, wc::DataSourceAnnounce::Decoder>) on_announce(d);
            if constexpr (std::is_same_v<D, wc::DataSourceMeta::Decoder>) on_meta(d);
            if constexpr (std::is_same_v<D, wc::MetaBlobAnnounce::Decoder>) on_blob_announce(d);
            if constexpr (std::is_same_v<D, wc::MetaBlobChunk::Decoder>) on_chunk(d);
            if constexpr (std::is_same_v<D, wc::MetaBlobComplete::Decoder>) on_complete(d);
        }
    });
    if (!s) ++stats_.messages_malformed;
    return handled;
}

// ---- DataSourceAnnounce / DataSourceMeta ------------------------------------------------------------------

template <class D>
void MetadataReceiver::on_announce(const D& d) {
    ++stats_.announces;
    if (source_ && source_->epoch != d.epoch()) {
        // A restarted producer counts meta_version afresh: what we hold by version no longer means anything.
        ++stats_.epoch_changes;
        sets_.clear();
        clear_blobs();
    }
    if (!source_) source_.emplace();
    source_->producer_id = d.producerId();
    source_->epoch = d.epoch();
    source_->meta_version = d.metaVersion();
    source_->name.assign(d.name());
    source_->summary.assign(d.summary());
}

template <class D>
void MetadataReceiver::on_meta(const D& d) {
    ++stats_.metas;
    const uint32_t version = d.metaVersion();
    const auto range = d.attributes();
    auto it = std::find_if(sets_.begin(), sets_.end(), [&](const CachedSet& c) { return c.set.meta_version == version; });
    if (it != sets_.end() && it->set.attributes.size() == range.size()) {
        // The periodic repeat of a version we hold (W-10.3.2-1): compare in place, allocate nothing.
        bool same = true;
        std::size_t i = 0;
        for (const auto& e : range) {
            const auto& a = it->set.attributes[i++];
            if (!same_bytes(e.keyBytes(), a.key) || !same_bytes(e.formatBytes(), a.format) ||
                !same_bytes(e.valueBytes(), a.value)) {
                same = false;
                break;
            }
        }
        if (same) {
            it->set.timestamp_ns = d.timestampNs();
            it->order = ++order_;
            return;
        }
    }
    AttributeSet set;
    set.meta_version = version;
    set.timestamp_ns = d.timestampNs();
    set.attributes.reserve(range.size());
    for (const auto& e : range) {
        const auto v = e.valueBytes();
        set.attributes.push_back(MetadataAttribute{std::string(e.key()), std::string(e.format()), {v.begin(), v.end()}});
    }
    ++stats_.meta_versions_cached;
    if (it == sets_.end()) {
        if (sets_.size() >= config_.max_cached_versions) {
            it = std::min_element(sets_.begin(), sets_.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
            ++stats_.meta_versions_evicted;
        } else {
            it = sets_.emplace(sets_.end());
        }
    }
    it->set = std::move(set);
    it->order = ++order_;
}

const AttributeSet* MetadataReceiver::attributes_for(uint32_t meta_version) const noexcept {
    for (const auto& c : sets_) {
        if (c.set.meta_version == meta_version) return &c.set;
    }
    return nullptr;
}

const AttributeSet* MetadataReceiver::latest_attributes() const noexcept {
    const CachedSet* best = nullptr;
    for (const auto& c : sets_) {
        if (best == nullptr || c.order > best->order) best = &c;
    }
    return best != nullptr ? &best->set : nullptr;
}

// ---- Blobs ------------------------------------------------------------------------------------------------

MetadataReceiver::OpenBlob* MetadataReceiver::find_open(uint32_t meta_version) noexcept {
    for (auto& b : open_) {
        if (b.meta_version == meta_version) return &b;
    }
    return nullptr;
}

void MetadataReceiver::close_open(std::size_t index) {
    held_bytes_ -= static_cast<std::size_t>(open_[index].total);
    open_.erase(open_.begin() + static_cast<std::ptrdiff_t>(index));
}

void MetadataReceiver::discard(std::size_t index, uint64_t& counter) {
    ++counter;
    close_open(index);
}

bool MetadataReceiver::make_room(uint64_t bytes) {
    if (bytes > config_.max_blob_bytes) return false;
    while (held_bytes_ + bytes > config_.max_blob_bytes) {
        // Oldest retained blob first: a finished blob of long ago is worth less than one arriving now.
        if (!retained_.empty()) {
            auto it = std::min_element(retained_.begin(), retained_.end(),
                                       [](const auto& a, const auto& b) { return a.order < b.order; });
            held_bytes_ -= it->blob.bytes.size();
            retained_.erase(it);
            ++stats_.blobs_evicted;
            continue;
        }
        if (open_.empty()) break;  // cannot happen: held_bytes_ counts only open and retained blobs
        auto it = std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
        discard(static_cast<std::size_t>(it - open_.begin()), stats_.blobs_discarded_superseded);
    }
    return held_bytes_ + bytes <= config_.max_blob_bytes;
}

void MetadataReceiver::clear_blobs() {
    stats_.blobs_discarded_superseded += open_.size();
    open_.clear();
    retained_.clear();
    held_bytes_ = 0;
}

template <class D>
void MetadataReceiver::on_blob_announce(const D& d) {
    const uint32_t version = d.metaVersion();
    if (OpenBlob* old = find_open(version)) {
        // Announced again (the producer restarted the blob, or sends a new one): what we have is incomplete.
        discard(static_cast<std::size_t>(old - open_.data()), stats_.blobs_discarded_superseded);
    }
    const uint64_t total = d.totalLen();
    if (total > config_.max_blob_bytes) {
        ++stats_.blobs_refused_too_large;
        return;
    }
    if (open_.size() >= config_.max_inflight_blobs) {
        auto it = std::min_element(open_.begin(), open_.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
        discard(static_cast<std::size_t>(it - open_.begin()), stats_.blobs_discarded_superseded);
    }
    if (!make_room(total)) {  // cannot fail once total <= max_blob_bytes
        ++stats_.blobs_refused_too_large;
        return;
    }
    OpenBlob b;
    b.meta_version = version;
    b.blob_type = d.blobType();
    b.total = total;
    b.checksum = d.checksum();
    b.order = ++order_;
    open_.push_back(std::move(b));
    held_bytes_ += static_cast<std::size_t>(total);
    ++stats_.blobs_started;
}

template <class D>
void MetadataReceiver::on_chunk(const D& d) {
    OpenBlob* b = find_open(d.metaVersion());
    if (b == nullptr) {
        ++stats_.chunks_orphaned;
        return;
    }
    const std::size_t index = static_cast<std::size_t>(b - open_.data());
    const std::span<const uint8_t> data = d.bytesBytes();
    const uint64_t offset = d.chunkOffset();
    if (data.empty()) {
        ++stats_.chunks_empty;
        return;
    }
    // W-10.3.3-1/-2, W-15.9-3: each chunk starts exactly where the previous one ended.
    if (offset < b->received) {
        discard(index, b->any_chunk && offset == b->last_offset ? stats_.blobs_discarded_duplicate
                                                                : stats_.blobs_discarded_overlap);
        return;
    }
    if (offset > b->total || data.size() > b->total - offset) {
        discard(index, stats_.blobs_discarded_size);
        return;
    }
    if (offset > b->received) {
        discard(index, stats_.blobs_discarded_gap);
        return;
    }
    if (b->bytes.capacity() == 0) b->bytes.reserve(static_cast<std::size_t>(b->total));
    b->bytes.insert(b->bytes.end(), data.begin(), data.end());
    b->crc = crc32c(std::as_bytes(data), b->crc);
    b->received += data.size();
    b->last_offset = offset;
    b->any_chunk = true;
    ++stats_.chunks;
}

template <class D>
void MetadataReceiver::on_complete(const D& d) {
    OpenBlob* b = find_open(d.metaVersion());
    if (b == nullptr) {
        ++stats_.completes_orphaned;
        return;
    }
    const std::size_t index = static_cast<std::size_t>(b - open_.data());
    if (b->received != b->total) {
        discard(index, stats_.blobs_discarded_incomplete);
        return;
    }
    // 0 means no checksum; otherwise Announce and Complete agree and the value is the CRC32C of the
    // whole blob, zero-extended (any high bit set is a mismatch).
    if (d.checksum() != b->checksum) {
        discard(index, stats_.blobs_discarded_checksum_mismatch);
        return;
    }
    if (b->checksum != 0 && b->checksum != static_cast<uint64_t>(b->crc)) {
        discard(index, stats_.blobs_discarded_crc);
        return;
    }
    CompletedBlob done;
    done.blob_type = b->blob_type;
    done.meta_version = b->meta_version;
    done.checksum = b->checksum;
    done.bytes = std::move(b->bytes);
    close_open(index);
    ++stats_.blobs_completed;
    if (blob_handler_) blob_handler_(done);
    if (!config_.retain_blobs) return;
    auto it = std::find_if(retained_.begin(), retained_.end(),
                           [&](const Retained& r) { return r.blob.blob_type == done.blob_type; });
    if (it != retained_.end()) {
        held_bytes_ -= it->blob.bytes.size();
        retained_.erase(it);
    }
    // Fits: its bytes were reserved at Announce and released just above; make_room keeps the invariant explicit.
    if (!make_room(done.bytes.size())) return;
    held_bytes_ += done.bytes.size();
    retained_.push_back(Retained{std::move(done), ++order_});
}

const CompletedBlob* MetadataReceiver::latest_blob(uint32_t blob_type) const noexcept {
    for (const auto& r : retained_) {
        if (r.blob.blob_type == blob_type) return &r.blob;
    }
    return nullptr;
}

void MetadataReceiver::reset() {
    source_.reset();
    sets_.clear();
    open_.clear();
    retained_.clear();
    held_bytes_ = 0;
}

}  // namespace tensorpool::client
