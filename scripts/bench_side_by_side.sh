#!/usr/bin/env bash
# neurocds against the Python reference pipeline, side by side in one run (issue 18;
# bench/side_by_side.py, bench/reference_pipeline.py): ROUNDS fresh synthetic studies (default
# 9; rounds where either side stops before the ensemble are skipped, at least 7 must remain),
# each analysed cold by both, who goes first alternating. Prints a Markdown table for
# BENCHMARKS.md, then the figures against bench/baseline.json (regressions over 20 % flagged; a
# report, never a failure). Starts the demo service first (idempotent), like `make bench`.
#
#   scripts/bench_side_by_side.sh [ROUNDS]        (= make bench-side-by-side)
#
# The reference runs in the torch venv, on the same libtorch build as neurocds, with pydicom,
# scipy, requests and PyJWT added (once).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-9}"
scripts/demo.sh > /dev/null
. scripts/env.sh
DEMO="$NEUROCDS_CACHE/demo"; BASE="http://127.0.0.1:${NEUROCDS_DEMO_PORT:-8080}"; ISS="https://ehr.demo.neurocds.org"
STAMP="$VIRTUAL_ENV/.neurocds-reference-1"
if ! [ -f "$STAMP" ]; then
  echo "adding pydicom, scipy, requests and PyJWT to $VIRTUAL_ENV (once)" >&2
  "$VIRTUAL_ENV/bin/pip" install -q --disable-pip-version-check "pydicom==3.0.1" "scipy==1.17.1" "requests==2.32.3" "PyJWT[crypto]==2.10.1"
  touch "$STAMP"
fi
eval "$(scripts/peers.sh start)"
LAB="${NEUROCDS_LAB_BIN:-$CARGO_TARGET_DIR/release/neurocds-lab}"
COHORT="$DEMO/side-by-side-$(date +%s)"
trap 'rm -rf "$COHORT"' EXIT
"$LAB" synth --out "$COHORT" --patients "$ROUNDS" --seed "$(date +%s)" --quiet
"$NEUROCDS_CACHE/tools-venv/bin/python" scripts/demo_ehr.py load --cohort "$COHORT" --orthanc "$NEUROCDS_TEST_ORTHANC" \
  --dicomweb "$NEUROCDS_TEST_DICOMWEB" --fhir "$NEUROCDS_TEST_FHIR" > "$COHORT/loaded.jsonl"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo); uptime: $(uptime)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
"$VIRTUAL_ENV/bin/python" bench/side_by_side.py "$COHORT/loaded.jsonl" "$BASE" "$DEMO/ehr" "$ISS" "$NEUROCDS_TEST_FHIR" "$DATABASE_URL" "$NEUROCDS_TEST_DICOMWEB" "$DEMO/side-by-side-results.json"
"$VIRTUAL_ENV/bin/python" bench/compare.py "$DEMO/side-by-side-results.json" bench/baseline.json
echo "uptime: $(uptime)"
