#!/usr/bin/env bash
# The demo: a hospital in a box. Installs what is missing, starts the peers (private PostgreSQL,
# Orthanc + DICOMweb as the PACS, sekmet as the EHR's FHIR server), writes a synthetic cohort,
# loads a glioblastoma-like and a lymphoma-like study into the PACS and their records into FHIR,
# starts neurocds with the shipped ensemble, then plays the EHR: a signed order-select and then an
# order-sign for a brain MRI order, for each patient. Prints the cards and leaves the service
# running with the case-report URLs printed. The hospital's identity provider (npm oidc-provider,
# scripts/oidc_provider.mjs) runs beside it with two demo users whose passwords are printed: the
# case-report URL opens after one sign-in.
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
IDP_PORT="${NEUROCDS_DEMO_IDP_PORT:-8081}"
IDP="http://127.0.0.1:$IDP_PORT"
PY="$NEUROCDS_CACHE/tools-venv/bin/python"
mkdir -p "$DEMO"

if [ "${1:-}" = stop ]; then
  pkill -f "neurocds-demo-marker" 2>/dev/null || true
  [ -f "$DEMO/neurocds.pid" ] && kill "$(cat "$DEMO/neurocds.pid")" 2>/dev/null || true
  [ -f "$DEMO/idp.pid" ] && kill "$(cat "$DEMO/idp.pid")" 2>/dev/null || true
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

# 4. The hospital's identity provider, with a neuro-oncologist and a compliance officer; it is
# also the EHR's SMART authorization server (ISSUER/fhir) and shows the EHR's screen (ISSUER/ehr). Their
# passwords, the client secret and the session key are made once per machine and kept (0600).
if [ ! -f "$DEMO/idp-secrets.json" ]; then
  (umask 077; "$PY" - > "$DEMO/idp-secrets.json" <<'PY'
import json, secrets
print(json.dumps({"onc": secrets.token_urlsafe(9), "compliance": secrets.token_urlsafe(9),
                  "client_secret": secrets.token_urlsafe(32), "session_key": secrets.token_hex(64)}))
PY
  )
