// libFuzzer target: header-slot decoding and the consumer's drop rules (W-8-*, §3.4) on arbitrary 256-byte slot
// images and pool tables. Must never crash or read out of bounds; an accepted slot must satisfy the invariants a
// consumer indexes payload memory with.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "tensorpool/shm/slot_image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    using namespace tensorpool::shm;
    SlotImage image;
    std::memcpy(image.data(), data, size < image.bytes.size() ? size : image.bytes.size());
    uint32_t index = 0;
    PoolInfo pools[2] = {{1, 64}, {2, 1 << 20}};
    if (size >= image.bytes.size() + 4) std::memcpy(&index, data + image.bytes.size(), 4);
    if (size >= image.bytes.size() + 8) std::memcpy(&pools[0].stride_bytes, data + image.bytes.size() + 4, 4);
    (void)decode_slot_image(image);
    auto c = validate_slot(image, index, pools);
    if (c.ok()) {
        if (c->tensor.ndims < 1 || c->tensor.ndims > 8) std::abort();
        if (c->payload_offset != 0 || c->payload_slot != index) std::abort();
        const PoolInfo* p = c->pool_id == 1 ? &pools[0] : c->pool_id == 2 ? &pools[1] : nullptr;
        if (p == nullptr || c->values_len_bytes > p->stride_bytes) std::abort();
        if (c->element_bytes == 0) std::abort();
    }
    return 0;
}
