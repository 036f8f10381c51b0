// Frames flow from a producer process to a consumer process, both through offer() and through
// try_claim()/commit(), and arrive with the layout, metadata and payload that were published.
//
// Requirements: W-8-9, W-8-13..16, W-8-20..25 (a full seqlock cycle per frame, empty frames included),
// W-8-27, W-8-31 (payload trusted only after still_valid()), W-9-3 (smallest fitting pool), W-9-4 + A-27 (a frame
// no pool fits is dropped without using a seq, so consumers see no gap), W-10.2.1-1..7, -9, -10 (one descriptor per
// frame, after commit; layout only from SHM), A-29 (inferred strides), W-15.4-2 (no drops when nothing is lost),
// W-15.21-2 (accept only a stable committed word).
#include <gtest/gtest.h>

#include "client_test_support.hpp"
#include "tensorpool/wire/gen/control.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

namespace {

constexpr uint64_t kFrames = 240;    // 40 of each frame kind, half by offer() and half by try_claim()
constexpr uint64_t kHookAtSeq = 50;  // where the producer checks its refusals

// The producer API's refusals, checked in the producer process before frame kHookAtSeq: none of them may use up
// a seq or leave the producer unable to publish the next frame.
bool check_refusals(Producer& p, std::string& why) {
    const uint64_t seq = p.next_seq();
    std::vector<std::byte> big(kLargestFrame + 64);
    shm::TensorShape shape = frame_spec(0).shape;
    // W-9-4: no pool fits -> dropped, counted, no seq used.
    PublishResult r = p.offer(shape, big);
    if (r.outcome != PublishOutcome::no_pool_fits || p.next_seq() != seq) {
        why = "offer() of a frame larger than every pool was not refused as no_pool_fits";
        return false;
    }
    FrameClaim claim;
    r = p.try_claim(static_cast<uint32_t>(big.size()), claim);
    if (r.outcome != PublishOutcome::no_pool_fits || claim.active() || p.next_seq() != seq) {
        why = "try_claim() larger than every pool was not refused as no_pool_fits";
        return false;
    }
    // An open claim blocks offer(); aborting it uses up nothing.
    r = p.try_claim(100, claim);
    if (!claim.active() || r.seq != seq) {
        why = "try_claim(100) failed";
        return false;
    }
    r = p.offer(shape, std::span<const std::byte>(big.data(), 128));
    if (r.outcome != PublishOutcome::invalid || p.next_seq() != seq) {
        why = "offer() while a claim is open was not refused";
        return false;
    }
    claim.abort();
    if (claim.active() || p.next_seq() != seq) {
        why = "abort() left the claim active or used a seq";
        return false;
    }
    {
        FrameClaim dropped;  // destroyed open: aborted
        if (!p.try_claim(64, dropped).committed() || !dropped.active()) {
            why = "try_claim(64) after abort() failed";
            return false;
        }
    }
    if (p.next_seq() != seq) {
        why = "a claim destroyed without commit used a seq";
        return false;
    }
    return true;
}

}  // namespace

