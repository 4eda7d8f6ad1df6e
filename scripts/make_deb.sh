#!/usr/bin/env bash
# make_deb.sh BUILD - the Debian package of cardwatch from BUILD/cardwatch
# (what `make deb` runs): BUILD/cardwatch_<version>_<arch>.deb, with dpkg
# tools only (dpkg-deb, dpkg-shlibdeps), no debhelper.
#
# The version is what `BUILD/cardwatch version` prints (processor/main.c
# VERSION), or DEB_VERSION when set (a rebuild of the same binary as a
# later version: tests/e2e/test_deb.py's upgrade). The package holds:
#   /usr/bin/cardwatch                    the build, debug symbols stripped
#   /usr/share/man/man1/cardwatch.1.gz    scripts/make_man.py from --help
#   /etc/cardwatch/cardwatch.ini          deploy/cardwatch.ini, a conffile
#   /lib/systemd/system/cardwatch{,-feed}.service
#                                         deploy/*.service with ExecStart
#                                         on /usr/bin/cardwatch and the man
#                                         page as Documentation=
#   /usr/share/doc/cardwatch/{copyright,changelog.gz}
#                                         (a native package: its version has
#                                         no Debian revision, so its Debian
#                                         changelog is changelog.gz)
# and the maintainer scripts of deploy/debian (user, modes, key directory,
# purge). Depends: dpkg-shlibdeps on the binary (the shlibs/symbols files
# of the installed -dev libraries; works offline) plus adduser.
# Exits non-zero, leaving no .deb, on any failure.
set -euo pipefail

BUILD=${1:?usage: scripts/make_deb.sh BUILD}
BUILD=$(cd "$BUILD" && pwd)
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
BIN=$BUILD/cardwatch
MAINTAINER=${DEB_MAINTAINER:-cardwatch maintainers <maintainers@users.noreply.r-seed-ac35eb71.example>}

VERSION=${DEB_VERSION:-$("$BIN" version | awk '{print $2}')}
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || {
  echo "make_deb: '$BIN version' gave no version" >&2; exit 1; }
ARCH=$(dpkg --print-architecture)
DEB=$BUILD/cardwatch_${VERSION}_${ARCH}.deb
ROOT=$BUILD/deb-root
rm -rf "$ROOT" "$DEB"
umask 022
# timestamps in the package and the man page: the last commit's, so that
# the same tree gives the same package
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

install -d "$ROOT/DEBIAN" "$ROOT/usr/bin" "$ROOT/usr/share/man/man1" \
  "$ROOT/usr/share/doc/cardwatch" "$ROOT/etc/cardwatch" "$ROOT/lib/systemd/system"

# the binary: debug information and notes out, as dh_strip does
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  -o "$ROOT/usr/bin/cardwatch" "$BIN"
chmod 0755 "$ROOT/usr/bin/cardwatch"

# the man page, from the --help of the binary being packaged
python3 scripts/make_man.py "$BIN" > "$ROOT/usr/share/man/man1/cardwatch.1"
gzip -9n "$ROOT/usr/share/man/man1/cardwatch.1"

install -m 0640 deploy/cardwatch.ini "$ROOT/etc/cardwatch/cardwatch.ini"
for unit in cardwatch.service cardwatch-feed.service; do
  grep -q '^ExecStart=/usr/local/bin/cardwatch ' "deploy/$unit" || {
    echo "make_deb: deploy/$unit: no ExecStart=/usr/local/bin/cardwatch" >&2; exit 1; }
  {
    echo "# Installed by the cardwatch Debian package (README \"Debian package\"):"
    echo "# the steps below are done but the key and the config edit."
    sed -e 's#/usr/local/bin/cardwatch#/usr/bin/cardwatch#g' \
        -e 's#^\[Unit\]$#&\nDocumentation=man:cardwatch(1)#' "deploy/$unit"
  } > "$ROOT/lib/systemd/system/$unit"
  chmod 0644 "$ROOT/lib/systemd/system/$unit"
done

install -m 0644 deploy/debian/copyright "$ROOT/usr/share/doc/cardwatch/copyright"
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
{
  echo "cardwatch ($VERSION) unstable; urgency=medium"
  echo
  echo "  * Built from the cardwatch tree at commit $COMMIT."
  echo
  echo " -- $MAINTAINER  $(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} | gzip -9n > "$ROOT/usr/share/doc/cardwatch/changelog.gz"
chmod 0644 "$ROOT/usr/share/doc/cardwatch/changelog.gz"

# Depends from the libraries the binary links (dpkg-shlibdeps wants a
# debian/control to read; a minimal one in a scratch directory)
SHL=$BUILD/deb-shlibs
rm -rf "$SHL"; mkdir -p "$SHL/debian"
printf 'Source: cardwatch\n\nPackage: cardwatch\nArchitecture: any\n' > "$SHL/debian/control"
ABS_BIN=$(cd "$ROOT/usr/bin" && pwd)/cardwatch
SHLIBS=$(cd "$SHL" && dpkg-shlibdeps -O "-e$ABS_BIN" 2>"$SHL/stderr") || {
  cat "$SHL/stderr" >&2; exit 1; }
DEPENDS=${SHLIBS#shlibs:Depends=}
[[ -n $DEPENDS && $SHLIBS == shlibs:Depends=* ]] || {
  echo "make_deb: dpkg-shlibdeps gave '$SHLIBS'" >&2; exit 1; }

for s in postinst prerm postrm; do
  install -m 0755 "deploy/debian/$s" "$ROOT/DEBIAN/$s"
done
echo /etc/cardwatch/cardwatch.ini > "$ROOT/DEBIAN/conffiles"
SIZE=$(du -sk --exclude=DEBIAN "$ROOT" | cut -f1)
cat > "$ROOT/DEBIAN/control" <<CONTROL
Package: cardwatch
Version: $VERSION
Architecture: $ARCH
Maintainer: $MAINTAINER
Installed-Size: $SIZE
Depends: adduser, $DEPENDS
Section: net
Priority: optional
Description: card transactions checked against exposed-card lists
 cardwatch consumes card transactions from Kafka, looks each card up in
 the cards exposed in known breaches (keyed fingerprints in Redis, never
 card numbers), evaluates misuse rules and raises alerts to the card's
 issuer on Kafka and through an HTTPS feed with a triage page.
 .
 This package installs the cardwatch command, its systemd units
 (cardwatch.service for the monitoring, cardwatch-feed.service for the
 issuer feed, neither enabled) and a sample configuration in
 /etc/cardwatch.
CONTROL
(cd "$ROOT" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' |
  LC_ALL=C sort -z | xargs -0 md5sum) > "$ROOT/DEBIAN/md5sums"
chmod 0644 "$ROOT/DEBIAN/control" "$ROOT/DEBIAN/conffiles" "$ROOT/DEBIAN/md5sums"
find "$ROOT" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --build --root-owner-group -Zxz "$ROOT" "$DEB.tmp" >/dev/null
mv "$DEB.tmp" "$DEB"
echo "  DEB   $DEB"
