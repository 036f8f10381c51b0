// FrameProgress end to end (WIRE_SPEC §4.5, §10.2.2, A-30, A-31): the producer reports how far a claimed frame is
// written only while some consumer supports progress, throttled to the merged hints; an opted-in consumer sees, per
// frame, STARTED -> PROGRESS... -> COMPLETE with a count that never decreases and never exceeds values_len, and
// every prefix it proves untorn holds exactly the frame's first bytes. A frame whose progress breaks the rules is
// dropped even when its descriptor arrives.
#include <fcntl.h>
#include <gtest/gtest.h>

#include "client_test_support.hpp"

using namespace tensorpool;
using namespace tensorpool::client;
using namespace tensorpool::client::test;
namespace wc = tensorpool::wire::control;

namespace {

constexpr uint32_t kFrameBytes = 256 * 1024;
constexpr uint32_t kChunk = 16 * 1024;

shm::TensorShape progress_shape() {
    shm::TensorShape t;
    t.dtype = Dtype::UINT8;
    t.major_order = MajorOrder::ROW;
    t.ndims = 2;
    t.dims = {static_cast<int32_t>(kFrameBytes / 1024), 1024};
    t.progress_unit = shm::ProgressUnit::ROWS;
    t.progress_stride_bytes = 1024;
    return t;
}

ProducerConfig progress_producer_config(const std::string& dir) {
    ProducerConfig c = test_producer_config(dir, 64);
    c.pools = {PoolConfig{1, kFrameBytes}};
    c.progress_min_interval_ns = 100'000;
    c.progress_min_bytes = 4096;
    return c;
}

// Writes frames chunk by chunk into claimed slots, reporting progress after each chunk, like a camera reading
// out rows.
struct ProgressProducerShared {
    std::atomic<int> stop{0};
    std::atomic<uint64_t> published{0};
    std::atomic<uint64_t> progress_sent{0};
    std::atomic<uint64_t> errors{0};
};

int progress_producer_main(const transport::TransportOptions& t, const ProducerConfig& cfg, ProgressProducerShared& sh) {
    transport::TransportHub hub(t);
    auto created = Producer::create(hub, cfg);
    if (!created) return child_fail(std::string("Producer::create: ") + created.error().message());
    Producer& p = **created;
    std::vector<std::byte> frame(kFrameBytes);
    while (sh.stop.load() == 0) {
        const uint64_t seq = p.next_seq();
        fill_payload(frame, seq, p.epoch());
        FrameClaim claim;
        if (!p.try_claim(progress_shape(), kFrameBytes, claim).committed() || claim.seq() != seq) {
            sh.errors.fetch_add(1);
            continue;
        }
        for (uint32_t off = 0; off < kFrameBytes; off += kChunk) {
            std::memcpy(claim.payload().data() + off, frame.data() + off, kChunk);
            if (!claim.progress(off + kChunk)) sh.errors.fetch_add(1);
            p.do_work(monotonic_ns());
            pause_for(50us);
        }
        if (claim.progress(kChunk)) sh.errors.fetch_add(1);  // going backwards is refused (W-10.2.2-8)
        if (!claim.commit().committed()) sh.errors.fetch_add(1);
        sh.published.store(p.next_seq());
        sh.progress_sent.store(p.stats().progress_sent);
        p.do_work(monotonic_ns());
        pause_for(500us);
    }
    return 0;
}

struct ProgressConsumerShared {
    std::atomic<int> stop{0};
    std::atomic<uint64_t> reports{0};
    std::atomic<uint64_t> started{0};
    std::atomic<uint64_t> completes{0};
    std::atomic<uint64_t> prefixes_checked{0};   // untorn prefixes compared with the frame's bytes
    std::atomic<uint64_t> bad_prefix{0};         // untorn, yet not the frame's bytes
    std::atomic<uint64_t> not_monotonic{0};      // count or state went back within a frame
    std::atomic<uint64_t> out_of_bounds{0};      // count above values_len
    std::atomic<uint64_t> not_layout_safe{0};
    std::atomic<uint64_t> frames_good{0};
    std::atomic<uint64_t> frames_bad{0};
    std::atomic<uint64_t> frames_with_progress{0};  // final frames that had at least one PROGRESS before
    std::atomic<uint64_t> violations{0};         // the consumer's own progress_violations
};

int progress_consumer_main(const transport::TransportOptions& t, const ConsumerConfig& cfg, ProgressConsumerShared& sh) {
    transport::TransportHub hub(t);
    auto created = Consumer::create(hub, cfg);
    if (!created) return child_fail(std::string("Consumer::create: ") + created.error().message());
    Consumer& c = **created;
    std::vector<std::byte> expected(kFrameBytes);
    uint64_t expected_seq = UINT64_MAX;
    uint64_t seq = UINT64_MAX, filled = 0;
    int state = 0;
    uint64_t progress_seq_seen = UINT64_MAX;
    auto on_progress = [&](const ProgressView& v) {
        sh.reports.fetch_add(1);
        if (v.seq() != seq) {
            seq = v.seq();
            filled = 0;
            state = 0;
        }
        if (v.bytes_filled() < filled || static_cast<int>(v.state()) < state) sh.not_monotonic.fetch_add(1);
        filled = v.bytes_filled();
        state = static_cast<int>(v.state());
        if (v.bytes_filled() > v.values_len_bytes()) sh.out_of_bounds.fetch_add(1);
        if (v.state() == wc::FrameProgressState::STARTED) sh.started.fetch_add(1);
        if (v.state() == wc::FrameProgressState::COMPLETE) sh.completes.fetch_add(1);
        if (v.state() == wc::FrameProgressState::PROGRESS) progress_seq_seen = v.seq();
        if (!v.layout_safe()) {
            sh.not_layout_safe.fetch_add(1);
            return;
        }
        if (v.prefix().size() != v.bytes_filled()) sh.out_of_bounds.fetch_add(1);
        if (expected_seq != v.seq()) {
            fill_payload(expected, v.seq(), v.epoch());
            expected_seq = v.seq();
        }
        const bool same = std::memcmp(v.prefix().data(), expected.data(), v.prefix().size()) == 0;
        if (!v.still_valid()) return;  // provisional data that moved on; nothing to judge
        sh.prefixes_checked.fetch_add(1);
        if (!same) sh.bad_prefix.fetch_add(1);
    };
    auto on_frame = [&](const FrameView& f) {
        const bool ok = check_payload(f.payload(), f.seq(), f.epoch());
        if (!f.still_valid()) return;
        (ok ? sh.frames_good : sh.frames_bad).fetch_add(1);
        if (progress_seq_seen == f.seq()) sh.frames_with_progress.fetch_add(1);
    };
    while (sh.stop.load() == 0) {
        int work = c.do_work(monotonic_ns());
        work += c.poll_progress(on_progress, 64);
        work += c.poll_frames(on_frame, 64);
        sh.violations.store(c.stats().progress_violations);
        if (work == 0) pause_for(10us);
    }
    return 0;
}

}  // namespace