// W-9-2: the frames use all three size classes of standard_pools(), and frame_matches_spec() checks that each one
// sits in its smallest fitting pool. W-15.14-3: the consumer listens before the producer exists, and no announce it
// ever received failed to map (mapping_failures == 0, one mapping): the producer announces its regions only once
// they are complete.
TEST(ClientFramesFlow, OfferAndClaimFramesArriveWithLayoutPayloadAndConsistentStats) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProducerShared> prod;
    SharedBox<ConsumerShared> cons;

    ProducerChild pc{bus.options(), test_producer_config(shm_dir.path(), 256)};
    pc.hook = check_refusals;
    pc.hook_at_seq = kHookAtSeq;
    pc.burst = 4;
    pc.pace_us = 200;
    ConsumerChild cc{bus.options(), test_consumer_config(shm_dir.path())};

    Processes procs;
    const pid_t consumer = procs.start([&] { return consumer_main(cc, *cons); });
    ASSERT_TRUE(wait_until([&] { return cons->ready.load() == 1; }, 10s));
    const pid_t producer = procs.start([&] { return producer_main(pc, *prod); });
    ASSERT_TRUE(wait_until([&] { return cons->mapped() && cons->mapped_epoch.load() == prod->epoch.load(); }, 10s))
        << describe(*cons);

    prod->target.store(kFrames);
    const bool all = wait_until([&] { return cons->good.load() >= kFrames; }, 30s);
    // A moment for anything unexpected (a duplicate, a late drop) to show up in the counters.
    std::this_thread::sleep_for(100ms);
    prod->stop.store(1);
    cons->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(consumer, 30), ChildResult::ok());
    ASSERT_TRUE(all) << describe(*cons) << " " << describe(*prod);

    // Producer side.
    EXPECT_EQ(prod->errors.load(), 0u) << prod->error.get();
    EXPECT_EQ(prod->published.load(), kFrames);
    EXPECT_EQ(prod->frames_committed.load(), kFrames);
    EXPECT_EQ(prod->frames_no_pool.load(), 2u);  // one offer(), one try_claim()
    EXPECT_EQ(prod->descriptors_not_sent.load(), 0u);
    EXPECT_GE(prod->announces_sent.load(), 1u);

    // Consumer side: every frame, each exactly once, each checked (layout, metadata, payload bytes + checksum).
    EXPECT_EQ(cons->good.load(), kFrames) << describe(*cons);
    EXPECT_EQ(cons->bad(), 0u) << "first bad seq " << cons->first_bad_seq.load() << " " << describe(*cons);
    EXPECT_EQ(cons->torn.load(), 0u);
    EXPECT_EQ(cons->frames_accepted.load(), kFrames);
    EXPECT_EQ(cons->drops_gap.load(), 0u);  // no seq was used by the refused frames
    EXPECT_EQ(cons->drops_late.load(), 0u);
    EXPECT_EQ(cons->drops_invalid.load(), 0u);
    EXPECT_EQ(cons->drops_unmapped.load(), 0u);
    EXPECT_EQ(cons->torn_detected.load(), 0u);
    EXPECT_EQ(cons->resyncs.load(), 0u);
    EXPECT_EQ(cons->last_seq.load(), kFrames - 1);
    EXPECT_EQ(cons->mappings.load(), 1u);
    EXPECT_EQ(cons->mapping_failures.load(), 0u);
    EXPECT_GE(cons->announces_accepted.load(), 1u);
    EXPECT_EQ(cons->good_in_epoch(prod->epoch.load()), kFrames);
}

// ---- in one process: what the wire carries for optional fields, QoS cadence, timestamps ------------------------

// W-10.1-1, A-20: optional fields nobody set go out as their schema nullValue — FrameDescriptor.timestampNs (publish
// time not asked for) all ones, QosProducer.watermark (we have none) and the ConsumerHello progress hints (none
// configured) 0xFFFFFFFF — except FrameDescriptor.traceId, whose "absent" is 0, not the codec's all-ones
// null (docs/wire-codecs.md): writing the generic null there would tell every reader the frame is traced.
TEST(ClientFramesFlow, W_10_1_1_AbsentOptionalFieldsAreWrittenAsTheirNullValue) {
    InProcess t;
    // Taps first, so they see the very first QosProducer and Hello.
    auto descriptors = t.hub.add_subscription("ipc:tensorpool", 1100);
    auto qos = t.hub.add_subscription("ipc:tensorpool", 1200);
    auto control = t.hub.add_subscription("ipc:tensorpool", 1000);
    ASSERT_TRUE(descriptors.ok() && qos.ok() && control.ok());
    ConsumerConfig cfg = test_consumer_config("");
    cfg.consumer_id = 77;  // and no progress_* hints
    ASSERT_EQ(t.start({cfg}), "");
    Producer& p = t.p();
    ASSERT_TRUE(t.spin([&] { return t.all_mapped(); })) << t.mapping_errors();

    std::vector<std::byte> payload(128, std::byte{7});
    ASSERT_EQ(p.offer(byte_shape(128), payload, FrameOptions{}).outcome, PublishOutcome::published);

    int frames = 0;
    drain_messages<wc::FrameDescriptor>(**descriptors, [&](const wc::FrameDescriptor::Decoder& d) {
        ++frames;
        EXPECT_EQ(d.timestampNs(), 0xFFFFFFFFFFFFFFFFull);
        EXPECT_EQ(d.traceId(), 0u);
    });
    EXPECT_EQ(frames, 1);
    int qos_producer = 0;
    drain_messages<wc::QosProducer>(**qos, [&](const wc::QosProducer::Decoder& d) {
        ++qos_producer;
        EXPECT_EQ(d.watermark(), 0xFFFFFFFFu);
    });
    EXPECT_GE(qos_producer, 1);
    int hellos = 0;
    drain_messages<wc::ConsumerHello>(**control, [&](const wc::ConsumerHello::Decoder& d) {
        if (d.consumerId() != 77) return;
        ++hellos;
        EXPECT_EQ(d.progressIntervalUs(), 0xFFFFFFFFu);
        EXPECT_EQ(d.progressBytesDelta(), 0xFFFFFFFFu);
        EXPECT_EQ(d.progressMajorDeltaUnits(), 0xFFFFFFFFu);
    });
    EXPECT_GE(hellos, 1);
}

