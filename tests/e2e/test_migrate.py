"""`cardwatch migrate`: exposed cards that a cardwatch before 2026-12 wrote
to Redis in the first data layout - one string key per card
<p>:card:<kid>:<fp hex> = "breach=exptag;..." and a set per breach
<p>:breach:<id>:cards of "<kid>:<fp hex>" - are moved into the card
buckets of the current layout (processor/rmodel.h), against a real
redis-server and Apache Kafka.

What the user sees: until the data is migrated, `cardwatch run` does not
read it (never misread: its cards would look clean) - /readyz 503 and an
ERROR line naming `cardwatch migrate`, intake paused, no alert; `cardwatch
migrate` exits 0 and prints its counts, leaves no key of the old layout,
every record (a retired mark "!" included) in its bucket and each breach's
members count right, and `cardwatch breaches` lists the breaches
committed; the running service then resumes by itself and delivers
exactly the alerts of the whole stream (cw.expected_alerts). A second
`migrate` finds nothing to migrate."""

import json
import random

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker, txn

PREFIX = "cw"          # [redis] prefix (the Stack does not set it)
EXPIRIES = ["2612", "2701", "2712", "2809"]


def _first_layout(s):
    """Rewrites what `cardwatch load` wrote into the first layout, as the
    version before 2026-12 left it: a key per card with the same record, a
    set per breach of its cards, breach hashes without the members count,
    no card buckets and no layout hash. Returns the records written
    {"kid:hex": record}."""
    r = s.redis
    recs = cw.card_records(r, prefix=PREFIX)
    assert recs, "nothing loaded"
    for key in r.call("KEYS", f"{PREFIX}:cards:*") + r.call("KEYS", f"{PREFIX}:layout:*"):
        r.call("DEL", key)
    for bid in r.call("SMEMBERS", f"{PREFIX}:breaches"):
        r.call("HDEL", f"{PREFIX}:breach:{bid.decode()}", "members")
    for fp, rec in recs.items():
        r.call("SET", f"{PREFIX}:card:{fp}", rec)
        for entry in rec.split(";"):
            r.call("SADD", f"{PREFIX}:breach:{entry.split('=')[0]}:cards", fp)
    return recs


def _retire(s, recs, pan, breach):
    """Marks the card retired for the breach in its first-layout record
    ("breach=exptag!", what an outcome card_reissued wrote)."""
    fp = cw.fingerprint(pan)
    entries = recs[fp].split(";")
    entries = [e + "!" if e.split("=")[0] == breach else e for e in entries]
    recs[fp] = ";".join(entries)
    s.redis.call("SET", f"{PREFIX}:card:{fp}", recs[fp])


def _cmd(s, *args):
    res = s.cardwatch(*args, check=False)
    return res.returncode, res.stdout.decode(), res.stderr.decode()


