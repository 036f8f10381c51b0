// The metadata half of producer and consumer (WIRE_SPEC §4.8-§4.10, W-10.3.*, W-15.9-*, A-22):
// MetadataPublisher -> ipc bus -> MetadataReceiver round trips, hand-crafted chunk sequences that break each
// reassembly rule, and the publisher's behaviour under transport refusals (a scripted fake publication).
#include <gtest/gtest.h>

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tensorpool/client/metadata_publisher.hpp"
#include "tensorpool/client/metadata_receiver.hpp"
#include "tensorpool/common/clock.hpp"
#include "tensorpool/common/crc32c.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "tensorpool/wire/gen/control.hpp"
#include "transport_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
namespace wc = tensorpool::wire::control;

namespace {

constexpr uint32_t kStream = 4242;
constexpr int32_t kMetaStreamId = 1300;
constexpr int64_t kSecond = 1'000'000'000;
using Bytes = std::vector<uint8_t>;

uint64_t crc_of(const Bytes& b) { return crc32c(std::as_bytes(std::span<const uint8_t>(b))); }

Bytes random_bytes(std::size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
}

// ---- hand-made messages -----------------------------------------------------------------------------------

template <class Encoder, class Fill>
Bytes encode(std::size_t cap, Fill fill) {
    Bytes buf(cap);
    Encoder e;
    (void)e.wrap_and_apply_header(buf.data(), buf.size());
    fill(e);
    auto n = e.finish();
    EXPECT_TRUE(n.ok()) << (n.ok() ? "" : n.error().message());
    buf.resize(n.ok() ? *n : 0);
    return buf;
}

Bytes blob_announce(uint32_t mv, uint32_t type, uint64_t total, uint64_t checksum, uint32_t stream = kStream) {
    return encode<wc::MetaBlobAnnounce::Encoder>(64, [&](auto& e) {
        e.streamId(stream).metaVersion(mv).blobType(type).totalLen(total).checksum(checksum);
    });
}

Bytes blob_chunk(uint32_t mv, uint64_t offset, std::span<const uint8_t> bytes, uint32_t stream = kStream) {
    return encode<wc::MetaBlobChunk::Encoder>(64 + bytes.size(), [&](auto& e) {
        e.streamId(stream).metaVersion(mv).chunkOffset(offset).bytes(bytes);
    });
}

Bytes blob_chunk(uint32_t mv, const Bytes& blob, std::size_t offset, std::size_t len) {
    return blob_chunk(mv, offset, std::span<const uint8_t>(blob.data() + offset, len));
}

Bytes blob_complete(uint32_t mv, uint64_t checksum, uint32_t stream = kStream) {
    return encode<wc::MetaBlobComplete::Encoder>(64, [&](auto& e) {
        e.streamId(stream).metaVersion(mv).checksum(checksum);
    });
}

Bytes source_announce(uint64_t epoch, uint32_t mv, std::string_view name = "cam", uint32_t stream = kStream) {
    return encode<wc::DataSourceAnnounce::Encoder>(256, [&](auto& e) {
        e.streamId(stream).producerId(9).epoch(epoch).metaVersion(mv).name(name).summary("u8[480,640,3]");
    });
}

Bytes source_meta(uint32_t mv, const std::vector<MetadataAttribute>& attrs, uint32_t stream = kStream) {
    return encode<wc::DataSourceMeta::Encoder>(4096, [&](auto& e) {
        e.streamId(stream).metaVersion(mv).timestampNs(123);
        auto g = e.attributesCount(attrs.size());
        for (const auto& a : attrs) g.next().key(a.key).format(a.format).value(std::span<const uint8_t>(a.value));
    });
}

// Feeds a whole blob in chunks of `chunk` bytes, Announce to Complete.
void feed_blob(MetadataReceiver& r, uint32_t mv, uint32_t type, const Bytes& blob, std::size_t chunk, uint64_t checksum) {
    r.on_message(blob_announce(mv, type, blob.size(), checksum));
    for (std::size_t off = 0; off < blob.size(); off += chunk) {
        r.on_message(blob_chunk(mv, blob, off, std::min(chunk, blob.size() - off)));
    }
    r.on_message(blob_complete(mv, checksum));
}

// ---- a publication whose answers a test scripts -----------------------------------------------------------

class FakePublication final : public transport::Publication {
public:
    std::vector<Bytes> sent;
    std::vector<const uint8_t*> buffers;           // where each sent message was encoded
    std::deque<transport::OfferStatus> refusals;  // answered (in order) before anything is accepted again
    bool connected = true;
    std::size_t max_message = 1 << 20;

    transport::OfferResult offer(std::span<const uint8_t> m) noexcept override {
        if (!refusals.empty()) {
            const auto s = refusals.front();
            refusals.pop_front();
            return s;
        }
        if (!connected) return transport::OfferStatus::not_connected;
        sent.emplace_back(m.begin(), m.end());
        buffers.push_back(m.data());
        position_ += static_cast<int64_t>(m.size());
        return transport::OfferResult(position_);
    }
    transport::OfferResult try_claim(std::size_t, transport::BufferClaim&) noexcept override {
        return transport::OfferStatus::failed;
    }
    bool is_connected() const noexcept override { return connected; }
    std::size_t max_message_length() const noexcept override { return max_message; }
    const std::string& channel() const noexcept override { return channel_; }
    int32_t stream_id() const noexcept override { return kMetaStreamId; }
    int32_t session_id() const noexcept override { return 1; }

    // Template ids of what was sent, in order.
    std::vector<uint16_t> templates() const {
        std::vector<uint16_t> t;
        for (const auto& m : sent) t.push_back(static_cast<uint16_t>(m[2] | (m[3] << 8)));
        return t;
    }

private:
    std::string channel_ = "fake:metadata";
    int64_t position_ = 0;
};

constexpr uint16_t kTplAnnounce = wc::DataSourceAnnounce::kTemplateId;
constexpr uint16_t kTplMeta = wc::DataSourceMeta::kTemplateId;
constexpr uint16_t kTplBlobAnnounce = wc::MetaBlobAnnounce::kTemplateId;
constexpr uint16_t kTplChunk = wc::MetaBlobChunk::kTemplateId;
constexpr uint16_t kTplComplete = wc::MetaBlobComplete::kTemplateId;

std::unique_ptr<MetadataPublisher> make_publisher(transport::Publication& pub, MetadataPublisherConfig c = {}) {
    c.stream_id = kStream;
    c.producer_id = 9;
    c.epoch = 77;
    auto p = MetadataPublisher::create(pub, c);
    EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
    return p.ok() ? std::move(*p) : nullptr;
}

// ---- the ipc bus ------------------------------------------------------------------------------------------

struct Bus {
    test::BusRoot root;
    transport::TransportHub hub{root.options()};
    std::unique_ptr<transport::Subscription> sub;
    std::unique_ptr<transport::Publication> pub;
    std::vector<Bytes> seen;  // every message delivered, raw

