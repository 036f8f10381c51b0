#include "aeron_publication.hpp"

#include <atomic>
#include <utility>

#include "aeron_stats.hpp"

namespace tensorpool::transport::aeron_backend {

namespace {

// BufferClaim::state layout for an Aeron claim: the three fields of aeron_buffer_claim_t.
enum ClaimWord : std::size_t { kFrameHeader = 0, kData = 1, kLength = 2 };
static_assert(BufferClaim::kStateWords >= 3);
static_assert(sizeof(uint8_t*) <= sizeof(uint64_t));

aeron_buffer_claim_t unpack(const BufferClaim& claim) noexcept {
    aeron_buffer_claim_t c;
    c.frame_header = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(claim.state[kFrameHeader]));
    c.data = reinterpret_cast<uint8_t*>(static_cast<uintptr_t>(claim.state[kData]));
    c.length = static_cast<std::size_t>(claim.state[kLength]);
    return c;
}

void claim_commit(BufferClaim& claim) noexcept {
    aeron_buffer_claim_t c = unpack(claim);
    aeron_buffer_claim_commit(&c);
}

void claim_abort(BufferClaim& claim) noexcept {
    aeron_buffer_claim_t c = unpack(claim);
    aeron_buffer_claim_abort(&c);  // the claimed space becomes padding that subscribers skip
}

constexpr BufferClaim::Ops kClaimOps{&claim_commit, &claim_abort};

// Touched only when Aeron says ADMIN_ACTION (about once per term rotation), never on the common path.
std::atomic<uint64_t> g_admin_action_retries{0};
std::atomic<uint64_t> g_admin_action_exhausted{0};

}  // namespace

uint64_t admin_action_retries() noexcept { return g_admin_action_retries.load(std::memory_order_relaxed); }
uint64_t admin_action_exhausted() noexcept { return g_admin_action_exhausted.load(std::memory_order_relaxed); }

OfferResult map_offer_result(int64_t r) noexcept {
    if (r > 0) return OfferResult(r);
    switch (r) {
        case AERON_PUBLICATION_NOT_CONNECTED: return OfferStatus::not_connected;
        case AERON_PUBLICATION_BACK_PRESSURED: return OfferStatus::back_pressured;
        case AERON_PUBLICATION_ADMIN_ACTION: return OfferStatus::back_pressured;  // retries exhausted: not sent
        case AERON_PUBLICATION_CLOSED: return OfferStatus::closed;
        case AERON_PUBLICATION_MAX_POSITION_EXCEEDED: return OfferStatus::max_position_exceeded;
        default: return OfferStatus::failed;  // AERON_PUBLICATION_ERROR and anything unknown
    }
}

AeronPublication::AeronPublication(std::shared_ptr<AeronRuntime> runtime,
                                   std::shared_ptr<aeron::Publication> publication, std::string channel,
                                   int32_t stream_id)
    : runtime_(std::move(runtime)),
      publication_(std::move(publication)),
      raw_(publication_->publication()),
      channel_(std::move(channel)),
      stream_id_(stream_id) {
    aeron_publication_constants_t c{};
    if (aeron_publication_constants(raw_, &c) == 0) {
        session_id_ = c.session_id;
        max_message_length_ = c.max_message_length;
        max_payload_length_ = c.max_payload_length;
    }
}

AeronPublication::~AeronPublication() {
    publication_.reset();  // before runtime_ (the member order says so too; this makes it explicit)
}

OfferResult AeronPublication::offer(std::span<const uint8_t> message) noexcept {
    if (message.size() > max_message_length_) return OfferStatus::message_too_large;
    int64_t r = 0;
    for (int attempt = 0; attempt <= kAdminActionRetries; ++attempt) {
        r = aeron_publication_offer(raw_, message.data(), message.size(), nullptr, nullptr);
        if (r != AERON_PUBLICATION_ADMIN_ACTION) break;
        g_admin_action_retries.fetch_add(1, std::memory_order_relaxed);
    }
    if (r == AERON_PUBLICATION_ADMIN_ACTION) g_admin_action_exhausted.fetch_add(1, std::memory_order_relaxed);
    return map_offer_result(r);
}

OfferResult AeronPublication::try_claim(std::size_t length, BufferClaim& claim) noexcept {
    claim.abort();  // a claim still held from an earlier call is dropped, never left dangling
    if (length > max_payload_length_) return OfferStatus::message_too_large;
    aeron_buffer_claim_t c{};
    int64_t r = 0;
    for (int attempt = 0; attempt <= kAdminActionRetries; ++attempt) {
        r = aeron_publication_try_claim(raw_, length, &c);
        if (r != AERON_PUBLICATION_ADMIN_ACTION) break;
        g_admin_action_retries.fetch_add(1, std::memory_order_relaxed);
    }
    if (r == AERON_PUBLICATION_ADMIN_ACTION) g_admin_action_exhausted.fetch_add(1, std::memory_order_relaxed);
    if (r > 0) {
        claim.state[kFrameHeader] = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(c.frame_header));
        claim.state[kData] = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(c.data));
        claim.state[kLength] = static_cast<uint64_t>(c.length);
        claim.arm(c.data, c.length, &kClaimOps);
    }
    return map_offer_result(r);
}

bool AeronPublication::is_connected() const noexcept { return aeron_publication_is_connected(raw_); }

}  // namespace tensorpool::transport::aeron_backend