def test_run_refuses_the_first_layout_until_migrate_moves_it():
    """Two breaches of the first layout sharing a card, one card retired
    for its breach: `cardwatch run` pauses intake naming `cardwatch
    migrate` (/readyz 503, the ERROR line, no event taken, no alert);
    `migrate` moves every record (exit 0, its counts), leaves no old key,
    keeps the retired mark, counts each breach's members; `breaches`
    shows both committed with their cards; the running service resumes
    and delivers exactly the expected alerts of every event sent before
    and after (the retired card, used with another expiry, alerts no
    more, and with its exposed expiry only retired-card-use: a lost "!"
    would make it alert as exposed); a second `migrate` says there is
    nothing to migrate."""
    issuers = cw.three_issuers()
    mk = CardMaker(1414)
    c1 = mk.cards(["400001", "510000", "52000042"], 60)
    c2 = mk.cards(["400077", "510000"], 30)
    shared = c1[0]
    retired = c1[1]
    clean = mk.cards(["400002", "510000", "52000007"], 200)
    b1 = Breach("mig-shop", "2024-02-01", "2024-04-30", ["pan", "expiry"], c1)
    b2 = Breach("mig-clinic", "2024-03-01", "2024-05-31", ["pan", "expiry"], c2 + [shared])
    s = cw.Stack(issuers, partitions=2)
    s.load(b1)
    s.load(b2)
    recs = _first_layout(s)
    assert len(recs) == len(c1) + len(c2)
    assert recs[cw.fingerprint(shared)].count("=") == 2, recs[cw.fingerprint(shared)]
    _retire(s, recs, retired, b1.id)
    assert recs[cw.fingerprint(retired)].endswith("!"), recs[cw.fingerprint(retired)]

    # the retired card: used with another expiry than its exposed one
    # (Stack.load's choice) it raises nothing; with that one only
    # retired-card-use, critical (pipeline.c)
    rnd_load = random.Random(b1.id)
    exposed_exp = {p: rnd_load.choice(EXPIRIES) for p in b1.cards}[retired]
    other_exp = next(e for e in EXPIRIES if e != exposed_exp)
    live = [p for p in c1 + c2 if p != retired]
    rnd = random.Random(1414)
    base = cw.day_ms("2024-03-10")

    def stream(tag, n):
        out = []
        for i in range(n):
            pan = rnd.choice(live) if rnd.random() < 0.3 else rnd.choice(clean)
            out.append(txn(f"{tag}-{i:05d}", pan, base + rnd.randrange(20 * 86_400_000), rnd))
        out += [txn(f"{tag}-ret-{i}", retired, base + i * 60_000, rnd, expiry=other_exp)
                for i in range(3)]
        out.append(txn(f"{tag}-ret-use", retired, base + 300_000, rnd, expiry=exposed_exp))
        out.append(txn(f"{tag}-shared", shared, base + 3_600_000, rnd))
        return out
    before, after = stream("mb", 400), stream("ma", 400)
    b1_live = Breach(b1.id, b1.start, b1.end, b1.elements, [p for p in c1 if p != retired])
    expected = cw.expected_alerts(before + after, [b1_live, b2], issuers)
    for t in before + after:
        if t["txn_id"].endswith("-ret-use"):
            e = cw.expected_alerts([t], [b1], issuers)
            for a in e.values():
                a["alert"]["severity"] = "SEVERITY_CRITICAL"
                a["alert"]["hits"] = [{"rule_id": "retired-card-use",
                                       "severity": "SEVERITY_CRITICAL"}]
            expected.update(e)
    assert any(len(e["alert"]["breaches"]) == 2 for e in expected.values()), "no shared alert"
    assert sum(e["alert"]["txn_id"].startswith(("mb-ret", "ma-ret"))
               for e in expected.values()) == 2

    # the first layout: refused, intake paused, nothing taken
    proc = s.run()
    words = ["first data layout", "`cardwatch migrate`"]

    def refused():
        st, body = s.ready()
        return st == 503 and all(w in body for w in words) and body
    body = h.wait_until(refused, 30, f"/readyz 503 naming {words}")
    assert f"Redis 127.0.0.1:{s.redis.port}" in body, body
    s.send(before, name="before")
    m = h.wait_until(lambda: (mm := s.metrics()).get("cardwatch_consumption_paused") == 1
                     and mm, 30, "intake paused")
    assert m.get("cardwatch_exposed_set_ok") == 0 and m.get("cardwatch_ready") == 0
    assert m.sum("cardwatch_events_total") == 0, "an event taken over the first layout"
    assert m.sum("cardwatch_alerts_total") == 0
    assert "run `cardwatch migrate`" in proc.log_text(), proc.log_text(20)
    rc, out, err = _cmd(s, "breaches")
    assert rc == 0 and out.count("OLD LAYOUT: migrate") == 2, (out, err)

    # migrate
    rc, out, err = _cmd(s, "migrate")
    assert rc == 0, (rc, out, err)
    assert f"migrate: {len(recs)} card records moved to layout 2, 2 breaches;" in out, out
    assert "nothing to migrate" not in out, out
    r = s.redis
    assert r.call("KEYS", f"{PREFIX}:card:*") == [], "first-layout card keys left"
    assert r.call("KEYS", f"{PREFIX}:breach:*:cards") == [], "first-layout sets left"
    assert cw.card_records(r, prefix=PREFIX) == recs
    assert cw.card_record(r, retired, prefix=PREFIX).endswith("!")
    for b in (b1, b2):
        assert int(r.call("HGET", f"{PREFIX}:breach:{b.id}", "members")) == len(b.cards), b.id
    layout = r.call("HGETALL", f"{PREFIX}:layout:{cw.KEY_ID}")
    layout = {k.decode(): v.decode() for k, v in zip(layout[::2], layout[1::2])}
    assert layout["version"] == "2" and layout["entries"] == layout["committed"] == \
        str(len(recs)), layout
    rc, out, err = _cmd(s, "breaches", "--json")
    rows = {x["breach_id"]: x for x in map(json.loads, out.splitlines())}
    assert rc == 0 and {k: (x["status"], x["cards"]) for k, x in rows.items()} == \
        {b1.id: ("committed", len(b1.cards)), b2.id: ("committed", len(b2.cards))}, (out, err)
    assert "not complete" not in err, err

    # the service resumes by itself: every alert, once
    h.wait_until(lambda: s.ready()[0] == 200, 30, "/readyz 200 after the migrate")
    s.send(after, name="after")
    h.wait_until(lambda: s.metrics().sum("cardwatch_events_total") == len(before + after), 60,
                 "every event processed")
    s.terminate(proc)      # (drains: every alert is on its topic)
    cw.check_alerts(s.alerts(), expected, exact_once=True)

    # again: nothing left to move, nothing changed
    rc, out, err = _cmd(s, "migrate")
    assert rc == 0 and "migrate: 0 card records moved to layout 2, 0 breaches;" in out and \
        "(nothing to migrate)" in out, (rc, out, err)
    assert cw.card_records(r, prefix=PREFIX) == recs
