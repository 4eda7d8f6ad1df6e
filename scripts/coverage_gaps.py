#!/usr/bin/env python3
"""Sorts the lines of processor/ that no test ran (gcovr's detailed JSON,
make coverage) by why they were not reached, so that the remaining gap is
a list of reasons rather than a percentage:

  allocation   the failure branch of an allocation (malloc, calloc,
               strdup, a *_new() constructor, libevent/jansson/protobuf-c
               allocators): reached only by an allocation that fails
  library      a library call that does not fail in practice on this
               platform (OpenSSL HMAC/EVP set-up, clock_gettime,
               pipe/eventfd, pthread) or a branch a library's contract
               rules out
  explained    a range listed in tests/coverage-gaps.txt with the reason
               it cannot or need not be reached (one entry per range:
               FILE | text found on one of its lines or on the two lines
               above it (its guard), or "in NAME()" for a range in function
               NAME | reason); a branch not taken on a line that ran is
               explained by "FILE | branch: TEXT | reason" with TEXT on
               that line
  untested     everything else: a path a test could reach and does not

    python3 scripts/coverage_gaps.py build/cov/coverage-detail.json [--list]
                                     [--explained] [--branches FILE...]

Prints per file the uncovered lines by class; --list also prints each
"untested" line range with its first source line, --explained each
explained range with its reason, --branches each line of the named
files (processor/x.c) with a branch no test took and no reason. Entries of the gap file that match no
uncovered range (the lines are run now, or the text changed) are printed
as stale, so that the list stays true.
"""
import json
import re
import sys
from pathlib import Path

ALLOC = re.compile(r"\b(malloc|calloc|realloc|strdup|strndup|[a-z_0-9]+_new[a-z_0-9]*|"
                   r"event_new|evbuffer_new|json_[a-z_]+|protobuf_c_[a-z_]+|"
                   r"asprintf|open_memstream|get_batch|copy_[a-z_]+|dup_[a-z_]+)\s*\(")
OOM_TEXT = re.compile(r"out of memory|ENOMEM|no memory|reply_oom|log_oom|\bOOM\b", re.I)
LIBRARY = re.compile(r"OpenSSL|HMAC|EVP_|RAND_bytes|clock_gettime|pipe2?\(|eventfd|"
                     r"pthread_|sigaction|evutil_make|event_base_new|"
                     r"rd_kafka_conf_set|gettimeofday|getrandom", re.I)


def classify(src, ln):
    """Class of uncovered line ln (1-based) of source lines src."""
    here = src[ln - 1]
    ctx = "\n".join(src[max(0, ln - 12):ln + 2])
    # the line itself, the two after it, or the one before it (a message,
    # then the return that carries the failure out)
    if OOM_TEXT.search("\n".join(src[max(0, ln - 2):ln + 2])):
        return "allocation"
    # the if() guarding this line: the closest preceding 'if (' at a lower
    # indentation
    ind = len(here) - len(here.lstrip())
    for k in range(ln - 2, max(-1, ln - 15), -1):
        line = src[k]
        lind = len(line) - len(line.lstrip())
        if line.strip() and lind < ind and re.match(r"\s*(\} else )?if \(|\s*\|\||\s*&&", line):
            cond = "\n".join(src[k:ln - 1])
            if re.search(r"== NULL|!\s*[a-z_>.-]+\s*(\)|\|\|)|NULL \|\|", cond):
                # a NULL check right after an allocating call
                before = "\n".join(src[max(0, k - 10):k + 1])
                if ALLOC.search(before) or ALLOC.search(cond):
                    return "allocation"
            if LIBRARY.search(cond) or LIBRARY.search(here):
                return "library"
            break
    if LIBRARY.search(here) or LIBRARY.search(ctx.splitlines()[-3] if ctx else ""):
        return "library"
    return "untested"


GAPS = Path(__file__).resolve().parent.parent / "tests" / "coverage-gaps.txt"


def read_gaps(path=GAPS):
    """[(file, text, reason, line number in the gap file)]"""
    out = []
    if not path.exists():
        return out
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = [x.strip() for x in line.split(" | ", 2)]
        if len(parts) != 3 or not all(parts):
            sys.exit(f"{path}:{n}: want FILE | TEXT | REASON")
        out.append((parts[0], parts[1], parts[2], n))
    return out


