//! Links libtorch into this crate's binaries and tests (see `link_libtorch.rs`).
include!("link_libtorch.rs");

fn main() {
    link_libtorch();
}
