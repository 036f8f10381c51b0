// Fixture helpers for the shm tests: a fresh mkdtemp() directory per test, and builders for the hostile files
// (symlinks, FIFOs, sockets, devices) that safe_open must refuse.
#pragma once

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace tensorpool::shm::test {

// A fresh directory under `parent`, canonicalised (so tests compare against realpath() results), removed with
// everything in it when the test ends.
class TempDir {
public:
    explicit TempDir(const std::string& parent = "/tmp") {
        std::string tmpl = parent + "/tp-shm-test-XXXXXX";
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back('\0');
        if (::mkdtemp(buf.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
        char resolved[PATH_MAX];
        if (::realpath(buf.data(), resolved) == nullptr) throw std::runtime_error("realpath failed");
        path_ = resolved;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }

    const std::string& path() const { return path_; }
    std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

private:
    std::string path_;
};

inline void write_file(const std::string& path, const std::vector<unsigned char>& bytes, mode_t mode = 0600) {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) throw std::runtime_error("open for write failed: " + path);
    std::size_t off = 0;
    while (off < bytes.size()) {
        ssize_t n = ::write(fd, bytes.data() + off, bytes.size() - off);
        if (n <= 0) {
            ::close(fd);
            throw std::runtime_error("write failed: " + path);
        }
        off += static_cast<std::size_t>(n);
    }
    ::close(fd);
}

inline std::vector<unsigned char> read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::vector<unsigned char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void make_dir(const std::string& path, mode_t mode = 0700) {
    if (::mkdir(path.c_str(), mode) != 0) throw std::runtime_error("mkdir failed: " + path);
}

inline void make_symlink(const std::string& target, const std::string& link) {
    if (::symlink(target.c_str(), link.c_str()) != 0) throw std::runtime_error("symlink failed: " + link);
}

inline void make_fifo(const std::string& path) {
    if (::mkfifo(path.c_str(), 0600) != 0) throw std::runtime_error("mkfifo failed: " + path);
}

// Binds a Unix socket at `path` (the socket file stays after close, which is all the test needs).
inline void make_socket(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) throw std::runtime_error("socket failed");
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.size() >= sizeof addr.sun_path) throw std::runtime_error("socket path too long: " + path);
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd);
        throw std::runtime_error("bind failed: " + path);
    }
    ::close(fd);
}

inline mode_t mode_of(const std::string& path) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) throw std::runtime_error("lstat failed: " + path);
    return st.st_mode & 07777;
}

// Number of /proc/self/maps lines that map `path`: proves "nothing was mapped" after a refusal.
inline int mappings_of(const std::string& path) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    int n = 0;
    while (std::getline(maps, line)) {
        if (line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0) ++n;
    }
    return n;
}

// The permission column ("r--s", "rw-s") of the first /proc/self/maps line for `path`, or "" if unmapped.
inline std::string mapping_perms(const std::string& path) {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    while (std::getline(maps, line)) {
        if (line.size() >= path.size() && line.compare(line.size() - path.size(), path.size(), path) == 0) {
            auto sp = line.find(' ');
            return line.substr(sp + 1, 4);
        }
    }
    return "";
}

}  // namespace tensorpool::shm::test