// W-10.2.2-1/-2/-4/-5/-7/-8/-11/-12/-14, W-5-6, A-30, A-31: see the file comment. Also: no FrameProgress is sent
// while the only consumer does not support progress.
TEST(ClientProgress, ReportsAreMonotonicBoundedAndUntornPrefixesAreTheFramesBytes) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    SharedBox<ProgressProducerShared> prod;
    SharedBox<ProgressConsumerShared> with_progress;
    SharedBox<ConsumerShared> plain;
    const ProducerConfig pcfg = progress_producer_config(shm_dir.path());
    ConsumerConfig plain_cfg = test_consumer_config(shm_dir.path());
    ConsumerChild plain_child(bus.options(), plain_cfg);
    plain_child.check_layout = false;

    Processes procs;
    const pid_t producer = procs.start([&] { return progress_producer_main(bus.options(), pcfg, *prod); });
    const pid_t plain_pid = procs.start([&] { return consumer_main(plain_child, *plain); });
    ASSERT_TRUE(wait_until([&] { return plain->good.load() > 20; }, 20s)) << describe(*plain);
    EXPECT_EQ(prod->progress_sent.load(), 0u) << "progress sent while no consumer supports it (W-10.2.2-14)";

    ConsumerConfig pc = test_consumer_config(shm_dir.path());
    pc.supports_progress = true;
    pc.progress_interval_us = 200;
    pc.progress_bytes_delta = 8192;
    pc.control_request = {"ipc:tensorpool", 2201};  // progress on its own control stream (W-5-6)
    const pid_t progress_pid =
        procs.start([&] { return progress_consumer_main(bus.options(), pc, *with_progress); });
    ASSERT_TRUE(wait_until([&] { return with_progress->frames_with_progress.load() >= 30 &&
                                        with_progress->prefixes_checked.load() >= 200; }, 60s))
        << "frames " << with_progress->frames_good.load() << " with progress "
        << with_progress->frames_with_progress.load() << " prefixes " << with_progress->prefixes_checked.load()
        << " reports " << with_progress->reports.load() << " producer sent " << prod->progress_sent.load();

    prod->stop.store(1);
    with_progress->stop.store(1);
    plain->stop.store(1);
    EXPECT_EQ(procs.wait(producer, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(progress_pid, 30), ChildResult::ok());
    EXPECT_EQ(procs.wait(plain_pid, 30), ChildResult::ok());
    const ProgressConsumerShared& s = *with_progress;
    EXPECT_EQ(prod->errors.load(), 0u);
    EXPECT_EQ(s.not_monotonic.load(), 0u);
    EXPECT_EQ(s.out_of_bounds.load(), 0u);
    EXPECT_EQ(s.bad_prefix.load(), 0u);
    EXPECT_EQ(s.not_layout_safe.load(), 0u);
    EXPECT_EQ(s.violations.load(), 0u);
    EXPECT_EQ(s.frames_bad.load(), 0u);
    EXPECT_GT(s.started.load(), 0u);
    EXPECT_GT(s.completes.load(), 0u);
    EXPECT_EQ(plain->bad(), 0u) << describe(*plain);
    // COMPLETE and the FrameDescriptor may arrive in either order; a COMPLETE read after its frame was
    // delivered is ignored, so completes only has to be seen at all (above).
    // Throttling is checked exactly in the next test; here the figure only (under load, chunks are slower than the
    // interval and every one may be reported).
    const double per_frame = static_cast<double>(s.reports.load()) / static_cast<double>(std::max<uint64_t>(1, s.started.load()));
    std::printf("[ figures  ] %llu progress reports, %.1f per frame (16 chunks/frame), %llu untorn prefixes checked\n",
                static_cast<unsigned long long>(s.reports.load()), per_frame,
                static_cast<unsigned long long>(s.prefixes_checked.load()));
}

