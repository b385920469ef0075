# neurocds: the two commands (see README.md).
#   make demo   install what is missing, start the peers and the service, play an EHR
#   make test   install what is missing, start the peers, run every test
.PHONY: demo test build stop bench bench-side-by-side bench-instrumentation bench-imaging bench-inference bench-workers bench-memory bench-rebuild fuzz

demo:
	@scripts/demo.sh

test:
	@scripts/test.sh

build:
	@scripts/bootstrap.sh service && . scripts/env.sh && cargo build --release --locked

stop:
	@scripts/demo.sh stop

bench:
	@scripts/bench.sh

bench-side-by-side:
	@scripts/bench_side_by_side.sh

bench-instrumentation:
	@scripts/bench_instrumentation.sh

bench-imaging:
	@scripts/bench_imaging.sh

bench-workers:
	@scripts/bench_workers.sh

# Ensemble inference for one study through the service's engine (figures: BENCHMARKS.md).
bench-inference:
	@scripts/bootstrap.sh service && . scripts/env.sh && cargo bench --locked --bench inference

# Resident memory over 400,000 spoilt WADO-RS answers through the service's reader (FUZZING.md
# findings 4, 7, 8; figures: BENCHMARKS.md). Writes the DICOM fixtures it spoils when missing.
bench-memory:
	@scripts/bootstrap.sh && . scripts/env.sh && \
	  { [ -f "$$NEUROCDS_CACHE/fuzz/fixtures/manifest.json" ] || "$$NEUROCDS_CACHE/tools-venv/bin/python" scripts/testdata/make_dicom_fixtures.py "$$NEUROCDS_CACHE/fuzz/fixtures" >/dev/null; } && \
	  cargo bench --locked --bench multipart_memory -- --iterations 400000 --runtime multi --save "$$NEUROCDS_CACHE/bench-memory"

# Release rebuild of the service binary after a one-line change, one crate (before the workspace)
# against the workspace, alternately in one run (issue 16; figures: BENCHMARKS.md).
bench-rebuild:
	@scripts/bootstrap.sh service && scripts/bench_rebuild.sh

# Coverage-guided fuzzing of every parser that reads outside input (FUZZING.md).
fuzz:
	@scripts/fuzz.sh