fi
secret() { "$PY" -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$DEMO/idp-secrets.json" "$1"; }
ONC_PW=$(secret onc); COMP_PW=$(secret compliance)
if ! curl -fsS "$IDP/.well-known/openid-configuration" >/dev/null 2>&1; then
  echo "[demo] starting the hospital's identity provider on $IDP…"
  IDP_CONFIG=$("$PY" - "$IDP_PORT" "$BASE" "$(secret client_secret)" "$ONC_PW" "$COMP_PW" "$DEMO/ehr-cards.json" <<'PY'
import json, sys
port, base, client_secret, onc, comp, cards = sys.argv[1:]
print(json.dumps({"port": int(port),
  "clients": [{"client_id": "neurocds", "client_secret": client_secret, "redirect_uris": [f"{base}/auth/callback"]},
              {"client_id": "neurocds-smart", "client_secret": client_secret, "redirect_uris": [f"{base}/launch/callback"]}],
  "users": [{"username": "dr.onc", "password": onc, "name": "Dr Demo (neuro-oncology)", "groups": ["neurocds-neuro-oncology"], "fhirUser": "Practitioner/demo-neurologist"},
            {"username": "compliance", "password": comp, "name": "Demo compliance officer", "groups": ["neurocds-compliance"]}],
  "ehr": {"cards_file": cards}}))
PY
  )
  NODE_PATH="$NEUROCDS_CACHE/node/node_modules" setsid nohup node scripts/oidc_provider.mjs "$IDP_CONFIG" </dev/null >"$DEMO/idp.log" 2>&1 &
  echo $! > "$DEMO/idp.pid"
  for _ in $(seq 1 100); do curl -fsS "$IDP/.well-known/openid-configuration" >/dev/null 2>&1 && break; sleep 0.1; done
  curl -fsS "$IDP/.well-known/openid-configuration" >/dev/null || { echo "[demo] the identity provider did not start; see $DEMO/idp.log"; tail -20 "$DEMO/idp.log"; exit 1; }
fi

cat > "$DEMO/neurocds.toml" <<TOML
[server]
listen = "127.0.0.1:$PORT"
public_base_url = "$BASE"

# The demo's peers all listen on loopback, which requests may otherwise never reach.
[egress]
allowed_networks = ["127.0.0.0/8"]

# Staff sign in to the pages at the demo's identity provider.
[staff.sso]
issuer_url = "$IDP"
client_id = "neurocds"
client_secret = "$(secret client_secret)"
scopes = ["profile", "groups"]
session_key = "$(secret session_key)"

[[trust.clients]]
iss = "$ISS"
jwks = '''$(cat "$DEMO/ehr/jwks.json")'''
# The EHR launches the case report as a SMART app (its FHIR base for launches: $IDP/fhir).
smart = { client_id = "neurocds-smart", client_secret = "$(secret client_secret)" }
fhir_servers = ["$NEUROCDS_TEST_FHIR", "$IDP/fhir"]
dicomweb_origins = ["$NEUROCDS_TEST_DICOMWEB"]
TOML

# 5. neurocds itself. A service still running an older build (its binary was replaced by the
# build above: /proc says "(deleted)") is stopped first, so that the demo and the benchmarks
# always run what was just built.
if [ -f "$DEMO/neurocds.pid" ] && [ "$(readlink "/proc/$(cat "$DEMO/neurocds.pid")/exe" 2>/dev/null || true)" = "$(readlink -f "$BIN") (deleted)" ]; then
  echo "[demo] neurocds was rebuilt: restarting it"
  kill "$(cat "$DEMO/neurocds.pid")" 2>/dev/null || true
  for _ in $(seq 1 100); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 || break; sleep 0.1; done
fi
if ! curl -fsS "$BASE/healthz" >/dev/null 2>&1; then
  echo "[demo] starting neurocds on $BASE…"
  NEUROCDS_CONFIG="$DEMO/neurocds.toml" setsid nohup "$BIN" serve </dev/null >"$DEMO/neurocds.log" 2>&1 &
  echo $! > "$DEMO/neurocds.pid"
fi
for _ in $(seq 1 300); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$BASE/readyz" || { echo "[demo] neurocds did not become ready; see $DEMO/neurocds.log"; tail -20 "$DEMO/neurocds.log"; exit 1; }
echo

# 6. Play the EHR: order-select (starts the analysis), then order-sign (shows the card).
for P in "$GBM" "$PCNSL"; do
  FID=$(echo "$P" | tr 'A-Z_' 'a-z-')
  echo "[demo] patient $FID: order-select…"
  "$PY" scripts/demo_ehr.py hook --service "$BASE" --keys "$DEMO/ehr" --iss "$ISS" --hook order-select --patient "$FID" --fhir "$NEUROCDS_TEST_FHIR" > /dev/null
  sleep 1
  echo "[demo] patient $FID: order-sign…"
  "$PY" scripts/demo_ehr.py hook --service "$BASE" --keys "$DEMO/ehr" --iss "$ISS" --hook order-sign --patient "$FID" --fhir "$NEUROCDS_TEST_FHIR" --pretty --record "$DEMO/ehr-cards.json"
done
echo
echo "neurocds is running at $BASE (readiness: $BASE/readyz); logs: $DEMO/neurocds.log"
echo "Open the EHR's screen, $IDP/ehr, in a browser: it shows the two orders and their cards; a"
echo "card's case-report link is a SMART launch (sign in as dr.onc). Staff pages ($BASE/audit) sign in"
echo "at the hospital's identity provider ($IDP) as"
echo "  dr.onc      password $ONC_PW   (neuro-oncology: case reports, decision log, model card)"
echo "  compliance  password $COMP_PW   (compliance: all of these and the decision log export)"
echo "Stop everything with: make stop"
