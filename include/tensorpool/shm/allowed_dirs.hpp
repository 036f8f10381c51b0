// The directories a consumer may map regions from (W-15.21a-2, W-15.21a-13, W-15.21a-14).
//
// Each base is canonicalised with realpath() exactly once, when the object is built, and only the canonical
// forms are kept. Containment compares whole path components: `/dev/shm2/x` is not inside `/dev/shm`, and a
// base never contains itself.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/common/result.hpp"

namespace tensorpool::shm {

class AllowedDirs {
public:
    // Fails if the list is empty, or if any entry is not absolute, does not resolve, or is not a directory:
    // a misconfigured allowlist is an error at load time, not a silent "allow nothing" later.
    static Result<AllowedDirs> create(std::span<const std::string> dirs);
    static Result<AllowedDirs> create(std::initializer_list<std::string_view> dirs);

    const std::vector<std::string>& canonical() const noexcept { return canonical_; }

    // The canonical base that strictly contains `canonical_path`, or nullptr. `canonical_path` must already be
    // a realpath() result; no normalisation happens here.
    const std::string* containing(std::string_view canonical_path) const noexcept;

private:
    std::vector<std::string> canonical_;
};

}  // namespace tensorpool::shm
