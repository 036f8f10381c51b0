// Helpers for the client tests, which run producers and consumers as REAL processes on a private ipc bus and a
// private SHM base directory, kill them, and check what the others saw.
//
//   * SharedBox<T>      a T in MAP_SHARED memory, made before fork(): how children report to the parent;
//   * Processes         forks children (fork first, TransportHub after, in the child), kills what is left;
//   * fill/check_payload self-checking payloads: every byte a function of (seq, epoch, index), plus a checksum,
//                        so a torn or misattributed payload that was accepted is detected;
//   * frame_spec(seq)   the tensor layout of frame `seq` (a few dtypes/shapes/orders, explicit and inferred strides,
//                        an empty frame, one per pool size class), so consumers can check everything they are told;
//   * producer_main / consumer_main: the agents' loops as the children run them, reporting into shared memory.
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <new>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "shm_test_support.hpp"
#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/region_writer.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "transport_test_support.hpp"

#include "support/sanitizers.hpp"

namespace tensorpool::client::test {

using tensorpool::test::BusRoot;
using tensorpool::test::child_fail;
using tensorpool::test::ChildResult;
using shm::Dtype;
using shm::MajorOrder;
using shm::test::TempDir;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// ---- shared memory and processes --------------------------------------------------------------------------

// A T living in anonymous MAP_SHARED memory: create it before fork(), then parent and children see one object.
// T must be made of atomics (or be written before fork and only read after).
template <class T>
class SharedBox {
public:
    SharedBox() {
        void* p = ::mmap(nullptr, sizeof(T), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        value_ = new (p) T();
    }
    ~SharedBox() {
        value_->~T();
        ::munmap(value_, sizeof(T));
    }
    SharedBox(const SharedBox&) = delete;
    SharedBox& operator=(const SharedBox&) = delete;
    T* operator->() const { return value_; }
    T& operator*() const { return *value_; }

private:
    T* value_;
};

// A short string one process writes and another reads, guarded by a version counter (a tiny seqlock).
template <std::size_t N>
struct SharedText {
    std::atomic<uint32_t> version{0};
    std::array<std::atomic<char>, N> text{};

    void set(std::string_view s) {
        version.fetch_add(1, std::memory_order_acq_rel);  // odd: being written
        std::atomic_thread_fence(std::memory_order_release);
        for (std::size_t i = 0; i < N; ++i) {
            text[i].store(i < s.size() && i + 1 < N ? s[i] : '\0', std::memory_order_relaxed);
        }
        version.fetch_add(1, std::memory_order_release);
    }
    std::string get() const {
        while (true) {
            const uint32_t v1 = version.load(std::memory_order_acquire);
            std::string out;
            for (std::size_t i = 0; i < N; ++i) {
                const char c = text[i].load(std::memory_order_relaxed);
                if (c == '\0') break;
                out.push_back(c);
            }
            std::atomic_thread_fence(std::memory_order_acquire);
            if ((v1 & 1u) == 0 && version.load(std::memory_order_relaxed) == v1) return out;
            std::this_thread::yield();
        }
    }
};

// Forks children that die with the test process (PR_SET_PDEATHSIG), and SIGKILLs and reaps whatever is still
// running when the test ends, so a failed assertion never leaves processes behind.
class Processes {
public:
    Processes() = default;
    Processes(const Processes&) = delete;
    Processes& operator=(const Processes&) = delete;
    ~Processes() {
        for (pid_t pid : pids_) {
            ::kill(pid, SIGKILL);
            ::waitpid(pid, nullptr, 0);
        }
    }

    template <class Fn>
    pid_t start(Fn fn) {
        const pid_t parent = ::getpid();
        const pid_t pid = tensorpool::test::fork_child([&fn, parent]() -> int {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (::getppid() != parent) return 99;  // the parent died before prctl took effect
            return fn();
        });
        if (pid > 0) pids_.push_back(pid);
        return pid;
    }

    ChildResult wait(pid_t pid, int seconds) {
        ChildResult r = tensorpool::test::wait_child(pid, seconds);
        forget(pid);
        return r;
    }

