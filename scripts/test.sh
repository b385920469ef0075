#!/usr/bin/env bash
# The test command: installs what is missing, starts the real peers (private PostgreSQL unless
# DATABASE_URL is set, Orthanc + DICOMweb, two sekmet FHIR servers), runs every test, and stops
# the peers it started, whatever happens.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
. scripts/env.sh
export NEUROCDS_PEERS_DIR="${NEUROCDS_PEERS_DIR:-$NEUROCDS_CACHE/peers-test}"
export NEUROCDS_PG_PORT="${NEUROCDS_PG_PORT:-55433}" NEUROCDS_ORTHANC_PORT="${NEUROCDS_ORTHANC_PORT:-58142}"
export NEUROCDS_FHIR_PORT="${NEUROCDS_FHIR_PORT:-58190}" NEUROCDS_FHIR_AUTH_PORT="${NEUROCDS_FHIR_AUTH_PORT:-58191}"
export NEUROCDS_PG_DATA="${NEUROCDS_PG_DATA:-$( [ "$(id -u)" = 0 ] && echo /var/tmp/neurocds-pg-test || echo "$NEUROCDS_PEERS_DIR/pg")}"
trap 'scripts/peers.sh stop' EXIT
eval "$(scripts/peers.sh start)"
# Two test threads: the machine has two cores, and each test runs a whole service.
# `--tests`: unit and integration tests (the doc comments hold wire formats, not doctests).
LOG="$(mktemp)"
set +e
cargo test --release --locked --no-fail-fast --tests -- --test-threads="${NEUROCDS_TEST_THREADS:-2}" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -E '^test result:' "$LOG" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
failed=$(grep -E '^test result:' "$LOG" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
rm -f "$LOG"
echo "all test binaries: ${passed:-0} passed, ${failed:-0} failed"
# The fuzz targets (FUZZING.md) live outside the workspace with a lock file of their own; they
# rotted once unnoticed. Checked here on the stable toolchain; `make fuzz` builds and runs them.
echo "[test] checking that the fuzz targets still compile…"
if cargo check --release --locked --quiet --manifest-path fuzz/Cargo.toml --bins; then
  echo "fuzz targets: compile"
else
  echo "fuzz targets: DO NOT COMPILE (fuzz/Cargo.toml, fuzz/Cargo.lock)"
  status=1
fi
exit "$status"
