/* rmodel.c - see rmodel.h. */
#include "rmodel.h"

#include <inttypes.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* What every card script shares: the layout (level, split) and the
 * bucket of a 16-byte fingerprint (rmodel_bucket in Lua: exact, Lua's
 * numbers hold 2^53). */
#define LUA_LAYOUT \
    "local function bkt(fp, L, s)\n" \
    "  local a, b, c, d = string.byte(fp, 1, 4)\n" \
    "  local h = ((a * 256 + b) * 256 + c) * 256 + d\n" \
    "  local n = h % (2 ^ L)\n" \
    "  if n < s then n = h % (2 ^ (L + 1)) end\n" \
    "  return string.format('%d', n)\n" \
    "end\n" \
    "local function layout(k)\n" \
    "  local v = redis.call('HMGET', k, 'level', 'split', 'entries')\n" \
    "  return tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0\n" \
    "end\n"

/* Read-only scripts say so: Redis then runs them on a replica and while
 * writes are paused (CLIENT PAUSE WRITE, a failover), as it would MGET. */
#define LUA_READ_ONLY "#!lua flags=no-writes\n"

const char RMODEL_LUA_LOOKUP[] =
    LUA_READ_ONLY
    LUA_LAYOUT
    "local out = {redis.call('GET', KEYS[1])}\n"
    "local L, s = layout(KEYS[2])\n"
    "for i = 2, #ARGV do\n"
    "  out[i] = redis.call('HGET', ARGV[1] .. bkt(ARGV[i], L, s), ARGV[i])\n"
    "end\n"
    "return out\n";

const char RMODEL_LUA_ADD[] =
    LUA_LAYOUT
    "local L, s = layout(KEYS[1])\n"
    "local id, added, fresh = ARGV[2], 0, 0\n"
    "for i = 3, #ARGV - 1, 2 do\n"
    "  local fp, key = ARGV[i], ARGV[1] .. bkt(ARGV[i], L, s)\n"
    "  local mine = id .. '=' .. ARGV[i + 1]\n"
    "  if redis.call('HSETNX', key, fp, mine) == 1 then\n"
    "    added = added + 1; fresh = fresh + 1\n"
    "  else\n"
    "    local cur = redis.call('HGET', key, fp)\n"
    "    local out, found = {}, false\n"
    "    for e in string.gmatch(cur, '[^;]+') do\n"
    "      if string.match(e, '^([^=]*)=') == id then\n"
    "        table.insert(out, mine .. (string.sub(e, -1) == '!' and '!' or ''))\n"
    "        found = true\n"
    "      else table.insert(out, e) end\n"
    "    end\n"
    "    if not found then table.insert(out, mine); added = added + 1 end\n"
    "    table.sort(out)\n"
    "    local rec = table.concat(out, ';')\n"
    "    if rec ~= cur then redis.call('HSET', key, fp, rec) end\n"
    "  end\n"
    "end\n"
    "if added > 0 then redis.call('HINCRBY', KEYS[2], 'members', added) end\n"
    "if fresh > 0 then redis.call('HINCRBY', KEYS[1], 'entries', fresh) end\n"
    "return {added, fresh}\n";

const char RMODEL_LUA_SPLIT[] =
    LUA_LAYOUT
    "local L, s, e = layout(KEYS[1])\n"
    "local fill, max, done = tonumber(ARGV[2]), tonumber(ARGV[3]), 0\n"
    "while done < max and e > fill * (2 ^ L + s) do\n"
    "  local from = ARGV[1] .. string.format('%d', s)\n"
    "  local to = ARGV[1] .. string.format('%d', s + 2 ^ L)\n"
    "  local all = redis.call('HGETALL', from)\n"
    "  local sn = string.format('%d', s)\n"
    "  local stay, go = {}, {}\n"
    "  for i = 1, #all, 2 do\n"
    "    local t = bkt(all[i], L + 1, 0) == sn and stay or go\n"
    "    t[#t + 1] = all[i]; t[#t + 1] = all[i + 1]\n"
    "  end\n"
    "  if #go > 0 then\n"
    "    redis.call('DEL', from)\n"
    "    for i = 1, #go, 400 do\n"
    "      redis.call('HSET', to, unpack(go, i, math.min(i + 399, #go)))\n"
    "    end\n"
    "    for i = 1, #stay, 400 do\n"
    "      redis.call('HSET', from, unpack(stay, i, math.min(i + 399, #stay)))\n"
    "    end\n"
    "  end\n"
    "  s = s + 1\n"
    "  if s == 2 ^ L then L = L + 1; s = 0 end\n"
    "  done = done + 1\n"
    "end\n"
    "if done > 0 then redis.call('HSET', KEYS[1], 'level', L, 'split', s) end\n"
    "return done\n";

