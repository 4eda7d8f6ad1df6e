/* kafka_seek.c - see kafka_seek.h.
 *
 * Each partition has two lookups, its start and its end, each a
 * kseek_search. A round assigns every partition that still searches at
 * the probe of its start (or, once the start is known, of its end) and
 * polls until each has its first message at or after that offset, or its
 * end-of-partition event. A probe is applied to both lookups of its
 * partition, and the end never lies before the start: a known start is
 * where the end's search begins, a known end where the start's ends.
 */
#include "kafka_seek.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "text.h"

/* Longest single poll, so the deadline is checked often enough. */
#define POLL_SLICE_MS 100

/* clang-format off */
const char *const kafka_seek_props[] = {
    "group.id", "cardwatch-seek",
    "enable.auto.commit", "false",
    "enable.auto.offset.store", "false",
    "enable.partition.eof", "true",
    "auto.offset.reset", "earliest",
    "max.partition.fetch.bytes", "65536",
    "fetch.wait.max.ms", "10",
    NULL,
};
/* clang-format on */

enum { B_START = 0, B_END = 1 };

enum how { HOW_TRIVIAL = 0, HOW_BROKER, HOW_SEARCH };

struct lookup {
    struct kseek_search s;
    int broker_none; /* the broker answered -1 */
    enum how how;
};

struct part {
    int32_t partition;
    int64_t low, high;
    struct lookup b[2];           /* B_START, B_END */
    int waiting;                  /* probe of this round not answered yet */
    int64_t mid;                  /* probe offset of this round */
    rd_kafka_resp_err_t last_err; /* for a timeout message */
};

struct seek {
    rd_kafka_t *rk;
    const char *topic;
    uint64_t deadline_ns;
    int timeout_ms;
    struct part *parts;
    size_t n;
    struct kseek_stats st;
    rd_kafka_resp_err_t last_err; /* of no partition, for a timeout */
    char *err;
    size_t errlen;
};

/* Milliseconds left before the deadline (0 when it has passed). */
static int remaining_ms(const struct seek *s)
{
    uint64_t now = clock_mono_ns();
    if (now >= s->deadline_ns) {
        return 0;
    }
    uint64_t left = (s->deadline_ns - now + 999999) / 1000000;
    return left > (uint64_t)s->timeout_ms ? s->timeout_ms : (int)left;
}

static void search_finish(struct kseek_search *b)
{
    b->pending = 0;
    b->check_last = 0;
    b->lo = b->hi;
}

void kseek_search_init(struct kseek_search *b, int64_t ts, int64_t low,
                       int64_t high, int check_last)
{
    memset(b, 0, sizeof(*b));
    b->ts = ts;
    b->lo = low;
    b->hi = high > low ? high : low;
    b->hi_msg = b->hi;
    b->pending = high > low;
    b->check_last = b->pending && check_last;
}

int64_t kseek_search_next(const struct kseek_search *b)
{
    if (b->check_last) {
        /* From the end back: 1, 2, 4... offsets before high, over a run
         * of offsets without messages (hi_msg is still high there). */
        int64_t back = b->hi_msg - b->hi > 1 ? b->hi_msg - b->hi : 1;
        return b->hi - back > b->lo ? b->hi - back : b->lo;
    }
    return b->lo + (b->hi - b->lo) / 2;
}

void kseek_search_apply(struct kseek_search *b, int64_t mid, int found,
                        int64_t off, int64_t ts)
{
    if (!b->pending || mid < b->lo || mid >= b->hi || (found && off < mid)) {
        return;
    }
    if (found && off < b->hi) {
        b->check_last = 0; /* a message settles what the check was for */
    }
    if (!found || off >= b->hi) {
        b->hi = mid;
    } else if (ts < b->ts) {
        b->lo = off + 1;
    } else {
        b->hi = mid;
        b->hi_msg = off;
    }
    if (b->lo >= b->hi) {
        search_finish(b);
    }
}

int64_t kseek_search_result(const struct kseek_search *b)
{
    return b->hi_msg;
}

/* Sets a search to a known answer (a message offset, or high). */
static void search_set(struct kseek_search *b, int64_t off)
{
    b->hi = off;
    b->hi_msg = off;
    search_finish(b);
}