def function_of(src, ln):
    """Name of the C function line ln (1-based) is in: the nearest line
    above it that starts a definition at column 0."""
    for k in range(ln - 1, -1, -1):
        m = re.match(r"[a-z][\w \t*]*?\b(\w+)\(", src[k])
        if m and not src[k].rstrip().endswith(";"):
            return m.group(1)
    return "?"


BCLASSES = ("allocation", "library", "explained", "untested", "partial")


def branch_classes(f, line_class, explained=None):
    """Counts of the branches of file f (gcovr JSON) that no test took, by
    why: a branch on a line no test ran, or one that leads into such a
    line (the first code line after a run decision, its body), takes that
    line's class; any other branch not taken is "partial": its line and
    the line after it both ran (a condition that was never false, or one
    operand of && / || that never decided)."""
    lines = {x["line_number"]: x for x in f["lines"]
             if not x.get("gcovr/noncode") and not x.get("gcovr/excluded")}
    out = dict.fromkeys(BCLASSES, 0)
    for ln, k, n in branch_gaps(f, line_class, explained):
        out[k] += n
    return out


def branch_gaps(f, line_class, explained=None):
    """[(line, class, branches not taken)] of file f, as branch_classes
    counts them; a line in explained ({(file, line): reason}, from the
    gap file's "branch: TEXT" entries) counts as explained."""
    explained = explained or {}
    lines = {x["line_number"]: x for x in f["lines"]
             if not x.get("gcovr/noncode") and not x.get("gcovr/excluded")}
    out = []
    for ln in sorted(lines):
        x = lines[ln]
        n = sum(1 for b in x.get("branches") or [] if b["count"] == 0)
        if n == 0:
            continue
        if (f["file"], ln) in explained:
            out.append((ln, "explained", n))
            continue
        if x["count"] == 0:
            out.append((ln, line_class.get(ln, "untested"), n))
            continue
        nxt = next((k for k in range(ln + 1, ln + 6) if k in lines), None)
        if nxt is not None and lines[nxt]["count"] == 0:
            out.append((ln, line_class.get(nxt, "untested"), n))
        else:
            out.append((ln, "partial", n))
    return out


def print_branches(detail, btotals, bfile):
    total = sum(len(x.get("branches") or []) for f in detail["files"]
                for x in f["lines"] if not x.get("gcovr/noncode")
                and not x.get("gcovr/excluded"))
    missed = sum(btotals.values())
    print()
    print("branches no test took, by why (the class of the line each leads "
          "into; partial: both sides' lines ran)")
    print(f"{'file':28} {'not taken':>9} {'allocation':>11} {'library':>8} "
          f"{'explained':>10} {'untested':>9} {'partial':>8}")
    for name, c in sorted(bfile.items(), key=lambda r: -(r[1]["untested"] +
                                                          r[1]["partial"])):
        if sum(c.values()) == 0:
            continue
        print(f"{name:28} {sum(c.values()):9} {c['allocation']:11} "
              f"{c['library']:8} {c['explained']:10} {c['untested']:9} "
              f"{c['partial']:8}")
    print(f"{'TOTAL':28} {missed:9} {btotals['allocation']:11} "
          f"{btotals['library']:8} {btotals['explained']:10} "
          f"{btotals['untested']:9} {btotals['partial']:8}")
    if total:
        reasoned = btotals["allocation"] + btotals["library"] + btotals["explained"]
        print(f"branches taken: {total - missed} of {total} "
              f"({100.0 * (total - missed) / total:.1f} %); with the "
              f"{reasoned} not taken for a stated reason: "
              f"{100.0 * (total - missed + reasoned) / total:.1f} %")


def ranges(nums):
    out, start, prev = [], None, None
    for n in nums:
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        else:
            out.append((start, prev))
            start = prev = n
    if start is not None:
        out.append((start, prev))
    return out


