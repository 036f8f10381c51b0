// Each subcommand of the `tensorpool` binary registers itself on the CLI11 app; main() runs the one chosen.
#pragma once

#include <CLI/CLI.hpp>

namespace tensorpool::cli {

// Registers `tensorpool decode`; the callback sets the process exit code through `exit_code`.
void add_decode_command(CLI::App& app, int& exit_code);
// Registers `tensorpool inspect`.
void add_inspect_command(CLI::App& app, int& exit_code);
// Registers `tensorpool produce` and `tensorpool consume`.
void add_produce_consume_commands(CLI::App& app, int& exit_code);
// Registers `tensorpool demo` (the README's main job).
void add_demo_command(CLI::App& app, int& exit_code);
// Registers `tensorpool bench` and its scenarios.
void add_bench_command(CLI::App& app, int& exit_code);

}  // namespace tensorpool::cli
