#!/usr/bin/env python3
"""`make bench-cpp`: how soon common-point-of-purchase analysis names a
breached merchant, and how often it names an innocent one.

For each of BENCH_CPP_SEEDS seeds (default 3):
  - `cardwatch gen history` simulates BENCH_CPP_TXNS transactions (default
    2,000,000) of 20,000 cards at 5,000 merchants over a year, with a
    breached web shop (60 days) and background fraud unlinked to any
    merchant; the truth (merchant, window, first linked fraud) is kept;
  - the confirmations are replayed day by day: `cardwatch cpp --as-of D`
    with every fraud that started before D, from the day of the first
    linked fraud on, until the breached merchant is the significant top
    suspect: the detection delay in days (target: within 30);
  - at the end (every confirmation in), the window estimate against the
    truth;
  - the same simulation without a breach (--no-breach) is analysed every
    7 days over the year: every significant suspect there is a false one.
Prints one line per seed and the totals. BENCH_KEEP=1 keeps the files.

    scripts/bench_cpp.py [BUILD_DIR]
"""
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DAY = 86_400_000


def day_text(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%d")


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("BUILD", "build")
    if not os.path.isabs(build):
        build = os.path.join(REPO, build)
    cw = os.path.join(build, "cardwatch")
    txns = int(os.environ.get("BENCH_CPP_TXNS", "2000000"))
    seeds = int(os.environ.get("BENCH_CPP_SEEDS", "3"))
    work = tempfile.mkdtemp(prefix="cardwatch-bench-cpp.")
    try:
        run(cw, work, txns, seeds)
    finally:
        if os.environ.get("BENCH_KEEP") == "1":
            print(f"bench-cpp: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


def setup(work):
    key = os.path.join(work, "key")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("bench " + os.urandom(32).hex() + "\n")
    ini = os.path.join(work, "cardwatch.ini")
    with open(ini, "w") as f:
        f.write(f"[card]\nkey_file = {key}\n\n[issuer bank-a]\nbins = 400001,400002\n"
                "\n[issuer bank-b]\nbins = 510000\n")
    return ini


def gen(cw, ini, work, name, txns, seed, breach):
    base = os.path.join(work, name)
    args = [cw, "gen", "history", "--config", ini, "--count", str(txns), "--seed", str(seed),
            "--format", "protobuf", "--output", base + ".pb", "--frauds", base + "-frauds.csv",
            "--truth", base + "-truth.json"]
    if not breach:
        args.append("--no-breach")
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(base + "-truth.json") as f:
        return base, json.load(f)


def cpp(cw, ini, base, as_of_ms=None):
    """One analysis; returns (report, seconds)."""
    report = base + "-report.json"
    args = [cw, "cpp", "--config", ini, "--frauds", base + "-frauds.csv", "--report", report,
            "--top", "3", base + ".pb"]
    if as_of_ms is not None:
        args += ["--as-of", str(as_of_ms)]
    t0 = time.monotonic()
    res = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.monotonic() - t0
    if res.returncode != 0:
        return None, took  # e.g. no fraud known yet at that date
    with open(report) as f:
        return json.load(f), took


def detection(cw, ini, base, truth, max_days=120):
    """Days from the first linked fraud until the merchant is the
    significant top suspect (None if not within max_days), the report
    then, and the analysis rate seen."""
    first = truth["first_linked_fraud_ms"] // DAY * DAY + DAY  # end of that day
    rates = []
    for d in range(0, max_days + 1):
        rep, took = cpp(cw, ini, base, first + d * DAY)
        if rep is None:
            continue
        rates.append(rep["transactions"] / took)
        top = rep["suspects"][0] if rep["suspects"] else None
        if top and top["merchant"] == truth["merchant"] and top["significant"]:
            return d, rep, rates
    return None, None, rates


def false_suspects(cw, ini, base, truth):
    """Analyses every 7 days over the simulated year; returns (analyses,
    analyses with a significant suspect, distinct merchants named)."""
    start, end = truth["period_start_ms"], truth["period_end_ms"]
    runs, flagged, names = 0, 0, set()
    for as_of in range(start + 30 * DAY, end + DAY, 7 * DAY):
        rep, _ = cpp(cw, ini, base, as_of)
        if rep is None:
            continue
        runs += 1
        sig = [s["merchant"] for s in rep["suspects"] if s["significant"]]
        flagged += bool(sig)
        names.update(sig)
    return runs, flagged, names


def run(cw, work, txns, seeds):
    ini = setup(work)
    print(f"bench-cpp: {txns:,} transactions per simulated year, {seeds} seed(s)")
    print(f"{'seed':>4}  {'merchant':<9} {'skimmed':>7} {'defr.':>5} {'delay':>6} "
          f"{'cases then':>10}  {'window (truth)':<24}  {'window (estimate, all in)':<24}  "
          f"{'no-breach runs':>14} {'false':>5}")
    delays, all_false, all_runs, rates = [], 0, 0, []
    for seed in range(1, seeds + 1):
        base, truth = gen(cw, ini, work, f"b{seed}", txns, seed, True)
        delay, rep, r = detection(cw, ini, base, truth)
        rates += r
        final, _ = cpp(cw, ini, base)
        top = final["suspects"][0]
        est = f"{day_text(top['window_start_ms'])}..{day_text(top['window_end_ms'])}"
        if top["merchant"] != truth["merchant"]:
            est = f"top is {top['merchant']}!"
        nb_base, nb_truth = gen(cw, ini, work, f"n{seed}", txns, seed + 1000, False)
        runs, flagged, names = false_suspects(cw, ini, nb_base, nb_truth)
        all_false += flagged
        all_runs += runs
        delays.append(delay)
        cases = rep["suspects"][0]["cases"] if rep else 0
        print(f"{seed:>4}  {truth['merchant']:<9} {truth['skimmed']:>7} {truth['defrauded']:>5} "
              f"{(str(delay) + ' d') if delay is not None else '>120 d':>6} {cases:>10}  "
              f"{truth['window_start'] + '..' + truth['window_end']:<24}  {est:<24}  "
              f"{runs:>14} {flagged:>5}" + (f" ({', '.join(sorted(names))})" if names else ""))
    found = [d for d in delays if d is not None]
    print()
    if found:
        print(f"detection delay after the first linked fraud: median {sorted(found)[len(found)//2]} days, "
              f"max {max(found)} days, {len(found)}/{len(delays)} found "
              f"(target: within 30 days: {'met' if len(found) == len(delays) and max(found) <= 30 else 'NOT met'})")
    else:
        print("detection delay: the breach was never found within 120 days")
    print(f"false suspects without a breach: {all_false} of {all_runs} weekly analyses named one")
    if rates:
        rates.sort()
        print(f"cpp rate over the history (wall, incl. start-up): median {int(rates[len(rates)//2]):,} transactions/s")


if __name__ == "__main__":
    main()
