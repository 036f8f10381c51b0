// The transport layer: an Aeron-shaped interface for moving opaque messages on (channel URI, stream id).
//
// Every control, descriptor, QoS and metadata message travels through it. Two backends implement it:
//   * `aeron` — real Aeron publications/subscriptions (`aeron:ipc`, `aeron:udp?...`), built when CMake finds an
//     installed Aeron; this is what interoperates with the C and Julia implementations;
//   * `ipc`   — our embedded single-host bus (`ipc:<bus>`), always built, for machines without Aeron and tests.
// A channel names its backend by its scheme; see TransportHub. Semantics common to both (DESIGN.md):
// many publishers and subscribers per (channel, stream); a subscriber gets what was published after it joined,
// in each publisher's order; publishers never wait for slow or dead subscribers (the ipc bus overwrites and
// the lapped subscriber counts the loss; Aeron back-pressures and offer() says so); messages arrive whole.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tensorpool/common/function_ref.hpp"
#include "tensorpool/common/result.hpp"

namespace tensorpool::transport {

// Why offer()/try_claim() did not publish. Values match Aeron's where Aeron has the same outcome.
enum class OfferStatus : int64_t {
    not_connected = -1,          // no subscriber is attached; nothing was sent
    back_pressured = -2,         // a subscriber's flow-control window is full (Aeron only); retry later
    closed = -4,                 // the publication was closed
    max_position_exceeded = -5,  // the stream reached its maximum position (Aeron)
    message_too_large = -6,      // longer than max_message_length(); never sent
    failed = -7,                 // any other failure
};
// Aeron's ADMIN_ACTION (-3) never surfaces: backends retry it, it is not a lost message.

const char* offer_status_name(OfferStatus s) noexcept;

// A non-negative stream position when the message was published, else an OfferStatus.
class OfferResult {
public:
    constexpr explicit OfferResult(int64_t v) noexcept : v_(v) {}
    constexpr OfferResult(OfferStatus s) noexcept : v_(static_cast<int64_t>(s)) {}  // NOLINT: implicit on purpose
    constexpr bool ok() const noexcept { return v_ >= 0; }
    constexpr int64_t position() const noexcept { return v_; }
    constexpr OfferStatus status() const noexcept { return static_cast<OfferStatus>(v_); }
    constexpr int64_t raw() const noexcept { return v_; }

private:
    int64_t v_;
};

// Space reserved in a publication by try_claim(): write the message into span(), then commit() to publish it
// or abort() to drop it. Destroying an uncommitted claim aborts it, so a claim is never left dangling.
class BufferClaim {
public:
    // Backend hooks; `state` holds whatever the backend needs to finish the claim.
    struct Ops {
        void (*commit)(BufferClaim&) noexcept;
        void (*abort)(BufferClaim&) noexcept;
    };
    static constexpr std::size_t kStateWords = 8;

    BufferClaim() = default;
    BufferClaim(const BufferClaim&) = delete;
    BufferClaim& operator=(const BufferClaim&) = delete;
    ~BufferClaim() { abort(); }

    bool active() const noexcept { return ops_ != nullptr; }
    std::span<uint8_t> span() const noexcept { return {data_, length_}; }
    uint8_t* data() const noexcept { return data_; }
    std::size_t length() const noexcept { return length_; }

    void commit() noexcept {
        if (ops_ != nullptr) {
            const Ops* ops = ops_;
            ops->commit(*this);
            ops_ = nullptr;
        }
    }
    void abort() noexcept {
        if (ops_ != nullptr) {
            const Ops* ops = ops_;
            ops->abort(*this);
            ops_ = nullptr;
        }
    }

    // For backends.
    void arm(uint8_t* data, std::size_t length, const Ops* ops) noexcept {
        data_ = data;
        length_ = length;
        ops_ = ops;
    }
    std::array<uint64_t, kStateWords> state{};

private:
    uint8_t* data_ = nullptr;
    std::size_t length_ = 0;
    const Ops* ops_ = nullptr;
};

class Publication {
public:
    virtual ~Publication() = default;

    // Publishes one whole message. Never blocks, never allocates.
    virtual OfferResult offer(std::span<const uint8_t> message) noexcept = 0;
    // Reserves `length` bytes to write in place; on success the claim is active until commit()/abort().
    virtual OfferResult try_claim(std::size_t length, BufferClaim& claim) noexcept = 0;
    // True while at least one subscriber is attached.
    virtual bool is_connected() const noexcept = 0;
    // Largest message offer()/try_claim() accept (at least 64 KiB + headers on every backend).
    virtual std::size_t max_message_length() const noexcept = 0;
    virtual const std::string& channel() const noexcept = 0;
    virtual int32_t stream_id() const noexcept = 0;
    // Identifies this publisher to subscribers (MessageInfo::session_id).
    virtual int32_t session_id() const noexcept = 0;
};

// Given with every message a subscription delivers.
struct MessageInfo {
    int32_t session_id;    // the publisher it came from
    int64_t position;      // stream position after the message
    int64_t join_time_ns;  // CLOCK_MONOTONIC ns at which this publisher's stream became available to the
                           // subscription (WIRE_SPEC W-10.1.1-9: announces stamped earlier are discarded)
};

using MessageHandler = FunctionRef<void(std::span<const uint8_t> message, const MessageInfo& info)>;

class Subscription {
public:
    virtual ~Subscription() = default;

    // Hands up to `message_limit` whole messages to `handler` and returns how many. Never blocks; no
    // allocation, no locks and no system calls on this path.
    virtual int poll(MessageHandler handler, int message_limit) noexcept = 0;
    // Publishers whose streams are currently available to this subscription.
    virtual int image_count() const noexcept = 0;
    // Messages and bytes this subscription lost because a publisher overwrote them before they were read
    // (ipc lapping; Aeron reports loss where its driver does).
    virtual uint64_t lost_messages() const noexcept = 0;
    virtual uint64_t lost_bytes() const noexcept = 0;
    virtual const std::string& channel() const noexcept = 0;
    virtual int32_t stream_id() const noexcept = 0;
    // Moves past everything already published, to the newest message, for a reader that knows what it has not
    // read yet is useless (a consumer lapped by the producer's ring, W-15.4-4). Skipped messages are not counted
    // as lost. True if the backend can; the default (and Aeron's) cannot and keeps reading in order.
    virtual bool skip_to_latest() noexcept { return false; }
};

// One backend instance (one Aeron client, or one ipc bus root).
class Transport {
public:
    virtual ~Transport() = default;
    virtual std::string_view backend() const noexcept = 0;  // "ipc" or "aeron"
    virtual Result<std::unique_ptr<Publication>> add_publication(const std::string& channel, int32_t stream_id) = 0;
    virtual Result<std::unique_ptr<Subscription>> add_subscription(const std::string& channel, int32_t stream_id) = 0;
    // Housekeeping the backend needs from the caller's thread (discovery of new publishers, liveness);
    // returns the amount of work done. Safe to call at any rate; cheap when there is nothing to do.
    virtual int do_work() noexcept { return 0; }
};

}  // namespace tensorpool::transport
