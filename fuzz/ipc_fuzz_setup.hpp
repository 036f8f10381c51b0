// Set-up shared by the ipc bus fuzz targets: a private bus directory under /dev/shm and a read-write mapping of a
// bus file, for the target to write its inputs over. A failure here is the harness's, not the code under test's:
// it aborts with what went wrong.
#pragma once

#include <stdlib.h>
#include <sys/mman.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

namespace tensorpool::fuzz {

[[noreturn]] inline void setup_failed(const char* what) {
    std::fprintf(stderr, "fuzz target setup: %s\n", what);
    std::abort();
}

// /dev/shm/tensorpool-fuzz-<tag>-XXXXXX, created empty (scripts/fuzz-smoke removes it after the run).
inline std::string private_bus_dir(const char* tag) {
    std::string tmpl = std::string("/dev/shm/tensorpool-fuzz-") + tag + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) setup_failed("mkdtemp");
    return tmpl;
}

// The first `bytes` of the file at `path`, mapped shared and writable.
inline std::uint8_t* map_read_write(const std::string& path, std::size_t bytes) {
    FILE* f = std::fopen(path.c_str(), "r+");
    if (f == nullptr) setup_failed(("cannot open " + path).c_str());
    void* m = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fileno(f), 0);
    std::fclose(f);
    if (m == MAP_FAILED) setup_failed(("cannot map " + path).c_str());
    return static_cast<std::uint8_t*>(m);
}

}  // namespace tensorpool::fuzz
