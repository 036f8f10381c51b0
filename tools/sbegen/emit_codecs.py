"""Emits <namespace>.hpp: enums, and per message a Decoder/Encoder flyweight pair (see docs/wire-codecs.md)."""

from cpp_names import check_identifier, cpp_type, literal, type_name
from schema_model import prim_size


def emit_enum(e):
    t = cpp_type(e.prim)
    out = ["enum class %s : %s {" % (e.name, t)]
    for name, value in e.values:
        out.append("    %s = %s," % (check_identifier(name, e.name), literal(value, e.prim)))
    if e.null not in [v for _, v in e.values]:
        out.append("    NULL_VALUE = %s," % literal(e.null, e.prim))
    out.append("};")
    cases = "\n".join("        case %s::%s:" % (e.name, n) for n, _ in e.values)
    names = "\n".join('        case %s::%s: return "%s";' % (e.name, n, n) for n, _ in e.values)
    out.append("""
[[nodiscard]] constexpr bool is_valid(%(E)s v) noexcept {
    switch (v) {
%(cases)s
            return true;
        default:
            return false;
    }
}

// The schema name of a validValue, or nullptr for any other value.
[[nodiscard]] constexpr const char* name_of(%(E)s v) noexcept {
    switch (v) {
%(names)s
        default: return nullptr;
    }
}
""" % {"E": e.name, "cases": cases, "names": names})
    return "\n".join(out)


def member_spec(kind, m):
    if kind == "group":
        return "detail::MemberSpec{true, {}, %s::kDim}" % type_name(m.name)
    v = m.layout
    return 'detail::MemberSpec{false, detail::VarSpec{"%s", %d, %d, %d, %dULL}, {}}' % (
        m.name, prim_size(v.len_prim), v.len_offset, v.data_offset, v.max_length)


