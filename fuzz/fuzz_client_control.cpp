// libFuzzer target: arbitrary bytes as transport messages into the client layer. Every message a Producer or a
// Consumer parses from the network comes from here: ShmPoolAnnounce (announce stream), FrameDescriptor
// (descriptor stream), ConsumerConfig / ControlResponse / FrameProgress (control stream, FrameProgress read by
// poll_progress), metadata messages, and on the producer's side ConsumerHello and QosConsumer (control and QoS
// streams), including per-consumer stream requests that get granted. Input format: fuzz_client_control.hpp.
//
// One process-wide world, made on the first input: a private directory /dev/shm/tpfuzz-client-XXXXXX (mode 0700)
// holding the ipc bus and the SHM regions, a TransportHub, a Producer (16 header slots, one 4 KiB pool, at most
// kMaxPerConsumerStreams per-consumer streams), a Consumer with supports_progress, and raw publications on each
// shared stream. The directory is removed at exit (atexit), and by a watchdog process when the fuzzer dies
// without running atexit (a crash, a timeout, a signal).
//
// Each input starts from the same state: the clock (virtual, passed to do_work) jumps 10 s, so every consumer
// the producer heard of goes stale and its per-consumer streams close (W-5-3), the consumer finds the producer's
// activity stale and unmaps; a ConsumerConfig without per-consumer streams puts the consumer back on the shared
// streams; then the producer announces and the consumer maps again. What per-consumer streams created under the
// bus directory is removed, so nothing grows across inputs.
//
// Checks: the consumer never hands out a frame or a progress prefix whose bytes are not the ones the producer
// wrote for that seq while still_valid() says they are; a progress report never claims more than values_len;
// the producer never holds more per-consumer streams than its limit.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fuzz_client_control.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/wire/byte_io.hpp"
#include "tensorpool/wire/gen/control.hpp"

// UBSan findings stop the run (the fuzz preset does not build with -fno-sanitize-recover).
extern "C" const char* __ubsan_default_options() { return "halt_on_error=1:print_stacktrace=1"; }

namespace {

using namespace tensorpool;
using namespace tpfuzz;
namespace wc = tensorpool::wire::control;
namespace fs = std::filesystem;

constexpr int64_t kMs = 1'000'000;
constexpr std::size_t kHeader = wire::MessageHeader::kSize;

[[noreturn]] void fail(const char* what, const char* detail = "") {
    std::fprintf(stderr, "fuzz_client_control: %s %s\n", what, detail);
    std::abort();
}

struct Reader {
    const uint8_t* p;
    std::size_t n;
    uint8_t u8() {
        if (n == 0) return 0;
        --n;
        return *p++;
    }
    uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
};

uint8_t pattern(uint64_t seq, std::size_t i) { return static_cast<uint8_t>(seq * 131 + i * 7 + (i >> 8)); }

void fill(std::span<std::byte> out, uint64_t seq) {
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = static_cast<std::byte>(pattern(seq, i));
}

bool matches(std::span<const std::byte> in, uint64_t seq) {
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != static_cast<std::byte>(pattern(seq, i))) return false;
    }
    return true;
}

// A tensor layout picked by `s` for `length` bytes; the length is rounded down to whole elements.
client::TensorShape shape_for(uint8_t s, uint32_t& length) {
    static constexpr shm::Dtype kTypes[4] = {shm::Dtype::UINT8, shm::Dtype::UINT16, shm::Dtype::FLOAT32,
                                             shm::Dtype::FLOAT64};
    static constexpr int32_t kSizes[4] = {1, 2, 4, 8};
    const int32_t esz = kSizes[s & 3];
    const int32_t n = static_cast<int32_t>(length) / esz;
    length = static_cast<uint32_t>(n * esz);
    client::TensorShape t;
    t.dtype = kTypes[s & 3];
    t.major_order = (s & 0x08) != 0 ? shm::MajorOrder::COLUMN : shm::MajorOrder::ROW;
    const int32_t cols = n % 4 == 0 && n != 0 ? 4 : 1;
    const int32_t rows = n / cols;
    if ((s & 0x04) == 0) {
        t.ndims = 1;
        t.dims[0] = n;
    } else {
        t.ndims = 2;
        t.dims = {rows, cols};
    }
    if ((s & 0x40) != 0) {  // explicit contiguous strides instead of inferred ones
        if (t.ndims == 1) {
            t.strides[0] = esz;
        } else if (t.major_order == shm::MajorOrder::ROW) {
            t.strides = {cols * esz, esz};
        } else {
            t.strides = {esz, rows * esz};
        }
    }
    switch ((s >> 4) & 3) {
        case 1:  // rows, stride one row
            t.progress_unit = shm::ProgressUnit::ROWS;
            t.progress_stride_bytes = static_cast<uint32_t>((t.ndims == 1 ? 1 : cols) * esz);
            break;
        case 2:  // columns, stride one column
            t.progress_unit = shm::ProgressUnit::COLUMNS;
            t.progress_stride_bytes = static_cast<uint32_t>((t.ndims == 1 ? 1 : rows) * esz);
            break;
        case 3:  // a stride that fits no layout
            t.progress_unit = (s & 0x80) != 0 ? shm::ProgressUnit::ROWS : static_cast<shm::ProgressUnit>(7);
            t.progress_stride_bytes = static_cast<uint32_t>(esz * 3 + 1);
            break;
        default:
            break;
    }
    return t;
}

