#include "tensorpool/transport/transport.hpp"

namespace tensorpool::transport {

const char* offer_status_name(OfferStatus s) noexcept {
    switch (s) {
        case OfferStatus::not_connected: return "not connected";
        case OfferStatus::back_pressured: return "back pressured";
        case OfferStatus::closed: return "closed";
        case OfferStatus::max_position_exceeded: return "max position exceeded";
        case OfferStatus::message_too_large: return "message too large";
        case OfferStatus::failed: return "failed";
    }
    return "unknown offer status";
}

}  // namespace tensorpool::transport
