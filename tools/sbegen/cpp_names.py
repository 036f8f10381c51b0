"""C++ spellings shared by the emitters: types, literals, identifiers."""

from schema_model import CPP_TYPE, PRIMITIVES, SchemaError

CPP_KEYWORDS = {
    "alignas", "alignof", "and", "asm", "auto", "bool", "break", "case", "catch", "char", "class", "const",
    "constexpr", "continue", "default", "delete", "do", "double", "else", "enum", "explicit", "export", "extern",
    "false", "float", "for", "friend", "goto", "if", "inline", "int", "long", "mutable", "namespace", "new",
    "noexcept", "not", "nullptr", "operator", "or", "private", "protected", "public", "register", "return",
    "short", "signed", "sizeof", "static", "struct", "switch", "template", "this", "throw", "true", "try",
    "typedef", "typeid", "typename", "union", "unsigned", "using", "virtual", "void", "volatile", "while",
    "concept", "requires", "co_await", "co_return", "co_yield", "char8_t", "consteval", "constinit",
}
# Members the generated classes define themselves; a schema member of the same name would clash.
RESERVED_MEMBERS = {
    "wrap", "wrap_raw", "wrap_body", "wrap_at", "wrap_and_apply_header", "finish", "encoded_length", "buffer",
    "acting_block_length", "acting_version", "next", "size", "empty", "begin", "end", "block", "st", "at",
}


def check_identifier(name, where):
    if name in CPP_KEYWORDS or name in RESERVED_MEMBERS or not name.replace("_", "a").isalnum():
        raise SchemaError("%s: member name %r cannot be used as a C++ identifier here" % (where, name))
    return name


def cpp_type(prim):
    return CPP_TYPE[prim]


def literal(value, prim):
    """A C++ constant expression of type `prim` holding `value` (min int64 has no literal of its own)."""
    size, signed = PRIMITIVES[prim][0], PRIMITIVES[prim][1]
    t = cpp_type(prim)
    if signed and value == -(2 ** (8 * size - 1)):
        return "static_cast<%s>(%dLL - 1)" % (t, value + 1)
    if signed:
        return "static_cast<%s>(%dLL)" % (t, value)
    return "static_cast<%s>(%dULL)" % (t, value)


def type_name(name):
    """Nested struct name of a group: payloadPools -> PayloadPools."""
    return name[0].upper() + name[1:]
