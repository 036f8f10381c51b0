// Reads a whole (small) regular file into memory, with an error that names the file and the reason.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tensorpool/common/result.hpp"

namespace tensorpool {

Result<std::vector<uint8_t>> read_file_bytes(const std::string& path, std::size_t max_bytes = std::size_t{1} << 30);

}  // namespace tensorpool
