// Support code shared by every generated codec (tools/sbegen): bounds-checked walking of groups and var data
// for decoders, and the buffer/ordering bookkeeping of encoders.
//
// Generated code describes each schema member with the small constexpr specs below and calls into these
// functions, so the subtle parts (length checks, schema-order enforcement, auto-filling skipped members)
// exist once, here, and are tested and fuzzed once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>

#include "tensorpool/common/result.hpp"
#include "tensorpool/wire/byte_io.hpp"
#include "tensorpool/wire/message_header.hpp"

namespace tensorpool::wire::detail {

// Offset recorded for a group or var-data member that is absent because it is newer than the acting version.
inline constexpr std::size_t kAbsent = static_cast<std::size_t>(-1);

// Layout of a var-data composite: length prefix of len_size bytes at len_offset, bytes from data_offset.
struct VarSpec {
    const char* name;
    uint8_t len_size;
    uint8_t len_offset;
    uint8_t data_offset;
    uint64_t max_length;  // the schema's maxValue of the length type
};

// Layout of a group dimension composite.
struct DimSpec {
    const char* name;
    uint8_t size;
    uint8_t block_offset;
    uint8_t block_size;
    uint8_t count_offset;
    uint8_t count_size;
    uint16_t entry_block;  // the schema's block length of one entry
};

// ---- decoding -------------------------------------------------------------------------------------------

// Checks that the var data starting at `pos` fits in `len` bytes and moves `pos` past it.
inline bool skip_var(const uint8_t* buf, std::size_t len, std::size_t& pos, const VarSpec& v, Error& err) noexcept {
    if (pos > len || len - pos < v.data_offset) {
        err = Error::format(Errc::truncated, "var data %s: length prefix at offset %zu needs %u bytes, %zu left",
                            v.name, pos, unsigned{v.data_offset}, pos > len ? std::size_t{0} : len - pos);
        return false;
    }
    const uint64_t n = load_uint(buf + pos + v.len_offset, v.len_size);
    const std::size_t start = pos + v.data_offset;
    if (n > len - start) {
        err = Error::format(Errc::truncated, "var data %s at offset %zu: length %llu runs past the end (%zu bytes left)",
                            v.name, pos, static_cast<unsigned long long>(n), len - start);
        return false;
    }
    pos = start + static_cast<std::size_t>(n);
    return true;
}

// Reads a group's dimension header at `pos`. The entry block must be at least the schema's when the group is
// not empty (an empty group may carry any blockLength).
inline bool read_dim(const uint8_t* buf, std::size_t len, std::size_t pos, const DimSpec& d, std::size_t& block,
                     std::size_t& count, Error& err) noexcept {
    if (pos > len || len - pos < d.size) {
        err = Error::format(Errc::truncated, "group %s: header at offset %zu needs %u bytes, %zu left", d.name, pos,
                            unsigned{d.size}, pos > len ? std::size_t{0} : len - pos);
        return false;
    }
    block = static_cast<std::size_t>(load_uint(buf + pos + d.block_offset, d.block_size));
    count = static_cast<std::size_t>(load_uint(buf + pos + d.count_offset, d.count_size));
    if (count > 0 && block < d.entry_block) {
        err = Error::format(Errc::malformed, "group %s at offset %zu: blockLength %zu is smaller than the schema's %u",
                            d.name, pos, block, unsigned{d.entry_block});
        return false;
    }
    return true;
}

// Checks that an entry or root block of `block` bytes starting at `start` fits.
inline bool check_block(std::size_t len, std::size_t start, std::size_t block, const char* what, Error& err) noexcept {
    if (start > len || len - start < block) {
        err = Error::format(Errc::truncated, "%s: block of %zu bytes at offset %zu runs past the end (%zu bytes)", what,
                            block, start, len);
        return false;
    }
    return true;
}

// The bytes of a var-data member whose length prefix is at `off` (already validated by a walk).
inline std::span<const uint8_t> var_bytes(const uint8_t* buf, std::size_t off, const VarSpec& v) noexcept {
    if (off == kAbsent) return {};
    const uint64_t n = load_uint(buf + off + v.len_offset, v.len_size);
    return {buf + off + v.data_offset, static_cast<std::size_t>(n)};
}

inline std::string_view var_chars(const uint8_t* buf, std::size_t off, const VarSpec& v) noexcept {
    auto b = var_bytes(buf, off, v);
    return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Reads and checks a framed message header against the expected schema and template.
inline bool check_header(const uint8_t* buf, std::size_t len, uint16_t schema_id, uint16_t template_id,
                         uint16_t schema_block, const char* message, MessageHeader& h, Error& err) noexcept {
    auto r = MessageHeader::read(buf, len);
    if (!r) {
        err = r.error();
        err.prefix("%s: ", message);
        return false;
    }
    h = *r;
    if (h.schemaId != schema_id || h.templateId != template_id) {
        err = Error::format(Errc::mismatch, "%s: header says schemaId %u templateId %u, expected schemaId %u templateId %u",
                            message, unsigned{h.schemaId}, unsigned{h.templateId}, unsigned{schema_id},
                            unsigned{template_id});
        return false;
    }
    if (h.blockLength < schema_block) {
        err = Error::format(Errc::malformed, "%s: header blockLength %u is smaller than the schema's %u", message,
                            unsigned{h.blockLength}, unsigned{schema_block});
        return false;
    }
    return true;
}

// ---- encoding -------------------------------------------------------------------------------------------

// One group or var-data member of a level (message body or group entry), in schema order.
struct MemberSpec {
    bool is_group;
    VarSpec var;  // when !is_group
    DimSpec dim;  // when is_group
};

// Encoding state of one message: the buffer, the append position, the first error, and a stack of open
// levels so that groups and var data are written in schema order and skipped members are written empty.
class EncoderState {
public:
    static constexpr int kMaxDepth = 8;

    // Unwrapped: every write is ignored and finish() reports the misuse. (No Error is built here: encoders are
    // constructed per message on hot paths, and the message is only needed when something went wrong.)
    EncoderState() noexcept : failed_(true), wrapped_(false) {}

    // Starts a message whose fixed block (block bytes) begins at offset `block_start` of buf.
    bool start(uint8_t* buf, std::size_t cap, std::size_t block_start, std::size_t block, const MemberSpec* members,
               int member_count, const char* message) noexcept {
        buf_ = buf;
        cap_ = buf == nullptr ? 0 : cap;
        failed_ = false;
        wrapped_ = true;
        depth_ = 0;
        serial_ = 0;
        if (cap_ < block_start || cap_ - block_start < block) {
            fail(Error::format(Errc::capacity, "%s: buffer of %zu bytes cannot hold the %zu-byte header and block",
                               message, cap_, block_start + block));
            return false;
        }
        std::memset(buf_ + block_start, 0, block);
        pos_ = block_start + block;
        stack_[0] = Frame{false, members, member_count, 0, 0, 0, ++serial_, nullptr};
        return true;
    }

    bool failed() const noexcept { return failed_; }
    const Error& error() const noexcept {
        static const Error kNotWrapped(Errc::state, "encoder used before wrap");
        return wrapped_ ? err_ : kNotWrapped;
    }
    uint8_t* buffer() const noexcept { return buf_; }
    std::size_t position() const noexcept { return pos_; }
    int depth() const noexcept { return depth_; }
    uint32_t serial_at(int depth) const noexcept { return stack_[depth].serial; }

    void fail(const Error& e) noexcept {
        if (!failed_) {
            failed_ = true;
            err_ = e;
        }
    }
    bool wrapped() const noexcept { return wrapped_; }

    // Positions the level at (depth, serial) on member `index`, closing deeper levels and writing the
    // members skipped before it as empty. Returns false (and records why) on misuse.
    bool begin_member(int depth, uint32_t serial, int index, const char* name) noexcept {
        if (failed_) return false;
        if (depth < 0 || depth > depth_ || stack_[depth].serial != serial) {
            fail(Error::format(Errc::state, "%s: written through an entry encoder after a later entry was started", name));
            return false;
        }
        while (depth_ > depth) close_top();
        Frame& f = stack_[depth_];
        if (index < f.next) {
            fail(Error::format(Errc::state, "%s: written twice or after a member that follows it in the schema", name));
            return false;
        }
        while (!failed_ && f.next < index) write_empty(f.members[f.next++]);
        f.next = index + 1;
        return !failed_;
    }

    // Writes var data as member `index` of the level at (depth, serial).
    void put_var(int depth, uint32_t serial, int index, const VarSpec& v, const void* data, std::size_t n) noexcept {
        if (!begin_member(depth, serial, index, v.name)) return;
        if (n > v.max_length) {
            fail(Error::format(Errc::invalid_argument, "var data %s: %zu bytes exceed the schema maximum %llu", v.name, n,
                               static_cast<unsigned long long>(v.max_length)));
            return;
        }
        if (!reserve(v.data_offset + n, v.name)) return;
        std::memset(buf_ + pos_, 0, v.data_offset);
        store_uint(buf_ + pos_ + v.len_offset, v.len_size, n);
        if (n > 0) std::memcpy(buf_ + pos_ + v.data_offset, data, n);
        pos_ += v.data_offset + n;
    }

    // Writes a group header with `count` entries as member `index`; returns the depth of the new group level
    // (or -1 on failure). Entries are then added with next_entry().
    int put_group(int depth, uint32_t serial, int index, const DimSpec& d, const MemberSpec* entry_members,
                  int entry_member_count, std::size_t count) noexcept {
        if (!begin_member(depth, serial, index, d.name)) return -1;
        const uint64_t max_count = d.count_size >= 8 ? ~uint64_t{0} : (uint64_t{1} << (8 * d.count_size)) - 1;
        if (count > max_count) {
            fail(Error::format(Errc::invalid_argument, "group %s: %zu entries exceed the dimension maximum %llu", d.name,
                               count, static_cast<unsigned long long>(max_count)));
            return -1;
        }
        if (depth_ + 2 >= kMaxDepth) {
            fail(Error::format(Errc::unsupported, "group %s: nesting deeper than %d levels", d.name, kMaxDepth / 2));
            return -1;
        }
        if (!reserve(d.size, d.name)) return -1;
        std::memset(buf_ + pos_, 0, d.size);
        store_uint(buf_ + pos_ + d.block_offset, d.block_size, d.entry_block);
        store_uint(buf_ + pos_ + d.count_offset, d.count_size, count);
        pos_ += d.size;
        stack_[++depth_] = Frame{true, entry_members, entry_member_count, 0, count, 0, ++serial_, &d};
        return depth_;
    }

    // Starts the next entry of the group level at (depth, serial): returns the offset of its zero-filled block,
    // or kAbsent on failure. The entry's own level is then at depth + 1.
    std::size_t next_entry(int depth, uint32_t serial) noexcept {
        if (failed_) return kAbsent;
        if (depth < 0 || depth > depth_ || stack_[depth].serial != serial || !stack_[depth].is_group) {
            fail(Error(Errc::state, "group encoder used after a later member of its parent was written"));
            return kAbsent;
        }
        while (depth_ > depth) close_top();
        Frame& g = stack_[depth_];
        if (g.written >= g.declared) {
            fail(Error::format(Errc::state, "group %s: next() called more often than the %zu entries declared",
                               g.dim->name, g.declared));
            return kAbsent;
        }
        if (!reserve(g.dim->entry_block, g.dim->name)) return kAbsent;
        const std::size_t base = pos_;
        std::memset(buf_ + base, 0, g.dim->entry_block);
        pos_ += g.dim->entry_block;
        ++g.written;
        stack_[++depth_] = Frame{false, g.members, g.member_count, 0, 0, 0, ++serial_, nullptr};
        return base;
    }

    // Closes every open level and returns the number of bytes written.
    Result<std::size_t> finish() noexcept {
        if (!failed_) {
            while (depth_ > 0) close_top();
            Frame& root = stack_[0];
            while (!failed_ && root.next < root.member_count) write_empty(root.members[root.next++]);
        }
        if (failed_) return error();
        return pos_;
    }

private:
    struct Frame {
        bool is_group;
        const MemberSpec* members;  // members of each entry (group) or of this level
        int member_count;
        int next;                   // next member index expected (levels)
        std::size_t declared;       // entries declared (groups)
        std::size_t written;        // entries started (groups)
        uint32_t serial;            // identifies this frame instance for stale-encoder detection
        const DimSpec* dim;
    };

    bool reserve(std::size_t n, const char* name) noexcept {
        if (cap_ < pos_ || cap_ - pos_ < n) {
            fail(Error::format(Errc::capacity, "%s: %zu more bytes needed at offset %zu, buffer holds %zu", name, n, pos_,
                               cap_));
            return false;
        }
        return true;
    }

    void write_empty(const MemberSpec& m) noexcept {
        if (m.is_group) {
            if (!reserve(m.dim.size, m.dim.name)) return;
            std::memset(buf_ + pos_, 0, m.dim.size);
            store_uint(buf_ + pos_ + m.dim.block_offset, m.dim.block_size, m.dim.entry_block);
            pos_ += m.dim.size;
        } else {
            if (!reserve(m.var.data_offset, m.var.name)) return;
            std::memset(buf_ + pos_, 0, m.var.data_offset);
            pos_ += m.var.data_offset;
        }
    }

    void close_top() noexcept {
        Frame& f = stack_[depth_];
        if (f.is_group) {
            if (f.written != f.declared) {
                fail(Error::format(Errc::state, "group %s: %zu entries declared but %zu written", f.dim->name,
                                   f.declared, f.written));
            }
        } else {
            while (!failed_ && f.next < f.member_count) write_empty(f.members[f.next++]);
        }
        f.serial = 0;  // any encoder still pointing at this frame is now stale
        --depth_;
    }

    uint8_t* buf_ = nullptr;
    std::size_t cap_ = 0;
    std::size_t pos_ = 0;
    bool failed_ = false;
    bool wrapped_ = false;
    Error err_;  // set only by fail(); meaningful only when failed_ after a wrap
    int depth_ = 0;
    uint32_t serial_ = 0;
    Frame stack_[kMaxDepth];  // only frames up to depth_ are live; start() sets the root
};

}  // namespace tensorpool::wire::detail
