#!/usr/bin/env python3
"""sbegen: SBE XML schemas -> header-only C++20 codecs for tensorpool (Python 3 standard library only).

    sbegen.py --out DIR SCHEMA.xml [SCHEMA.xml ...]

Writes DIR/<ns>.hpp (codecs) and DIR/<ns>_json.hpp (canonical JSON printers) for each schema, where <ns> is
the last component of the schema package, plus DIR/dispatch.hpp and DIR/json_dispatch.hpp over all of them.
Files are rewritten only when their content changes, so an unchanged schema does not trigger a rebuild.
See docs/wire-codecs.md for the generated API and how the schemas are read.
"""

import argparse
import os
import sys

sys.dont_write_bytecode = True  # keep the source tree free of __pycache__
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import schema_model  # noqa: E402
from emit_codecs import emit_schema  # noqa: E402
from emit_dispatch import emit_dispatch, emit_json_dispatch  # noqa: E402
from emit_json import emit_schema_json  # noqa: E402

# Messages that live only in shared memory and are wrapped without a message header (WIRE_SPEC §2.1, A-39):
# the wire dispatcher refuses them.
SHM_ONLY = {(900, "ShmRegionSuperblock"), (900, "SlotHeader"), (900, "TensorHeader")}


def write_if_changed(path, text):
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    except FileNotFoundError:
        pass
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="output directory for the generated headers")
    ap.add_argument("--no-dispatch", action="store_true",
                    help="write only the per-schema headers (for a schema that is not part of the protocol)")
    ap.add_argument("schemas", nargs="+", help="SBE XML schema files")
    args = ap.parse_args()
    try:
        schemas = schema_model.load(args.schemas)
    except (schema_model.SchemaError, OSError) as ex:
        print("sbegen: %s" % ex, file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    for s in schemas:
        write_if_changed(os.path.join(args.out, s.namespace + ".hpp"), emit_schema(s, os.path.basename(s.path)))
        write_if_changed(os.path.join(args.out, s.namespace + "_json.hpp"), emit_schema_json(s))
    if not args.no_dispatch:
        write_if_changed(os.path.join(args.out, "dispatch.hpp"), emit_dispatch(schemas, SHM_ONLY))
        write_if_changed(os.path.join(args.out, "json_dispatch.hpp"), emit_json_dispatch(schemas))
    return 0


if __name__ == "__main__":
    sys.exit(main())
