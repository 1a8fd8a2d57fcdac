//! Lets the `hwrun` binary find libtorch at run time without `LD_LIBRARY_PATH`.
//!
//! torch-sys declares `links = "tch"` and exports the libtorch directory it linked against as
//! `DEP_TCH_LIBTORCH_LIB` to its direct dependents only, which is why hwrun lists torch-sys itself.
//! Link arguments from a library's build script never reach downstream binaries, so the rpath has
//! to be emitted here.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Ok(libtorch_lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") else {
        println!("cargo:warning=torch-sys did not report its libtorch directory; hwrun will need LD_LIBRARY_PATH");
        println!("cargo:rustc-env=HWRUN_TORCH_VERSION=unknown");
        return;
    };
    // Every target may find libtorch through the rpath; one that references none of it (the
    // `hwrun` binary built with LTO, see `[profile.dist]`) does not load it.
    println!("cargo:rustc-link-arg=-Wl,-rpath,{libtorch_lib}");
    // The worker, the tests and the benchmarks always load it, CUDA part included: without
    // --no-as-needed the linker drops libtorch_cuda (no symbol of it is referenced directly),
    // and CUDA is never found on a GPU machine.
    let mut args = vec!["-Wl,--no-as-needed".to_owned()];
    args.push(format!("-L{libtorch_lib}"));
    args.push("-ltorch".to_owned());
    if std::path::Path::new(&libtorch_lib)
        .join("libtorch_cuda.so")
        .exists()
    {
        args.push("-ltorch_cuda".to_owned());
    }
    args.push("-Wl,--as-needed".to_owned());
    for arg in args {
        println!("cargo:rustc-link-arg-bin=hwrun-torch={arg}");
        println!("cargo:rustc-link-arg-tests={arg}");
        println!("cargo:rustc-link-arg-benches={arg}");
    }
    println!(
        "cargo:rustc-env=HWRUN_TORCH_VERSION={}",
        torch_version(&libtorch_lib)
    );
}

/// The libtorch version, from the PyTorch package's `version.py` or a standalone libtorch's
/// `build-version` file.
fn torch_version(libtorch_lib: &str) -> String {
    let root = std::path::Path::new(libtorch_lib)
        .parent()
        .unwrap_or(std::path::Path::new("."));
    let from_python = std::fs::read_to_string(root.join("version.py"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("__version__ = "))
                .map(|v| v.trim().trim_matches('\'').trim_matches('"').to_owned())
        });
    let from_libtorch = || {
        std::fs::read_to_string(root.join("build-version"))
            .ok()
            .map(|v| v.trim().to_owned())
    };
    from_python
        .or_else(from_libtorch)
        .unwrap_or_else(|| "unknown".to_owned())
}
