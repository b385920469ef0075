#!/usr/bin/env bash
# Benchmarks against the running demo service (it is started first; idempotent):
#  1. load on the CDS endpoint (target: p99 < 50 ms and >= 1,000 req/s on 2 cores) for
#     (a) a non-brain order and (b) a brain MRI order whose analysis is already cached;
#     wrk, 16 connections, 10 s, a fresh signed ES384 token per request;
#  2. cold end to end (target: < 5 s): order-select → order-sign with the decision, for studies
#     no hook has seen (a fresh synthetic cohort each run), with the stages the audit recorded;
#  3. the figures against bench/baseline.json (bench/compare.py: regressions over 20 % flagged,
#     a report that never fails). A new baseline: copy $NEUROCDS_CACHE/demo/bench-results.json
#     there with the machine, commit and date.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/demo.sh > /dev/null
. scripts/env.sh
DEMO="$NEUROCDS_CACHE/demo"; BASE="http://127.0.0.1:${NEUROCDS_DEMO_PORT:-8080}"; ISS="https://ehr.demo.neurocds.org"
PY="$NEUROCDS_CACHE/tools-venv/bin/python"
eval "$(scripts/peers.sh start)"
URL="$BASE/cds-services/neurocds-brain-mri-order-sign"
PATIENT=$(head -1 "$DEMO/loaded.jsonl" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["patient_id"])')
"$PY" - "$NEUROCDS_TEST_FHIR" "$PATIENT" "$DEMO" <<'PY'
import json, sys, uuid, requests
fhir, patient, out = sys.argv[1:]
bundle = requests.get(f"{fhir}/ImagingStudy", params={"patient": patient, "_include": "ImagingStudy:endpoint"}, timeout=30).json()
def body(code, prefetch):
    order = {"resourceType": "ServiceRequest", "id": "o1", "status": "draft", "intent": "order",
             "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": code}]}, "subject": {"reference": f"Patient/{patient}"}}
    return {"hook": "order-sign", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/bench", "patientId": patient,
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}},
            "prefetch": prefetch}
json.dump(body("73721", {"patient": None, "priorImaging": None}), open(f"{out}/bench-nonbrain.json", "w"))
json.dump(body("70553", {"patient": None, "priorImaging": bundle}), open(f"{out}/bench-brain.json", "w"))
PY
RESULTS="$DEMO/bench-results.json"
echo '{"metrics": {}}' > "$RESULTS"
# More tokens than the service can answer in 10 s, so that no request is a replay.
for CASE in nonbrain brain; do
  "$PY" bench/sign_many.py "$DEMO/ehr" "$ISS" "$URL" 100000 > "$DEMO/tokens-$CASE.txt"
  echo "== $CASE order, 16 connections, 10 s (wrk -t2 -c16)"
  wrk -t2 -c16 -d10s --latency -s bench/cds_load.lua "$URL" -- "$DEMO/tokens-$CASE.txt" "$DEMO/bench-$CASE.json" | tee "$DEMO/wrk-$CASE.txt" | grep -E "requests=|Latency|Req/Sec|Non-2xx" || true
done
"$PY" - "$DEMO" "$RESULTS" <<'PY'
import json, re, sys
demo, out = sys.argv[1:]
results = json.load(open(out))
def figures(case):
    line = next(l for l in open(f"{demo}/wrk-{case}.txt") if l.startswith("requests="))
    return {k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", line)}
a, b = figures("nonbrain"), figures("brain")
m = results["metrics"]
m["hook_nonbrain_rps"] = {"value": a["rps"], "better": "higher", "unit": "req/s"}
m["hook_nonbrain_p99_ms"] = {"value": a["p99_ms"], "better": "lower", "unit": "ms"}
m["hook_brain_cached_rps"] = {"value": b["rps"], "better": "higher", "unit": "req/s"}
m["hook_brain_cached_p99_ms"] = {"value": b["p99_ms"], "better": "lower", "unit": "ms"}
m["hook_brain_cached_to_nonbrain_ratio"] = {"value": b["rps"] / a["rps"], "better": "higher", "unit": "x"}
json.dump(results, open(out, "w"), indent=1)
PY

echo "== cold end to end: order-select → decision, 4 studies never seen before"
LAB="${NEUROCDS_LAB_BIN:-$CARGO_TARGET_DIR/release/neurocds-lab}"
COLD="$DEMO/cold-$(date +%s)"
"$LAB" synth --out "$COLD" --patients 4 --seed "$(date +%s)" --quiet
"$PY" scripts/demo_ehr.py load --cohort "$COLD" --orthanc "$NEUROCDS_TEST_ORTHANC" --dicomweb "$NEUROCDS_TEST_DICOMWEB" \
  --fhir "$NEUROCDS_TEST_FHIR" > "$COLD/loaded.jsonl"
"$PY" bench/cold_e2e.py "$COLD/loaded.jsonl" "$BASE" "$DEMO/ehr" "$ISS" "$NEUROCDS_TEST_FHIR" "$DATABASE_URL" "$RESULTS"
rm -rf "$COLD"
# A report against the committed baseline (regressions over 20 % flagged; never a failure).
"$PY" bench/compare.py "$RESULTS" bench/baseline.json
