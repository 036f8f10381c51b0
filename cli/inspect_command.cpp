// `tensorpool inspect`: open a region file exactly as a consumer would (containment, symlink-safe open,
// read-only), validate its superblock, and summarise it; for a header ring, also every committed slot.
//
// A file that any rule refuses produces exit code 2, nothing on stdout and one line on stderr naming the rule;
// nothing is mapped in that case. Slots are read under the seqlock like a consumer reads them, so inspecting a
// live ring is safe and never shows a torn header.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "tensorpool/shm/layout.hpp"
#include "tensorpool/shm/region_reader.hpp"
#include "tensorpool/shm/slot_image.hpp"

namespace tensorpool::cli {
namespace {

using Json = nlohmann::ordered_json;
using namespace tensorpool::shm;

struct InspectOptions {
    std::vector<std::string> allow_dirs;
    std::string target;
    bool json = false;
};

constexpr int kExitRefused = 2;

template <class E>
std::string enum_name(E v) {
    const char* n = wire::control::name_of(v);
    return n != nullptr ? n : std::to_string(static_cast<long long>(v));
}

Json superblock_json(const Superblock& sb) {
    Json j;
    j["magic"] = sb.magic;
    j["layoutVersion"] = sb.layout_version;
    j["epoch"] = sb.epoch;
    j["streamId"] = sb.stream_id;
    j["regionType"] = enum_name(sb.region_type);
    j["poolId"] = sb.pool_id;
    j["nslots"] = sb.nslots;
    j["slotBytes"] = sb.slot_bytes;
    j["strideBytes"] = sb.stride_bytes;
    j["pid"] = sb.pid;
    j["startTimestampNs"] = sb.start_timestamp_ns;
    j["activityTimestampNs"] = sb.activity_timestamp_ns;
    return j;
}

Json slot_json(std::uint32_t index, const SlotContents& c) {
    const std::size_t n = c.tensor.ndims;
    Json j;
    j["index"] = index;
    j["seq"] = c.seq;
    j["dtype"] = enum_name(c.tensor.dtype);
    j["majorOrder"] = enum_name(c.tensor.major_order);
    j["ndims"] = c.tensor.ndims;
    j["dims"] = std::vector<std::int32_t>(c.tensor.dims.begin(), c.tensor.dims.begin() + n);
    j["strides"] = std::vector<std::int32_t>(c.tensor.strides.begin(), c.tensor.strides.begin() + n);
    j["valuesLenBytes"] = c.values_len_bytes;
    j["poolId"] = c.pool_id;
    j["payloadSlot"] = c.payload_slot;
    j["payloadOffset"] = c.payload_offset;
    j["timestampNs"] = c.timestamp_ns;
    j["metaVersion"] = c.meta_version;
    j["progressUnit"] = enum_name(c.tensor.progress_unit);
    j["progressStrideBytes"] = c.tensor.progress_stride_bytes;
    j["headerBytesLength"] = c.header_bytes_length;
    j["embeddedHeader"] = {{"blockLength", c.embedded_block_length},
                           {"templateId", c.embedded_template_id},
                           {"schemaId", c.embedded_schema_id},
                           {"version", c.embedded_version}};
    return j;
}

// Reads slot `index` under the seqlock. Returns nullopt-like empty json for a slot that is not committed.
Json inspect_slot(const HeaderRingView& ring, std::uint32_t index) {
    ReadTicket ticket;
    if (ticket.begin_any(ring.slot(index)) != ReadBegin::ok) return Json();
    Json j;
    const std::uint64_t seq = ticket.seq();
    auto checked = validate_slot_header(ticket.header(), index);
    if (checked) {
        j = slot_json(index, *checked);
    } else {
        j["index"] = index;
        j["seq"] = seq;
        // Show what decodes, so an operator can see the bad field; the error names the rule.
        if (auto raw = decode_slot_image(ticket.header()); raw) {
            j = slot_json(index, *raw);
        }
        j["error"] = checked.error().message();
    }
    if (checked && ring.index_of(seq) != index) {
        j["error"] = "seq " + std::to_string(seq) + " maps to slot " + std::to_string(ring.index_of(seq)) +
                     ", not " + std::to_string(index) + " (seq & (nslots - 1))";
    }
    if (!ticket.still_valid()) {
        j["error"] = "slot was overwritten while being read (seqlock changed); re-run to see the new frame";
    }
    return j;
}

std::string dims_text(const Json& slot) {
    std::string s = "[";
    for (std::size_t i = 0; i < slot["dims"].size(); ++i) {
        if (i > 0) s += ",";
        s += std::to_string(slot["dims"][i].get<std::int64_t>());
    }
    return s + "]";
}

std::string human_text(const std::string& path, const Json& sb, const Json* slots, std::uint32_t in_progress) {
    std::string out;
    char line[512];
    auto add = [&](const char* key, const std::string& value) {
        std::snprintf(line, sizeof line, "%-20s %s\n", key, value.c_str());
        out += line;
    };
    add("path", path);
    for (const auto& [key, value] : sb.items()) {
        if (key == "magic") {
            std::snprintf(line, sizeof line, "0x%016" PRIx64, value.get<std::uint64_t>());
            add(key.c_str(), line);
        } else {
            add(key.c_str(), value.is_string() ? value.get<std::string>() : value.dump());
        }
    }
    if (slots == nullptr) return out;
    std::snprintf(line, sizeof line, "\ncommitted slots: %zu of %u (%u in progress or never written)\n",
                  slots->size(), sb["nslots"].get<std::uint32_t>(), in_progress);
    out += line;
    if (slots->empty()) return out;
    std::snprintf(line, sizeof line, "%6s %20s  %-8s %-6s %-24s %12s %5s\n", "index", "seq", "dtype", "order", "dims",
                  "bytes", "pool");
    out += line;
    for (const Json& s : *slots) {
        if (s.contains("dtype")) {
            std::snprintf(line, sizeof line, "%6u %20" PRIu64 "  %-8s %-6s %-24s %12u %5u\n",
                          s["index"].get<std::uint32_t>(), s["seq"].get<std::uint64_t>(),
                          s["dtype"].get<std::string>().c_str(), s["majorOrder"].get<std::string>().c_str(),
                          dims_text(s).c_str(), s["valuesLenBytes"].get<std::uint32_t>(),
                          unsigned{s["poolId"].get<std::uint16_t>()});
            out += line;
        } else {
            std::snprintf(line, sizeof line, "%6u %20" PRIu64 "\n", s["index"].get<std::uint32_t>(),
                          s["seq"].get<std::uint64_t>());
            out += line;
        }
        if (s.contains("error")) {
            out += "       invalid: " + s["error"].get<std::string>() + "\n";
        }
    }
    return out;
}

int run_inspect(const InspectOptions& opts) {
    // The allowlist is the operator's own configuration, so a relative --allow-dir is taken relative to the
    // working directory; the region path itself must be absolute, as it must be for any consumer.
    std::vector<std::string> dirs;
    for (const std::string& d : opts.allow_dirs) {
        if (!d.empty() && d.front() != '/') {
            std::error_code ec;
            dirs.push_back((std::filesystem::current_path(ec) / d).string());
        } else {
            dirs.push_back(d);
        }
    }
    if (dirs.empty()) dirs.emplace_back(kDefaultShmBaseDir);
    auto allowed = AllowedDirs::create(std::span<const std::string>(dirs));
    if (!allowed) {
        std::fprintf(stderr, "tensorpool inspect: %s\n", allowed.error().to_string().c_str());
        return kExitRefused;
    }
    auto region = map_region(opts.target, *allowed, SuperblockExpectations::any());
    if (!region) {
        // The message already names the path and the rule that refused it.
        std::fprintf(stderr, "tensorpool inspect: %s\n", region.error().to_string().c_str());
        return kExitRefused;
    }

    const Json sb = superblock_json(region->superblock());
    Json slots = Json::array();
    std::uint32_t in_progress = 0;
    const bool is_ring = region->superblock().region_type == RegionType::HEADER_RING;
    if (is_ring) {
        auto ring = HeaderRingView::over(*region);
        if (!ring) {  // cannot happen after validation; reported rather than assumed
            std::fprintf(stderr, "tensorpool inspect: %s\n", ring.error().to_string().c_str());
            return kExitRefused;
        }
        for (std::uint32_t i = 0; i < ring->nslots(); ++i) {
            Json s = inspect_slot(*ring, i);
            if (s.is_null()) {
                ++in_progress;
            } else {
                slots.push_back(std::move(s));
            }
        }
    }

    std::string out;
    if (opts.json) {
        Json doc;
        doc["path"] = region->canonical_path();
        doc["superblock"] = sb;
        if (is_ring) doc["slots"] = slots;
        out = doc.dump(2) + "\n";
    } else {
        out = human_text(region->canonical_path(), sb, is_ring ? &slots : nullptr, in_progress);
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return 0;
}

}  // namespace

void add_inspect_command(CLI::App& app, int& exit_code) {
    auto opts = std::make_shared<InspectOptions>();
    auto* cmd = app.add_subcommand(
        "inspect",
        "Safely open, validate and summarise an SHM region file (header ring or payload pool), read-only, exactly "
        "as a consumer would. A refused file exits 2 with one line on stderr naming the rule.");
    cmd->add_option("--allow-dir", opts->allow_dirs,
                    "Directory the region must lie inside (repeatable; relative to the working directory if not "
                    "absolute). Default: /dev/shm, the canonical layout base. The file's own directory is NOT "
                    "implicitly allowed.")
        ->allow_extra_args(false);
    cmd->add_option("PATH_OR_URI", opts->target,
                    "Absolute path of the region file, or its URI shm:file?path=<abs>[|require_hugepages=true|false]")
        ->required();
    cmd->add_flag("--json", opts->json,
                  "Print {\"superblock\":{...},\"slots\":[...]} (schema field names, enum names) instead of text");
    cmd->callback([opts, &exit_code] { exit_code = run_inspect(*opts); });
}

}  // namespace tensorpool::cli
