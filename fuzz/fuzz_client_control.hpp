// Shared by fuzz_client_control.cpp (the libFuzzer target) and seeds_client_control.cpp (the program that wrote
// its seed corpus): the fixed configuration of the producer and consumer under test, and the input format.
//
// Input: a sequence of operations, each starting with one byte `op`; `op & 7` is the kind:
//   0..4  a raw message on a shared stream (announce, descriptor, control, QoS, metadata): a u16 little-endian
//         length, then that many bytes (fewer if the input ends). Before it is offered:
//           * every occurrence of kRootPlaceholder is replaced by the run's temp dir (same length), so seeds can
//             name the producer's region files;
//           * with kPatch, a ShmPoolAnnounce gets announceTimestampNs = now - (ts % 4 s), a FrameDescriptor or
//             FrameProgress gets the producer's epoch and seq = next_seq - 32 + (seq & 63), so a mutated message
//             still lands near the frames in the ring;
//           * a '?' in a ConsumerHello's channels becomes '#' (an invalid bus name): channel parameters would let
//             the input make the producer create a 1 GiB prefaulted ipc log per granted stream.
//         With kPumpAfter, one round of do_work/poll runs right after.
//   5     pump: one byte t, the clock advances t * 20 ms, then two rounds.
//   6     frame: three bytes (mode, a, s) and, for FrameMode::odd_shape, 1 + 2 * ndims more; see FrameMode.
//   7     one round without advancing the clock.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tpfuzz {

// mkdtemp template of the run's private directory; kRootPlaceholder has the same length as any name it makes.
inline constexpr char kRootTemplate[] = "/dev/shm/tpfuzz-client-XXXXXX";
inline constexpr std::string_view kRootPlaceholder = "/dev/shm/tpfuzz-client-XXXXXX";
inline constexpr char kChannel[] = "ipc:tpfuzz";
inline constexpr uint32_t kStreamId = 7;
inline constexpr uint32_t kConsumerId = 0xC0FFEE;
inline constexpr uint64_t kEpoch = 1000;
inline constexpr uint32_t kNslots = 16;
inline constexpr uint16_t kPoolId = 1;
inline constexpr uint32_t kStride = 4096;
inline constexpr uint32_t kMaxPerConsumerStreams = 3;
inline constexpr uint32_t kConsumerMaxRateHz = 50;  // used when a ConsumerConfig forces RATE_LIMITED
// Stream ids of the shared streams, in the order of the raw-message kinds 0..4.
inline constexpr int32_t kSharedStreams[5] = {1001, 1100, 1000, 1200, 1300};

enum class Kind : uint8_t { announce = 0, descriptor = 1, control = 2, qos = 3, metadata = 4, pump = 5, frame = 6, round = 7 };
inline constexpr uint8_t kPatch = 0x08;
inline constexpr uint8_t kPumpAfter = 0x10;

// Frame op: mode & 7; length = a * 16 (a == 255: 5000, more than the pool's stride); s picks the layout.
enum class FrameMode : uint8_t {
    offer = 0,         // Producer::offer
    claim = 1,         // try_claim(shape, length): the claim stays open (STARTED goes out)
    progress = 2,      // the open claim reports a * 16 bytes written
    commit = 3,        // commits the open claim
    abort_claim = 4,   // aborts the open claim
    claim_commit = 5,  // try_claim(length) without a shape, then commit(shape)
    burst = 6,         // 1 + a % 32 offers (the ring has kNslots slots: older frames are overwritten)
    odd_shape = 7,     // offer with ndims and (dim, stride) pairs from the input, valid or not
};

inline tensorpool::transport::TransportOptions transport_options(const std::string& root) {
    tensorpool::transport::TransportOptions o;
    o.ipc_root = root + "/ipc";
    o.ipc_term_bytes = std::size_t{1} << 20;  // the minimum: every publication is a file of this size
    o.ipc_linger_ms = 0;                     // closed publications go at the next sweep
    return o;
}

inline tensorpool::client::Channels channels() {
    tensorpool::client::Channels c;
    c.channel = kChannel;
    c.announce_stream = kSharedStreams[0];
    c.descriptor_stream = kSharedStreams[1];
    c.control_stream = kSharedStreams[2];
    c.qos_stream = kSharedStreams[3];
    c.metadata_stream = kSharedStreams[4];
    return c;
}

inline tensorpool::client::ProducerConfig producer_config(const std::string& root) {
    tensorpool::client::ProducerConfig c;
    c.stream_id = kStreamId;
    c.producer_id = 3;
    c.shm_base_dir = root + "/shm";
    c.header_nslots = kNslots;
    c.pools = {{kPoolId, kStride}};
    c.channels = channels();
    c.max_per_consumer_streams = kMaxPerConsumerStreams;
    c.epoch = kEpoch;
    return c;
}

inline tensorpool::client::ConsumerConfig consumer_config(const std::string& root) {
    tensorpool::client::ConsumerConfig c;
    c.stream_id = kStreamId;
    c.consumer_id = kConsumerId;
    c.allowed_dirs = {root + "/shm"};
    c.channels = channels();
    c.max_rate_hz = kConsumerMaxRateHz;
    c.supports_progress = true;
    return c;
}

// Writes inputs in the format above (for the seed program).
class InputWriter {
public:
    InputWriter& raw(Kind kind, std::span<const uint8_t> message, uint8_t flags = 0) {
        bytes_.push_back(static_cast<uint8_t>(static_cast<uint8_t>(kind) | flags));
        bytes_.push_back(static_cast<uint8_t>(message.size() & 0xFF));
        bytes_.push_back(static_cast<uint8_t>(message.size() >> 8));
        bytes_.insert(bytes_.end(), message.begin(), message.end());
        return *this;
    }
    InputWriter& pump(uint8_t ticks = 0) {
        bytes_.push_back(static_cast<uint8_t>(Kind::pump));
        bytes_.push_back(ticks);
        return *this;
    }
    InputWriter& round() {
        bytes_.push_back(static_cast<uint8_t>(Kind::round));
        return *this;
    }
    InputWriter& frame(FrameMode mode, uint8_t a, uint8_t s, std::span<const uint8_t> odd = {}) {
        bytes_.insert(bytes_.end(), {static_cast<uint8_t>(Kind::frame), static_cast<uint8_t>(mode), a, s});
        bytes_.insert(bytes_.end(), odd.begin(), odd.end());
        return *this;
    }
    const std::vector<uint8_t>& bytes() const noexcept { return bytes_; }

private:
    std::vector<uint8_t> bytes_;
};

}  // namespace tpfuzz
