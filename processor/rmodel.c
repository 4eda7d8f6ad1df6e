/* rmodel.c - see rmodel.h. */
#include "rmodel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char RMODEL_LUA_ADD[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "local out = {}\n"
    "local found = false\n"
    "if cur then\n"
    "  for e in string.gmatch(cur, '[^;]+') do\n"
    "    if string.match(e, '^([^=]*)=') == ARGV[1] then\n"
    "      local keep = string.sub(e, -1) == '!' and '!' or ''\n"
    "      table.insert(out, ARGV[1] .. '=' .. ARGV[2] .. keep)\n"
    "      found = true\n"
    "    else table.insert(out, e) end\n"
    "  end\n"
    "end\n"
    "if not found then table.insert(out, ARGV[1] .. '=' .. ARGV[2]) end\n"
    "table.sort(out)\n"
    "local rec = table.concat(out, ';')\n"
    "if rec ~= cur then redis.call('SET', KEYS[1], rec) end\n"
    "return redis.call('SADD', KEYS[2], ARGV[3])\n";

const char RMODEL_LUA_COMMIT[] =
    "local n = redis.call('SCARD', KEYS[2])\n"
    "redis.call('HSET', KEYS[1], 'status', 'committed', 'cards', n,\n"
    "  'committed_at_ms', ARGV[3])\n"
    "redis.call('SADD', KEYS[3], ARGV[1])\n"
    "redis.call('SET', KEYS[4], ARGV[2])\n"
    "return n\n";

const char RMODEL_LUA_REMOVE[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "if not cur then return 0 end\n"
    "local out = {}\n"
    "local removed = 0\n"
    "for e in string.gmatch(cur, '[^;]+') do\n"
    "  if string.match(e, '^([^=]*)=') == ARGV[1] then removed = 1\n"
    "  else table.insert(out, e) end\n"
    "end\n"
    "if #out == 0 then redis.call('DEL', KEYS[1])\n"
    "elseif removed == 1 then\n"
    "  redis.call('SET', KEYS[1], table.concat(out, ';'))\n"
    "end\n"
    "return removed\n";

const char RMODEL_LUA_RECORD_DELIVERY[] =
    "local who = ARGV[1] == '' and 'unrouted' or ARGV[1]\n"
    "if not redis.call('SET', KEYS[1], who, 'NX', 'EX', ARGV[4]) then\n"
    "  return 0\n"
    "end\n"
    "if ARGV[1] == '' then return 1 end\n"
    "local sid = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*',\n"
    "  'alert_id', ARGV[2], 'alert', ARGV[3])\n"
    "redis.call('XTRIM', KEYS[3], 'MINID', '~', ARGV[6])\n"
    "redis.call('HSET', KEYS[2], 'issuer', ARGV[1], 'stream_id', sid,\n"
    "  'alert', ARGV[3])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[4], 'alerts', 1)\n"
    "redis.call('HINCRBY', KEYS[4], 'severity:' .. ARGV[7], 1)\n"
    "for r in string.gmatch(ARGV[8], '[^,]+') do\n"
    "  redis.call('HINCRBY', KEYS[4], 'rule:' .. r, 1)\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[9], ARGV[1])\n"
    "return 1\n";

const char RMODEL_LUA_OUTCOMES[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  out[i] = redis.call('HGET', k, 'outcome') or ''\n"
    "end\n"
    "return out\n";

const char RMODEL_LUA_OUTCOME[] =
    "local iss = redis.call('HGET', KEYS[1], 'issuer')\n"
    "if iss ~= ARGV[1] then return {404, ''} end\n"
    "local cur = redis.call('HGET', KEYS[1], 'outcome')\n"
    "if cur then\n"
    "  if cur == ARGV[2] then return {200, cur} end\n"
    "  return {409, cur}\n"
    "end\n"
    "redis.call('HSET', KEYS[1], 'outcome', ARGV[2], 'note', ARGV[3],\n"
    "  'outcome_at_ms', ARGV[4])\n"
    "redis.call('HINCRBY', KEYS[2], 'outcome:' .. ARGV[2], 1)\n"
    "for r in string.gmatch(ARGV[5], '[^,]+') do\n"
    "  redis.call('HINCRBY', KEYS[2], 'rule_outcome:' .. r .. ':' .. ARGV[2], 1)\n"
    "end\n"
    "if ARGV[7] == '1' then\n"
    "  local rec = redis.call('GET', KEYS[3])\n"
    "  if rec then\n"
    "    local out = {}\n"
    "    for e in string.gmatch(rec, '[^;]+') do\n"
    "      local b = string.match(e, '^([^=]*)=')\n"
    "      for x in string.gmatch(ARGV[6], '[^,]+') do\n"
    "        if x == b and string.sub(e, -1) ~= '!' then e = e .. '!' end\n"
    "      end\n"
    "      table.insert(out, e)\n"
    "    end\n"
    "    redis.call('SET', KEYS[3], table.concat(out, ';'))\n"
    "  end\n"
    "end\n"
    "return {201, ARGV[2]}\n";

static int fit(char *buf, int n)
{
    if (n < 0 || n >= RMODEL_KEY_MAX) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

int rmodel_card_key(char *buf, const char *prefix, const char *kid,
                    const char *fp)
{
    /* On the hot path (one key per event): plain copies, no printf. */
    size_t lp = strlen(prefix), lk = strlen(kid), lf = strlen(fp);
    size_t n = lp + 6 + lk + 1 + lf;
    if (n >= RMODEL_KEY_MAX) {
        buf[0] = '\0';
        return -1;
    }
    char *p = buf;
    memcpy(p, prefix, lp);
    p += lp;
    memcpy(p, ":card:", 6);
    p += 6;
    memcpy(p, kid, lk);
    p += lk;
    *p++ = ':';
    memcpy(p, fp, lf + 1);
    return (int)n;
}

int rmodel_breach_key(char *buf, const char *prefix, const char *id)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:breach:%s", prefix, id));
}

int rmodel_breach_cards_key(char *buf, const char *prefix, const char *id)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:breach:%s:cards",
                             prefix, id));
}

