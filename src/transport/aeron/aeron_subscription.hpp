// An Aeron subscription behind the tensorpool Subscription interface: whole messages, with each image's join time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "aeron_runtime.hpp"
#include "join_table.hpp"
#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport::aeron_backend {

class AeronSubscription final : public Subscription {
public:
    // `joins` is the table the subscription's image handlers (registered when it was added) write into.
    // Fails only when the fragment assembler cannot be allocated.
    static Result<std::unique_ptr<AeronSubscription>> create(std::shared_ptr<AeronRuntime> runtime,
                                                             std::shared_ptr<aeron::Subscription> subscription,
                                                             std::shared_ptr<const JoinTable> joins,
                                                             std::string channel, int32_t stream_id);
    ~AeronSubscription() override;

    int poll(MessageHandler handler, int message_limit) noexcept override;
    int image_count() const noexcept override;
    // Aeron's reliable transports do not lose messages while an image is connected (UDP gaps are repaired by
    // NAK/retransmit; IPC readers are never overwritten). When the driver gives up on an image, the image goes
    // away (unavailable) rather than skipping, so there is nothing per-subscription to count: always 0.
    // Driver-wide loss (e.g. `reliable=false` UDP streams) is in the media driver's loss report
    // (aeron-loss.dat, read with AeronStat/LossStat tools).
    uint64_t lost_messages() const noexcept override { return 0; }
    uint64_t lost_bytes() const noexcept override { return 0; }
    const std::string& channel() const noexcept override { return channel_; }
    int32_t stream_id() const noexcept override { return stream_id_; }

private:
    AeronSubscription(std::shared_ptr<AeronRuntime> runtime, std::shared_ptr<aeron::Subscription> subscription,
                      std::shared_ptr<const JoinTable> joins, std::string channel, int32_t stream_id);

    static aeron_controlled_fragment_handler_action_t on_fragment(void* clientd, const uint8_t* buffer,
                                                                  size_t length, aeron_header_t* header);
    static aeron_controlled_fragment_handler_action_t on_message(void* clientd, const uint8_t* buffer,
                                                                 size_t length, aeron_header_t* header);

    std::shared_ptr<AeronRuntime> runtime_;                // outlives subscription_
    std::shared_ptr<const JoinTable> joins_;               // shared with the image handlers
    std::shared_ptr<aeron::Subscription> subscription_;    // the wrapper: closes the C subscription when destroyed
    aeron_subscription_t* raw_ = nullptr;
    aeron_controlled_fragment_assembler_t* assembler_ = nullptr;
    std::string channel_;
    int32_t stream_id_;

    // State of the poll() in progress (a subscription is polled by one thread at a time, as in Aeron).
    const MessageHandler* handler_ = nullptr;
    int limit_ = 0;
    int delivered_ = 0;
    const void* image_ = nullptr;  // image of the fragment being handled, valid within one Aeron poll call
    int64_t image_join_ns_ = 0;
};

}  // namespace tensorpool::transport::aeron_backend