/* The answer is known to be at or after position v. */
static void search_raise_lo(struct kseek_search *b, int64_t v)
{
    if (!b->pending) {
        return;
    }
    if (v >= b->hi) {
        search_finish(b); /* hi and hi_msg are the same place */
    } else if (v > b->lo) {
        b->lo = v;
    }
}

/* The answer is known to be at or before message offset v. */
static void search_cap_hi(struct kseek_search *b, int64_t v)
{
    if (!b->pending || v >= b->hi) {
        return;
    }
    b->hi = v;
    b->hi_msg = v;
    if (b->lo >= b->hi) {
        search_finish(b);
    }
}

static int cmp_part(const void *a, const void *b)
{
    const struct part *x = a;
    const struct part *y = b;
    return (x->partition > y->partition) - (x->partition < y->partition);
}

/* Checks a boolean property of the handle. Returns 1 when it is "true". */
static int conf_is_true(rd_kafka_t *rk, const char *name)
{
    char v[16];
    size_t sz = sizeof(v);
    if (rd_kafka_conf_get(rd_kafka_conf(rk), name, v, &sz) !=
        RD_KAFKA_CONF_OK) {
        return 0;
    }
    return strcmp(v, "true") == 0;
}

static int check_handle(struct seek *s)
{
    char gid[8];
    size_t sz = sizeof(gid);
    rd_kafka_topic_partition_list_t *sub = NULL;

    if (rd_kafka_type(s->rk) != RD_KAFKA_CONSUMER) {
        text_errf(s->err, s->errlen, "kafka seek: needs a consumer handle");
        return -1;
    }
    /* sz is the full length, NUL included, even when gid is too short. */
    if (rd_kafka_conf_get(rd_kafka_conf(s->rk), "group.id", gid, &sz) !=
            RD_KAFKA_CONF_OK ||
        sz <= 1) {
        text_errf(s->err, s->errlen,
                  "kafka seek: the consumer needs a group.id (librdkafka's "
                  "assign requires one; it is never joined)");
        return -1;
    }
    if (conf_is_true(s->rk, "enable.auto.commit")) {
        text_errf(s->err, s->errlen,
                  "kafka seek: the consumer must have "
                  "enable.auto.commit=false (a seek never commits)");
        return -1;
    }
    if (!conf_is_true(s->rk, "enable.partition.eof")) {
        text_errf(s->err, s->errlen,
                  "kafka seek: the consumer must have "
                  "enable.partition.eof=true (a probe past the last message "
                  "would wait forever)");
        return -1;
    }
    if (rd_kafka_subscription(s->rk, &sub) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        int cnt = sub->cnt;
        rd_kafka_topic_partition_list_destroy(sub);
        if (cnt > 0) {
            text_errf(s->err, s->errlen,
                      "kafka seek: the consumer has a subscription; use a "
                      "handle of its own");
            return -1;
        }
    }
    return 0;
}

/* Reads the topic's partitions from the metadata into s->parts. It asks
 * for all topics: a request naming the topic may create it on a broker
 * with auto.create.topics.enable (librdkafka 2.0.2's mock cluster does),
 * and a mistyped topic must not come into existence. */
static int load_partitions(struct seek *s)
{
    const struct rd_kafka_metadata *md = NULL;
    int rc = -1;

    rd_kafka_resp_err_t e =
        rd_kafka_metadata(s->rk, 1, NULL, &md, remaining_ms(s));
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        text_errf(s->err, s->errlen, "topic %s: metadata: %s", s->topic,
                  rd_kafka_err2str(e));
        goto out;
    }
    const struct rd_kafka_metadata_topic *t = NULL;
    for (int i = 0; i < md->topic_cnt; i++) {
        if (strcmp(md->topics[i].topic, s->topic) == 0) {
            t = &md->topics[i];
            break;
        }
    }
    if (t == NULL || t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt == 0)) {
        text_errf(s->err, s->errlen, "topic %s does not exist", s->topic);
        goto out;
    }
    if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        text_errf(s->err, s->errlen, "topic %s: metadata: %s", s->topic,
                  rd_kafka_err2str(t->err));
        goto out;
    }
    s->parts = calloc((size_t)t->partition_cnt, sizeof(*s->parts));
    if (s->parts == NULL) {
        text_errf(s->err, s->errlen, "kafka seek: out of memory");
        goto out;
    }
    s->n = (size_t)t->partition_cnt;
    for (size_t i = 0; i < s->n; i++) {
        s->parts[i].partition = t->partitions[i].id;
    }
    qsort(s->parts, s->n, sizeof(*s->parts), cmp_part);
    rc = 0;