    ChildResult kill(pid_t pid, int sig = SIGKILL) {
        ::kill(pid, sig);
        return wait(pid, 30);
    }

private:
    void forget(pid_t pid) { pids_.erase(std::remove(pids_.begin(), pids_.end(), pid), pids_.end()); }
    std::vector<pid_t> pids_;
};

using tensorpool::test::wait_until;  // polls a condition until it holds or a timeout passes

inline void pause_for(std::chrono::microseconds d) { std::this_thread::sleep_for(d); }

// ---- self-checking payloads -------------------------------------------------------------------------------

inline uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

inline uint64_t payload_word(uint64_t seq, uint64_t epoch, uint64_t w) {
    return mix64(seq * 0x9E3779B97F4A7C15ull ^ epoch * 0xC2B2AE3D27D4EB4Full ^ (w + 1) * 0x165667B19E3779F9ull);
}

inline uint64_t payload_checksum(const std::byte* p, std::size_t n) {
    uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a over 8-byte words, then the tail bytes
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        std::memcpy(&v, p + i, 8);
        h = (h ^ v) * 0x100000001B3ull;
    }
    for (; i < n; ++i) h = (h ^ static_cast<uint8_t>(p[i])) * 0x100000001B3ull;
    return h;
}

inline constexpr std::size_t kPayloadHeaderBytes = 24;  // seq, epoch, length

// Every byte is a function of (seq, epoch, index). Payloads of 32 bytes or more start with seq, epoch and the
// length and end with a checksum of everything before it.
inline void fill_payload(std::span<std::byte> out, uint64_t seq, uint64_t epoch) {
    const std::size_t n = out.size();
    for (std::size_t w = 0; w * 8 < n; ++w) {
        const uint64_t v = payload_word(seq, epoch, w);
        std::memcpy(out.data() + w * 8, &v, std::min<std::size_t>(8, n - w * 8));
    }
    if (n >= kPayloadHeaderBytes + 8) {
        const uint64_t len = n;
        std::memcpy(out.data(), &seq, 8);
        std::memcpy(out.data() + 8, &epoch, 8);
        std::memcpy(out.data() + 16, &len, 8);
        const uint64_t sum = payload_checksum(out.data(), n - 8);
        std::memcpy(out.data() + n - 8, &sum, 8);
    }
}

// True if `in` is exactly the payload of frame (seq, epoch): the checksum over what was read must match, and every
// byte must be the expected one. Reads `in` once per byte pair (checksum pass + compare pass), in place.
inline bool check_payload(std::span<const std::byte> in, uint64_t seq, uint64_t epoch) {
    thread_local std::vector<std::byte> expected;
    const std::size_t n = in.size();
    if (expected.size() < n) expected.resize(n);
    fill_payload(std::span<std::byte>(expected.data(), n), seq, epoch);
    if (n >= kPayloadHeaderBytes + 8) {
        uint64_t stored;
        std::memcpy(&stored, in.data() + n - 8, 8);
        if (payload_checksum(in.data(), n - 8) != stored) return false;
    }
    return n == 0 || std::memcmp(in.data(), expected.data(), n) == 0;
}

// ---- the frames every test producer publishes -------------------------------------------------------------

struct FrameSpec {
    shm::TensorShape shape;
    uint32_t length = 0;
    std::array<int64_t, shm::kMaxDims> resolved_strides{};  // what the consumer must report
    uint16_t pool_id = 0;                                   // smallest fitting pool of standard_pools() (W-9-3)
};

inline constexpr int kFrameKinds = 6;
inline constexpr uint32_t kLargestFrame = 65536;

// Three size classes: every frame kind lands in a known pool.
inline std::vector<PoolConfig> standard_pools() {
    return {PoolConfig{1, 1024}, PoolConfig{2, 16384}, PoolConfig{3, 65536}};
}

inline FrameSpec frame_spec(uint64_t seq) {
    FrameSpec s;
    shm::TensorShape& t = s.shape;
    t.major_order = MajorOrder::ROW;
    switch (seq % kFrameKinds) {
        case 0:  // float32 4x8, strides inferred
            t.dtype = Dtype::FLOAT32;
            t.ndims = 2;
            t.dims = {4, 8};
            s.length = 128;
            s.resolved_strides = {32, 4};
            s.pool_id = 1;
            break;
        case 1:  // uint8 3x5x7 with explicit padded strides
            t.dtype = Dtype::UINT8;
            t.ndims = 3;
            t.dims = {3, 5, 7};
            t.strides = {48, 8, 1};
            s.length = 144;
            s.resolved_strides = {48, 8, 1};
            s.pool_id = 1;
            break;
        case 2:  // int64 vector of 1000
            t.dtype = Dtype::INT64;
            t.ndims = 1;
            t.dims = {1000};
            s.length = 8000;
            s.resolved_strides = {8};
            s.pool_id = 2;
            break;
        case 3:  // float64 2x3 column-major, strides inferred
            t.dtype = Dtype::FLOAT64;
            t.major_order = MajorOrder::COLUMN;
            t.ndims = 2;
            t.dims = {2, 3};
            s.length = 48;
            s.resolved_strides = {8, 16};
            s.pool_id = 1;
            break;
        case 4:  // an empty frame: committed and described, no payload bytes (W-8-20, W-8-21)
            t.dtype = Dtype::FLOAT32;
            t.ndims = 1;
            t.dims = {0};
            s.length = 0;
            s.resolved_strides = {4};
            s.pool_id = 1;
            break;
        default:  // uint16 128x256: fills the largest pool's slot exactly
            t.dtype = Dtype::UINT16;
            t.ndims = 2;
            t.dims = {128, 256};
            s.length = kLargestFrame;
            s.resolved_strides = {512, 2};
            s.pool_id = 3;
            break;
    }
    return s;
}

inline FrameOptions frame_options(uint64_t seq) {
    FrameOptions o;
    o.capture_timestamp_ns = 1000 + seq;
    o.meta_version = static_cast<uint32_t>(seq & 0xFFFF);
    o.trace_id = seq + 1;
    o.publish_timestamp = true;
    return o;
}

// Everything the consumer reports about frame `seq` besides the payload, against what the producer published.
inline bool frame_matches_spec(const FrameView& f) {
    const FrameSpec s = frame_spec(f.seq());
    if (f.dtype() != s.shape.dtype || f.major_order() != s.shape.major_order) return false;
    if (f.ndims() != s.shape.ndims) return false;
    for (std::size_t i = 0; i < s.shape.ndims; ++i) {
        if (f.dims()[i] != s.shape.dims[i] || f.strides()[i] != s.resolved_strides[i]) return false;
    }
    if (f.payload().size() != s.length || f.pool_id() != s.pool_id) return false;
    if (f.element_bytes() != shm::dtype_element_bytes(s.shape.dtype)) return false;
    const FrameOptions o = frame_options(f.seq());
    if (f.capture_timestamp_ns() != o.capture_timestamp_ns || f.meta_version() != o.meta_version) return false;
    if (f.trace_id() != o.trace_id || !f.publish_timestamp_ns().has_value()) return false;
    return true;
}

// Publishes frame next_seq() by offer() or by try_claim()/commit() (payload written in place). False (and `why`)
// if the producer did not commit it as that seq.
inline bool publish_test_frame(Producer& p, bool use_claim, std::string& why) {
    thread_local std::vector<std::byte> buf(kLargestFrame);
    const uint64_t seq = p.next_seq();
    const FrameSpec s = frame_spec(seq);
    PublishResult r{PublishOutcome::invalid};
    if (!use_claim) {
        std::span<std::byte> payload(buf.data(), s.length);
        fill_payload(payload, seq, p.epoch());
        r = p.offer(s.shape, payload, frame_options(seq));
    } else {
        FrameClaim claim;
        const PublishResult c = p.try_claim(s.length, claim);
        if (!claim.active() || c.seq != seq || claim.payload().size() != s.length) {
            why = "try_claim(" + std::to_string(s.length) + ") for seq " + std::to_string(seq) + " failed";
            return false;
        }
        fill_payload(claim.payload(), seq, p.epoch());
        r = claim.commit(s.shape, frame_options(seq));
    }
    if (!r.committed() || r.seq != seq || p.next_seq() != seq + 1) {
        why = "frame " + std::to_string(seq) + " was not committed (outcome " +
              std::to_string(static_cast<int>(r.outcome)) + ", seq " + std::to_string(r.seq) + ")";
        return false;
    }
    return true;
}

// ---- the producer child -----------------------------------------------------------------------------------

struct ProducerShared {
    std::atomic<int> stop{0};
    std::atomic<int> ready{0};
    std::atomic<uint64_t> epoch{0};
    std::atomic<uint64_t> target{0};     // publish until next_seq() reaches this
    std::atomic<uint64_t> published{0};  // next_seq() after the last frame
    std::atomic<uint64_t> consumers{0};
    std::atomic<uint64_t> frames_committed{0};
    std::atomic<uint64_t> frames_no_pool{0};
    std::atomic<uint64_t> descriptors_not_sent{0};
    std::atomic<uint64_t> announces_sent{0};
    std::atomic<uint64_t> not_published{0};  // committed but the descriptor was not sent
    std::atomic<uint64_t> progress_sent{0};
    std::atomic<uint64_t> streams_granted{0};  // per-consumer streams open now
    std::atomic<uint64_t> grants{0};
    std::atomic<uint64_t> declines{0};
    std::atomic<uint64_t> streams_closed{0};
    std::atomic<uint64_t> descriptors_rate_capped{0};
    std::atomic<uint64_t> errors{0};
    std::atomic<int64_t> last_loop_ns{0};  // CLOCK_MONOTONIC at the start of the child's latest loop turn
    SharedText<512> error;
    SharedText<512> header_uri;
};

struct ProducerChild {
    ProducerChild(transport::TransportOptions t, ProducerConfig c) : transport(std::move(t)), config(std::move(c)) {}
    transport::TransportOptions transport;
    ProducerConfig config;
    bool continuous = false;  // publish forever (ignore `target`)
    bool use_claims = true;   // every other block of kFrameKinds frames by try_claim()/commit(), else offer()
    int burst = 1;            // frames per publishing turn
    int pace_us = 0;          // pause between turns
    // Runs once, just before frame `hook_at_seq` (if set): the test's own checks on the producer API.
    std::function<bool(Producer&, std::string&)> hook;
    uint64_t hook_at_seq = std::numeric_limits<uint64_t>::max();
};

inline ProducerConfig test_producer_config(const std::string& shm_base_dir, uint32_t nslots) {
    ProducerConfig c;
    c.stream_id = 10000;
    c.shm_base_dir = shm_base_dir;
    c.ns = "clienttest";
    c.header_nslots = nslots;
    c.pools = standard_pools();
    c.announce_period_ns = 50'000'000;
    c.qos_period_ns = 100'000'000;
    return c;
}

inline int producer_main(const ProducerChild& pc, ProducerShared& sh) {
    transport::TransportHub hub(pc.transport);
    auto created = Producer::create(hub, pc.config);
    if (!created) return child_fail(std::string("Producer::create: ") + created.error().message());
    Producer& p = **created;
    sh.header_uri.set(p.header_region_uri());
    sh.epoch.store(p.epoch());
    sh.ready.store(1);
    int64_t next_turn_ns = 0;
    bool hook_done = false;
    std::string why;
    auto mirror = [&] {
        const ProducerStats& st = p.stats();
        sh.consumers.store(st.consumers, std::memory_order_relaxed);
        sh.frames_committed.store(st.frames_committed, std::memory_order_relaxed);
        sh.frames_no_pool.store(st.frames_no_pool, std::memory_order_relaxed);
        sh.descriptors_not_sent.store(st.descriptors_not_sent, std::memory_order_relaxed);
        sh.announces_sent.store(st.announces_sent, std::memory_order_relaxed);
        sh.progress_sent.store(st.progress_sent, std::memory_order_relaxed);
        const ConsumerRegistryStats& rs = p.consumers().stats();
        sh.streams_granted.store(rs.streams_granted, std::memory_order_relaxed);
        sh.grants.store(rs.grants, std::memory_order_relaxed);
        sh.declines.store(rs.declines, std::memory_order_relaxed);
        sh.streams_closed.store(rs.streams_closed, std::memory_order_relaxed);
        sh.descriptors_rate_capped.store(rs.descriptors_rate_capped, std::memory_order_relaxed);
        sh.published.store(p.next_seq(), std::memory_order_release);
    };
    while (sh.stop.load(std::memory_order_acquire) == 0) {
        const int64_t now = monotonic_ns();
        sh.last_loop_ns.store(now, std::memory_order_relaxed);
        int work = p.do_work(now);
        const uint64_t target = pc.continuous ? std::numeric_limits<uint64_t>::max() : sh.target.load();
        if (p.next_seq() < target && now >= next_turn_ns) {
            for (int b = 0; b < pc.burst && p.next_seq() < target; ++b) {
                if (!hook_done && pc.hook && p.next_seq() == pc.hook_at_seq) {
                    hook_done = true;
                    if (!pc.hook(p, why)) {
                        sh.errors.fetch_add(1);
                        sh.error.set(why);
                    }
                }
                // Alternate offer() and try_claim() by blocks of kFrameKinds, so every kind goes both ways.
                const bool claim = pc.use_claims && ((p.next_seq() / kFrameKinds) & 1u) != 0;
                if (!publish_test_frame(p, claim, why)) {
                    sh.errors.fetch_add(1);
                    sh.error.set(why);
                }
            }
            next_turn_ns = now + int64_t{pc.pace_us} * 1000;
            ++work;
        }
        mirror();
        if (work == 0) pause_for(20us);
    }
    mirror();
    return 0;
}

// ---- the consumer child -----------------------------------------------------------------------------------

struct ConsumerShared {
    std::atomic<int> stop{0};
    std::atomic<int> pause{0};   // stop calling poll_frames() (do_work() goes on)
    std::atomic<int> paused{0};  // acknowledged: no poll_frames() call runs or will run until pause is cleared
    std::atomic<int> ready{0};
    std::atomic<uint32_t> consumer_id{0};

