#include "tensorpool/wire/json_writer.hpp"

#include <charconv>

namespace tensorpool::wire {

void JsonWriter::value_prefix() {
    if (after_key_) {
        after_key_ = false;
        return;
    }
    if (!first_[depth_]) out_ += ',';
    first_[depth_] = false;
}

void JsonWriter::open(char c) {
    value_prefix();
    out_ += c;
    if (depth_ < kMaxDepth) ++depth_;
    first_[depth_] = true;
}

void JsonWriter::close(char c) {
    out_ += c;
    if (depth_ > 0) --depth_;
}

void JsonWriter::key(std::string_view k) {
    value_prefix();
    write_escaped(k);
    out_ += ':';
    after_key_ = true;
}

void JsonWriter::null() {
    value_prefix();
    out_ += "null";
}

void JsonWriter::boolean(bool v) {
    value_prefix();
    out_ += v ? "true" : "false";
}

void JsonWriter::signed_number(int64_t v) {
    value_prefix();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
}

void JsonWriter::unsigned_number(uint64_t v) {
    value_prefix();
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out_.append(buf, r.ptr);
}

void JsonWriter::latin1_string(std::string_view s) {
    value_prefix();
    write_escaped(s);
}

void JsonWriter::write_escaped(std::string_view s) {
    static constexpr char kHex[] = "0123456789abcdef";
    out_ += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out_ += "\\\""; break;
            case '\\': out_ += "\\\\"; break;
            case '\n': out_ += "\\n"; break;
            case '\r': out_ += "\\r"; break;
            case '\t': out_ += "\\t"; break;
            case '\b': out_ += "\\b"; break;
            case '\f': out_ += "\\f"; break;
            default:
                if (c < 0x20 || c >= 0x7F) {
                    out_ += "\\u00";
                    out_ += kHex[c >> 4];
                    out_ += kHex[c & 0xF];
                } else {
                    out_ += static_cast<char>(c);
                }
        }
    }
    out_ += '"';
}

void JsonWriter::hex(std::span<const uint8_t> bytes) {
    value_prefix();
    static constexpr char kHex[] = "0123456789abcdef";
    out_ += '"';
    for (uint8_t b : bytes) {
        out_ += kHex[b >> 4];
        out_ += kHex[b & 0xF];
    }
    out_ += '"';
}

}  // namespace tensorpool::wire
