#include "aeron_subscription.hpp"

#include <atomic>
#include <span>
#include <utility>

#include "aeron_stats.hpp"
#include "tensorpool/common/clock.hpp"

namespace tensorpool::transport::aeron_backend {

namespace {

// One poll() makes at most this many passes over the images (each pass is one Aeron poll call). Passes stop early
// as soon as one finds nothing to read; more than one is needed only for messages of many fragments.
constexpr int kMaxPasses = 64;
// Fragments a pass may read beyond the messages still wanted (a fragmented message needs several). Reading more
// than wanted is safe: once `message_limit` messages were handed out, every further fragment is left in place.
constexpr std::size_t kFragmentSlack = 256;

// Touched only on the rare path where a join time is not known yet.
std::atomic<uint64_t> g_join_time_deferrals{0};

}  // namespace

uint64_t join_time_deferrals() noexcept { return g_join_time_deferrals.load(std::memory_order_relaxed); }

// ---- How poll() works -------------------------------------------------------------------------------------------
// Fragments go through two hooks, both called on the polling thread from inside aeron_subscription_controlled_poll:
//
//   on_fragment  (every fragment)  - leaves the fragment in the log (ABORT) when the message limit is reached or
//                                    when the join time of its image is not known yet; otherwise hands it on to
//   Aeron's controlled fragment assembler (aeron_controlled_fragment_assembler_*, the C code under the wrapper's
//   ControlledFragmentAssembler): unfragmented messages pass straight through, without a copy; fragments of a
//   larger message (a 64 KiB+ message over UDP is split at the MTU) are appended to a per-session buffer and the
//   message is delivered whole when its last fragment arrives. That buffer grows (realloc) only when a session
//   sends a larger message than before, so steady state allocates nothing;
//   on_message   (whole messages)  - fills MessageInfo and calls the caller's handler.
//
// The decision to leave a fragment in place is taken before the assembler sees it, so the assembler is never asked
// to undo a delivery (Aeron's C assembler restores its buffer on ABORT but not the frame length it patched into
// its header copy, which would misreport the position of a re-delivered message).
//
// ---- Join time ---------------------------------------------------------------------------------------------------
// The client conductor runs on its own thread (Aeron's default) and records each image's join time in a JoinTable
// from the on-available-image handler (see AeronTransport::add_subscription); poll() reads it without a lock.
// Why not run the conductor through useConductorAgentInvoker() on the polling thread instead: the client would then
// heartbeat to the driver only while someone calls do_work()/poll(), so a process busy elsewhere for longer than the
// driver's client liveness timeout (10 s) would lose all its publications and subscriptions; and a Transport's
// subscriptions may be polled from several threads, while one invoker must only ever run on one. The price of the
// conductor thread is a race: Aeron adds an image to the subscription *before* it calls the available-image handler,
// so poll() can meet a fragment of an image whose join time is not recorded yet. Such a fragment is left in the
// log (ABORT) and read on a later poll, microseconds later, so every message carries the exact join time of its
// image, recorded once per image.

Result<std::unique_ptr<AeronSubscription>> AeronSubscription::create(std::shared_ptr<AeronRuntime> runtime,
                                                                     std::shared_ptr<aeron::Subscription> subscription,
                                                                     std::shared_ptr<const JoinTable> joins,
                                                                     std::string channel, int32_t stream_id) {
    std::unique_ptr<AeronSubscription> s(new AeronSubscription(std::move(runtime), std::move(subscription),
                                                               std::move(joins), std::move(channel), stream_id));
    if (aeron_controlled_fragment_assembler_create(&s->assembler_, &AeronSubscription::on_message, s.get()) < 0) {
        s->assembler_ = nullptr;
        return Error::format(Errc::io, "aeron: subscription channel='%s' stream=%d: cannot create its fragment "
                             "assembler: %s", s->channel_.c_str(), stream_id, aeron_errmsg());
    }
    return s;
}

AeronSubscription::AeronSubscription(std::shared_ptr<AeronRuntime> runtime,
                                     std::shared_ptr<aeron::Subscription> subscription,
                                     std::shared_ptr<const JoinTable> joins, std::string channel, int32_t stream_id)
    : runtime_(std::move(runtime)),
      joins_(std::move(joins)),
      subscription_(std::move(subscription)),
      raw_(subscription_->subscription()),
      channel_(std::move(channel)),
      stream_id_(stream_id) {}

AeronSubscription::~AeronSubscription() {
    subscription_.reset();  // closes the Aeron subscription (the client, in runtime_, is still alive)
    if (assembler_ != nullptr) aeron_controlled_fragment_assembler_delete(assembler_);
}

int AeronSubscription::poll(MessageHandler handler, int message_limit) noexcept {
    if (message_limit <= 0) return 0;
    handler_ = &handler;
    limit_ = message_limit;
    delivered_ = 0;
    for (int pass = 0; pass < kMaxPasses && delivered_ < limit_; ++pass) {
        // Image pointers are known to stay valid only within one Aeron poll call (a removed image is freed once
        // the subscription has moved past it), so the cached image is forgotten before each.
        image_ = nullptr;
        const std::size_t fragment_limit = static_cast<std::size_t>(limit_ - delivered_) + kFragmentSlack;
        if (aeron_subscription_controlled_poll(raw_, &AeronSubscription::on_fragment, this, fragment_limit) <= 0) {
            break;
        }
    }
    handler_ = nullptr;
    image_ = nullptr;
    return delivered_;
}

aeron_controlled_fragment_handler_action_t AeronSubscription::on_fragment(void* clientd, const uint8_t* buffer,
                                                                          size_t length, aeron_header_t* header) {
    auto* self = static_cast<AeronSubscription*>(clientd);
    if (self->delivered_ >= self->limit_) return AERON_ACTION_ABORT;  // stays in the log for the next poll

    void* image = aeron_header_context(header);
    if (image != self->image_) {
        aeron_image_constants_t constants{};
        if (image == nullptr || aeron_image_constants(static_cast<aeron_image_t*>(image), &constants) < 0) {
            return AERON_ACTION_ABORT;  // not reached: Aeron always passes the image
        }
        int64_t join_ns = 0;
        switch (self->joins_->find(constants.correlation_id, join_ns)) {
            case JoinTable::Lookup::found:
                break;
            case JoinTable::Lookup::busy:  // the conductor is writing the table right now: next poll
                g_join_time_deferrals.fetch_add(1, std::memory_order_relaxed);
                return AERON_ACTION_ABORT;
            case JoinTable::Lookup::absent:
                // The available-image handler has not run yet (see above): read it on a later poll. Only if
                // the table ever overflowed (more than JoinTable::kCapacity images at once) may the handler have
                // given up on this image; then the best there is, is now.
                if (self->joins_->overflowed() == 0) {
                    g_join_time_deferrals.fetch_add(1, std::memory_order_relaxed);
                    return AERON_ACTION_ABORT;
                }
                join_ns = monotonic_ns();
                break;
        }
        self->image_ = image;
        self->image_join_ns_ = join_ns;
    }
    return aeron_controlled_fragment_assembler_handler(self->assembler_, buffer, length, header);
}

aeron_controlled_fragment_handler_action_t AeronSubscription::on_message(void* clientd, const uint8_t* buffer,
                                                                         size_t length, aeron_header_t* header) {
    auto* self = static_cast<AeronSubscription*>(clientd);
    aeron_header_values_t values{};
    aeron_header_values(header, &values);
    const MessageInfo info{values.frame.session_id, aeron_header_position(header), self->image_join_ns_};
    ++self->delivered_;
    (*self->handler_)(std::span<const uint8_t>(buffer, length), info);
    return AERON_ACTION_CONTINUE;
}

int AeronSubscription::image_count() const noexcept { return aeron_subscription_image_count(raw_); }

}  // namespace tensorpool::transport::aeron_backend
