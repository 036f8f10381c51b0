// Writes the seed corpus of fuzz_client_control into the directory given as argv[1] (fuzz/corpus/fuzz_client_control
// holds its output). Built on request only: cmake --build --preset fuzz --target seeds_client_control.
//
// Every message is made with the generated encoders. Announces name the region files of a producer configured
// exactly as the fuzz target's, under kRootPlaceholder, which the target replaces with its own temp dir; the
// canonical layout puts the user name in the path (tensorpool-<user>), so they map only for the user who ran this.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_client_control.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace {

using namespace tensorpool;
using namespace tpfuzz;
namespace wc = tensorpool::wire::control;
using Bytes = std::vector<uint8_t>;

template <class E, class F>
Bytes encode(F&& fill_in, std::size_t cap = 4096) {
    Bytes buf(cap);
    E e;
    if (!e.wrap_and_apply_header(buf.data(), buf.size()).ok()) std::abort();
    fill_in(e);
    const auto n = e.finish();
    if (!n) {
        std::fprintf(stderr, "encode: %s\n", n.error().message());
        std::abort();
    }
    buf.resize(*n);
    return buf;
}

struct Pool {
    uint16_t id;
    uint32_t nslots;
    uint32_t stride;
    std::string uri;
};

struct Announce {
    uint64_t epoch = kEpoch;
    uint64_t ts = 0;  // with kPatch: now - ts
    wc::ClockDomain domain = wc::ClockDomain::MONOTONIC;
    uint32_t layout = 1;
    uint32_t nslots = kNslots;
    uint16_t slot_bytes = 256;
    std::vector<Pool> pools;
    std::string header_uri;
};

Bytes announce(const Announce& a) {
    return encode<wc::ShmPoolAnnounce::Encoder>([&](auto& e) {
        e.streamId(kStreamId).producerId(3).epoch(a.epoch).announceTimestampNs(a.ts).announceClockDomain(a.domain);
        e.layoutVersion(a.layout).headerNslots(a.nslots).headerSlotBytes(a.slot_bytes);
        auto g = e.payloadPoolsCount(a.pools.size());
        for (const auto& p : a.pools) g.next().poolId(p.id).poolNslots(p.nslots).strideBytes(p.stride).regionUri(p.uri);
        e.headerRegionUri(a.header_uri);
    });
}

struct Hello {
    uint32_t consumer_id = kConsumerId;
    bool progress = true;
    wc::Mode mode = wc::Mode::STREAM;
    uint32_t rate = 0;
    std::string desc_channel;
    uint32_t desc_stream = 0;
    std::string ctrl_channel;
    uint32_t ctrl_stream = 0;
    uint32_t interval_us = UINT32_MAX, bytes_delta = UINT32_MAX, major_units = UINT32_MAX;
};

Bytes hello(const Hello& h) {
    return encode<wc::ConsumerHello::Encoder>([&](auto& e) {
        e.streamId(kStreamId).consumerId(h.consumer_id).supportsShm(wc::Bool::TRUE);
        e.supportsProgress(h.progress ? wc::Bool::TRUE : wc::Bool::FALSE).mode(h.mode).maxRateHz(h.rate);
        e.expectedLayoutVersion(1).progressIntervalUs(h.interval_us).progressBytesDelta(h.bytes_delta);
        e.progressMajorDeltaUnits(h.major_units).descriptorStreamId(h.desc_stream).controlStreamId(h.ctrl_stream);
        e.descriptorChannel(h.desc_channel).controlChannel(h.ctrl_channel);
    });
}

struct Config {
    uint32_t consumer_id = kConsumerId;
    wc::Bool use_shm = wc::Bool::TRUE;
    wc::Mode mode = wc::Mode::STREAM;
    std::string fallback;
    std::string desc_channel;
    uint32_t desc_stream = 0;
    std::string ctrl_channel;
    uint32_t ctrl_stream = 0;
};

Bytes config(const Config& c) {
    return encode<wc::ConsumerConfig::Encoder>([&](auto& e) {
        e.streamId(kStreamId).consumerId(c.consumer_id).useShm(c.use_shm).mode(c.mode);
        e.descriptorStreamId(c.desc_stream).controlStreamId(c.ctrl_stream);
        e.payloadFallbackUri(c.fallback).descriptorChannel(c.desc_channel).controlChannel(c.ctrl_channel);
    });
}

Bytes response(wc::ResponseCode code, const std::string& text) {
    return encode<wc::ControlResponse::Encoder>([&](auto& e) { e.correlationId(0).code(code).errorMessage(text); });
}

