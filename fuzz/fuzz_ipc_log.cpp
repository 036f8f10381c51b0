// libFuzzer target: the ipc log reader. A subscriber reads each publisher's log in shared memory, written by
// another process that may be buggy, hostile or half-dead, so every byte of the ring and the header words it trusts
// (write_limit, tail, last_record) may be anything. Whatever they hold, a poll must never read or deliver outside
// the ring or beyond the largest message, and must come back.
//
// Set up once: a bus under a private directory, one publisher whose tail sits 1 KiB before the wrap, and a writable
// mapping of its log. Each input is then written over the log and a fresh subscription (joined at the tail) polls
// it; afterwards everything the input wrote is put back, so every input starts from the same log.
//
// Input: byte 0 picks which header words the next 8-byte fields replace (bit 0 write_limit, bit 1 tail, bit 2
// last_record, in that order) and, bit 3, whether the subscriber skips to the latest record after each poll; the
// rest is written over the ring from the subscriber's join position on, wrapping at the end (records before the
// wrap carry lap 0, after it lap 1). Each message must come at a later position than the one before.
#include <stdlib.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "../src/transport/ipc/ipc_files.hpp"
#include "../src/transport/ipc/ipc_format.hpp"
#include "ipc_fuzz_setup.hpp"
#include "tensorpool/transport/transport_hub.hpp"

using namespace tensorpool;
using namespace tensorpool::transport;

namespace {

constexpr std::size_t kTermBytes = std::size_t{1} << 20;  // the smallest ring the bus accepts
constexpr int32_t kStream = 7;

struct Bus {
    std::string root;
    std::unique_ptr<TransportHub> hub;
    std::unique_ptr<Publication> pub;
    uint8_t* log = nullptr;  // the publisher's log file, mapped read-write here
    ipc::LogHeader saved{};
    std::vector<uint8_t> saved_ring;  // the ring as set up, to put back what an input overwrote
    std::size_t max_message = 0;

    Bus() {
        root = fuzz::private_bus_dir("ipc");
        TransportOptions o;
        o.ipc_root = root;
        o.ipc_term_bytes = kTermBytes;
        hub = std::make_unique<TransportHub>(o);
        auto p = hub->add_publication("ipc:fuzz", kStream);
        if (!p) fuzz::setup_failed(p.error().message());
        pub = std::move(*p);
        max_message = pub->max_message_length();
        // A subscriber must exist for offers to be taken; it leaves once the tail is where the inputs go.
        auto s = hub->add_subscription("ipc:fuzz", kStream);
        if (!s) fuzz::setup_failed(s.error().message());
        const std::vector<uint8_t> msg(48, 0x5A);
        for (;;) {
            const auto r = pub->offer(msg);
            if (!r.ok()) fuzz::setup_failed("offer refused while filling the ring");
            if (static_cast<std::size_t>(r.position()) >= kTermBytes - 1024) break;
            (void)(*s)->poll([](std::span<const uint8_t>, const MessageInfo&) {}, 1 << 20);
        }
        const std::string path = root + "/fuzz/" + std::to_string(kStream) + "/" + ipc::log_file_name(pub->session_id());
        log = fuzz::map_read_write(path, ipc::kLogHeaderBytes + kTermBytes);
        std::memcpy(&saved, log, sizeof saved);
        saved_ring.assign(ring(), ring() + kTermBytes);
    }
    ~Bus() {
        pub.reset();
        hub.reset();
        std::error_code ec;
        std::filesystem::remove_all(root, ec);
    }
    ipc::LogHeader* header() { return reinterpret_cast<ipc::LogHeader*>(log); }
    uint8_t* ring() { return log + ipc::kLogHeaderBytes; }
};

Bus& bus() {
    static Bus b;
    return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    Bus& b = bus();
    if (size == 0) return 0;
    const uint8_t which = data[0];
    std::size_t at = 1;
    auto take_word = [&](uint64_t& into) {
        if (size - at < 8) return;
        std::memcpy(&into, data + at, 8);
        at += 8;
    };
    // The subscription joins at the saved tail; the ring bytes go there.
    const std::size_t start = static_cast<std::size_t>(b.saved.tail) & (kTermBytes - 1);
    ipc::LogHeader* h = b.header();
    if (which & 1) take_word(h->write_limit);
    if (which & 2) take_word(h->tail);
    if (which & 4) take_word(h->last_record);
    const std::size_t n = std::min(size - at, kTermBytes);

    auto sub = b.hub->add_subscription("ipc:fuzz", kStream);
    if (!sub) __builtin_trap();  // the bus itself is ours and sound: joining must work
    // Written after joining, as a live writer would: the join took the (possibly replaced) tail.
    for (std::size_t i = 0; i < n; ++i) b.ring()[(start + i) & (kTermBytes - 1)] = data[at + i];

    std::vector<uint8_t> sink;
    int64_t last_position = -1;
    auto handler = [&](std::span<const uint8_t> m, const MessageInfo& info) {
        if (m.size() > b.max_message) __builtin_trap();  // a message larger than any the writer may send
        if (info.position <= last_position) __builtin_trap();  // delivered twice, or from behind
        last_position = info.position;
        sink.assign(m.begin(), m.end());  // every byte delivered is read (ASan checks the copy's bounds)
    };
    for (int k = 0; k < 4; ++k) {
        (void)(*sub)->poll(handler, 1024);
        if (which & 8) (void)(*sub)->skip_to_latest();
    }
    sub->reset();

    // Put the log back as it was.
    for (std::size_t i = 0; i < n; ++i) {
        const std::size_t k = (start + i) & (kTermBytes - 1);
        b.ring()[k] = b.saved_ring[k];
    }
    std::memcpy(b.log, &b.saved, sizeof b.saved);
    return 0;
}
