// `tensorpool produce` and `tensorpool consume`: a producer and a consumer for real use and for interop with the
// other implementations (any transport, channel and stream ids, pools, dtype/shape, rate, count).
//
// produce writes synthetic frames (every 8-byte word a function of seq). consume --json prints one JSON line per
// accepted frame: {"seq":…,"epoch":…,"dtype":"…","dims":[…],"bytes":…,"crc32c":…}, printed only after the
// frame was proven untorn.
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "commands.hpp"
#include "stream_options.hpp"
#include "synthetic_frames.hpp"
#include "tensorpool/client/consumer.hpp"
#include "tensorpool/client/producer.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/common/crc32c.hpp"
#include "tensorpool/wire/json_writer.hpp"

namespace tensorpool::cli {
namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

void install_stop_handlers() {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
}

Result<shm::Dtype> parse_dtype(const std::string& name) {
    for (int v = 0; v <= 32; ++v) {
        const auto d = static_cast<shm::Dtype>(v);
        if (const char* n = wire::control::name_of(d); n != nullptr && name == n && d != shm::Dtype::UNKNOWN) return d;
    }
    return Error::format(Errc::invalid_argument, "unknown dtype '%s' (e.g. UINT8, INT16, FLOAT32, FLOAT64)", name.c_str());
}

Result<std::vector<int32_t>> parse_shape(const std::string& text) {
    std::vector<int32_t> dims;
    std::size_t pos = 0;
    while (pos <= text.size()) {
        const std::size_t x = text.find('x', pos);
        const std::string part = text.substr(pos, x == std::string::npos ? std::string::npos : x - pos);
        int32_t v = 0;
        auto r = std::from_chars(part.data(), part.data() + part.size(), v);
        if (r.ec != std::errc() || r.ptr != part.data() + part.size() || v <= 0) {
            return Error::format(Errc::invalid_argument, "shape '%s': expected positive sizes like 480x640", text.c_str());
        }
        dims.push_back(v);
        if (x == std::string::npos) break;
        pos = x + 1;
    }
    if (dims.empty() || dims.size() > 8) {
        return Error::format(Errc::invalid_argument, "shape '%s' must have 1..8 dimensions", text.c_str());
    }
    return dims;
}

Result<client::PoolConfig> parse_pool(const std::string& text) {
    const auto colon = text.find(':');
    client::PoolConfig p;
    unsigned id = 0, stride = 0;
    if (colon == std::string::npos ||
        std::from_chars(text.data(), text.data() + colon, id).ec != std::errc() ||
        std::from_chars(text.data() + colon + 1, text.data() + text.size(), stride).ec != std::errc() || id > 65535) {
        return Error::format(Errc::invalid_argument, "pool '%s': expected ID:STRIDE_BYTES, e.g. 1:1048576", text.c_str());
    }
    p.pool_id = static_cast<uint16_t>(id);
    p.stride_bytes = stride;
    return p;
}

struct ProduceOptions {
    StreamOptions stream;
    std::vector<std::string> pools;
    uint32_t nslots = 1024;
    std::string dtype = "UINT8";
    std::string shape = "480x640";
    double rate_hz = 30;
    uint64_t count = 0;
    double seconds = 0;
    uint32_t producer_id = 1;
    bool publish_timestamps = false;
};

int run_produce(const ProduceOptions& o) {
    auto dtype = parse_dtype(o.dtype);
    auto dims = parse_shape(o.shape);
    if (!dtype || !dims) {
        std::fprintf(stderr, "tensorpool produce: %s\n", (!dtype ? dtype.error() : dims.error()).message());
        return 2;
    }
    client::TensorShape shape;
    shape.dtype = *dtype;
    shape.major_order = shm::MajorOrder::ROW;
    shape.ndims = static_cast<uint8_t>(dims->size());
    uint64_t bytes = shm::dtype_element_bytes(*dtype);
    for (std::size_t i = 0; i < dims->size(); ++i) {
        shape.dims[i] = (*dims)[i];
        bytes *= static_cast<uint64_t>((*dims)[i]);
    }
    client::ProducerConfig pc;
    pc.stream_id = o.stream.stream_id;
    pc.producer_id = o.producer_id;
    pc.shm_base_dir = o.stream.shm_base_dir;
    pc.ns = o.stream.ns;
    pc.channels = o.stream.channels;
    pc.header_nslots = o.nslots;
    pc.pools.clear();
    for (const auto& text : o.pools) {
        auto p = parse_pool(text);
        if (!p) {
            std::fprintf(stderr, "tensorpool produce: %s\n", p.error().message());
            return 2;
        }
        pc.pools.push_back(*p);
    }
    if (pc.pools.empty()) pc.pools.push_back(client::PoolConfig{1, static_cast<uint32_t>((bytes + 63) / 64 * 64)});
    transport::TransportHub hub(o.stream.transport_options());
    auto producer = client::Producer::create(hub, pc);
    if (!producer) {
        std::fprintf(stderr, "tensorpool produce: %s\n", producer.error().message());
        return 1;
    }
    auto& p = **producer;
    std::fprintf(stderr, "producing %s %s (%llu bytes) on stream %u, epoch %llu, header %s\n", o.dtype.c_str(),
                 o.shape.c_str(), static_cast<unsigned long long>(bytes), pc.stream_id,
                 static_cast<unsigned long long>(p.epoch()), p.header_region_uri().c_str());
    install_stop_handlers();
    const int64_t start = monotonic_ns();
    const int64_t period = o.rate_hz > 0 ? static_cast<int64_t>(1e9 / o.rate_hz) : 0;
    int64_t next = start;
    uint64_t sent = 0, no_pool = 0;
    while (g_stop == 0 && (o.count == 0 || sent < o.count) &&
           (o.seconds <= 0 || monotonic_ns() - start < static_cast<int64_t>(o.seconds * 1e9))) {
        const int64_t now = monotonic_ns();
        p.do_work(now);
        if (now < next) {
            if (next - now > 200'000) std::this_thread::sleep_for(std::chrono::microseconds(100));
            continue;
        }
        client::FrameClaim claim;
        const auto r = p.try_claim(static_cast<uint32_t>(bytes), claim);
        if (r.outcome == client::PublishOutcome::no_pool_fits) {
            ++no_pool;
        } else if (claim.active()) {
            bench::fill_frame(claim.payload(), claim.seq());
            client::FrameOptions fo;
            fo.publish_timestamp = o.publish_timestamps;
            const auto c = claim.commit(shape, fo);
            if (c.outcome == client::PublishOutcome::invalid) {
                std::fprintf(stderr, "tensorpool produce: frame refused: %s\n", p.invalid_reason());
                return 2;
            }
            if (c.committed()) ++sent;
        }
        next = period > 0 ? next + period : now;
    }
    // Keep announcing briefly so consumers that are still catching up can finish with the same epoch.
    std::fprintf(stderr, "produced %llu frames (%llu dropped: no pool fits), descriptors not sent %llu, consumers %llu\n",
                 static_cast<unsigned long long>(sent), static_cast<unsigned long long>(no_pool),
                 static_cast<unsigned long long>(p.stats().descriptors_not_sent),
                 static_cast<unsigned long long>(p.stats().consumers));
    return no_pool == 0 ? 0 : 1;
}

struct ConsumeOptions {
    StreamOptions stream;
    uint64_t count = 0;
    double seconds = 0;
    bool json = false;
    bool verify = false;
    uint32_t max_rate_hz = 0;
    int32_t descriptor_stream = 0;
};

int run_consume(const ConsumeOptions& o) {
    client::ConsumerConfig cc;
    cc.stream_id = o.stream.stream_id;
    cc.channels = o.stream.channels;
    cc.allowed_dirs = o.stream.allowed_dirs();
    if (o.max_rate_hz != 0) {
        cc.mode = client::ConsumerMode::rate_limited;
        cc.max_rate_hz = o.max_rate_hz;
    }
    if (o.descriptor_stream != 0) cc.descriptor_request = {cc.channels.channel, o.descriptor_stream};
    transport::TransportHub hub(o.stream.transport_options());
    auto consumer = client::Consumer::create(hub, cc);
    if (!consumer) {
        std::fprintf(stderr, "tensorpool consume: %s\n", consumer.error().message());
        return 1;
    }
    auto& c = **consumer;
    install_stop_handlers();
    uint64_t accepted = 0, bad = 0;
    std::string line;
    auto on_frame = [&](const client::FrameView& f) {
        const uint32_t crc = o.json ? crc32c(f.payload()) : 0;
        const bool pattern_ok = !o.verify || bench::check_frame(f.payload(), f.seq());
        if (!f.still_valid()) return;  // overwritten while read: not accepted
        if (!pattern_ok) ++bad;
        ++accepted;
        if (!o.json) return;
        line.clear();
        wire::JsonWriter w(line);
        w.begin_object();
        w.key("seq");
        w.number(f.seq());
        w.key("epoch");
        w.number(f.epoch());
        w.key("dtype");
        const char* name = wire::control::name_of(f.dtype());
        if (name != nullptr) w.string(name); else w.number(static_cast<int16_t>(f.dtype()));
        w.key("dims");
        w.begin_array();
        for (int32_t d : f.dims()) w.number(d);
        w.end_array();
        w.key("bytes");
        w.number(f.payload().size());
        w.key("crc32c");
        w.number(crc);
        w.end_object();
        line += '\n';
        std::fwrite(line.data(), 1, line.size(), stdout);
    };
    const int64_t start = monotonic_ns();
    while (g_stop == 0 && (o.count == 0 || accepted < o.count) &&
           (o.seconds <= 0 || monotonic_ns() - start < static_cast<int64_t>(o.seconds * 1e9))) {
        int work = c.do_work(monotonic_ns());
        work += c.poll_frames(on_frame, 64);
        if (work == 0) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    std::fflush(stdout);
    const auto& s = c.stats();
    std::fprintf(stderr, "consumed %llu frames (epoch %llu), drops gap %llu late %llu invalid %llu%s%s\n",
                 static_cast<unsigned long long>(accepted), static_cast<unsigned long long>(c.mapped_epoch()),
                 static_cast<unsigned long long>(s.drops_gap), static_cast<unsigned long long>(s.drops_late),
                 static_cast<unsigned long long>(s.drops_invalid), c.last_mapping_error().empty() ? "" : "; last mapping error: ",
                 c.last_mapping_error().c_str());
    if (bad != 0) std::fprintf(stderr, "%llu accepted frames did not match the synthetic pattern\n", static_cast<unsigned long long>(bad));
    return bad == 0 && (o.count == 0 || accepted >= o.count) ? 0 : 1;
}

}  // namespace

void add_produce_consume_commands(CLI::App& app, int& exit_code) {
    auto po = std::make_shared<ProduceOptions>();
    auto* produce = app.add_subcommand("produce", "Publish synthetic frames on a stream (for real use and interop)");
    add_stream_options(produce, po->stream, true);
    produce->add_option("--pool", po->pools, "payload pool ID:STRIDE_BYTES (repeatable; default: one pool fitting a frame)");
    produce->add_option("--nslots", po->nslots, "header ring slots (power of two)")->capture_default_str();
    produce->add_option("--dtype", po->dtype, "UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64, FLOAT32, FLOAT64, "
                                               "BOOLEAN, BYTES, BIT")->capture_default_str();
    produce->add_option("--shape", po->shape, "dims, outermost first, e.g. 480x640 or 3x224x224")->capture_default_str();
    produce->add_option("--rate-hz", po->rate_hz, "frames per second; 0 = as fast as possible")->capture_default_str();
    produce->add_option("--count", po->count, "stop after this many frames (0 = no limit)");
    produce->add_option("--seconds", po->seconds, "stop after this long (0 = no limit)");
    produce->add_option("--producer-id", po->producer_id)->capture_default_str();
    produce->add_flag("--publish-timestamps", po->publish_timestamps,
                      "set FrameDescriptor.timestampNs (publish time) on every frame, for latency measurement");
    produce->callback([po, &exit_code] { exit_code = run_produce(*po); });

    auto co = std::make_shared<ConsumeOptions>();
    auto* consume = app.add_subcommand("consume", "Receive frames of a stream and report them");
    add_stream_options(consume, co->stream, false);
    consume->add_option("--count", co->count, "exit 0 after this many accepted frames (0 = run until stopped)");
    consume->add_option("--seconds", co->seconds, "stop after this long (0 = no limit)");
    consume->add_flag("--json", co->json, "one JSON line per accepted frame: seq, epoch, dtype, dims, bytes, crc32c");
    consume->add_flag("--verify", co->verify, "check each frame against the synthetic pattern of `tensorpool produce`");
    consume->add_option("--max-rate-hz", co->max_rate_hz,
                        "RATE_LIMITED mode: at most this many frames per second (capped by the producer on a granted "
                        "per-consumer stream, else gated locally)");
    consume->add_option("--request-descriptor-stream", co->descriptor_stream,
                        "ask for a per-consumer descriptor stream with this id on the channel (declined: stays shared)")
        ->check(CLI::Range(1, INT32_MAX));
    consume->callback([co, &exit_code] { exit_code = run_consume(*co); });
}

}  // namespace tensorpool::cli
