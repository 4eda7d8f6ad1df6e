#!/usr/bin/env python3
"""Prints gcovr's JSON summary as one line per file (lines and branches
covered / total and percent), lowest line coverage first, and the totals.

    python3 scripts/coverage_table.py build/cov/coverage.json
"""
import json
import sys


def pct(covered, total):
    return 100.0 * covered / total if total else 100.0


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        s = json.load(f)
    rows = sorted(s["files"], key=lambda r: (pct(r["line_covered"], r["line_total"]),
                                              r["filename"]))
    print(f"{'file':28} {'lines':>13} {'%':>6}   {'branches':>13} {'%':>6}")
    for r in rows:
        print(f"{r['filename']:28} {r['line_covered']:6}/{r['line_total']:<6} "
              f"{pct(r['line_covered'], r['line_total']):6.1f}   "
              f"{r['branch_covered']:6}/{r['branch_total']:<6} "
              f"{pct(r['branch_covered'], r['branch_total']):6.1f}")
    print(f"{'TOTAL':28} {s['line_covered']:6}/{s['line_total']:<6} "
          f"{pct(s['line_covered'], s['line_total']):6.1f}   "
          f"{s['branch_covered']:6}/{s['branch_total']:<6} "
          f"{pct(s['branch_covered'], s['branch_total']):6.1f}")


if __name__ == "__main__":
    main()
