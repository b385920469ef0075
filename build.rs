//! The service's build script: libtorch linking (shared with the other crates) and migrations.
include!("crates/analysis/link_libtorch.rs");

fn main() {
    // `embed_migrations!` reads `migrations/` at compile time; a new migration must rebuild.
    println!("cargo:rerun-if-changed=migrations");
    link_libtorch();
}
