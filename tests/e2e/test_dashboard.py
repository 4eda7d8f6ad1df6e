"""The Grafana dashboard (deploy/grafana/cardwatch.json) shows only metrics
the service really exports - checked against a running `cardwatch run` and
`cardwatch feed`, not against a list kept by hand.

A dashboard that names a metric nobody exports shows "No data" forever,
and nobody notices until the day the panel is needed; a renamed metric in
processor/ would silently break it. So:
  - the file itself: valid JSON, a Prometheus data source (the
    DS_PROMETHEUS input and a `datasource` variable of type prometheus),
    the `instance` variable, every panel with a title, a description, the
    data source and at least one query (`expr`), unique panel ids, every
    gridPos inside the 24 columns and no two panels on the same cells; every
    query parses (a small PromQL tokenizer here, and `promtool check rules`
    when Debian's prometheus package is installed)
  - every metric name in every query (and in the variables' label_values)
    is taken out with that tokenizer: identifiers that are not functions,
    aggregations, keywords, label names inside {...} or by/without/on/
    ignoring (...) lists. Names are compared exactly as /metrics prints
    them, so a histogram is used as its _bucket/_sum/_count series
  - a real stack (redis-server, Apache Kafka, `cardwatch run` with a rule
    file that alerts and suppresses, events on exposed, clean and invalid
    cards; `cardwatch feed` with requests of every kind and an outcome
    reported) is scraped: every name of the dashboard must be exported by
    one of the two /metrics (a family declared with # TYPE counts even
    when this run gave it no sample, e.g. Kafka errors), and every label a
    query groups by, matches on or shows in its legend must be a label of
    its metrics. Failures name the panel. Exported metrics that no panel
    shows are printed, not failed.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker
from test_feed import Feed, TokenIssuer, _token

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "cardwatch.json"

# --------------------------------------------------------------------------
# PromQL: just enough of a tokenizer to find the metric names of a query

# Prometheus' functions (promql/functions.go) and aggregation operators.
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan",
    "atanh", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "cos", "cosh", "count_over_time", "day_of_month", "day_of_week", "day_of_year",
    "days_in_month", "deg", "delta", "deriv", "exp", "floor", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_sum", "holt_winters",
    "hour", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log10", "log2", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time",
    "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_desc", "sqrt", "stddev_over_time", "stdvar_over_time",
    "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count",
                "count_values", "bottomk", "topk", "quantile"}
# Followed by a (label, ...) list.
LABEL_LISTS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"bool", "and", "or", "unless", "offset", "inf", "nan"} | LABEL_LISTS

_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[\w+\]\])             # Grafana variables
  | (?P<str>"(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'|`[^`]*`)
  | (?P<range>\[[^\]]*\])                              # [5m], [1h:1m]
  | (?P<dur>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)(?![\w.])
  | (?P<num>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}@])
""", re.X)


def tokens(expr):
    """[(kind, text)] of a PromQL expression, blanks and Grafana variables
    left out. ValueError on a character no token starts with."""
    out, pos = [], 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise ValueError(f"cannot read {expr[pos:pos + 20]!r} in {expr!r}")
        if m.lastgroup not in ("ws", "var"):
            out.append((m.lastgroup, m.group()))
        pos = m.end()
    return out


