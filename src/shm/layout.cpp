#include "tensorpool/shm/layout.hpp"

#include <pwd.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "tensorpool/shm/region_uri.hpp"

namespace tensorpool::shm {
namespace {

bool is_name_byte(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

std::string sanitize_once(std::string_view raw) {
    std::string s;
    s.reserve(raw.size());
    for (char c : raw.substr(0, kMaxNameComponent)) s.push_back(is_name_byte(c) ? c : '_');
    // Replace ".." pairs left to right; "..." becomes "__." which no longer contains "..".
    for (std::size_t i = 0; i + 1 < s.size(); ++i) {
        if (s[i] == '.' && s[i + 1] == '.') {
            s[i] = '_';
            s[i + 1] = '_';
        }
    }
    if (s == ".") s = "_";
    return s;
}

}  // namespace

std::string sanitize_user_name(std::string_view raw, std::string_view fallback) {
    std::string s = sanitize_once(raw);
    if (s.empty()) s = sanitize_once(fallback);
    if (s.empty()) s = "_";
    return s;
}

Result<std::string> effective_user_name() {
    const uid_t uid = ::geteuid();
    const std::string fallback = "uid" + std::to_string(uid);
    long hint = ::sysconf(_SC_GETPW_R_SIZE_MAX);
    std::vector<char> buf(hint > 0 ? static_cast<std::size_t>(hint) : 4096);
    struct passwd pw {};
    struct passwd* found = nullptr;
    int rc = 0;
    while ((rc = ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &found)) == ERANGE && buf.size() < (1u << 20)) {
        buf.resize(buf.size() * 2);
    }
    if (rc != 0 && rc != ENOENT && rc != ESRCH) {
        return Error::format(Errc::io, "getpwuid_r(euid %u) failed: %s", static_cast<unsigned>(uid),
                             std::strerror(rc));
    }
    if (found == nullptr || found->pw_name == nullptr) return sanitize_user_name(fallback);
    return sanitize_user_name(found->pw_name, fallback);
}

Status validate_namespace(std::string_view ns) {
    if (ns.empty() || ns.size() > kMaxNameComponent) {
        return Error::format(Errc::invalid_argument, "namespace '%.*s' is %zu bytes; expected 1..%zu",
                             static_cast<int>(ns.size() > 80 ? 80 : ns.size()), ns.data(), ns.size(),
                             kMaxNameComponent);
    }
    for (std::size_t i = 0; i < ns.size(); ++i) {
        if (!is_name_byte(ns[i])) {
            return Error::format(Errc::invalid_argument,
                                 "namespace '%.*s' has byte 0x%02x at offset %zu; expected only [A-Za-z0-9._-]",
                                 static_cast<int>(ns.size()), ns.data(), static_cast<unsigned char>(ns[i]), i);
        }
    }
    if (ns == "." || ns.find("..") != std::string_view::npos) {
        return Error::format(Errc::invalid_argument,
                             "namespace '%.*s' is '.' or contains '..'; expected a plain directory name",
                             static_cast<int>(ns.size()), ns.data());
    }
    return {};
}

Status CanonicalLayout::validate() const {
    if (auto s = check_uri_path(base_dir, "shm base directory"); !s) return s;
    if (user.empty() || user != sanitize_user_name(user)) {
        return Error::format(Errc::invalid_argument,
                             "user component '%.*s' is not sanitised; expected sanitize_user_name() output",
                             static_cast<int>(user.size() > 80 ? 80 : user.size()), user.data());
    }
    return validate_namespace(ns);
}

std::string CanonicalLayout::user_dir() const {
    std::string d = base_dir;
    while (d.size() > 1 && d.back() == '/') d.pop_back();
    if (d != "/") d += '/';
    d += "tensorpool-";
    d += user;
    return d;
}

std::string CanonicalLayout::epoch_dir() const {
    return user_dir() + "/" + ns + "/" + std::to_string(stream_id) + "/" + std::to_string(epoch);
}

std::string CanonicalLayout::header_ring_path() const {
    return epoch_dir() + "/" + std::string(kHeaderRingFileName);
}

std::string CanonicalLayout::pool_path(std::uint16_t pool_id) const {
    return epoch_dir() + "/" + std::to_string(pool_id) + ".pool";
}

Result<CanonicalLayout> make_canonical_layout(std::string_view base_dir, std::string_view ns,
                                              std::uint32_t stream_id, std::uint64_t epoch) {
    if (auto s = check_uri_path(base_dir, "shm base directory"); !s) return s.error();
    char resolved[PATH_MAX];
    const std::string base(base_dir);
    if (::realpath(base.c_str(), resolved) == nullptr) {
        return Error::format(Errc::not_found, "shm base directory '%s': realpath failed: %s", base.c_str(),
                             std::strerror(errno));
    }
    auto user = effective_user_name();
    if (!user) return user.error();
    CanonicalLayout layout{resolved, std::move(*user), std::string(ns), stream_id, epoch};
    if (auto s = layout.validate(); !s) return s.error();
    return layout;
}

}  // namespace tensorpool::shm
