// `tensorpool bench transport [--backend ipc|aeron|all] [--seconds S] [--json]`: two-process ping-pong RTT
// percentiles and one-way loss-free throughput; with `all`, every built backend in the same run so the figures
// are comparable.
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "tensorpool/transport/transport_hub.hpp"
#include "frames_bench.hpp"
#include "transport_bench.hpp"

namespace tensorpool::cli {

void add_bench_command(CLI::App& app, int& exit_code) {
    auto* bench = app.add_subcommand("bench", "Benchmarks that print figures (not tests)");
    bench->require_subcommand(1);
    auto* tr = bench->add_subcommand("transport", "Ping-pong latency and one-way throughput of a transport");
    struct Opts {
        std::string backend = "ipc";
        double seconds = 2.0;
        bool json = false;
    };
    auto o = std::make_shared<Opts>();
    tr->add_option("--backend", o->backend, "ipc, aeron or all (every backend this build has)")
        ->check(CLI::IsMember({"ipc", "aeron", "all"}));
    tr->add_option("--seconds", o->seconds, "length of the one-way run")->check(CLI::Range(0.1, 600.0));
    tr->add_flag("--json", o->json, "print one JSON object");
    tr->callback([o, &exit_code] {
        std::vector<std::string> backends;
        if (o->backend == "all") {
            for (const char* b : {"ipc", "aeron"}) {
                if (transport::backend_built(b)) backends.emplace_back(b);
            }
        } else {
            backends.push_back(o->backend);
        }
        nlohmann::ordered_json out;
        out["backends"] = nlohmann::ordered_json::object();
        for (const auto& b : backends) {
            bench::TransportBenchOptions bo;
            bo.backend = b;
            bo.seconds = o->seconds;
            auto r = bench::run_transport_bench(bo);
            if (!r) {
                std::fprintf(stderr, "tensorpool bench transport: %s: %s\n", b.c_str(), r.error().message());
                exit_code = 1;
                return;
            }
            const auto& x = *r;
            out["backends"][b] = {{"rtt_ns", {{"p50", x.rtt_ns.p50}, {"p99", x.rtt_ns.p99}, {"p999", x.rtt_ns.p999},
                                              {"max", x.rtt_ns.max}}},
                                  {"round_trips", x.rtt_ns.count},
                                  {"oneway_msgs_per_s", x.oneway_msgs_per_s},
                                  {"oneway_messages", x.oneway_messages},
                                  {"lost", x.lost}};
            if (!o->json) {
                std::printf("%-6s ping-pong 32 B over %llu round trips: RTT p50 %lld ns, p99 %lld ns, p99.9 %lld ns, "
                            "max %lld ns\n",
                            b.c_str(), static_cast<unsigned long long>(x.rtt_ns.count), static_cast<long long>(x.rtt_ns.p50),
                            static_cast<long long>(x.rtt_ns.p99), static_cast<long long>(x.rtt_ns.p999),
                            static_cast<long long>(x.rtt_ns.max));
                std::printf("%-6s one-way 64 B: %.2f M msgs/s (%llu messages, %llu lost)\n", b.c_str(),
                            x.oneway_msgs_per_s / 1e6, static_cast<unsigned long long>(x.oneway_messages),
                            static_cast<unsigned long long>(x.lost));
            }
        }
        if (o->json) std::printf("%s\n", out.dump().c_str());
    });

    auto* fr = bench->add_subcommand("frames", "Producer and K consumer processes moving N-byte frames, vs a memcpy loop");
    struct FrameOpts {
        bench::FramesBenchOptions b;
        bool json = false;
    };
    auto f = std::make_shared<FrameOpts>();
    fr->add_option("--payload-bytes", f->b.payload_bytes, "frame size")->required();
    fr->add_option("--consumers", f->b.consumers, "consumer processes")->check(CLI::Range(1, 8))->capture_default_str();
    fr->add_option("--seconds", f->b.seconds)->check(CLI::Range(0.1, 600.0))->capture_default_str();
    fr->add_option("--rate-hz", f->b.rate_hz, "pace the producer (0 = as fast as possible)")->capture_default_str();
    fr->add_option("--nslots", f->b.nslots, "ring and pool slots (power of two)")->capture_default_str();
    fr->add_flag("!--no-pin", f->b.pin, "do not pin the producer and consumers to separate CPUs");
    fr->add_flag("--json", f->json, "print one JSON object");
    fr->callback([f, &exit_code] {
        auto r = bench::run_frames_bench(f->b);
        if (!r) {
            std::fprintf(stderr, "tensorpool bench frames: %s\n", r.error().message());
            exit_code = 1;
            return;
        }
        const auto& x = *r;
        if (f->json) {
            nlohmann::ordered_json j = {
                {"payload_bytes", x.payload_bytes}, {"nslots", x.nslots}, {"fps", x.fps}, {"published_fps", x.published_fps},
                {"gib_per_s", x.bytes_per_s / (1ull << 30)}, {"memcpy_gib_per_s", x.memcpy_bytes_per_s / (1ull << 30)},
                {"ratio_to_memcpy", x.ratio_to_memcpy}, {"line_transfer_ns", x.line_transfer_ns},
                {"steal_percent", x.steal_percent},
                {"consumer_stalls",
                 {{"per_s", x.consumer_stalls_per_s},
                  {"percent", x.consumer_stalled_percent},
                  {"preemptions_per_s", x.consumer_preemptions_per_s},
                  {"page_faults_per_s", x.consumer_page_faults_per_s},
                  {"cpu_interrupts_per_s", x.consumer_cpu_interrupts_per_s < 0 ? nlohmann::ordered_json(nullptr)
                                                                               : nlohmann::ordered_json(x.consumer_cpu_interrupts_per_s)}}},
                {"frame_cost_ns", {{"producer", x.frame_cost.producer_ns}, {"consumer", x.frame_cost.consumer_ns}}},
                {"handoff_cost_ns", {{"producer", x.handoff_cost.producer_ns}, {"consumer", x.handoff_cost.consumer_ns}}},
                {"latency_ns", {{"p50", x.latency_p50_ns}, {"p99", x.latency_p99_ns}, {"p999", x.latency_p999_ns}}},
                {"drops_gap", x.drops_gap}, {"drops_late", x.drops_late}, {"torn_accepted", x.torn_accepted},
                {"published", x.published}, {"accepted", x.accepted}};
            std::printf("%s\n", j.dump().c_str());
        } else {
            std::printf("frames of %zu B: published %.0f fps, slowest consumer %.0f fps (%.2f%% of published); producer "
                        "%.2f GiB/s = %.3f x memcpy (%.2f GiB/s); latency p50 %lld ns p99 %lld ns p99.9 %lld ns; drops "
                        "gap %llu late %llu; torn accepted %llu\n",
                        x.payload_bytes, x.published_fps, x.fps, x.published_fps > 0 ? 100.0 * x.fps / x.published_fps : 0.0,
                        x.bytes_per_s / (1ull << 30), x.ratio_to_memcpy, x.memcpy_bytes_per_s / (1ull << 30),
                        static_cast<long long>(x.latency_p50_ns), static_cast<long long>(x.latency_p99_ns),
                        static_cast<long long>(x.latency_p999_ns), static_cast<unsigned long long>(x.drops_gap),
                        static_cast<unsigned long long>(x.drops_late), static_cast<unsigned long long>(x.torn_accepted));
            std::printf("baselines: one thread costs %.0f ns/frame producing and %.0f ns/frame consuming; ",
                        x.frame_cost.producer_ns, x.frame_cost.consumer_ns);
            if (x.handoff_cost.producer_ns > 0) {
                std::printf("on two CPUs taking turns %.0f and %.0f ns/frame; a cache line takes %.0f ns from the "
                            "producer's CPU to the consumer's; ",
                            x.handoff_cost.producer_ns, x.handoff_cost.consumer_ns, x.line_transfer_ns);
            } else {
                std::printf("the two-CPU baselines need pinning and two CPUs; ");
            }
            std::printf("the hypervisor took %.1f%% of the CPU time (steal)\n", x.steal_percent);
            if (x.consumer_stalls_per_s > 0) {
                std::printf("stalls: the consumer's loop was held up for more than 5 us %.0f times per second, %.2f%% of "
                            "the run; meanwhile the scheduler preempted it %.0f times per second, it took %.0f page faults "
                            "per second",
                            x.consumer_stalls_per_s, x.consumer_stalled_percent, x.consumer_preemptions_per_s,
                            x.consumer_page_faults_per_s);
                if (x.consumer_cpu_interrupts_per_s >= 0) {
                    // Each interrupt, preemption or fault can account for one stall at most: the rest came from outside.
                    const double seen =
                        x.consumer_cpu_interrupts_per_s + x.consumer_preemptions_per_s + x.consumer_page_faults_per_s;
                    std::printf(" and its CPU took %.0f interrupts per second: at least %.0f stalls per second were not "
                                "this kernel's doing (on a VM, the hypervisor's)",
                                x.consumer_cpu_interrupts_per_s, x.consumer_stalls_per_s > seen ? x.consumer_stalls_per_s - seen : 0.0);
                }
                std::printf("\n");
            }
        }
        if (x.torn_accepted != 0) exit_code = 1;
    });
}

}  // namespace tensorpool::cli
