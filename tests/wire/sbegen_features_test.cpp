// Generator features the protocol schemas do not use yet, exercised through tests/wire/schemas/
// sbegen-test-schema.xml: sinceVersion, explicit offsets, padded blocks, constants, typed nulls, enums over a
// named type, uint8 var-data lengths, nested groups.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "tensorpool/wire/gen/sbegentest.hpp"
#include "tensorpool/wire/gen/sbegentest_json.hpp"

namespace tensorpool::wire::sbegentest {
namespace {

std::vector<uint8_t> encode_probe() {
    std::vector<uint8_t> buf(512);
    Probe::Encoder e;
    EXPECT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.a(1).b(0x1122334455667788ull).colour(Colour::GREEN).maybe(-1).late(99);
    const int16_t t[] = {-1, 2, -3};
    e.triple(t);
    auto outer = e.outerCount(2);
    {
        auto o = outer.next();
        o.x(10);
        auto in = o.innerCount(2);
        in.next().y(-5).label("first");
        in.next().y(6).label("second");
        o.note("n0");
    }
    outer.next().x(11);  // inner and note left out: written empty
    e.lateGroupCount(1).next().z(7);
    e.payload(std::string_view("\x01\x02", 2));
    e.lateData("v3");
    auto n = e.finish();
    EXPECT_TRUE(n.ok()) << n.error().message();
    buf.resize(*n);
    return buf;
}

TEST(SbegenFeatures, LayoutHonoursOffsetsConstantsAndBlockLengthAttribute) {
    EXPECT_EQ(Probe::kBlockLength, 32);
    EXPECT_EQ(Probe::Outer::kBlockLength, 6);
    EXPECT_EQ(Probe::Decoder::answer(), 42);
    auto buf = encode_probe();
    EXPECT_EQ(load_le<uint64_t>(buf.data() + 8 + 8), 0x1122334455667788ull);  // offset="8"
    EXPECT_EQ(buf[8 + 16], 2);                                               // colour right after b
    EXPECT_EQ(load_le<int32_t>(buf.data() + 8 + 17), -1);
}

TEST(SbegenFeatures, RoundTripsNestedGroupsAndOptionalValues) {
    auto buf = encode_probe();
    auto d = Probe::Decoder::wrap(buf.data(), buf.size());
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_TRUE(d->maybeIsNull());  // the type's nullValue (-1), not the primitive's
    EXPECT_FALSE(d->colourIsNull());
    EXPECT_EQ(d->triple(2), -3);
    EXPECT_EQ(d->late(), 99);
    std::vector<std::string> labels;
    size_t outers = 0;
    for (const auto& o : d->outer()) {
        ++outers;
        for (const auto& i : o.inner()) labels.emplace_back(i.label());
    }
    EXPECT_EQ(outers, 2u);
    EXPECT_EQ(labels, (std::vector<std::string>{"first", "second"}));
    EXPECT_EQ(d->lateGroup().size(), 1u);
    EXPECT_EQ(d->payloadBytes().size(), 2u);
    EXPECT_EQ(d->lateData(), "v3");

    std::string json;
    JsonWriter w(json);
    write_json(w, *d);
    EXPECT_EQ(json,
              R"({"a":1,"b":1234605616436508552,"colour":"GREEN","maybe":null,"triple":[-1,2,-3],"late":99,)"
              R"("outer":[{"x":10,"inner":[{"y":-5,"label":"first"},{"y":6,"label":"second"}],"note":"n0"},)"
              R"({"x":11,"inner":[],"note":""}],"lateGroup":[{"z":7}],"payload":"0102","lateData":"v3"})");
}

TEST(SbegenFeatures, MembersNewerThanTheActingVersionReadAsAbsent) {
    // A version-1 sender knows neither `late`, nor lateGroup, nor lateData: they are not on the wire.
    std::vector<uint8_t> buf(128);
    Probe::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.outerCount(0);
    auto full = e.finish();
    ASSERT_TRUE(full.ok());
    // Rewrite as version 1: drop lateGroup's header (4 bytes) and lateData's length (1 byte) at the end.
    store_le<uint16_t>(buf.data() + 6, 1);
    const size_t v1_len = *full - 4 - 1;
    // payload's u32 length sits after outer's 4-byte header; move it to follow outer directly.
    std::memmove(buf.data() + 8 + 32 + 4, buf.data() + 8 + 32 + 4 + 4, 4);
    auto d = Probe::Decoder::wrap(buf.data(), v1_len);
    ASSERT_TRUE(d.ok()) << d.error().message();
    EXPECT_EQ(d->acting_version(), 1);
    EXPECT_TRUE(d->lateIsNull());
    EXPECT_TRUE(d->lateGroup().empty());
    EXPECT_TRUE(d->lateData().empty());
    EXPECT_EQ(d->encoded_length(), v1_len);
}

TEST(SbegenFeatures, Uint8VarLengthEnforcesItsMaxValue) {
    std::vector<uint8_t> buf(512);
    Probe::Encoder e;
    ASSERT_TRUE(e.wrap_and_apply_header(buf.data(), buf.size()));
    e.outerCount(1).next().note(std::string(17, 'x'));  // shortString maxValue 16
    EXPECT_FALSE(e.finish().ok());
}

}  // namespace
}  // namespace tensorpool::wire::sbegentest
