//! Lets the `hwrun` binary find libtorch at run time without `LD_LIBRARY_PATH`, and compiles
//! the C++ shim of `src/accel` (libtorch calls tch does not expose).
//!
//! torch-sys declares `links = "tch"` and exports the libtorch directory it linked against as
//! `DEP_TCH_LIBTORCH_LIB` to its direct dependents only, which is why hwrun lists torch-sys itself.
//! Link arguments from a library's build script never reach downstream binaries, so the rpath has
//! to be emitted here.

fn main() {
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    compile_accel_shim();
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

/// Builds `src/accel/shim.cpp` into a static library against the headers of the libtorch that
/// torch-sys links, with the same C++ ABI. Only code that calls `hwrun::accel` pulls its object
/// (and through it libtorch) into a binary.
fn compile_accel_shim() {
    const SHIM: &str = "src/accel/shim.cpp";
    println!("cargo:rerun-if-changed={SHIM}");
    println!("cargo:rerun-if-env-changed=LIBTORCH_USE_PYTORCH");
    println!("cargo:rerun-if-env-changed=VIRTUAL_ENV");
    let (torch_dir, cxx11_abi) = libtorch_headers();
    let include = torch_dir.join("include");
    let mut build = cc::Build::new();
    build.cpp(true).pic(true).std("c++17");
    // As system headers, so libtorch's own warnings stay out of the build output.
    for dir in [include.clone(), include.join("torch/csrc/api/include")] {
        build.flag("-isystem").flag(dir.display().to_string());
    }
    build
        .define("_GLIBCXX_USE_CXX11_ABI", if cxx11_abi { "1" } else { "0" })
        .file(SHIM)
        .compile("hwrun_accel");
}

/// The libtorch root (holding `include/`) and whether it uses the C++11 `std::string` ABI,
/// found as torch-sys finds them: from the Python environment's torch package with
/// `LIBTORCH_USE_PYTORCH`, else from the libtorch directory torch-sys linked against.
fn libtorch_headers() -> (std::path::PathBuf, bool) {
    if std::env::var_os("LIBTORCH_USE_PYTORCH").is_some() {
        // torch-sys runs `python` inside a virtualenv and `python3` outside one.
        let python = if std::env::var_os("VIRTUAL_ENV").is_some() {
            "python"
        } else {
            "python3"
        };
        let script = "import os, torch; print(os.path.dirname(torch.__file__)); print(torch._C._GLIBCXX_USE_CXX11_ABI)";
        let output = std::process::Command::new(python)
            .args(["-c", script])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {python} to locate the torch package: {e}"));
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines();
        match (output.status.success(), lines.next(), lines.next()) {
            (true, Some(dir), Some(abi)) => (dir.into(), abi.trim() == "True"),
            _ => panic!(
                "{python} could not import torch (LIBTORCH_USE_PYTORCH is set; activate the torch venv): {}",
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    } else {
        let lib = std::env::var("DEP_TCH_LIBTORCH_LIB").expect(
            "torch-sys did not report its libtorch directory, so the accel shim has no headers",
        );
        let root = std::path::Path::new(&lib)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        println!("cargo:rerun-if-env-changed=LIBTORCH_CXX11_ABI");
        // torch-sys's default for a standalone libtorch.
        let abi = std::env::var("LIBTORCH_CXX11_ABI").map_or(true, |v| v != "0");
        (root, abi)
    }
}