    // Frames as the handler judged them. "good" = still_valid() returned true after the handler read everything.
    std::atomic<uint64_t> good{0};
    std::atomic<uint64_t> torn{0};         // still_valid() returned false: discarded
    std::atomic<uint64_t> torn_bad{0};     // ... and what was read was indeed wrong (would have been a bad frame)
    std::atomic<uint64_t> bad_payload{0};  // good, yet the payload or its checksum is wrong
    std::atomic<uint64_t> bad_layout{0};   // good, yet dtype/shape/strides/pool/metadata are wrong
    std::atomic<uint64_t> bad_epoch{0};    // good, yet not of the consumer's mapped epoch
    std::atomic<uint64_t> old_epoch{0};    // good, of an epoch the consumer had already moved away from
    std::atomic<uint64_t> first_bad_seq{std::numeric_limits<uint64_t>::max()};
    std::atomic<uint64_t> last_good_epoch{0};
    std::atomic<uint64_t> last_good_seq{0};
    std::atomic<int64_t> last_loop_ns{0};  // CLOCK_MONOTONIC at the start of the child's latest loop turn
    // Good frames per epoch, for the first epochs seen.
    static constexpr std::size_t kEpochs = 8;
    std::array<std::atomic<uint64_t>, kEpochs> epoch_id{};
    std::array<std::atomic<uint64_t>, kEpochs> epoch_good{};

