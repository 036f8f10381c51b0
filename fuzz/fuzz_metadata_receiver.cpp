// libFuzzer target: a MetadataReceiver fed sequences of messages. Whatever arrives, it must never read out of
// bounds, never hold more blob bytes than its cap, never keep more open blobs or cached versions than
// configured, and hand out only completed blobs whose bytes match their announced size and checksum.
//
// Input: byte 0 picks the receiver's configuration and the mode.
//   mode 0 (raw): the rest is a sequence of messages, each a u16 little-endian length and that many bytes.
//   mode 1 (ops): the rest is a sequence of small operations that are encoded into VALID metadata messages
//                 (announce / chunk / complete / source announce / meta), so the fuzzer spends its time in the
//                 reassembly state machine rather than in the decoder's rejections.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "tensorpool/client/metadata_receiver.hpp"
#include "tensorpool/common/crc32c.hpp"
#include "tensorpool/wire/gen/control.hpp"

namespace {

using namespace tensorpool;
using namespace tensorpool::client;
namespace wc = tensorpool::wire::control;

constexpr uint32_t kStream = 77;

struct Reader {
    const uint8_t* p;
    std::size_t n;
    bool take(std::size_t k, const uint8_t*& out) {
        if (n < k) return false;
        out = p;
        p += k;
        n -= k;
        return true;
    }
    uint8_t u8() {
        const uint8_t* b = nullptr;
        return take(1, b) ? b[0] : 0;
    }
    uint16_t u16() { return static_cast<uint16_t>(u8() | (u8() << 8)); }
};

void check(const MetadataReceiver& r, const MetadataReceiverConfig& c) {
    if (r.blob_bytes_held() > c.max_blob_bytes) std::abort();
    if (r.open_blobs() > c.max_inflight_blobs) std::abort();
}

void check_blob(const CompletedBlob& b) {
    if (b.checksum != 0 && b.checksum != crc32c(std::as_bytes(std::span<const uint8_t>(b.bytes)))) std::abort();
}

// Encodes one message for mode 1 into `buf`; returns its length (0 when the input ran out).
std::size_t encode_op(Reader& in, std::vector<uint8_t>& buf, std::vector<uint8_t>& blob) {
    const uint8_t op = in.u8();
    const uint32_t version = in.u8() % 4;  // few versions: collisions between blobs are the interesting part
    const uint32_t stream = (op & 0x80) != 0 ? kStream + 1 : kStream;
    Result<std::size_t> n = std::size_t{0};
    switch (op % 6) {
        case 0: {  // MetaBlobAnnounce of a small blob whose bytes are the next input bytes
            const std::size_t total = in.u8();
            const uint8_t* bytes = nullptr;
            blob.assign(total, 0);
            if (in.take(total, bytes)) blob.assign(bytes, bytes + total);
            const uint8_t how = in.u8();
            uint64_t checksum = crc32c(std::as_bytes(std::span<const uint8_t>(blob)));
            if (how % 4 == 1) checksum = 0;
            if (how % 4 == 2) checksum ^= uint64_t{1} << (how % 64);
            wc::MetaBlobAnnounce::Encoder e;
            (void)e.wrap_and_apply_header(buf.data(), buf.size());
            e.streamId(stream).metaVersion(version).blobType(how >> 4).checksum(checksum);
            e.totalLen((how & 0x08) != 0 ? uint64_t{1} << (32 + how % 31) : total);  // sometimes huge
            n = e.finish();
            break;
        }
        case 1:
        case 2: {  // MetaBlobChunk of blob[offset, offset + len), offset and len from the input
            const std::size_t offset = in.u8();
            const std::size_t len = in.u8() % 64;
            std::vector<uint8_t> part(len, 0xA5);
            for (std::size_t i = 0; i < len && offset + i < blob.size(); ++i) part[i] = blob[offset + i];
            wc::MetaBlobChunk::Encoder e;
            (void)e.wrap_and_apply_header(buf.data(), buf.size());
            e.streamId(stream).metaVersion(version).chunkOffset(offset).bytes(std::span<const uint8_t>(part));
            n = e.finish();
            break;
        }
        case 3: {  // MetaBlobComplete with the current blob's checksum, or one from the input
            const uint8_t how = in.u8();
            uint64_t checksum = crc32c(std::as_bytes(std::span<const uint8_t>(blob)));
            if (how % 3 == 1) checksum = 0;
            if (how % 3 == 2) checksum = how;
            wc::MetaBlobComplete::Encoder e;
            (void)e.wrap_and_apply_header(buf.data(), buf.size());
            e.streamId(stream).metaVersion(version).checksum(checksum);
            n = e.finish();
            break;
        }
        case 4: {  // DataSourceAnnounce, epoch 0..3
            wc::DataSourceAnnounce::Encoder e;
            (void)e.wrap_and_apply_header(buf.data(), buf.size());
            e.streamId(stream).producerId(1).epoch(in.u8() % 4).metaVersion(version).name("src").summary("f32[4]");
            n = e.finish();
            break;
        }
        case 5: {  // DataSourceMeta with up to 3 attributes
            const std::size_t count = in.u8() % 4;
            wc::DataSourceMeta::Encoder e;
            (void)e.wrap_and_apply_header(buf.data(), buf.size());
            e.streamId(stream).metaVersion(in.u8()).timestampNs(1);
            auto g = e.attributesCount(count);
            for (std::size_t i = 0; i < count; ++i) {
                const uint8_t v = in.u8();
                const uint8_t value[2] = {v, static_cast<uint8_t>(i)};
                g.next().key(i == 0 ? "k0" : i == 1 ? "k1" : "k0").format("application/octet-stream").value(
                    std::span<const uint8_t>(value, v % 3));
            }
            n = e.finish();
            break;
        }
    }
    return n.ok() ? *n : 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size == 0) return 0;
    const uint8_t cfg = data[0];
    MetadataReceiverConfig config;
    config.stream_id = kStream;
    config.max_blob_bytes = (cfg & 0x03) == 0 ? 64 : (cfg & 0x03) == 1 ? 300 : std::size_t{1} << 16;
    config.max_inflight_blobs = 1 + ((cfg >> 2) & 0x03);
    config.max_cached_versions = 1 + ((cfg >> 4) & 0x03);
    config.retain_blobs = (cfg & 0x40) == 0;
    const bool ops = (cfg & 0x80) != 0;