void start_watchdog(const std::string& dir);

struct World {
    std::string root;
    std::unique_ptr<transport::TransportHub> hub;
    std::unique_ptr<client::Producer> producer;
    std::unique_ptr<client::Consumer> consumer;
    std::array<std::unique_ptr<transport::Publication>, 5> raw;
    client::FrameClaim claim;
    int64_t now = 0;
    std::vector<uint8_t> msg;
    volatile unsigned sink = 0;
    std::vector<std::byte> payload = std::vector<std::byte>(kStride + 1024);
    std::vector<std::byte> copy = std::vector<std::byte>(kStride + 1024);

    static World* make() {
        char tmpl[sizeof kRootTemplate];
        std::memcpy(tmpl, kRootTemplate, sizeof tmpl);
        if (::mkdtemp(tmpl) == nullptr) fail("mkdtemp failed:", std::strerror(errno));  // mode 0700
        auto* w = new World;
        w->root = tmpl;
        if (w->root.size() != kRootPlaceholder.size()) fail("temp dir name of unexpected length:", tmpl);
        start_watchdog(w->root);
        for (const char* sub : {"/ipc", "/shm"}) {
            if (::mkdir((w->root + sub).c_str(), 0700) != 0) fail("mkdir failed:", std::strerror(errno));
        }
        w->hub = std::make_unique<transport::TransportHub>(transport_options(w->root));
        for (int k = 0; k < 5; ++k) {
            auto p = w->hub->add_publication(kChannel, kSharedStreams[k]);
            if (!p) fail("raw publication:", p.error().message());
            w->raw[k] = std::move(*p);
        }
        auto producer = client::Producer::create(*w->hub, producer_config(w->root));
        if (!producer) fail("producer:", producer.error().message());
        w->producer = std::move(*producer);
        (void)w->producer->metadata().set_name("fuzz");
        auto consumer = client::Consumer::create(*w->hub, consumer_config(w->root));
        if (!consumer) fail("consumer:", consumer.error().message());
        w->consumer = std::move(*consumer);
        // Far ahead of the real clock: ipc join times are real CLOCK_MONOTONIC, and the producer's announces (stamped
        // with this clock) must not look older than them.
        w->now = monotonic_ns() + 1'000'000 * kMs;
        return w;
    }

    ~World() {
        claim.abort();
        consumer.reset();
        producer.reset();
        for (auto& p : raw) p.reset();
        hub.reset();
        std::error_code ec;
        fs::remove_all(root, ec);
    }

    // ---- one round of the agents' loops ----

    int round() {
        int work = consumer->do_work(now);
        work += consumer->poll_frames([this](const client::FrameView& f) { on_frame(f); }, 64);
        work += consumer->poll_progress([this](const client::ProgressView& v) { on_progress(v); }, 64);
        work += producer->do_work(now);
        if (producer->consumers().stats().streams_granted > kMaxPerConsumerStreams) {
            char n[32];
            std::snprintf(n, sizeof n, "%llu", static_cast<unsigned long long>(producer->consumers().stats().streams_granted));
            fail("the producer holds more per-consumer streams than max_per_consumer_streams:", n);
        }
        return work;
    }

    void drain() {
        for (int i = 0; i < 8 && round() != 0; ++i) {
        }
    }

