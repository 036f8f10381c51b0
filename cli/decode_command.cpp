// `tensorpool decode [--raw MESSAGE] FILE`: prints one SBE message in the canonical JSON form.
// Malformed input: nothing on stdout, one line on stderr saying what, where and what was expected, exit 1.
#include <cstdio>
#include <string>

#include "commands.hpp"
#include "tensorpool/common/file_bytes.hpp"
#include "tensorpool/wire/json.hpp"

namespace tensorpool::cli {

void add_decode_command(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("decode", "Decode one SBE message file (any of the six schemas) to canonical JSON");
    auto raw = std::make_shared<std::string>();
    auto file = std::make_shared<std::string>();
    cmd->add_option("--raw", *raw, "decode a headerless MESSAGE (e.g. SlotHeader) with its schema block length");
    cmd->add_option("FILE", *file, "file holding the message bytes")->required();
    cmd->callback([raw, file, &exit_code] {
        auto bytes = read_file_bytes(*file);
        if (!bytes) {
            std::fprintf(stderr, "tensorpool decode: %s\n", bytes.error().message());
            exit_code = 1;
            return;
        }
        std::string json;
        Status s = raw->empty() ? wire::decode_to_json(bytes->data(), bytes->size(), json)
                                : wire::decode_raw_to_json(*raw, bytes->data(), bytes->size(), json);
        if (!s) {
            std::fprintf(stderr, "tensorpool decode: %s: %s\n", file->c_str(), s.error().message());
            exit_code = 1;
            return;
        }
        json += '\n';
        std::fwrite(json.data(), 1, json.size(), stdout);
    });
}

}  // namespace tensorpool::cli