// W-10.2.2-8, W-10.2.2-7, W-10.2.2-10, W-10.2.2-13/-15: in one process for exact control. The producer merges
// hints (smallest wins, never below its floors), sends at most one PROGRESS per interval and the held-back count
// when the interval ends (do_work); a consumer that sees the count go down for a frame, or exceed values_len, drops
// that frame even though its FrameDescriptor arrives and its bytes are fine.
TEST(ClientProgress, ThrottledByMergedHintsAndARuleBreakingFrameIsDropped) {
    BusRoot bus;
    TempDir shm_dir("/dev/shm");
    transport::TransportHub hub(bus.options());
    ProducerConfig pcfg = progress_producer_config(shm_dir.path());
    pcfg.progress_min_interval_ns = 50'000'000;  // a 50 ms floor: the tight loop below fits in one interval even
                                                 // on a loaded machine
    pcfg.progress_min_bytes = 1024;
    auto producer = Producer::create(hub, pcfg);
    ASSERT_TRUE(producer.ok()) << producer.error().message();
    Producer& p = **producer;
    ConsumerConfig ccfg = test_consumer_config(shm_dir.path());
    ccfg.supports_progress = true;
    ccfg.progress_interval_us = 100;       // below the floor: the floor wins
    ccfg.progress_bytes_delta = 32 * 1024;  // above the floor: the hint wins
    auto consumer = Consumer::create(hub, ccfg);
    ASSERT_TRUE(consumer.ok()) << consumer.error().message();
    Consumer& c = **consumer;
    auto raw = hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(raw.ok());

    ASSERT_TRUE(wait_until([&] {
        p.do_work(monotonic_ns());
        c.do_work(monotonic_ns());
        return c.state() == MappingState::mapped && p.consumers().progress().enabled;
    }, 10s));
    EXPECT_EQ(p.consumers().progress().interval_ns, 50'000'000);
    EXPECT_EQ(p.consumers().progress().bytes_delta, 32u * 1024);

    struct Seen {
        uint64_t seq;
        uint64_t filled;
        wc::FrameProgressState state;
    };
    std::vector<Seen> seen;
    auto on_progress = [&](const ProgressView& v) { seen.push_back({v.seq(), v.bytes_filled(), v.state()}); };
    uint64_t frames = 0;
    auto on_frame = [&](const FrameView& f) { frames += f.still_valid() ? 1 : 0; };
    auto drain = [&] {
        for (int i = 0; i < 20; ++i) {
            c.poll_progress(on_progress, 64);
            c.poll_frames(on_frame, 64);
        }
    };

    // Frame 1: 200 reports in a tight loop (well inside one interval): one STARTED, at most one PROGRESS so far.
    FrameClaim claim;
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    const uint64_t seq1 = claim.seq();
    const int64_t loop_start = monotonic_ns();
    for (uint32_t i = 1; i <= 200; ++i) ASSERT_TRUE(claim.progress(uint64_t{i} * 1024));
    if (monotonic_ns() - loop_start > 40'000'000) GTEST_SKIP() << "200 calls took more than 40 ms: machine too loaded";
    drain();
    const auto count = [&](wc::FrameProgressState st) {
        return std::count_if(seen.begin(), seen.end(), [&](const Seen& s) { return s.seq == seq1 && s.state == st; });
    };
    EXPECT_EQ(count(wc::FrameProgressState::STARTED), 1);
    EXPECT_LE(count(wc::FrameProgressState::PROGRESS), 1);
    // The held-back count goes out once the interval ends, from do_work.
    std::this_thread::sleep_for(60ms);
    p.do_work(monotonic_ns());
    drain();
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back().seq, seq1);
    EXPECT_EQ(seen.back().state, wc::FrameProgressState::PROGRESS);
    EXPECT_EQ(seen.back().filled, 200u * 1024);
    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(seen.back().state, wc::FrameProgressState::COMPLETE);
    EXPECT_EQ(seen.back().filled, kFrameBytes);
    EXPECT_EQ(frames, 1u);

    // Frame 2: a forged report with a smaller count for the same frame (W-10.2.2-8) poisons it.
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    const uint64_t seq2 = claim.seq();
    std::this_thread::sleep_for(60ms);
    ASSERT_TRUE(claim.progress(100 * 1024));
    drain();
    ASSERT_EQ(seen.back().filled, 100u * 1024);
    auto forge = [&](uint64_t seq, uint64_t filled) {
        uint8_t buf[64];
        wc::FrameProgress::Encoder e;
        (void)e.wrap_and_apply_header(buf, sizeof buf);
        e.streamId(10000).epoch(p.epoch()).seq(seq).payloadBytesFilled(filled).state(wc::FrameProgressState::PROGRESS);
        const auto n = e.finish();
        ASSERT_TRUE(n.ok());
        ASSERT_TRUE((*raw)->offer(std::span<const uint8_t>(buf, *n)).ok());
    };
    forge(seq2, 50 * 1024);
    drain();
    EXPECT_EQ(c.stats().progress_violations, 1u);
    const uint64_t invalid_before = c.stats().drops_invalid;
    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(frames, 1u) << "a frame whose progress went backwards was delivered";
    EXPECT_EQ(c.stats().drops_invalid, invalid_before + 1);

    // Frame 3: a forged count beyond values_len (W-10.2.2-7) poisons it as well; frame 4 is fine again.
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    forge(claim.seq(), kFrameBytes + 1);
    drain();
    EXPECT_EQ(c.stats().progress_violations, 2u);
    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(frames, 1u);
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(frames, 2u);

    // A shaped claim keeps its shape: committing another one is refused and the claim stays open.
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    shm::TensorShape other = progress_shape();
    other.dims[0] = 128;
    EXPECT_EQ(claim.commit(other).outcome, PublishOutcome::invalid);
    EXPECT_TRUE(claim.active());
    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(frames, 3u);

    // A claim made without a shape has no layout in the slot yet: progress() refuses it.
    ASSERT_TRUE(p.try_claim(kFrameBytes, claim).committed());
    EXPECT_FALSE(claim.progress(1024));
    claim.abort();
}