    Bus() {
        auto s = hub.add_subscription("ipc:metadata", kMetaStreamId);
        EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message());
        if (s.ok()) sub = std::move(*s);
        auto p = hub.add_publication("ipc:metadata", kMetaStreamId);
        EXPECT_TRUE(p.ok()) << (p.ok() ? "" : p.error().message());
        if (p.ok()) pub = std::move(*p);
    }

    // Delivers to `r` until `done()` or 10 s pass; returns done().
    template <class Done>
    bool drain(MetadataReceiver& r, Done done) {
        const int64_t deadline = monotonic_ns() + 10 * kSecond;
        while (!done()) {
            hub.do_work();
            const int n = sub->poll(
                [&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                    seen.emplace_back(m.begin(), m.end());
                    r.on_message(m);
                },
                256);
            if (n == 0) {
                if (monotonic_ns() > deadline) return done();
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }
        return true;
    }
    // Delivers whatever is there now.
    void drain_now(MetadataReceiver& r) {
        for (int i = 0; i < 50; ++i) {
            hub.do_work();
            sub->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
                seen.emplace_back(m.begin(), m.end());
                r.on_message(m);
            }, 256);
            std::this_thread::sleep_for(std::chrono::microseconds(100));
        }
    }
};

MetadataReceiverConfig receiver_config() {
    MetadataReceiverConfig c;
    c.stream_id = kStream;
    return c;
}

}  // namespace

// ===== round trips over the ipc bus ========================================================================

// W-10.3.1-1, §4.8: DataSourceAnnounce carries name, summary, producer id, epoch and the current meta_version.
TEST(MetadataRoundTrip, NameAndSummary) {
    Bus bus;
    auto p = make_publisher(*bus.pub);
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->set_name("left-camera").ok());
    ASSERT_TRUE(p->set_summary("uint8[480,640,3] HWC").ok());
    MetadataReceiver r(receiver_config());
    EXPECT_EQ(p->do_work(0), 2);  // DataSourceAnnounce + DataSourceMeta
    ASSERT_TRUE(bus.drain(r, [&] { return r.source().has_value() && r.latest_attributes() != nullptr; }));
    const DataSourceInfo& s = *r.source();
    EXPECT_EQ(s.name, "left-camera");
    EXPECT_EQ(s.summary, "uint8[480,640,3] HWC");
    EXPECT_EQ(s.producer_id, 9u);
    EXPECT_EQ(s.epoch, 77u);
    EXPECT_EQ(s.meta_version, p->meta_version());
    EXPECT_EQ(p->meta_version(), 2u);  // two changes from the initial 0
    EXPECT_EQ(r.stats().messages_malformed, 0u);
}

// W-10.3.2-1, §4.9: attribute values are raw bytes (NULs, 0xFF, empty) and arrive exactly; keys and formats too;
// the set is cached under its meta_version (W-10.3.2-2: a frame's meta_version finds its attributes).
TEST(MetadataRoundTrip, AttributesWithBinaryValues) {
    Bus bus;
    auto p = make_publisher(*bus.pub);
    ASSERT_TRUE(p);
    std::vector<MetadataAttribute> attrs = {
        {"camera_serial", "text/plain", {'S', 'N', '4', '2'}},
        {"intrinsics", "application/msgpack", {0x00, 0xFF, 0x00, 0x80, 0x7F, 0x00}},
        {"empty", "application/octet-stream", {}},
        {"big", "application/octet-stream", random_bytes(20000, 7)},
        {"roi", "sbe:900.8", {1, 2, 3}},
    };
    ASSERT_TRUE(p->set_attributes(attrs).ok());
    const uint32_t v = p->meta_version();
    MetadataReceiver r(receiver_config());
    p->do_work(0);
    ASSERT_TRUE(bus.drain(r, [&] { return r.attributes_for(v) != nullptr; }));
    const AttributeSet* set = r.attributes_for(v);
    EXPECT_EQ(set->attributes, attrs);
    EXPECT_EQ(set->meta_version, v);
    EXPECT_EQ(set->find("intrinsics")->value, attrs[1].value);
    EXPECT_EQ(set->find("nope"), nullptr);
    EXPECT_EQ(r.latest_attributes(), set);
    EXPECT_EQ(r.attributes_for(v + 1), nullptr);
}