    void on_frame(const client::FrameView& f) {
        const auto p = f.payload();
        if (p.size() > kStride) fail("a frame payload larger than the pool stride");
        unsigned sum = 0;
        for (std::byte b : p) sum += static_cast<unsigned>(b);
        for (int32_t d : f.dims()) sum += static_cast<unsigned>(d);
        for (int64_t s : f.strides()) sum += static_cast<unsigned>(s);
        (void)f.copy_to(std::span<std::byte>(copy.data(), copy.size()));
        if (f.epoch() == kEpoch && f.still_valid() && !matches(p, f.seq())) {
            fail("a frame proven untorn holds bytes the producer did not write for its seq");
        }
        sink = sum;  // keeps the reads
    }

    void on_progress(const client::ProgressView& v) {
        if (v.bytes_filled() > v.values_len_bytes()) fail("a progress report beyond values_len was handed out");
        const auto p = v.prefix();
        if (v.layout_safe() && p.size() != v.bytes_filled()) fail("a progress prefix of the wrong size");
        if (!v.layout_safe() && !p.empty()) fail("a progress prefix for a layout without one");
        if (v.epoch() == kEpoch && v.still_valid() && !matches(p, v.seq())) {
            fail("a progress prefix proven current holds bytes the producer did not write for its seq");
        }
        unsigned sum = v.progress_stride_bytes();
        for (int32_t d : v.dims()) sum += static_cast<unsigned>(d);
        sink = sum;
    }

    // ---- the state every input starts from ----

    void reset() {
        now += 10'000 * kMs;  // past consumer_stale_ns and liveness_timeout_ns (5 s each)
        consumer->metadata().reset();
        // Back to the shared streams, SHM allowed, STREAM mode, no fallback (W-10.1.3-5 decline form).
        uint8_t buf[256];
        wc::ConsumerConfig::Encoder e;
        (void)e.wrap_and_apply_header(buf, sizeof buf);
        e.streamId(kStreamId).consumerId(kConsumerId).useShm(wc::Bool::TRUE).mode(wc::Mode::STREAM);
        e.descriptorStreamId(0).controlStreamId(0);
        e.payloadFallbackUri(std::string_view()).descriptorChannel(std::string_view()).controlChannel(std::string_view());
        const auto n = e.finish();
        if (!n) fail("reset ConsumerConfig:", n.error().message());
        (void)raw[static_cast<int>(Kind::control)]->offer(std::span<const uint8_t>(buf, *n));
        round();
        drain();
        if (producer->consumers().stats().streams_granted != 0) fail("per-consumer streams outlived their consumers");
        const auto& s = consumer->streams();
        if (s.per_consumer_descriptor || s.per_consumer_control) fail("the consumer kept a per-consumer stream");
        remove_strays();
    }

    // Stream directories made for per-consumer streams (none is open now).
    void remove_strays() {
        std::error_code ec;
        std::vector<fs::path> strays;
        const fs::path ipc = fs::path(root) / "ipc";
        const std::string_view bus = std::string_view(kChannel).substr(4);
        for (fs::directory_iterator it(ipc, ec), end; !ec && it != end; it.increment(ec)) {
            if (it->path().filename() != bus) strays.push_back(it->path());
        }
        for (fs::directory_iterator it(ipc / bus, ec), end; !ec && it != end; it.increment(ec)) {
            const std::string name = it->path().filename().string();
            bool shared = false;
            for (int32_t id : kSharedStreams) shared = shared || name == std::to_string(id);
            if (!shared) strays.push_back(it->path());
        }
        for (const auto& p : strays) fs::remove_all(p, ec);
    }

    // ---- operations ----

    void offer_raw(uint8_t op, Reader& in) {
        const int kind = op & 7;  // 0..4: a shared stream (Kind)
        const std::size_t len = std::min<std::size_t>(in.u16(), in.n);
        msg.assign(in.p, in.p + len);  // exactly `len` bytes on the heap: ASan sees any read past them
        in.p += len;
        in.n -= len;
        substitute_root();
        neuter_hello_channels();
        if ((op & kPatch) != 0) patch();
        (void)raw[kind]->offer(std::span<const uint8_t>(msg.data(), msg.size()));
        if ((op & kPumpAfter) != 0) round();
    }

    void substitute_root() {
        if (msg.size() < kRootPlaceholder.size()) return;
        for (std::size_t i = 0; i + kRootPlaceholder.size() <= msg.size(); ++i) {
            if (std::memcmp(msg.data() + i, kRootPlaceholder.data(), kRootPlaceholder.size()) == 0) {
                std::memcpy(msg.data() + i, root.data(), root.size());
                i += root.size() - 1;
            }
        }
    }