    // The consumer's own stats, mirrored after every loop turn.
    std::atomic<uint64_t> frames_accepted{0};
    std::atomic<uint64_t> drops_gap{0};
    std::atomic<uint64_t> drops_late{0};
    std::atomic<uint64_t> drops_invalid{0};
    std::atomic<uint64_t> drops_unmapped{0};
    std::atomic<uint64_t> torn_detected{0};
    std::atomic<uint64_t> resyncs{0};
    std::atomic<uint64_t> announces_accepted{0};
    std::atomic<uint64_t> announces_ignored{0};
    std::atomic<uint64_t> mappings{0};
    std::atomic<uint64_t> mapping_failures{0};
    std::atomic<uint64_t> last_seq{0};
    std::atomic<uint64_t> mapped_epoch{0};
    std::atomic<int> state{0};
    std::atomic<uint64_t> drops_rate_limited{0};
    std::atomic<uint64_t> configs_received{0};
    std::atomic<uint64_t> stream_declines{0};
    std::atomic<int> per_consumer_descriptor{0};
    std::atomic<int> rate_limited_locally{0};
    SharedText<512> last_error;
    SharedText<512> last_response;

    // Probe: the parent bumps probe_request; the child answers with how many of its /proc/self/maps lines map
    // any of ConsumerChild::probe_paths, then sets probe_answered = probe_request.
    std::atomic<int> probe_request{0};
    std::atomic<int> probe_answered{0};
    std::atomic<int> probe_mappings{-1};

