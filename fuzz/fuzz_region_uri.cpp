// libFuzzer target: the region URI parser (WIRE_SPEC §7.1). Whatever the input, parsing must not crash, and a
// URI it accepts must format back to a URI that parses to the same value (no lossy or ambiguous acceptance).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "tensorpool/shm/region_uri.hpp"
#include "tensorpool/shm/safe_open.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace tensorpool::shm;
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    auto uri = parse_region_uri(in);
    if (uri.ok()) {
        auto text = format_region_uri(*uri);
        if (!text.ok()) std::abort();
        auto again = parse_region_uri(*text);
        if (!again.ok() || again->path != uri->path || again->require_hugepages != uri->require_hugepages) std::abort();
        if (uri->path.empty() || uri->path.front() != '/') std::abort();
    }
    (void)parse_uri_or_path(in);
    return 0;
}
