/* rmodel.c - see rmodel.h. */
#include "rmodel.h"

#include <stdio.h>
#include <string.h>

const char RMODEL_LUA_ADD[] =
    "local cur = redis.call('GET', KEYS[1])\n"
    "local out = {}\n"
    "local found = false\n"
    "if cur then\n"
    "  for e in string.gmatch(cur, '[^;]+') do\n"
    "    if string.match(e, '^([^=]*)=') == ARGV[1] then\n"
    "      table.insert(out, ARGV[1] .. '=' .. ARGV[2]); found = true\n"
    "    else table.insert(out, e) end\n"
    "  end\n"
    "end\n"
    "if not found then table.insert(out, ARGV[1] .. '=' .. ARGV[2]) end\n"
    "table.sort(out)\n"
    "local rec = table.concat(out, ';')\n"
    "if rec ~= cur then redis.call('SET', KEYS[1], rec) end\n"
    "return redis.call('SADD', KEYS[2], ARGV[3])\n";

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
            if (idlen == 0 || idlen > BREACH_ID_MAX ||
                (taglen != 0 && taglen != CARD_EXPTAG_HEX_LEN)) {
                return -1;
            }
            if (n < cap) {
                memcpy(out[n].breach_id, e, idlen);
                out[n].breach_id[idlen] = '\0';
                memcpy(out[n].exptag, eq + 1, taglen);
                out[n].exptag[taglen] = '\0';
                n++;
            }
        }
        i++; /* skip ';' */
    }
    return (int)n;
}
