//! The `hwrun-torch` worker process that runs stage kinds needing libtorch.
//!
//! The scheduler ([`client`]) starts one worker per stage, writes a [`StageRequest`] as JSON to
//! its stdin and reads [`WorkerEvent`]s as JSON lines from its stdout: progress while it runs,
//! then `done` with the outcome or `failed` with the error. The worker ([`serve`]) builds the
//! stage context, runs the stage and reports. Keeping libtorch out of the `hwrun` process makes
//! planning and cached runs start in milliseconds, and a crash inside libtorch fails one stage
//! instead of the whole run.

pub mod client;
pub mod fid;
pub mod protocol;
pub mod serve;

pub use client::run_in_worker;
pub use protocol::{DeviceRequest, StageRequest, WorkerEvent};
