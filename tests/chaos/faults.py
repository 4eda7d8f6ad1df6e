"""Faults of the chaos suite: a seeded plan and what each fault does.

Kinds (each ends with its recovery: the fault is over when the system is
whole again, waited for on conditions, before the next one starts):

  cw_kill9         kill -9 of a `cardwatch run` instance; a new one starts
                   after a drawn down time
  cw_term          SIGTERM (drain, commit, exit 0) of an instance; a new
                   one starts after a drawn down time
  cw_add           a new instance joins the group (rebalance)
  cw_remove        an instance leaves (SIGTERM) and is not replaced
  cw_pause         slow consumer: SIGSTOP of an instance for a drawn time,
                   then SIGCONT (beyond the session timeout the group
                   rebalances without it)
  broker_pause     SIGSTOP of a broker for a drawn time, then SIGCONT (a
                   hang, not a close; beyond 3 s the controller fences it)
  broker_kill      kill -9 of a broker, restarted after a drawn down time
  controller_kill  kill -9 of the active KRaft controller (read from the
                   brokers' logs), restarted once another one is active
  redis_pause      SIGSTOP of the Redis master for a drawn time below the
                   sentinels' down-after (a hang: no failover), SIGCONT
  redis_failover   kill -9 of the Redis master: the sentinels promote the
                   replica, the old master comes back as a replica

The plan is a function of the seed alone (kinds, targets as fractions of
the live set, durations, gaps), so a failure replays with the same seed;
only timing differs between runs. cw_add and cw_remove are drawn as one
kind, "cw_scale", resolved by the instance count (2..4), which the plan
also determines.
"""

import random

KINDS = ["cw_kill9", "cw_term", "cw_add", "cw_remove", "cw_pause", "broker_pause",
         "broker_kill", "controller_kill", "redis_pause", "redis_failover"]
DRAWN = ["cw_kill9", "cw_term", "cw_scale", "cw_pause", "broker_pause", "broker_kill",
         "controller_kill", "redis_pause", "redis_failover"]

# Per profile: weights of the drawn kinds, the minimum count of each in a
# run of --faults N (short), durations (seconds, uniform in [lo, hi]).
# Redis hangs stay below the sentinels' down-after (1.5 s): a hang, not a
# failover. "short" is the make-test run: cheap kinds often, every kind at
# least once, short durations; "long" is make chaos.
PROFILES = {
    "short": {
        "weights": {"cw_kill9": 2, "cw_term": 3, "cw_scale": 3, "cw_pause": 30,
                    "broker_pause": 26, "broker_kill": 0, "controller_kill": 0,
                    "redis_pause": 26, "redis_failover": 0},
        # the one broker restart is the controller's (a broker too, in
        # KRaft's combined mode): a restart costs ~8 s of the budget
        "min": {"cw_kill9": 2, "cw_term": 2, "cw_scale": 2, "cw_pause": 1, "broker_pause": 1,
                "controller_kill": 1, "redis_pause": 1, "redis_failover": 1},
        "cw_pause": (0.1, 0.6), "broker_pause": (0.1, 0.6), "redis_pause": (0.1, 0.6),
        "down": (0.0, 0.3), "gap": (0.0, 0.2),
    },
    "long": {
        "weights": {"cw_kill9": 8, "cw_term": 8, "cw_scale": 8, "cw_pause": 14,
                    "broker_pause": 12, "broker_kill": 5, "controller_kill": 4,
                    "redis_pause": 12, "redis_failover": 4},
        "min": {},
        "cw_pause": (0.2, 8.0), "broker_pause": (0.2, 6.0), "redis_pause": (0.1, 1.2),
        "down": (0.0, 4.0), "gap": (0.2, 3.0),
    },
    # no faults at all: the stream and the checker alone (a baseline)
    "none": None,
}


def plan(seed, profile, n_min=0):
    """Endless iterator of planned faults: dicts {"n", "kind" (DRAWN),
    "u" (target selector in [0, 1)), "dur" (pause length), "down" (down
    time before a restart), "gap" (stream time after the fault)}. With
    n_min, the first n_min hold every kind's minimum count, the rest drawn
    by weight, shuffled; then weighted draws go on."""
    prof = PROFILES[profile]
    if prof is None:
        return
    rnd = random.Random(f"chaos-faults-{seed}")
    kinds = [k for k in DRAWN if prof["weights"].get(k)]
    weights = [prof["weights"][k] for k in kinds]

    def params(n, kind):
        lo, hi = prof.get(kind, (0.0, 0.0))
        return {"n": n, "kind": kind, "u": rnd.random(), "dur": round(rnd.uniform(lo, hi), 3),
                "down": round(rnd.uniform(*prof["down"]), 3),
                "gap": round(rnd.uniform(*prof["gap"]), 3)}

    n = 0
    if n_min:
        block = [k for k, c in prof["min"].items() for _ in range(c)]
        block += rnd.choices(kinds, weights, k=max(0, n_min - len(block)))
        rnd.shuffle(block)
        for kind in block:
            n += 1
            yield params(n, kind)
    while True:
        n += 1
        yield params(n, rnd.choices(kinds, weights)[0])
