#!/bin/sh
# Every config key the loader accepts must be documented in man/switchyard.conf.5 and
# shown in the sample etc/switchyard.conf.
#
# The keys are the quoted names in the walk() handler lists of src/config/config.cc,
# written {"key", r.handler(...)}. In the man page a key must start a tag or heading
# (".BR key ...", ".SH [key]", ".SH [[key]]", ".SH [key.NAME]"); in the sample config it
# must be assigned or be a table header, commented out or not ("#key = ...", "[key]").
# POSIX sh, sed and grep only. Exit 0 when all are there, 1 when some are missing
# (listed on stdout), 99 (automake's hard error) when the inputs cannot be read.

srcdir=${abs_top_srcdir:-$(dirname "$0")/..}
config_cc=$srcdir/src/config/config.cc
man_page=$srcdir/man/switchyard.conf.5
sample=$srcdir/etc/switchyard.conf

for f in "$config_cc" "$man_page" "$sample"; do
  if [ ! -r "$f" ]; then
    echo "check-config-docs: cannot read $f" >&2
    exit 99
  fi
done

# Join the lines first, so that a handler list wrapped across lines is still found; then
# put each {"key", r.xxx( on a line of its own, marked, and keep only the marked lines.
keys=$(tr '\n' ' ' <"$config_cc" |
  sed 's/{[[:space:]]*"\([A-Za-z0-9_]*\)"[[:space:]]*,[[:space:]]*r\.[A-Za-z_][A-Za-z0-9_]*[[:space:]]*(/\
@KEY@\1\
/g' |
  sed -n 's/^@KEY@//p' |
  sort -u)

count=0
for key in $keys; do
  count=$((count + 1))
done
# The loader has well over ten keys: fewer means the extraction no longer matches the code.
if [ "$count" -lt 10 ]; then
  echo "check-config-docs: found only $count keys in $config_cc; has the walk() syntax changed?"
  exit 1
fi

missing=0
for key in $keys; do
  if ! grep -q "^\.\(B\|BR\|BI\|SH\|SS\)[[:space:]][[:space:]]*\"\{0,1\}\[\{0,2\}$key\([]. \"]\|\$\)" \
      "$man_page"; then
    echo "man/switchyard.conf.5: key '$key' is not documented"
    missing=$((missing + 1))
  fi
  if ! grep -q "^[#[:space:]]*\(\[\{1,2\}$key[].]\|$key[[:space:]]*=\)" "$sample"; then
    echo "etc/switchyard.conf: key '$key' is missing"
    missing=$((missing + 1))
  fi
done

if [ "$missing" -gt 0 ]; then
  echo "check-config-docs: $missing missing of $count keys"
  exit 1
fi
echo "check-config-docs: all $count keys documented"
exit 0
