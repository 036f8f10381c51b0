#include "tensorpool/wire/json_writer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace tensorpool::wire {
namespace {

TEST(JsonWriter, NestsObjectsArraysAndCommas) {
    std::string s;
    JsonWriter w(s);
    w.begin_object();
    w.key("a");
    w.number(uint64_t{1});
    w.key("b");
    w.begin_array();
    w.number(int8_t{-1});
    w.null();
    w.begin_object();
    w.end_object();
    w.end_array();
    w.key("c");
    w.string("x");
    w.end_object();
    EXPECT_EQ(s, R"({"a":1,"b":[-1,null,{}],"c":"x"})");
}

TEST(JsonWriter, KeepsFull64BitPrecision) {
    std::string s;
    JsonWriter w(s);
    w.begin_array();
    w.number(std::numeric_limits<uint64_t>::max());
    w.number(std::numeric_limits<int64_t>::min());
    w.end_array();
    EXPECT_EQ(s, "[18446744073709551615,-9223372036854775808]");
}

TEST(JsonWriter, EscapesControlQuoteBackslashAndHighBytes) {
    std::string s;
    JsonWriter w(s);
    w.string(std::string_view("a\"b\\c\n\x01\x7f\xe9", 9));
    EXPECT_EQ(s, R"("a\"b\\c\n\u0001\u007f\u00e9")");
}

TEST(JsonWriter, HexIsLowercase) {
    std::string s;
    JsonWriter w(s);
    const uint8_t bytes[] = {0x00, 0xAB, 0xff};
    w.hex(bytes);
    EXPECT_EQ(s, "\"00abff\"");
}

}  // namespace
}  // namespace tensorpool::wire
