"""The Debian package (`make deb`, scripts/make_deb.sh), installed for real
on this machine and purged again.

A throwaway root (`dpkg --root=DIR`) would need a base system inside DIR
for the maintainer scripts (adduser, dpkg-statoverride, chroot), which the
machine cannot make offline; so the package goes onto the machine itself,
only when it holds no cardwatch package, user or /etc/cardwatch (the test
fails rather than touch an existing install), and is always purged in a
finally."""

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

import harness as h

REPO = Path(__file__).resolve().parents[2]
ETC = Path("/etc/cardwatch")
UNITS = ("cardwatch.service", "cardwatch-feed.service")


def run(args, timeout=60, env=None):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def dpkg_status():
    """dpkg's status of the cardwatch package ('' when dpkg never saw it)."""
    res = run(["dpkg-query", "-W", "-f=${Status}", "cardwatch"])
    return res.stdout.strip() if res.returncode == 0 else ""


def account_exists():
    try:
        pwd.getpwnam("cardwatch")
        return True
    except KeyError:
        pass
    try:
        grp.getgrnam("cardwatch")
        return True
    except KeyError:
        return False


def dpkg(args):
    """dpkg ARGS, retried while another dpkg or apt holds the lock."""
    def attempt():
        res = run(["dpkg"] + args, timeout=120)
        if res.returncode != 0 and "lock" in res.stderr and "locked" in res.stderr:
            return None
        return res
    return h.wait_until(attempt, timeout=180, interval=0.5, what="the dpkg lock")


def owner(path):
    st = path.stat()
    return (pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name,
            stat.S_IMODE(st.st_mode))


def build_deb():
    """`make deb` for the build under test; the package file it wrote."""
    build = h.config.build
    res = run(["make", "-s", "--no-print-directory", "-C", REPO, f"BUILD={build}", "deb"],
              timeout=120)
    assert res.returncode == 0, ("make deb", res.stdout[-1500:], res.stderr[-1500:])
    version = run([h.tool("cardwatch"), "version"]).stdout.split()[-1]
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = build / f"cardwatch_{version}_{arch}.deb"
    assert deb.is_file(), (deb, res.stdout)
    return deb, version


def check_upgrade(version, key_text):
    """dpkg -i of the same build as a later version over the installed
    package: the admin's edit of the conffile and the key stay as they
    were, the user keeps its uid, the modes their values, the first-install
    note is not printed again, and the config still checks as the service
    user."""
    ini = ETC / "cardwatch.ini"
    with open(ini, "a") as f:
        f.write("# an edit of the admin's, kept across upgrades\n")
    edited = ini.read_text()
    uid = pwd.getpwnam("cardwatch").pw_uid
    later = f"{version}+upgrade1"
    res = run(["make", "-s", "--no-print-directory", "-C", REPO, f"BUILD={h.config.build}",
               "deb"], timeout=120, env=dict(os.environ, DEB_VERSION=later))
    assert res.returncode == 0, ("make deb", res.stdout[-1500:], res.stderr[-1500:])
    arch = run(["dpkg", "--print-architecture"]).stdout.strip()
    deb = h.config.build / f"cardwatch_{later}_{arch}.deb"
    try:
        res = dpkg(["-i", deb])
        assert res.returncode == 0, (res.stdout, res.stderr)
        assert "not enabled or started" not in res.stdout + res.stderr, res.stdout
        status = run(["dpkg-query", "-W", "-f=${Status} ${Version}", "cardwatch"]).stdout
        assert status == f"install ok installed {later}", status
        assert ini.read_text() == edited, "the conffile edit was lost in the upgrade"
        key = ETC / "keys" / "fingerprint.key"
        assert key.read_text() == key_text, "the key changed in the upgrade"
        assert owner(key)[:2] == ("cardwatch", "cardwatch"), owner(key)
        assert pwd.getpwnam("cardwatch").pw_uid == uid
        assert owner(ETC) == ("root", "cardwatch", 0o750), owner(ETC)
        assert owner(ini) == ("root", "cardwatch", 0o640), owner(ini)
        assert owner(ETC / "keys") == ("cardwatch", "cardwatch", 0o700)
        res = run(["setpriv", "--reuid=cardwatch", "--regid=cardwatch", "--init-groups", "--",
                   "/usr/bin/cardwatch", "check", "--config", ini])
        assert res.returncode == 0 and res.stdout.rstrip().endswith("OK"), res
    finally:
        deb.unlink(missing_ok=True)


