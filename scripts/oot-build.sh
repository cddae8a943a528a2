# Sourced by scripts/fuzz and scripts/test-sanitized: configures and builds a copy of the
# source tree out of tree, so that a differently configured build (clang + libFuzzer, or
# ASan + UBSan) never disturbs the normal in-tree build.
#
#   oot_prepare DIR CONFIGURE-ARGS...
#
# copies the sources (git's tracked and untracked-but-not-ignored files; timestamps kept, so
# rebuilds are incremental) to DIR/src, runs autoreconf there once, and configures a VPATH
# build in DIR/obj (again when the arguments change). Sets oot_src and oot_obj.
# Outside a git checkout the tree itself is the source, which then must not be configured
# in tree (automake refuses VPATH builds from a configured source tree).

oot_prepare() {
  oot_dir=$1
  shift
  oot_top=$(pwd)
  mkdir -p "$oot_dir"
  oot_dir=$(cd "$oot_dir" && pwd)
  if git -C "$oot_top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    oot_src=$oot_dir/src
    mkdir -p "$oot_src"
    # Copy only what differs, keeping timestamps (make then rebuilds only what changed).
    git -C "$oot_top" ls-files -z -co --exclude-standard | (cd "$oot_top" && xargs -0 sh -c '
      for f; do
        [ -f "$f" ] || continue
        cmp -s "$f" "$0/$f" && continue
        mkdir -p "$0/$(dirname "$f")" && cp -p "$f" "$0/$f"
      done' "$oot_src")
  else
    oot_src=$oot_top
    if [ -f "$oot_src/config.status" ]; then
      echo "$oot_src is configured in tree: run 'make distclean' there first" >&2
      return 1
    fi
  fi
  if [ ! -x "$oot_src/configure" ] || [ "$oot_src/configure.ac" -nt "$oot_src/configure" ] ||
     [ "$oot_src/Makefile.am" -nt "$oot_src/Makefile.in" ]; then
    (cd "$oot_src" && autoreconf -fi) || return 1
  fi
  oot_obj=$oot_dir/obj
  mkdir -p "$oot_obj"
  oot_args="$*"
  if [ ! -f "$oot_obj/Makefile" ] || [ "$oot_src/configure" -nt "$oot_obj/config.status" ] || [ "$(cat "$oot_obj/.oot-configure-args" 2>/dev/null)" != "$oot_args" ]; then
    (cd "$oot_obj" && "$oot_src/configure" --sysconfdir=/etc --localstatedir=/var "$@") || return 1
    printf '%s\n' "$oot_args" >"$oot_obj/.oot-configure-args"
  fi
}