    uint64_t good_in_epoch(uint64_t epoch) const {
        for (std::size_t i = 0; i < kEpochs; ++i) {
            if (epoch_id[i].load() == epoch) return epoch_good[i].load();
        }
        return 0;
    }
    bool mapped() const { return state.load() == static_cast<int>(MappingState::mapped); }
    uint64_t bad() const { return bad_payload.load() + bad_layout.load() + bad_epoch.load() + old_epoch.load(); }
};

struct ConsumerChild {
    ConsumerChild(transport::TransportOptions t, ConsumerConfig c) : transport(std::move(t)), config(std::move(c)) {}
    transport::TransportOptions transport;
    ConsumerConfig config;
    bool check_layout = true;     // frames follow frame_spec()/frame_options()
    bool validate_twice = false;  // call still_valid() after the layout checks and again after the payload
    std::vector<std::string> probe_paths;
};

inline ConsumerConfig test_consumer_config(const std::string& allowed_dir) {
    ConsumerConfig c;
    c.stream_id = 10000;
    c.allowed_dirs = {allowed_dir};
    c.announce_period_ns = 50'000'000;
    c.hello_period_ns = 100'000'000;
    c.qos_period_ns = 100'000'000;
    return c;
}

// A 1-D UINT8 tensor of `n` bytes, strides inferred.
inline shm::TensorShape byte_shape(int32_t n) {
    shm::TensorShape t;
    t.dtype = wire::control::Dtype::UINT8;
    t.major_order = wire::control::MajorOrder::ROW;
    t.ndims = 1;
    t.dims = {n};
    return t;
}

// A FrameDescriptor of stream 10000 as a producer would send it (no publish time, not traced): for tests that forge
// or replay descriptors.
inline std::vector<uint8_t> forge_descriptor(uint64_t epoch, uint64_t seq) {
    std::vector<uint8_t> buf(128);
    wire::control::FrameDescriptor::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(10000).epoch(epoch).seq(seq).traceId(0).metaVersion(0);
    e.timestampNs(wire::control::FrameDescriptor::Encoder::timestampNsNullValue());
    const auto n = e.finish();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

// Polls `sub` until it is empty and hands every message that decodes as M to `fn` (other templates on the same
// stream are skipped); returns how many did.
template <class M, class Fn>
int drain_messages(transport::Subscription& sub, Fn&& fn) {
    int n = 0;
    while (sub.poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
        if (auto d = M::Decoder::wrap(m.data(), m.size())) {
            fn(*d);
            ++n;
        }
    }, 64) > 0) {
    }
    return n;
}

// A producer and its consumers in this process, on one private bus and SHM directory, driven by the test's own loop
// (no threads, no children): for tests whose subject is a message, a counter or an exact interleaving rather than
// process isolation. Taps the test adds to `hub` before start() see the agents' very first messages.
struct InProcess {
    BusRoot bus;
    TempDir shm_dir{"/dev/shm"};
    transport::TransportHub hub{bus.options()};
    std::unique_ptr<Producer> producer;
    std::vector<std::unique_ptr<Consumer>> consumers;

