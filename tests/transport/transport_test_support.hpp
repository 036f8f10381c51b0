// Helpers for transport tests that run real processes: a private bus root, a cross-process barrier, forking
// children with a result, and self-checking test messages that reveal any torn or mixed-up delivery.
#pragma once

#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::test {

// Polls `pred` every 200 µs until it holds or `timeout` passes; true if it held.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return true;
}

// A fresh owner-only directory under /dev/shm used as the ipc bus root, removed afterwards.
class BusRoot {
public:
    BusRoot() {
        char tmpl[] = "/dev/shm/tp-bus-test-XXXXXX";
        const char* p = ::mkdtemp(tmpl);
        path_ = p != nullptr ? p : "";
    }
    ~BusRoot() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::string& path() const { return path_; }
    transport::TransportOptions options(std::size_t term = std::size_t{8} << 20) const {
        transport::TransportOptions o;
        o.ipc_root = path_;
        o.ipc_term_bytes = term;
        o.ipc_linger_ms = 200;  // short, so tests can watch the sweep remove closed and dead publishers
        return o;
    }
    std::size_t count_files(const std::string& prefix) const {
        std::size_t n = 0;
        for (const auto& e : std::filesystem::recursive_directory_iterator(path_)) {
            n += e.path().filename().string().rfind(prefix, 0) == 0 ? 1 : 0;
        }
        return n;
    }

private:
    std::string path_;
};

// A counter in MAP_SHARED memory: create it before fork(), then any process may arrive() and wait().
class Barrier {
public:
    explicit Barrier(int parties) : parties_(parties) {
        void* p = ::mmap(nullptr, sizeof(std::atomic<int>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        count_ = new (p) std::atomic<int>(0);
    }
    ~Barrier() { ::munmap(count_, sizeof(std::atomic<int>)); }
    void arrive() { count_->fetch_add(1); }
    // Waits until `parties` processes arrived; false on timeout. wait(0) only checks.
    bool wait(int seconds) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (count_->load() < parties_) {
            if (std::chrono::steady_clock::now() >= deadline) return false;
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
        return true;
    }

private:
    int parties_;
    std::atomic<int>* count_;
};

struct ChildResult {
    bool exited = false;
    int code = -1;
    int signal = 0;
    bool timed_out = false;
    static ChildResult ok() { return {true, 0, 0, false}; }
    static ChildResult killed(int sig) { return {false, -1, sig, false}; }
    bool operator==(const ChildResult&) const = default;
};

inline std::ostream& operator<<(std::ostream& os, const ChildResult& r) {
    if (r.timed_out) return os << "timed out (killed)";
    if (r.exited) return os << "exited with " << r.code;
    return os << "killed by signal " << r.signal;
}

// Runs fn() in a forked child; the child exits with fn's return value.
template <class Fn>
pid_t fork_child(Fn fn) {
    std::fflush(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
        int code = fn();
        std::fflush(nullptr);
        ::_exit(code);
    }
    return pid;
}

inline int child_fail(const std::string& why) {
    std::fprintf(stderr, "[child %d] %s\n", static_cast<int>(::getpid()), why.c_str());
    return 1;
}

inline ChildResult wait_child(pid_t pid, int seconds) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    int status = 0;
    while (true) {
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) return {};
        if (std::chrono::steady_clock::now() >= deadline) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, &status, 0);
            ChildResult t;
            t.timed_out = true;
            return t;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    if (WIFEXITED(status)) return {true, WEXITSTATUS(status), 0, false};
    return {false, -1, WTERMSIG(status), false};
}

// A message whose every byte is a function of (publisher, counter, position): any tearing, mixing of two
// messages or truncation makes parse() fail.
struct TestMessage {
    uint32_t publisher = 0;
    uint64_t counter = 0;

    static constexpr std::size_t kHeader = 16;

    static uint8_t pattern(uint32_t publisher, uint64_t counter, std::size_t i) {
        return static_cast<uint8_t>((counter * 131 + i * 7 + publisher * 29 + (counter >> 8)) & 0xFF);
    }

    static std::vector<uint8_t> make(uint32_t publisher, uint64_t counter, std::size_t size) {
        if (size < kHeader) size = kHeader;
        std::vector<uint8_t> m(size);
        const uint32_t len = static_cast<uint32_t>(size);
        std::memcpy(m.data(), &publisher, 4);
        std::memcpy(m.data() + 4, &len, 4);
        std::memcpy(m.data() + 8, &counter, 8);
        for (std::size_t i = kHeader; i < size; ++i) m[i] = pattern(publisher, counter, i);
        return m;
    }

    static bool parse(std::span<const uint8_t> m, TestMessage& out) {
        if (m.size() < kHeader) return false;
        uint32_t len = 0;
        std::memcpy(&out.publisher, m.data(), 4);
        std::memcpy(&len, m.data() + 4, 4);
        std::memcpy(&out.counter, m.data() + 8, 8);
        if (len != m.size()) return false;
        for (std::size_t i = kHeader; i < m.size(); ++i) {
            if (m[i] != pattern(out.publisher, out.counter, i)) return false;
        }
        return true;
    }
};

}  // namespace tensorpool::test
