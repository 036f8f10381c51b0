// The single `tensorpool` binary: every tool is a subcommand.
#include "commands.hpp"

int main(int argc, char** argv) {
    CLI::App app{"tensorpool: zero-copy tensor transport over shared memory (SHM Tensor Pool wire spec v1.2)"};
    app.require_subcommand(1);
    int exit_code = 0;
    tensorpool::cli::add_decode_command(app, exit_code);
    tensorpool::cli::add_inspect_command(app, exit_code);
    tensorpool::cli::add_produce_consume_commands(app, exit_code);
    tensorpool::cli::add_demo_command(app, exit_code);
    tensorpool::cli::add_bench_command(app, exit_code);
    CLI11_PARSE(app, argc, argv);
    return exit_code;
}
