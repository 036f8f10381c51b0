#include "aeron_runtime.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <random>
#include <utility>

#include "aeron_stats.hpp"
#include "aeronmd.h"  // the embedded C media driver (include/aeronmd)

namespace tensorpool::transport::aeron_backend {

namespace {

std::string errmsg_or(const char* fallback) {
    const char* m = aeron_errmsg();
    return (m != nullptr && m[0] != '\0') ? std::string(m) : std::string(fallback);
}

// /dev/shm/tensorpool-aeron-<pid>-<random>: unique per embedded driver, so tests and tools never share one.
std::string generated_dir() {
    std::random_device rd;
    const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    char buf[96];
    std::snprintf(buf, sizeof buf, "/dev/shm/tensorpool-aeron-%d-%016llx", static_cast<int>(::getpid()),
                  static_cast<unsigned long long>(r));
    return buf;
}

bool path_exists(const std::string& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0;
}

}  // namespace

const char* linked_aeron_version() noexcept { return aeron_version_full(); }

// Aeron's exception texts are several lines of "(code) text" and "[function, file.c:line] detail", the driver's
// part after "== Driver Error ==". Keep the details, on one line: "term length not a power of 2: length=3145728;
// Failed to parse IPC publication URI".
std::string aeron_text(const char* what) {
    std::string s = what != nullptr ? what : "";
    const std::string marker = "== Driver Error ==";
    if (const auto at = s.find(marker); at != std::string::npos) s.erase(0, at + marker.size());
    std::string out;
    std::size_t pos = 0;
    while (pos <= s.size()) {
        auto nl = s.find('\n', pos);
        if (nl == std::string::npos) nl = s.size();
        std::string line = s.substr(pos, nl - pos);
        pos = nl + 1;
        // drop "[function, file.c:123]" locations
        for (auto open = line.find('['); open != std::string::npos; open = line.find('[')) {
            const auto close = line.find(']', open);
            if (close == std::string::npos) break;
            line.erase(open, close - open + 1);
        }
        const auto first = line.find_first_not_of(" \t\r");
        const auto last = line.find_last_not_of(" \t\r");
        if (first == std::string::npos) continue;
        line = line.substr(first, last - first + 1);
        const bool bare_code = line.size() > 2 && line[0] == '(' &&
                               (line[1] == '-' || (line[1] >= '0' && line[1] <= '9'));
        if (bare_code) continue;  // "(22) Invalid argument", "(-11) generic error, see message"
        if (!out.empty()) out += "; ";
        out += line;
    }
    if (out.empty()) {  // nothing but codes: keep them
        out = s;
        for (char& c : out) {
            if (c == '\n' || c == '\r' || c == '\t') c = ' ';
        }
    }
    return out;
}

// ---- EmbeddedDriver -------------------------------------------------------------------------------------------

Result<std::unique_ptr<EmbeddedDriver>> EmbeddedDriver::start(const std::string& dir, bool delete_on_start,
                                                              int timeout_ms) {
    std::unique_ptr<EmbeddedDriver> d(new EmbeddedDriver());
    d->dir_ = dir;
    auto fail = [&](const char* step) {
        Error e = Error::format(Errc::io, "aeron: embedded media driver in '%s': %s failed: %s", dir.c_str(), step,
                                errmsg_or("unknown error").c_str());
        if (d->context_ != nullptr) {
            aeron_driver_context_close(d->context_);
            d->context_ = nullptr;
        }
        return e;
    };
    if (aeron_driver_context_init(&d->context_) < 0) return fail("aeron_driver_context_init");
    if (aeron_driver_context_set_dir(d->context_, dir.c_str()) < 0) return fail("set_dir");
    if (aeron_driver_context_set_dir_delete_on_start(d->context_, delete_on_start) < 0) {
        return fail("set_dir_delete_on_start");
    }
    if (aeron_driver_context_set_dir_delete_on_shutdown(d->context_, true) < 0) {
        return fail("set_dir_delete_on_shutdown");
    }
    if (aeron_driver_context_set_threading_mode(d->context_, AERON_THREADING_MODE_SHARED) < 0) {
        return fail("set_threading_mode(SHARED)");
    }
    if (timeout_ms > 0 &&
        aeron_driver_context_set_driver_timeout_ms(d->context_, static_cast<uint64_t>(timeout_ms)) < 0) {
        return fail("set_driver_timeout_ms");
    }
    if (aeron_driver_init(&d->driver_, d->context_) < 0) return fail("aeron_driver_init");
    if (aeron_driver_start(d->driver_, true /* we run its duty cycle on our own thread */) < 0) {
        aeron_driver_close(d->driver_);
        d->driver_ = nullptr;
        return fail("aeron_driver_start");
    }
    d->running_.store(true, std::memory_order_release);
    aeron_driver_t* driver = d->driver_;
    std::atomic<bool>* running = &d->running_;
    try {
        d->thread_ = std::thread([driver, running] {
            while (running->load(std::memory_order_acquire)) {
                aeron_driver_main_idle_strategy(driver, aeron_driver_main_do_work(driver));
            }
        });
    } catch (const std::exception& ex) {
        d->running_.store(false);
        aeron_driver_close(d->driver_);
        d->driver_ = nullptr;
        aeron_driver_context_close(d->context_);
        d->context_ = nullptr;
        return Error::format(Errc::io, "aeron: embedded media driver in '%s': cannot start its thread: %s",
                             dir.c_str(), ex.what());
    }
    return d;
}

EmbeddedDriver::~EmbeddedDriver() {
    running_.store(false, std::memory_order_release);
    if (thread_.joinable()) thread_.join();
    if (driver_ != nullptr) aeron_driver_close(driver_);
    if (context_ != nullptr) aeron_driver_context_close(context_);  // deletes the directory (delete_on_shutdown)
    if (!dir_.empty() && path_exists(dir_)) aeron_delete_directory(dir_.c_str());
}

// ---- AeronRuntime ---------------------------------------------------------------------------------------------

Result<std::shared_ptr<AeronRuntime>> AeronRuntime::start(const TransportOptions& options) {
    std::shared_ptr<AeronRuntime> rt(new AeronRuntime());
    if (options.aeron_driver_timeout_ms > 0) rt->timeout_ = std::chrono::milliseconds(options.aeron_driver_timeout_ms);

    std::string dir = options.aeron_dir;
    if (options.aeron_embedded_driver) {
        const bool generated = dir.empty();
        if (generated) dir = generated_dir();
        auto driver = EmbeddedDriver::start(dir, generated, options.aeron_driver_timeout_ms);
        if (!driver) return driver.error();
        rt->driver_ = std::move(driver).value();
    }

    AeronRuntime* self = rt.get();
    try {
        aeron::Context ctx;
        if (!dir.empty()) ctx.aeronDir(dir);
        ctx.clientName("tensorpool");
        if (options.aeron_driver_timeout_ms > 0) ctx.mediaDriverTimeout(options.aeron_driver_timeout_ms);
        rt->dir_ = ctx.aeronDir();  // read before connect(): the client takes the context over
        // The wrapper's default handler prints and calls exit(): a library must not. Errors the conductor thread
        // meets (driver gone, client timed out) are kept for messages; the calls that then fail say so.
        ctx.errorHandler([self](const std::exception& ex) {
            std::lock_guard<std::mutex> lock(self->error_mutex_);
            self->last_error_ = ex.what();
        });
        rt->client_ = aeron::Aeron::connect(ctx);
    } catch (const std::exception& ex) {
        return Error::format(Errc::io, "aeron: cannot connect to the media driver in '%s'%s: %s",
                             dir.empty() ? "(Aeron's default directory)" : dir.c_str(),
                             options.aeron_embedded_driver ? " (embedded)" : " (is a media driver running?)",
                             aeron_text(ex.what()).c_str());
    }
    return rt;
}

AeronRuntime::~AeronRuntime() {
    {
        std::lock_guard<std::mutex> lock(abandoned_mutex_);
        for (auto* p : abandoned_publications_) {
            try {
                (void)client_->findPublication(p);  // a late answer is closed right here; errors free it
            } catch (...) {
            }
        }
        abandoned_publications_.clear();
        for (auto* s : abandoned_subscriptions_) {
            try {
                (void)client_->findSubscription(s);
            } catch (...) {
                aeron::AsyncAddSubscription::remove(s);
            }
        }
        abandoned_subscriptions_.clear();
    }
    client_.reset();  // aeron_close: closes what is left and stops the client conductor thread
    driver_.reset();  // then the media driver
}

std::string AeronRuntime::last_error() const {
    std::lock_guard<std::mutex> lock(error_mutex_);
    return last_error_;
}

void AeronRuntime::abandon(aeron::AsyncAddPublication* pending) {
    std::lock_guard<std::mutex> lock(abandoned_mutex_);
    abandoned_publications_.push_back(pending);
    has_abandoned_.store(true, std::memory_order_release);
}

void AeronRuntime::abandon(aeron::AsyncAddSubscription* pending) {
    std::lock_guard<std::mutex> lock(abandoned_mutex_);
    abandoned_subscriptions_.push_back(pending);
    has_abandoned_.store(true, std::memory_order_release);
}

int AeronRuntime::reap_abandoned() noexcept {
    if (!has_abandoned_.load(std::memory_order_acquire)) return 0;
    std::unique_lock<std::mutex> lock(abandoned_mutex_, std::try_to_lock);
    if (!lock.owns_lock()) return 0;
    int resolved = 0;
    for (auto it = abandoned_publications_.begin(); it != abandoned_publications_.end();) {
        bool done = false;
        try {
            done = client_->findPublication(*it) != nullptr;  // the shared_ptr dies here: closed at once
        } catch (...) {
            done = true;  // the driver refused it: nothing to close
        }
        if (done) {
            it = abandoned_publications_.erase(it);
            ++resolved;
        } else {
            ++it;
        }
    }
    for (auto it = abandoned_subscriptions_.begin(); it != abandoned_subscriptions_.end();) {
        bool done = false;
        try {
            done = client_->findSubscription(*it) != nullptr;  // closed at once, never polled
        } catch (...) {
            aeron::AsyncAddSubscription::remove(*it);
            done = true;
        }
        if (done) {
            it = abandoned_subscriptions_.erase(it);
            ++resolved;
        } else {
            ++it;
        }
    }
    has_abandoned_.store(!abandoned_publications_.empty() || !abandoned_subscriptions_.empty(),
                         std::memory_order_release);
    return resolved;
}

}  // namespace tensorpool::transport::aeron_backend