namespace {

ConsumerConfig progress_consumer_config(uint32_t consumer_id, bool supports_progress) {
    ConsumerConfig c = test_consumer_config("/dev/shm");  // allowed_dirs is set by InProcess::start (client_test_support.hpp)
    c.consumer_id = consumer_id;
    c.supports_progress = supports_progress;
    return c;
}

}  // namespace

// W-5-8 (and W-5-6): a per-consumer control stream carries FrameProgress and nothing else. A subscription on the
// granted stream, made before anyone publishes there, sees every message the producer ever sends on it while the
// consumer says Hello every 10 ms (so any reply to a Hello sent there would be seen too) and three frames are
// claimed, reported and committed: all FrameProgress, at least STARTED and COMPLETE for each frame.
TEST(ClientProgress, W_5_8_PerConsumerControlStreamCarriesOnlyFrameProgress) {
    InProcess t;
    auto eavesdrop = t.hub.add_subscription("ipc:tensorpool", 2201);
    ASSERT_TRUE(eavesdrop.ok()) << eavesdrop.error().message();
    ConsumerConfig cfg = progress_consumer_config(77, true);
    cfg.control_request = {"ipc:tensorpool", 2201};
    cfg.hello_period_ns = 10'000'000;
    ASSERT_EQ(t.start(progress_producer_config(""), {cfg}), "");
    Producer& p = *t.producer;
    Consumer& c = *t.consumers[0];
    ASSERT_TRUE(t.spin([&] { return t.all_mapped() && c.streams().per_consumer_control; }))
        << c.last_control_response();
    ASSERT_EQ(c.streams().control_stream_id, 2201);

    std::size_t progress = 0;
    std::vector<uint16_t> other_templates;
    auto drain = [&] {
        (*eavesdrop)->poll([&](std::span<const uint8_t> m, const transport::MessageInfo&) {
            auto h = wire::MessageHeader::read(m.data(), m.size());
            if (h && h->schemaId == wc::FrameProgress::kSchemaId && h->templateId == wc::FrameProgress::kTemplateId) {
                ++progress;
            } else {
                other_templates.push_back(h ? h->templateId : 0xFFFF);
            }
        }, 64);
    };
    for (int i = 0; i < 3; ++i) {
        FrameClaim claim;
        ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
        ASSERT_TRUE(claim.progress(kFrameBytes / 2));
        ASSERT_TRUE(claim.commit().committed());
        drain();
    }
    // More Hellos (answered or not) and the producer's periodic traffic, for a while.
    const auto end = Clock::now() + 200ms;
    while (Clock::now() < end) {
        t.spin([] { return true; });
        drain();
        pause_for(1ms);
    }
    EXPECT_TRUE(other_templates.empty()) << other_templates.size() << " other messages, the first with templateId "
                                         << other_templates.front();
    EXPECT_GE(progress, 6u);
}

