#include "tensorpool/client/consumer_registry.hpp"

#include <algorithm>
#include <cstdio>

namespace tensorpool::client {

namespace wc = wire::control;

namespace {

constexpr std::size_t kMaxChannelBytes = 1024;  // longer channel strings are declined, so replies fit reply_buf_

}  // namespace

ConsumerRegistry::ConsumerRegistry(transport::TransportHub& hub, ConsumerRegistryConfig config)
    : hub_(hub), config_(std::move(config)) {
    consumers_.reserve(64);
    // ConsumerConfig with three varAscii fields (u32 length each) of at most kMaxChannelBytes, or ControlResponse.
    reply_buf_.resize(wire::MessageHeader::kSize + wc::ConsumerConfig::kBlockLength + 3 * (4 + kMaxChannelBytes));
    progress_.interval_ns = config_.progress_min_interval_ns;
    progress_.bytes_delta = config_.progress_min_bytes;
}

ConsumerRegistry::Tracked* ConsumerRegistry::find(uint32_t consumer_id) noexcept {
    for (auto& c : consumers_) {
        if (c.consumer_id == consumer_id) return &c;
    }
    return nullptr;
}

ConsumerRegistry::Tracked* ConsumerRegistry::track(uint32_t consumer_id, int64_t now_ns) {
    if (Tracked* c = find(consumer_id)) {
        c->last_seen_ns = now_ns;
        return c;
    }
    if (consumers_.size() >= config_.max_consumers) return nullptr;
    consumers_.push_back(Tracked{});
    consumers_.back().consumer_id = consumer_id;
    consumers_.back().last_seen_ns = now_ns;
    return &consumers_.back();
}

void ConsumerRegistry::on_qos(uint32_t consumer_id, int64_t now_ns) {
    if (track(consumer_id, now_ns) != nullptr) recount();
}

void ConsumerRegistry::close(Granted& g) {
    if (!g.open()) return;
    g.publication.reset();  // W-5-3: stop publishing to it and close the publication
    g.channel.clear();
    g.stream_id = 0;
    ++stats_.streams_closed;
}

void ConsumerRegistry::send_decline(uint32_t consumer_id, const Verdict& v, transport::Publication& control) {
    // ConsumerHello carries no correlation id, so the response carries 0 and names the consumer in its
    // text; the ConsumerConfig sent with it is the normative decline.
    ++stats_.declines;
    char text[512];
    std::snprintf(text, sizeof text, "consumer %u: %s", consumer_id, v.why);
    wc::ControlResponse::Encoder e;
    if (!e.wrap_and_apply_header(reply_buf_.data(), reply_buf_.size()).ok()) return;
    e.correlationId(0).code(v.code).errorMessage(std::string_view(text));
    const auto n = e.finish();
    if (n.ok()) (void)control.offer(std::span<const uint8_t>(reply_buf_.data(), *n));
}

// One half of a per-consumer request (descriptor or control), validated as W-5-9, W-10.1.2-2..7, W-10.1.3-3..5 say.
void ConsumerRegistry::decide(Tracked& c, Granted Tracked::*which, const char* what, std::string_view channel,
                              uint32_t stream_id, Verdict& out) {
    Granted& g = c.*which;
    out = Verdict{};
    if (channel.empty() && stream_id == 0) {  // not requested (W-10.1.2-2/-5): a withdrawn request closes the grant
        close(g);
        return;
    }
    auto refuse = [&](wc::ResponseCode code) {
        close(g);
        out.code = code;  // W-10.1.3-5: the answer stays an empty channel and stream id 0
    };
    const auto shown = static_cast<int>(std::min<std::size_t>(channel.size(), 200));
    if (channel.empty() || stream_id == 0) {  // W-10.1.2-4/-7, W-10.1.3-4: half a request is malformed
        std::snprintf(out.why, sizeof out.why, "%s stream request has channel '%.*s' and stream id %u; both or neither "
                      "must be set (W-10.1.2-4)", what, shown, channel.data(), stream_id);
        return refuse(wc::ResponseCode::INVALID_PARAMS);
    }
    if (!config_.allow_per_consumer_streams) {
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: this producer grants no per-consumer "
                      "streams", what);
        return refuse(wc::ResponseCode::UNSUPPORTED);
    }
    if (stream_id > static_cast<uint32_t>(INT32_MAX)) {  // transports take signed 32-bit stream ids
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: stream id %u is above %d", what, stream_id,
                      INT32_MAX);
        return refuse(wc::ResponseCode::INVALID_PARAMS);
    }
    if (channel.size() > kMaxChannelBytes) {
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: channel of %zu bytes exceeds %zu", what,
                      channel.size(), kMaxChannelBytes);
        return refuse(wc::ResponseCode::INVALID_PARAMS);
    }
    if (channel != config_.shared.channel &&
        std::find(config_.allowed_channels.begin(), config_.allowed_channels.end(), channel) ==
            config_.allowed_channels.end()) {
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: channel '%.*s' is neither the shared "
                      "channel nor one this producer allows for per-consumer streams", what, shown, channel.data());
        return refuse(wc::ResponseCode::REJECTED);
    }
    const Channels& s = config_.shared;
    for (int32_t shared : {s.control_stream, s.announce_stream, s.descriptor_stream, s.qos_stream, s.metadata_stream}) {
        if (static_cast<int64_t>(stream_id) == shared) {
            std::snprintf(out.why, sizeof out.why, "%s stream request declined: stream id %u is one of the shared "
                          "streams", what, stream_id);
            return refuse(wc::ResponseCode::INVALID_PARAMS);
        }
    }
    if (g.open() && g.channel == channel && g.stream_id == stream_id) {  // a repeat
        out.answer = {g.channel, g.stream_id};
        return;
    }
    for (const auto& other : consumers_) {
        for (const Granted* o : {&other.descriptor, &other.control}) {
            if (o != &g && o->open() && o->stream_id == stream_id && o->channel == channel) {
                std::snprintf(out.why, sizeof out.why, "%s stream request declined: stream %u on that channel is "
                              "already granted to consumer %u", what, stream_id, other.consumer_id);
                return refuse(wc::ResponseCode::REJECTED);
            }
        }
    }
    close(g);  // a different stream than before: the old one goes
    // Counted now, not from descriptor_streams_: recount() runs only after both halves of a Hello are decided, so
    // that count misses a descriptor stream granted (or closed) for this very Hello.
    if (open_streams() >= config_.max_per_consumer_streams) {
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: %u per-consumer streams are open, the "
                      "limit", what, config_.max_per_consumer_streams);
        return refuse(wc::ResponseCode::REJECTED);
    }
    auto pub = hub_.add_publication(std::string(channel), static_cast<int32_t>(stream_id));
    if (!pub) {
        std::snprintf(out.why, sizeof out.why, "%s stream request declined: %s", what, pub.error().message());
        return refuse(wc::ResponseCode::INVALID_PARAMS);
    }
    g.channel.assign(channel);
    g.stream_id = stream_id;
    g.publication = std::move(*pub);
    ++stats_.grants;
    out.answer = {g.channel, g.stream_id};
}

