#!/usr/bin/env python3
"""chartjs_version.py [--c]: the Chart.js version web/package-lock.json
pins (the copy scripts/fetch_web.sh installs and the binary embeds).
Prints it, or with --c the C source of `const char *chartjs_version(void)`
returning it. Fails (exit 1) when the lock file has no Chart.js or the
version is not plain digits and dots (it becomes part of a URL path)."""
import json
import re
import sys
from pathlib import Path

LOCK = Path(__file__).resolve().parents[1] / "web" / "package-lock.json"

try:
    version = json.loads(LOCK.read_text())["packages"]["node_modules/chart.js"]["version"]
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.exit(f"chartjs_version.py: no Chart.js version in {LOCK}: {e}")
if not re.fullmatch(r"[0-9]+(\.[0-9]+)*", str(version)):
    sys.exit(f"chartjs_version.py: unexpected Chart.js version {version!r} in {LOCK}")
if sys.argv[1:] == ["--c"]:
    print(f"/* generated from web/package-lock.json by scripts/chartjs_version.py;"
          f" do not edit */\n"
          f"const char *chartjs_version(void);\n"
          f"const char *chartjs_version(void)\n{{\n    return \"{version}\";\n}}")
else:
    print(version)
