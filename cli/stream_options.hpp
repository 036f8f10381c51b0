// Command-line options shared by the tools that produce or consume a stream: transport channel and stream ids
// (defaults meet the other implementations': control 1000, announce 1001, descriptor 1100, QoS 1200, metadata
// 1300), the data source's stream id, and where regions live.
#pragma once

#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "tensorpool/client/channels.hpp"
#include "tensorpool/transport/transport_hub.hpp"

namespace tensorpool::cli {

struct StreamOptions {
    client::Channels channels;
    uint32_t stream_id = 10000;
    std::string shm_base_dir = "/dev/shm";
    std::string ns = "default";
    std::vector<std::string> allow_dirs;  // consumer side; empty: shm_base_dir
    std::string ipc_root;                 // empty: /dev/shm/tensorpool-ipc-<user>
    std::string aeron_dir;
    bool aeron_embedded_driver = false;

    transport::TransportOptions transport_options() const {
        transport::TransportOptions t;
        t.ipc_root = ipc_root;
        t.aeron_dir = aeron_dir;
        t.aeron_embedded_driver = aeron_embedded_driver;
        return t;
    }
    std::vector<std::string> allowed_dirs() const { return allow_dirs.empty() ? std::vector<std::string>{shm_base_dir} : allow_dirs; }
};

inline void add_stream_options(CLI::App* cmd, StreamOptions& o, bool producer_side) {
    cmd->add_option("--channel", o.channels.channel,
                    "transport channel for every stream: ipc:<bus> (embedded) or an Aeron URI such as "
                    "aeron:ipc?term-length=4m")
        ->capture_default_str();
    cmd->add_option("--stream-id", o.stream_id, "data source stream id")->capture_default_str();
    cmd->add_option("--control-stream", o.channels.control_stream)->capture_default_str();
    cmd->add_option("--announce-stream", o.channels.announce_stream)->capture_default_str();
    cmd->add_option("--descriptor-stream", o.channels.descriptor_stream)->capture_default_str();
    cmd->add_option("--qos-stream", o.channels.qos_stream)->capture_default_str();
    cmd->add_option("--metadata-stream", o.channels.metadata_stream)->capture_default_str();
    cmd->add_option("--ipc-root", o.ipc_root, "directory of the embedded ipc bus (default /dev/shm/tensorpool-ipc-<user>)");
    cmd->add_option("--aeron-dir", o.aeron_dir, "Aeron media driver directory");
    cmd->add_flag("--embedded-driver", o.aeron_embedded_driver, "start an Aeron media driver in this process");
    if (producer_side) {
        cmd->add_option("--base-dir", o.shm_base_dir, "where regions are created (canonical layout)")->capture_default_str();
        cmd->add_option("--namespace", o.ns, "namespace of the canonical layout")->capture_default_str();
    } else {
        cmd->add_option("--allow-dir", o.allow_dirs, "directory announced regions must lie in (repeatable; default /dev/shm)");
    }
}

}  // namespace tensorpool::cli
