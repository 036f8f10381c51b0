// Which sanitizer this test binary was built with, for tests that scale their work down under ASan (it is several
// times slower) or cannot count allocations (ASan owns malloc). GCC says __SANITIZE_ADDRESS__, clang __has_feature.
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define TP_UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TP_UNDER_ASAN 1
#endif
#endif
