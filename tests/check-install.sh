#!/bin/sh
# `make install` must not leave switchyard.conf readable by all: it may hold LDAP or
# PostgreSQL passwords. Installs into a temporary DESTDIR and checks the config's mode:
# 0640 and group switchyard when that group exists and the file could be given to it
# (always so as root), else 0600. Exit 0 when right, 1 when not, 99 (automake's hard
# error) when the install itself fails.

builddir=${abs_top_builddir:-$(dirname "$0")/..}
: "${sysconfdir:?sysconfdir must be set (make check sets it)}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-install-XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT

# A make of our own, not a job of the make that runs the tests.
unset MAKEFLAGS MFLAGS
if ! make -C "$builddir" install DESTDIR="$tmp" >"$tmp.log" 2>&1; then
  cat "$tmp.log"
  rm -f "$tmp.log"
  echo "check-install: make install DESTDIR=$tmp failed" >&2
  exit 99
fi
rm -f "$tmp.log"

conf=$tmp$sysconfdir/switchyard/switchyard.conf
if [ ! -f "$conf" ]; then
  echo "check-install: $conf was not installed"
  exit 1
fi
mode=$(stat -c %a "$conf")
group=$(stat -c %G "$conf")
if getent group switchyard >/dev/null 2>&1 &&
   { [ "$(id -u)" = 0 ] || [ "$group" = switchyard ]; }; then
  want_mode=640 want_group=switchyard
else
  want_mode=600 want_group=$group
fi
echo "switchyard.conf installed with mode $mode, group $group"
if [ "$mode" != "$want_mode" ] || [ "$group" != "$want_group" ]; then
  echo "check-install: expected mode $want_mode, group $want_group"
  exit 1
fi
if [ "$(id -u)" = 0 ] && [ "$(stat -c %U "$conf")" != root ]; then
  echo "check-install: switchyard.conf does not belong to root"
  exit 1
fi
exit 0
