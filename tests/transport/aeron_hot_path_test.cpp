// DESIGN "Hot-path rules" for the aeron backend: once warmed up, offer(), try_claim()/commit() and poll() (with
// fragment reassembly of 200 KiB messages) allocate nothing.
//
// Measured by interposing malloc, calloc, realloc and the aligned allocators for this whole test binary (so it is
// an executable of its own, and skips under AddressSanitizer, which owns malloc there). Only calls made by the test
// thread while it is "armed" count; Aeron's conductor and driver threads allocate when they need to, off the hot
// path.
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "tensorpool/transport/transport_hub.hpp"

#include "support/sanitizers.hpp"

namespace {
thread_local bool t_armed = false;
thread_local uint64_t t_allocations = 0;

struct Armed {
    Armed() {
        t_allocations = 0;
        t_armed = true;
    }
    ~Armed() { t_armed = false; }
};
}  // namespace

#ifndef TP_UNDER_ASAN
extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);

void* malloc(size_t n) {
    if (t_armed) ++t_allocations;
    return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
    if (t_armed) ++t_allocations;
    return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
    if (t_armed) ++t_allocations;
    return __libc_realloc(p, n);
}
void* memalign(size_t alignment, size_t n) {
    if (t_armed) ++t_allocations;
    return __libc_memalign(alignment, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
    if (t_armed) ++t_allocations;
    return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
    if (t_armed) ++t_allocations;
    void* p = __libc_memalign(alignment, n);
    if (p == nullptr) return ENOMEM;
    *out = p;
    return 0;
}
}
#endif

namespace tensorpool::transport {
namespace {

using namespace std::chrono_literals;

[[maybe_unused]] int free_udp_port() {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0) {
        port = ntohs(a.sin_port);
    }
    ::close(fd);
    return port;
}

void* volatile g_sink = nullptr;  // keeps the control test's allocations from being optimised away

[[maybe_unused]] void run(const std::string& channel) {
    SCOPED_TRACE(channel);
    TransportOptions o;
    o.aeron_embedded_driver = true;
    auto t = make_aeron_transport(o);
    ASSERT_TRUE(t.ok()) << t.error().message();
    auto sub = (*t)->add_subscription(channel, 9001);
    auto pub = (*t)->add_publication(channel, 9001);
    ASSERT_TRUE(sub.ok() && pub.ok());
    Subscription& s = **sub;
    Publication& p = **pub;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!(p.is_connected() && s.image_count() == 1) && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(1ms);
    }
    ASSERT_TRUE(p.is_connected());

    std::vector<uint8_t> small(64, 0x5a), large(200 * 1024, 0xa5);
    uint64_t received = 0, received_bytes = 0;
    auto on_message = [&](std::span<const uint8_t> m, const MessageInfo&) {
        ++received;
        received_bytes += m.size();
    };
    // One round: a few small messages, one 200 KiB message (fragmented over UDP), one claimed message.
    auto round = [&](uint64_t& sent) {
        for (int i = 0; i < 8; ++i) {
            while (!p.offer(small).ok()) s.poll(on_message, 64);
            ++sent;
        }
        while (!p.offer(large).ok()) s.poll(on_message, 64);
        ++sent;
        BufferClaim claim;
        while (!p.try_claim(256, claim).ok()) s.poll(on_message, 64);
        std::memset(claim.data(), 1, claim.length());
        claim.commit();
        ++sent;
        s.poll(on_message, 64);
    };
    auto drain = [&](uint64_t sent) {
        const auto until = std::chrono::steady_clock::now() + 10s;
        while (received < sent && std::chrono::steady_clock::now() < until) s.poll(on_message, 64);
    };

    uint64_t sent = 0;
    for (int i = 0; i < 50; ++i) round(sent);  // warm-up: the assembler's buffer reaches its size
    drain(sent);
    ASSERT_EQ(received, sent);

    uint64_t allocations = 0;
    {
        Armed armed;
        for (int i = 0; i < 200; ++i) round(sent);
        drain(sent);
        allocations = t_allocations;
    }
    EXPECT_EQ(received, sent);
    EXPECT_EQ(allocations, 0U) << "allocations on the publish/receive path after warm-up";
}

TEST(AeronHotPath, OfferClaimAndPollAllocateNothingAfterWarmUp) {
#ifndef TENSORPOOL_HAVE_AERON
    GTEST_SKIP() << "Aeron not built (not found, or TENSORPOOL_WITH_AERON=OFF): configure with "
                    "-DCMAKE_PREFIX_PATH=<Aeron install prefix> to test the aeron backend";
#elif defined(TP_UNDER_ASAN)
    GTEST_SKIP() << "AddressSanitizer owns malloc in this build: allocations are not counted";
#else
    run("aeron:ipc?term-length=4m");
    run("aeron:udp?endpoint=127.0.0.1:" + std::to_string(free_udp_port()));
#endif
}

TEST(AeronHotPath, TheCounterSeesAllocations) {
#if defined(TP_UNDER_ASAN)
    GTEST_SKIP() << "AddressSanitizer owns malloc in this build: allocations are not counted";
#else
    uint64_t n = 0;
    {
        Armed armed;
        auto* v = new std::vector<int>(100);
        g_sink = v;
        void* c = std::malloc(10);
        g_sink = c;
        n = t_allocations;
        std::free(c);
        delete v;
    }
    EXPECT_GE(n, 3U) << "the interposed allocators do not count: the hot-path test would prove nothing";
#endif
}

}  // namespace
}  // namespace tensorpool::transport