Bytes descriptor(uint64_t seq, uint64_t epoch = kEpoch, uint64_t ts = UINT64_MAX) {
    return encode<wc::FrameDescriptor::Encoder>([&](auto& e) {
        e.streamId(kStreamId).epoch(epoch).seq(seq).timestampNs(ts).metaVersion(0).traceId(0);
    });
}

Bytes progress(uint64_t seq, uint64_t filled, wc::FrameProgressState state, uint64_t epoch = kEpoch) {
    return encode<wc::FrameProgress::Encoder>([&](auto& e) {
        e.streamId(kStreamId).epoch(epoch).seq(seq).payloadBytesFilled(filled).state(state);
    });
}

Bytes qos_consumer(uint32_t consumer_id) {
    return encode<wc::QosConsumer::Encoder>([&](auto& e) {
        e.streamId(kStreamId).consumerId(consumer_id).epoch(kEpoch).lastSeqSeen(0).dropsGap(0).dropsLate(0);
        e.mode(wc::Mode::STREAM);
    });
}

Bytes qos_producer() {
    return encode<wc::QosProducer::Encoder>([&](auto& e) {
        e.streamId(kStreamId).producerId(3).epoch(kEpoch).currentSeq(5).watermark(0);
    });
}

// Relative seqs for kPatch: seq & 63 == 32 is the producer's next seq (an open claim's), 31 the last committed one.
constexpr uint64_t kNext = 32, kLast = 31;

void write(const std::string& dir, const char* name, const InputWriter& w) {
    std::ofstream out(dir + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(w.bytes().data()), static_cast<std::streamsize>(w.bytes().size()));
    if (!out) {
        std::fprintf(stderr, "cannot write %s/%s\n", dir.c_str(), name);
        std::exit(1);
    }
}

