// The producer's view of its consumers (WIRE_SPEC §5, §10.1.2, §10.1.3, §10.2.2, §6.5): who is alive (ConsumerHello
// or QosConsumer within the stale time, W-5-4), which per-consumer descriptor and control streams were granted
// (validated, W-5-9; declined with an empty channel and stream id 0, W-10.1.3-5; closed when the consumer goes
// stale, W-5-3, W-10.1.3-7), each granted descriptor stream's max_rate_hz cap (W-5-5), and the FrameProgress
// policy merged from the consumers' hints (W-10.1.2-8, W-10.2.2-14/-15).
//
// Replies (ConsumerConfig, and ControlResponse for a refused request, §15.17) go out on the shared control stream.
// Only the slow path (Hello, QoS, expiry) may allocate; fan-out of descriptors and progress does not.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/client/channels.hpp"
#include "tensorpool/client/rate_gate.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace tensorpool::client {

struct ConsumerRegistryConfig {
    uint32_t stream_id = 0;
    Channels shared;                           // a per-consumer stream may not reuse one of these stream ids
    // Channels a per-consumer stream may use, besides the shared channel itself (exact strings). A channel string
    // carries transport parameters (term length, prefault, endpoints), so taking any string a consumer sends would
    // let it make the producer allocate or touch whatever it names; anything else is declined with REJECTED.
    std::vector<std::string> allowed_channels;
    int64_t stale_ns = 5'000'000'000;          // no Hello/QoS for this long: gone (W-5-4, A-26: 5x a 1 s interval)
    bool allow_per_consumer_streams = true;    // false: every request is declined with UNSUPPORTED
    uint32_t max_per_consumer_streams = 64;    // over this, requests are declined with REJECTED
    int64_t progress_min_interval_ns = 250'000;  // producer floors for FrameProgress (W-10.2.2-15)
    uint32_t progress_min_bytes = 64 * 1024;
    std::size_t max_consumers = 4096;          // beyond this, new consumer ids are not tracked
    // A consumer repeating the same request (periodic Hellos) gets the same answer again only this often: a reply on
    // every Hello would undo, within one Hello period, what a supervisor's ConsumerConfig said (useShm, fallback,
    // mode), and count one decline per Hello.
    int64_t reply_refresh_ns = 5'000'000'000;
};

// How FrameProgress is sent right now (recomputed whenever the consumer set changes).
struct ProgressPolicy {
    bool enabled = false;        // some live consumer said supports_progress (W-10.2.2-14)
    bool on_shared = false;      // some of them has no per-consumer control stream: send on the shared one too
    int64_t interval_ns = 250'000;
    uint64_t bytes_delta = 64 * 1024;
    uint32_t major_delta_units = 0;  // 0: no row/column trigger
};

struct ConsumerRegistryStats {
    uint64_t consumers = 0;            // live now
    uint64_t streams_granted = 0;      // per-consumer streams open now
    uint64_t grants = 0;               // streams ever granted
    uint64_t declines = 0;             // requests (halves) declined
    uint64_t streams_closed = 0;       // closed because the consumer went stale or withdrew its request
    uint64_t descriptors_rate_capped = 0;  // not sent on a per-consumer stream because of its max_rate_hz
};

class ConsumerRegistry {
public:
    ConsumerRegistry(transport::TransportHub& hub, ConsumerRegistryConfig config);

    // A ConsumerHello for this stream: tracks the consumer, takes its progress hints, grants or declines what it
    // asks for and replies on `control` (ConsumerConfig; plus ControlResponse for each declined half).
    void on_hello(const wire::control::ConsumerHello::Decoder& hello, int64_t now_ns, transport::Publication& control);
    // A QosConsumer for this stream: keeps the consumer alive (W-5-4).
    void on_qos(uint32_t consumer_id, int64_t now_ns);
    // Forgets consumers not heard from for the stale time and closes their streams. Returns how many went.
    int expire(int64_t now_ns);

    // Sends a FrameDescriptor on every granted per-consumer descriptor stream whose rate cap lets `ts_ns` through.
    void offer_descriptor(std::span<const uint8_t> message, int64_t ts_ns) noexcept;
    // Sends a FrameProgress on the per-consumer control stream of every progress consumer that has one.
    void offer_progress(std::span<const uint8_t> message) noexcept;

    bool has_rate_capped_streams() const noexcept { return rate_capped_streams_ != 0; }
    bool has_descriptor_streams() const noexcept { return descriptor_streams_ != 0; }
    const ProgressPolicy& progress() const noexcept { return progress_; }
    const ConsumerRegistryStats& stats() const noexcept { return stats_; }

private:
    struct Granted {
        std::string channel;
        uint32_t stream_id = 0;
        std::unique_ptr<transport::Publication> publication;
        bool open() const noexcept { return publication != nullptr; }
    };
    struct Tracked {
        uint32_t consumer_id = 0;
        int64_t last_seen_ns = 0;
        bool supports_progress = false;
        uint32_t progress_interval_us = UINT32_MAX;  // UINT32_MAX: no hint
        uint32_t progress_bytes_delta = UINT32_MAX;
        uint32_t progress_major_delta_units = UINT32_MAX;
        Granted descriptor;
        Granted control;
        RateGate descriptor_gate;
        // What the last ConsumerConfig told it, and when: a repeat is answered only after reply_refresh_ns.
        bool replied = false;
        uint64_t reply_key = 0;
        int64_t reply_ns = 0;
    };
    struct Answer {  // one half of a request, as the ConsumerConfig will report it
        std::string_view channel;
        uint32_t stream_id = 0;
    };
    struct Verdict {  // one half decided: the answer, and why it was declined (code OK: not declined)
        Answer answer;
        wire::control::ResponseCode code = wire::control::ResponseCode::OK;
        char why[400] = {};
    };

    Tracked* find(uint32_t consumer_id) noexcept;
    Tracked* track(uint32_t consumer_id, int64_t now_ns);
    void decide(Tracked& c, Granted Tracked::*which, const char* what, std::string_view channel, uint32_t stream_id,
                Verdict& out);
    void close(Granted& g);
    void send_decline(uint32_t consumer_id, const Verdict& v, transport::Publication& control);
    void recount();
    std::size_t open_streams() const noexcept;  // per-consumer streams open now (descriptor and control)

    transport::TransportHub& hub_;
    ConsumerRegistryConfig config_;
    std::vector<Tracked> consumers_;
    ProgressPolicy progress_;
    std::size_t descriptor_streams_ = 0;
    std::size_t rate_capped_streams_ = 0;
    std::vector<uint8_t> reply_buf_;  // sized once: periodic Hellos of granted consumers allocate nothing
    ConsumerRegistryStats stats_;
};

}  // namespace tensorpool::client