// W-10.2.2-3: a consumer without progress support never sees FrameProgress — not even the reports the producer
// sends on the shared control stream it also reads (for A, which supports progress but has no control stream of
// its own) — and gets the frame from its FrameDescriptor as usual.
TEST(ClientProgress, W_10_2_2_3_AConsumerWithoutProgressSupportIgnoresFrameProgress) {
    InProcess t;
    ASSERT_EQ(t.start(progress_producer_config(""), {progress_consumer_config(1, true), progress_consumer_config(2, false)}),
              "");
    Producer& p = *t.producer;
    Consumer& a = *t.consumers[0];
    Consumer& b = *t.consumers[1];
    ASSERT_TRUE(t.spin([&] {
        return t.all_mapped() && p.consumers().stats().consumers == 2 && p.consumers().progress().enabled &&
               p.consumers().progress().on_shared;
    }));

    int a_reports = 0, b_reports = 0, a_frames = 0, b_frames = 0;
    auto drain = [&] {
        for (int i = 0; i < 20; ++i) {
            a.poll_progress([&](const ProgressView&) { ++a_reports; }, 64);
            b.poll_progress([&](const ProgressView&) { ++b_reports; }, 64);
            a.do_work(monotonic_ns());
            b.do_work(monotonic_ns());  // drains the shared control stream, FrameProgress included
            a.poll_frames([&](const FrameView& f) { a_frames += f.still_valid() ? 1 : 0; }, 64);
            b.poll_frames([&](const FrameView& f) { b_frames += f.still_valid() ? 1 : 0; }, 64);
        }
    };
    FrameClaim claim;
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    ASSERT_TRUE(claim.progress(64 * 1024));
    drain();
    EXPECT_GE(a.stats().progress_accepted, 1u);
    EXPECT_GE(a_reports, 1);
    EXPECT_EQ(b_reports, 0);
    EXPECT_EQ(b.stats().progress_accepted, 0u);
    EXPECT_EQ(b.stats().progress_ignored, 0u);
    EXPECT_EQ(b.stats().progress_violations, 0u);

    ASSERT_TRUE(claim.commit().committed());
    drain();
    EXPECT_EQ(b_frames, 1);
    EXPECT_EQ(b.stats().frames_accepted, 1u);
    EXPECT_EQ(b.stats().drops_invalid, 0u);
    EXPECT_EQ(b_reports, 0);
    EXPECT_EQ(b.stats().progress_accepted + b.stats().progress_ignored + b.stats().progress_violations, 0u);
    EXPECT_EQ(a_frames, 1);
}

