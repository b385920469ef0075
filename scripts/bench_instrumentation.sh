#!/usr/bin/env bash
# What the instrumentation costs (issue 19): the cached brain-MRI hook under wrk (16 connections,
# 10 s, as `make bench`) with Prometheus metrics and request timing on (`metrics.enabled = true`,
# the default) and off, ROUNDS times each, alternating, the demo service restarted between runs
# with NEUROCDS_METRICS__ENABLED. Prints each run and the ratio of the medians (target: the
# instrumented service keeps >= 95 % of the throughput). Leaves the demo running with metrics on.
#
#   scripts/bench_instrumentation.sh [ROUNDS]      (default 2; = make bench-instrumentation)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-2}"
scripts/demo.sh > /dev/null
. scripts/env.sh
DEMO="$NEUROCDS_CACHE/demo"; BASE="http://127.0.0.1:${NEUROCDS_DEMO_PORT:-8080}"; ISS="https://ehr.demo.neurocds.org"
PY="$NEUROCDS_CACHE/tools-venv/bin/python"
BIN="${NEUROCDS_BIN:-$CARGO_TARGET_DIR/release/neurocds}"
URL="$BASE/cds-services/neurocds-brain-mri-order-sign"
eval "$(scripts/peers.sh start)"
[ -f "$DEMO/bench-brain.json" ] || { echo "run make bench once first (it writes the cached brain-hook body)"; exit 1; }

restart() {
  [ -f "$DEMO/neurocds.pid" ] && kill "$(cat "$DEMO/neurocds.pid")" 2>/dev/null || true
  for _ in $(seq 1 100); do curl -fsS "$BASE/healthz" >/dev/null 2>&1 || break; sleep 0.1; done
  NEUROCDS_METRICS__ENABLED="$1" NEUROCDS_CONFIG="$DEMO/neurocds.toml" setsid nohup "$BIN" serve </dev/null >"$DEMO/neurocds.log" 2>&1 &
  echo $! > "$DEMO/neurocds.pid"
  for _ in $(seq 1 300); do curl -fsS "$BASE/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
}

echo "machine: $(nproc) cores; commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown); uptime: $(uptime)"
RESULTS=""
for round in $(seq 1 "$ROUNDS"); do
  for metrics in true false; do
    restart "$metrics"
    # One hook first: the analysis is read into the cache; then a fresh token supply.
    "$PY" bench/sign_many.py "$DEMO/ehr" "$ISS" "$URL" 1 > "$DEMO/tokens-warm.txt"
    curl -fsS -o /dev/null -H "Content-Type: application/json" -H "Authorization: Bearer $(cat "$DEMO/tokens-warm.txt")" --data @"$DEMO/bench-brain.json" "$URL"
    "$PY" bench/sign_many.py "$DEMO/ehr" "$ISS" "$URL" 60000 > "$DEMO/tokens-instr.txt"
    line=$(wrk -t2 -c16 -d10s -s bench/cds_load.lua "$URL" -- "$DEMO/tokens-instr.txt" "$DEMO/bench-brain.json" | grep "requests=")
    echo "round $round, metrics.enabled=$metrics: $line"
    RESULTS="$RESULTS$metrics $line"$'\n'
  done
done
restart true
printf '%s' "$RESULTS" > "$DEMO/instrumentation-runs.txt"
"$PY" - "$DEMO/instrumentation-runs.txt" <<'PY'
import re, statistics, sys
runs = {"true": [], "false": []}
for line in open(sys.argv[1]):
    if line.strip():
        on, rest = line.split(" ", 1)
        runs[on].append({k: float(v) for k, v in re.findall(r"(\w+)=([\d.]+)", rest)})
n = len(runs["true"])
on, off = (statistics.median(r["rps"] for r in runs[k]) for k in ("true", "false"))
p99on, p99off = (statistics.median(r["p99_ms"] for r in runs[k]) for k in ("true", "false"))
print(f"\ncached brain hook, median of {n} runs each: instrumented {on:.0f} req/s (p99 {p99on:.1f} ms), "
      f"uninstrumented {off:.0f} req/s (p99 {p99off:.1f} ms): the instrumented service keeps {on / off:.1%} of the throughput")
PY