// W-10.1-2, A-20: the consumer reads a null FrameDescriptor.timestampNs as "no publish time" (std::nullopt, not a
// time 584 years from now) and traceId 0 as "not traced"; set values come through as sent. The raw tap shows the
// traceIds on the wire are 0 and 42, so the FrameView reports what was sent, not a default.
TEST(ClientFramesFlow, W_10_1_2_A_20_NullOptionalFieldsReadAsAbsentTraceIdZeroIsNoTrace) {
    InProcess t;
    auto descriptors = t.hub.add_subscription("ipc:tensorpool", 1100);
    ASSERT_TRUE(descriptors.ok());
    ASSERT_EQ(t.start({test_consumer_config("")}), "");
    Producer& p = t.p();
    Consumer& c = t.c();
    ASSERT_TRUE(t.spin([&] { return t.all_mapped(); })) << t.mapping_errors();

    std::vector<std::byte> payload(64, std::byte{1});
    ASSERT_EQ(p.offer(byte_shape(64), payload, FrameOptions{}).outcome, PublishOutcome::published);
    FrameOptions traced;
    traced.publish_timestamp = true;
    traced.trace_id = 42;
    ASSERT_EQ(p.offer(byte_shape(64), payload, traced).outcome, PublishOutcome::published);

    struct Seen {
        std::optional<uint64_t> publish_ts;
        uint64_t trace_id;
    };
    std::vector<Seen> seen;
    ASSERT_TRUE(t.spin([&] { return seen.size() == 2; }, [&] {
        c.poll_frames([&](const FrameView& f) { seen.push_back({f.publish_timestamp_ns(), f.trace_id()}); }, 8);
    }));
    EXPECT_EQ(seen[0].publish_ts, std::nullopt);
    EXPECT_EQ(seen[0].trace_id, 0u);
    EXPECT_TRUE(seen[1].publish_ts.has_value());
    EXPECT_EQ(seen[1].trace_id, 42u);
    EXPECT_EQ(c.stats().frames_accepted, 2u);

    std::vector<uint64_t> wire_trace_ids;
    drain_messages<wc::FrameDescriptor>(**descriptors, [&](const wc::FrameDescriptor::Decoder& d) {
        wire_trace_ids.push_back(d.traceId());
    });
    EXPECT_EQ(wire_trace_ids, (std::vector<uint64_t>{0, 42}));
}

// W-10.4.2-1: QosProducer goes out once per qos_period_ns (driven by do_work's clock, so the test owns time), for
// this stream and epoch, and reports the seq of the newest committed frame. (currentSeq is 0 both before any frame
// and after frame 0: the spec does not say what "current" means, and the schema gives no "none yet" value but the
// null, which the field does not use.)
TEST(ClientFramesFlow, W_10_4_2_1_QosProducerIsPeriodicAndReportsCurrentSeq) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    transport::TransportHub hub(bus.options());
    auto qos = hub.add_subscription("ipc:tensorpool", 1200);
    ASSERT_TRUE(qos.ok());
    ProducerConfig cfg = test_producer_config(shm_dir.path(), 64);
    cfg.qos_period_ns = 100'000'000;
    auto producer = Producer::create(hub, cfg);
    ASSERT_TRUE(producer.ok()) << producer.error().message();
    Producer& p = **producer;
    std::vector<uint64_t> current;
    auto collect = [&] {
        current.clear();
        drain_messages<wc::QosProducer>(**qos, [&](const wc::QosProducer::Decoder& d) {
            EXPECT_EQ(d.streamId(), 10000u);
            EXPECT_EQ(d.producerId(), cfg.producer_id);
            EXPECT_EQ(d.epoch(), p.epoch());
            current.push_back(d.currentSeq());
        });
        return current.size();
    };

    const int64_t t0 = monotonic_ns();
    p.do_work(t0);
    ASSERT_EQ(collect(), 1u);  // the first do_work reports at once
    EXPECT_EQ(current[0], 0u);
    std::vector<std::byte> payload(64);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(p.offer(byte_shape(64), payload).committed());
    p.do_work(t0 + 50'000'000);
    EXPECT_EQ(collect(), 0u);  // half a period: nothing
    p.do_work(t0 + 99'999'999);
    EXPECT_EQ(collect(), 0u);
    p.do_work(t0 + 100'000'000);
    ASSERT_EQ(collect(), 1u);
    EXPECT_EQ(current[0], 2u);  // frames 0, 1, 2 committed: the newest is 2
    p.do_work(t0 + 100'000'000);
    EXPECT_EQ(collect(), 0u);  // once per period, however often do_work runs
}