    MetadataReceiver r(config);
    uint64_t delivered = 0;
    r.set_blob_handler([&](const CompletedBlob& b) {
        check_blob(b);
        ++delivered;
    });
    Reader in{data + 1, size - 1};
    std::vector<uint8_t> buf(4096), blob;
    while (in.n > 0) {
        if (ops) {
            const std::size_t n = encode_op(in, buf, blob);
            if (n == 0) continue;
            (void)r.on_message(std::span<const uint8_t>(buf.data(), n));
        } else {
            const std::size_t len = in.u16();
            const uint8_t* msg = nullptr;
            if (!in.take(len, msg)) {
                msg = in.p;
                (void)r.on_message(std::span<const uint8_t>(msg, in.n));
                in.n = 0;
            } else {
                // A heap copy of exactly `len` bytes, so ASan sees any read past the message.
                std::vector<uint8_t> copy(msg, msg + len);
                (void)r.on_message(std::span<const uint8_t>(copy.data(), copy.size()));
            }
        }
        check(r, config);
    }
    if (delivered != r.stats().blobs_completed) std::abort();
    for (uint32_t t = 0; t < 16; ++t) {
        if (const CompletedBlob* b = r.latest_blob(t)) check_blob(*b);
    }
    if (const AttributeSet* s = r.latest_attributes()) {
        if (r.attributes_for(s->meta_version) != s) std::abort();
        if (const MetadataAttribute* a = s->find("k0"); a != nullptr && a->key != "k0") std::abort();
    }
    r.reset();
    if (r.blob_bytes_held() != 0 || r.open_blobs() != 0 || r.latest_attributes() != nullptr) std::abort();
    return 0;
}
