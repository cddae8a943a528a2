#!/bin/sh
# Runs the Python integration suite against real Dovecot stores ("make check" runs this with
# abs_top_builddir and abs_top_srcdir exported).  The exit status is unittest's; the wall
# time of each file is printed at the end.
here=$(cd "$(dirname "$0")" && pwd)
: "${abs_top_srcdir:=$(cd "$here/../.." && pwd)}"
: "${abs_top_builddir:=$abs_top_srcdir}"
# No __pycache__ in the source tree (read-only under "make distcheck").
PYTHONDONTWRITEBYTECODE=1
export abs_top_srcdir abs_top_builddir PYTHONDONTWRITEBYTECODE
PYTHON3=${PYTHON3:-python3}
cd "$abs_top_builddir" || exit 1
exec "$PYTHON3" "$abs_top_srcdir/tests/integration/run_suite.py"