int rmodel_breaches_key(char *buf, const char *prefix)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:breaches", prefix));
}

int rmodel_exposed_key(char *buf, const char *prefix)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:exposed", prefix));
}

enum rmodel_bstatus rmodel_breach_status(const char *status)
{
    if (status == NULL || strcmp(status, "committed") == 0) {
        return RMODEL_B_COMMITTED;
    }
    if (strcmp(status, "unloading") == 0) {
        return RMODEL_B_UNLOADING;
    }
    /* "loading", and anything unknown: never visible by mistake. */
    return RMODEL_B_LOADING;
}

int rmodel_breach_intact(const char *id, const char *recorded,
                         long long present, char *why, size_t whylen)
{
    char *end = NULL;
    long long want = recorded ? strtoll(recorded, &end, 10) : 0;
    if (recorded == NULL || end == recorded || *end != '\0' || want < 0) {
        want = 0; /* no count recorded (older data): nothing to compare */
    }
    if (present >= want) {
        return 1;
    }
    snprintf(why, whylen, "breach %s has %lld of %lld cards in Redis", id,
             present < 0 ? 0 : present, want);
    return 0;
}

int rmodel_delivered_key(char *buf, const char *prefix, const char *id)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:delivered:%s", prefix,
                             id));
}

int rmodel_alert_key(char *buf, const char *prefix, const char *id)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:alert:%s", prefix, id));
}

int rmodel_feed_key(char *buf, const char *prefix, const char *issuer)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:feed:%s", prefix,
                             issuer));
}

int rmodel_feedstats_key(char *buf, const char *prefix, const char *issuer)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:feedstats:%s", prefix,
                             issuer));
}

int rmodel_feed_channel(char *buf, const char *prefix)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:feed", prefix));
}

int rmodel_record_parse(const char *s, size_t len, struct rmodel_entry *out,
                        size_t cap)
{
    size_t n = 0;
    size_t i = 0;
    while (i < len) {
        size_t start = i;
        while (i < len && s[i] != ';') {
            i++;
        }
        size_t elen = i - start;
        if (elen > 0) {
            const char *e = s + start;
            const char *eq = memchr(e, '=', elen);
            if (eq == NULL) {
                return -1;
            }
            size_t idlen = (size_t)(eq - e);
            size_t taglen = elen - idlen - 1;
            int retired = taglen > 0 && e[elen - 1] == '!';
            taglen -= (size_t)retired;
            if (idlen == 0 || idlen > BREACH_ID_MAX ||
                (taglen != 0 && taglen != CARD_EXPTAG_HEX_LEN)) {
                return -1;
            }
            if (n < cap) {
                memcpy(out[n].breach_id, e, idlen);
                out[n].breach_id[idlen] = '\0';
                memcpy(out[n].exptag, eq + 1, taglen);
                out[n].exptag[taglen] = '\0';
                out[n].retired = retired;
                n++;
            }
        }
        i++; /* skip ';' */
    }
    return (int)n;
}
