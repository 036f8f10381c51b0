// Placeholder until the shm layer lands: `tensorpool inspect` is registered but reports that it is not built yet.
#include <cstdio>

#include "commands.hpp"

namespace tensorpool::cli {

void add_inspect_command(CLI::App& app, int& exit_code) {
    auto* cmd = app.add_subcommand("inspect", "Safely open, validate and summarise an SHM region file");
    cmd->allow_extras();
    cmd->callback([&exit_code] {
        std::fprintf(stderr, "tensorpool inspect: not implemented yet\n");
        exit_code = 2;
    });
}

}  // namespace tensorpool::cli