// W-10.3.2-3, W-10.3.1-1: any change (add, remove, alter a value, name) bumps meta_version; the same values again do
// not. Each new version is sent on the next do_work, without waiting for the cadence, and the receiver keeps
// the older versions for frames still naming them.
TEST(MetadataRoundTrip, VersionBumpsOnEveryChangeOnly) {
    Bus bus;
    MetadataPublisherConfig c;
    c.initial_meta_version = 10;
    auto p = make_publisher(*bus.pub, c);
    ASSERT_TRUE(p);
    MetadataReceiver r(receiver_config());
    EXPECT_EQ(p->meta_version(), 10u);
    const MetadataAttribute a{"a", "text/plain", {'1'}}, b{"b", "text/plain", {'2'}};

    ASSERT_TRUE(p->set_attributes({a}).ok());
    EXPECT_EQ(p->meta_version(), 11u);
    ASSERT_TRUE(p->set_attributes({a}).ok());  // the same set: no change
    EXPECT_EQ(p->meta_version(), 11u);
    p->do_work(0);
    ASSERT_TRUE(bus.drain(r, [&] { return r.attributes_for(11) != nullptr; }));

    ASSERT_TRUE(p->set_attributes({a, b}).ok());  // added
    EXPECT_EQ(p->meta_version(), 12u);
    EXPECT_EQ(p->do_work(1), 2);  // long before the 1 s cadence: Announce + Meta of the new version
    ASSERT_TRUE(bus.drain(r, [&] { return r.attributes_for(12) != nullptr && r.source()->meta_version == 12; }));
    EXPECT_EQ(r.attributes_for(12)->attributes.size(), 2u);

    ASSERT_TRUE(p->set_attributes({a}).ok());  // removed
    EXPECT_EQ(p->meta_version(), 13u);
    MetadataAttribute a2 = a;
    a2.value = {'9'};
    ASSERT_TRUE(p->set_attributes({a2}).ok());  // a value changed
    EXPECT_EQ(p->meta_version(), 14u);
    ASSERT_TRUE(p->set_name("renamed").ok());
    EXPECT_EQ(p->meta_version(), 15u);
    ASSERT_TRUE(p->set_name("renamed").ok());
    ASSERT_TRUE(p->set_summary("").ok());  // already empty
    EXPECT_EQ(p->meta_version(), 15u);
    p->bump_meta_version();
    EXPECT_EQ(p->meta_version(), 16u);
    EXPECT_EQ(p->do_work(2), 2);
    ASSERT_TRUE(bus.drain(r, [&] { return r.source()->meta_version == 16 && r.attributes_for(16) != nullptr; }));
    EXPECT_EQ(r.source()->name, "renamed");
    EXPECT_EQ(r.attributes_for(16)->attributes[0].value, Bytes{'9'});
    // Older versions are still there for frames that name them.
    ASSERT_NE(r.attributes_for(11), nullptr);
    EXPECT_EQ(r.attributes_for(11)->attributes, std::vector<MetadataAttribute>{a});
    EXPECT_EQ(r.attributes_for(12)->attributes, (std::vector<MetadataAttribute>{a, b}));
    EXPECT_EQ(p->stats().version_bumps, 6u);
}

// W-10.3.1-1, W-10.3.2-1, W-15.11-2: Announce and Meta are re-sent every period (1 s by default) and not in
// between; the receiver recognises a repeat of a cached version and does not store it again.
TEST(MetadataRoundTrip, CadenceResends) {
    Bus bus;
    auto p = make_publisher(*bus.pub);
    ASSERT_TRUE(p);
    ASSERT_TRUE(p->set_attributes({{"k", "text/plain", {'v'}}}).ok());
    MetadataReceiver r(receiver_config());
    EXPECT_EQ(p->do_work(0), 2);
    EXPECT_EQ(p->do_work(kSecond / 2), 0);
    EXPECT_EQ(p->do_work(kSecond - 1), 0);
    EXPECT_EQ(p->do_work(kSecond), 2);
    EXPECT_EQ(p->do_work(kSecond + kSecond / 2), 0);
    EXPECT_EQ(p->do_work(2 * kSecond), 2);
    EXPECT_EQ(p->stats().announces_sent, 3u);
    EXPECT_EQ(p->stats().metas_sent, 3u);
    ASSERT_TRUE(bus.drain(r, [&] { return r.stats().announces == 3 && r.stats().metas == 3; }));
    EXPECT_EQ(r.stats().meta_versions_cached, 1u);  // the repeats matched the cached set
    EXPECT_EQ(r.latest_attributes()->timestamp_ns, uint64_t(2 * kSecond));  // timestampNs = the send time

    MetadataPublisherConfig fast;
    fast.announce_period_ns = 100;
    fast.meta_period_ns = 250;
    FakePublication fake;
    auto q = make_publisher(fake, fast);
    for (int64_t t = 0; t <= 1000; t += 50) q->do_work(t);
    EXPECT_EQ(q->stats().announces_sent, 11u);  // 0, 100, ..., 1000
    EXPECT_EQ(q->stats().metas_sent, 5u);       // 0, 250, 500, 750, 1000
}

// W-10.3.3-1, W-15.9-1/-2/-3, A-22: a 300 KiB blob goes out as Announce(totalLen, CRC32C) + 5 chunks of at most
// 64 KiB at offsets 0, 64 Ki, ... covering [0, totalLen) + Complete(same checksum), and reassembles exactly.
TEST(MetadataRoundTrip, Blob300KiBReassemblesWithCrc) {
    Bus bus;
    auto p = make_publisher(*bus.pub);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->chunk_bytes(), 64u * 1024u);
    const Bytes blob = random_bytes(300 * 1024, 300);
    ASSERT_TRUE(p->publish_blob(7, blob).ok());
    const uint32_t v = p->meta_version();
    MetadataReceiver r(receiver_config());
    std::vector<CompletedBlob> handed;
    r.set_blob_handler([&](const CompletedBlob& b) { handed.push_back(b); });
    p->do_work(0);
    EXPECT_EQ(p->queued_blobs(), 0u);
    ASSERT_TRUE(bus.drain(r, [&] { return r.stats().blobs_completed == 1; }));

    const CompletedBlob* got = r.latest_blob(7);
    ASSERT_NE(got, nullptr);
    EXPECT_EQ(got->bytes, blob);
    EXPECT_EQ(got->meta_version, v);
    EXPECT_EQ(got->checksum, crc_of(blob));
    ASSERT_EQ(handed.size(), 1u);
    EXPECT_EQ(handed[0].bytes, blob);
    EXPECT_EQ(r.stats().blobs_discarded(), 0u);
    EXPECT_EQ(r.blob_bytes_held(), blob.size());

    // The wire, as seen on the bus.
    uint64_t expect_offset = 0, announce_checksum = 0, complete_checksum = 1;
    int chunks = 0;
    for (const auto& m : bus.seen) {
        if (auto a = wc::MetaBlobAnnounce::Decoder::wrap(m.data(), m.size())) {
            EXPECT_EQ(a->totalLen(), blob.size());
            EXPECT_EQ(a->blobType(), 7u);
            announce_checksum = a->checksum();
        } else if (auto c = wc::MetaBlobChunk::Decoder::wrap(m.data(), m.size())) {
            EXPECT_EQ(c->chunkOffset(), expect_offset);
            EXPECT_LE(c->bytesBytes().size(), 64u * 1024u);
            EXPECT_GT(c->bytesBytes().size(), 0u);
            expect_offset += c->bytesBytes().size();
            ++chunks;
        } else if (auto d = wc::MetaBlobComplete::Decoder::wrap(m.data(), m.size())) {
            complete_checksum = d->checksum();
        }
    }
    EXPECT_EQ(chunks, 5);  // ceil(300 / 64)
    EXPECT_EQ(expect_offset, blob.size());
    EXPECT_EQ(announce_checksum, crc_of(blob));
    EXPECT_LE(announce_checksum, 0xFFFFFFFFu);  // CRC32C in the low 32 bits
    EXPECT_EQ(complete_checksum, announce_checksum);
}

