#include "tensorpool/client/metadata_publisher.hpp"

#include <algorithm>
#include <limits>
#include <utility>

#include "tensorpool/common/crc32c.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace tensorpool::client {

namespace wc = wire::control;

namespace {

constexpr std::size_t kHeader = wire::MessageHeader::kSize;
constexpr std::size_t kVarLen = 4;    // varData/varAscii length prefix
constexpr std::size_t kGroupDim = 4;  // groupSizeEncoding: blockLength u16 + numInGroup u16
constexpr std::size_t kChunkOverhead = kHeader + wc::MetaBlobChunk::kBlockLength + kVarLen;
constexpr std::size_t kMaxVarLength = std::size_t{1} << 30;
constexpr std::size_t kMaxGroupCount = std::numeric_limits<uint16_t>::max();

bool is_ascii(std::string_view s) noexcept {
    return std::all_of(s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

std::size_t announce_bytes(std::size_t name_len, std::size_t summary_len) noexcept {
    return kHeader + wc::DataSourceAnnounce::kBlockLength + kVarLen + name_len + kVarLen + summary_len;
}

std::size_t meta_bytes(const std::vector<MetadataAttribute>& attributes) noexcept {
    std::size_t n = kHeader + wc::DataSourceMeta::kBlockLength + kGroupDim;
    for (const auto& a : attributes) n += 3 * kVarLen + a.key.size() + a.format.size() + a.value.size();
    return n;
}

}  // namespace

Result<std::unique_ptr<MetadataPublisher>> MetadataPublisher::create(transport::Publication& publication,
                                                                     MetadataPublisherConfig config) {
    if (config.announce_period_ns <= 0 || config.meta_period_ns <= 0) {
        return Error::format(Errc::invalid_argument,
                             "metadata publisher: announce_period_ns %lld and meta_period_ns %lld must be > 0",
                             static_cast<long long>(config.announce_period_ns),
                             static_cast<long long>(config.meta_period_ns));
    }
    if (config.max_messages_per_work <= 0) {
        return Error::format(Errc::invalid_argument, "metadata publisher: max_messages_per_work %d must be > 0",
                             config.max_messages_per_work);
    }
    if (config.initial_meta_version == wc::DataSourceAnnounce::Decoder::metaVersionNullValue()) {
        return Error(Errc::invalid_argument,
                     "metadata publisher: initial_meta_version 4294967295 is the schema's null value");
    }
    if (config.chunk_bytes == 0) return Error(Errc::invalid_argument, "metadata publisher: chunk_bytes must be > 0");
    const std::size_t max_message = publication.max_message_length();
    if (max_message <= kChunkOverhead) {
        return Error::format(Errc::capacity,
                             "metadata publisher: publication on %s stream %d carries at most %zu bytes, too few for "
                             "a MetaBlobChunk (%zu bytes of framing)",
                             publication.channel().c_str(), publication.stream_id(), max_message, kChunkOverhead);
    }
    // W-15.9-1: CHUNK_MAX is 64 KiB unless configured otherwise, and never more than the transport carries.
    const std::size_t chunk = std::min({config.chunk_bytes, max_message - kChunkOverhead, kMaxVarLength});
    std::unique_ptr<MetadataPublisher> p(new MetadataPublisher(publication, std::move(config), chunk));
    return p;
}

MetadataPublisher::MetadataPublisher(transport::Publication& publication, MetadataPublisherConfig config,
                                     std::size_t chunk_bytes)
    : pub_(publication),
      config_(std::move(config)),
      chunk_bytes_(chunk_bytes),
      meta_version_(config_.initial_meta_version),
      announce_buf_(announce_bytes(0, 0)),
      meta_buf_(meta_bytes({})),
      chunk_buf_(kChunkOverhead + chunk_bytes),
      small_buf_(kHeader + std::max(wc::MetaBlobAnnounce::kBlockLength, wc::MetaBlobComplete::kBlockLength)) {}

void MetadataPublisher::changed() noexcept {
    // W-10.3.1-1, W-10.3.2-3: any change is a new meta_version. The u32 wraps, skipping the null value.
    ++meta_version_;
    if (meta_version_ == wc::DataSourceAnnounce::Decoder::metaVersionNullValue()) meta_version_ = 0;
    ++stats_.version_bumps;
    announce_due_ = true;
    meta_due_ = true;
}

void MetadataPublisher::bump_meta_version() noexcept { changed(); }

Status MetadataPublisher::resize_announce_buffer(std::size_t name_len, std::size_t summary_len) {
    const std::size_t need = announce_bytes(name_len, summary_len);
    if (need > pub_.max_message_length()) {
        return Error::format(Errc::capacity,
                             "metadata publisher: DataSourceAnnounce of %zu bytes exceeds the publication's %zu",
                             need, pub_.max_message_length());
    }
    if (announce_buf_.size() < need) announce_buf_.resize(need);
    return {};
}

Status MetadataPublisher::set_name(std::string_view name) {
    if (name == name_) return {};
    if (!is_ascii(name)) return Error(Errc::invalid_argument, "metadata publisher: name is not US-ASCII (varAscii)");
    if (Status s = resize_announce_buffer(name.size(), summary_.size()); !s) return s;
    name_.assign(name);
    changed();
    return {};
}

Status MetadataPublisher::set_summary(std::string_view summary) {
    if (summary == summary_) return {};
    if (!is_ascii(summary)) {
        return Error(Errc::invalid_argument, "metadata publisher: summary is not US-ASCII (varAscii)");
    }
    if (Status s = resize_announce_buffer(name_.size(), summary.size()); !s) return s;
    summary_.assign(summary);
    changed();
    return {};
}

Status MetadataPublisher::set_attributes(std::vector<MetadataAttribute> attributes) {
    if (attributes == attributes_) return {};
    if (attributes.size() > kMaxGroupCount) {
        return Error::format(Errc::invalid_argument,
                             "metadata publisher: %zu attributes; the attributes group holds at most %zu",
                             attributes.size(), kMaxGroupCount);
    }
    for (std::size_t i = 0; i < attributes.size(); ++i) {
        const auto& a = attributes[i];
        if (a.key.empty()) return Error::format(Errc::invalid_argument, "metadata publisher: attribute %zu has an empty key", i);
        if (!is_ascii(a.key) || !is_ascii(a.format)) {
            return Error::format(Errc::invalid_argument,
                                 "metadata publisher: attribute %zu (key \"%.64s\"): key and format must be US-ASCII",
                                 i, a.key.c_str());
        }
        if (a.value.size() > kMaxVarLength) {
            return Error::format(Errc::invalid_argument,
                                 "metadata publisher: attribute \"%.64s\": value of %zu bytes exceeds varData's %zu",
                                 a.key.c_str(), a.value.size(), kMaxVarLength);
        }
        for (std::size_t j = 0; j < i; ++j) {
            if (attributes[j].key == a.key) {
                return Error::format(Errc::invalid_argument, "metadata publisher: attribute key \"%.64s\" appears twice",
                                     a.key.c_str());
            }
        }
    }
    const std::size_t need = meta_bytes(attributes);
    if (need > pub_.max_message_length()) {
        return Error::format(Errc::capacity,
                             "metadata publisher: DataSourceMeta of %zu bytes exceeds the publication's %zu; send "
                             "large values as a blob",
                             need, pub_.max_message_length());
    }
    if (meta_buf_.size() < need) meta_buf_.resize(need);
    attributes_ = std::move(attributes);
    changed();
    return {};
}

Status MetadataPublisher::publish_blob(uint32_t blob_type, std::span<const uint8_t> bytes) {
    if (bytes.size() > config_.max_blob_bytes) {
        return Error::format(Errc::capacity, "metadata publisher: blob of %zu bytes exceeds max_blob_bytes %zu",
                             bytes.size(), config_.max_blob_bytes);
    }
    if (bytes.size() > config_.max_queued_blob_bytes - std::min(queued_bytes_, config_.max_queued_blob_bytes)) {
        return Error::format(Errc::capacity,
                             "metadata publisher: blob of %zu bytes does not fit the queue (%zu of %zu bytes used)",
                             bytes.size(), queued_bytes_, config_.max_queued_blob_bytes);
    }
    PendingBlob b;
    b.blob_type = blob_type;
    b.meta_version = meta_version_;
    // the CRC32C of the whole blob in the low 32 bits. (An empty blob's CRC32C is 0, i.e. "none".)
    b.checksum = crc32c(std::as_bytes(bytes));
    b.bytes.assign(bytes.begin(), bytes.end());
    queued_bytes_ += bytes.size();
    blobs_.push_back(std::move(b));
    return {};
}

MetadataPublisher::Sent MetadataPublisher::offer(std::span<const uint8_t> message) noexcept {
    const transport::OfferResult r = pub_.offer(message);
    if (r.ok()) return Sent::ok;
    ++stats_.offers_refused;
    switch (r.status()) {
        case transport::OfferStatus::not_connected: return Sent::not_connected;
        case transport::OfferStatus::back_pressured:
        case transport::OfferStatus::failed: return Sent::retry;
        default: return Sent::fatal;  // closed, max_position_exceeded, message_too_large
    }
}

MetadataPublisher::Sent MetadataPublisher::send_announce() noexcept {
    wc::DataSourceAnnounce::Encoder e;
    (void)e.wrap_and_apply_header(announce_buf_.data(), announce_buf_.size());
    e.streamId(config_.stream_id).producerId(config_.producer_id).epoch(config_.epoch).metaVersion(meta_version_);
    e.name(name_).summary(summary_);
    const auto n = e.finish();
    if (!n) return Sent::fatal;  // cannot happen: the buffer was sized for these values
    const Sent s = offer(std::span<const uint8_t>(announce_buf_.data(), *n));
    if (s == Sent::ok) ++stats_.announces_sent;
    return s;
}

MetadataPublisher::Sent MetadataPublisher::send_meta(int64_t now_ns) noexcept {
    wc::DataSourceMeta::Encoder e;
    (void)e.wrap_and_apply_header(meta_buf_.data(), meta_buf_.size());
    e.streamId(config_.stream_id).metaVersion(meta_version_).timestampNs(static_cast<uint64_t>(now_ns));
    auto g = e.attributesCount(attributes_.size());
    for (const auto& a : attributes_) {
        g.next().key(a.key).format(a.format).value(std::span<const uint8_t>(a.value));
    }
    const auto n = e.finish();
    if (!n) return Sent::fatal;  // cannot happen: set_attributes sized the buffer
    const Sent s = offer(std::span<const uint8_t>(meta_buf_.data(), *n));
    if (s == Sent::ok) ++stats_.metas_sent;
    return s;
}

MetadataPublisher::Sent MetadataPublisher::send_blob_message(PendingBlob& b) noexcept {
    Result<std::size_t> n = std::size_t{0};
    const uint8_t* buf = small_buf_.data();
    switch (b.phase) {
        case Phase::announce: {
            wc::MetaBlobAnnounce::Encoder e;
            (void)e.wrap_and_apply_header(small_buf_.data(), small_buf_.size());
            e.streamId(config_.stream_id).metaVersion(b.meta_version).blobType(b.blob_type);
            e.totalLen(b.bytes.size()).checksum(b.checksum);
            n = e.finish();
            break;
        }
        case Phase::chunks: {
            // W-10.3.3-1, W-15.9-3: offsets 0, c, 2c, ... — strictly increasing, adjacent, covering [0, total).
            const std::size_t len = std::min(chunk_bytes_, b.bytes.size() - b.next_offset);
            wc::MetaBlobChunk::Encoder e;
            (void)e.wrap_and_apply_header(chunk_buf_.data(), chunk_buf_.size());
            e.streamId(config_.stream_id).metaVersion(b.meta_version).chunkOffset(b.next_offset);
            e.bytes(std::span<const uint8_t>(b.bytes.data() + b.next_offset, len));
            n = e.finish();
            buf = chunk_buf_.data();
            break;
        }
        case Phase::complete: {
            wc::MetaBlobComplete::Encoder e;
            (void)e.wrap_and_apply_header(small_buf_.data(), small_buf_.size());
            e.streamId(config_.stream_id).metaVersion(b.meta_version).checksum(b.checksum);
            n = e.finish();
            break;
        }
    }
    if (!n) return Sent::fatal;
    const Sent s = offer(std::span<const uint8_t>(buf, *n));
    if (s != Sent::ok) return s;
    switch (b.phase) {
        case Phase::announce:
            ++stats_.blob_announces_sent;
            b.phase = b.bytes.empty() ? Phase::complete : Phase::chunks;
            b.next_offset = 0;
            break;
        case Phase::chunks:
            ++stats_.chunks_sent;
            b.next_offset += std::min(chunk_bytes_, b.bytes.size() - b.next_offset);
            if (b.next_offset == b.bytes.size()) b.phase = Phase::complete;
            break;
        case Phase::complete:
            ++stats_.blobs_completed;
            break;
    }
    return Sent::ok;
}

int MetadataPublisher::pump_blobs() noexcept {
    int sent = 0;
    while (!blobs_.empty() && sent < config_.max_messages_per_work) {
        PendingBlob& b = blobs_.front();
        const Phase phase = b.phase;
        const Sent s = send_blob_message(b);
        if (s == Sent::ok) {
            ++sent;
            if (phase == Phase::complete) {
                queued_bytes_ -= b.bytes.size();
                blobs_.pop_front();
            }
            continue;
        }
        if (s == Sent::retry) break;  // nothing was published: offer the same message next time
        if (s == Sent::not_connected) {
            // Whoever heard the Announce is gone, and a newcomer would miss it: start over when someone listens.
            if (b.phase != Phase::announce) {
                b.phase = Phase::announce;
                b.next_offset = 0;
                ++stats_.blobs_restarted;
            }
            break;
        }
        ++stats_.blobs_dropped;  // the publication can never carry it
        queued_bytes_ -= b.bytes.size();
        blobs_.pop_front();
    }
    return sent;
}

int MetadataPublisher::do_work(int64_t now_ns) noexcept {
    int work = 0;
    // A failed send stays due and is tried again on the next call (cheap when nobody is connected), so a
    // subscriber that just attached hears the source without waiting a whole period.
    if (announce_due_ || now_ns >= next_announce_ns_) {
        const Sent s = send_announce();
        if (s == Sent::ok || s == Sent::fatal) {
            announce_due_ = false;
            next_announce_ns_ = now_ns + config_.announce_period_ns;
            work += s == Sent::ok ? 1 : 0;
        } else {
            announce_due_ = true;
        }
    }
    if (meta_due_ || now_ns >= next_meta_ns_) {
        const Sent s = send_meta(now_ns);
        if (s == Sent::ok || s == Sent::fatal) {
            meta_due_ = false;
            next_meta_ns_ = now_ns + config_.meta_period_ns;
            work += s == Sent::ok ? 1 : 0;
        } else {
            meta_due_ = true;
        }
    }
    work += pump_blobs();
    return work;
}

}  // namespace tensorpool::client
