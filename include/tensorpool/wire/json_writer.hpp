// A small streaming JSON writer for the canonical message form and the tools' --json output.
//
// Integers keep full 64-bit precision (a double-based JSON library would round u64 values above 2^53), strings
// are escaped byte by byte reading each byte as the character with the same code (Latin-1), and var data that
// is not text prints as lowercase hex.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

namespace tensorpool::wire {

class JsonWriter {
public:
    explicit JsonWriter(std::string& out) : out_(out) {}

    void begin_object() { open('{'); }
    void end_object() { close('}'); }
    void begin_array() { open('['); }
    void end_array() { close(']'); }
    void key(std::string_view k);

    void null();
    void boolean(bool v);
    template <class T>
        requires std::is_integral_v<T>
    void number(T v) {
        if constexpr (std::is_signed_v<T>) {
            signed_number(static_cast<int64_t>(v));
        } else {
            unsigned_number(static_cast<uint64_t>(v));
        }
    }
    void string(std::string_view s) { latin1_string(s); }
    // Each byte is the character with the same code point; controls, quote and backslash are escaped.
    void latin1_string(std::string_view s);
    void hex(std::span<const uint8_t> bytes);

private:
    void value_prefix();
    void write_escaped(std::string_view s);
    void open(char c);
    void close(char c);
    void signed_number(int64_t v);
    void unsigned_number(uint64_t v);

    static constexpr int kMaxDepth = 64;
    std::string& out_;
    bool first_[kMaxDepth + 1] = {true};
    bool after_key_ = false;
    int depth_ = 0;
};

}  // namespace tensorpool::wire