// W-10.2.2-6, W-8-17: with progress_unit ROWS, a progress_stride_bytes that disagrees with the real row stride
// (512 where rows are 1024 bytes apart), or is 0, makes the frame unusable: the consumer hands no report of it to
// the progress handler and drops the frame even though its FrameDescriptor arrives. The bad stride is forged into
// the slot of a frame claimed with a good shape (in the header ring file, between try_claim and the consumer's first
// read), so the test does not depend on whether the producer would publish such a shape; the commit then rewrites
// the good header, so the drop is proven to come from what the progress reader saw.
TEST(ClientProgress, W_10_2_2_6_InconsistentProgressStrideDropsTheFrame) {
    InProcess t;
    ASSERT_EQ(t.start(progress_producer_config(""), {progress_consumer_config(1, true)}), "");
    Producer& p = *t.producer;
    Consumer& c = *t.consumers[0];
    ASSERT_TRUE(t.spin([&] { return t.all_mapped() && p.consumers().progress().enabled; }));
    auto ring_path = shm::parse_region_uri(p.header_region_uri());
    ASSERT_TRUE(ring_path.ok()) << ring_path.error().message();
    const int fd = ::open(ring_path->path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0) << ring_path->path;
    // progressStrideBytes inside a header slot: the SlotHeader block, headerBytes' u32 length, the embedded
    // TensorHeader's message header, then its field.
    constexpr std::size_t kStrideInSlot = wc::SlotHeader::kBlockLength + 4 + wire::MessageHeader::kSize +
                                          wc::TensorHeader::Offsets::progressStrideBytes;

    int reports = 0, frames = 0;
    auto drain = [&] {
        for (int i = 0; i < 20; ++i) {
            c.poll_progress([&](const ProgressView&) { ++reports; }, 64);
            c.poll_frames([&](const FrameView& f) { frames += f.still_valid() ? 1 : 0; }, 64);
        }
    };
    uint64_t bad = 0;
    for (const uint32_t stride : {512u, 0u}) {
        SCOPED_TRACE("progress_stride_bytes " + std::to_string(stride));
        FrameClaim claim;
        ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
        const uint32_t index = shm::header_index(claim.seq(), p.config().header_nslots);
        const off_t at = static_cast<off_t>(shm::header_slot_offset(index) + kStrideInSlot);
        uint32_t was = 0;
        ASSERT_EQ(::pread(fd, &was, sizeof was, at), static_cast<ssize_t>(sizeof was));
        ASSERT_EQ(was, progress_shape().progress_stride_bytes) << "not the progressStrideBytes field";
        ASSERT_EQ(::pwrite(fd, &stride, sizeof stride, at), static_cast<ssize_t>(sizeof stride));
        ASSERT_TRUE(claim.progress(kFrameBytes / 2));
        drain();
        ++bad;
        EXPECT_EQ(reports, 0);
        EXPECT_EQ(c.stats().progress_violations, bad);
        EXPECT_EQ(c.stats().progress_accepted, 0u);
        ASSERT_TRUE(claim.commit().committed());
        drain();
        EXPECT_EQ(frames, 0);
        EXPECT_EQ(c.stats().frames_accepted, 0u);
        EXPECT_EQ(c.stats().drops_invalid, bad);
    }
    ::close(fd);
}

