"""`cardwatch load | breaches | unload` against a real redis-server:
idempotent loading, rejected rows by line with the PAN masked, counts, and
unloading that keeps cards another breach still lists."""

import re

import harness as h
import cwstack as cw
from cwstack import Breach, CardMaker


def _content(s):
    """Every key with its type and value, order-free (DUMP bytes and set
    or hash iteration order may differ without a change of content). Each
    commit writes a new generation marker and commit time by design: those
    two are left out here and checked on their own."""
    out = {}
    for k, typ, value, _ in s.redis.dump():
        if k == b"cw:exposed":
            continue
        if typ == "set":
            value = sorted(value)
        elif typ == "hash":
            value = sorted((f, v) for f, v in zip(value[::2], value[1::2])
                           if f != b"committed_at_ms")
        out[k] = (typ, value)
    return out


def _marker(s):
    return s.redis.client().call("GET", "cw:exposed")


def _keys(s, pattern):
    return sorted(k.decode() for k in s.redis.client().call("KEYS", pattern))


def test_load_is_idempotent_reports_bad_rows_and_unloads():
    s = cw.Stack(cw.three_issuers(), partitions=1)
    mk = CardMaker(707)
    shared = mk.card("400001")
    only1 = [mk.card("400002") for _ in range(4)]
    only2 = [mk.card("510000")]
    bad_luhn = shared[:-1] + str((int(shared[-1]) + 1) % 10)
    csv = s.dir / "list.csv"
    csv.write_text("pan,expiry,cvv\n" + f"{shared},2612,123\n"
                   + "".join(f"{p},2701,999\n" for p in only1)
                   + f"{bad_luhn},2612,1\n"        # line 7: Luhn
                   + "12345,2612,1\n"               # line 8: too short
                   + f"{only1[0]},1399,1\n")        # line 9: bad expiry, loads
    args = ["load", "--breach", "b1", "--window-start", "2024-01-01",
            "--window-end", "2024-03-31", "--elements", "pan,expiry,cvv2", csv]
    first = s.cardwatch(*args)
    out1 = first.stdout.decode() + first.stderr.decode()
    assert (f"8 rows read from {csv}: 6 cards loaded (5 new), 2 rejected, 1 loaded "
            "without expiry (not YYMM); 5 cards in the breach") in out1, out1
    assert "list.csv:7: rejected: PAN " + cw.mask(bad_luhn) + " fails the Luhn check" in out1
    assert "list.csv:8: rejected: PAN is not 13-19 digits" in out1, out1
    assert "list.csv:9: expiry of " + cw.mask(only1[0]) in out1, out1
    assert "column 'cvv' is ignored" in out1, out1
    assert "listpack" not in out1, "Redis's defaults need no warning"
    dump1 = _content(s)
    marker1 = _marker(s)
    hash1 = dict(zip(*[iter(s.redis.client().call("HGETALL", "cw:breach:b1"))] * 2))
    assert hash1[b"status"] == b"committed" and hash1[b"cards"] == b"5", hash1
    second = s.cardwatch(*args)
    out2 = second.stdout.decode() + second.stderr.decode()
    assert "(0 new)" in out2 and "5 cards in the breach" in out2, out2
    assert _content(s) == dump1, "loading the same list again changed Redis"
    assert _marker(s) not in (None, marker1), "a commit sets a new marker"

    # a Redis whose compact hashes are smaller than the buckets: said (the
    # load goes on: memory, not correctness)
    c = s.redis.client()
    c.call("CONFIG", "SET", "hash-max-listpack-entries", "32")
    try:
        third = s.cardwatch(*args)
    finally:
        c.call("CONFIG", "SET", "hash-max-listpack-entries", "128")
    out3 = third.stdout.decode() + third.stderr.decode()
    assert third.returncode == 0 and "(0 new)" in out3, out3
    assert f"Redis 127.0.0.1:{s.redis.port} has hash-max-listpack-entries 32: a bucket " \
        "of cards larger than that" in out3 and "set it to 128 or more" in out3, out3
    assert "hash-max-listpack-value" not in out3, out3

    b2 = Breach("b2", "2024-02-01", "2024-02-29", ["pan"], [shared] + only2)
    s.load(b2)
    listing = s.cardwatch("breaches", "--json").stdout.decode()
    rows = {r["breach_id"]: r for r in map(__import__("json").loads,
                                            listing.splitlines())}
    assert rows["b1"]["cards"] == 5 and rows["b2"]["cards"] == 2, rows
    assert rows["b1"]["elements"] == "pan,expiry,cvv2"
    assert len(cw.card_records(s.redis.client())) == 6

    out = s.cardwatch("unload", "b1").stdout.decode()
    assert "5 cards removed" in out, out
    # b1's own cards are gone, the shared card stays exposed through b2
    recs = cw.card_records(s.redis.client())
    assert len(recs) == 2, recs
    rec = recs[cw.fingerprint(shared)]
    assert rec.startswith("b2=") and "b1=" not in rec, rec
    assert _keys(s, "cw:breach:b1*") == []
    assert _keys(s, "cw:card:*") == [], "no key per card (layout 2)"
    assert _marker(s) is not None, "unload keeps a marker (a new one)"
    gone = s.cardwatch("unload", "b1", check=False)
    assert gone.returncode == 1 and b"no breach 'b1'" in gone.stderr, gone.stderr
    # nothing card-like anywhere in what these commands printed
    for text in (out1, out2, listing, out):
        assert not [m for m in h.luhn_scan(text.encode()) if m.decode() in
                    [shared, bad_luhn] + only1 + only2], text