const char RMODEL_LUA_PRESIZE[] =
    LUA_LAYOUT
    "local L, s, e = layout(KEYS[1])\n"
    "local want = tonumber(ARGV[1])\n"
    "if e > 0 or want <= L then return L end\n"
    "redis.call('HSET', KEYS[1], 'level', want, 'split', 0)\n"
    "return want\n";

const char RMODEL_LUA_UNLOAD[] =
    LUA_LAYOUT
    "local L, s = layout(KEYS[1])\n"
    "local n, id = 2 ^ L + s, ARGV[2]\n"
    "local first, last = tonumber(ARGV[3]), tonumber(ARGV[3]) + tonumber(ARGV[4])\n"
    "if last > n then last = n end\n"
    "local removed, gone = 0, 0\n"
    "for b = first, last - 1 do\n"
    "  local key = ARGV[1] .. string.format('%d', b)\n"
    "  local all = redis.call('HGETALL', key)\n"
    "  for i = 1, #all, 2 do\n"
    "    local out, hit = {}, false\n"
    "    for e in string.gmatch(all[i + 1], '[^;]+') do\n"
    "      if string.match(e, '^([^=]*)=') == id then hit = true\n"
    "      else table.insert(out, e) end\n"
    "    end\n"
    "    if hit then\n"
    "      removed = removed + 1\n"
    "      if #out == 0 then redis.call('HDEL', key, all[i]); gone = gone + 1\n"
    "      else redis.call('HSET', key, all[i], table.concat(out, ';')) end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "if gone > 0 then redis.call('HINCRBY', KEYS[1], 'entries', -gone) end\n"
    "if removed > 0 then\n"
    "  redis.call('HINCRBY', KEYS[2], 'members', -removed)\n"
    "end\n"
    "return {removed, string.format('%d', n)}\n";

const char RMODEL_LUA_SCAN[] =
    LUA_READ_ONLY
    LUA_LAYOUT
    "local L, s = layout(KEYS[1])\n"
    "local n = 2 ^ L + s\n"
    "local first, last = tonumber(ARGV[2]), tonumber(ARGV[2]) + tonumber(ARGV[3])\n"
    "if last > n then last = n end\n"
    "local out, sum, named = {}, 0, 0\n"
    "for b = first, last - 1 do\n"
    "  local key = ARGV[1] .. string.format('%d', b)\n"
    "  if ARGV[4] == 'count' then sum = sum + redis.call('HLEN', key)\n"
    "  elseif ARGV[4] == 'breach' then\n"
    "    local pat = ';' .. ARGV[5] .. '='\n"
    "    for _, v in ipairs(redis.call('HVALS', key)) do\n"
    "      sum = sum + 1\n"
    "      if string.find(';' .. v, pat, 1, true) then named = named + 1 end\n"
    "    end\n"
    "  else\n"
    "    local r = redis.call(ARGV[4] == 'keys' and 'HKEYS' or 'HGETALL', key)\n"
    "    for i = 1, #r do out[#out + 1] = r[i] end\n"
    "  end\n"
    "end\n"
    "local mk = KEYS[2] and redis.call('GET', KEYS[2]) or false\n"
    "if ARGV[4] == 'count' then return {string.format('%d', n), sum, mk} end\n"
    "if ARGV[4] == 'breach' then\n"
    "  return {string.format('%d', n), sum, mk, named}\n"
    "end\n"
    "return {string.format('%d', n), out, mk}\n";

const char RMODEL_LUA_COMMIT[] =
    "local n = tonumber(redis.call('HGET', KEYS[1], 'members') or '0')\n"
    "redis.call('HSET', KEYS[1], 'status', 'committed', 'cards', n,\n"
    "  'committed_at_ms', ARGV[3])\n"
    "redis.call('HSET', KEYS[2], 'version', '" RMODEL_LAYOUT_VERSION "',\n"
    "  'committed', redis.call('HGET', KEYS[2], 'entries') or '0')\n"
    "redis.call('SADD', KEYS[3], ARGV[1])\n"
    "redis.call('SET', KEYS[4], ARGV[2])\n"
    "return n\n";