// The same across processes: the publisher in a child started before anyone listens holds its blob (not
// connected) and sends it whole once the parent's subscription appears. (The child waits until the parent's
// add_subscription() has returned: the ipc bus counts a subscriber a moment before it fixes where that
// subscriber starts reading, and what is published in between is not delivered to it.)
TEST(MetadataRoundTrip, BlobFromAnotherProcessWaitsForASubscriber) {
    test::BusRoot root;
    const Bytes blob = random_bytes(200 * 1024 + 17, 11);
    test::Barrier publisher_ready(1), subscribed(1);
    const pid_t child = test::fork_child([&] {
        transport::TransportHub hub(root.options());
        auto pub = hub.add_publication("ipc:metadata", kMetaStreamId);
        if (!pub) return test::child_fail(pub.error().message());
        auto p = make_publisher(**pub);
        if (!p || !p->set_name("child").ok() || !p->publish_blob(3, blob).ok()) return test::child_fail("setup");
        p->do_work(monotonic_ns());
        if (p->stats().blob_announces_sent != 0) return test::child_fail("sent while nobody listened");
        publisher_ready.arrive();
        if (!subscribed.wait(20)) return test::child_fail("no subscriber");
        const int64_t deadline = monotonic_ns() + 20 * kSecond;
        while (p->stats().blobs_completed == 0 && monotonic_ns() < deadline) {
            hub.do_work();
            p->do_work(monotonic_ns());
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
        if (p->stats().blobs_completed != 1) return test::child_fail("blob not sent");
        // Keep announcing a little so the parent can drain before the log goes away.
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        return 0;
    });
    ASSERT_TRUE(publisher_ready.wait(20));
    transport::TransportHub hub(root.options());
    auto sub = hub.add_subscription("ipc:metadata", kMetaStreamId);
    ASSERT_TRUE(sub.ok());
    subscribed.arrive();
    MetadataReceiver r(receiver_config());
    const int64_t deadline = monotonic_ns() + 20 * kSecond;
    while (r.stats().blobs_completed == 0 && monotonic_ns() < deadline) {
        hub.do_work();
        if ((*sub)->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) { r.on_message(m); }, 64) == 0) {
            std::this_thread::sleep_for(std::chrono::microseconds(200));
        }
    }
    EXPECT_EQ(test::wait_child(child, 30), test::ChildResult::ok());
    ASSERT_NE(r.latest_blob(3), nullptr);
    EXPECT_EQ(r.latest_blob(3)->bytes, blob);
    EXPECT_EQ(r.stats().blobs_discarded(), 0u);
    ASSERT_TRUE(r.source().has_value());
    EXPECT_EQ(r.source()->name, "child");
}

// ===== hand-crafted chunk sequences (W-10.3.3-1/-2, W-15.9-3, A-22) =========================================

TEST(MetadataReassembly, ContiguousChunksOfAnySizeComplete) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(1000, 1);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 1));
    r.on_message(blob_chunk(1, blob, 1, 499));
    r.on_message(blob_chunk(1, blob, 500, 500));
    r.on_message(blob_complete(1, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    ASSERT_NE(r.latest_blob(5), nullptr);
    EXPECT_EQ(r.latest_blob(5)->bytes, blob);
}

TEST(MetadataReassembly, GapIsDiscarded) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 2);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 100));
    r.on_message(blob_chunk(1, blob, 200, 100));  // [100, 200) never came
    r.on_message(blob_complete(1, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_discarded_gap, 1u);
    EXPECT_EQ(r.stats().completes_orphaned, 1u);  // the blob is gone; its Complete finds nothing
    EXPECT_EQ(r.stats().blobs_completed, 0u);
    EXPECT_EQ(r.latest_blob(5), nullptr);
    EXPECT_EQ(r.blob_bytes_held(), 0u);
}

TEST(MetadataReassembly, FirstChunkNotAtZeroIsAGap) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 3);
    r.on_message(blob_announce(1, 5, blob.size(), 0));
    r.on_message(blob_chunk(1, blob, 100, 200));
    EXPECT_EQ(r.stats().blobs_discarded_gap, 1u);
}

TEST(MetadataReassembly, OverlapIsDiscarded) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 4);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 150));
    r.on_message(blob_chunk(1, blob, 100, 200));  // [100, 150) again
    r.on_message(blob_complete(1, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_discarded_overlap, 1u);
    EXPECT_EQ(r.stats().blobs_discarded_duplicate, 0u);
    EXPECT_EQ(r.stats().blobs_completed, 0u);
}

TEST(MetadataReassembly, DuplicateChunkIsDiscarded) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 5);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 100));
    r.on_message(blob_chunk(1, blob, 100, 100));
    r.on_message(blob_chunk(1, blob, 100, 100));  // the same chunk again: offsets no longer strictly increase
    r.on_message(blob_chunk(1, blob, 200, 100));
    r.on_message(blob_complete(1, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_discarded_duplicate, 1u);
    EXPECT_EQ(r.stats().chunks_orphaned, 1u);
    EXPECT_EQ(r.stats().blobs_completed, 0u);
    EXPECT_EQ(r.latest_blob(5), nullptr);
}

TEST(MetadataReassembly, BadCrcIsDiscarded) {
    MetadataReceiver r(receiver_config());
    Bytes blob = random_bytes(300, 6);
    const uint64_t good = crc_of(blob);
    blob[150] ^= 0x01;  // the bytes sent differ from what the checksum was computed over
    feed_blob(r, 1, 5, blob, 128, good);
    EXPECT_EQ(r.stats().blobs_discarded_crc, 1u);
    EXPECT_EQ(r.stats().blobs_completed, 0u);
    EXPECT_EQ(r.latest_blob(5), nullptr);
}

TEST(MetadataReassembly, ChecksumWithHighBitsSetIsACrcMismatch) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(100, 7);
    feed_blob(r, 1, 5, blob, 64, crc_of(blob) | (uint64_t{1} << 40));  // CRC32C zero-extended
    EXPECT_EQ(r.stats().blobs_discarded_crc, 1u);
}