def _cards_in_redis(s, breach, pans):
    """How many of pans have a record naming the breach in Redis, the
    breach's members count, and the count `breaches --json` shows."""
    c = s.redis.client()
    have = sum(1 for p in pans
               if f"{breach}=" in (cw.card_record(c, p) or ""))
    members = int(c.call("HGET", f"cw:breach:{breach}", "members") or 0)
    listing = s.cardwatch("breaches", "--json").stdout.decode()
    rows = {r["breach_id"]: r for r in map(__import__("json").loads, listing.splitlines())}
    return have, members, rows.get(breach, {}).get("cards")


def test_load_reads_every_row_of_any_csv():
    """RFC 4180 CSV: a bare CR ends a row (before: it joined two rows and
    one card was lost with exit 0), a CR-only file, a UTF-8 BOM, quoted
    fields with doubled quotes and line breaks; a column named twice is
    refused; the summary always gives rows read, loaded and rejected, for
    an empty list too."""
    s = cw.Stack(cw.three_issuers(), partitions=1)
    mk = CardMaker(1104)

    def load(breach, name, data, check=True):
        path = s.dir / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        res = s.cardwatch("load", "--breach", breach, "--window-start", "2024-01-01",
                          "--window-end", "2024-03-31", "--elements", "pan,expiry", path,
                          check=check)
        return path, res.returncode, res.stdout.decode() + res.stderr.decode()

    def summary(path, rows, loaded, new, rejected, no_exp, in_breach):
        return (f"{rows} rows read from {path}: {loaded} cards loaded ({new} new), "
                f"{rejected} rejected, {no_exp} loaded without expiry (not YYMM); "
                f"{in_breach} cards in the breach")

    # The red team's file: LF ends the header, a bare CR the first row.
    red = ["4000010000000001", "4000010000000019"]
    path, rc, out = load("cr1", "cr1.csv", f"pan,expiry\n{red[0]},2612\r{red[1]},2612\n")
    assert rc == 0, out
    assert summary(path, 2, 2, 2, 0, 0, 2) in out, out
    assert _cards_in_redis(s, "cr1", red) == (2, 2, 2)

    # Old Mac line ends throughout (before: 0 cards, exit 0).
    cr = mk.cards("400001", 3)
    path, rc, out = load("cr2", "cr2.csv", "pan,expiry\r" + "".join(f"{p},2701\r" for p in cr))
    assert rc == 0, out
    assert summary(path, 3, 3, 3, 0, 0, 3) in out, out
    assert _cards_in_redis(s, "cr2", cr) == (3, 3, 3)

    # A spreadsheet export: BOM, CRLF, quoted fields before the PAN with
    # commas, doubled quotes and a line break (before: the BOM failed the
    # file and the quotes shifted the columns).
    xl = mk.cards("510000", 3)
    body = ("\ufeffname,\"pan\",expiry\r\n"
            f"\"Smith, \"\"JJ\"\", Jr\",\"{xl[0]}\",2612\r\n"
            f"\"1 Main St\r\nSpringfield\",{xl[1]},2701\r\n"
            f"plain,{xl[2]},2702\r\n"
            f"\"x\ny\",{cw.luhn_break(xl[0])},2612\r\n")   # lines 6-7: Luhn
    path, rc, out = load("xl", "xl.csv", body)
    assert rc == 0, out
    assert summary(path, 4, 3, 3, 1, 0, 3) in out, out
    assert f"xl.csv:6: rejected: PAN {cw.mask(cw.luhn_break(xl[0]))} fails the Luhn check" in out, out
    assert _cards_in_redis(s, "xl", xl) == (3, 3, 3)

    # A column named twice: refused before any card is read, file:line.
    dup = mk.cards("400002", 2)
    path, rc, out = load("dup", "dup.csv", f"pan,expiry,PAN\n{dup[0]},2612,{dup[1]}\n",
                         check=False)
    assert rc == 1, out
    assert "dup.csv:1: column 'PAN' is named twice (columns 1 and 3)" in out, out
    assert "load of breach dup stopped after 0 rows read from" in out, out
    assert _cards_in_redis(s, "dup", dup)[:2] == (0, 0)

    # No data rows: still a complete summary, and a warning.
    path, rc, out = load("none", "none.csv", "pan,expiry\r\n")
    assert rc == 0, out
    assert summary(path, 0, 0, 0, 0, 0, 0) in out, out
    assert "no card of " + str(path) + " was loaded (no data rows)" in out, out

    for log in s.logs:
        text = log.read_bytes()
        leaked = [m for m in h.luhn_scan(text) if m.decode() in red + cr + xl + dup]
        assert not leaked, f"{log}: a card number in the output"