// W-10.2.2-9, W-10.2.2-10: COMPLETE says nothing about visibility and is no FrameDescriptor. A forged COMPLETE and a
// forged FrameDescriptor for a frame whose slot is still IN-PROGRESS (claimed, never committed) must not make the
// consumer deliver it: the seq_commit check refuses the slot and the frame counts as late.
TEST(ClientProgress, W_10_2_2_9_CompleteBeforeCommitIsNotACommittedFrame) {
    InProcess t;
    ASSERT_EQ(t.start(progress_producer_config(""), {progress_consumer_config(1, true)}), "");
    Producer& p = *t.producer;
    Consumer& c = *t.consumers[0];
    ASSERT_TRUE(t.spin([&] { return t.all_mapped() && p.consumers().progress().enabled; }));
    auto control = t.hub.add_publication("ipc:tensorpool", 1000);
    ASSERT_TRUE(control.ok()) << control.error().message();
    auto descriptors = t.hub.add_publication("ipc:tensorpool", 1100);
    ASSERT_TRUE(descriptors.ok()) << descriptors.error().message();

    std::vector<wc::FrameProgressState> states;
    int frames = 0;
    auto drain = [&] {
        for (int i = 0; i < 20; ++i) {
            c.poll_progress([&](const ProgressView& v) { states.push_back(v.state()); }, 64);
            c.poll_frames([&](const FrameView& f) { frames += f.still_valid() ? 1 : 0; }, 64);
        }
    };
    FrameClaim claim;
    ASSERT_TRUE(p.try_claim(progress_shape(), kFrameBytes, claim).committed());
    const uint64_t seq = claim.seq();
    drain();  // STARTED first, so the forged COMPLETE cannot overtake it (another publisher, no order between them)
    ASSERT_EQ(states, std::vector<wc::FrameProgressState>{wc::FrameProgressState::STARTED});

    uint8_t buf[128];
    wc::FrameProgress::Encoder fp;
    ASSERT_TRUE(fp.wrap_and_apply_header(buf, sizeof buf).ok());
    fp.streamId(10000).epoch(p.epoch()).seq(seq).payloadBytesFilled(kFrameBytes);
    fp.state(wc::FrameProgressState::COMPLETE);
    auto n = fp.finish();
    ASSERT_TRUE(n.ok());
    ASSERT_TRUE((*control)->offer(std::span<const uint8_t>(buf, *n)).ok());
    drain();
    ASSERT_EQ(states.back(), wc::FrameProgressState::COMPLETE);  // handed over: provisional, as every report

    ASSERT_TRUE((*descriptors)->offer(forge_descriptor(p.epoch(), seq)).ok());
    drain();
    EXPECT_EQ(frames, 0);
    EXPECT_EQ(c.stats().frames_accepted, 0u);
    EXPECT_EQ(c.stats().drops_late, 1u);
    EXPECT_EQ(c.stats().drops_invalid, 0u);
    claim.abort();
}
