"""The systemd units in deploy/: systemd itself accepts them (no unknown or
misspelt keys), they start an existing cardwatch command with a config and
keep the hardening the README promises."""

import re
import shutil
import subprocess
from pathlib import Path

import harness as h

REPO = Path(__file__).resolve().parents[2]
UNITS = sorted((REPO / "deploy").glob("*.service"))
INSTALLED = "/usr/local/bin/cardwatch"


def test_systemd_units_verify():
    assert UNITS, "no deploy/*.service"
    analyze = shutil.which("systemd-analyze")
    assert analyze, ("systemd-analyze is missing (Debian package systemd): "
                     "`make deps` installs it")
    d = h.tmpdir("units")
    binary = Path(h.tool("cardwatch")).resolve()
    for unit in UNITS:
        text = unit.read_text()
        exec_start = re.search(r"^ExecStart=(.*)$", text, re.M).group(1).split()
        assert exec_start[0] == INSTALLED, (unit.name, exec_start)
        assert "--config" in exec_start, (unit.name, exec_start)
        # the command exists (its --help answers 0)
        res = subprocess.run([binary, exec_start[1], "--help"], capture_output=True, timeout=10)
        assert res.returncode == 0, (unit.name, exec_start[1], res.stderr[-300:])
        for key in ("LimitCORE=0", "NoNewPrivileges=yes", "ProtectSystem=strict",
                    "User=cardwatch"):
            assert re.search(rf"^{re.escape(key)}$", text, re.M), (unit.name, key)
        # systemd's own check, with the binary where this build has it
        copy = d / unit.name
        copy.write_text(text.replace(INSTALLED, str(binary)))
        res = subprocess.run([analyze, "verify", "--man=no", str(copy)],
                             capture_output=True, text=True, timeout=60)
        noise = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        assert res.returncode == 0 and not noise, (unit.name, res.returncode, noise)


def test_sample_config_checks():
    """deploy/cardwatch.ini, with a key file of its own, is a configuration
    `cardwatch check` accepts: the sample stays true to the code."""
    d = h.tmpdir("sample")
    key = d / "fingerprint.key"
    key.write_text("k1 " + "ab" * 32 + "\n")
    key.chmod(0o600)
    text = (REPO / "deploy" / "cardwatch.ini").read_text()
    assert re.search(r"^key_file = /etc/cardwatch/keys/fingerprint.key$", text, re.M)
    cfg = d / "cardwatch.ini"
    cfg.write_text(text.replace("key_file = /etc/cardwatch/keys/fingerprint.key",
                                f"key_file = {key}"))
    res = subprocess.run([h.tool("cardwatch"), "check", "--config", cfg], capture_output=True,
                         text=True, timeout=20)
    assert res.returncode == 0 and res.stdout.rstrip().endswith("OK"), (res.stdout, res.stderr)