void ConsumerRegistry::on_hello(const wc::ConsumerHello::Decoder& d, int64_t now_ns, transport::Publication& control) {
    Tracked* c = track(d.consumerId(), now_ns);
    if (c == nullptr) return;
    c->supports_progress = d.supportsProgress() == wc::Bool::TRUE;
    // Hints are optional; their null (0xFFFFFFFF) is kept as UINT32_MAX, "no hint", which the merge skips.
    c->progress_interval_us = d.progressIntervalUs();
    c->progress_bytes_delta = d.progressBytesDelta();
    c->progress_major_delta_units = d.progressMajorDeltaUnits();
    const bool asked = !d.descriptorChannel().empty() || d.descriptorStreamId() != 0 || !d.controlChannel().empty() ||
                       d.controlStreamId() != 0;
    Verdict desc, ctrl;
    decide(*c, &Tracked::descriptor, "descriptor", d.descriptorChannel(), d.descriptorStreamId(), desc);
    decide(*c, &Tracked::control, "control", d.controlChannel(), d.controlStreamId(), ctrl);
    // W-5-5 / A-25 / W-11-3: max_rate_hz caps a granted per-consumer descriptor stream of a RATE_LIMITED consumer only
    // (a STREAM consumer handles every descriptor, W-11-1).
    c->descriptor_gate.set_rate(c->descriptor.open() && d.mode() == wc::Mode::RATE_LIMITED ? d.maxRateHz() : 0);
    recount();
    if (!asked) {
        c->replied = false;
        return;
    }
    // Answer a new or changed request at once; the same answer again only after reply_refresh_ns (in case the last
    // reply was lost).
    const uint64_t key = (uint64_t{desc.answer.stream_id} * 0x9E3779B97F4A7C15ull) ^ (uint64_t{ctrl.answer.stream_id} << 1) ^
                         (static_cast<uint64_t>(desc.code) << 40) ^ (static_cast<uint64_t>(ctrl.code) << 48) ^
                         (static_cast<uint64_t>(d.mode()) << 56);
    if (c->replied && c->reply_key == key && now_ns - c->reply_ns < config_.reply_refresh_ns) return;
    c->replied = true;
    c->reply_key = key;
    c->reply_ns = now_ns;
    if (desc.code != wc::ResponseCode::OK) send_decline(c->consumer_id, desc, control);
    if (ctrl.code != wc::ResponseCode::OK) send_decline(c->consumer_id, ctrl, control);
    // W-5-1 / W-5-6: report what was assigned (or the decline form) in ConsumerConfig.
    wc::ConsumerConfig::Encoder e;
    if (!e.wrap_and_apply_header(reply_buf_.data(), reply_buf_.size()).ok()) return;
    e.streamId(config_.stream_id).consumerId(c->consumer_id).useShm(wc::Bool::TRUE).mode(d.mode());
    e.descriptorStreamId(desc.answer.stream_id).controlStreamId(ctrl.answer.stream_id);
    e.payloadFallbackUri(std::string_view()).descriptorChannel(desc.answer.channel).controlChannel(ctrl.answer.channel);
    const auto n = e.finish();
    if (n.ok()) (void)control.offer(std::span<const uint8_t>(reply_buf_.data(), *n));
}

