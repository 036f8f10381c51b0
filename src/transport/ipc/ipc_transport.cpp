// The ipc backend: one bus root, a shared IpcStream per (bus, stream id), and the periodic sweep of dead
// processes' slots and files.
#include <map>
#include <mutex>
#include <utility>

#include "ipc_channel.hpp"
#include "ipc_publication.hpp"
#include "ipc_stream.hpp"
#include "ipc_subscription.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::transport {

namespace {

class IpcTransport final : public Transport {
public:
    IpcTransport(std::string root, std::size_t term_bytes, int64_t linger_ns)
        : root_(std::move(root)), term_bytes_(term_bytes), linger_ns_(linger_ns) {}

    std::string_view backend() const noexcept override { return "ipc"; }

    Result<std::unique_ptr<Publication>> add_publication(const std::string& channel, int32_t stream_id) override {
        auto ch = ipc::parse_ipc_channel(channel);
        if (!ch) return ch.error();
        auto stream = stream_for(ch->bus, stream_id);
        if (!stream) return stream.error();
        auto pub = ipc::IpcPublication::create(std::move(*stream), channel, stream_id,
                                               ch->term_bytes != 0 ? ch->term_bytes : term_bytes_, ch->prefault);
        if (!pub) return pub.error();
        return std::unique_ptr<Publication>(std::move(*pub));
    }

    Result<std::unique_ptr<Subscription>> add_subscription(const std::string& channel, int32_t stream_id) override {
        auto ch = ipc::parse_ipc_channel(channel);
        if (!ch) return ch.error();
        auto stream = stream_for(ch->bus, stream_id);
        if (!stream) return stream.error();
        auto sub = ipc::IpcSubscription::create(std::move(*stream), channel, stream_id);
        if (!sub) return sub.error();
        return std::unique_ptr<Subscription>(std::move(*sub));
    }

    int do_work() noexcept override {
        const int64_t now = monotonic_ns();
        if (now - last_sweep_ns_ < kSweepIntervalNs) return 0;
        last_sweep_ns_ = now;
        int work = 0;
        std::lock_guard<std::mutex> lock(mutex_);  // slow path only: guards the stream table
        for (auto it = streams_.begin(); it != streams_.end();) {
            if (auto s = it->second.lock()) {
                work += s->periodic_sweep();
                ++it;
            } else {
                it = streams_.erase(it);
            }
        }
        return work;
    }

private:
    static constexpr int64_t kSweepIntervalNs = 250'000'000;

    Result<std::shared_ptr<ipc::IpcStream>> stream_for(const std::string& bus, int32_t stream_id) {
        std::lock_guard<std::mutex> lock(mutex_);
        auto key = std::make_pair(bus, stream_id);
        if (auto it = streams_.find(key); it != streams_.end()) {
            if (auto s = it->second.lock()) return s;
        }
        auto s = ipc::IpcStream::open(root_, bus, stream_id, linger_ns_);
        if (!s) return s.error();
        // A fresh view of the stream starts without the slots and files of dead processes.
        (*s)->periodic_sweep(true);
        streams_[key] = *s;
        return *s;
    }

    std::string root_;
    std::size_t term_bytes_;
    int64_t linger_ns_;
    std::mutex mutex_;
    std::map<std::pair<std::string, int32_t>, std::weak_ptr<ipc::IpcStream>> streams_;
    int64_t last_sweep_ns_ = 0;
};

}  // namespace

Result<std::unique_ptr<Transport>> make_ipc_transport(const TransportOptions& options) {
    std::string root = options.ipc_root;
    if (root.empty()) {
        auto r = ipc::default_root();
        if (!r) return r.error();
        root = *r;
    }
    const std::size_t t = options.ipc_term_bytes;
    if (t < ipc::kMinTermBytes || t > ipc::kMaxTermBytes || (t & (t - 1)) != 0) {
        return Error::format(Errc::invalid_argument, "ipc term length %zu is not a power of two in [%zu, %zu]", t,
                             ipc::kMinTermBytes, ipc::kMaxTermBytes);
    }
    if (options.ipc_linger_ms < 0) {
        return Error::format(Errc::invalid_argument, "ipc linger %d ms must not be negative", options.ipc_linger_ms);
    }
    return std::unique_ptr<Transport>(new IpcTransport(std::move(root), t, int64_t{options.ipc_linger_ms} * 1'000'000));
}

}  // namespace tensorpool::transport