const char RMODEL_LUA_RECORD_DELIVERY[] =
    "local out, stats, feeds, pubs = {}, {}, {}, {}\n"
    "for i = 0, #KEYS / 4 - 1 do\n"
    "  local k, a = i * 4, 4 + i * 5\n"
    "  local iss = ARGV[a + 1]\n"
    "  local who = iss == '' and 'unrouted' or iss\n"
    "  local new = redis.call('SET', KEYS[k + 1], who, 'NX', 'EX', ARGV[1])\n"
    "  if not new and (iss == '' or redis.call('EXISTS', KEYS[k + 2]) == 1) then\n"
    "    out[i + 1] = 0\n"
    "  else\n"
    "    out[i + 1] = 1\n"
    "    if iss ~= '' then\n"
    "      local sid = redis.call('XADD', KEYS[k + 3], 'MAXLEN', '~', ARGV[2],\n"
    "        '*', 'alert_id', ARGV[a + 2], 'alert', ARGV[a + 3])\n"
    "      redis.call('HSET', KEYS[k + 2], 'issuer', iss, 'stream_id', sid,\n"
    "        'alert', ARGV[a + 3])\n"
    "      redis.call('EXPIRE', KEYS[k + 2], ARGV[1])\n"
    "      feeds[KEYS[k + 3]] = true\n"
    "      pubs[iss] = true\n"
    "      local s = stats[KEYS[k + 4]] or {}\n"
    "      stats[KEYS[k + 4]] = s\n"
    "      s['alerts'] = (s['alerts'] or 0) + 1\n"
    "      local f = 'severity:' .. ARGV[a + 4]\n"
    "      s[f] = (s[f] or 0) + 1\n"
    "      for r in string.gmatch(ARGV[a + 5], '[^,]+') do\n"
    "        f = 'rule:' .. r\n"
    "        s[f] = (s[f] or 0) + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "for key, s in pairs(stats) do\n"
    "  for f, v in pairs(s) do redis.call('HINCRBY', key, f, v) end\n"
    "end\n"
    "for key in pairs(feeds) do\n"
    "  redis.call('XTRIM', key, 'MINID', '~', ARGV[3])\n"
    "end\n"
    "for iss in pairs(pubs) do redis.call('PUBLISH', ARGV[4], iss) end\n"
    "return out\n";

const char RMODEL_LUA_OUTCOMES[] =
    "local out = {}\n"
    "for i, k in ipairs(KEYS) do\n"
    "  out[i] = redis.call('HGET', k, 'outcome') or ''\n"
    "end\n"
    "return out\n";

const char RMODEL_LUA_OUTCOME[] =
    LUA_LAYOUT
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
    "  local fp = string.gsub(ARGV[9], '..', function(x)\n"
    "    return string.char(tonumber(x, 16)) end)\n"
    "  local L, s = layout(KEYS[3])\n"
    "  local key = ARGV[8] .. bkt(fp, L, s)\n"
    "  local rec = redis.call('HGET', key, fp)\n"
    "  if rec then\n"
    "    local out = {}\n"
    "    for e in string.gmatch(rec, '[^;]+') do\n"
    "      local b = string.match(e, '^([^=]*)=')\n"
    "      for x in string.gmatch(ARGV[6], '[^,]+') do\n"
    "        if x == b and string.sub(e, -1) ~= '!' then e = e .. '!' end\n"
    "      end\n"
    "      table.insert(out, e)\n"
    "    end\n"
    "    redis.call('HSET', key, fp, table.concat(out, ';'))\n"
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

int rmodel_layout_key(char *buf, const char *prefix, const char *kid)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:layout:%s", prefix,
                             kid));
}

int rmodel_bucket_prefix(char *buf, const char *prefix, const char *kid)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:cards:%s:", prefix,
                             kid));
}

int rmodel_bucket_key(char *buf, const char *prefix, const char *kid,
                      uint64_t n)
{
    return fit(buf, snprintf(buf, RMODEL_KEY_MAX, "%s:cards:%s:%" PRIu64,
                             prefix, kid, n));
}

int rmodel_fp_bin(const char *hex, uint8_t out[RMODEL_FP_BIN])
{
    for (size_t i = 0; i < RMODEL_FP_BIN; i++) {
        int hi = text_hex_val(hex[2 * i]);
        int lo = hi < 0 ? -1 : text_hex_val(hex[2 * i + 1]);
        if (lo < 0) {
            return -1;
        }
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return hex[2 * RMODEL_FP_BIN] == '\0' ? 0 : -1;
}

void rmodel_fp_hex(const uint8_t bin[RMODEL_FP_BIN], char out[33])
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < RMODEL_FP_BIN; i++) {
        out[2 * i] = digits[bin[i] >> 4];
        out[2 * i + 1] = digits[bin[i] & 15];
    }
    out[2 * RMODEL_FP_BIN] = '\0';
}

uint64_t rmodel_bucket(const uint8_t fp[RMODEL_FP_BIN], int level,
                       uint64_t split)
{
    uint64_t h = (uint64_t)fp[0] << 24 | (uint64_t)fp[1] << 16 |
                 (uint64_t)fp[2] << 8 | fp[3];
    uint64_t n = h & ((UINT64_C(1) << level) - 1);
    if (n < split) {
        n = h & ((UINT64_C(1) << (level + 1)) - 1);
    }
    return n;
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
