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
}

}  // namespace tensorpool::cli
