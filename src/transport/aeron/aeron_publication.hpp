// An Aeron (concurrent) publication behind the tensorpool Publication interface.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "aeron_runtime.hpp"
#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport::aeron_backend {

// Immediate retries of an offer/try_claim that Aeron answered with ADMIN_ACTION. ADMIN_ACTION means the offer
// landed on a term that was being rotated (by this or a concurrent publisher) and nothing was written; the
// rotation is finished by the time the call returns, so the first retry normally succeeds. Should every retry
// still say ADMIN_ACTION, offer() reports back_pressured: the message was not sent and the caller retries it, as
// for any back-pressure. ADMIN_ACTION itself never reaches the caller and never costs a message.
inline constexpr int kAdminActionRetries = 16;

class AeronPublication final : public Publication {
public:
    AeronPublication(std::shared_ptr<AeronRuntime> runtime, std::shared_ptr<aeron::Publication> publication,
                     std::string channel, int32_t stream_id);
    ~AeronPublication() override;

    OfferResult offer(std::span<const uint8_t> message) noexcept override;
    OfferResult try_claim(std::size_t length, BufferClaim& claim) noexcept override;
    bool is_connected() const noexcept override;
    std::size_t max_message_length() const noexcept override { return max_message_length_; }
    const std::string& channel() const noexcept override { return channel_; }
    int32_t stream_id() const noexcept override { return stream_id_; }
    int32_t session_id() const noexcept override { return session_id_; }

    // Largest message try_claim() accepts: one frame's payload (Aeron cannot claim across fragments).
    std::size_t max_claim_length() const noexcept { return max_payload_length_; }

private:
    std::shared_ptr<AeronRuntime> runtime_;             // outlives publication_
    std::shared_ptr<aeron::Publication> publication_;   // the wrapper: closes the C publication when destroyed
    aeron_publication_t* raw_ = nullptr;                // the C handle the hot path calls
    std::string channel_;
    int32_t stream_id_;
    int32_t session_id_ = 0;
    std::size_t max_message_length_ = 0;
    std::size_t max_payload_length_ = 0;
};

// Aeron's offer/try_claim result to ours (ADMIN_ACTION is handled before this is called).
OfferResult map_offer_result(int64_t aeron_result) noexcept;

}  // namespace tensorpool::transport::aeron_backend
