"""`cardwatch load | breaches | unload` against a real redis-server:
idempotent loading, rejected rows by line with the PAN masked, counts, and
unloading that keeps cards another breach still lists."""

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
    assert "6 cards loaded (5 new), 2 rejected, 5 cards in the breach" in out1, out1
    assert "list.csv:7: rejected: PAN " + cw.mask(bad_luhn) + " fails the Luhn check" in out1
    assert "list.csv:8: rejected: PAN is not 13-19 digits" in out1, out1
    assert "list.csv:9: expiry of " + cw.mask(only1[0]) in out1, out1
    assert "column 'cvv' is ignored" in out1, out1
    dump1 = _content(s)
    marker1 = _marker(s)
    hash1 = dict(zip(*[iter(s.redis.client().call("HGETALL", "cw:breach:b1"))] * 2))
    assert hash1[b"status"] == b"committed" and hash1[b"cards"] == b"5", hash1
    second = s.cardwatch(*args)
    out2 = second.stdout.decode() + second.stderr.decode()
    assert "(0 new)" in out2 and "5 cards in the breach" in out2, out2
    assert _content(s) == dump1, "loading the same list again changed Redis"
    assert _marker(s) not in (None, marker1), "a commit sets a new marker"

    b2 = Breach("b2", "2024-02-01", "2024-02-29", ["pan"], [shared] + only2)
    s.load(b2)
    listing = s.cardwatch("breaches", "--json").stdout.decode()
    rows = {r["breach_id"]: r for r in map(__import__("json").loads,
                                            listing.splitlines())}
    assert rows["b1"]["cards"] == 5 and rows["b2"]["cards"] == 2, rows
    assert rows["b1"]["elements"] == "pan,expiry,cvv2"
    assert len(_keys(s, "cw:card:*")) == 6

    out = s.cardwatch("unload", "b1").stdout.decode()
    assert "5 cards removed" in out, out
    # b1's own cards are gone, the shared card stays exposed through b2
    card_keys = _keys(s, "cw:card:*")
    assert len(card_keys) == 2, card_keys
    fp_shared = cw.fingerprint(shared).split(":")[1]
    assert any(k.endswith(fp_shared) for k in card_keys)
    rec = s.redis.client().call("GET", [k for k in card_keys if k.endswith(fp_shared)][0])
    assert rec.decode().startswith("b2=") and "b1=" not in rec.decode(), rec
    assert _keys(s, "cw:breach:b1*") == []
    assert _marker(s) is not None, "unload keeps a marker (a new one)"
    gone = s.cardwatch("unload", "b1", check=False)
    assert gone.returncode == 1 and b"no breach 'b1'" in gone.stderr, gone.stderr
    # nothing card-like anywhere in what these commands printed
    for text in (out1, out2, listing, out):
        assert not [m for m in h.luhn_scan(text.encode()) if m.decode() in
                    [shared, bad_luhn] + only1 + only2], text