out:
    if (md != NULL) {
        rd_kafka_metadata_destroy(md);
    }
    return rc;
}

static int load_watermarks(struct seek *s, int64_t from_ms, int64_t to_ms)
{
    for (size_t i = 0; i < s->n; i++) {
        struct part *p = &s->parts[i];
        int64_t lo = -1;
        int64_t hi = -1;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(
            s->rk, s->topic, p->partition, &lo, &hi, remaining_ms(s));
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR || lo < 0 || hi < lo) {
            text_errf(s->err, s->errlen,
                      "topic %s partition %" PRId32 ": watermarks: %s",
                      s->topic, p->partition,
                      e != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(e)
                                                      : "invalid");
            return -1;
        }
        p->low = lo;
        p->high = hi;
        for (int k = 0; k < 2; k++) {
            struct lookup *b = &p->b[k];
            kseek_search_init(&b->s, k == B_START ? from_ms : to_ms, lo, hi, 0);
            b->how = b->s.pending ? HOW_SEARCH : HOW_TRIVIAL;
        }
        if (to_ms == INT64_MAX) {
            search_set(&p->b[B_END].s, hi);
            p->b[B_END].how = HOW_TRIVIAL;
        }
    }
    return 0;
}

/* Asks the broker's time index for lookup `which` of every partition
 * still searching. Never fails: whatever it cannot answer is searched. */