    void neuter_hello_channels() {
        auto h = wc::ConsumerHello::Decoder::wrap(msg.data(), msg.size());
        if (!h) return;
        for (std::string_view ch : {h->descriptorChannel(), h->controlChannel()}) {
            const auto* p = reinterpret_cast<const uint8_t*>(ch.data());
            if (ch.empty()) continue;
            if (p < msg.data() || p + ch.size() > msg.data() + msg.size()) fail("a channel outside its message");
            uint8_t* w = msg.data() + (p - msg.data());
            for (std::size_t i = 0; i < ch.size(); ++i) {
                if (w[i] == '?') w[i] = '#';
            }
        }
    }

    void patch() {
        uint8_t* block = msg.data() + kHeader;
        const uint64_t rel_seq_base = producer->next_seq() - 32;
        if (auto a = wc::ShmPoolAnnounce::Decoder::wrap(msg.data(), msg.size())) {
            const uint64_t ts = static_cast<uint64_t>(now) - a->announceTimestampNs() % 4'000'000'000ULL;
            wire::store_le<uint64_t>(block + wc::ShmPoolAnnounce::Offsets::announceTimestampNs, ts);
        } else if (auto d = wc::FrameDescriptor::Decoder::wrap(msg.data(), msg.size())) {
            wire::store_le<uint64_t>(block + wc::FrameDescriptor::Offsets::epoch, producer->epoch());
            wire::store_le<uint64_t>(block + wc::FrameDescriptor::Offsets::seq, rel_seq_base + (d->seq() & 63));
        } else if (auto p = wc::FrameProgress::Decoder::wrap(msg.data(), msg.size())) {
            wire::store_le<uint64_t>(block + wc::FrameProgress::Offsets::epoch, producer->epoch());
            wire::store_le<uint64_t>(block + wc::FrameProgress::Offsets::seq, rel_seq_base + (p->seq() & 63));
        }
    }

    void pump(Reader& in) {
        now += static_cast<int64_t>(in.u8()) * 20 * kMs;
        round();
        round();
    }

    client::FrameOptions options(uint8_t s) const {
        client::FrameOptions o;
        o.capture_timestamp_ns = static_cast<uint64_t>(now);
        o.trace_id = s;
        return o;
    }

    void offer_frame(const client::TensorShape& shape, uint32_t length, uint8_t s) {
        const uint32_t n = std::min<uint32_t>(length, static_cast<uint32_t>(payload.size()));
        fill(std::span<std::byte>(payload.data(), n), producer->next_seq());
        (void)producer->offer(shape, std::span<const std::byte>(payload.data(), n), options(s));
    }

    void frame(Reader& in) {
        const auto mode = static_cast<FrameMode>(in.u8() & 7);
        const uint8_t a = in.u8(), s = in.u8();
        uint32_t length = a == 255 ? 5000 : uint32_t{a} * 16;
        switch (mode) {
            case FrameMode::offer: {
                const auto shape = shape_for(s, length);
                offer_frame(shape, length, s);
                break;
            }
            case FrameMode::claim: {
                const auto shape = shape_for(s, length);
                if (producer->try_claim(shape, length, claim, options(s)).outcome == client::PublishOutcome::published) {
                    fill(claim.payload(), claim.seq());
                }
                break;
            }
            case FrameMode::progress:
                (void)claim.progress(uint64_t{a} * 16);
                break;
            case FrameMode::commit:
                (void)claim.commit(options(s));
                break;
            case FrameMode::abort_claim:
                claim.abort();
                break;
            case FrameMode::claim_commit: {
                const auto shape = shape_for(s, length);
                client::FrameClaim c;
                if (producer->try_claim(length, c).outcome == client::PublishOutcome::published) {
                    fill(c.payload(), c.seq());
                    (void)c.commit(shape, options(s));
                }
                break;
            }
            case FrameMode::burst: {
                uint32_t small = 64;
                const auto shape = shape_for(s, small);
                for (int i = 0; i < 1 + a % 32; ++i) offer_frame(shape, small, s);
                break;
            }
            case FrameMode::odd_shape: {
                client::TensorShape t;
                t.dtype = static_cast<shm::Dtype>(s & 0x0F);
                t.major_order = static_cast<shm::MajorOrder>((s >> 4) & 3);
                t.progress_unit = static_cast<shm::ProgressUnit>(s >> 6);
                t.progress_stride_bytes = a;
                t.ndims = static_cast<uint8_t>(in.u8() % 10);  // 9: more than kMaxDims
                for (uint8_t i = 0; i < t.ndims; ++i) {
                    const auto d = static_cast<int8_t>(in.u8());
                    const auto st = static_cast<int8_t>(in.u8());
                    if (i < t.dims.size()) {
                        t.dims[i] = d;
                        t.strides[i] = st;
                    }
                }
                offer_frame(t, length, s);
                break;
            }
            default:
                break;
        }
    }