    // The producer's shm_base_dir and every consumer's allowed_dirs are set to shm_dir. Returns "" or what failed,
    // so that ASSERT_EQ(t.start(...), "") shows it.
    std::string start(ProducerConfig pc, const std::vector<ConsumerConfig>& configs) {
        pc.shm_base_dir = shm_dir.path();
        auto p = Producer::create(hub, pc);
        if (!p) return std::string("Producer::create: ") + p.error().message();
        producer = std::move(*p);
        for (ConsumerConfig cfg : configs) {
            cfg.allowed_dirs = {shm_dir.path()};
            auto c = Consumer::create(hub, cfg);
            if (!c) return std::string("Consumer::create: ") + c.error().message();
            consumers.push_back(std::move(*c));
        }
        return "";
    }
    std::string start(const std::vector<ConsumerConfig>& configs) { return start(test_producer_config("", 64), configs); }

    Producer& p() { return *producer; }
    Consumer& c(std::size_t i = 0) { return *consumers.at(i); }

    // Turns until `pred` holds (true) or 10 s pass (false); each turn runs every agent's do_work, then `turn`
    // (a poll_frames, say).
    template <class Pred, class Turn>
    bool spin(Pred pred, Turn turn) {
        return wait_until([&] {
            producer->do_work(monotonic_ns());
            for (auto& c : consumers) c->do_work(monotonic_ns());
            turn();
            return pred();
        }, 10s);
    }
    template <class Pred>
    bool spin(Pred pred) {
        return spin(pred, [] {});
    }
    bool all_mapped() const {
        return std::all_of(consumers.begin(), consumers.end(),
                           [](const auto& c) { return c->state() == MappingState::mapped; });
    }
    // Why the consumers are not mapped, for a failed assertion.
    std::string mapping_errors() const {
        std::string out;
        for (const auto& c : consumers) out += c->last_mapping_error() + "; ";
        return out;
    }
};

inline void mirror_consumer(const Consumer& c, ConsumerShared& sh, std::string& last_error) {
    const ConsumerStats& st = c.stats();
    sh.frames_accepted.store(st.frames_accepted, std::memory_order_relaxed);
    sh.drops_gap.store(st.drops_gap, std::memory_order_relaxed);
    sh.drops_late.store(st.drops_late, std::memory_order_relaxed);
    sh.drops_invalid.store(st.drops_invalid, std::memory_order_relaxed);
    sh.drops_unmapped.store(st.drops_unmapped, std::memory_order_relaxed);
    sh.torn_detected.store(st.torn_detected, std::memory_order_relaxed);
    sh.resyncs.store(st.resyncs, std::memory_order_relaxed);
    sh.announces_accepted.store(st.announces_accepted, std::memory_order_relaxed);
    sh.announces_ignored.store(st.announces_ignored, std::memory_order_relaxed);
    sh.mappings.store(st.mappings, std::memory_order_relaxed);
    sh.mapping_failures.store(st.mapping_failures, std::memory_order_relaxed);
    sh.last_seq.store(st.last_seq, std::memory_order_relaxed);
    sh.mapped_epoch.store(c.mapped_epoch(), std::memory_order_relaxed);
    sh.drops_rate_limited.store(st.drops_rate_limited, std::memory_order_relaxed);
    sh.configs_received.store(st.configs_received, std::memory_order_relaxed);
    sh.stream_declines.store(st.stream_declines, std::memory_order_relaxed);
    sh.per_consumer_descriptor.store(c.streams().per_consumer_descriptor ? 1 : 0, std::memory_order_relaxed);
    sh.rate_limited_locally.store(c.streams().rate_limited_locally ? 1 : 0, std::memory_order_relaxed);
    if (st.configs_received != 0 && sh.last_response.version.load() == 0 && !c.last_control_response().empty()) {
        sh.last_response.set(c.last_control_response());
    }
    if (c.last_mapping_error() != last_error) {
        last_error = c.last_mapping_error();
        sh.last_error.set(last_error);
    }
    sh.state.store(static_cast<int>(c.state()), std::memory_order_release);
}

