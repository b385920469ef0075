#!/usr/bin/env bash
# make fuzz: coverage-guided fuzzing (cargo fuzz, libFuzzer) of every parser that reads outside
# input, each target for FUZZ_SECONDS, two at a time; prints executions, coverage and findings
# per target (FUZZING.md explains the targets and where the figures go).
#
#   FUZZ_SECONDS=600            seconds per target
#   FUZZ_TARGETS="jwt multipart" a subset (default: every target in fuzz/Cargo.toml)
#   FUZZ_JOBS=2                 targets run at once
#   FUZZ_BUILD=0                run the targets built last time (skip the build)
#
# Needs the nightly toolchain (cargo fuzz instruments with -Z flags) and cargo-fuzz; both are
# installed when missing. Corpora, fixtures and the build live in the cache, not the checkout;
# a crashing input is copied to fuzz/artifacts/<target>/ so it can become a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
scripts/bootstrap.sh service >/dev/null
. scripts/env.sh
TOOLS="$NEUROCDS_CACHE/tools"
export PATH="$TOOLS/bin:$PATH"
WORK="$NEUROCDS_CACHE/fuzz"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-600}"
JOBS="${FUZZ_JOBS:-2}"
TARGETS="${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^neurocds-fuzz$')}"

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --root "$TOOLS"

# Seeds from real files: the DICOM fixtures the tests use (every transfer syntax this build
# reads, enhanced multi-frame, a mosaic), wrapped as WADO-RS answers and read as DICOM JSON.
FIX="$WORK/fixtures"
if [ ! -f "$FIX/manifest.json" ]; then
  echo "[fuzz] writing the DICOM fixtures (seeds)…"
  rm -rf "$FIX" && "$NEUROCDS_CACHE/tools-venv/bin/python" scripts/testdata/make_dicom_fixtures.py "$FIX" >/dev/null
fi
SEEDS="$WORK/seeds"
rm -rf "$SEEDS" && mkdir -p "$SEEDS"
cp -r fuzz/seeds/hook_request fuzz/seeds/fhir_study fuzz/seeds/jwt "$SEEDS/"
"$NEUROCDS_CACHE/tools-venv/bin/python" - "$FIX" "$SEEDS" <<'EOF'
import glob, json, os, sys
import pydicom
fix, seeds = sys.argv[1], sys.argv[2]
for d in ("part10_volume", "multipart", "dicom_json"):
    os.makedirs(os.path.join(seeds, d), exist_ok=True)
series = sorted({os.path.dirname(f) for f in glob.glob(os.path.join(fix, "**", "*.dcm"), recursive=True)})
for i, s in enumerate(series):
    files = sorted(glob.glob(os.path.join(s, "*.dcm")))[:2]
    name = os.path.basename(s)
    raw = [open(f, "rb").read() for f in files]
    open(os.path.join(seeds, "part10_volume", name), "wb").write(raw[0])
    body = b"".join(b"--fuzz\r\nContent-Type: application/dicom\r\n\r\n" + r + b"\r\n" for r in raw) + b"--fuzz--\r\n"
    open(os.path.join(seeds, "multipart", name), "wb").write(body)
    js = []
    for f in files:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        js.append(ds.to_json_dict())
    json.dump([js[0]] + js, open(os.path.join(seeds, "dicom_json", name + ".json"), "w"))
EOF

if [ "${FUZZ_BUILD:-1}" != 0 ]; then
  echo "[fuzz] building the targets (nightly, libFuzzer)…"
  (cd fuzz && cargo +nightly fuzz build --sanitizer none --target-dir "$NEUROCDS_CACHE/fuzz-target" >/dev/null)
fi
# The targets link libtorch through the library; find it the way the service's rpath does.
TORCH_LIB=$("$VIRTUAL_ENV/bin/python" -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
export LD_LIBRARY_PATH="$TORCH_LIB:${LD_LIBRARY_PATH:-}"
BIN="$NEUROCDS_CACHE/fuzz-target/x86_64-unknown-linux-gnu/release"

run_one() {
  local t=$1 corpus="$WORK/corpus/$1" log="$WORK/logs/$1.log" artifacts="$ROOT/fuzz/artifacts/$1"
  mkdir -p "$corpus" "$WORK/logs" "$artifacts"
  cp -n "$SEEDS/$t"/* "$corpus/" 2>/dev/null || true
  # -timeout=1: an input that takes more than a second is a finding (a hang), not a slow run.
  "$BIN/$t" "$corpus" -artifact_prefix="$artifacts/" -max_total_time="$SECONDS_PER_TARGET" \
    -timeout=1 -rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1 >"$log" 2>&1 || true
}

echo "[fuzz] $SECONDS_PER_TARGET s per target, $JOBS at a time: $(echo $TARGETS)"
running=0
for t in $TARGETS; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

printf '\n%-14s %12s %8s %8s %8s %s\n' target executions cov ft corpus findings
status=0
for t in $TARGETS; do
  log="$WORK/logs/$t.log"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  last=$(grep -E '#[0-9]+.*cov: ' "$log" | tail -1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  corpus=$(ls "$WORK/corpus/$t" | wc -l)
  findings=$(ls "$ROOT/fuzz/artifacts/$t" 2>/dev/null | wc -l)
  [ "$findings" -eq 0 ] || status=1
  printf '%-14s %12s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$findings"
done
echo "[fuzz] logs: $WORK/logs; findings (crash-, oom-, timeout-): fuzz/artifacts/<target>/"
exit $status
