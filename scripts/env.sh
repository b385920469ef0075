# Sourced by the scripts: where the cache lives and how cargo finds libtorch.
export NEUROCDS_CACHE="${NEUROCDS_CACHE:-$HOME/.cache/neurocds}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$NEUROCDS_CACHE/target}"
# tch builds against the PyTorch wheel in the cached venv (LIBTORCH_USE_PYTORCH); the binary
# gets an rpath to it (build.rs), so nothing is needed at run time.
export VIRTUAL_ENV="$NEUROCDS_CACHE/torch-venv"
export LIBTORCH_USE_PYTORCH=1
export PATH="$VIRTUAL_ENV/bin:$PATH"