TEST(MetadataReassembly, AnnounceAndCompleteChecksumsMustAgree) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(100, 8);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 100));
    r.on_message(blob_complete(1, crc_of(blob) ^ 1));
    EXPECT_EQ(r.stats().blobs_discarded_checksum_mismatch, 1u);
    // Announce says "none" but Complete has one: also a disagreement.
    r.on_message(blob_announce(2, 5, blob.size(), 0));
    r.on_message(blob_chunk(2, blob, 0, 100));
    r.on_message(blob_complete(2, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_discarded_checksum_mismatch, 2u);
    EXPECT_EQ(r.stats().blobs_completed, 0u);
}

// A-22, W-15.9-2: checksum 0 = no checksum; the bytes are taken as they are.
TEST(MetadataReassembly, ZeroChecksumIsNotChecked) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(5000, 9);
    ASSERT_NE(crc_of(blob), 0u);
    feed_blob(r, 1, 5, blob, 1024, 0);
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    ASSERT_NE(r.latest_blob(5), nullptr);
    EXPECT_EQ(r.latest_blob(5)->bytes, blob);
    EXPECT_EQ(r.latest_blob(5)->checksum, 0u);
}

TEST(MetadataReassembly, TooLargeTotalLenIsRefused) {
    MetadataReceiverConfig c = receiver_config();
    c.max_blob_bytes = 1 << 20;
    MetadataReceiver r(c);
    r.on_message(blob_announce(1, 5, (1 << 20) + 1, 0));
    EXPECT_EQ(r.stats().blobs_refused_too_large, 1u);
    EXPECT_EQ(r.open_blobs(), 0u);
    const Bytes part = random_bytes(100, 10);
    r.on_message(blob_chunk(1, 0, part));
    EXPECT_EQ(r.stats().chunks_orphaned, 1u);
    // The default cap is 64 MiB; a 2^40-byte announce is refused without allocating anything.
    MetadataReceiver d(receiver_config());
    d.on_message(blob_announce(1, 5, uint64_t{1} << 40, 0));
    EXPECT_EQ(d.stats().blobs_refused_too_large, 1u);
    EXPECT_EQ(d.blob_bytes_held(), 0u);
    // Exactly the cap is fine.
    r.on_message(blob_announce(2, 5, 1 << 20, 0));
    EXPECT_EQ(r.open_blobs(), 1u);
    EXPECT_EQ(r.blob_bytes_held(), std::size_t{1} << 20);
}

TEST(MetadataReassembly, ChunkBeyondTotalLenIsDiscarded) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(200, 11);
    r.on_message(blob_announce(1, 5, 150, 0));
    r.on_message(blob_chunk(1, blob, 0, 100));
    r.on_message(blob_chunk(1, blob, 100, 100));  // ends at 200 > 150
    EXPECT_EQ(r.stats().blobs_discarded_size, 1u);
    r.on_message(blob_announce(2, 5, 150, 0));
    r.on_message(blob_chunk(2, 150, std::span<const uint8_t>(blob.data(), 10)));  // starts at totalLen
    EXPECT_EQ(r.stats().blobs_discarded_size, 2u);
    EXPECT_EQ(r.blob_bytes_held(), 0u);
}

TEST(MetadataReassembly, CompleteBeforeAllBytesIsDiscarded) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 12);
    r.on_message(blob_announce(1, 5, blob.size(), 0));
    r.on_message(blob_chunk(1, blob, 0, 200));
    r.on_message(blob_complete(1, 0));
    EXPECT_EQ(r.stats().blobs_discarded_incomplete, 1u);
    EXPECT_EQ(r.stats().blobs_completed, 0u);
}

TEST(MetadataReassembly, ChunksAndCompleteWithoutAnnounceAreOrphans) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(100, 13);
    r.on_message(blob_chunk(1, blob, 0, 100));
    r.on_message(blob_complete(1, 0));
    EXPECT_EQ(r.stats().chunks_orphaned, 1u);
    EXPECT_EQ(r.stats().completes_orphaned, 1u);
    // A chunk for another meta_version than the open blob's is an orphan too, and leaves the open blob alone.
    r.on_message(blob_announce(2, 5, 100, crc_of(blob)));
    r.on_message(blob_chunk(3, blob, 0, 100));
    EXPECT_EQ(r.stats().chunks_orphaned, 2u);
    r.on_message(blob_chunk(2, blob, 0, 100));
    r.on_message(blob_complete(2, crc_of(blob)));
    EXPECT_EQ(r.stats().blobs_completed, 1u);
}

TEST(MetadataReassembly, ReannounceSupersedesTheOpenBlob) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(300, 14);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 100));
    feed_blob(r, 1, 5, blob, 100, crc_of(blob));  // the producer started over
    EXPECT_EQ(r.stats().blobs_discarded_superseded, 1u);
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    EXPECT_EQ(r.latest_blob(5)->bytes, blob);
}

TEST(MetadataReassembly, EmptyChunksAndEmptyBlobs) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(100, 15);
    r.on_message(blob_announce(1, 5, blob.size(), crc_of(blob)));
    r.on_message(blob_chunk(1, blob, 0, 50));
    r.on_message(blob_chunk(1, 50, {}));  // carries nothing: ignored
    r.on_message(blob_chunk(1, blob, 50, 50));
    r.on_message(blob_complete(1, crc_of(blob)));
    EXPECT_EQ(r.stats().chunks_empty, 1u);
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    // A zero-length blob: Announce + Complete.
    r.on_message(blob_announce(2, 6, 0, 0));
    r.on_message(blob_complete(2, 0));
    EXPECT_EQ(r.stats().blobs_completed, 2u);
    ASSERT_NE(r.latest_blob(6), nullptr);
    EXPECT_TRUE(r.latest_blob(6)->bytes.empty());
}

// Two blobs of different meta_versions may be open at once and are kept apart.
TEST(MetadataReassembly, InterleavedVersionsStayApart) {
    MetadataReceiver r(receiver_config());
    const Bytes x = random_bytes(200, 16), y = random_bytes(150, 17);
    r.on_message(blob_announce(1, 1, x.size(), crc_of(x)));
    r.on_message(blob_announce(2, 2, y.size(), crc_of(y)));
    r.on_message(blob_chunk(1, x, 0, 100));
    r.on_message(blob_chunk(2, y, 0, 100));
    r.on_message(blob_chunk(1, x, 100, 100));
    r.on_message(blob_chunk(2, y, 100, 50));
    r.on_message(blob_complete(2, crc_of(y)));
    r.on_message(blob_complete(1, crc_of(x)));
    EXPECT_EQ(r.stats().blobs_completed, 2u);
    EXPECT_EQ(r.latest_blob(1)->bytes, x);
    EXPECT_EQ(r.latest_blob(2)->bytes, y);
    EXPECT_EQ(r.latest_blob(2)->meta_version, 2u);
}

