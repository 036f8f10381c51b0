#include "tensorpool/shm/seqlock.hpp"

namespace tensorpool::shm {

const char* read_begin_name(ReadBegin r) noexcept {
    switch (r) {
        case ReadBegin::ok: return "ok";
        case ReadBegin::not_committed: return "not committed";
        case ReadBegin::stale: return "stale (older seq)";
        case ReadBegin::overwritten: return "overwritten (newer seq)";
    }
    return "unknown";
}

}  // namespace tensorpool::shm