int ConsumerRegistry::expire(int64_t now_ns) {
    int gone = 0;
    for (auto& c : consumers_) {
        if (now_ns - c.last_seen_ns > config_.stale_ns) {  // W-5-4, W-10.1.3-7
            close(c.descriptor);
            close(c.control);
            ++gone;
        }
    }
    if (gone != 0) {
        std::erase_if(consumers_, [&](const Tracked& c) { return now_ns - c.last_seen_ns > config_.stale_ns; });
        recount();
    }
    return gone;
}

std::size_t ConsumerRegistry::open_streams() const noexcept {
    std::size_t n = 0;
    for (const auto& c : consumers_) n += (c.descriptor.open() ? 1 : 0) + (c.control.open() ? 1 : 0);
    return n;
}

// W-10.1.2-8 / W-10.2.2-15: the smallest hints win, never below the producer's floors; no hint keeps the floors
// (whose defaults are the spec's 250 us and 64 KiB).
void ConsumerRegistry::recount() {
    ProgressPolicy p;
    p.interval_ns = config_.progress_min_interval_ns;
    p.bytes_delta = config_.progress_min_bytes;
    uint64_t interval_us = UINT32_MAX, bytes = UINT32_MAX;
    uint32_t major = UINT32_MAX;
    descriptor_streams_ = 0;
    rate_capped_streams_ = 0;
    std::size_t control = 0;
    for (const auto& c : consumers_) {
        descriptor_streams_ += c.descriptor.open() ? 1 : 0;
        rate_capped_streams_ += c.descriptor.open() && c.descriptor_gate.limited() ? 1 : 0;
        control += c.control.open() ? 1 : 0;
        if (!c.supports_progress) continue;
        p.enabled = true;
        p.on_shared = p.on_shared || !c.control.open();
        interval_us = std::min<uint64_t>(interval_us, c.progress_interval_us);
        bytes = std::min<uint64_t>(bytes, c.progress_bytes_delta);
        major = std::min(major, c.progress_major_delta_units);
    }
    if (interval_us != UINT32_MAX) p.interval_ns = std::max<int64_t>(p.interval_ns, static_cast<int64_t>(interval_us) * 1000);
    if (bytes != UINT32_MAX) p.bytes_delta = std::max<uint64_t>(p.bytes_delta, bytes);
    p.major_delta_units = major == UINT32_MAX ? 0 : major;
    progress_ = p;
    stats_.consumers = consumers_.size();
    stats_.streams_granted = descriptor_streams_ + control;
}

void ConsumerRegistry::offer_descriptor(std::span<const uint8_t> message, int64_t ts_ns) noexcept {
    for (auto& c : consumers_) {
        if (!c.descriptor.open()) continue;
        if (!c.descriptor_gate.allow(ts_ns)) {
            ++stats_.descriptors_rate_capped;
            continue;
        }
        (void)c.descriptor.publication->offer(message);
    }
}

void ConsumerRegistry::offer_progress(std::span<const uint8_t> message) noexcept {
    for (auto& c : consumers_) {
        if (c.supports_progress && c.control.open()) (void)c.control.publication->offer(message);  // W-5-8: progress only
    }
}

}  // namespace tensorpool::client