static void ask_broker(struct seek *s, int which)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)s->n);
    for (size_t i = 0; i < s->n; i++) {
        struct lookup *b = &s->parts[i].b[which];
        /* Negative times are ListOffsets' "latest"/"earliest" codes. */
        if (b->s.pending && b->s.ts >= 0) {
            rd_kafka_topic_partition_list_add(l, s->topic,
                                              s->parts[i].partition)
                ->offset = b->s.ts;
        }
    }
    if (l->cnt == 0 || rd_kafka_offsets_for_times(s->rk, l, remaining_ms(s)) !=
                           RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(l);
        return;
    }
    for (int k = 0; k < l->cnt; k++) {
        const rd_kafka_topic_partition_t *tp = &l->elems[k];
        struct part key = {.partition = tp->partition};
        struct part *p =
            bsearch(&key, s->parts, s->n, sizeof(*s->parts), cmp_part);
        if (p == NULL || tp->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            continue;
        }
        struct lookup *b = &p->b[which];
        if (tp->offset >= 0) {
            int64_t off = tp->offset;
            off = off < p->low ? p->low : off > p->high ? p->high : off;
            search_set(&b->s, off);
            b->how = HOW_BROKER;
        } else if (tp->offset == RD_KAFKA_OFFSET_END) {
            b->broker_none = 1;
            b->s.check_last = 1;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

/* The end is never before the start: once the start is known, the end's
 * search begins there; once the end is known, the start's ends there. */
static void link_bounds(struct part *p)
{
    struct kseek_search *st = &p->b[B_START].s;
    struct kseek_search *en = &p->b[B_END].s;
    if (!st->pending) {
        search_raise_lo(en, kseek_search_result(st));
    }
    if (!en->pending) {
        search_cap_hi(st, kseek_search_result(en));
    }
}

static void apply_probe(struct seek *s, struct part *p, int found, int64_t off,
                        int64_t ts)
{
    s->st.probes++;
    p->waiting = 0;
    for (int k = 0; k < 2; k++) {
        kseek_search_apply(&p->b[k].s, p->mid, found, off, ts);
    }
    link_bounds(p);
}

static struct part *find_part(struct seek *s, const rd_kafka_message_t *m)
{
    if (m->rkt == NULL || strcmp(rd_kafka_topic_name(m->rkt), s->topic) != 0) {
        return NULL;
    }
    struct part key = {.partition = m->partition};
    return bsearch(&key, s->parts, s->n, sizeof(*s->parts), cmp_part);
}

/* Errors after which waiting longer cannot help. */
static int permanent(rd_kafka_resp_err_t e)
{
    return e == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
           e == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE ||
           e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
           e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
           e == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED;
}

/* Handles one polled event. Returns -1 on an error that ends the call. */
static int on_message(struct seek *s, const rd_kafka_message_t *m)
{
    struct part *p = find_part(s, m);
    if (p == NULL && m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        s->last_err = m->err; /* e.g. all brokers down */
    }
    if (p == NULL || !p->waiting) {
        return 0; /* another topic, a finished partition, a late extra */
    }
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (m->offset >= p->mid) {
            apply_probe(s, p, 0, 0, 0);
        }
        return 0;
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        p->last_err = m->err;
        if (permanent(m->err)) {
            text_errf(
                s->err, s->errlen,
                "topic %s partition %" PRId32 " at offset %" PRId64 ": %s",
                s->topic, p->partition, p->mid, rd_kafka_message_errstr(m));
            return -1;
        }
        return 0;
    }
    if (m->offset < p->mid) {
        return 0; /* from an earlier round */
    }
    rd_kafka_timestamp_type_t tstype;
    int64_t ts = rd_kafka_message_timestamp(m, &tstype);
    if (tstype == RD_KAFKA_TIMESTAMP_NOT_AVAILABLE) {
        text_errf(s->err, s->errlen,
                  "topic %s partition %" PRId32 " offset %" PRId64
                  ": message has no timestamp (message format before Kafka "
                  "0.10): cannot seek by time",
                  s->topic, p->partition, m->offset);
        return -1;
    }
    apply_probe(s, p, 1, m->offset, ts);
    return 0;
}

/* Picks this round's probe of each searching partition and assigns them.
 * Returns how many partitions probe, or -1 on error. */
static int start_round(struct seek *s)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)s->n);
    int n = 0;
    for (size_t i = 0; i < s->n; i++) {
        struct part *p = &s->parts[i];
        /* The start first: its answer narrows the end's search. */
        struct kseek_search *b = p->b[B_START].s.pending ? &p->b[B_START].s
                                 : p->b[B_END].s.pending ? &p->b[B_END].s
                                                         : NULL;
        p->waiting = 0;
        if (b == NULL) {
            continue;
        }
        p->mid = kseek_search_next(b);
        p->waiting = 1;
        rd_kafka_topic_partition_list_add(l, s->topic, p->partition)->offset =
            p->mid;
        n++;
    }
    if (n > 0) {
        rd_kafka_resp_err_t e = rd_kafka_assign(s->rk, l);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            text_errf(s->err, s->errlen, "topic %s: assign: %s", s->topic,
                      rd_kafka_err2str(e));
            n = -1;
        } else {
            s->st.rounds++;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return n;
}

static void timeout_error(struct seek *s)
{
    rd_kafka_resp_err_t last = s->last_err;
    size_t waiting = 0;
    const struct part *first = NULL;
    for (size_t i = 0; i < s->n; i++) {
        if (s->parts[i].waiting) {
            if (first == NULL) {
                first = &s->parts[i];
            }
            waiting++;
        }
    }
    assert(first != NULL); /* search() times out only while one waits */
    if (first->last_err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        last = first->last_err;
    }
    text_errf(s->err, s->errlen,
              "topic %s: timed out after %d ms waiting for partition %" PRId32
              " at offset %" PRId64 " (%zu partition(s) unanswered%s%s)",
              s->topic, s->timeout_ms, first->partition, first->mid, waiting,
              last != RD_KAFKA_RESP_ERR_NO_ERROR ? "; last error: " : "",
              last != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(last) : "");
}

