// The Aeron pieces one AeronTransport owns: an optional embedded C media driver and the Aeron client.
//
// Every publication and subscription holds a shared_ptr to the runtime, so the client (and the driver under it)
// outlives the last of them even when the Transport object is destroyed first; the shutdown order is always
// publications/subscriptions, then the client, then the driver.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "Aeron.h"  // Aeron's C++ wrapper over the C client (include/wrapper)
#include "tensorpool/common/result.hpp"
#include "tensorpool/transport/transport_hub.hpp"

struct aeron_driver_context_stct;
struct aeron_driver_stct;

namespace tensorpool::transport::aeron_backend {

// A C media driver running in this process (SHARED threading: conductor, sender and receiver are one agent,
// driven by one thread of ours).
class EmbeddedDriver {
public:
    // `dir` is the driver's directory; `delete_on_start` only for a directory we generated ourselves (for a
    // directory the caller named, a live driver already there is detected and refused instead of clobbered).
    static Result<std::unique_ptr<EmbeddedDriver>> start(const std::string& dir, bool delete_on_start,
                                                         int timeout_ms);
    ~EmbeddedDriver();
    EmbeddedDriver(const EmbeddedDriver&) = delete;
    EmbeddedDriver& operator=(const EmbeddedDriver&) = delete;

    const std::string& dir() const noexcept { return dir_; }

private:
    EmbeddedDriver() = default;

    std::string dir_;
    aeron_driver_context_stct* context_ = nullptr;
    aeron_driver_stct* driver_ = nullptr;
    std::atomic<bool> running_{false};
    std::thread thread_;
};

class AeronRuntime {
public:
    static Result<std::shared_ptr<AeronRuntime>> start(const TransportOptions& options);
    ~AeronRuntime();
    AeronRuntime(const AeronRuntime&) = delete;
    AeronRuntime& operator=(const AeronRuntime&) = delete;

    aeron::Aeron& client() noexcept { return *client_; }
    const std::string& dir() const noexcept { return dir_; }
    std::chrono::milliseconds timeout() const noexcept { return timeout_; }

    // The last error the client conductor reported (driver timeout, lost connection ...), or "".
    std::string last_error() const;

    // An add that timed out may still be answered by the driver later; the runtime keeps the pending command and
    // closes whatever it yields, so a subscription that nobody polls is never left behind (a tethered IPC
    // subscriber that never advances would back-pressure its publication for good).
    void abandon(aeron::AsyncAddPublication* pending);
    void abandon(aeron::AsyncAddSubscription* pending);
    // Resolves abandoned adds; cheap when there are none. Returns how many were resolved.
    int reap_abandoned() noexcept;

private:
    AeronRuntime() = default;

    std::unique_ptr<EmbeddedDriver> driver_;  // destroyed after client_ (see ~AeronRuntime)
    std::shared_ptr<aeron::Aeron> client_;
    std::string dir_;
    std::chrono::milliseconds timeout_{10000};

    mutable std::mutex error_mutex_;
    std::string last_error_;

    std::mutex abandoned_mutex_;
    std::atomic<bool> has_abandoned_{false};
    std::vector<aeron::AsyncAddPublication*> abandoned_publications_;
    std::vector<aeron::AsyncAddSubscription*> abandoned_subscriptions_;
};

// An Aeron exception text on one line, without Aeron's source locations and bare error codes.
std::string aeron_text(const char* what);

}  // namespace tensorpool::transport::aeron_backend
