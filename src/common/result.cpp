#include "tensorpool/common/result.hpp"

namespace tensorpool {

const char* errc_name(Errc c) noexcept {
    switch (c) {
        case Errc::ok: return "ok";
        case Errc::invalid_argument: return "invalid argument";
        case Errc::malformed: return "malformed";
        case Errc::truncated: return "truncated";
        case Errc::unsupported: return "unsupported";
        case Errc::not_found: return "not found";
        case Errc::refused: return "refused";
        case Errc::mismatch: return "mismatch";
        case Errc::io: return "i/o error";
        case Errc::capacity: return "capacity";
        case Errc::state: return "invalid state";
    }
    return "unknown error";
}

}  // namespace tensorpool