def main():
    detail = json.loads(Path(sys.argv[1]).read_text())
    listing = "--list" in sys.argv[2:]
    show_explained = "--explained" in sys.argv[2:]
    gaps = read_gaps()
    args = sys.argv[2:]
    branch_files = set(args[args.index("--branches") + 1:]) if "--branches" in args else set()
    branch_list = []
    explained_branches = {}
    used = set()
    totals = {"allocation": 0, "library": 0, "explained": 0, "untested": 0}
    btotals = dict.fromkeys(BCLASSES, 0)
    bfile = {}
    explained_list = []
    rows = []
    for f in detail["files"]:
        src = Path(f["file"]).read_text(errors="replace").splitlines()
        miss = sorted(x["line_number"] for x in f["lines"]
                      if x["count"] == 0 and not x.get("gcovr/noncode")
                      and not x.get("gcovr/excluded"))
        by = {"allocation": [], "library": [], "explained": [], "untested": []}
        for ln in miss:
            by[classify(src, ln)].append(ln)
        untested = []
        for a, b in ranges(by["untested"]):
            text = "\n".join(src[max(0, a - 3):b])  # with its guard above
            where = f"in {function_of(src, a)}()"
            hit = next((g for g in gaps if g[0] == f["file"] and
                        (g[1] == where if g[1].startswith("in ") else g[1] in text)),
                       None)
            if hit is None:
                untested.extend(range(a, b + 1))
            else:
                used.add(hit[3])
                by["explained"].extend(range(a, b + 1))
                explained_list.append((f["file"], a, b, hit[2]))
        by["untested"] = untested
        for k in by:
            totals[k] += len(by[k])
        if miss:
            rows.append((f["file"], by, src))
        line_class = {ln: k for k, v in by.items() for ln in v}
        bgaps = [g for g in gaps if g[0] == f["file"] and g[1].startswith("branch: ")]
        for ln, k, n in branch_gaps(f, line_class):
            if k not in ("untested", "partial"):
                continue
            hit = next((g for g in bgaps if g[1][8:] in src[ln - 1]), None)
            if hit is not None:
                used.add(hit[3])
                explained_branches[(f["file"], ln)] = hit[2]
                continue
            if f["file"] in branch_files:
                    taken = [b["count"] for b in next(
                        x for x in f["lines"] if x["line_number"] == ln)["branches"]]
                    branch_list.append(f"{f['file']}:{ln}: {k} {n} not taken "
                                       f"{taken}  {src[ln - 1].strip()[:80]}")
        for k, n in branch_classes(f, line_class, explained_branches).items():
            btotals[k] += n
            bfile.setdefault(f["file"], dict.fromkeys(BCLASSES, 0))[k] += n
    rows.sort(key=lambda r: -len(r[1]["untested"]))
    print(f"{'file':28} {'not run':>8} {'allocation':>11} {'library':>8} "
          f"{'explained':>10} {'untested':>9}")
    for name, by, _src in rows:
        n = sum(len(v) for v in by.values())
        print(f"{name:28} {n:8} {len(by['allocation']):11} {len(by['library']):8} "
              f"{len(by['explained']):10} {len(by['untested']):9}")
    n = sum(totals.values())
    print(f"{'TOTAL':28} {n:8} {totals['allocation']:11} {totals['library']:8} "
          f"{totals['explained']:10} {totals['untested']:9}")
    print_branches(detail, btotals, bfile)
    stale = [g for g in gaps if g[3] not in used]
    for g in stale:
        print(f"stale: {GAPS.name}:{g[3]}: {g[0]} | {g[1]} (no uncovered range has it)")
    if show_explained:
        print()
        for name, a, b, reason in explained_list:
            where = f"{a}" if a == b else f"{a}-{b}"
            print(f"{name}:{where}: {reason}")
        for (name, ln), reason in sorted(explained_branches.items()):
            print(f"{name}:{ln}: (branch) {reason}")
    for row in branch_list:
        print(row)
    if listing:
        for name, by, src in rows:
            if not by["untested"]:
                continue
            print(f"\n{name}:")
            for a, b in ranges(by["untested"]):
                where = f"{a}" if a == b else f"{a}-{b}"
                print(f"  {where:>10}  {src[a - 1].strip()[:90]}")


if __name__ == "__main__":
    main()
