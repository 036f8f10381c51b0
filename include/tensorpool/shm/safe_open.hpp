// Symlink-safe, containment-checked open of an announced region file (WIRE_SPEC §7.2, W-15.21a-11..18,
// W-15.22-5/6, A-34). This is the only way the library opens a region it did not create.
//
// Steps, each of which refuses with an error naming the rule and the path component:
//   1. parse `shm:file?...` (or take a bare absolute path, which means require_hugepages=false);
//   2. realpath() the path; the result must lie strictly inside one canonical allowed base directory;
//   3. stat() the canonical path: only regular files (no FIFO, device, socket, directory);
//   4. open the *announced* path component by component from "/" with openat(O_NOFOLLOW): a symlink at any
//      component is refused (O_NOFOLLOW alone covers only the last one, A-34). The final open adds O_NONBLOCK
//      so a FIFO swapped in after step 3 cannot block us;
//   5. fstat() the fd: regular file, and (st_dev, st_ino) equal to step 3's, so nothing was swapped in between;
//   6. require_hugepages=true: fstatfs() f_type must be hugetlbfs, else refused (no silent downgrade).
// Nothing is mapped here; a failure leaves no fd open.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/allowed_dirs.hpp"
#include "tensorpool/shm/region_uri.hpp"
#include "tensorpool/shm/unique_fd.hpp"

namespace tensorpool::shm {

enum class Access { read_only, read_write };

struct OpenedRegion {
    UniqueFd fd;                  // O_CLOEXEC; O_RDONLY for read_only
    RegionUri uri;                // what was asked for (path as announced)
    std::string canonical_path;   // realpath() of uri.path
    std::string allowed_base;     // the canonical base directory that contains it
    std::uint64_t size_bytes = 0; // st_size at open time
    dev_t dev = 0;
    ino_t ino = 0;
    bool on_hugetlbfs = false;
};

// Accepts a `shm:file?...` URI or a bare absolute path. Anything else (another scheme, a relative path) is
// rejected before the filesystem is touched.
Result<RegionUri> parse_uri_or_path(std::string_view uri_or_path);

Result<OpenedRegion> open_region(std::string_view uri_or_path, const AllowedDirs& allowed, Access access);

// Opens directory `path` (absolute) component by component with O_NOFOLLOW, refusing a symlink at any
// component. Used by open_region() and by the region writer, which must not follow a planted link either.
// Returns an O_PATH (or O_RDONLY) directory fd.
Result<UniqueFd> open_directory_nofollow(std::string_view path);

// Human name of a stat() file type ("FIFO", "character device", ...) for error messages.
const char* file_type_name(unsigned mode) noexcept;

}  // namespace tensorpool::shm
