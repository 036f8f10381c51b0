// Process-wide counters and test seams of the aeron backend. Free of Aeron types, so code that does not see Aeron's
// headers (the tests) can include it.
#pragma once

#include <cstdint>

namespace tensorpool::transport::aeron_backend {

// How many times an offer()/try_claim() met Aeron's ADMIN_ACTION (a term rotation) and retried. Each one is a
// message that a naive caller would have dropped; here it was retried and published.
uint64_t admin_action_retries() noexcept;

// How many offer()/try_claim() calls met ADMIN_ACTION on every retry and so returned back_pressured (the message
// was not sent; the caller retries it). Should stay 0: a rotation is normally over by the first retry.
uint64_t admin_action_exhausted() noexcept;

// How many times poll() met a fragment of an image whose join time the conductor had not recorded yet, and left
// it in the log to read on a later poll (see aeron_subscription.cpp).
uint64_t join_time_deferrals() noexcept;

// Test seam: makes the available-image handler wait this long (on the client conductor thread) before it records a
// join time, widening the window in which poll() can meet an image whose join time is unknown. 0 (the default) in
// production; read once per new image, never on the hot path.
void set_join_record_delay_for_testing(uint32_t microseconds) noexcept;

// The full version of the linked Aeron C library ("aeron version=1.47.3 commit=...").
const char* linked_aeron_version() noexcept;

}  // namespace tensorpool::transport::aeron_backend
