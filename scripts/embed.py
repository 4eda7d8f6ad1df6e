#!/usr/bin/env python3
"""embed.py FILE NAME [KEY=VALUE ...]: prints C source defining `const char
*NAME(size_t *len)` that returns FILE's bytes (NUL-terminated too), each
@KEY@ in them replaced by VALUE (an empty VALUE is an error: the command
that computed it failed). Used by the Makefile to build the triage page
into cardwatch."""
import sys

data = open(sys.argv[1], "rb").read()
name = sys.argv[2]
for arg in sys.argv[3:]:
    key, _, value = arg.partition("=")
    if not key or not value:
        sys.exit(f"embed.py: bad substitution {arg!r} (KEY=VALUE, VALUE not empty)")
    marker = f"@{key}@".encode()
    if marker not in data:
        sys.exit(f"embed.py: {sys.argv[1]} has no {marker.decode()}")
    data = data.replace(marker, value.encode())
out = [f"/* generated from {sys.argv[1]} by scripts/embed.py; do not edit */",
       "#include <stddef.h>", "",
       f"static const unsigned char bytes[{len(data) + 1}] = {{"]
for i in range(0, len(data), 16):
    out.append("    " + ", ".join(str(b) for b in data[i:i + 16]) + ",")
out += ["    0,", "};", "",
        f"const char *{name}(size_t *len);",
        f"const char *{name}(size_t *len)", "{",
        f"    *len = {len(data)};", "    return (const char *)bytes;", "}", ""]
sys.stdout.write("\n".join(out))
