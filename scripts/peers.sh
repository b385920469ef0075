#!/usr/bin/env bash
# Starts and stops the real peers neurocds talks to, on loopback, each in its own state folder:
#   - PostgreSQL: a private cluster (initdb + pg_ctl), unless DATABASE_URL is already set;
#   - Orthanc with the DICOMweb plugin (the PACS);
#   - sekmet-fhir (a FHIR R4 server: the EHR's FHIR API).
#
#   eval "$(scripts/peers.sh start)"   # prints `export …` lines: DATABASE_URL, NEUROCDS_TEST_*
#   scripts/peers.sh stop
#
# State lives in $NEUROCDS_PEERS_DIR (default: $NEUROCDS_CACHE/peers), outside the checkout.
# Idempotent: `start` reuses peers that are already running.
set -euo pipefail

CACHE="${NEUROCDS_CACHE:-$HOME/.cache/neurocds}"
DIR="${NEUROCDS_PEERS_DIR:-$CACHE/peers}"
PG_PORT="${NEUROCDS_PG_PORT:-55432}"
ORTHANC_PORT="${NEUROCDS_ORTHANC_PORT:-58042}"
FHIR_PORT="${NEUROCDS_FHIR_PORT:-58090}"
FHIR_AUTH_PORT="${NEUROCDS_FHIR_AUTH_PORT:-58091}"
FHIR_TOKEN="${NEUROCDS_TEST_FHIR_TOKEN:-neurocds-test-ehr-token}"
PG_BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
log() { printf '[peers] %s\n' "$*" >&2; }

wait_http() { # url, seconds
  for _ in $(seq 1 $(( $2 * 10 ))); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.1; done
  log "timed out waiting for $1"; return 1
}

# PostgreSQL refuses to run as root: run it as an unprivileged user when we are root.
pg_user() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# As root the cluster runs as `postgres`, which cannot enter root's home: keep its data in /var/tmp.
PG_DATA="${NEUROCDS_PG_DATA:-$( [ "$(id -u)" = 0 ] && echo /var/tmp/neurocds-pg || echo "$DIR/pg")}"

start_postgres() {
  local data="$PG_DATA"
  if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"; if [ "$(id -u)" = 0 ]; then chown -R postgres "$data"; chmod 700 "$data"; fi
    as_pg "$PG_BIN/initdb" -D "$data" -U neurocds --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
      -o "-p $PG_PORT -k $data -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start \
      </dev/null >/dev/null 2>&1
  fi
  as_pg "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U neurocds -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='neurocds'" | grep -q 1 \
    || as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U neurocds neurocds
  echo "export DATABASE_URL=postgres://neurocds@127.0.0.1:$PG_PORT/neurocds"
  echo "export NEUROCDS_TEST_PG_ADMIN_URL=postgres://neurocds@127.0.0.1:$PG_PORT/postgres"
}

start_orthanc() {
  local d="$DIR/orthanc"; mkdir -p "$d/db"
  if ! curl -fsS -o /dev/null "http://127.0.0.1:$ORTHANC_PORT/system" 2>/dev/null; then
    cat > "$d/orthanc.json" <<JSON
{ "Name": "neurocds-pacs", "StorageDirectory": "$d/db", "IndexDirectory": "$d/db",
  "Plugins": [ "/usr/share/orthanc/plugins/libOrthancDicomWeb.so" ],
  "HttpPort": $ORTHANC_PORT, "RemoteAccessAllowed": false, "AuthenticationEnabled": false,
  "DicomServerEnabled": false, "HttpServerEnabled": true, "OrthancExplorerEnabled": false,
  "WebDavEnabled": false, "StableAge": 1, "HttpTimeout": 60,
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": true, "WadoRoot": "/wado",
                "Host": "127.0.0.1:$ORTHANC_PORT", "Ssl": false } }
JSON
    # Detached from our stdout: callers capture it with $(…), which would otherwise never end.
    setsid nohup Orthanc "$d/orthanc.json" </dev/null >"$d/orthanc.log" 2>&1 &
    wait_http "http://127.0.0.1:$ORTHANC_PORT/system" 30
  fi
  echo "export NEUROCDS_TEST_ORTHANC=http://127.0.0.1:$ORTHANC_PORT"
  echo "export NEUROCDS_TEST_DICOMWEB=http://127.0.0.1:$ORTHANC_PORT/dicom-web"
}

# name, port, auth yaml
start_sekmet() {
  local d="$DIR/$1" port="$2"; mkdir -p "$d/data"
  if ! curl -fsS -o /dev/null "http://127.0.0.1:$port/fhir/metadata" -H "Authorization: Bearer $FHIR_TOKEN" 2>/dev/null; then
    cat > "$d/settings.yaml" <<YAML
base_url: http://127.0.0.1:$port/fhir
host: 127.0.0.1
port: $port
data_dir: $d/data
simulator: {enabled: false}
server_auth: $3
validation: {inbound: strict}
YAML
    setsid nohup "$CACHE/sekmet-venv/bin/sekmet" serve -c "$d/settings.yaml" </dev/null >"$d/sekmet.log" 2>&1 &
  fi
}

start_fhir() {
  start_sekmet fhir "$FHIR_PORT" '{types: ["none"]}'
  # A second FHIR server that demands a bearer token, as a real EHR's does.
  start_sekmet fhir-auth "$FHIR_AUTH_PORT" "{types: [\"bearer\"], tokens: [\"$FHIR_TOKEN\"]}"
  wait_http "http://127.0.0.1:$FHIR_PORT/fhir/metadata" 60
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null -H "Authorization: Bearer $FHIR_TOKEN" "http://127.0.0.1:$FHIR_AUTH_PORT/fhir/metadata" 2>/dev/null && break; sleep 0.1
  done
  echo "export NEUROCDS_TEST_FHIR=http://127.0.0.1:$FHIR_PORT/fhir"
  echo "export NEUROCDS_TEST_FHIR_DB=$DIR/fhir/data/sekmet.db"
  echo "export NEUROCDS_TEST_FHIR_AUTH=http://127.0.0.1:$FHIR_AUTH_PORT/fhir"
  echo "export NEUROCDS_TEST_FHIR_TOKEN=$FHIR_TOKEN"
}

stop_all() {
  pkill -f "sekmet serve -c $DIR/fhir/settings.yaml" 2>/dev/null || true
  pkill -f "sekmet serve -c $DIR/fhir-auth/settings.yaml" 2>/dev/null || true
  pkill -f "Orthanc $DIR/orthanc/orthanc.json" 2>/dev/null || true
  if [ -f "$PG_DATA/PG_VERSION" ]; then as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null 2>&1 || true; fi
  # Orthanc needs a few seconds to release its SQLite index.
  for _ in $(seq 1 50); do pgrep -f "Orthanc $DIR/orthanc" >/dev/null || break; sleep 0.1; done
}

case "${1:-}" in
  start)
    mkdir -p "$DIR"
    if [ -z "${DATABASE_URL:-}" ]; then start_postgres; else echo "export DATABASE_URL=$DATABASE_URL"; fi
    start_orthanc
    start_fhir
    ;;
  stop) stop_all ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
