// libFuzzer target: every decoder of the six schemas through the dispatcher, plus the headerless SHM
// structures. Decoding, walking every group and var data and printing canonical JSON must never read out of
// bounds, whatever the bytes; an accepted message must report a length within the input.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "tensorpool/wire/gen/dispatch.hpp"
#include "tensorpool/wire/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace tensorpool;
    std::string json;
    (void)wire::decode_to_json(data, size, json);
    (void)wire::dispatch_all(data, size, [size](const auto& d) {
        if (d.encoded_length() > size) std::abort();
    });
    // The first byte picks a headerless structure for the rest.
    if (size > 0) {
        static const char* const kRaw[] = {"ShmRegionSuperblock", "SlotHeader", "TensorHeader"};
        json.clear();
        (void)wire::decode_raw_to_json(kRaw[data[0] % 3], data + 1, size - 1, json);
    }
    return 0;
}