// Memory bounds: open and retained blobs together stay under max_blob_bytes; the oldest retained go first,
// then the oldest open ones; the number of open blobs is capped too.
TEST(MetadataReassembly, MemoryStaysWithinTheCap) {
    MetadataReceiverConfig c = receiver_config();
    c.max_blob_bytes = 1000;
    c.max_inflight_blobs = 2;
    MetadataReceiver r(c);
    const Bytes a = random_bytes(400, 18), b = random_bytes(400, 19), d = random_bytes(400, 20);
    feed_blob(r, 1, 1, a, 100, crc_of(a));
    feed_blob(r, 2, 2, b, 100, crc_of(b));
    EXPECT_EQ(r.blob_bytes_held(), 800u);
    feed_blob(r, 3, 3, d, 100, crc_of(d));  // needs 400: the oldest retained (type 1) goes
    EXPECT_EQ(r.stats().blobs_evicted, 1u);
    EXPECT_EQ(r.latest_blob(1), nullptr);
    EXPECT_NE(r.latest_blob(2), nullptr);
    EXPECT_NE(r.latest_blob(3), nullptr);
    EXPECT_LE(r.blob_bytes_held(), 1000u);
    // A newer blob of a type replaces the older one (latest per type).
    feed_blob(r, 4, 3, a, 100, crc_of(a));
    EXPECT_EQ(r.latest_blob(3)->bytes, a);
    EXPECT_EQ(r.latest_blob(3)->meta_version, 4u);
    EXPECT_LE(r.blob_bytes_held(), 1000u);

    // Open blobs: a third announce with max_inflight_blobs 2 supersedes the oldest open one.
    MetadataReceiver q(c);
    q.on_message(blob_announce(1, 1, 100, 0));
    q.on_message(blob_announce(2, 1, 100, 0));
    q.on_message(blob_announce(3, 1, 100, 0));
    EXPECT_EQ(q.open_blobs(), 2u);
    EXPECT_EQ(q.stats().blobs_discarded_superseded, 1u);
    // A fourth announce: the inflight limit discards the oldest open blob (2), and at 950 bytes it also needs
    // the other one's (3) 100 bytes: both go, oldest first.
    q.on_message(blob_announce(4, 1, 950, 0));
    EXPECT_EQ(q.stats().blobs_discarded_superseded, 3u);
    EXPECT_EQ(q.blob_bytes_held(), 950u);
    EXPECT_EQ(q.open_blobs(), 1u);

    // retain_blobs = false: handed to the handler, not kept.
    c.retain_blobs = false;
    MetadataReceiver h(c);
    int handed = 0;
    h.set_blob_handler([&](const CompletedBlob& blob) { handed += blob.bytes == a ? 1 : 0; });
    feed_blob(h, 1, 1, a, 100, crc_of(a));
    EXPECT_EQ(handed, 1);
    EXPECT_EQ(h.latest_blob(1), nullptr);
    EXPECT_EQ(h.blob_bytes_held(), 0u);
}

// ===== receiver: what it ignores, versions, epochs ==========================================================

TEST(MetadataReceiverTest, IgnoresOtherStreamsTemplatesAndGarbage) {
    MetadataReceiver r(receiver_config());
    EXPECT_FALSE(r.on_message(source_announce(1, 1, "other", kStream + 1)));
    EXPECT_FALSE(r.on_message(blob_announce(1, 1, 10, 0, kStream + 1)));
    EXPECT_EQ(r.stats().messages_other_stream, 2u);
    EXPECT_FALSE(r.source().has_value());
    EXPECT_EQ(r.open_blobs(), 0u);

    Bytes qos(64);
    wc::QosProducer::Encoder e;
    (void)e.wrap_and_apply_header(qos.data(), qos.size());
    e.streamId(kStream);
    qos.resize(*e.finish());
    EXPECT_FALSE(r.on_message(qos));
    EXPECT_FALSE(r.on_message(Bytes{1, 2, 3}));
    EXPECT_FALSE(r.on_message({}));
    EXPECT_EQ(r.stats().messages_ignored, 3u);

    Bytes truncated = source_meta(1, {{"k", "f", {1, 2, 3}}});
    truncated.resize(truncated.size() - 2);
    EXPECT_FALSE(r.on_message(truncated));
    EXPECT_EQ(r.stats().messages_malformed, 1u);
    EXPECT_EQ(r.latest_attributes(), nullptr);

    EXPECT_TRUE(r.on_message(source_announce(1, 1)));
}

TEST(MetadataReceiverTest, AttributeCacheIsBoundedAndKeepsTheLatest) {
    MetadataReceiverConfig c = receiver_config();
    c.max_cached_versions = 3;
    MetadataReceiver r(c);
    for (uint32_t v = 1; v <= 5; ++v) r.on_message(source_meta(v, {{"v", "text/plain", {uint8_t('0' + v)}}}));
    EXPECT_EQ(r.attributes_for(1), nullptr);
    EXPECT_EQ(r.attributes_for(2), nullptr);
    ASSERT_NE(r.attributes_for(3), nullptr);
    EXPECT_EQ(r.latest_attributes()->meta_version, 5u);
    EXPECT_EQ(r.stats().meta_versions_evicted, 2u);
    // A repeat refreshes a version (it is no longer the oldest); a changed set under a known version replaces it.
    r.on_message(source_meta(3, {{"v", "text/plain", {'3'}}}));
    EXPECT_EQ(r.latest_attributes()->meta_version, 3u);
    r.on_message(source_meta(6, {}));
    EXPECT_NE(r.attributes_for(3), nullptr);
    EXPECT_EQ(r.attributes_for(4), nullptr);
    r.on_message(source_meta(6, {{"new", "text/plain", {'x'}}}));
    EXPECT_EQ(r.attributes_for(6)->attributes.size(), 1u);
}