// The region URIs a producer configured as the target's announces, with the temp dir as kRootPlaceholder.
std::pair<std::string, std::string> region_uris() {
    char tmpl[sizeof kRootTemplate];
    std::memcpy(tmpl, kRootTemplate, sizeof tmpl);
    if (::mkdtemp(tmpl) == nullptr) std::abort();
    const std::string root = tmpl;
    ::mkdir((root + "/ipc").c_str(), 0700);
    ::mkdir((root + "/shm").c_str(), 0700);
    std::string header, pool;
    {
        transport::TransportHub hub(transport_options(root));
        auto p = client::Producer::create(hub, producer_config(root));
        if (!p) {
            std::fprintf(stderr, "producer: %s\n", p.error().message());
            std::abort();
        }
        header = (*p)->header_region_uri();
    }
    std::filesystem::remove_all(root);
    const auto at = header.find(root);
    if (at == std::string::npos) std::abort();
    header.replace(at, root.size(), kRootPlaceholder);
    pool = header;
    pool.replace(pool.rfind("header.ring"), std::strlen("header.ring"), std::to_string(kPoolId) + ".pool");
    return {header, pool};
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    const auto [header_uri, pool_uri] = region_uris();
    Announce good;
    good.pools = {{kPoolId, kNslots, kStride, pool_uri}};
    good.header_uri = header_uri;
    const std::string bus = kChannel;

    {  // frames, duplicates, late and backwards descriptors
        InputWriter w;
        w.frame(FrameMode::offer, 4, 0x00).frame(FrameMode::offer, 32, 0x05).frame(FrameMode::offer, 250, 0x46);
        w.pump(1);
        w.raw(Kind::descriptor, descriptor(kLast), kPatch | kPumpAfter);  // a duplicate of the last one
        w.frame(FrameMode::burst, 20, 0x01).pump(0);         // the ring wraps
        w.raw(Kind::descriptor, descriptor(kLast + 10), kPatch);   // not written yet
        w.raw(Kind::descriptor, descriptor(3, kEpoch + 1));        // another epoch
        w.raw(Kind::descriptor, descriptor(1u << 20), kPumpAfter);  // far ahead: a gap past the resync limit
        w.raw(Kind::descriptor, descriptor(kLast - 20), kPatch);   // backwards within the epoch: unmapped
        w.pump(60).frame(FrameMode::burst, 40, 0x02).raw(Kind::descriptor, descriptor(kLast - 20), kPatch);
        w.frame(FrameMode::claim_commit, 16, 0x10).frame(FrameMode::odd_shape, 8, 0x19, Bytes{3, 2, 0, 4, 0, 255, 0});
        w.frame(FrameMode::offer, 255, 0).pump(60);
        write(dir, "frames", w);
    }
    {  // FrameProgress from the producer and forged ones: going back, past values_len, unknown states
        InputWriter w;
        w.frame(FrameMode::claim, 64, 0x15).frame(FrameMode::progress, 16, 0).pump(1);
        w.frame(FrameMode::progress, 48, 0).pump(1);
        w.raw(Kind::control, progress(kNext, 100, wc::FrameProgressState::PROGRESS), kPatch | kPumpAfter);
        w.raw(Kind::control, progress(kNext, 10, wc::FrameProgressState::PROGRESS), kPatch | kPumpAfter);  // goes back
        w.frame(FrameMode::commit, 0, 0).pump(0);
        w.frame(FrameMode::claim, 16, 0x24).raw(Kind::control, progress(kNext, 4096, wc::FrameProgressState::PROGRESS), kPatch);
        w.pump(0).frame(FrameMode::abort_claim, 0, 0);
        w.frame(FrameMode::claim, 8, 0x31).raw(Kind::control, progress(kNext, 0, wc::FrameProgressState::COMPLETE), kPatch);
        w.raw(Kind::control, progress(kNext, 0, wc::FrameProgressState::STARTED), kPatch);  // state back
        w.raw(Kind::control, progress(kNext, 0, static_cast<wc::FrameProgressState>(9)), kPatch | kPumpAfter);
        w.frame(FrameMode::commit, 0, 0).pump(0);
        write(dir, "progress", w);
    }
    {  // a consumer asks for its own descriptor and control streams; frames and progress then travel there
        InputWriter w;
        Hello h;
        h.desc_channel = bus;
        h.desc_stream = 2100;
        h.ctrl_channel = bus;
        h.ctrl_stream = 2000;
        h.interval_us = 1;
        h.bytes_delta = 16;
        h.major_units = 1;
        w.raw(Kind::control, hello(h)).pump(0).pump(0);
        w.frame(FrameMode::offer, 8, 0).frame(FrameMode::claim, 64, 0x15).frame(FrameMode::progress, 32, 0).pump(1);
        w.frame(FrameMode::commit, 0, 0).pump(0);
        h.mode = wc::Mode::RATE_LIMITED;
        h.rate = 10;
        w.raw(Kind::control, hello(h)).pump(0).frame(FrameMode::burst, 5, 0).pump(0);
        Hello withdraw;
        w.raw(Kind::control, hello(withdraw)).pump(0);
        write(dir, "grant", w);
    }
    {  // requests the producer declines
        InputWriter w;
        Hello half;
        half.consumer_id = 11;
        half.desc_channel = bus;
        w.raw(Kind::control, hello(half));
        Hello shared;
        shared.consumer_id = 12;
        shared.desc_channel = bus;
        shared.desc_stream = 1100;
        w.raw(Kind::control, hello(shared));
        Hello aeron;
        aeron.consumer_id = 13;
        aeron.ctrl_channel = "aeron:udp?endpoint=localhost:40123";
        aeron.ctrl_stream = 2001;
        w.raw(Kind::control, hello(aeron));
        Hello params;
        params.consumer_id = 14;
        params.desc_channel = "ipc:other?term-length=1g|prefault=true";
        params.desc_stream = 2002;
        w.raw(Kind::control, hello(params));
        Hello longer;
        longer.consumer_id = 15;
        longer.desc_channel = "ipc:" + std::string(1100, 'a');
        longer.desc_stream = 2003;
        w.raw(Kind::control, hello(longer), kPumpAfter);
        for (uint32_t id = 20; id < 24; ++id) {  // the same stream twice, then over the limit
            Hello h;
            h.consumer_id = id;
            h.desc_channel = bus;
            h.desc_stream = id == 21 ? 2020 : 2000 + id;
            h.ctrl_channel = "ipc:side";
            h.ctrl_stream = 3000 + id;
            w.raw(Kind::control, hello(h));
        }
        w.pump(0).raw(Kind::qos, qos_consumer(20)).pump(150).pump(150);  // 6 s: the others go stale
        write(dir, "declines", w);
    }
    {  // ConsumerConfig and ControlResponse to the consumer: grants, RATE_LIMITED, useShm FALSE, fallbacks
        InputWriter w;
        Config grant;
        grant.desc_channel = bus;
        grant.desc_stream = 2100;
        grant.ctrl_channel = bus;
        grant.ctrl_stream = 2000;
        w.raw(Kind::control, config(grant)).pump(0).frame(FrameMode::offer, 1, 0).pump(0);
        Config limited;
        limited.mode = wc::Mode::RATE_LIMITED;
        w.raw(Kind::control, config(limited)).pump(0).frame(FrameMode::burst, 4, 0).pump(0);
        w.raw(Kind::descriptor, descriptor(kLast, kEpoch, 1000), kPatch);
        w.raw(Kind::descriptor, descriptor(kLast, kEpoch, (1ULL << 63) - 5), kPatch | kPumpAfter);
        Config fallback;
        fallback.use_shm = wc::Bool::FALSE;
        fallback.fallback = "aeron:udp?endpoint=host:40124";
        w.raw(Kind::control, config(fallback)).pump(0);
        Config bridge = fallback;
        bridge.fallback = "bridge://host:1/x";
        w.raw(Kind::control, config(bridge)).pump(0);
        Config odd = fallback;
        odd.fallback = "http://x";
        odd.use_shm = wc::Bool::TRUE;
        w.raw(Kind::control, config(odd)).pump(0);
        Config bad;
        bad.use_shm = static_cast<wc::Bool>(7);
        bad.desc_channel = "nope:";
        bad.desc_stream = 0x80000001u;
        bad.ctrl_channel = "ipc:";
        bad.ctrl_stream = 9;
        w.raw(Kind::control, config(bad)).pump(0);
        w.raw(Kind::control, response(wc::ResponseCode::REJECTED, "consumer 12648430: descriptor stream request declined"));
        w.raw(Kind::control, response(wc::ResponseCode::INVALID_PARAMS, "consumer 1: not ours"), kPumpAfter);
        write(dir, "config", w);
    }
    {  // announces: the producer's own, then every way one can be refused
        InputWriter w;
        w.raw(Kind::announce, announce(good), kPatch).pump(0);
        Announce a = good;
        a.slot_bytes = 128;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.layout = 2;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.pools[0].nslots = 8;
        a.epoch = kEpoch + 1;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.nslots = 32;
        a.pools[0].nslots = 32;
        a.epoch = kEpoch + 2;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.pools[0].uri = header_uri;
        a.epoch = kEpoch + 3;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.header_uri = "shm:file?path=/etc/passwd";
        a.epoch = kEpoch + 4;
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.domain = wc::ClockDomain::REALTIME_SYNCED;
        a.epoch = kEpoch + 5;
        w.raw(Kind::announce, announce(a), kPumpAfter);
        a.domain = static_cast<wc::ClockDomain>(9);
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        a = good;
        a.ts = 0;  // stamped before the stream joined
        w.raw(Kind::announce, announce(a), kPumpAfter);
        a = good;
        a.pools.push_back(a.pools[0]);  // the same pool twice
        w.raw(Kind::announce, announce(a), kPatch | kPumpAfter);
        w.frame(FrameMode::offer, 2, 0).pump(0).pump(255).pump(0);
        write(dir, "announce", w);
    }
    {  // metadata
        InputWriter w;
        w.raw(Kind::metadata, encode<wc::DataSourceAnnounce::Encoder>([](auto& e) {
            e.streamId(kStreamId).producerId(3).epoch(kEpoch).metaVersion(1).name("cam").summary("u8[480,640]");
        }));
        w.raw(Kind::metadata, encode<wc::DataSourceMeta::Encoder>([](auto& e) {
            e.streamId(kStreamId).metaVersion(1).timestampNs(1);
            auto g = e.attributesCount(2);
            const uint8_t v[2] = {1, 2};
            g.next().key("gain").format("application/octet-stream").value(std::span<const uint8_t>(v, 2));
            g.next().key("unit").format("text/plain").value(std::span<const uint8_t>(v, 1));
        }));
        const uint8_t blob[5] = {'h', 'e', 'l', 'l', 'o'};
        w.raw(Kind::metadata, encode<wc::MetaBlobAnnounce::Encoder>([](auto& e) {
            e.streamId(kStreamId).metaVersion(1).blobType(1).totalLen(5).checksum(0);
        }));
        w.raw(Kind::metadata, encode<wc::MetaBlobChunk::Encoder>([&](auto& e) {
            e.streamId(kStreamId).metaVersion(1).chunkOffset(0).bytes(std::span<const uint8_t>(blob, 5));
        }));
        w.raw(Kind::metadata, encode<wc::MetaBlobComplete::Encoder>([](auto& e) {
            e.streamId(kStreamId).metaVersion(1).checksum(0);
        }), kPumpAfter);
        w.frame(FrameMode::offer, 1, 0).pump(0);
        write(dir, "metadata", w);
    }
    {  // QoS and time: consumers kept alive by QoS alone, the producer's QoS, liveness and staleness
        InputWriter w;
        Hello h;
        h.consumer_id = 31;
        h.desc_channel = bus;
        h.desc_stream = 2031;
        w.raw(Kind::control, hello(h)).pump(0);
        for (int i = 0; i < 4; ++i) w.raw(Kind::qos, qos_consumer(31)).pump(100);
        w.raw(Kind::qos, qos_producer()).raw(Kind::control, qos_consumer(kConsumerId)).pump(0);
        w.frame(FrameMode::claim, 16, 0).pump(250).pump(250).frame(FrameMode::commit, 0, 0).round().round();
        write(dir, "qos-time", w);
    }
    return 0;
}
