// The aeron backend: make_aeron_transport() and the Transport that adds Aeron publications and subscriptions.
//
// Threads: the Aeron client conductor runs on its own thread (started by the client), the embedded media driver
// (when asked for) on one more. Neither ever calls into tensorpool code except the image handlers below, which
// only write a subscription's JoinTable.
#include <atomic>
#include <chrono>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include "aeron_publication.hpp"
#include "aeron_runtime.hpp"
#include "aeron_stats.hpp"
#include "aeron_subscription.hpp"
#include "join_table.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::transport {

namespace aeron_backend {
namespace {

std::atomic<uint32_t> g_join_record_delay_us{0};

// An exception while waiting for the media driver's answer: the driver refused the channel.
Error refusal(const char* what, const std::string& channel, int32_t stream_id, const std::exception& ex) {
    const std::string text = aeron_text(ex.what());
    if (text.find("existing publication has different") != std::string::npos) {
        // Aeron shares one log per (channel, stream) among the concurrent publications of a media driver, so a
        // second publication must ask for the same term length (and other log parameters) as the first.
        const bool term = text.find("term-length") != std::string::npos;
        return Error::format(Errc::mismatch, "aeron: %s channel='%s' stream=%d refused: %s (%s)", what,
                             channel.c_str(), stream_id, text.c_str(),
                             term ? "one log per channel and stream: the term length must match"
                                  : "one log per channel and stream: its parameters must match");
    }
    return Error::format(Errc::invalid_argument, "aeron: %s channel='%s' stream=%d refused by the media driver: %s",
                         what, channel.c_str(), stream_id, text.c_str());
}

// An exception before the command reached the driver (client closed, command queue full ...).
Error failure(const char* what, const std::string& channel, int32_t stream_id, const std::exception& ex) {
    return Error::format(Errc::io, "aeron: %s channel='%s' stream=%d failed: %s", what, channel.c_str(), stream_id,
                         aeron_text(ex.what()).c_str());
}

Error timed_out(const char* what, const std::string& channel, int32_t stream_id, const AeronRuntime& rt) {
    const std::string last = rt.last_error();
    return Error::format(Errc::io, "aeron: %s channel='%s' stream=%d: the media driver in '%s' did not answer within "
                         "%lld ms%s%s", what, channel.c_str(), stream_id, rt.dir().c_str(),
                         static_cast<long long>(rt.timeout().count()), last.empty() ? "" : "; last client error: ",
                         last.c_str());
}

Status check_channel(const char* what, const std::string& channel, int32_t stream_id, AeronRuntime& rt) {
    if (rt.client().isClosed()) {
        const std::string last = rt.last_error();
        return Error::format(Errc::state, "aeron: %s channel='%s' stream=%d: the Aeron client is closed (media driver in "
                             "'%s' gone or timed out?)%s%s", what, channel.c_str(), stream_id, rt.dir().c_str(),
                             last.empty() ? "" : ": ", last.c_str());
    }
    if (channel.rfind("aeron:", 0) != 0) {
        return Error::format(Errc::invalid_argument,
                             "aeron: %s channel='%s' stream=%d: not an Aeron channel URI (expected 'aeron:ipc[?...]' "
                             "or 'aeron:udp?endpoint=host:port[|...]')", what, channel.c_str(), stream_id);
    }
    return {};
}

class AeronTransport final : public Transport {
public:
    explicit AeronTransport(std::shared_ptr<AeronRuntime> runtime) : runtime_(std::move(runtime)) {}

    std::string_view backend() const noexcept override { return "aeron"; }

