//! The worker that runs stages needing libtorch; started by `hwrun`, not by users.
//!
//! `hwrun-torch stage` reads a stage request on stdin and writes JSON events on stdout;
//! `hwrun-torch cuda` says whether CUDA is available.

fn main() {
    std::process::exit(hwrun::worker::serve::main());
}
