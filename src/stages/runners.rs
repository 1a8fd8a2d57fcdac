//! Where each stage kind runs.
//!
//! Loading libtorch takes most of a second, which would make every `hwrun plan` and every
//! no-op run slow. So the `hwrun` binary runs only the kinds listed in [`in_process`] — none of
//! which calls into libtorch — and hands every other kind to the `hwrun-torch` worker process
//! (see [`crate::worker`]). The worker process also isolates the scheduler from crashes inside
//! libtorch. A kind missing from [`in_process`] is therefore always safe; adding one that
//! touches libtorch would make the `hwrun` binary load it (a test checks it does not).

use std::panic::{catch_unwind, AssertUnwindSafe};

use super::{command, download, report};
use crate::stage::StageContext;
use crate::stage::{Registered, StageOutcome, StageRunner};

/// Kinds that run inside the `hwrun` process.
pub fn in_process() -> &'static [&'static dyn StageRunner] {
    static RUNNERS: &[&dyn StageRunner] = &[
        &Registered::<command::CommandStage>::new(),
        &Registered::<report::ReportStage>::new(),
        &Registered::<download::DownloadStage>::new(),
    ];
    RUNNERS
}

/// Every kind, as the worker process runs them.
pub fn all() -> &'static [&'static dyn StageRunner] {
    super::all_runners()
}

/// The in-process runner of `kind`, if it has one.
pub fn find_in_process(kind: &str) -> Option<&'static dyn StageRunner> {
    in_process().iter().copied().find(|r| r.kind() == kind)
}

/// The runner of `kind` (worker side).
pub fn find(kind: &str) -> Option<&'static dyn StageRunner> {
    all().iter().copied().find(|r| r.kind() == kind)
}

/// Runs a stage, turning a panic (libtorch reports some errors that way) into an error.
pub fn run_catching(
    runner: &dyn StageRunner,
    params: &toml::Table,
    ctx: &mut StageContext,
) -> anyhow::Result<StageOutcome> {
    catch_unwind(AssertUnwindSafe(|| runner.run(params, ctx))).unwrap_or_else(|panic| {
        let text = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".to_owned());
        Err(anyhow::anyhow!("the stage crashed: {text}"))
    })
}
