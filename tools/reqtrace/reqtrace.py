#!/usr/bin/env python3
"""Requirements traceability: which test verifies each requirement of the wire spec digest.

Tests name the requirements they verify, in test names (`W_8_27_...`) or comments (`W-8-27`, `A-8`, ranges such as
`W-8-25..27`, `W-10.2.2-1/-2/-4`, `W-8-4/6/7`). This tool finds those mentions in tests/, gives each to the test it
sits in (or the test a comment block precedes; a file's header comment counts for the whole file), and checks that
every requirement in tests/requirements/wire_spec.txt is either verified by a test or listed, with a reason, in
tests/requirements/not_by_test.txt. It writes the matrix to docs/requirements.md.

  reqtrace.py check [--spec WIRE_SPEC.md]   exit 1 with one line per problem; the ctest `requirements.traceability`
  reqtrace.py write                          regenerate docs/requirements.md
  reqtrace.py import-spec WIRE_SPEC.md       regenerate tests/requirements/wire_spec.txt from the spec digest

Python 3 standard library only.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPEC_LIST = os.path.join(ROOT, "tests", "requirements", "wire_spec.txt")
NOT_BY_TEST = os.path.join(ROOT, "tests", "requirements", "not_by_test.txt")
MATRIX = os.path.join(ROOT, "docs", "requirements.md")
TEST_DIR = os.path.join(ROOT, "tests")
SOURCE_SUFFIXES = (".cpp", ".hpp", ".h", ".py")

# Categories a requirement may be "not verified by a test" under; anything else in not_by_test.txt is an error.
CATEGORIES = {
    "by-construction": "the code cannot break it (a constant, a type, the generated codec's layout)",
    "schema": "a property of the SBE schemas, verified by the conformance vectors and the codec generator's own rules",
    "deployment": "guidance for whoever deploys the system, not a behaviour of the code",
    "informative": "explains or permits; nothing to verify",
    "document": "about the source document's wording or structure only",
    "platform": "applies to platforms we do not build for",
    "future": "applies to a later protocol version",
    "later": "belongs to a service of a later milestone (the SHM driver, a supervisor, TraceLink)",
}

# ---- the requirement list ------------------------------------------------------------------------------------


@dataclass
class Requirement:
    rid: str
    level: str
    section: str
    text: str


def section_of(rid: str) -> str:
    if rid.startswith("A-"):
        return "A (ambiguities)"
    return rid[2:].rsplit("-", 1)[0]


def sort_key(rid: str):
    if rid.startswith("A-"):
        return (1, [int(rid[2:])], 0)
    sec, num = rid[2:].rsplit("-", 1)
    parts = []
    for p in sec.split("."):
        m = re.match(r"(\d+)([a-z]?)", p)
        parts.append((int(m.group(1)), m.group(2)))
    return (0, parts, int(num))


def import_spec(path: str) -> list[Requirement]:
    """The W- requirements and A- ambiguity resolutions of the digest, with their level and first sentence."""
    lines = open(path, encoding="utf-8").read().split("\n")
    out = []
    for i, line in enumerate(lines):
        m = re.match(r"^- \*\*(W-[0-9.]+[a-z]?-\d+)\*\* (\([^)]*\)|\[[^\]]*\]) (.*)$", line)
        a = re.match(r"^- \*\*(A-\d+) (.*?)\*\*(.*)$", line)
        if not m and not a:
            continue
        text = (m.group(3) if m else a.group(2)).strip()
        j = i + 1
        while m and j < len(lines) and lines[j].startswith("  "):
            text += " " + lines[j].strip()
            j += 1
        text = re.sub(r"\s+", " ", text)
        if m:
            level = m.group(2).strip("()[]")
            rid = m.group(1)
        else:
            level = "resolution"
            rid = a.group(1)
        out.append(Requirement(rid, level, section_of(rid), shorten(text, 150)))
    return sorted(out, key=lambda r: sort_key(r.rid))


def shorten(text: str, n: int) -> str:
    text = text.replace("|", "/")
    return text if len(text) <= n else text[: n - 1].rstrip() + "…"


def read_spec_list() -> list[Requirement]:
    out = []
    for n, line in enumerate(open(SPEC_LIST, encoding="utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            sys.exit(f"{SPEC_LIST}:{n}: expected ID<TAB>level<TAB>text")
        out.append(Requirement(parts[0], parts[1], section_of(parts[0]), parts[2]))
    return out


def write_spec_list(reqs: list[Requirement], source: str) -> None:
    with open(SPEC_LIST, "w", encoding="utf-8") as f:
        f.write("# The requirements of the wire spec digest (W-…) and its ambiguity resolutions (A-…): ID, level, first\n")
        f.write(f"# words. Made by `tools/reqtrace/reqtrace.py import-spec` from {source}; do not edit by hand.\n")
        for r in reqs:
            f.write(f"{r.rid}\t{r.level}\t{r.text}\n")


@dataclass
class Exemption:
    rid: str
    category: str
    reason: str
    line: int


def read_not_by_test() -> list[Exemption]:
    out = []
    for n, line in enumerate(open(NOT_BY_TEST, encoding="utf-8"), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 3:
            out.append(Exemption("", "", f"expected ID<TAB>category<TAB>reason, got {line.strip()!r}", n))
            continue
        out.append(Exemption(parts[0].strip(), parts[1].strip(), parts[2].strip(), n))
    return out


# ---- finding mentions in tests ---------------------------------------------------------------------------------

# W-8-27, W-10.2.2-1, W-15.21a-11, then any continuation: ..27, ..-7, /6, /-2, ", -3" (a comma needs the dash). Test
# names use underscores, and may name several: W_8_27_..., W_15_22_5_..., W_8_1_W_9_1_..., W_10_1_2_A_20_...
MENTION = re.compile(r"(?<![A-Za-z0-9-])W[-_](\d+(?:[._]\d+)*[a-z]?)[-_](\d+)((?:(?:\.\.|/)-?\d+|, ?-\d+)*)")
AMBIGUITY = re.compile(r"(?<![A-Za-z0-9-])A[-_](\d+)(?![0-9]|-\d)")
TEST_MACRO = re.compile(r"\b(?:TEST|TEST_F|TEST_P|TYPED_TEST)\(\s*(\w+)\s*,\s*(\w+)\s*\)")
CTEST = re.compile(r"^add_test\(NAME\s+([\w.]+)", re.M)  # tests that are not GoogleTest (conformance scripts)


def expand(match: re.Match) -> list[str]:
    sec = match.group(1).replace("_", ".")
    first = int(match.group(2))
    ids = [first]
    prev = first
    for sep, num in re.findall(r"(\.\.|/|, ?)-?(\d+)", match.group(3)):
        num = int(num)
        if sep == "..":
            ids.extend(range(prev + 1, num + 1))
        else:
            ids.append(num)
        prev = num
    return [f"W-{sec}-{n}" for n in ids]


def code_mask(text: str) -> list[bool]:
    """True where a character is C++ code (not a comment, string or character literal): braces count only there."""
    mask = [True] * len(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        elif text.startswith('R"', i) and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            k = text.find("(", i + 2)
            delim = text[i + 2 : k]
            j = text.find(")" + delim + '"', k)
            j = n if j < 0 else j + len(delim) + 2
        elif c == "'" and i < n - 1 and text[i + 1].isalnum() and re.search(r"\b\d[\w']*$", text[max(0, i - 40):i]):
            i += 1  # a digit separator (131'072), not a character literal
            continue
        elif c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            j += 1
        else:
            i += 1
            continue
        for k in range(i, min(j, n)):
            mask[k] = False
        i = j
    return mask


@dataclass
class TestSpan:
    name: str
    start: int  # the macro
    end: int  # the closing brace of the body


def test_spans(text: str) -> list[TestSpan]:
    mask = code_mask(text)
    spans = []
    for m in TEST_MACRO.finditer(text):
        if not mask[m.start()]:
            continue
        i = m.end()
        while i < len(text) and not (text[i] == "{" and mask[i]):
            i += 1
        depth = 0
        end = len(text)
        for j in range(i, len(text)):
            if not mask[j]:
                continue
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    end = j
                    break
        spans.append(TestSpan(f"{m.group(1)}.{m.group(2)}", m.start(), end))
    return spans


def ctest_spans(text: str) -> list[TestSpan]:
    """A CMakeLists' add_test() calls: a comment block right before one names what that test verifies."""
    return [TestSpan(f"ctest {m.group(1)}", m.start(), m.start()) for m in CTEST.finditer(text)]