// W-15.7-1, W-15.7-2, A-41: the producer announces the MONOTONIC clock domain, and a frame's default capture
// timestamp (SlotHeader.timestampNs, FrameOptions::capture_timestamp_ns left 0) and its publish timestamp
// (FrameDescriptor.timestampNs) are CLOCK_MONOTONIC readings taken while the frame was published — every timestamp
// of the stream in the announced domain — captured no later than published, and neither goes backwards
// from frame to frame.
TEST(ClientFramesFlow, W_15_7_1_W_15_7_2_A_41_DefaultTimestampsAreMonotonicInTheAnnouncedDomain) {
    constexpr int kFrames = 50;
    InProcess t;
    auto announces = t.hub.add_subscription("ipc:tensorpool", 1001);
    ASSERT_TRUE(announces.ok());
    ASSERT_EQ(t.start({test_consumer_config("")}), "");
    Producer& p = t.p();
    Consumer& c = t.c();
    ASSERT_TRUE(t.spin([&] { return t.all_mapped(); })) << t.mapping_errors();
    int announced = 0;
    drain_messages<wc::ShmPoolAnnounce>(**announces, [&](const wc::ShmPoolAnnounce::Decoder& d) {
        ++announced;
        EXPECT_EQ(d.announceClockDomain(), wc::ClockDomain::MONOTONIC);
    });
    ASSERT_GE(announced, 1);

    struct Stamps {
        uint64_t capture;
        std::optional<uint64_t> publish;
    };
    std::vector<Stamps> stamps;
    std::vector<std::byte> payload(64, std::byte{3});
    FrameOptions o;
    o.publish_timestamp = true;  // capture_timestamp_ns stays 0: the producer stamps it
    const uint64_t t0 = static_cast<uint64_t>(monotonic_ns());
    for (int i = 0; i < kFrames; ++i) {
        ASSERT_EQ(p.offer(byte_shape(64), payload, o).outcome, PublishOutcome::published);
        ASSERT_TRUE(t.spin([&] { return stamps.size() == static_cast<std::size_t>(i + 1); }, [&] {
            c.poll_frames([&](const FrameView& f) {
                stamps.push_back({f.capture_timestamp_ns(), f.publish_timestamp_ns()});
            }, 8);
        }));
    }
    const uint64_t t1 = static_cast<uint64_t>(monotonic_ns());

    ASSERT_EQ(stamps.size(), static_cast<std::size_t>(kFrames));
    for (int i = 0; i < kFrames; ++i) {
        const Stamps& s = stamps[i];
        ASSERT_TRUE(s.publish.has_value()) << "frame " << i;
        EXPECT_GE(s.capture, t0) << "frame " << i;
        EXPECT_LE(s.capture, *s.publish) << "frame " << i;
        EXPECT_LE(*s.publish, t1) << "frame " << i;
        if (i > 0) {
            EXPECT_GE(s.capture, stamps[i - 1].capture) << "frame " << i;
            EXPECT_GE(*s.publish, *stamps[i - 1].publish) << "frame " << i;
        }
    }
}

