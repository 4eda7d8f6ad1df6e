#!/usr/bin/env bash
# check_prometheus.sh [WORKDIR] - `make prometheus-check`, part of make test:
#   1. `promtool check config` of deploy/prometheus/prometheus.yml, which
#      checks the rule file it loads (cardwatch-rules.yml) too;
#   2. `promtool test rules` of cardwatch-rules.test.yml, run in WORKDIR
#      (default build/prometheus) beside a copy of the rules whose alerts
#      keep only their templated `summary` annotation: promtool compares
#      every annotation of a firing alert, and the tests state when each
#      alert fires, its labels and its summary, not the prose (description,
#      action), whose templates step 1 already parsed.
# promtool comes from Debian's prometheus package (scripts/install-deps.sh).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${1:-$REPO/build/prometheus}
command -v promtool >/dev/null || {
  echo "check_prometheus: promtool is missing (scripts/install-deps.sh installs Debian's prometheus)" >&2
  exit 1
}
mkdir -p "$WORK"
promtool check config "$REPO/deploy/prometheus/prometheus.yml" >"$WORK/check.log" 2>&1 || {
  cat "$WORK/check.log" >&2
  exit 1
}
# keep `summary`, drop the other annotations (lines indented under
# `annotations:` deeper than summary's own key)
awk '
  /^ *annotations:$/ { inann = 1; ind = -1; print; next }
  inann {
    match($0, /^ */); cur = RLENGTH
    if ($0 !~ /^ *$/ && ind < 0) ind = cur
    if ($0 !~ /^ *$/ && cur < ind) { inann = 0; print; next }
    if (cur == ind) keep = ($0 ~ /^ *summary:/)
    if (keep) print
    next
  }
  { print }
' "$REPO/deploy/prometheus/cardwatch-rules.yml" >"$WORK/cardwatch-rules.yml"
cp "$REPO/deploy/prometheus/cardwatch-rules.test.yml" "$WORK/"
n_alerts=$(grep -c '^ *- alert:' "$REPO/deploy/prometheus/cardwatch-rules.yml")
[[ $(grep -c '^ *- alert:' "$WORK/cardwatch-rules.yml") == "$n_alerts" ]] || {
  echo "check_prometheus: the stripped copy lost alerts" >&2
  exit 1
}
# every alert of the rules has a case that fires and one that stays silent
for a in $(sed -n 's/^ *- alert: *//p' "$REPO/deploy/prometheus/cardwatch-rules.yml"); do
  python3 - "$a" "$WORK/cardwatch-rules.test.yml" <<'PY'
import re, sys
name, text = sys.argv[1], open(sys.argv[2]).read()
cases = re.split(r"\n\s*- eval_time:", text)[1:]
mine = [c for c in cases if re.search(r"alertname:\s*%s\s*\n" % re.escape(name), c)]
fires = any("exp_labels" in c for c in mine)
silent = any(re.search(r"exp_alerts:\s*\[\]", c) for c in mine)
if not (fires and silent):
    sys.exit(f"check_prometheus: {name} needs a case that fires and one that stays silent "
             f"(fires: {fires}, silent: {silent})")
PY
done
(cd "$WORK" && promtool test rules cardwatch-rules.test.yml)
echo "prometheus: config and $n_alerts alerting rules checked; rule unit tests passed"