def owner_of(pos: int, text: str, spans: list[TestSpan], relpath: str, comment: str) -> str:
    for s in spans:
        if s.start <= pos <= s.end:
            return s.name
    # A comment block right before a test (nothing but comments and blank lines in between) describes that test.
    line_end = text.find("\n", pos)
    for s in spans:
        if s.start > pos:
            between = text[line_end:s.start] if line_end >= 0 else ""
            if all(not l.strip() or l.strip().startswith(comment) for l in between.split("\n")):
                return s.name
            break
    return relpath  # a file's header comment or a helper: the file as a whole


def scan_tests() -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """requirement ID -> the tests (or files) that mention it; and every mentioned ID -> where (for typos)."""
    covered: dict[str, set[str]] = {}
    where: dict[str, list[str]] = {}
    for root, dirs, files in os.walk(TEST_DIR):
        dirs[:] = sorted(d for d in dirs if d not in ("vectors", "requirements"))
        for f in sorted(files):
            if not f.endswith(SOURCE_SUFFIXES) and f != "CMakeLists.txt":
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, ROOT)
            text = open(path, encoding="utf-8", errors="replace").read()
            if f == "CMakeLists.txt":
                spans, comment = ctest_spans(text), "#"
            elif f.endswith(".py"):
                spans, comment = [], "#"
            else:
                spans, comment = test_spans(text), "//"
            found = [(m.start(), rid) for m in MENTION.finditer(text) for rid in expand(m)]
            found += [(m.start(), f"A-{int(m.group(1))}") for m in AMBIGUITY.finditer(text)]
            for pos, rid in found:
                owner = owner_of(pos, text, spans, rel, comment)
                if ".DISABLED_" in owner:
                    continue  # a disabled test verifies nothing
                covered.setdefault(rid, set()).add(owner)
                where.setdefault(rid, []).append(f"{rel}:{text.count(chr(10), 0, pos) + 1}")
    return covered, where


