#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::transport {

bool backend_built(std::string_view backend) noexcept {
    if (backend == "ipc") return true;
#ifdef TENSORPOOL_HAVE_AERON
    if (backend == "aeron") return true;
#endif
    return false;
}

Result<std::string_view> backend_of(std::string_view channel) {
    if (channel.starts_with("ipc:")) return std::string_view("ipc");
    if (channel.starts_with("aeron:")) return std::string_view("aeron");
    return Error::format(Errc::invalid_argument,
                         "channel '%.*s' names no transport: expected 'ipc:<bus>' or an Aeron URI "
                         "('aeron:ipc', 'aeron:udp?endpoint=host:port')",
                         static_cast<int>(channel.size()), channel.data());
}

#ifndef TENSORPOOL_HAVE_AERON
Result<std::unique_ptr<Transport>> make_aeron_transport(const TransportOptions&) {
    return Error(Errc::unsupported,
                 "the aeron backend is not built: Aeron was not found when this build was configured "
                 "(install Aeron and configure with -DCMAKE_PREFIX_PATH=<its prefix>)");
}
#endif

TransportHub::TransportHub(TransportOptions options) : options_(std::move(options)) {}
TransportHub::~TransportHub() = default;

Result<Transport*> TransportHub::backend_for(const std::string& channel) {
    auto backend = backend_of(channel);
    if (!backend) return backend.error();
    std::unique_ptr<Transport>& slot = *backend == "ipc" ? ipc_ : aeron_;
    if (!slot) {
        auto t = *backend == "ipc" ? make_ipc_transport(options_) : make_aeron_transport(options_);
        if (!t) {
            Error e = t.error();
            e.prefix("channel '%s': ", channel.c_str());
            return e;
        }
        slot = std::move(*t);
    }
    return slot.get();
}

Result<std::unique_ptr<Publication>> TransportHub::add_publication(const std::string& channel, int32_t stream_id) {
    auto t = backend_for(channel);
    if (!t) return t.error();
    return (*t)->add_publication(channel, stream_id);
}

Result<std::unique_ptr<Subscription>> TransportHub::add_subscription(const std::string& channel, int32_t stream_id) {
    auto t = backend_for(channel);
    if (!t) return t.error();
    return (*t)->add_subscription(channel, stream_id);
}

int TransportHub::do_work() noexcept {
    int work = 0;
    if (ipc_) work += ipc_->do_work();
    if (aeron_) work += aeron_->do_work();
    return work;
}

}  // namespace tensorpool::transport