// W-8-8, W-8-11, W-8-15, W-8-17, W-15.8-2: a tensor description that every consumer would drop is refused by the
// producer itself, through both publish APIs, with the rule named in invalid_reason(); no seq is used up, nothing
// is written, and the next good frame is published as usual. The check runs when the shape changes, so a stream of
// one shape pays nothing per frame.
TEST(ClientFramesFlow, W_8_11_W_8_15_ProducerRefusesATensorDescriptionConsumersWouldDrop) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    transport::TransportHub hub(bus.options());
    auto descriptors = hub.add_subscription("ipc:tensorpool", 1100);
    ASSERT_TRUE(descriptors.ok());
    auto producer = Producer::create(hub, test_producer_config(shm_dir.path(), 64));
    ASSERT_TRUE(producer.ok()) << producer.error().message();
    Producer& p = **producer;
    EXPECT_STREQ(p.invalid_reason(), "");
    std::vector<std::byte> payload(64);

    struct Case {
        const char* what;
        std::function<void(shm::TensorShape&)> spoil;
        const char* reason;  // what invalid_reason() must mention
    };
    const std::vector<Case> cases = {
        {"ndims 0", [](shm::TensorShape& t) { t.ndims = 0; }, "ndims"},
        {"ndims 9", [](shm::TensorShape& t) { t.ndims = 9; }, "ndims"},
        {"a negative dim", [](shm::TensorShape& t) { t.dims[0] = -64; }, "dims"},
        {"a negative stride", [](shm::TensorShape& t) { t.strides[0] = -1; }, "strides"},
        {"an unknown dtype", [](shm::TensorShape& t) { t.dtype = static_cast<Dtype>(12); }, "dtype"},
        {"an unknown major order", [](shm::TensorShape& t) { t.major_order = MajorOrder::UNKNOWN; }, "major"},
        {"progress by rows with a stride of 0",
         [](shm::TensorShape& t) {
             t.progress_unit = shm::ProgressUnit::ROWS;
             t.progress_stride_bytes = 0;
         },
         "progress"},
    };
    uint64_t refused = 0;
    for (const Case& c : cases) {
        SCOPED_TRACE(c.what);
        shm::TensorShape bad = byte_shape(64);
        c.spoil(bad);
        const PublishResult r = p.offer(bad, payload);
        EXPECT_EQ(r.outcome, PublishOutcome::invalid);
        EXPECT_EQ(p.stats().frames_invalid, ++refused);
        std::string reason = p.invalid_reason();
        std::transform(reason.begin(), reason.end(), reason.begin(), [](unsigned char ch) { return std::tolower(ch); });
        EXPECT_NE(reason.find(c.reason), std::string::npos) << p.invalid_reason();
        FrameClaim claim;
        EXPECT_EQ(p.try_claim(bad, 64, claim).outcome, PublishOutcome::invalid);
        EXPECT_FALSE(claim.active());
        EXPECT_EQ(p.stats().frames_invalid, ++refused);
        EXPECT_EQ(p.next_seq(), 0u) << "a refused frame used up a seq";
    }
    EXPECT_EQ(p.stats().frames_committed, 0u);
    EXPECT_EQ(drain_messages<wc::FrameDescriptor>(**descriptors, [](const wc::FrameDescriptor::Decoder&) {}), 0);

    // Misuse is refused with a reason too.
    FrameClaim unshaped;
    ASSERT_TRUE(p.try_claim(64, unshaped).committed());
    EXPECT_EQ(unshaped.commit().outcome, PublishOutcome::invalid);
    EXPECT_NE(std::string(p.invalid_reason()).find("without a shape"), std::string::npos) << p.invalid_reason();
    EXPECT_EQ(p.offer(byte_shape(64), payload).outcome, PublishOutcome::invalid);
    EXPECT_NE(std::string(p.invalid_reason()).find("claim is open"), std::string::npos) << p.invalid_reason();
    // A claim committed with a refused shape stays open: it can still be committed with a valid one, or aborted.
    shm::TensorShape negative = byte_shape(64);
    negative.dims[0] = -64;
    EXPECT_EQ(unshaped.commit(negative).outcome, PublishOutcome::invalid);
    EXPECT_TRUE(unshaped.active());
    ++refused;
    unshaped.abort();
    EXPECT_EQ(p.stats().frames_invalid, refused) << "misuse is not an invalid frame, a refused shape is";

    // The good shape after them: published as seq 0; and an unshaped claim whose first commit was refused commits
    // with a valid shape as seq 1.
    const PublishResult ok = p.offer(byte_shape(64), payload);
    EXPECT_TRUE(ok.committed());
    EXPECT_EQ(ok.seq, 0u);
    FrameClaim retried;
    ASSERT_TRUE(p.try_claim(64, retried).committed());
    EXPECT_EQ(retried.commit(negative).outcome, PublishOutcome::invalid);
    const PublishResult second = retried.commit(byte_shape(64));
    EXPECT_TRUE(second.committed());
    EXPECT_EQ(second.seq, 1u);
    EXPECT_EQ(drain_messages<wc::FrameDescriptor>(**descriptors, [](const wc::FrameDescriptor::Decoder&) {}), 2);
}
