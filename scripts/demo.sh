#!/usr/bin/env bash
# The demo: a hospital in a box. Installs what is missing, starts the peers (private PostgreSQL,
# Orthanc + DICOMweb as the PACS, sekmet as the EHR's FHIR server), writes a synthetic cohort,
# loads a glioblastoma-like and a lymphoma-like study into the PACS and their records into FHIR,
# starts neurocds with the shipped ensemble, then plays the EHR: a signed order-select and then an
# order-sign for a brain MRI order, for each patient. Prints the cards and leaves the service
# running with the case-report URLs printed.
#
#   scripts/demo.sh        (make demo)
#   scripts/demo.sh stop   (make stop)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
scripts/bootstrap.sh
. scripts/env.sh
DEMO="$NEUROCDS_CACHE/demo"
PORT="${NEUROCDS_DEMO_PORT:-8080}"
BASE="http://127.0.0.1:$PORT"
ISS="https://ehr.demo.neurocds.org"
PY="$NEUROCDS_CACHE/tools-venv/bin/python"
mkdir -p "$DEMO"

if [ "${1:-}" = stop ]; then
  pkill -f "neurocds-demo-marker" 2>/dev/null || true
  [ -f "$DEMO/neurocds.pid" ] && kill "$(cat "$DEMO/neurocds.pid")" 2>/dev/null || true
  scripts/peers.sh stop
  echo "demo stopped"; exit 0
fi

eval "$(scripts/peers.sh start)"
echo "[demo] building neurocds and neurocds-lab (release)…"
cargo build --release --locked --quiet --bin neurocds --bin neurocds-lab
BIN="${NEUROCDS_BIN:-$CARGO_TARGET_DIR/release/neurocds}"
LAB="${NEUROCDS_LAB_BIN:-$CARGO_TARGET_DIR/release/neurocds-lab}"

# 1. Synthetic studies (deterministic per seed).
# Seed 4242: the cohort the end-to-end tests use (its first GBM and first PCNSL).
COHORT="$DEMO/cohort-4242"
if [ ! -f "$COHORT/manifest.json" ]; then
  echo "[demo] writing synthetic DICOM studies…"
  "$LAB" synth --out "$COHORT" --patients 8 --seed 4242 --quiet
fi
read -r GBM PCNSL < <("$PY" - "$COHORT/manifest.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); rows = d["patients"] if isinstance(d, dict) else d
pick = lambda lab: next(r["patient_id"] for r in rows if r["label"] == lab and not r.get("mimic"))
print(pick("gbm"), pick("pcnsl"))
PY
)

# 2. The PACS and the EHR's FHIR records.
echo "[demo] loading the two studies into Orthanc and their records into FHIR…"
"$PY" scripts/demo_ehr.py load --cohort "$COHORT" --orthanc "$NEUROCDS_TEST_ORTHANC" --dicomweb "$NEUROCDS_TEST_DICOMWEB" \
  --fhir "$NEUROCDS_TEST_FHIR" --patient "$GBM" --patient "$PCNSL" > "$DEMO/loaded.jsonl"
cat "$DEMO/loaded.jsonl"

# 3. The EHR's signing key, trusted by neurocds through its JWKS.
[ -f "$DEMO/ehr/jwks.json" ] || "$PY" scripts/ehr_token.py keygen --dir "$DEMO/ehr" --alg ES384 --kid demo-ehr >/dev/null
cat > "$DEMO/neurocds.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
public_base_url = "$BASE"

# The demo's peers all listen on loopback, which requests may otherwise never reach.
[egress]
allowed_networks = ["127.0.0.0/8"]

[[trust.clients]]
iss = "$ISS"
jwks = '''$(cat "$DEMO/ehr/jwks.json")'''
fhir_servers = ["$NEUROCDS_TEST_FHIR"]
dicomweb_origins = ["$NEUROCDS_TEST_DICOMWEB"]
TOML

# 4. neurocds itself.
if ! curl -fsS "$BASE/healthz" >/dev/null 2>&1; then
  echo "[demo] starting neurocds on $BASE…"
  NEUROCDS_CONFIG="$DEMO/neurocds.toml" setsid nohup "$BIN" serve </dev/null >"$DEMO/neurocds.log" 2>&1 &
  echo $! > "$DEMO/neurocds.pid"
fi
for _ in $(seq 1 300); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$BASE/readyz" || { echo "[demo] neurocds did not become ready; see $DEMO/neurocds.log"; tail -20 "$DEMO/neurocds.log"; exit 1; }
echo

# 5. Play the EHR: order-select (starts the analysis), then order-sign (shows the card).
for P in "$GBM" "$PCNSL"; do
  FID=$(echo "$P" | tr 'A-Z_' 'a-z-')
  echo "[demo] patient $FID: order-select…"
  "$PY" scripts/demo_ehr.py hook --service "$BASE" --keys "$DEMO/ehr" --iss "$ISS" --hook order-select --patient "$FID" --fhir "$NEUROCDS_TEST_FHIR" > /dev/null
  sleep 1
  echo "[demo] patient $FID: order-sign…"
  "$PY" scripts/demo_ehr.py hook --service "$BASE" --keys "$DEMO/ehr" --iss "$ISS" --hook order-sign --patient "$FID" --fhir "$NEUROCDS_TEST_FHIR" --pretty
done
echo
echo "neurocds is running at $BASE (readiness: $BASE/readyz); logs: $DEMO/neurocds.log"
echo "Stop everything with: make stop"
