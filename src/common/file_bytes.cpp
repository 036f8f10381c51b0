#include "tensorpool/common/file_bytes.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tensorpool {

Result<std::vector<uint8_t>> read_file_bytes(const std::string& path, std::size_t max_bytes) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return Error::format(Errc::io, "cannot open %s: %s", path.c_str(), std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return Error::format(Errc::refused, "%s is not a regular file", path.c_str());
    }
    if (static_cast<std::size_t>(st.st_size) > max_bytes) {
        ::close(fd);
        return Error::format(Errc::capacity, "%s: %lld bytes exceed the limit of %zu", path.c_str(),
                             static_cast<long long>(st.st_size), max_bytes);
    }
    std::vector<uint8_t> data(static_cast<std::size_t>(st.st_size));
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t n = ::read(fd, data.data() + done, data.size() - done);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            int e = n < 0 ? errno : 0;
            ::close(fd);
            return Error::format(Errc::io, "reading %s: %s", path.c_str(), e ? std::strerror(e) : "file shrank");
        }
        done += static_cast<std::size_t>(n);
    }
    ::close(fd);
    return data;
}

}  // namespace tensorpool
