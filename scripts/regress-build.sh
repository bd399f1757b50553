#!/usr/bin/env bash
# Builds what PostgreSQL's own regression suite needs to run against the machine's PostgreSQL 15
# (pg_regress, regress.so and the src/test/regress folder), the way pg_upgrade's test feeds it,
# from Debian's source package of the installed server version.
#
# Everything lands in <repo>/.tmp/regress/; a stamp file records the version, so a second run
# with the same installed server returns at once. Runs as root (or uses sudo for apt).
#
#   .tmp/regress/stamp               key=value lines: debian_version and upstream_version (of
#                                    the installed server), source_version (built from), dir
#   .tmp/regress/<debian version>/   pg_regress, regress.so, refint.so, autoinc.so and the rest
#                                    of src/test/regress: parallel_schedule, sql/, expected/,
#                                    data/, resultmap (PostgreSQL 15 has no input/ or output/)
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
cache="$repo/.tmp/regress"
stamp="$cache/stamp"
package="${REGRESS_PG_PACKAGE:-postgresql-15}"
SECONDS=0
mark=0

step() {
  local now=$SECONDS
  echo "== regress-build: $* (at ${now}s; the step before took $((now - mark))s)"
  mark=$now
}

sudo_apt() {
  if [ "$(id -u)" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive "$@"
  else
    sudo env DEBIAN_FRONTEND=noninteractive "$@"
  fi
}

version="$(dpkg-query -W -f='${Version}' "$package" 2>/dev/null || true)"
if [ -z "$version" ]; then
  echo "regress-build: $package is not installed (dpkg-query found no version)" >&2
  exit 1
fi
upstream="${version%%-*}"
upstream="${upstream#*:}"
out="$cache/$version"

# One build at a time (two test workers may ask at once); the second then finds the stamp.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9

if [ -f "$stamp" ] && grep -qxF "debian_version=$version" "$stamp" &&
  [ -x "$out/pg_regress" ] && [ -f "$out/regress.so" ] && [ -f "$out/parallel_schedule" ]; then
  echo "== regress-build: $package $version is already built in $out"
  exit 0
fi

rm -f "$stamp"

# 1. A deb-src entry for every Debian suite the machine installs binaries from.
step "source entries for $package $version"
added_sources=no
if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  src_list=/etc/apt/sources.list.d/debian-src.sources
  tmp_list="$(mktemp)"
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed -E 's/^Types:[[:space:]]*deb[[:space:]]*$/Types: deb-src/' \
      /etc/apt/sources.list.d/debian.sources >"$tmp_list"
  elif [ -f /etc/apt/sources.list ]; then
    src_list=/etc/apt/sources.list.d/debian-src.list
    sed -nE 's/^deb[[:space:]]+/deb-src /p' /etc/apt/sources.list >"$tmp_list"
  fi
  if ! grep -qE '^(Types: deb-src|deb-src )' "$tmp_list"; then
    echo "regress-build: found no Debian deb entries to derive deb-src entries from" >&2
    exit 1
  fi
  echo "regress-build: adding $src_list"
  sudo_apt install -m 0644 "$tmp_list" "$src_list"
  rm -f "$tmp_list"
  added_sources=yes
fi

# 2. The tools: dpkg-dev unpacks the source package (it brings patch, bzip2, xz-utils, perl);
#    gcc, libc6-dev and make build pg_regress and regress.so. The release tarball carries the
#    generated parser and headers, so neither bison nor flex is needed.
need=()
for pkg in dpkg-dev gcc libc6-dev make; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || need+=("$pkg")
done
updated=no
if [ "$added_sources" = yes ] || [ "${#need[@]}" -gt 0 ]; then
  step "apt-get update"
  sudo_apt apt-get update -q
  updated=yes
fi
if [ "${#need[@]}" -gt 0 ]; then
  step "apt-get install ${need[*]}"
  sudo_apt apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# 3. The source of the installed version. When the mirror cannot serve it (a security update
#    whose source is missing there), the newest other 15.x source that downloads: the module
#    magic block of regress.so only has to match the server's major version.
work="$cache/src"
fetch_source() {
  rm -rf "$work"
  mkdir -p "$work"
  (cd "$work" && apt-get source -q --only-source "$package=$1") >"$cache/source.log" 2>&1
}
rm -rf "$out"
source_version="$version"
step "apt-get source $package=$version"
if ! fetch_source "$version" && [ "$updated" = no ]; then
  # The source indexes may be missing or stale.
  step "apt-get update (apt-get source failed)"
  sudo_apt apt-get update -q
  updated=yes
  fetch_source "$version" || true
fi
if [ -z "$(find "$work" -mindepth 2 -maxdepth 2 -name configure)" ]; then
  tail -n 5 "$cache/source.log" >&2
  source_version=
  major="${upstream%%.*}"
  for other in $(apt-cache showsrc "$package" 2>/dev/null | sed -n 's/^Version: //p' | sort -u -r -V); do
    other_upstream="${other%%-*}"
    other_upstream="${other_upstream#*:}"
    if [ "$other" = "$version" ] || [ "${other_upstream%%.*}" != "$major" ]; then
      continue
    fi
    step "apt-get source $package=$other (instead of $version)"
    if fetch_source "$other"; then
      source_version="$other"
      echo "regress-build: warning: no source of $package $version could be downloaded;" \
        "building regress.so from $other (same major version) instead" >&2
      break
    fi
    tail -n 3 "$cache/source.log" >&2
  done
  if [ -z "$source_version" ]; then
    echo "regress-build: no source of $package $major.x could be downloaded" >&2
    exit 1
  fi
fi
source_upstream="${source_version%%-*}"
source_upstream="${source_upstream#*:}"
srcdir="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name "*-$source_upstream" | head -n 1)"
if [ -z "$srcdir" ] || [ ! -f "$srcdir/configure" ]; then
  echo "regress-build: apt-get source left no unpacked tree in $work" >&2
  ls -la "$work" >&2
  exit 1
fi

# 4. configure with as little as possible, and build only the regression test's parts.
step "configure"
(cd "$srcdir" && ./configure -q --without-readline --without-icu --without-zlib \
  --without-openssl --without-lz4 --without-zstd --without-llvm --disable-nls \
  --without-perl --without-python --without-tcl --without-gssapi --without-ldap \
  --without-pam --without-libxml --without-libxslt --without-systemd --without-selinux \
  >"$work/configure.log" 2>&1) || {
  tail -n 30 "$work/configure.log" >&2
  exit 1
}
step "make -C src/test/regress"
make -s -j2 -C "$srcdir/src/test/regress" >"$work/make.log" 2>&1 || {
  tail -n 40 "$work/make.log" >&2
  exit 1
}

# 5. Keep the built programs and the test folder; drop the source tree.
step "keep the regression folder"
mkdir -p "$out"
cp -a "$srcdir/src/test/regress/." "$out/"
rm -f "$out"/*.o "$out"/GNUmakefile "$out"/Makefile "$out"/meson.build
for file in pg_regress regress.so refint.so autoinc.so parallel_schedule; do
  if [ ! -e "$out/$file" ]; then
    echo "regress-build: the build left no $file" >&2
    exit 1
  fi
done
# The server (an unprivileged user when we are root) loads the .so files and reads data/.
chmod -R a+rX "$out"
rm -rf "$work"
# Builds of other versions are stale.
for old in "$cache"/*/; do
  if [ "$(basename "$old")" != "$version" ] && [ -x "$old/pg_regress" ]; then
    rm -rf "$old"
  fi
done
printf 'debian_version=%s\nupstream_version=%s\nsource_version=%s\ndir=%s\n' \
  "$version" "$upstream" "$source_version" "$out" >"$stamp"
step "done: $package $version is built in $out"
