// Process-wide counters of the aeron backend, for tests and diagnostics. Free of Aeron types, so code that does not
// see Aeron's headers can include it.
#pragma once

#include <cstdint>

namespace tensorpool::transport::aeron_backend {

// How many times an offer()/try_claim() met Aeron's ADMIN_ACTION (a term rotation) and retried. Each one is a
// message that a naive caller would have dropped; here it was retried and published.
uint64_t admin_action_retries() noexcept;

// How many times poll() met a fragment of an image whose join time the conductor had not recorded yet, and left
// it in the log to read on a later poll (see aeron_subscription.cpp).
uint64_t join_time_deferrals() noexcept;

// The full version of the linked Aeron C library ("aeron version=1.47.3 commit=...").
const char* linked_aeron_version() noexcept;

}  // namespace tensorpool::transport::aeron_backend
