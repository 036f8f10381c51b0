#!/usr/bin/env python3
"""Checks a decoder on conformance vectors it has never seen.

    check_unseen.py --seed N DECODER_CMD

Generates a fresh vector set with gen_vectors.py (same generator as the development set, another seed), computes
the expected JSON of each vector with the Python reference decoder ref_decode.py (which passes all 953 vectors
of the SBE oracle), then runs compare.py. Exit status is compare.py's.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(HERE, "tools")
SCHEMAS = os.path.join(HERE, "..", "..", "schemas")
sys.path.insert(0, TOOLS)
import ref_decode  # noqa: E402
import sbe_schema  # noqa: E402


def expected_for(schemas, path, raw):
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        out = ref_decode.decode_raw(schemas, data, raw) if raw else ref_decode.decode_framed(schemas, data)
    except ref_decode.Malformed:
        return {"error": True}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count-per-message", type=int, default=20)
    ap.add_argument("decoder")
    args = ap.parse_args()
    schemas = sbe_schema.load_schemas(SCHEMAS)
    with tempfile.TemporaryDirectory(prefix="tp-vectors-") as out:
        subprocess.run([sys.executable, os.path.join(TOOLS, "gen_vectors.py"), SCHEMAS, out, "--seed",
                        str(args.seed), "--count-per-message", str(args.count_per_message)],
                       check=True, stdout=subprocess.DEVNULL)
        count = 0
        for root, _, files in os.walk(out):
            for name in files:
                if not name.endswith(".bin"):
                    continue
                raw = None
                if name.startswith("raw-"):
                    raw = name[len("raw-"):].split("-", 1)[0]
                exp = expected_for(schemas, os.path.join(root, name), raw)
                with open(os.path.join(root, name[:-4] + ".json"), "w") as fh:
                    json.dump(exp, fh)
                count += 1
        print("seed %d: %d vectors generated" % (args.seed, count), flush=True)
        return subprocess.run([sys.executable, os.path.join(TOOLS, "compare.py"), out, args.decoder]).returncode


if __name__ == "__main__":
    sys.exit(main())
