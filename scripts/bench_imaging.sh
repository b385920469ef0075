#!/usr/bin/env bash
# Imaging pipeline benchmark (issue 4): a study of two 176 x 256 x 256 16-bit series on the local
# Orthanc, through series metadata, WADO-RS retrieval, decode, assembly and preprocessing, by
# stage, with the peak memory of each run; then decode throughput against pydicom + numpy on the
# same files, as a ratio from one run. Prints Markdown tables for BENCHMARKS.md.
#
#   scripts/bench_imaging.sh [--runs N] [--decode-reps N]      (= make bench-imaging)
#
# Starts the peers (idempotent; NEUROCDS_PEERS_DIR / NEUROCDS_*_PORT choose which) and leaves
# them running. The study is made once and cached in $NEUROCDS_CACHE/bench-imaging/.
# Run it on an idle machine: `uptime` is printed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh >&2
. scripts/env.sh
eval "$(scripts/peers.sh start)"
echo "uptime: $(uptime)"
cargo bench --locked --bench imaging_pipeline -- "$@"
echo "uptime: $(uptime)"