/* Probe rounds until every lookup is resolved. */
static int search(struct seek *s)
{
    for (;;) {
        int n = start_round(s);
        if (n <= 0) {
            return n;
        }
        while (n > 0) {
            int left = remaining_ms(s);
            if (left == 0) {
                timeout_error(s);
                return -1;
            }
            rd_kafka_message_t *m = rd_kafka_consumer_poll(
                s->rk, left < POLL_SLICE_MS ? left : POLL_SLICE_MS);
            if (m == NULL) {
                continue;
            }
            int rc = on_message(s, m);
            rd_kafka_message_destroy(m);
            if (rc != 0) {
                return -1;
            }
            n = 0;
            for (size_t i = 0; i < s->n; i++) {
                n += s->parts[i].waiting;
            }
        }
    }
}

static void count_lookups(struct seek *s)
{
    for (size_t i = 0; i < s->n; i++) {
        for (int k = 0; k < 2; k++) {
            const struct lookup *b = &s->parts[i].b[k];
            if (b->s.pending) {
                continue;
            }
            if (b->how == HOW_BROKER ||
                (b->broker_none &&
                 kseek_search_result(&b->s) == s->parts[i].high)) {
                s->st.broker_answered++;
            } else if (b->how == HOW_SEARCH) {
                s->st.searched++;
            }
        }
    }
}

int kafka_seek_range(rd_kafka_t *rk, const char *topic, int64_t from_ms,
                     int64_t to_ms, int timeout_ms, int force_search,
                     struct kseek_part **out, size_t *n_out,
                     struct kseek_stats *stats, char *err, size_t errlen)
{
    struct seek s = {
        .rk = rk,
        .topic = topic,
        .timeout_ms = timeout_ms,
        .err = err,
        .errlen = errlen,
    };
    struct kseek_part *res = NULL;
    int assigned = 0;
    int rc = -1;

    if (out != NULL) {
        *out = NULL;
    }
    if (n_out != NULL) {
        *n_out = 0;
    }
    if (rk == NULL || topic == NULL || *topic == '\0' || out == NULL ||
        n_out == NULL) {
        text_errf(err, errlen, "kafka seek: no handle, topic or result");
        goto out;
    }
    if (timeout_ms <= 0) {
        text_errf(err, errlen, "kafka seek: timeout must be > 0 ms, not %d",
                  timeout_ms);
        goto out;
    }
    if (to_ms < from_ms) {
        text_errf(err, errlen,
                  "kafka seek: the end of the range (%" PRId64
                  " ms) is before its start (%" PRId64 " ms)",
                  to_ms, from_ms);
        goto out;
    }
    s.deadline_ns = clock_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    if (check_handle(&s) != 0) {
        goto out;
    }
    assigned = 1; /* from here on, leave the handle unassigned */
    if (load_partitions(&s) != 0 || load_watermarks(&s, from_ms, to_ms) != 0) {
        goto out;
    }
    if (!force_search) {
        ask_broker(&s, B_START);
        for (size_t i = 0; i < s.n; i++) {
            link_bounds(&s.parts[i]);
        }
        ask_broker(&s, B_END);
        for (size_t i = 0; i < s.n; i++) {
            link_bounds(&s.parts[i]);
        }
    }
    if (search(&s) != 0) {
        goto out;
    }
    res = calloc(s.n > 0 ? s.n : 1, sizeof(*res));
    if (res == NULL) {
        text_errf(err, errlen, "kafka seek: out of memory");
        goto out;
    }
    for (size_t i = 0; i < s.n; i++) {
        const struct part *p = &s.parts[i];
        res[i].partition = p->partition;
        res[i].low = p->low;
        res[i].high = p->high;
        res[i].start = kseek_search_result(&p->b[B_START].s);
        res[i].end = kseek_search_result(&p->b[B_END].s);
        if (res[i].end < res[i].start) {
            res[i].end = res[i].start; /* a broker answer out of order */
        }
    }
    *out = res;
    *n_out = s.n;
    res = NULL;
    rc = 0;
out:
    if (assigned) {
        rd_kafka_assign(rk, NULL);
    }
    count_lookups(&s);
    if (stats != NULL) {
        *stats = s.st;
    }
    free(res);
    free(s.parts);
    return rc;
}

void kafka_seek_free(struct kseek_part *p)
{
    free(p);
}
