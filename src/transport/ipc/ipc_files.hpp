// Files of the ipc bus: the per-user root, per-stream directories, the registry and the publisher logs.
//
// Everything is owner-only: directories 0700 and files 0600, owned by the effective user. Anything else found
// there — a symlink at any component, another owner, group/other permission bits, a file of the wrong size
// or with the wrong magic — is refused with an error naming the file and the rule, and never mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tensorpool/common/result.hpp"
#include "tensorpool/shm/mapping.hpp"
#include "tensorpool/shm/unique_fd.hpp"

namespace tensorpool::transport::ipc {

// /dev/shm/tensorpool-ipc-<user>
Result<std::string> default_root();

// Bus names are one path component: 1..64 bytes of [A-Za-z0-9._-], not "." or "..".
Status validate_bus_name(std::string_view bus);

struct StreamDir {
    shm::UniqueFd fd;
    std::string path;  // <root>/<bus>/<stream_id>, for messages
};

// Opens <root>/<bus>/<stream_id>/, creating what is missing with mode 0700.
Result<StreamDir> open_stream_dir(const std::string& root, std::string_view bus, int32_t stream_id);

// Opens the stream's registry read-write, creating it race-free (a fully written temporary file is link()ed
// into place, so nobody ever sees a half-initialised registry) when it does not exist yet.
Result<shm::Mapping> open_registry(const StreamDir& dir);

std::string log_file_name(int32_t session_id);

// Creates pub-<session>.log (0600) with a ring of term_bytes and maps it read-write. The file is built under a
// temporary name (pub-<session>.log.tmp.<pid>) and link()ed into place, so a pub-<session>.log always has a complete
// header naming its creator's pid. An Errc::io error if the name is taken (the caller picks another session).
Result<shm::Mapping> create_log(const StreamDir& dir, int32_t session_id, std::size_t term_bytes, uint64_t pid,
                                bool prefault);

// What the sweep needs to know about a log nobody may be using: does it exist, and which process created it.
enum class LogOwner { missing, unreadable, alive, dead };
LogOwner log_owner(const StreamDir& dir, int32_t session_id) noexcept;

// Opens a publisher's log read-only after checking owner, mode, size, magic, version, session and term.
Result<shm::Mapping> open_log(const StreamDir& dir, int32_t session_id, std::size_t expected_term_bytes);

void unlink_log(const StreamDir& dir, int32_t session_id) noexcept;

// The bus files the leftover sweep recognises, parsed from a directory entry name.
struct BusFileName {
    enum Kind { other, log, log_temp, registry_temp } kind = other;
    int32_t session_id = 0;  // log, log_temp
    uint64_t pid = 0;        // log_temp, registry_temp: the creator, from the name
};
BusFileName parse_bus_file_name(std::string_view name) noexcept;

// The names in the stream directory (slow path: allocates); empty if it cannot be listed.
std::vector<std::string> list_entries(const StreamDir& dir) noexcept;

// Removes a file of the stream directory by name.
void unlink_entry(const StreamDir& dir, const std::string& name) noexcept;

// Whether a process id is gone (kill(pid, 0) says ESRCH).
bool process_is_gone(uint64_t pid) noexcept;

}  // namespace tensorpool::transport::ipc