def check_lintian(deb):
    lintian = shutil.which("lintian")
    assert lintian, "lintian is missing (Debian package lintian): `make deps` installs it"
    res = run([lintian, deb], timeout=120)
    errors = [ln for ln in res.stdout.splitlines() if ln.startswith("E:")]
    assert not errors and res.returncode == 0, (res.returncode, res.stdout, res.stderr)


def check_installed(version, listed, note):
    """Everything the package promises, on the installed system."""
    assert "not enabled or started" in note, note
    # the files of the package, the command in /usr/bin
    for path in ("/usr/bin/cardwatch", "/etc/cardwatch/cardwatch.ini",
                 "/usr/share/man/man1/cardwatch.1.gz", "/usr/share/doc/cardwatch/copyright",
                 "/usr/share/doc/cardwatch/changelog.gz",
                 "/lib/systemd/system/cardwatch.service",
                 "/lib/systemd/system/cardwatch-feed.service"):
        assert path in listed and Path(path).is_file(), (path, listed)
    res = run(["/usr/bin/cardwatch", "version"])
    assert res.returncode == 0 and res.stdout == f"cardwatch {version}\n", res
    # the conffile is the sample config, and dpkg knows it as a conffile
    assert (ETC / "cardwatch.ini").read_text() == (REPO / "deploy/cardwatch.ini").read_text()
    res = run(["dpkg-query", "-W", "-f=${Conffiles}", "cardwatch"])
    assert re.search(r"^ /etc/cardwatch/cardwatch\.ini [0-9a-f]{32}$", res.stdout, re.M), res

    # the system user: no login, no home, its own group
    user = pwd.getpwnam("cardwatch")
    group = grp.getgrnam("cardwatch")
    assert user.pw_gid == group.gr_gid and user.pw_uid < 1000, user
    assert user.pw_shell == "/usr/sbin/nologin" and not Path(user.pw_dir).exists(), user
    res = run(["id", "cardwatch"])
    assert res.returncode == 0 and "(cardwatch)" in res.stdout, res

    # modes and owners: config readable by the group only, keys by the user only
    assert owner(ETC) == ("root", "cardwatch", 0o750), owner(ETC)
    assert owner(ETC / "cardwatch.ini") == ("root", "cardwatch", 0o640)
    assert owner(ETC / "keys") == ("cardwatch", "cardwatch", 0o700)

    # the installed config, as documented: without a key it is refused and
    # the key file named; with a key made as the README says it checks OK,
    # also as the service user (group-readable config, its own key dir)
    ini = ETC / "cardwatch.ini"
    key = ETC / "keys" / "fingerprint.key"
    res = run(["/usr/bin/cardwatch", "check", "--config", ini])
    assert res.returncode == 1 and f"{key}: NOT USABLE" in res.stdout, res
    old = os.umask(0o077)
    try:
        key.write_text("k1 " + os.urandom(32).hex() + "\n")
    finally:
        os.umask(old)
    os.chown(key, user.pw_uid, group.gr_gid)
    for prefix in ([], ["setpriv", "--reuid=cardwatch", "--regid=cardwatch",
                        "--init-groups", "--"]):
        res = run(prefix + ["/usr/bin/cardwatch", "check", "--config", ini])
        assert res.returncode == 0 and res.stdout.rstrip().endswith("OK"), (prefix, res)
        assert f"key        {key} (key id k1)" in res.stdout, res.stdout

    # the units: on /usr/bin/cardwatch, accepted by systemd (man page
    # included: Documentation=man:cardwatch(1)), not enabled
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing (Debian package systemd)"
    for unit in UNITS:
        path = Path("/lib/systemd/system") / unit
        text = path.read_text()
        cmd = "run" if unit == "cardwatch.service" else "feed"
        assert re.search(rf"^ExecStart=/usr/bin/cardwatch {cmd} --config "
                         r"/etc/cardwatch/cardwatch\.ini$", text, re.M), text
        res = run([analyze, "verify", path])
        noise = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
        assert res.returncode == 0 and not noise, (unit, res.returncode, noise)
        assert not Path("/etc/systemd/system/multi-user.target.wants", unit).exists()

    # the man page renders without a warning and holds every command and
    # every option of the --help texts it was made from
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    res = run(["man", "--warnings", "-l", "/usr/share/man/man1/cardwatch.1.gz"], env=env)
    assert res.returncode == 0 and res.stderr == "", res
    page = res.stdout.replace("\u2010", "-").replace("\u2212", "-")
    main = run(["/usr/bin/cardwatch", "--help"]).stdout
    commands = re.findall(r"^  ([a-z]+) ", main.split("commands:")[1], re.M)
    assert "run" in commands and "check" in commands, main
    for c in commands:
        assert re.search(rf"^   cardwatch {c}$", page, re.M), (c, page[:2000])
        text = run(["/usr/bin/cardwatch", c, "--help"]).stdout
        for opt in set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text)):
            assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", page), (c, opt)
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "FILES", "SEE ALSO"):
        assert re.search(rf"^{section}$", page, re.M), section


