#!/usr/bin/env bash
# Workers benchmark (issue 17): analyses per minute with 1 and 2 `neurocds worker` processes, and
# the cached hook's p99 at 16 connections while they back-fill (bench/workers.py). Uses the demo's
# peers, keys and configuration (the demo is started first; idempotent) and a cohort of 24 studies
# of its own, loaded once into the demo's Orthanc and FHIR server. NEUROCDS_BENCH_WORKER_NICE=10
# runs the workers under nice (a machine shared with `serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/demo.sh > /dev/null
. scripts/env.sh
eval "$(scripts/peers.sh start)"
DEMO="$NEUROCDS_CACHE/demo"; ISS="https://ehr.demo.neurocds.org"
PY="$NEUROCDS_CACHE/tools-venv/bin/python"
LAB="${NEUROCDS_LAB_BIN:-$CARGO_TARGET_DIR/release/neurocds-lab}"
BIN="${NEUROCDS_BIN:-$CARGO_TARGET_DIR/release/neurocds}"
COHORT="$DEMO/bench-workers"
if [ ! -s "$COHORT/loaded.jsonl" ]; then
  rm -rf "$COHORT"
  "$LAB" synth --out "$COHORT" --patients 24 --seed 20261207 --quiet
  "$PY" scripts/demo_ehr.py load --cohort "$COHORT" --orthanc "$NEUROCDS_TEST_ORTHANC" --dicomweb "$NEUROCDS_TEST_DICOMWEB" \
    --fhir "$NEUROCDS_TEST_FHIR" > "$COHORT/loaded.jsonl.tmp"
  mv "$COHORT/loaded.jsonl.tmp" "$COHORT/loaded.jsonl"
fi
mkdir -p "$DEMO/bench-workers-run"
echo "== workers: $(nproc) cores, load average $(cut -d' ' -f1 /proc/loadavg) before"
"$PY" bench/workers.py "$COHORT/loaded.jsonl" "$BIN" "$DEMO/neurocds.toml" "$DEMO/ehr" "$ISS" "$NEUROCDS_TEST_FHIR" \
  "$NEUROCDS_TEST_PG_ADMIN_URL" "$DEMO/bench-workers-run" "${NEUROCDS_BENCH_WORKER_NICE:-0}"
