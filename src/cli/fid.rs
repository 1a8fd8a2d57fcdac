//! `hwrun fid A B`: hands the work to the `hwrun-torch` worker (the only binary that loads
//! libtorch, see [`crate::worker::fid`]), which prints `FID:  <value>` like
//! `python -m pytorch_fid A B`; its exit code becomes hwrun's.

use std::process::Command;

use anyhow::Context;

use super::args::{FidArgs, GlobalArgs};
use super::run::parse_device;
use super::session::Failure;
use crate::error::exit_code;
use crate::worker::client::worker_path;
use crate::worker::DeviceRequest;

pub fn fid(global: &GlobalArgs, args: &FidArgs) -> Result<i32, Failure> {
    let device = match parse_device(global.device.as_deref())? {
        DeviceRequest::Auto => "auto".to_owned(),
        DeviceRequest::Cpu => "cpu".to_owned(),
        DeviceRequest::Cuda(index) => format!("cuda:{index}"),
    };
    let mut command = Command::new(worker_path()?);
    command
        .arg("fid")
        .args(["--device", &device, "--dims", &args.dims.to_string()]);
    command.args(["--batch-size", &args.batch_size.to_string()]);
    if let Some(weights) = &args.weights {
        command.args(["--weights", weights.as_str()]);
    }
    if args.save_stats {
        command.arg("--save-stats");
    }
    command
        .arg("--")
        .args(args.paths.iter().map(|p| p.as_str()));
    let status = command
        .status()
        .context("cannot start the hwrun-torch worker")?;
    Ok(status.code().unwrap_or(exit_code::STAGE_FAILED))
}
