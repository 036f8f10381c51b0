// Opens the backend a channel URI names and routes publications/subscriptions to it.
//
//   ipc:<bus>[?term-length=N]      embedded shared-memory bus (always built)
//   aeron:ipc[?...] | aeron:udp?...  Aeron (built when CMake found Aeron)
//
// Asking for a backend that was not built, or a malformed URI, is an error naming the URI — never a silent
// substitution of another backend.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport {

struct TransportOptions {
    // ipc: directory holding the bus files; empty means /dev/shm/tensorpool-ipc-<user>.
    std::string ipc_root;
    // ipc: bytes of each publisher's ring (a power of two, at least 1 MiB); `term-length` in a channel overrides.
    std::size_t ipc_term_bytes = std::size_t{8} << 20;
    // ipc: how long a closed or dead publisher's log stays readable for subscribers that have not drained it.
    int ipc_linger_ms = 5000;
    // aeron: the media driver's directory; empty means Aeron's default (or the embedded driver's own).
    std::string aeron_dir;
    // aeron: start a media driver inside this process.
    bool aeron_embedded_driver = false;
    // aeron: how long to wait for the driver to answer.
    int aeron_driver_timeout_ms = 10000;
};

// Whether a backend ("ipc", "aeron") was compiled into this build.
bool backend_built(std::string_view backend) noexcept;

// The backend a channel URI names ("ipc" or "aeron"), or an error naming the URI.
Result<std::string_view> backend_of(std::string_view channel);

class TransportHub {
public:
    explicit TransportHub(TransportOptions options = {});
    ~TransportHub();
    TransportHub(const TransportHub&) = delete;
    TransportHub& operator=(const TransportHub&) = delete;

    Result<std::unique_ptr<Publication>> add_publication(const std::string& channel, int32_t stream_id);
    Result<std::unique_ptr<Subscription>> add_subscription(const std::string& channel, int32_t stream_id);
    int do_work() noexcept;

    const TransportOptions& options() const noexcept { return options_; }

private:
    Result<Transport*> backend_for(const std::string& channel);

    TransportOptions options_;
    std::unique_ptr<Transport> ipc_;
    std::unique_ptr<Transport> aeron_;
};

// Backend factories (TransportHub calls these; tests may too).
Result<std::unique_ptr<Transport>> make_ipc_transport(const TransportOptions& options);
Result<std::unique_ptr<Transport>> make_aeron_transport(const TransportOptions& options);

}  // namespace tensorpool::transport
