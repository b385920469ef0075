#!/usr/bin/env bash
# Rebuild time of the service binary after a one-line change (issue 16), before and after the
# Cargo workspace, measured alternately in one run on this machine:
#
#   one crate  — 099b4e3, the last commit before the workspace (a worktree, its own target dir);
#   workspace  — this checkout (HEAD), in $CARGO_TARGET_DIR.
#
# The change is the same line in both: `MIN_HEAD_ML` in the preprocessing code (the core), set to
# a new value each round so that cargo always has something to rebuild. In the workspace a line of
# the service alone is timed too (`MAX_ENDPOINT_READS` in src/cds/prefetch.rs): the change most
# service work makes, which no longer recompiles the core.
# Each layout is first built with exactly the command that is timed, so that feature unification
# across a differently-selected build (say `make test`'s whole workspace) is not counted as a
# rebuild. Every edit is reverted at the end.
#
#   scripts/bench_rebuild.sh [ROUNDS]        (= make bench-rebuild; default 3 rounds)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
ROUNDS="${1:-3}"
BEFORE_COMMIT=099b4e3
WORK="$NEUROCDS_CACHE/bench-rebuild"
OLD="$WORK/one-crate"
OLD_TARGET="$WORK/target-one-crate"
mkdir -p "$WORK"
if [ ! -d "$OLD/.git" ] && [ ! -f "$OLD/.git" ]; then
  rm -rf "$OLD"
  git worktree add --detach "$OLD" "$BEFORE_COMMIT" >/dev/null 2>&1 || git clone -q --no-checkout . "$OLD"
  git -C "$OLD" checkout -q --detach "$BEFORE_COMMIT"
fi
# Seed the old layout's target dir from ours once: registry crates with the same version, features
# and profile are reused by fingerprint, so only what differs is built (not timed).
if [ ! -d "$OLD_TARGET" ] && [ -d "$CARGO_TARGET_DIR/release" ]; then
  echo "seeding $OLD_TARGET from $CARGO_TARGET_DIR (once)" >&2
  mkdir -p "$OLD_TARGET/release"
  cp -a "$CARGO_TARGET_DIR/release/build" "$CARGO_TARGET_DIR/release/deps" "$CARGO_TARGET_DIR/release/.fingerprint" "$OLD_TARGET/release/" 2>/dev/null || true
fi

NEW_CORE=crates/analysis/src/imaging/preprocess.rs
OLD_CORE="$OLD/src/imaging/preprocess.rs"
SERVICE=src/cds/prefetch.rs
# The edited files are put back as they were (uncommitted work in them included).
cp "$NEW_CORE" "$WORK/core.rs.orig"; cp "$SERVICE" "$WORK/service.rs.orig"
restore() {
  cp "$WORK/core.rs.orig" "$NEW_CORE"; cp "$WORK/service.rs.orig" "$SERVICE"
  git -C "$OLD" checkout -q -- src/imaging/preprocess.rs
}
trap restore EXIT

build_new() { cargo build --release --locked -p neurocds --bin neurocds --quiet; }
build_old() { (cd "$OLD" && CARGO_TARGET_DIR="$OLD_TARGET" cargo build --release --locked --bin neurocds --quiet); }
timed() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); python3 -c "print(f'{$t1 - $t0:.1f}')"; }
set_head_ml() { sed -i -E "s/^const MIN_HEAD_ML: f64 = [0-9.]+;/const MIN_HEAD_ML: f64 = $2;/" "$1"; grep -q "const MIN_HEAD_ML: f64 = $2;" "$1"; }
set_endpoint_reads() { sed -i -E "s/^const MAX_ENDPOINT_READS: usize = [0-9]+;/const MAX_ENDPOINT_READS: usize = $1;/" "$SERVICE"; grep -q "^const MAX_ENDPOINT_READS: usize = $1;" "$SERVICE"; }

echo "warming both layouts with the timed command (not timed)" >&2
build_old
build_new
echo "uptime: $(uptime)"
echo "rustc: $(rustc --version); cores: $(nproc)"
echo
echo "| round | one crate ($BEFORE_COMMIT): core line | workspace: core line | workspace: service line |"
echo "|---|---|---|---|"
for r in $(seq 1 "$ROUNDS"); do
  value="100.$r"
  set_head_ml "$OLD_CORE" "$value"; a=$(timed build_old)
  set_head_ml "$NEW_CORE" "$value"; b=$(timed build_new)
  set_endpoint_reads $((4 + r)); c=$(timed build_new)
  echo "| $r | $a s | $b s | $c s |"
done
echo
echo "uptime: $(uptime)"