    Result<std::unique_ptr<Publication>> add_publication(const std::string& channel, int32_t stream_id) override {
        runtime_->reap_abandoned();
        if (auto ok = check_channel("add_publication", channel, stream_id, *runtime_); !ok) return ok.error();
        aeron::Aeron& client = runtime_->client();
        aeron::AsyncAddPublication* pending = nullptr;
        try {
            pending = client.addPublicationAsync(channel, stream_id);
        } catch (const std::exception& ex) {
            return failure("add_publication", channel, stream_id, ex);
        }
        try {
            const auto deadline = std::chrono::steady_clock::now() + runtime_->timeout();
            std::shared_ptr<aeron::Publication> pub;
            while (!(pub = client.findPublication(pending))) {
                if (std::chrono::steady_clock::now() >= deadline) {
                    runtime_->abandon(pending);
                    return timed_out("add_publication", channel, stream_id, *runtime_);
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
            return std::unique_ptr<Publication>(
                std::make_unique<AeronPublication>(runtime_, std::move(pub), channel, stream_id));
        } catch (const std::exception& ex) {
            return refusal("add_publication", channel, stream_id, ex);
        } catch (...) {
            return Error::format(Errc::io, "aeron: add_publication channel='%s' stream=%d: unexpected exception",
                                 channel.c_str(), stream_id);
        }
    }

    Result<std::unique_ptr<Subscription>> add_subscription(const std::string& channel, int32_t stream_id) override {
        runtime_->reap_abandoned();
        if (auto ok = check_channel("add_subscription", channel, stream_id, *runtime_); !ok) return ok.error();
        aeron::Aeron& client = runtime_->client();
        // The image handlers run on the client conductor thread: the join time is read first thing, then recorded
        // for poll() to read without a lock (see aeron_subscription.cpp). They hold the table by shared_ptr because
        // Aeron may still call them after the AeronSubscription is gone (its close is asynchronous); they must not
        // throw into Aeron's C code.
        std::shared_ptr<JoinTable> joins;
        aeron::AsyncAddSubscription* pending = nullptr;
        try {
            joins = std::make_shared<JoinTable>();
            aeron::on_available_image_t on_available = [joins](aeron::Image& image) noexcept {
                if (const uint32_t us = g_join_record_delay_us.load(std::memory_order_relaxed); us != 0) {
                    std::this_thread::sleep_for(std::chrono::microseconds(us));  // tests only
                }
                const int64_t now = monotonic_ns();
                joins->add(image.correlationId(), now);
            };
            aeron::on_unavailable_image_t on_unavailable = [joins](aeron::Image& image) noexcept {
                joins->remove(image.correlationId());
            };
            pending = client.addSubscriptionAsync(channel, stream_id, on_available, on_unavailable);
        } catch (const std::exception& ex) {
            return failure("add_subscription", channel, stream_id, ex);
        }
        std::shared_ptr<aeron::Subscription> sub;
        try {
            const auto deadline = std::chrono::steady_clock::now() + runtime_->timeout();
            while (!(sub = client.findSubscription(pending))) {
                if (std::chrono::steady_clock::now() >= deadline) {
                    runtime_->abandon(pending);  // closed when it resolves: never a subscription nobody polls
                    return timed_out("add_subscription", channel, stream_id, *runtime_);
                }
                std::this_thread::sleep_for(std::chrono::milliseconds(1));
            }
        } catch (const std::exception& ex) {
            aeron::AsyncAddSubscription::remove(pending);  // the driver refused it; free the handlers
            return refusal("add_subscription", channel, stream_id, ex);
        } catch (...) {
            aeron::AsyncAddSubscription::remove(pending);
            return Error::format(Errc::io, "aeron: add_subscription channel='%s' stream=%d: unexpected exception",
                                 channel.c_str(), stream_id);
        }
        try {
            auto s = AeronSubscription::create(runtime_, std::move(sub), std::move(joins), channel, stream_id);
            if (!s) return s.error();
            return std::unique_ptr<Subscription>(std::move(s).value());
        } catch (const std::exception& ex) {
            return failure("add_subscription", channel, stream_id, ex);
        }
    }

    // The client conductor does its own work on its thread; here only adds that timed out are tidied up.
    int do_work() noexcept override { return runtime_->reap_abandoned(); }

private:
    std::shared_ptr<AeronRuntime> runtime_;
};

}  // namespace

void set_join_record_delay_for_testing(uint32_t microseconds) noexcept {
    g_join_record_delay_us.store(microseconds, std::memory_order_relaxed);
}

}  // namespace aeron_backend

Result<std::unique_ptr<Transport>> make_aeron_transport(const TransportOptions& options) {
    try {
        auto rt = aeron_backend::AeronRuntime::start(options);
        if (!rt) return rt.error();
        return std::unique_ptr<Transport>(std::make_unique<aeron_backend::AeronTransport>(std::move(rt).value()));
    } catch (const std::exception& ex) {
        return Error::format(Errc::io, "aeron: cannot start the aeron transport: %s",
                             aeron_backend::aeron_text(ex.what()).c_str());
    } catch (...) {
        return Error(Errc::io, "aeron: cannot start the aeron transport: unexpected exception");
    }
}

}  // namespace tensorpool::transport