    void run(const uint8_t* data, std::size_t size) {
        reset();
        Reader in{data, size};
        while (in.n > 0) {
            const uint8_t op = in.u8();
            switch (static_cast<Kind>(op & 7)) {
                case Kind::pump: pump(in); break;
                case Kind::frame: frame(in); break;
                case Kind::round: round(); break;
                default: offer_raw(op, in); break;
            }
        }
        claim.abort();
        round();
        drain();
        if (print_stats) print();
    }

    // TPFUZZ_CLIENT_STATS=1: the agents' counters after every input (to see what a seed reaches).
    const bool print_stats = std::getenv("TPFUZZ_CLIENT_STATS") != nullptr;
    void print() const {
        const auto& c = consumer->stats();
        const auto& r = producer->consumers().stats();
        std::fprintf(stderr,
                     "consumer: state %d accepted %llu gap %llu late %llu invalid %llu unmapped %llu resyncs %llu "
                     "announces %llu/%llu ignored, mappings %llu failures %llu rate-limited %llu configs %llu "
                     "progress %llu/%llu ignored/%llu violations; error '%s'; response '%s'\n"
                     "producer: seq %llu committed %llu progress %llu; registry consumers %llu grants %llu declines "
                     "%llu closed %llu capped %llu\n",
                     static_cast<int>(consumer->state()), (unsigned long long)c.frames_accepted,
                     (unsigned long long)c.drops_gap, (unsigned long long)c.drops_late,
                     (unsigned long long)c.drops_invalid, (unsigned long long)c.drops_unmapped,
                     (unsigned long long)c.resyncs, (unsigned long long)c.announces_accepted,
                     (unsigned long long)c.announces_ignored, (unsigned long long)c.mappings,
                     (unsigned long long)c.mapping_failures, (unsigned long long)c.drops_rate_limited,
                     (unsigned long long)c.configs_received, (unsigned long long)c.progress_accepted,
                     (unsigned long long)c.progress_ignored, (unsigned long long)c.progress_violations,
                     consumer->last_mapping_error().c_str(), consumer->last_control_response().c_str(),
                     (unsigned long long)producer->next_seq(), (unsigned long long)producer->stats().frames_committed,
                     (unsigned long long)producer->stats().progress_sent, (unsigned long long)r.consumers,
                     (unsigned long long)r.grants, (unsigned long long)r.declines, (unsigned long long)r.streams_closed,
                     (unsigned long long)r.descriptors_rate_capped);
    }
};

World* g_world = nullptr;

void teardown() {
    delete g_world;
    g_world = nullptr;
}

// Removes `dir` once this process is gone, however it ends: a child blocks on a pipe whose only writer is this
// process, and runs `rm -rf dir` at EOF. libFuzzer leaves by _Exit on a crash, a timeout or a signal (no atexit).
// Between fork and exec the child makes only async-signal-safe calls.
void start_watchdog(const std::string& dir) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return;
    const char* argv[] = {"rm", "-rf", "--", dir.c_str(), nullptr};
    const char* envp[] = {nullptr};
    const pid_t pid = ::fork();
    if (pid == 0) {
        ::signal(SIGINT, SIG_IGN);  // Ctrl-C reaches the whole process group; outlive the fuzzer
        ::signal(SIGTERM, SIG_IGN);
        ::signal(SIGHUP, SIG_IGN);
        const int devnull = ::open("/dev/null", O_RDWR);
        for (int fd = 0; fd < 3 && devnull >= 0; ++fd) ::dup2(devnull, fd);
        for (int fd = 3; fd < 1024; ++fd) {
            if (fd != fds[0]) ::close(fd);
        }
        char c;
        while (::read(fds[0], &c, 1) < 0 && errno == EINTR) {
        }
        ::execve("/bin/rm", const_cast<char* const*>(argv), const_cast<char* const*>(envp));
        ::_exit(0);
    }
    ::close(fds[0]);
    // fds[1] stays open (close-on-exec) for the life of this process.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (g_world == nullptr) {
        g_world = World::make();
        std::atexit(teardown);
    }
    g_world->run(data, size);
    return 0;
}
