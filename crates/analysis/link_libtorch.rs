// Links libtorch so that the binary runs without `LD_LIBRARY_PATH` and finds CUDA when there is
// a GPU.
//
// torch-sys tells us where libtorch lives (`DEP_TCH_LIBTORCH_LIB`, because it declares
// `links = "tch"`). We bake that directory into the binary's rpath, and force-link `libtorch`
// and, when present, `libtorch_cuda` with `--no-as-needed`: otherwise the linker drops them as
// unused (nothing references their symbols directly; they register CUDA kernels at load time)
// and `Device::cuda_if_available()` silently answers `Cpu` (tch-rs issues 907 and 980).
//
// Every package whose binaries or tests link tch includes this file from its `build.rs`
// (link arguments apply only to the package that emits them) and calls `link_libtorch`.

/// Emits the rpath and force-link arguments for this package's binaries and tests.
fn link_libtorch() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
    println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
    if std::path::Path::new(&lib).join("libtorch_cuda.so").exists() {
        println!("cargo:rustc-link-arg=-ltorch_cuda");
    }
    println!("cargo:rustc-link-arg=-ltorch");
    println!("cargo:rustc-link-arg=-Wl,--as-needed");
    println!("cargo:rustc-env=NEUROCDS_LIBTORCH_LIB={lib}");
}
