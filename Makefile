# neurocds: the two commands (see README.md).
#   make demo   install what is missing, start the peers and the service, play an EHR
#   make test   install what is missing, start the peers, run every test
.PHONY: demo test build stop bench bench-imaging bench-inference bench-workers fuzz

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

bench-imaging:
	@scripts/bench_imaging.sh

bench-workers:
	@scripts/bench_workers.sh

# Ensemble inference for one study through the service's engine (figures: BENCHMARKS.md).
bench-inference:
	@scripts/bootstrap.sh service && . scripts/env.sh && cargo bench --locked --bench inference

# Coverage-guided fuzzing of every parser that reads outside input (FUZZING.md).
fuzz:
	@scripts/fuzz.sh
