#!/usr/bin/env python3
"""make_man.py - cardwatch.1 (man page, roff) from the real --help texts.

usage: scripts/make_man.py BINARY [--date YYYY-MM-DD] > cardwatch.1

Runs `BINARY --help`, takes the commands it lists, runs
`BINARY COMMAND --help` for each and writes one page: NAME, SYNOPSIS,
DESCRIPTION, COMMANDS (one subsection per command: its usage, its text and
its options), COMMON OPTIONS (the block every command repeats, once),
FILES, SEE ALSO. Nothing is written by hand but the FILES and SEE ALSO
sections, so the page cannot drift from the binary. The date is
--date, else $SOURCE_DATE_EPOCH, else today (UTC).

Help text shapes it understands (what processor/cli_*.c print):
  - "usage: cardwatch CMD ..." lines, continuation lines indented;
  - paragraphs (blocks separated by blank lines), where indented lines are
    examples kept as they are;
  - "heading:" on its own line, then option lines "  --opt ARG  text"
    with continuation lines indented further;
  - blocks made only of option lines (no heading).
Exits 1 with a message when BINARY fails or prints no command list."""

import datetime
import os
import re
import subprocess
import sys

OPT_LINE = re.compile(r"^  (-\S.*?)(?:\s{2,}(\S.*))?$")
HEADING = re.compile(r"^\S[^:]*:$")


def esc(text):
    """Roff-escape one line of text: backslashes, and a leading '.' or '''."""
    text = text.replace("\\", "\\e")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def esc_opt(text):
    """Escape an option term or a command line: hyphens are minus signs."""
    return esc(text).replace("-", "\\-")