# ---- the matrix -----------------------------------------------------------------------------------------------


def render(reqs: list[Requirement], covered: dict[str, set[str]], exempt: dict[str, Exemption]) -> str:
    tested = [r for r in reqs if r.rid in covered]
    untested = [r for r in reqs if r.rid not in covered]
    w = [r for r in reqs if r.rid.startswith("W-")]
    a = [r for r in reqs if r.rid.startswith("A-")]
    by_cat: dict[str, int] = {}
    for r in untested:
        cat = exempt[r.rid].category if r.rid in exempt else "(unlisted)"
        by_cat[cat] = by_cat.get(cat, 0) + 1
    must = [r for r in w if "MUST" in r.level or r.level.startswith("implicit")]
    must_tested = [r for r in must if r.rid in covered]
    file_only = [r for r in tested if all(o.startswith("tests/") for o in covered[r.rid])]
    out = []
    out.append("# Wire spec v1.2: every requirement and the tests that verify it")
    out.append("")
    out.append("Generated by `python3 tools/reqtrace/reqtrace.py write` from the tests' own mentions of requirement IDs (in")
    out.append("test names such as `W_8_27_...` or in comments); do not edit by hand. The ctest `requirements.traceability`")
    out.append("fails when a requirement is neither verified by a test nor listed in `tests/requirements/not_by_test.txt`")
    out.append("with a reason, when a listed one has since gained a test, when a test names an ID the spec does not have, or")
    out.append("when this file is out of date. The IDs and levels are those of the spec digest (`W-…` requirements, `A-…`")
    out.append("ambiguity resolutions we adopted); the text is the digest's first words. A test is named `Suite.Name`")
    out.append("(run one with `ctest --preset release -R Name`), `ctest name` is a test that is not GoogleTest (the conformance")
    out.append("scripts), and a file name means the file's header comment claims it for all of its tests.")
    out.append("")
    out.append(f"- {len(w)} requirements and {len(a)} ambiguity resolutions; **{len(tested)} of {len(reqs)} verified by tests**.")
    out.append(f"- {len(file_only)} of those are claimed only by a test file's header comment or a shared helper (marked *file*")
    out.append("  below): the file's tests verify them together, no single test is named.")
    out.append(f"- MUST, MUST NOT and `[implicit]` (binding) requirements: {len(must_tested)} of {len(must)} verified by tests;")
    rest = ", ".join(f"{n} {c}" for c, n in sorted(by_cat.items(), key=lambda kv: (-kv[1], kv[0])))
    out.append(f"  every other one is listed below with the reason it is not ({rest}).")
    out.append("")
    out.append("## Verified by tests")
    out.append("")
    out.append("| ID | level | requirement | tests |")
    out.append("|---|---|---|---|")
    for r in tested:
        names = sorted(covered[r.rid], key=lambda s: (s.startswith("tests/"), s.startswith("ctest "), s))
        shown = ", ".join(f"`{n}`" for n in names[:5])
        if len(names) > 5:
            shown += f" and {len(names) - 5} more"
        if r in file_only:
            shown = "*file* " + shown
        out.append(f"| {r.rid} | {r.level} | {r.text} | {shown} |")
    out.append("")
    out.append("## Not verified by a test, and why")
    out.append("")
    out.append("| category | meaning |")
    out.append("|---|---|")
    for c, meaning in CATEGORIES.items():
        out.append(f"| {c} | {meaning} |")
    out.append("")
    out.append("| ID | level | requirement | category | why |")
    out.append("|---|---|---|---|---|")
    for r in untested:
        e = exempt.get(r.rid)
        out.append(f"| {r.rid} | {r.level} | {r.text} | {e.category if e else '—'} | {e.reason if e else '—'} |")
    out.append("")
    return "\n".join(out)


