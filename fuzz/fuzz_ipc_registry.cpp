// libFuzzer target: the ipc bus registry. Every publisher and subscriber of a stream maps the stream's registry
// read-write and trusts nothing in it beyond the header it validated: slot words, pids, session ids, term sizes,
// start and close times, the generation and subscriber count may all have been written by a buggy or hostile
// process. Whatever they hold, joining, publishing, polling and sweeping must neither crash, read out of bounds,
// hang, nor touch a file outside the stream's directory.
//
// Set up once: a bus under a private directory with its registry created the normal way. Each input is written
// over the registry from byte 24 on (everything after the validated magic, version and slot counts), at an offset
// of 64 * input[0] bytes, with every pid mapped to this process or a dead one; then a fresh hub subscribes, publishes,
// polls and sweeps. Afterwards the registry is put
// back as it was and any file the run left in the stream directory is removed, so every input starts alike.
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "../src/transport/ipc/ipc_format.hpp"
#include "ipc_fuzz_setup.hpp"
#include "tensorpool/transport/transport_hub.hpp"

using namespace tensorpool;
using namespace tensorpool::transport;

namespace {

constexpr int32_t kStream = 7;
constexpr std::size_t kFirstFuzzedByte = 24;  // after magic, layout_version, publisher_slots, subscriber_slots

struct Bus {
    std::string root;
    std::string stream_dir;
    TransportOptions options;
    uint8_t* registry = nullptr;
    std::vector<uint8_t> saved;
    uint64_t self = static_cast<uint64_t>(::getpid());
    uint64_t gone = 0;  // a child of ours that has exited and been reaped

    Bus() {
        root = fuzz::private_bus_dir("reg");
        const pid_t child = ::fork();
        if (child == 0) ::_exit(0);
        ::waitpid(child, nullptr, 0);
        gone = static_cast<uint64_t>(child);
        options.ipc_root = root;
        options.ipc_term_bytes = std::size_t{1} << 20;
        options.ipc_linger_ms = 0;
        {
            TransportHub hub(options);
            auto s = hub.add_subscription("ipc:fz", kStream);
            if (!s) fuzz::setup_failed(s.error().message());
        }
        stream_dir = root + "/fz/" + std::to_string(kStream);
        registry = fuzz::map_read_write(stream_dir + "/registry", ipc::kRegistryBytes);
        saved.assign(registry, registry + ipc::kRegistryBytes);
    }
    // Pids decide which slots the sweep frees (kill(pid, 0)). Whatever the input wrote there is mapped to this
    // process or to one known to be gone (by its lowest bit), so a run does not depend on what else runs here.
    void pin_pids() {
        auto map = [&](uint64_t v) { return (v & 1) != 0 ? self : gone; };
        for (uint32_t i = 0; i < ipc::kPublisherSlots; ++i) {
            auto* slot = reinterpret_cast<ipc::PublisherSlot*>(registry + sizeof(ipc::RegistryHeader) + i * sizeof(ipc::PublisherSlot));
            slot->pid = map(slot->pid);
        }
        for (uint32_t i = 0; i < ipc::kSubscriberSlots; ++i) {
            auto* slot = reinterpret_cast<ipc::SubscriberSlot*>(registry + sizeof(ipc::RegistryHeader) +
                                                                ipc::kPublisherSlots * sizeof(ipc::PublisherSlot) +
                                                                i * sizeof(ipc::SubscriberSlot));
            if (slot->owner != 0) slot->owner = static_cast<uint32_t>(map(slot->owner));
            slot->pid = map(slot->pid);
        }
    }
    // Whatever a run created next to the registry (logs, temporary files) goes.
    void clean_stream_dir() {
        std::error_code ec;
        for (const auto& e : std::filesystem::directory_iterator(stream_dir, ec)) {
            if (e.path().filename() != "registry") std::filesystem::remove(e.path(), ec);
        }
    }
};

Bus& bus() {
    static Bus b;
    return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
    Bus& b = bus();
    if (size == 0) return 0;
    const std::size_t offset = kFirstFuzzedByte + (std::size_t{data[0]} * 64) % (ipc::kRegistryBytes - kFirstFuzzedByte);
    const std::size_t n = std::min(size - 1, ipc::kRegistryBytes - offset);
    std::memcpy(b.registry + offset, data + 1, n);
    b.pin_pids();
    {
        TransportHub hub(b.options);
        auto sub = hub.add_subscription("ipc:fz", kStream);
        auto pub = hub.add_publication("ipc:fz", kStream);
        std::vector<uint8_t> sink;
        auto handler = [&](std::span<const uint8_t> m, const MessageInfo&) { sink.assign(m.begin(), m.end()); };
        if (pub) {
            const std::vector<uint8_t> msg(40, 0x33);
            (void)(*pub)->offer(msg);
        }
        for (int k = 0; k < 3; ++k) {
            if (sub) (void)(*sub)->poll(handler, 64);
            (void)hub.do_work();
        }
    }
    std::memcpy(b.registry, b.saved.data(), b.saved.size());
    b.clean_stream_dir();
    // Nothing may have been created or removed outside the stream directory.
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(b.root, ec)) {
        if (e.path().filename() != "fz") __builtin_trap();
    }
    if (!std::filesystem::exists(b.stream_dir + "/registry")) __builtin_trap();
    return 0;
}