def run_help(binary, args):
    res = subprocess.run([binary] + args, capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        sys.exit(f"make_man: {binary} {' '.join(args)} exited {res.returncode}: "
                 f"{res.stderr.strip()[:200]}")
    return res.stdout


def blocks(text):
    """Blank-line separated blocks, each a list of lines (trailing blanks cut)."""
    out, cur = [], []
    for line in text.splitlines():
        if line.strip():
            cur.append(line.rstrip())
        elif cur:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def parse_main(text):
    """(title, [(command, summary)], [trailing paragraph blocks]); the
    title is the first block, its lines joined (it wraps at 80 columns)."""
    bs = blocks(text)
    commands, rest = [], []
    for b in bs[1:]:
        if b[0] == "commands:":
            for line in b[1:]:
                m = re.match(r"^  (\S+)\s+(.*)$", line)
                if m:
                    commands.append([m.group(1), m.group(2)])
                elif commands:
                    commands[-1][1] += " " + line.strip()
        elif not b[0].startswith("usage:"):
            rest.append(b)
    if not commands:
        sys.exit("make_man: the --help text lists no commands")
    return " ".join(ln.strip() for ln in bs[0]), commands, rest


def options(lines):
    """roff .TP entries for option lines and their continuations."""
    out, term, desc = [], None, []
    # the column the descriptions start at, for a line whose term runs
    # into its text with one blank ("  --dead-letter FILE invalid ...")
    cols = [len(ln) - len(m.group(2)) for ln in lines
            for m in [OPT_LINE.match(ln)] if m and m.group(2)]
    col = max(set(cols), key=cols.count) if cols else 0

    def flush():
        if term is not None:
            out.append(".TP")
            out.append("\\fB" + esc_opt(term) + "\\fR")
            out.append(esc(" ".join(desc)) if desc else "\\&")

    for line in lines:
        m = OPT_LINE.match(line)
        if m:
            flush()
            term, desc = m.group(1), [m.group(2)] if m.group(2) else []
            if (not desc and col and len(line) > col and line[col - 1] == " "
                    and line[col] != " "):
                term, desc = line[2:col].strip(), [line[col:]]
        else:
            desc = join_lines(desc + [line.strip()])
    flush()
    return out


def is_option_block(b):
    return all(OPT_LINE.match(ln) or ln.startswith("   ") for ln in b) and OPT_LINE.match(b[0])


def join_lines(lines):
    """Join a line ending in a word and a hyphen to the next ("exposed-",
    "card" -> "exposed-card"): the help text broke a compound word."""
    out = []
    for line in lines:
        if out and re.search(r"[A-Za-z]-$", out[-1]) and not line.startswith("-"):
            out[-1] += line
        else:
            out.append(line)
    return out


def paragraph(b):
    """A prose block: filled text; indented lines kept verbatim as examples."""
    b = join_lines(b)
    out = [".PP"]
    verbatim = False
    for line in b:
        if line.startswith(" "):
            if not verbatim:
                out += [".RS", ".nf"]
                verbatim = True
            out.append(esc(line.strip()))
        else:
            if verbatim:
                out += [".fi", ".RE"]
                verbatim = False
            out.append(esc(line.strip()))
    if verbatim:
        out += [".fi", ".RE"]
    return out


def usage_lines(b):
    """The usage forms of a block starting with "usage:", one per form."""
    forms = []
    for i, line in enumerate(b):
        s = line[len("usage:"):].strip() if i == 0 else line.strip()
        if s.startswith("cardwatch ") or not forms:
            forms.append(s)
        else:
            forms[-1] += " " + s
    return forms


def command_section(name, summary, text, common):
    """The subsection of one command; the common options block is skipped
    (it is printed once, under COMMON OPTIONS) when it equals `common`."""
    out = [".SS " + esc_opt("cardwatch " + name)]
    bs = blocks(text)
    if not bs or not bs[0][0].startswith("usage:"):
        # a command without a help text of its own (version): the summary
        out += [".PP", "\\fBcardwatch " + esc_opt(name) + "\\fR",
                ".PP", esc(summary[0].upper() + summary[1:]) + "."]
        return out
    for form in usage_lines(bs[0]):
        out += [".PP", "\\fB" + esc_opt(form) + "\\fR"]
    for b in bs[1:]:
        if b[0] == "common options:":
            if b[1:] == common:
                out += [".PP", "Also the common options (see \\fBCOMMON OPTIONS\\fR)."]
                continue
            out += [".PP", "\\fI" + esc(b[0][:-1]) + "\\fR"] + options(b[1:])
        elif HEADING.match(b[0]) and len(b) > 1 and OPT_LINE.match(b[1]):
            out += [".PP", "\\fI" + esc(b[0][:-1]) + "\\fR"]
            out += options(b[1:])
        elif is_option_block(b):
            out += [".PP"] + options(b)
        else:
            out += paragraph(b)
    return out


def main():
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit(__doc__.split("\n\n")[1])
    binary = args[0]
    date = None
    if len(args) == 3 and args[1] == "--date":
        date = args[2]
    elif len(args) != 1:
        sys.exit("make_man: usage: make_man.py BINARY [--date YYYY-MM-DD]")
    if date is None:
        epoch = os.environ.get("SOURCE_DATE_EPOCH")
        when = (datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc)
                if epoch else datetime.datetime.now(datetime.timezone.utc))
        date = when.strftime("%Y-%m-%d")
    version = run_help(binary, ["version"]).split()[-1]
    title, commands, trailing = parse_main(run_help(binary, ["--help"]))
    helps = {c: run_help(binary, [c, "--help"]) for c, _ in commands}
    common = None
    for c, _ in commands:
        for b in blocks(helps[c]):
            if b[0] == "common options:":
                common = b[1:]
                break
        if common:
            break

    out = [
        f'.TH CARDWATCH 1 "{date}" "cardwatch {esc(version)}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        "cardwatch \\- " + esc(title.split(" - ", 1)[1] if " - " in title else title),
        ".SH SYNOPSIS",
        "\\fBcardwatch\\fR \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
        ".br",
        "\\fBcardwatch\\fR \\fICOMMAND\\fR \\fB\\-\\-help\\fR",
        ".SH DESCRIPTION",
        ".PP",
        "cardwatch checks card transactions from Kafka against the cards "
        "exposed in known breaches (kept in Redis as keyed fingerprints) and "
        "raises alerts to each card's issuer. "
        "The service is \\fBcardwatch run\\fR (systemd unit cardwatch.service); "
        "\\fBcardwatch feed\\fR serves the issuers' alert feed "
        "(cardwatch\\-feed.service).",
        ".PP",
        "Commands:",
    ]
    for c, summary in commands:
        out += [".TP", "\\fB" + esc_opt(c) + "\\fR", esc(summary)]
    for b in trailing:
        out += paragraph(b)
    out += [".SH COMMANDS"]
    for c, summary in commands:
        out += command_section(c, summary, helps[c], common)
    if common:
        out += [".SH COMMON OPTIONS", ".PP",
                "Every command that reads a configuration takes these:"]
        out += options(common)
    out += [
        ".SH FILES",
        ".TP",
        "\\fI/etc/cardwatch/cardwatch.ini\\fR",
        "The configuration of the units (every key, its default and its "
        "meaning are in the file). Mode 0640, root:cardwatch.",
        ".TP",
        "\\fI/etc/cardwatch/keys/\\fR",
        "The key directory, mode 0700, owned by the cardwatch user: the "
        "fingerprint key file ([card] key_file, one line "
        "\"<key_id> <hex key>\", mode 0600, owned by cardwatch).",
        ".TP",
        "\\fI/lib/systemd/system/cardwatch.service\\fR, "
        "\\fI/lib/systemd/system/cardwatch\\-feed.service\\fR",
        "The units of \\fBcardwatch run\\fR and \\fBcardwatch feed\\fR; "
        "\\fBsystemctl reload cardwatch\\fR re\\-reads the rule file.",
        ".SH SEE ALSO",
        ".BR redis\\-server (1),",
        ".BR systemctl (1),",
        ".BR systemd.exec (5)",
        ".PP",
        "The README and docs/rules.md of the cardwatch source tree.",
    ]
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