class LevelEmitter:
    """Emits the struct for one level: a message (is_message) or a group entry."""

    def __init__(self, schema, level, is_message, path):
        self.schema, self.level, self.is_message, self.path = schema, level, is_message, path
        self.members = level.var_members()
        for f in level.fields:
            check_identifier(f.name, path)
        for _, m in self.members:
            check_identifier(m.name, path)

    def emit(self):
        lv = self.level
        parts = []
        if self.is_message:
            parts.append("struct %s {" % lv.name)
            parts.append("    static constexpr uint16_t kSchemaId = %d;" % self.schema.id)
            parts.append("    static constexpr uint16_t kSchemaVersion = %d;" % self.schema.version)
            parts.append("    static constexpr uint16_t kTemplateId = %d;" % lv.id)
            parts.append("    static constexpr uint16_t kBlockLength = %d;" % lv.block_length)
            parts.append('    static constexpr const char* kName = "%s";' % lv.name)
        else:
            d = lv.dim
            parts.append("struct %s {" % type_name(lv.name))
            parts.append("    static constexpr uint16_t kBlockLength = %d;" % lv.block_length)
            parts.append('    static constexpr detail::DimSpec kDim{"%s", %d, %d, %d, %d, %d, %d};' % (
                lv.name, d.size, d.block_offset, prim_size(d.block_prim), d.count_offset, prim_size(d.count_prim),
                lv.block_length))
        offsets = "".join("        static constexpr size_t %s = %d;\n" % (f.name, f.offset)
                          for f in lv.fields if f.presence != "constant")
        if offsets:
            parts.append("    // Byte offset of each fixed field in the block, for code that patches a prepared image in place.\n"
                         "    struct Offsets {\n%s    };" % offsets)
        for g in lv.groups:
            parts.append(indent(LevelEmitter(self.schema, g, False, self.path + "." + g.name).emit(), 1))
        n = len(self.members)
        parts.append("    static constexpr int kMemberCount = %d;" % n)
        if n:
            parts.append("    static constexpr detail::MemberSpec kMembers[] = {\n%s};" % "".join(
                "        %s,\n" % member_spec(k, m) for k, m in self.members))
            parts.append("    static constexpr const detail::MemberSpec* members() noexcept { return kMembers; }")
        else:
            parts.append("    static constexpr const detail::MemberSpec* members() noexcept { return nullptr; }")
        parts.append(indent(self.emit_walk(), 1))
        parts.append(indent(self.emit_decoder(), 1))
        if not self.is_message:
            parts.append(indent(self.emit_range(), 1))
        parts.append(indent(self.emit_encoder(), 1))
        if not self.is_message:
            parts.append(indent(self.emit_entries(), 1))
        parts.append("};")
        return "\n".join(parts)

    # -- decoding -----------------------------------------------------------------------------------------
    def emit_walk(self):
        body = ["size_t pos = block_start + block;"]
        for i, (kind, m) in enumerate(self.members):
            guard = "version >= %d" % m.since if m.since > 0 else None
            lines = ["if (off != nullptr) off[%d] = pos;" % i]
            if kind == "group":
                lines.append("if (!%s::walk_group(buf, len, pos, version, err)) return false;" % type_name(m.name))
            else:
                lines.append("if (!detail::skip_var(buf, len, pos, kMembers[%d].var, err)) return false;" % i)
            if guard:
                body.append("if (%s) {" % guard)
                body.extend("    " + l for l in lines)
                body.append("} else if (off != nullptr) {\n    off[%d] = detail::kAbsent;\n}" % i)
            else:
                body.extend(lines)
        body.append("end = pos;")
        body.append("return true;")
        out = """// Walks the groups and var data that follow a block of `block` bytes at `block_start`, checking every
// count and length against `len`; records where each member starts (when `off` is given) and where it all ends.
static bool walk_level([[maybe_unused]] const uint8_t* buf, [[maybe_unused]] size_t len, size_t block_start,
                       size_t block, [[maybe_unused]] uint16_t version, [[maybe_unused]] size_t* off, size_t& end,
                       [[maybe_unused]] Error& err) noexcept {
%s
}""" % indent("\n".join(body), 1)
        if not self.is_message:
            out += """
static bool walk_group(const uint8_t* buf, size_t len, size_t& pos, uint16_t version, Error& err) noexcept {
    size_t block = 0, count = 0;
    if (!detail::read_dim(buf, len, pos, kDim, block, count, err)) return false;
    pos += kDim.size;
    for (size_t i = 0; i < count; ++i) {
        size_t end = 0;
        if (!detail::check_block(len, pos, block, kDim.name, err) ||
            !walk_level(buf, len, pos, block, version, nullptr, end, err)) {
            err.prefix("group %s entry %zu: ", kDim.name, i);
            return false;
        }
        pos = end;
    }
    return true;
}"""
        return out

    def field_getters(self):
        out = []
        for f in self.level.fields:
            t = f.type
            name = f.name
            since_guard = ""
            if f.since > 0:
                since_guard = "if (version_ < %d) return %sNullValue();\n    " % (f.since, name)
            if f.presence == "constant":
                if t.kind != "encoded":
                    raise ValueError("%s.%s: only encoded constants are supported" % (self.path, name))
                out.append("static constexpr %s %s() noexcept { return %s; }" % (
                    cpp_type(t.prim), name, literal(t.const, t.prim)))
                continue
            at = "buf_ + block_start_ + %d" % f.offset
            if t.kind == "enum":
                raw = cpp_type(t.prim)
                out.append("static constexpr %s %sNullValue() noexcept { return %s; }" % (
                    raw, name, literal(t.null, t.prim)))
                out.append("%s %sRaw() const noexcept {\n    %sreturn load_le<%s>(%s);\n}" % (
                    raw, name, since_guard, raw, at))
                out.append("%s %s() const noexcept { return static_cast<%s>(%sRaw()); }" % (t.name, name, t.name, name))
                if f.presence == "optional" or f.since > 0:
                    out.append("bool %sIsNull() const noexcept { return %sRaw() == %sNullValue(); }" % (name, name, name))
                continue
            ct = cpp_type(t.prim)
            if t.length == 1:
                out.append("static constexpr %s %sNullValue() noexcept { return %s; }" % (
                    ct, name, literal(f.null_value(), t.prim)))
                out.append("%s %s() const noexcept {\n    %sreturn load_le<%s>(%s);\n}" % (ct, name, since_guard, ct, at))
                if f.presence == "optional" or f.since > 0:
                    out.append("bool %sIsNull() const noexcept { return %s() == %sNullValue(); }" % (name, name, name))
            else:
                size = prim_size(t.prim)
                out.append("static constexpr size_t %sLength() noexcept { return %d; }" % (name, t.length))
                guard = "if (i >= %d%s) return %s{};\n    " % (
                    t.length, " || version_ < %d" % f.since if f.since > 0 else "", ct)
                out.append("%s %s(size_t i) const noexcept {\n    %sreturn load_le<%s>(%s + i * %d);\n}" % (
                    ct, name, guard, ct, at, size))
                out.append("std::array<%s, %d> %s() const noexcept {\n    std::array<%s, %d> a{};\n"
                           "    for (size_t i = 0; i < a.size(); ++i) a[i] = %s(i);\n    return a;\n}" % (
                               ct, t.length, name, ct, t.length, name))
        return out

    def member_getters(self):
        out = []
        for i, (kind, m) in enumerate(self.members):
            if kind == "group":
                out.append("%s::Range %s() const noexcept { return %s::Range(buf_, len_, off_[%d], version_); }" % (
                    type_name(m.name), m.name, type_name(m.name), i))
            else:
                out.append("std::string_view %s() const noexcept { return detail::var_chars(buf_, off_[%d], "
                           "kMembers[%d].var); }" % (m.name, i, i))
                out.append("std::span<const uint8_t> %sBytes() const noexcept { return detail::var_bytes(buf_, "
                           "off_[%d], kMembers[%d].var); }" % (m.name, i, i))
        return out

    def emit_decoder(self):
        n = max(len(self.members), 1)
        name = self.level.name
        getters = self.field_getters() + self.member_getters()
        if self.is_message:
            wraps = """[[nodiscard]] static Result<Decoder> wrap(const uint8_t* buf, size_t len) noexcept {
    MessageHeader h;
    Error err;
    if (!detail::check_header(buf, len, kSchemaId, kTemplateId, kBlockLength, kName, h, err)) return err;
    return wrap_at(buf, len, MessageHeader::kSize, h.blockLength, h.version);
}
// A headerless body with the schema's block length and version (the SHM structures).
[[nodiscard]] static Result<Decoder> wrap_raw(const uint8_t* buf, size_t len) noexcept {
    return wrap_at(buf, len, 0, kBlockLength, kSchemaVersion);
}
// A body whose message header was read elsewhere.
[[nodiscard]] static Result<Decoder> wrap_body(const uint8_t* body, size_t len, uint16_t block_length,
                                               uint16_t version) noexcept {
    if (block_length < kBlockLength) {
        return Error::format(Errc::malformed, "%s: blockLength %u is smaller than the schema's %u", kName,
                             unsigned{block_length}, unsigned{kBlockLength});
    }
    return wrap_at(body, len, 0, block_length, version);
}
static constexpr const char* kMessageName = kName;
static constexpr uint16_t kSchemaIdValue = kSchemaId;
static constexpr uint16_t kTemplateIdValue = kTemplateId;
// Bytes the message occupies from the start of the wrapped buffer (header included when framed).
size_t encoded_length() const noexcept { return end_; }
const uint8_t* buffer() const noexcept { return buf_; }
uint16_t acting_block_length() const noexcept { return static_cast<uint16_t>(block_); }
uint16_t acting_version() const noexcept { return version_; }"""
            wrap_at = """static Result<Decoder> wrap_at(const uint8_t* buf, size_t len, size_t block_start, size_t block,
                               uint16_t version) noexcept {
    Decoder d;
    Error err;
    if (buf == nullptr && len != 0) return Error(Errc::invalid_argument, "null buffer");
    if (!detail::check_block(len, block_start, block, kName, err) ||
        !walk_level(buf, len, block_start, block, version, d.off_, d.end_, err)) {
        err.prefix("%s: ", kName);
        return err;
    }
    d.buf_ = buf;
    d.len_ = len;
    d.block_start_ = block_start;
    d.block_ = block;
    d.version_ = version;
    return d;
}"""
            friends = ""
        else:
            wraps = """uint16_t acting_version() const noexcept { return version_; }
// Where this entry (with its nested groups and var data) ends; the next entry starts there.
size_t end_offset() const noexcept { return end_; }
const uint8_t* buffer() const noexcept { return buf_; }
// Decodes the entry at `pos` (used by Range); the enclosing message was already walked, so this cannot run
// out of bounds.
static Decoder at(const uint8_t* buf, size_t len, size_t pos, size_t block, uint16_t version) noexcept {
    Decoder d;
    Error err;
    if (!detail::check_block(len, pos, block, kDim.name, err) ||
        !walk_level(buf, len, pos, block, version, d.off_, d.end_, err)) {
        d.end_ = len;
        return d;
    }
    d.buf_ = buf;
    d.len_ = len;
    d.block_start_ = pos;
    d.block_ = block;
    d.version_ = version;
    return d;
}"""
            wrap_at = ""
            friends = ""
        return """// Reads %(name)s from a buffer that Decoder::wrap checked end to end.
class Decoder {
public:
    Decoder() = default;
%(wraps)s

%(getters)s

private:
%(friends)s%(wrap_at)s

    const uint8_t* buf_ = nullptr;
    size_t len_ = 0;
    size_t block_start_ = 0;
    size_t block_ = 0;
    uint16_t version_ = 0;
    size_t end_ = 0;
    size_t off_[%(n)d]{};
};""" % {"name": name, "wraps": indent(wraps, 1), "getters": indent("\n".join(getters), 1),
         "friends": indent(friends, 1) if friends else "", "wrap_at": indent(wrap_at, 1), "n": n}

    def emit_range(self):
        return """// The entries of one %(name)s group, iterated in wire order.
class Range {
public:
    Range() = default;
    Range(const uint8_t* buf, size_t len, size_t off, uint16_t version) noexcept {
        size_t block = 0, count = 0;
        Error err;
        if (off == detail::kAbsent || !detail::read_dim(buf, len, off, kDim, block, count, err)) return;
        buf_ = buf;
        len_ = len;
        first_ = off + kDim.size;
        block_ = block;
        count_ = count;
        version_ = version;
    }
    size_t size() const noexcept { return count_; }
    bool empty() const noexcept { return count_ == 0; }

    class iterator {
    public:
        using value_type = Decoder;
        using difference_type = std::ptrdiff_t;
        using reference = Decoder;  // by value: an entry decoder is a few words and must outlive the iterator
        using pointer = const Decoder*;
        using iterator_category = std::input_iterator_tag;
        iterator() = default;
        iterator(const Range* r, size_t index, size_t pos) noexcept : r_(r), index_(index), pos_(pos) { load(); }
        Decoder operator*() const noexcept { return cur_; }
        const Decoder* operator->() const noexcept { return &cur_; }
        iterator& operator++() noexcept {
            ++index_;
            load();
            return *this;
        }
        void operator++(int) noexcept { ++*this; }
        bool operator==(const iterator& o) const noexcept { return index_ == o.index_; }

    private:
        void load() noexcept {
            if (r_ == nullptr || index_ >= r_->count_) return;
            cur_ = Decoder::at(r_->buf_, r_->len_, pos_, r_->block_, r_->version_);
            if (cur_.buffer() == nullptr) {  // cannot happen after a successful wrap; end the iteration safely
                index_ = r_->count_;
                return;
            }
            pos_ = cur_.end_offset();
        }
        const Range* r_ = nullptr;
        size_t index_ = 0;
        size_t pos_ = 0;
        Decoder cur_{};
    };
    iterator begin() const noexcept { return iterator(this, 0, first_); }
    iterator end() const noexcept { return iterator(nullptr, count_, 0); }

private:
    const uint8_t* buf_ = nullptr;
    size_t len_ = 0;
    size_t first_ = 0;
    size_t block_ = 0;
    size_t count_ = 0;
    uint16_t version_ = 0;
};""" % {"name": self.level.name}

    # -- encoding -----------------------------------------------------------------------------------------
    def field_setters(self):
        out = []
        for f in self.level.fields:
            if f.presence == "constant":
                continue
            t = f.type
            name = f.name
            at = "%d" % f.offset
            if t.kind == "enum":
                raw = cpp_type(t.prim)
                out.append("Encoder& %s(%s v) noexcept {\n    if (uint8_t* p = block()) store_le<%s>(p + %s, "
                           "static_cast<%s>(v));\n    return *this;\n}" % (name, t.name, raw, at, raw))
                out.append("static constexpr %s %sNullValue() noexcept { return %s; }" % (
                    raw, name, literal(t.null, t.prim)))
                continue
            ct = cpp_type(t.prim)
            if t.length == 1:
                out.append("Encoder& %s(%s v) noexcept {\n    if (uint8_t* p = block()) store_le<%s>(p + %s, v);\n"
                           "    return *this;\n}" % (name, ct, ct, at))
                out.append("static constexpr %s %sNullValue() noexcept { return %s; }" % (
                    ct, name, literal(f.null_value(), t.prim)))
            else:
                size = prim_size(t.prim)
                out.append("""Encoder& %(n)s(size_t i, %(t)s v) noexcept {
    if (i >= %(L)d) {
        st().fail(Error::format(Errc::invalid_argument, "%(n)s: index %%zu is out of range 0..%(L1)d", i));
        return *this;
    }
    if (uint8_t* p = block()) store_le<%(t)s>(p + %(at)s + i * %(size)d, v);
    return *this;
}
// Sets the first v.size() elements and zeroes the rest.
Encoder& %(n)s(std::span<const %(t)s> v) noexcept {
    if (v.size() > %(L)d) {
        st().fail(Error::format(Errc::invalid_argument, "%(n)s: %%zu elements given, at most %(L)d fit", v.size()));
        return *this;
    }
    if (uint8_t* p = block()) {
        for (size_t i = 0; i < %(L)d; ++i) store_le<%(t)s>(p + %(at)s + i * %(size)d, i < v.size() ? v[i] : %(t)s{});
    }
    return *this;
}""" % {"n": name, "t": ct, "L": t.length, "L1": t.length - 1, "at": at, "size": size})
        return out

    def member_setters(self):
        out = []
        for i, (kind, m) in enumerate(self.members):
            if kind == "group":
                g = type_name(m.name)
                out.append("""// Writes the %(n)s group header for `count` entries; add each entry with next().
%(g)s::Entries %(n)sCount(size_t count) noexcept {
    return %(g)s::Entries(&st(), st().put_group(depth_, serial_, %(i)d, %(g)s::kDim, %(g)s::members(),
                                                %(g)s::kMemberCount, count));
}""" % {"n": m.name, "g": g, "i": i})
            else:
                out.append("""Encoder& %(n)s(std::string_view v) noexcept {
    st().put_var(depth_, serial_, %(i)d, kMembers[%(i)d].var, v.data(), v.size());
    return *this;
}
Encoder& %(n)s(std::span<const uint8_t> v) noexcept {
    st().put_var(depth_, serial_, %(i)d, kMembers[%(i)d].var, v.data(), v.size());
    return *this;
}""" % {"n": m.name, "i": i})
        return out

    def emit_encoder(self):
        setters = "\n".join(self.field_setters() + self.member_setters())
        if self.is_message:
            return """// Writes %(name)s; see docs/wire-codecs.md for the ordering rules.
class Encoder {
public:
    Encoder() = default;
    Encoder(const Encoder&) = delete;
    Encoder& operator=(const Encoder&) = delete;

    // Writes the 8-byte message header and zero-fills the block.
    Status wrap_and_apply_header(uint8_t* buf, size_t cap) noexcept {
        if (!st_.start(buf, cap, MessageHeader::kSize, kBlockLength, members(), kMemberCount, kName)) return st_.error();
        MessageHeader{kBlockLength, kTemplateId, kSchemaId, kSchemaVersion}.write(buf);
        block_start_ = MessageHeader::kSize;
        serial_ = st_.serial_at(0);
        return {};
    }
    // Headerless: the block starts at buf (the SHM structures).
    Status wrap_raw(uint8_t* buf, size_t cap) noexcept {
        if (!st_.start(buf, cap, 0, kBlockLength, members(), kMemberCount, kName)) return st_.error();
        block_start_ = 0;
        serial_ = st_.serial_at(0);
        return {};
    }
    // Closes open groups (writing skipped members empty) and returns the bytes written, header included.
    [[nodiscard]] Result<size_t> finish() noexcept { return st_.finish(); }

%(setters)s

private:
    detail::EncoderState& st() noexcept { return st_; }
    uint8_t* block() noexcept { return st_.failed() ? nullptr : st_.buffer() + block_start_; }

    detail::EncoderState st_;
    size_t block_start_ = 0;
    [[maybe_unused]] int depth_ = 0;         // unused by messages without groups or var data
    [[maybe_unused]] uint32_t serial_ = 0;
};""" % {"name": self.level.name, "setters": indent(setters, 1)}
        return """// Writes one %(name)s entry; obtained from Entries::next().
class Encoder {
public:
    Encoder(detail::EncoderState* st, size_t base, int depth, uint32_t serial) noexcept
        : st_(st), base_(base), depth_(depth), serial_(serial) {}

%(setters)s

private:
    detail::EncoderState& st() noexcept { return *st_; }
    uint8_t* block() noexcept {
        return (base_ == detail::kAbsent || st_->failed()) ? nullptr : st_->buffer() + base_;
    }

    detail::EncoderState* st_;
    size_t base_;
    [[maybe_unused]] int depth_;             // unused by entries without groups or var data
    [[maybe_unused]] uint32_t serial_;
};""" % {"name": self.level.name, "setters": indent(setters, 1)}

    def emit_entries(self):
        return """// The entries of a %(name)s group being written.
class Entries {
public:
    Entries(detail::EncoderState* st, int depth) noexcept
        : st_(st), depth_(depth), serial_(depth >= 0 ? st->serial_at(depth) : 0) {}
    // Starts the next entry (its block zero-filled). Calling it more often than the count is an error.
    Encoder next() noexcept {
        const size_t base = depth_ >= 0 ? st_->next_entry(depth_, serial_) : detail::kAbsent;
        if (base == detail::kAbsent) return Encoder(st_, detail::kAbsent, -1, 0);
        return Encoder(st_, base, depth_ + 1, st_->serial_at(depth_ + 1));
    }

private:
    detail::EncoderState* st_;
    int depth_;
    uint32_t serial_;
};""" % {"name": self.level.name}


def indent(text, levels):
    pad = "    " * levels
    return "\n".join((pad + line) if line.strip() else "" for line in text.split("\n"))


def emit_schema(schema, source_name):
    out = ["""// Generated by tools/sbegen from schemas/%(src)s (schema id %(id)d, version %(ver)d). Do not edit.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <span>
#include <string_view>

#include "tensorpool/common/result.hpp"
#include "tensorpool/wire/byte_io.hpp"
#include "tensorpool/wire/codec_runtime.hpp"
#include "tensorpool/wire/message_header.hpp"

namespace tensorpool::wire::%(ns)s {

using std::size_t;

inline constexpr uint16_t kSchemaId = %(id)d;
inline constexpr uint16_t kSchemaVersion = %(ver)d;
inline constexpr const char* kPackage = "%(pkg)s";
""" % {"src": source_name, "id": schema.id, "ver": schema.version, "ns": schema.namespace,
       "pkg": schema.package}]
    for e in schema.enums:
        out.append(emit_enum(e))
    for m in schema.messages:
        out.append(LevelEmitter(schema, m, True, m.name).emit())
        out.append("")
    out.append("}  // namespace tensorpool::wire::%s" % schema.namespace)
    return "\n".join(out) + "\n"