// A restarted producer (new epoch) counts meta_version from scratch: what was cached by version is dropped.
TEST(MetadataReceiverTest, NewEpochForgetsVersionsAndBlobs) {
    MetadataReceiver r(receiver_config());
    const Bytes blob = random_bytes(100, 21);
    r.on_message(source_announce(100, 1));
    r.on_message(source_meta(1, {{"k", "text/plain", {'a'}}}));
    feed_blob(r, 1, 5, blob, 50, crc_of(blob));
    r.on_message(blob_announce(2, 6, 100, 0));
    r.on_message(source_announce(100, 1));  // same epoch: nothing changes
    EXPECT_NE(r.attributes_for(1), nullptr);
    EXPECT_EQ(r.open_blobs(), 1u);
    r.on_message(source_announce(200, 1));
    EXPECT_EQ(r.stats().epoch_changes, 1u);
    EXPECT_EQ(r.attributes_for(1), nullptr);
    EXPECT_EQ(r.latest_blob(5), nullptr);
    EXPECT_EQ(r.open_blobs(), 0u);
    EXPECT_EQ(r.blob_bytes_held(), 0u);
    EXPECT_EQ(r.stats().blobs_discarded_superseded, 1u);
    EXPECT_EQ(r.source()->epoch, 200u);
}

// ===== publisher: wire shape, refusals, limits =============================================================

// W-10.3.3-1, W-15.9-3: offsets on the wire strictly increase, never overlap and cover [0, total), whatever the
// blob size against the chunk size; one blob at a time, never interleaved; an empty blob is Announce + Complete.
TEST(MetadataPublisherTest, ChunkOffsetsCoverTheBlobExactly) {
    for (const std::size_t size : {std::size_t{0}, std::size_t{1}, std::size_t{999}, std::size_t{1000},
                                   std::size_t{1001}, std::size_t{4567}}) {
        FakePublication fake;
        MetadataPublisherConfig c;
        c.chunk_bytes = 1000;
        c.max_messages_per_work = 1000;
        auto p = make_publisher(fake, c);
        const Bytes blob = random_bytes(size, static_cast<uint32_t>(size));
        const Bytes other = random_bytes(10, 1);
        ASSERT_TRUE(p->publish_blob(1, blob).ok());
        ASSERT_TRUE(p->publish_blob(2, other).ok());
        p->do_work(0);
        std::vector<uint16_t> t = fake.templates();
        // Announce, Meta, then blob 1 entirely, then blob 2.
        const std::size_t chunks = (size + 999) / 1000;
        ASSERT_EQ(t.size(), 2 + (2 + chunks) + 3) << "size " << size;
        EXPECT_EQ(t[2], kTplBlobAnnounce);
        for (std::size_t i = 0; i < chunks; ++i) EXPECT_EQ(t[3 + i], kTplChunk);
        EXPECT_EQ(t[3 + chunks], kTplComplete);
        EXPECT_EQ(t[4 + chunks], kTplBlobAnnounce);
        uint64_t next = 0;
        int64_t last = -1;
        for (std::size_t i = 0; i < chunks; ++i) {
            const auto& m = fake.sent[3 + i];
            auto d = wc::MetaBlobChunk::Decoder::wrap(m.data(), m.size());
            ASSERT_TRUE(d.ok());
            EXPECT_GT(static_cast<int64_t>(d->chunkOffset()), last);
            EXPECT_EQ(d->chunkOffset(), next);
            EXPECT_LE(d->bytesBytes().size(), 1000u);
            last = static_cast<int64_t>(d->chunkOffset());
            next += d->bytesBytes().size();
        }
        EXPECT_EQ(next, size);
        // And a receiver agrees.
        MetadataReceiver r(receiver_config());
        for (const auto& m : fake.sent) r.on_message(m);
        EXPECT_EQ(r.stats().blobs_completed, 2u);
        EXPECT_EQ(r.latest_blob(1)->bytes, blob);
        EXPECT_EQ(r.latest_blob(1)->checksum, crc_of(blob));
    }
}

// Back pressure: the refused message is offered again on the next do_work and the sequence on the wire has no
// hole; Announce/Meta refused stay due and go out on the next call.
TEST(MetadataPublisherTest, BackPressureRetriesTheSameMessage) {
    FakePublication fake;
    MetadataPublisherConfig c;
    c.chunk_bytes = 100;
    c.max_messages_per_work = 3;
    auto s = make_publisher(fake, c);
    const Bytes blob = random_bytes(450, 22);
    s->do_work(0);  // Announce + Meta
    fake.sent.clear();
    ASSERT_TRUE(s->publish_blob(9, blob).ok());
    EXPECT_EQ(s->do_work(1), 3);  // blob announce + chunk 0 + chunk 100 (paced: 3 per call)
    fake.refusals = {transport::OfferStatus::back_pressured, transport::OfferStatus::failed};
    EXPECT_EQ(s->do_work(2), 0);  // chunk 200 refused
    EXPECT_EQ(s->do_work(3), 0);  // refused again
    EXPECT_EQ(s->do_work(4), 3);  // chunk 200, 300, 400
    EXPECT_EQ(s->do_work(5), 1);  // complete
    EXPECT_EQ(s->stats().offers_refused, 2u);
    EXPECT_EQ(s->stats().blobs_restarted, 0u);
    MetadataReceiver r(receiver_config());
    for (const auto& m : fake.sent) r.on_message(m);
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    EXPECT_EQ(r.stats().blobs_discarded(), 0u);
    ASSERT_NE(r.latest_blob(9), nullptr);
    EXPECT_EQ(r.latest_blob(9)->bytes, blob);
}

// Announce and Meta refused by back pressure are retried on the next do_work, not a period later.
TEST(MetadataPublisherTest, RefusedAnnounceAndMetaStayDue) {
    FakePublication fake;
    auto p = make_publisher(fake);
    fake.refusals = {transport::OfferStatus::back_pressured, transport::OfferStatus::back_pressured};
    EXPECT_EQ(p->do_work(0), 0);
    EXPECT_EQ(p->do_work(1), 2);
    EXPECT_EQ(fake.templates(), (std::vector<uint16_t>{kTplAnnounce, kTplMeta}));
    EXPECT_EQ(p->do_work(2), 0);  // and then the cadence again
    EXPECT_EQ(p->do_work(1 + kSecond), 2);
}

