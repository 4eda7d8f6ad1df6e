#!/usr/bin/env python3
"""Checks that the house keeps the shape the README describes (make test):

- the README's module table names every processor/*.c once, and no file
  that is not there (a row names files as `processor/a.c`, `b.c`, ...);
- no function in processor/*.c is longer than 120 lines (from the line of
  its name to its closing brace at column 0);
- the lower layers include nothing of the layers built on them: config.c
  no feed header, and the pure modules (txn, card, alert, rules*,
  windows, route, offsets, calendar, text, timeparse, breach, tally,
  listcsv) no Kafka, Redis or libevent header.

    python3 scripts/check_tree.py      exit 0, or 1 naming each problem
"""
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 120
PURE = ("txn", "card", "cardstate", "alert", "rules", "windows", "route",
        "offsets", "calendar", "text", "timeparse", "breach", "tally",
        "listcsv", "xfilter", "rmodel", "cpp", "sim")
IO_HEADERS = re.compile(r'#include [<"](librdkafka/|hiredis/|event2/|'
                        r'redis_conn\.h|kafka_|source_|sink_|feed)')


def table_files(readme):
    """Files named in the README's module table rows."""
    out = []
    for line in readme.splitlines():
        if not line.startswith("| `processor/"):
            continue
        cell = line.split("|")[1]
        names = re.findall(r"`([^`]+\.c)`", cell)
        out += [n if n.startswith("processor/") else "processor/" + n for n in names]
    return out


def long_functions(path):
    src = path.read_text().splitlines()
    out, i = [], 0
    while i < len(src):
        m = re.match(r"^[a-z][\w \t*]*?\b(\w+)\(", src[i])
        if m and not src[i].rstrip().endswith(";"):
            j = i
            while j < len(src) and src[j] != "{" and not src[j].rstrip().endswith(";"):
                j += 1
            if j < len(src) and src[j] == "{":
                k = j + 1
                while k < len(src) and src[k] != "}":
                    k += 1
                if k - i + 1 > MAX_LINES:
                    out.append((m.group(1), i + 1, k - i + 1))
                i = k
        i += 1
    return out


def main():
    problems = []
    files = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "processor").glob("*.c"))
    listed = table_files((ROOT / "README.md").read_text())
    for f in sorted(set(files) - set(listed)):
        problems.append(f"README.md: module table: {f} is missing")
    for f in sorted(set(listed) - set(files)):
        problems.append(f"README.md: module table: {f} does not exist")
    for f in sorted({f for f in listed if listed.count(f) > 1}):
        problems.append(f"README.md: module table: {f} is listed twice")
    for f in files:
        for name, line, n in long_functions(ROOT / f):
            problems.append(f"{f}:{line}: {name}() is {n} lines (at most {MAX_LINES})")
    cfg = (ROOT / "processor" / "config.c").read_text()
    if re.search(r'#include "feed', cfg):
        problems.append("processor/config.c: includes a feed header (config is a lower layer)")
    for f in files:
        stem = Path(f).stem
        if stem.split("_")[0] in PURE:
            for n, line in enumerate((ROOT / f).read_text().splitlines(), 1):
                if IO_HEADERS.match(line):
                    problems.append(f"{f}:{n}: a pure module includes I/O: {line.strip()}")
    for p in problems:
        print(p)
    print(f"check_tree: {len(files)} modules, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
