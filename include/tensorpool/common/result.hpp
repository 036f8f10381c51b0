// Result<T>: a value or an Error, returned by every library call that can fail.
//
// Error carries a code and a human-readable message that says what was wrong, where, and what was
// expected. The message lives in a fixed inline buffer so that building an error never allocates:
// rejecting hostile input on a hot path (a malformed message, a torn slot) must not touch the heap.
#pragma once

#include <algorithm>
#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace tensorpool {

enum class Errc : int {
    ok = 0,
    invalid_argument,  // a caller-supplied value is out of range or malformed
    malformed,         // bytes (a message, a file) do not follow the format
    truncated,         // bytes end before the format says they should
    unsupported,       // valid but not something this build/version handles
    not_found,         // a named thing does not exist
    refused,           // a safety rule (containment, symlink, file type, owner) refused it
    mismatch,          // valid on its own but disagrees with what it was checked against
    io,                // a system call failed (errno in the message)
    capacity,          // a buffer is too small for what was asked
    state,             // the call is not valid in the object's current state
};

const char* errc_name(Errc c) noexcept;

class Error {
public:
    static constexpr std::size_t kMaxMessage = 240;

    Error() noexcept : code_(Errc::ok) { msg_[0] = '\0'; }
    Error(Errc code, std::string_view msg) noexcept : code_(code) { set(msg); }
    // Copies only the used part of the message buffer.
    Error(const Error& o) noexcept : code_(o.code_) { set(o.msg_); }
    Error& operator=(const Error& o) noexcept {
        code_ = o.code_;
        set(o.msg_);
        return *this;
    }

    // printf-style constructor; the message is truncated to kMaxMessage - 1 characters.
    [[gnu::format(printf, 2, 3)]] static Error format(Errc code, const char* fmt, ...) noexcept {
        Error e;
        e.code_ = code;
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(e.msg_, sizeof e.msg_, fmt, ap);
        va_end(ap);
        return e;
    }

    Errc code() const noexcept { return code_; }
    const char* message() const noexcept { return msg_; }
    std::string to_string() const { return std::string(errc_name(code_)) + ": " + msg_; }

    // Prefix context ("while opening X: ") to an existing message.
    [[gnu::format(printf, 2, 3)]] Error& prefix(const char* fmt, ...) noexcept {
        char head[kMaxMessage];
        va_list ap;
        va_start(ap, fmt);
        std::vsnprintf(head, sizeof head, fmt, ap);
        va_end(ap);
        const std::size_t h = std::strlen(head);
        const std::size_t room = kMaxMessage - 1 - h;
        const std::size_t keep = std::min(std::strlen(msg_), room);
        std::memmove(msg_ + h, msg_, keep);
        std::memcpy(msg_, head, h);
        msg_[h + keep] = '\0';
        return *this;
    }

private:
    void set(std::string_view msg) noexcept {
        std::size_t n = msg.size() < kMaxMessage - 1 ? msg.size() : kMaxMessage - 1;
        std::memmove(msg_, msg.data(), n);
        msg_[n] = '\0';
    }

    Errc code_;
    char msg_[kMaxMessage];
};

template <class T>
class [[nodiscard]] Result {
public:
    Result(const T& v) : ok_(true) { new (&value_) T(v); }
    Result(T&& v) : ok_(true) { new (&value_) T(std::move(v)); }
    Result(const Error& e) : ok_(false) { new (&error_) Error(e); }

    Result(const Result& o) : ok_(o.ok_) {
        if (ok_) new (&value_) T(o.value_); else new (&error_) Error(o.error_);
    }
    Result(Result&& o) noexcept(std::is_nothrow_move_constructible_v<T>) : ok_(o.ok_) {
        if (ok_) new (&value_) T(std::move(o.value_)); else new (&error_) Error(o.error_);
    }
    Result& operator=(Result o) {
        this->~Result();
        new (this) Result(std::move(o));
        return *this;
    }
    ~Result() {
        if (ok_) value_.~T();
    }

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }

    T& value() & { return value_; }
    const T& value() const& { return value_; }
    T&& value() && { return std::move(value_); }
    T* operator->() { return &value_; }
    const T* operator->() const { return &value_; }
    T& operator*() & { return value_; }
    const T& operator*() const& { return value_; }

    const Error& error() const noexcept { return error_; }

private:
    bool ok_;
    union {
        T value_;
        Error error_;
    };
};

// A success builds no Error: the 256-byte message buffer is only touched on failure. (With a defaulted
// constructor, `return {};` value-initialised the whole object, a 264-byte memset on every successful check.)
template <>
class [[nodiscard]] Result<void> {
public:
    Result() noexcept : ok_(true) {}
    Result(const Error& e) noexcept : ok_(false) { new (&error_) Error(e); }
    Result(const Result& o) noexcept : ok_(o.ok_) {
        if (!ok_) new (&error_) Error(o.error_);
    }
    Result& operator=(const Result& o) noexcept {
        if (this != &o) {
            ok_ = o.ok_;
            if (!ok_) new (&error_) Error(o.error_);
        }
        return *this;
    }
    ~Result() = default;

    bool ok() const noexcept { return ok_; }
    explicit operator bool() const noexcept { return ok_; }
    // On success, an Error with code ok and an empty message.
    const Error& error() const noexcept { return ok_ ? no_error() : error_; }

private:
    static const Error& no_error() noexcept {
        static const Error e;
        return e;
    }

    bool ok_;
    union {
        Error error_;
    };
};

using Status = Result<void>;

}  // namespace tensorpool