def _fp_text(pan, key_id=cw.KEY_ID, key_hex=cw.KEY_HEX):
    """A card's fingerprint as alerts show it, computed here (independent of
    the C code): "<key id>:" + hex of the first 16 bytes of
    HMAC-SHA256(key, PAN)."""
    import hashlib
    import hmac
    mac = hmac.new(bytes.fromhex(key_hex), pan.encode(), hashlib.sha256).digest()
    return f"{key_id}:{mac[:16].hex()}"


def test_load_fingerprint_list_as_suspected_breach():
    """Issue 16: the list `cardwatch cpp --emit-breach` writes - fingerprints,
    no card numbers - loads with --suspected: `breaches` says suspected and
    counts its cards, and exactly its cards alert; a list under another
    key id is refused (exit 1, file:line, both key ids) with nothing written
    to Redis; `gen`, which needs card numbers, refuses a fingerprint list;
    a load without --suspected records the breach as known."""
    issuers = cw.three_issuers()
    s = cw.Stack(issuers, partitions=1)
    mk = CardMaker(1616)
    listed = mk.cards(["400001", "510000", "40005001"], 6)
    clean = mk.cards(["400002", "510000"], 4)
    b = Breach("sus", "2024-03-01", "2024-03-31", ["pan", "name"], listed)

    # another key's fingerprints: refused before anything is written
    other = s.dir / "other-key.csv"
    other.write_text("fingerprint\n" + "".join(
        f"{_fp_text(p, key_id='k-old')}\n" for p in listed))
    res = s.cardwatch("load", "--breach", "old", "--window-start", "2024-03-01",
                      "--window-end", "2024-03-31", "--elements", "pan", "--suspected",
                      other, check=False)
    out = res.stdout.decode() + res.stderr.decode()
    assert res.returncode == 1, out
    assert (f"{other}:2: fingerprint under key id 'k-old', but the configured [card] key "
            f"id is '{cw.KEY_ID}'") in out, out
    assert "nothing was written to Redis" in out, out
    assert s.redis.client().call("KEYS", "*") == [], "a refused list wrote to Redis"

    # the breach list: header any case, upper-case hex, first_fraud (cpp's
    # column) passed over; one row not a fingerprint, rejected by its line
    fps = [_fp_text(p) for p in listed]
    fps[1] = fps[1].upper().replace(cw.KEY_ID.upper(), cw.KEY_ID)
    lst = s.dir / "suspected.csv"
    lst.write_text("Fingerprint,first_fraud\n"
                   + "".join(f"{fp},2024-03-0{i + 1}\n" for i, fp in enumerate(fps))
                   + f"{cw.KEY_ID}:0011,\n")                      # line 8
    gen = h.run_tool([h.tool("cardwatch"), "gen", "txns", "--config", s.config, "--count",
                      "1", "--exposed", lst, "--output", "-"], timeout=30, check=False)
    assert gen.returncode == 1 and \
        f"{lst} is a fingerprint list; this command needs card numbers" in \
        gen.stderr.decode(), gen.stderr
    load = ["load", "--breach", b.id, "--window-start", b.start, "--window-end", b.end,
            "--elements", "pan,name", lst]
    res = s.cardwatch(*load[:-1], "--suspected", lst)
    out = res.stdout.decode() + res.stderr.decode()
    assert (f"breach sus: 7 rows read from {lst}: 6 cards loaded (6 new), 1 rejected, "
            "0 loaded without expiry (not YYMM); 6 cards in the breach") in out, out
    assert f"suspected.csv:8: rejected: fingerprint {cw.KEY_ID}:0011 is not" in out, out
    listing = s.cardwatch("breaches", "--json").stdout.decode()
    rows = {r["breach_id"]: r for r in map(__import__("json").loads, listing.splitlines())}
    assert set(rows) == {"sus"}, rows
    assert rows["sus"]["suspected"] is True and rows["sus"]["cards"] == 6 and \
        rows["sus"]["status"] == "committed" and rows["sus"]["elements"] == "pan,name", rows
    table = s.cardwatch("breaches").stdout.decode()
    assert re.search(r"^sus\s.*\bcommitted\s+yes\s+pan,name", table, re.M), table

    # alerts for the listed cards only, as for any breach
    day = 86_400_000
    txns = [cw.txn(f"fp-{i:03d}", p, b.start_ms + (i + 1) * day)
            for i, p in enumerate(listed + clean)]
    expected = cw.expected_alerts(txns, [b], issuers)
    assert len(expected) == len(listed)
    s.send(txns)
    s.finish(s.run("--exit-at-end"))
    cw.check_alerts(s.alerts(expect_count=len(listed)), expected, exact_once=True)

    # loaded again without --suspected: a known breach, the same cards
    res = s.cardwatch(*load)
    assert "6 cards loaded (0 new)" in res.stdout.decode(), res.stdout
    listing = s.cardwatch("breaches", "--json").stdout.decode()
    assert __import__("json").loads(listing)["suspected"] is False, listing
    for log in s.logs:
        text = log.read_bytes()
        assert not [m for m in h.luhn_scan(text) if m.decode() in listed + clean], log