def _closing(toks, i, open_, close):
    """Index of the token closing the bracket toks[i] (== open_)."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j][1] == open_:
            depth += 1
        elif toks[j][1] == close:
            depth -= 1
            if depth == 0:
                return j
    raise ValueError(f"unbalanced {open_!r} in {' '.join(t for _k, t in toks)}")


def promql_names(expr):
    """(metric names, label names) of a PromQL expression: the metric
    names in order of appearance; the labels it matches on ({...}) or
    groups by (by/without/on/ignoring/group_x lists). ValueError for a
    call of something that is no PromQL function (a metric name followed
    by "(" is a typo, not a query)."""
    toks = tokens(expr)
    depth = []
    for _k, t in toks:
        if t in "({":
            depth.append(t)
        elif t in ")}" and (not depth or depth.pop() + t not in ("()", "{}")):
            raise ValueError(f"unbalanced {t!r} in {expr!r}")
    if depth:
        raise ValueError(f"unclosed {depth[-1]!r} in {expr!r}")
    names, labels = [], set()
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        nxt = toks[i + 1][1] if i + 1 < len(toks) else None
        if text == "{":
            j = _closing(toks, i, "{", "}")
            for k in range(i + 1, j):
                if toks[k][0] == "ident" and k + 1 < j and \
                        toks[k + 1][1] in ("=", "!=", "=~", "!~"):
                    labels.add(toks[k][1])
            i = j + 1
            continue
        if kind == "ident":
            if text in LABEL_LISTS and nxt == "(":
                j = _closing(toks, i + 1, "(", ")")
                labels.update(t for k, t in toks[i + 2:j] if k == "ident")
                i = j + 1
                continue
            if text in AGGREGATIONS and nxt in ("(", "by", "without"):
                i += 1
                continue
            if nxt == "(":
                if text not in FUNCTIONS:
                    raise ValueError(f"{text}(...) is no PromQL function in {expr!r}")
                i += 1
                continue
            if text.lower() not in KEYWORDS:
                names.append(text)
        i += 1
    return names, labels


_LABEL_VALUES = re.compile(r"^\s*label_values\((?:(.*),)?\s*(\w+)\s*\)\s*$")
_QUERY_RESULT = re.compile(r"^\s*query_result\((.*)\)\s*$")


def variable_names(query):
    """Metric names and labels of a Grafana Prometheus variable query:
    label_values([selector,] label) or query_result(expr)."""
    m = _LABEL_VALUES.match(query)
    if m:
        names, labels = promql_names(m.group(1) or "")
        return names, labels | {m.group(2)}
    m = _QUERY_RESULT.match(query)
    if m:
        return promql_names(m.group(1))
    raise ValueError(f"unknown variable query {query!r}")


# Labels Prometheus adds to every series it scrapes (not on /metrics).
TARGET_LABELS = {"instance", "job"}


# --------------------------------------------------------------------------
# the dashboard

def _load():
    return json.loads(DASHBOARD.read_text())


def _panels(dash):
    """Every panel, those inside (collapsed) rows too."""
    for p in dash["panels"]:
        yield p
        for q in p.get("panels", []):
            yield q


def _queries(dash):
    """[(where, expr, legend)]: every panel query and variable query."""
    out = []
    for p in _panels(dash):
        for t in p.get("targets", []):
            out.append((f"panel {p['title']!r}", t.get("expr", ""), t.get("legendFormat", "")))
    for v in dash["templating"]["list"]:
        if v["type"] == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            out.append((f"variable ${v['name']}", q, ""))
    return out


def _names_of(expr):
    if expr.lstrip().startswith(("label_values(", "query_result(")):
        return variable_names(expr)
    return promql_names(expr)


def _promtool_check(exprs):
    """Every query through `promtool check rules` as a recording rule
    (Grafana variables replaced by plain values). Returns promtool's
    verdict. promtool comes from Debian's prometheus (install-deps)."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/install-deps.sh installs Debian's prometheus"
    rules = []
    for n, e in enumerate(exprs):
        e = re.sub(r"\$__(rate_interval|interval|range)\b", "5m", e)
        e = re.sub(r"\$\{[^}]*\}|\$\w+", "x", e)
        rules.append({"record": f"dashboard:q{n}", "expr": e})
    path = h.tmpdir("promtool") / "dashboard-queries.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    res = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True,
                         text=True, timeout=60)
    return res