inline int consumer_main(const ConsumerChild& cc, ConsumerShared& sh) {
    transport::TransportHub hub(cc.transport);
    auto created = Consumer::create(hub, cc.config);
    if (!created) return child_fail(std::string("Consumer::create: ") + created.error().message());
    Consumer& c = **created;
    std::string last_error;
    sh.consumer_id.store(c.consumer_id());
    mirror_consumer(c, sh, last_error);
    sh.ready.store(1);

    uint64_t current_epoch = 0;
    std::vector<uint64_t> retired_epochs;
    retired_epochs.reserve(1024);
    auto handler = [&](const FrameView& f) {
        // Read everything first (payload in place), then ask whether it was stable (W-8-27, W-8-31).
        const bool layout_ok = !cc.check_layout || frame_matches_spec(f);
        // Optionally check the header values before reading the payload too (a reader that sizes a buffer from
        // them would): asking twice must still count the frame once.
        const bool early_ok = !cc.validate_twice || f.still_valid();
        const bool payload_ok = check_payload(f.payload(), f.seq(), f.epoch());
        const bool epoch_ok = f.epoch() == c.mapped_epoch();
        if (!f.still_valid() || !early_ok) {
            sh.torn.fetch_add(1, std::memory_order_relaxed);
            if (!payload_ok || !layout_ok) sh.torn_bad.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        // An epoch the consumer already moved away from must never come back (W-15.21-7, -8).
        const bool retired = std::find(retired_epochs.begin(), retired_epochs.end(), f.epoch()) != retired_epochs.end();
        const bool bad = !payload_ok || !layout_ok || !epoch_ok || retired;
        if (!payload_ok) sh.bad_payload.fetch_add(1);
        if (!layout_ok) sh.bad_layout.fetch_add(1);
        if (!epoch_ok) sh.bad_epoch.fetch_add(1);
        if (retired) sh.old_epoch.fetch_add(1);
        if (bad && sh.first_bad_seq.load() == std::numeric_limits<uint64_t>::max()) sh.first_bad_seq.store(f.seq());
        if (f.epoch() != current_epoch) {
            if (current_epoch != 0) retired_epochs.push_back(current_epoch);
            current_epoch = f.epoch();
        }
        for (std::size_t i = 0; i < ConsumerShared::kEpochs; ++i) {
            const uint64_t id = sh.epoch_id[i].load();
            if (id == f.epoch() || id == 0) {
                sh.epoch_id[i].store(f.epoch());
                sh.epoch_good[i].fetch_add(1);
                break;
            }
        }
        sh.last_good_seq.store(f.seq(), std::memory_order_relaxed);
        sh.last_good_epoch.store(f.epoch(), std::memory_order_relaxed);
        sh.good.fetch_add(1, std::memory_order_release);
    };

    while (sh.stop.load(std::memory_order_acquire) == 0) {
        const int64_t now = monotonic_ns();
        sh.last_loop_ns.store(now, std::memory_order_relaxed);
        int work = c.do_work(now);
        if (sh.pause.load(std::memory_order_acquire) != 0) {
            sh.paused.store(1, std::memory_order_release);
        } else {
            sh.paused.store(0, std::memory_order_release);
            work += c.poll_frames(handler, 64);
        }
        mirror_consumer(c, sh, last_error);
        const int req = sh.probe_request.load(std::memory_order_acquire);
        if (req != sh.probe_answered.load(std::memory_order_relaxed)) {
            int n = 0;
            for (const auto& path : cc.probe_paths) n += shm::test::mappings_of(path);
            sh.probe_mappings.store(n);
            sh.probe_answered.store(req, std::memory_order_release);
        }
        if (work == 0) pause_for(20us);
    }
    mirror_consumer(c, sh, last_error);
    return 0;
}

// Asks a consumer child how many of its probe paths it has mapped right now; -1 if it did not answer.
inline int probe_mappings(ConsumerShared& sh) {
    const int req = sh.probe_request.fetch_add(1) + 1;
    if (!wait_until([&] { return sh.probe_answered.load() == req; }, 10s)) return -1;
    return sh.probe_mappings.load();
}

inline std::string describe(const ConsumerShared& c) {
    std::string s = "consumer{good=" + std::to_string(c.good.load()) + " torn=" + std::to_string(c.torn.load()) +
                    " torn_bad=" + std::to_string(c.torn_bad.load()) +
                    " bad_payload=" + std::to_string(c.bad_payload.load()) + " bad_layout=" +
                    std::to_string(c.bad_layout.load()) + " bad_epoch=" + std::to_string(c.bad_epoch.load()) +
                    " old_epoch=" + std::to_string(c.old_epoch.load()) + " | accepted=" +
                    std::to_string(c.frames_accepted.load()) + " gap=" + std::to_string(c.drops_gap.load()) +
                    " late=" + std::to_string(c.drops_late.load()) +
                    " invalid=" + std::to_string(c.drops_invalid.load()) +
                    " unmapped=" + std::to_string(c.drops_unmapped.load()) + " torn_detected=" +
                    std::to_string(c.torn_detected.load()) + " resyncs=" + std::to_string(c.resyncs.load()) +
                    " ann_ok=" + std::to_string(c.announces_accepted.load()) + " ann_ignored=" +
                    std::to_string(c.announces_ignored.load()) + " mappings=" + std::to_string(c.mappings.load()) +
                    " map_fail=" + std::to_string(c.mapping_failures.load()) + " last_seq=" +
                    std::to_string(c.last_seq.load()) + " state=" + std::to_string(c.state.load()) + " epoch=" +
                    std::to_string(c.mapped_epoch.load()) + " error='" + c.last_error.get() + "'}";
    return s;
}

inline std::string describe(const ProducerShared& p) {
    return "producer{epoch=" + std::to_string(p.epoch.load()) + " published=" + std::to_string(p.published.load()) +
           " committed=" + std::to_string(p.frames_committed.load()) + " no_pool=" +
           std::to_string(p.frames_no_pool.load()) + " not_sent=" + std::to_string(p.descriptors_not_sent.load()) +
           " consumers=" + std::to_string(p.consumers.load()) + " errors=" + std::to_string(p.errors.load()) +
           " error='" + p.error.get() + "'}";
}

// ---- hand-made regions and messages -----------------------------------------------------------------------

// Region files made with the shm layer directly, the way a producer makes them, but never announced by anyone:
// the tests announce them by hand.
struct HandRegions {
    uint64_t epoch = 0;
    uint32_t nslots = 0;
    std::string header_path;
    std::string header_uri;
    std::vector<std::pair<PoolConfig, std::string>> pools;  // config, URI
    std::vector<std::string> pool_paths;
    std::vector<std::string> paths() const {
        std::vector<std::string> out{header_path};
        out.insert(out.end(), pool_paths.begin(), pool_paths.end());
        return out;
    }
};

inline Result<HandRegions> make_hand_regions(const std::string& base, uint32_t stream_id, uint64_t epoch,
                                             uint32_t nslots, const std::vector<PoolConfig>& pools) {
    auto layout = shm::make_canonical_layout(base, "clienttest", stream_id, epoch);
    if (!layout) return layout.error();
    auto dir = shm::create_epoch_directory(*layout);
    if (!dir) return dir.error();
    HandRegions r;
    r.epoch = epoch;
    r.nslots = nslots;
    const uint64_t now = static_cast<uint64_t>(monotonic_ns());
    auto sb = shm::Superblock::header_ring(stream_id, epoch, nslots);
    sb.start_timestamp_ns = sb.activity_timestamp_ns = now;
    auto ring = shm::create_region(layout->header_ring_path(), sb);
    if (!ring) return ring.error();
    r.header_path = ring->path();
    auto uri = shm::format_region_uri(shm::RegionUri{ring->path(), false});
    if (!uri) return uri.error();
    r.header_uri = *uri;
    for (const auto& pc : pools) {
        auto psb = shm::Superblock::payload_pool(stream_id, epoch, pc.pool_id, nslots, pc.stride_bytes);
        psb.start_timestamp_ns = psb.activity_timestamp_ns = now;
        auto region = shm::create_region(layout->pool_path(pc.pool_id), psb);
        if (!region) return region.error();
        auto puri = shm::format_region_uri(shm::RegionUri{region->path(), false});
        if (!puri) return puri.error();
        r.pools.emplace_back(pc, *puri);
        r.pool_paths.push_back(region->path());
    }
    return r;
}

// What a hand-encoded ShmPoolAnnounce says; defaults describe `regions` truthfully.
struct AnnounceSpec {
    uint32_t stream_id = 10000;
    uint64_t epoch = 0;
    uint64_t timestamp_ns = 0;
    wire::control::ClockDomain clock = wire::control::ClockDomain::MONOTONIC;
    uint32_t header_nslots = 0;
    uint32_t layout_version = shm::kLayoutVersion;
    uint16_t header_slot_bytes = 256;
    std::string header_uri;
    struct Pool {
        uint16_t pool_id;
        uint32_t nslots;
        uint32_t stride;
        std::string uri;
    };
    std::vector<Pool> pools;

    static AnnounceSpec truthful(const HandRegions& r, uint64_t timestamp_ns) {
        AnnounceSpec a;
        a.epoch = r.epoch;
        a.timestamp_ns = timestamp_ns;
        a.header_nslots = r.nslots;
        a.header_uri = r.header_uri;
        for (const auto& [pc, uri] : r.pools) a.pools.push_back(Pool{pc.pool_id, r.nslots, pc.stride_bytes, uri});
        return a;
    }
};

inline std::vector<uint8_t> encode_announce(const AnnounceSpec& a) {
    namespace wc = wire::control;
    std::vector<uint8_t> buf(8192);
    wc::ShmPoolAnnounce::Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    e.streamId(a.stream_id).producerId(77).epoch(a.epoch).announceTimestampNs(a.timestamp_ns);
    e.announceClockDomain(a.clock).layoutVersion(a.layout_version).headerNslots(a.header_nslots);
    e.headerSlotBytes(a.header_slot_bytes);
    auto g = e.payloadPoolsCount(a.pools.size());
    for (const auto& p : a.pools) {
        g.next().poolId(p.pool_id).poolNslots(p.nslots).strideBytes(p.stride).regionUri(p.uri);
    }
    e.headerRegionUri(a.header_uri);
    auto n = e.finish();
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

}  // namespace tensorpool::client::test
