//! `hwrun fid A B`: hands the work to the `hwrun-torch` worker (the only binary that loads
//! libtorch, see [`crate::worker::fid`]), which prints `FID:  <value>` like
//! `python -m pytorch_fid A B`; its exit code becomes hwrun's.

use std::process::Command;

use anyhow::Context;

use super::args::GlobalArgs;
use super::run::parse_device;
use super::session::Failure;
use crate::error::exit_code;
use crate::worker::client::worker_path;
use crate::worker::fid::{FidOptions, FidRequest};

pub fn fid(global: &GlobalArgs, options: &FidOptions) -> Result<i32, Failure> {
    let request = FidRequest {
        options: options.clone(),
        device: parse_device(global.device.as_deref())?,
    };
    let status = Command::new(worker_path()?)
        .arg("fid")
        .args(request.args())
        .status()
        .context("cannot start the hwrun-torch worker")?;
    Ok(status.code().unwrap_or(exit_code::STAGE_FAILED))
}