def problems(reqs, covered, where, exemptions, spec_path) -> list[str]:
    errs = []
    known = {r.rid for r in reqs}
    exempt = {}
    for e in exemptions:
        where_e = f"{os.path.relpath(NOT_BY_TEST, ROOT)}:{e.line}"
        if not e.rid:
            errs.append(f"{where_e}: {e.reason}")
        elif e.rid not in known:
            errs.append(f"{where_e}: {e.rid} is not a requirement of the spec digest")
        elif e.category not in CATEGORIES:
            errs.append(f"{where_e}: {e.rid}: category '{e.category}' is not one of {', '.join(CATEGORIES)}")
        elif len(e.reason) < 20:
            errs.append(f"{where_e}: {e.rid}: give the reason in a sentence")
        elif e.rid in exempt:
            errs.append(f"{where_e}: {e.rid} is listed twice")
        elif e.rid in covered:
            errs.append(f"{where_e}: {e.rid} is verified by {', '.join(sorted(covered[e.rid]))} now; remove it from the list")
        exempt[e.rid] = e
    for r in reqs:
        if r.rid not in covered and r.rid not in exempt:
            errs.append(f"{r.rid} ({r.level}) is verified by no test: add one that names it, or list it in "
                        f"{os.path.relpath(NOT_BY_TEST, ROOT)} with a category and a reason")
    for rid in sorted(set(covered) - known, key=sort_key):
        errs.append(f"{', '.join(where[rid][:3])}: {rid} is not a requirement of the spec digest (a typo?)")
    if spec_path:
        if not os.path.exists(spec_path):
            print(f"reqtrace: {spec_path} is not here; the requirement list is not compared with the digest")
        else:
            fresh = {r.rid: r for r in import_spec(spec_path)}
            if set(fresh) != known or any(fresh[r.rid].level != r.level for r in reqs):
                errs.append(f"{os.path.relpath(SPEC_LIST, ROOT)} differs from {spec_path}: run reqtrace.py import-spec")
    matrix = render(reqs, covered, exempt)
    current = open(MATRIX, encoding="utf-8").read() if os.path.exists(MATRIX) else ""
    if current != matrix:
        errs.append(f"{os.path.relpath(MATRIX, ROOT)} is out of date: run python3 tools/reqtrace/reqtrace.py write")
    return errs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("--spec", help="the spec digest to compare the requirement list with, when it is present")
    sub.add_parser("write")
    i = sub.add_parser("import-spec")
    i.add_argument("spec")
    args = ap.parse_args()

    if args.cmd == "import-spec":
        reqs = import_spec(args.spec)
        write_spec_list(reqs, os.path.basename(args.spec))
        print(f"{len(reqs)} requirements written to {os.path.relpath(SPEC_LIST, ROOT)}")
        return 0
    reqs = read_spec_list()
    covered, where = scan_tests()
    exemptions = read_not_by_test()
    if args.cmd == "write":
        exempt = {e.rid: e for e in exemptions}
        with open(MATRIX, "w", encoding="utf-8") as f:
            f.write(render(reqs, covered, exempt))
        tested = sum(1 for r in reqs if r.rid in covered)
        print(f"{os.path.relpath(MATRIX, ROOT)}: {tested} of {len(reqs)} requirements verified by tests")
        return 0
    errs = problems(reqs, covered, where, exemptions, args.spec)
    for e in errs:
        print(f"reqtrace: {e}")
    if not errs:
        tested = sum(1 for r in reqs if r.rid in covered)
        print(f"reqtrace: {tested} of {len(reqs)} requirements verified by tests, the rest listed with a reason")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