def test_dashboard_file_and_queries():
    """The dashboard file: valid JSON, Prometheus data source (input and
    variable), the instance variable on cardwatch_ready, every panel with
    a title, a description, the data source and at least one query, unique
    ids, every panel inside the 24 columns and none on another's cells;
    every query parses (the tokenizer here, and promtool). The
    tokenizer itself is checked on known queries first, a bogus name
    included, so that a tokenizer that finds nothing cannot pass."""
    # the tokenizer on queries whose names are known
    assert promql_names('sum by (outcome) (rate(cardwatch_events_total'
                        '{instance=~"$instance"}[5m]))') == \
        (["cardwatch_events_total"], {"outcome", "instance"})
    assert promql_names("histogram_quantile(0.99, sum by (le) (rate("
                        "cardwatch_redis_rtt_seconds_bucket[$__rate_interval])))") == \
        (["cardwatch_redis_rtt_seconds_bucket"], {"le"})
    assert promql_names('sum(rate(a_total{x="sum(b)"}[5m] offset 1h)) / on (i) '
                        'group_left (j) c > bool 0 and d unless e') == \
        (["a_total", "c", "d", "e"], {"x", "i", "j"})
    assert promql_names('time() - max(cardwatch_bogus_seconds)') == \
        (["cardwatch_bogus_seconds"], set())
    assert variable_names("label_values(cardwatch_ready, instance)") == \
        (["cardwatch_ready"], {"instance"})
    for bad in ("cardwatch_ready(1)", "sum(rate(x[5m])", "a # b"):
        try:
            promql_names(bad)
        except ValueError:
            continue
        raise AssertionError(f"the tokenizer took {bad!r}")

    dash = _load()
    assert dash["schemaVersion"] >= 36, dash["schemaVersion"]
    assert any(i["name"] == "DS_PROMETHEUS" and i["type"] == "datasource" and
               i["pluginId"] == "prometheus" for i in dash["__inputs"]), dash["__inputs"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables.get("datasource")
    assert ds and ds["type"] == "datasource" and ds["query"] == "prometheus", ds
    inst = variables.get("instance")
    assert inst and inst["type"] == "query" and \
        inst["query"]["query"] == "label_values(cardwatch_ready, instance)", inst
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, v

    ids, cells, problems = set(), {}, []
    for p in _panels(dash):
        what = f"panel {p.get('id')} {p.get('title')!r}"
        if not p.get("title"):
            problems.append(f"{what}: no title")
        if p.get("id") in ids:
            problems.append(f"{what}: id used twice")
        ids.add(p.get("id"))
        g = p.get("gridPos", {})
        if not (isinstance(g.get("x"), int) and isinstance(g.get("w"), int) and
                g["x"] >= 0 and g["w"] >= 1 and g["x"] + g["w"] <= 24 and
                g.get("h", 0) >= 1 and g.get("y", -1) >= 0):
            problems.append(f"{what}: gridPos {g} not inside 24 columns")
            continue
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                if (x, y) in cells:
                    problems.append(f"{what}: overlaps {cells[(x, y)]!r} at ({x}, {y})")
                    break
                cells[(x, y)] = p.get("title")
            else:
                continue
            break
        if p["type"] == "row":      # a section heading: no query of its own
            if p.get("targets"):
                problems.append(f"{what}: a row with queries")
            continue
        if len(p.get("description", "")) < 40:
            problems.append(f"{what}: no description saying what it shows")
        if p.get("datasource") != {"type": "prometheus", "uid": "${datasource}"}:
            problems.append(f"{what}: data source {p.get('datasource')}")
        targets = p.get("targets", [])
        if not targets or not all(t.get("expr", "").strip() for t in targets):
            problems.append(f"{what}: a target without expr (or none)")
        for t in targets:
            if t.get("datasource", p.get("datasource")) != p.get("datasource"):
                problems.append(f"{what}: target {t.get('refId')} on another data source")
            try:
                if not promql_names(t.get("expr", ""))[0]:
                    problems.append(f"{what}: {t.get('expr')!r} names no metric")
            except ValueError as e:
                problems.append(f"{what}: {e}")
    assert not problems, "dashboard problems:\n  " + "\n  ".join(problems)

    queries = _queries(dash)
    res = _promtool_check([e for _w, e, _l in queries
                           if not e.lstrip().startswith("label_values(")])
    assert res.returncode == 0, f"promtool check rules:\n{res.stdout}{res.stderr}"
    print(f"    promtool: {res.stdout.strip().splitlines()[-1].strip()}")
    print(f"    {sum(1 for p in _panels(dash) if p['type'] != 'row')} panels, "
          f"{len(queries)} queries")


# --------------------------------------------------------------------------
# against the running service

RULES = """\
# test_dashboard: one rule on every exposed card, one that suppresses
rule exposed-use
  severity: high
  description: Any use of an exposed card
  when: exposed

rule repeat-cnp
  severity: low
  description: Card-not-present use of an exposed card, quiet for an hour after
  when: exposed and cnp
  suppress: 1h
"""

_TYPE = re.compile(r"^# TYPE (\S+) (\w+)\s*$", re.M)


def exported(m):
    """{metric name as a query names it: set of its label names} of one
    scrape: every sample's name, and every family a # TYPE line declares
    (a labelled family with no sample yet, e.g. no Kafka error so far,
    is exported all the same; a histogram as _bucket/_sum/_count)."""
    out = {}
    for name, labels, _v in m.samples:
        out.setdefault(name, set()).update(labels)
    for name, kind in _TYPE.findall(m.text):
        if kind in ("histogram", "summary"):
            for suffix in ("_bucket", "_sum", "_count") if kind == "histogram" \
                    else ("", "_sum", "_count"):
                out.setdefault(name + suffix, set())
        else:
            out.setdefault(name, set())
    return out


def _family(name, types):
    """The family a series name belongs to (histogram suffixes off)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and types.get(name[:-len(suffix)]) in ("histogram",
                                                                         "summary"):
            return name[:-len(suffix)]
    return name


def test_dashboard_metrics_are_exported_by_run_and_feed():
    """Every metric name of every dashboard query is on /metrics of a
    running `cardwatch run` or `cardwatch feed` (real redis-server and
    Apache Kafka, events flowing: alerts for two issuers, a suppressed hit,
    a dead letter; feed requests answered 200 and 401, an outcome
    reported), and every label a query uses is a label of its metrics.
    Missing ones are reported by panel title. The counts behind the
    series are checked exactly, so the scrape is of a run that did what
    it was given."""
    alpha = TokenIssuer("alpha", "GB", ["400000-400099"], token=_token())
    beta = TokenIssuer("beta", "US", ["510000"], token=_token())
    mk = CardMaker(1515)
    a_cards, b_cards = mk.cards("400001", 2), mk.cards("510000", 1)
    clean = mk.cards(["400002", "510000"], 20)
    breach = Breach("e2e-dash", "2024-01-01", "2024-12-31", ["pan", "expiry"],
                    a_cards + b_cards)
    rules = h.tmpdir("rules") / "dash.rules"
    rules.write_text(RULES)
    s = cw.Stack([alpha, beta], partitions=1, extra_ini=f"[rules]\npath = {rules}\n")
    s.load(breach)
    run = s.run()
    h.wait_until(lambda: s.ready()[0] == 200 and
                 s.metrics().get("cardwatch_assigned_partitions") == 1, 60,
                 "cardwatch run ready with its partition assigned")

    t0 = cw.day_ms("2024-05-01") + 12 * 3_600_000
    cnp = dict(channel="ecommerce", merchant_country="GB", response="approved")
    shop = dict(channel="card_present", merchant_country="US", response="approved")
    txns = [cw.txn("dash-a1", a_cards[0], t0, **cnp),              # both rules
            cw.txn("dash-a2", a_cards[0], t0 + 1_800_000, **cnp),  # repeat-cnp suppressed
            cw.txn("dash-a3", a_cards[1], t0 + 60_000, **shop),
            cw.txn("dash-b1", b_cards[0], t0 + 120_000, **shop)]
    txns += [cw.txn(f"dash-c{i}", c, t0 + i * 1000) for i, c in enumerate(clean)]
    bad = next(t for t, reason in cw.invalid_events(a_cards[1], "dash") if reason == "luhn")
    s.send(txns + [bad])
    n = len(txns) + 1
    m = h.wait_until(lambda: (lambda m: m.sum("cardwatch_events_total") == n and
                              m.get("cardwatch_in_flight_events") == 0 and m)(s.metrics()),
                     60, f"{n} events processed, none in flight")
    assert m.by("cardwatch_events_total", "outcome") == \
        {"clean": len(clean), "exposed": 0, "alerted": 4, "dead_letter": 1}, m.text
    assert m.by("cardwatch_alerts_total", "issuer") == {"alpha": 3, "beta": 1}
    # every alert has exposed-use (high), the highest of its hits
    assert m.by("cardwatch_alerts_by_severity_total", "severity") == \
        {"low": 0, "medium": 0, "high": 4, "critical": 0}, m.text
    hits = {(lb["rule"], lb["issuer"]): v for name, lb, v in m.samples
            if name == "cardwatch_rule_hits_total"}
    assert hits == {("exposed-use", "alpha"): 3, ("exposed-use", "beta"): 1,
                    ("repeat-cnp", "alpha"): 1}, hits
    assert m.get("cardwatch_suppressed_hits_total", rule="repeat-cnp") == 1
    assert m.get("cardwatch_dead_letters_total", reason="luhn") == 1

    feed = Feed(s.config.read_text())
    listed = feed.json("GET", "/v1/alerts?limit=100", alpha.token)["alerts"]
    assert sorted(a["alert"]["txn_id"] for a in listed) == ["dash-a1", "dash-a2", "dash-a3"]
    assert [a["alert"]["txn_id"] for a in feed.json("GET", "/v1/alerts", beta.token)[
        "alerts"]] == ["dash-b1"]
    assert feed.request("GET", "/v1/alerts", "not-a-token")[0] == 401
    aid = listed[0]["alert"]["alert_id"]
    feed.json("POST", f"/v1/alerts/{aid}/outcome", alpha.token,
              {"outcome": "confirmed_fraud"}, want=201)
    # the feed reads the outcome counts from Redis every 5 s
    fm = h.wait_until(lambda: (lambda fm: fm.get("cardwatch_rule_precision", issuer="alpha",
                                                 rule="exposed-use") == 1 and fm)(
        feed.metrics()), 20, "precision of exposed-use for alpha on the feed's /metrics")
    assert fm.get("cardwatch_feed_requests_total", status="401") == 1, fm.text
    assert fm.get("cardwatch_feed_auth_failures_total") == 1
    m = s.metrics()

    types = dict(_TYPE.findall(m.text) + _TYPE.findall(fm.text))
    have = exported(m)
    for name, labels in exported(fm).items():
        have.setdefault(name, set()).update(labels)
    sampled = {name for name, _lb, _v in m.samples + fm.samples}
    dash = _load()
    used, missing, bad_labels, no_sample = set(), {}, [], set()
    for where, expr, legend in _queries(dash):
        names, labels = _names_of(expr)
        labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
        used.update(names)
        gone = [x for x in names if x not in have]
        if gone:
            missing.setdefault(where, []).extend(gone)
            continue
        empty = [x for x in names if x not in sampled]
        if empty:           # no sample this run: its labels are not known
            no_sample.update(empty)
            continue
        known = set().union(*(have[x] for x in names)) | TARGET_LABELS
        for lb in sorted(labels - known):
            bad_labels.append(f"{where}: label {lb!r} is on none of {names} ({expr})")
    report = [f"{w}: {', '.join(sorted(set(x)))}" for w, x in missing.items()]
    assert not report, ("metric names the dashboard uses that neither "
                        "/metrics exports:\n  " + "\n  ".join(report))
    assert not bad_labels, "\n  ".join(["labels no metric of the query has:"] + bad_labels)

    families = {_family(x, types) for x in have}
    shown = {_family(x, types) for x in used}
    print(f"    {len(used)} metric names in {len(_queries(dash))} queries, all exported "
          f"(run: {len(exported(m))} names, feed: {len(exported(fm))})")
    if no_sample:
        print(f"    declared but no sample in this run: {', '.join(sorted(no_sample))}")
    print(f"    exported, on no panel: {', '.join(sorted(families - shown)) or '(none)'}")

    feed.stop()
    s.terminate(run)
