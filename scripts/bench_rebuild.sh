#!/usr/bin/env bash
# Rebuild time of the service binary after a one-line change (issue 16), before and after the
# Cargo workspace, measured alternately in one run on this machine:
#
#   one crate  — 099b4e3, the last commit before the workspace;
#   split      — b4ca2a2, the commit that made the workspace (the same code, moved: the layout's
#                own effect);
#   now        — this checkout (HEAD), in $CARGO_TARGET_DIR (the code has grown since).
#
# The older two are worktrees under $NEUROCDS_CACHE/bench-rebuild with target dirs of their own,
# seeded once from ours (registry crates with the same version, features and profile are reused by
# fingerprint; only what differs is built, untimed). Two one-line changes, each set to a new value
# every round so that cargo always has something to rebuild:
#   core line    — `MIN_HEAD_ML` in the preprocessing code (the analysis core);
#   service line — `MAX_ENDPOINT_READS` in src/cds/prefetch.rs (the service alone: in a workspace
#                  it no longer recompiles the core).
# Each layout is first built with exactly the command that is timed, so that feature unification
# across a differently-selected build (say `make test`'s whole workspace) is not counted as a
# rebuild. Every edit is undone at the end (uncommitted work in those files included).
#
#   scripts/bench_rebuild.sh [ROUNDS]        (= make bench-rebuild; default 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ROUNDS="${1:-3}"
WORK="$NEUROCDS_CACHE/bench-rebuild"
mkdir -p "$WORK"

# name commit core-file (relative) build-args
LAYOUTS=(
  "one-crate 099b4e3 src/imaging/preprocess.rs --bin neurocds"
  "split b4ca2a2 crates/analysis/src/imaging/preprocess.rs -p neurocds --bin neurocds"
  "now HEAD crates/analysis/src/imaging/preprocess.rs -p neurocds --bin neurocds"
)
SERVICE=src/cds/prefetch.rs

dir_of() { if [ "$1" = now ]; then pwd; else echo "$WORK/$1"; fi; }
target_of() { if [ "$1" = now ]; then echo "$CARGO_TARGET_DIR"; else echo "$WORK/target-$1"; fi; }

for layout in "${LAYOUTS[@]}"; do
  read -r name commit _ <<<"$layout"
  [ "$name" = now ] && continue
  dir=$(dir_of "$name"); target=$(target_of "$name")
  if [ ! -e "$dir/.git" ]; then
    rm -rf "$dir"
    git clone -q --no-checkout . "$dir"
    git -C "$dir" checkout -q --detach "$commit"
  fi
  if [ ! -d "$target" ] && [ -d "$CARGO_TARGET_DIR/release" ]; then
    echo "seeding $target from $CARGO_TARGET_DIR (once)" >&2
    mkdir -p "$target/release"
    cp -a "$CARGO_TARGET_DIR/release/build" "$CARGO_TARGET_DIR/release/deps" "$CARGO_TARGET_DIR/release/.fingerprint" "$target/release/" 2>/dev/null || true
  fi
done

# This checkout's two files are put back as they were; the worktrees' by git.
NOW_CORE=crates/analysis/src/imaging/preprocess.rs
cp "$NOW_CORE" "$WORK/core.rs.orig"; cp "$SERVICE" "$WORK/service.rs.orig"
restore() {
  cp "$WORK/core.rs.orig" "$NOW_CORE"; cp "$WORK/service.rs.orig" "$SERVICE"
  for layout in "${LAYOUTS[@]}"; do
    read -r name _ core _ <<<"$layout"
    [ "$name" = now ] || git -C "$(dir_of "$name")" checkout -q -- "$core" "$SERVICE"
  done
}
trap restore EXIT

build() { # layout-line
  local name core args
  read -r name _ core args <<<"$1"
  (cd "$(dir_of "$name")" && CARGO_TARGET_DIR="$(target_of "$name")" cargo build --release --locked --quiet $args)
}
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print(f'{$t1 - $t0:.1f}')"; }
set_const() { # file name value
  sed -i -E "s/^const $2: ([a-z0-9]+) = [0-9.]+;/const $2: \1 = $3;/" "$1"
  grep -q "^const $2: [a-z0-9]* = $3;" "$1"
}

echo "warming every layout with the timed command (not timed)" >&2
for layout in "${LAYOUTS[@]}"; do build "$layout"; done
echo "uptime: $(uptime)"
echo "rustc: $(rustc --version); cores: $(nproc)"
echo
echo "| round | core line: one crate | core line: split | core line: now | service line: one crate | service line: split | service line: now |"
echo "|---|---|---|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  row="| $r"
  for layout in "${LAYOUTS[@]}"; do
    read -r name _ core _ <<<"$layout"
    set_const "$(dir_of "$name")/$core" MIN_HEAD_ML "100.$r"
    row="$row | $(timed build "$layout") s"
  done
  for layout in "${LAYOUTS[@]}"; do
    read -r name _ _ _ <<<"$layout"
    set_const "$(dir_of "$name")/$SERVICE" MAX_ENDPOINT_READS $((4 + r))
    row="$row | $(timed build "$layout") s"
  done
  echo "$row |"
done
echo
echo "uptime: $(uptime)"
