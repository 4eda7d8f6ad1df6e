#!/usr/bin/env python3
"""Runs the end-to-end tests: every function test_* in tests/e2e/test_*.py,
in file order, each with a time limit; every process a test started is
stopped after it, pass or fail.

    python3 tests/e2e/run.py [--build DIR] [--asan-build DIR] [--only NAME]...
                             [--skip NAME]... [--timeout SECONDS] [--keep]
                             [--list]

--only matches a test function name, MODULE.FUNCTION, a module name
(test_harness) or a shell pattern (*redis*); repeatable. --skip leaves out
what it matches the same way (make e2e-asan leaves out a few scenarios,
see ASAN_SKIP in the Makefile).
Prints "PASS name (1.2s)" / "FAIL name (1.2s)" + traceback per test and ends
with exactly one line "e2e: N passed, M failed"; exit status 1 if any test
failed, 2 if no test matched.
Temporary files and logs live in one session directory, removed after a clean
run and kept (path printed) when something failed or with --keep.
"""

import argparse
import fnmatch
import importlib
import inspect
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import harness  # noqa: E402


class TestTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise TestTimeout("test exceeded its time limit")


def _on_term(signum, frame):
    # Turn SIGTERM/SIGHUP into an exception so finally-blocks and atexit run.
    raise KeyboardInterrupt(f"signal {signum}")


def discover():
    tests = []
    for path in sorted(HERE.glob("test_*.py")):
        modname = path.stem
        try:
            mod = importlib.import_module(modname)
        except Exception:  # noqa: BLE001 - reported as a failing test
            tests.append((f"{modname} (import)", modname, None, traceback.format_exc()))
            continue
        funcs = [f for n, f in inspect.getmembers(mod, inspect.isfunction)
                 if n.startswith("test_") and f.__module__ == mod.__name__]
        funcs.sort(key=lambda f: f.__code__.co_firstlineno)
        for f in funcs:
            tests.append((f.__name__, modname, f, None))
    return tests


def selected(name, modname, patterns):
    if not patterns:
        return True
    full = f"{modname}.{name}"
    return any(p in (name, modname, full) or fnmatch.fnmatch(name, p) or fnmatch.fnmatch(full, p)
               for p in patterns)


def main():
    ap = argparse.ArgumentParser(description="cardwatch end-to-end tests")
    ap.add_argument("--build", default="build", help="build directory (default: build)")
    ap.add_argument("--asan-build", default="build/asan",
                    help="ASan+UBSan build directory (default: build/asan)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="run only matching tests (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="NAME",
                    help="leave out matching tests (repeatable)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="time limit per test in seconds (default 300)")
    ap.add_argument("--keep", action="store_true", help="keep the session directory")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    args = ap.parse_args()

    harness.configure(build=args.build, asan_build=args.asan_build)
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    signal.signal(signal.SIGALRM, _on_alarm)

    tests = [t for t in discover() if selected(t[0], t[1], args.only)
             and not (args.skip and selected(t[0], t[1], args.skip))]
    if args.list:
        for name, modname, _, _ in tests:
            print(f"{modname}.{name}")
        return 0

    passed = failed = skipped = 0
    interrupted = False
    for name, modname, func, import_error in tests:
        if import_error:
            failed += 1
            print(f"FAIL {name}", flush=True)
            print("    " + import_error.rstrip().replace("\n", "\n    "), flush=True)
            continue
        harness.begin_test(name)
        t0 = time.monotonic()
        outcome, detail = "PASS", ""
        try:
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
            try:
                func()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except harness.Skip as e:
            outcome, detail = "SKIP", str(e)
        except KeyboardInterrupt:
            outcome, detail, interrupted = "FAIL", "interrupted\n", True
        except BaseException:  # noqa: BLE001 - a failing test, whatever it raised
            outcome, detail = "FAIL", traceback.format_exc()
        finally:
            procs = harness.processes(name)
            try:
                harness.cleanup_processes()
            except BaseException:  # noqa: BLE001
                if outcome == "PASS":
                    outcome, detail = "FAIL", "cleanup failed:\n" + traceback.format_exc()
        secs = time.monotonic() - t0
        if outcome == "PASS":
            passed += 1
            print(f"PASS {name} ({secs:.1f}s)", flush=True)
        elif outcome == "SKIP":
            skipped += 1
            print(f"SKIP {name}: {detail}", flush=True)
        else:
            failed += 1
            print(f"FAIL {name} ({secs:.1f}s)", flush=True)
            print("    " + detail.rstrip().replace("\n", "\n    "), flush=True)
            for p in procs:
                print(f"    log of {p.name} (pid {p.pid}, exit {p.returncode}): {p.log}",
                      flush=True)
        if interrupted:
            break

    harness.cleanup_processes()
    harness.stop_spares()
    root = harness.config.root
    if root is not None:
        if failed or interrupted or args.keep:
            print(f"e2e: logs and temporary files kept in {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    if not tests:
        print(f"e2e: no test matches {' '.join(args.only) or '(none found)'}")
    if skipped:
        print(f"e2e: {skipped} skipped")
    print(f"e2e: {passed} passed, {failed} failed", flush=True)
    if failed or interrupted:
        return 1
    return 0 if tests else 2


if __name__ == "__main__":
    sys.exit(main())