def check_purged(created):
    """After dpkg --purge: no package, no file it made, no config, no user."""
    assert dpkg_status() in ("", "unknown ok not-installed"), dpkg_status()
    left = [p for p in created if os.path.lexists(p)]
    assert not left, left
    assert not ETC.exists(), list(ETC.rglob("*"))
    assert not account_exists(), "user or group cardwatch left"
    res = run(["dpkg-statoverride", "--list", "/etc/cardwatch*"])
    assert res.stdout == "", res.stdout


def test_deb_installs_checks_and_purges():
    """`make deb` builds a lintian-clean (no errors) package of the build
    under test; `dpkg -i` installs /usr/bin/cardwatch of the same version,
    the sample config as a conffile (0640 root:cardwatch in /etc/cardwatch
    0750), the key directory 0700 of a new cardwatch system user, both
    systemd units (which systemd-analyze verify accepts, on /usr/bin, not
    enabled) and a man page that renders without warnings and documents
    every command and option; `cardwatch check` on the installed config
    refuses it until a key is there, then passes as root and as the
    service user; an upgrade to a later version keeps the admin's config
    edit, the key, the user and the modes; `dpkg --purge` leaves no file, directory, stat override,
    user or group behind."""
    assert os.geteuid() == 0, "installing a package needs root"
    already = [what for what, there in (("package", dpkg_status() not in
                                         ("", "unknown ok not-installed")),
                                        ("user or group", account_exists()),
                                        ("/etc/cardwatch", ETC.exists())) if there]
    assert not already, (f"this machine already has a cardwatch {', '.join(already)}; "
                         "the test would remove it: purge it first")

    deb, version = build_deb()
    check_lintian(deb)
    res = run(["dpkg-deb", "-c", deb])
    assert res.returncode == 0, res
    paths = ["/" + ln.split(" ./", 1)[1].rstrip("/") for ln in res.stdout.splitlines()
             if " ./" in ln and not ln.endswith(" ./")]
    there_before = {p for p in paths if os.path.lexists(p)}
    assert "/usr/bin/cardwatch" in paths and "/usr/bin/cardwatch" not in there_before
    purge = None
    try:
        res = dpkg(["-i", deb])
        assert res.returncode == 0, (res.stdout, res.stderr)
        # what the package made: the paths dpkg lists for it less those that
        # were there before (/etc, /usr/bin, ...), captured before the purge
        listed = [p for p in run(["dpkg", "-L", "cardwatch"]).stdout.splitlines()
                  if p.startswith("/") and p != "/."]
        created = [p for p in listed if p not in there_before]
        assert "/etc/cardwatch/cardwatch.ini" in created, created
        check_installed(version, listed, res.stdout + res.stderr)
        check_upgrade(version, (ETC / "keys" / "fingerprint.key").read_text())
    finally:
        if dpkg_status():
            purge = dpkg(["--purge", "cardwatch"])
    assert purge is not None and purge.returncode == 0, purge
    check_purged(created + ["/etc/cardwatch/keys"])
