#include "tensorpool/wire/json.hpp"

#include "tensorpool/wire/gen/json_dispatch.hpp"

namespace tensorpool::wire {

Status decode_to_json(const uint8_t* buf, std::size_t len, std::string& out) {
    std::string text;
    JsonWriter w(text);
    Status s = detail::framed_to_json(buf, len, w);
    if (s) out += text;
    return s;
}

Status decode_raw_to_json(std::string_view message, const uint8_t* buf, std::size_t len, std::string& out) {
    std::string text;
    JsonWriter w(text);
    Status s = detail::raw_to_json(message, buf, len, w);
    if (s) out += text;
    return s;
}

}  // namespace tensorpool::wire
