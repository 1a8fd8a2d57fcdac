//! hwrun's integration tests, one binary with a module per area (as ripgrep's `tests/tests.rs`):
//! end-to-end runs of the `hwrun` binary on tiny recipes, and differential tests against the
//! reference implementations in `tests/oracles/`. Shared helpers live in `tests/common/`.

mod common;

mod ci_sweep;
mod compare;
mod ddim_reference;
mod ddpm_step;
mod diffusion;
mod docs;
mod domain_adaptation;
mod download;
mod download_dataset;
mod face_score_photos;
mod face_unet;
mod fid_reference;
mod formats;
mod gan;
mod network;
mod parity_gan;
mod parity_pytorch;
mod precision;
mod pytorch_file;
mod recipes;
mod reliability;
mod reliability_faults;
mod reliability_fuzz;
mod resume;
mod runner;
mod seeds;
mod slurm;
mod stage_interfaces;
mod startup;
mod training_reproducible;
mod tsne_sklearn;