// not_connected: a blob not started waits; one part-sent starts over from its Announce once someone listens.
TEST(MetadataPublisherTest, NotConnectedHoldsOrRestartsTheBlob) {
    FakePublication fake;
    MetadataPublisherConfig c;
    c.chunk_bytes = 100;
    c.max_messages_per_work = 3;
    auto p = make_publisher(fake, c);
    const Bytes blob = random_bytes(450, 23);
    fake.connected = false;
    ASSERT_TRUE(p->publish_blob(4, blob).ok());
    EXPECT_EQ(p->do_work(0), 0);
    EXPECT_EQ(p->do_work(1), 0);
    EXPECT_EQ(p->queued_blobs(), 1u);
    EXPECT_FALSE(p->blob_in_progress());
    fake.connected = true;
    EXPECT_EQ(p->do_work(2), 2 + 3);  // Announce + Meta (they stayed due), blob announce + 2 chunks
    EXPECT_TRUE(p->blob_in_progress());
    fake.connected = false;  // everyone left mid-blob
    EXPECT_EQ(p->do_work(3), 0);
    EXPECT_EQ(p->stats().blobs_restarted, 1u);
    EXPECT_FALSE(p->blob_in_progress());
    fake.connected = true;
    fake.sent.clear();
    while (p->queued_blobs() != 0) p->do_work(4);
    // What a subscriber that joined now sees: the whole blob from its Announce.
    std::vector<uint16_t> t = fake.templates();
    ASSERT_FALSE(t.empty());
    EXPECT_EQ(t.front(), kTplBlobAnnounce);
    MetadataReceiver r(receiver_config());
    for (const auto& m : fake.sent) r.on_message(m);
    EXPECT_EQ(r.stats().blobs_completed, 1u);
    EXPECT_EQ(r.latest_blob(4)->bytes, blob);
}

// closed (or anything the publication can never take): the blob is dropped and counted, the next one goes.
TEST(MetadataPublisherTest, ClosedPublicationDropsTheBlob) {
    FakePublication fake;
    auto p = make_publisher(fake);
    p->do_work(0);
    const Bytes blob = random_bytes(10, 24);
    ASSERT_TRUE(p->publish_blob(1, blob).ok());
    ASSERT_TRUE(p->publish_blob(2, blob).ok());
    fake.refusals = {transport::OfferStatus::closed};
    p->do_work(1);
    EXPECT_EQ(p->stats().blobs_dropped, 1u);
    EXPECT_EQ(p->stats().blobs_completed, 1u);
    EXPECT_EQ(p->queued_blobs(), 0u);
}

// Encoding buffers are allocated once: every message of a kind is encoded in the same buffer.
TEST(MetadataPublisherTest, EncodingBuffersAreReused) {
    FakePublication fake;
    MetadataPublisherConfig c;
    c.chunk_bytes = 64;
    c.max_messages_per_work = 1000;
    auto p = make_publisher(fake, c);
    ASSERT_TRUE(p->set_attributes({{"k", "text/plain", {'v'}}}).ok());
    ASSERT_TRUE(p->publish_blob(1, random_bytes(1000, 25)).ok());
    ASSERT_TRUE(p->publish_blob(2, random_bytes(1000, 26)).ok());
    for (int64_t t = 0; t < 5; ++t) p->do_work(t * kSecond);
    std::map<uint16_t, std::set<const uint8_t*>> where;
    const auto t = fake.templates();
    for (std::size_t i = 0; i < t.size(); ++i) where[t[i]].insert(fake.buffers[i]);
    EXPECT_EQ(where[kTplAnnounce].size(), 1u);
    EXPECT_EQ(where[kTplMeta].size(), 1u);
    EXPECT_EQ(where[kTplChunk].size(), 1u);
    EXPECT_EQ(where[kTplBlobAnnounce].size(), 1u);
    EXPECT_EQ(where[kTplComplete].size(), 1u);
    EXPECT_EQ(p->stats().chunks_sent, 2u * 16u);  // ceil(1000 / 64) each
}

TEST(MetadataPublisherTest, RejectsWhatCannotBeSent) {
    FakePublication fake;
    fake.max_message = 4096;
    MetadataPublisherConfig c;
    c.max_blob_bytes = 1000;
    c.max_queued_blob_bytes = 1500;
    auto p = make_publisher(fake, c);
    ASSERT_TRUE(p);
    EXPECT_EQ(p->chunk_bytes(), 4096u - 28u);  // lowered to what one message carries
    const uint32_t v = p->meta_version();
    EXPECT_EQ(p->set_name("caf\xc3\xa9").error().code(), Errc::invalid_argument);  // varAscii
    EXPECT_EQ(p->set_attributes({{"", "text/plain", {}}}).error().code(), Errc::invalid_argument);
    EXPECT_EQ(p->set_attributes({{"k", "t", {}}, {"k", "t", {}}}).error().code(), Errc::invalid_argument);
    EXPECT_EQ(p->set_attributes({{"k", "t", Bytes(5000)}}).error().code(), Errc::capacity);
    EXPECT_EQ(p->set_name(std::string(5000, 'n')).error().code(), Errc::capacity);
    EXPECT_EQ(p->meta_version(), v);  // nothing accepted, nothing bumped
    EXPECT_EQ(p->publish_blob(1, Bytes(1001)).error().code(), Errc::capacity);
    EXPECT_TRUE(p->publish_blob(1, Bytes(1000)).ok());
    EXPECT_EQ(p->publish_blob(1, Bytes(501)).error().code(), Errc::capacity);  // the queue holds 1500
    EXPECT_TRUE(p->publish_blob(1, Bytes(500)).ok());

    FakePublication tiny;
    tiny.max_message = 28;
    EXPECT_FALSE(MetadataPublisher::create(tiny, {}).ok());
    MetadataPublisherConfig bad;
    bad.initial_meta_version = 0xFFFFFFFFu;
    EXPECT_FALSE(MetadataPublisher::create(fake, bad).ok());
    bad = {};
    bad.announce_period_ns = 0;
    EXPECT_FALSE(MetadataPublisher::create(fake, bad).ok());
}

// meta_version is a u32 whose all-ones value is the schema's null: the count wraps past it to 0.
TEST(MetadataPublisherTest, VersionWrapsPastTheNullValue) {
    FakePublication fake;
    MetadataPublisherConfig c;
    c.initial_meta_version = 0xFFFFFFFEu;
    auto p = make_publisher(fake, c);
    p->bump_meta_version();
    EXPECT_EQ(p->meta_version(), 0u);
}
