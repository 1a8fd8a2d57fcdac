//! What a running stage sees: its output directory, its inputs, the seed, the device, and handles
//! for progress, logging and cancellation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use camino::{Utf8Path, Utf8PathBuf};
use indicatif::ProgressBar;

use super::kind::StageOutcome;
use crate::data::Dataset;

/// A finished stage's artifact as another stage consumes it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct InputArtifact {
    /// The referenced output directory (the whole output, or the named sub-directory).
    pub dir: Utf8PathBuf,
    /// The producing stage's name in this recipe.
    pub stage: String,
    /// The producing stage's kind.
    pub kind: String,
    /// The producing stage's canonical parameters.
    pub params: serde_json::Value,
    /// The producing stage's metrics and summary lines.
    pub outcome: StageOutcome,
}

/// Set by Ctrl-C; long-running stages poll it through [`StageContext::check_cancelled`].
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The error a stage returns when it stopped because the user interrupted the run.
#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
pub struct Cancelled;

/// Everything a stage's `run` gets besides its parameters.
pub struct StageContext {
    name: String,
    out_dir: Utf8PathBuf,
    inputs: BTreeMap<String, InputArtifact>,
    seed: u64,
    device: tch::Device,
    progress: ProgressBar,
    cancel: CancelToken,
    log: LogSink,
    checkpoint_dir: Option<Utf8PathBuf>,
}

impl StageContext {
    /// A context on the CPU with a hidden progress bar, no log file and nothing to cancel it: what
    /// tests and benchmarks want. The runners set the rest with the builder methods below.
    pub fn new(
        name: impl Into<String>,
        out_dir: Utf8PathBuf,
        inputs: BTreeMap<String, InputArtifact>,
        seed: u64,
    ) -> Self {
        let name = name.into();
        StageContext {
            log: LogSink {
                stage: name.clone(),
                log: Arc::new(Mutex::new(None)),
            },
            name,
            out_dir,
            inputs,
            seed,
            device: tch::Device::Cpu,
            progress: ProgressBar::hidden(),
            cancel: CancelToken::default(),
            checkpoint_dir: None,
        }
    }

    pub fn on_device(self, device: tch::Device) -> Self {
        StageContext { device, ..self }
    }

    pub fn with_progress(self, progress: ProgressBar) -> Self {
        StageContext { progress, ..self }
    }

    pub fn with_cancel(self, cancel: CancelToken) -> Self {
        StageContext { cancel, ..self }
    }

    /// Appends the stage's log lines to `log_file` as well as to the tracing output.
    pub fn with_log_file(self, log_file: File) -> Self {
        let log = LogSink {
            stage: self.name.clone(),
            log: Arc::new(Mutex::new(Some(log_file))),
        };
        StageContext { log, ..self }
    }

    /// Gives the stage a directory outside its cache entry for resume checkpoints; the runner
    /// removes it once the entry is committed.
    pub fn with_checkpoint_dir(self, checkpoint_dir: Option<Utf8PathBuf>) -> Self {
        StageContext {
            checkpoint_dir,
            ..self
        }
    }

    /// Where long stages keep resume checkpoints, if the runner gave them a place.
    pub fn checkpoint_dir(&self) -> Option<&Utf8Path> {
        self.checkpoint_dir.as_deref()
    }

    /// The stage's name in the recipe (with the sweep variant, if any).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where outputs go. Named outputs are sub-directories of it.
    pub fn out_dir(&self) -> &Utf8Path {
        &self.out_dir
    }

    /// All inputs by the names the recipe gave them.
    pub fn inputs(&self) -> &BTreeMap<String, InputArtifact> {
        &self.inputs
    }

    /// One input by name; an error naming the missing input otherwise.
    pub fn input(&self, name: &str) -> anyhow::Result<&InputArtifact> {
        self.inputs.get(name).ok_or_else(|| {
            anyhow::anyhow!(
                "stage `{}` needs an input named `{name}`: add it to the stage's `inputs` table",
                self.name
            )
        })
    }

    /// The recipe's seed; derive every random stream from it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    pub fn device(&self) -> tch::Device {
        self.device
    }

    /// The stage's progress bar (hidden when not on a terminal or with `--quiet`).
    pub fn progress(&self) -> &ProgressBar {
        &self.progress
    }

    /// Starts a counted phase: sets the bar's length and message and resets its position.
    pub fn start_phase(&self, message: impl Into<String>, length: u64) {
        self.progress.reset();
        self.progress.set_length(length);
        self.progress.set_position(0);
        self.progress.set_message(message.into());
    }

    /// Runs `work` over `0..n` in chunks of `chunk` items as one progress phase, checking for
    /// Ctrl-C between chunks.
    pub fn in_chunks(
        &self,
        message: impl Into<String>,
        n: usize,
        chunk: usize,
        mut work: impl FnMut(std::ops::Range<usize>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.start_phase(message, n as u64);
        for start in (0..n).step_by(chunk.max(1)) {
            self.check_cancelled()?;
            let end = (start + chunk.max(1)).min(n);
            work(start..end)?;
            self.progress.inc((end - start) as u64);
        }
        Ok(())
    }

    /// Writes a line to the stage log (kept in the cache entry) and to the tracing output.
    pub fn log(&self, line: impl AsRef<str>) {
        let line = line.as_ref();
        tracing::info!(stage = %self.name, "{line}");
        self.log.append(line);
    }

    /// A handle other threads (e.g. a child process reader) can use to append to the stage log.
    pub fn log_sink(&self) -> LogSink {
        self.log.clone()
    }

    /// Saves `dataset` as the named output `name` and records its summary line and `name.n`.
    pub fn save_dataset(
        &self,
        name: &str,
        dataset: &Dataset,
        outcome: &mut StageOutcome,
    ) -> anyhow::Result<()> {
        dataset
            .save(&crate::data::dataset::output_dir(&self.out_dir, name))
            .map_err(|e| anyhow::anyhow!("saving the `{name}` output: {e}"))?;
        outcome
            .summary
            .push(format!("{name}: {}", dataset.summary()));
        outcome
            .metrics
            .insert(format!("{name}.n"), dataset.len() as f64);
        Ok(())
    }

    /// `Err(Cancelled)` once the user pressed Ctrl-C; call it between steps.
    pub fn check_cancelled(&self) -> Result<(), Cancelled> {
        if self.cancel.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    pub fn cancel_token(&self) -> &CancelToken {
        &self.cancel
    }
}

/// Appends lines to a stage's log from any thread.
#[derive(Clone)]
pub struct LogSink {
    stage: String,
    log: Arc<Mutex<Option<File>>>,
}

impl LogSink {
    pub fn line(&self, line: &str) {
        tracing::debug!(stage = %self.stage, "{line}");
        self.append(line);
    }

    fn append(&self, line: &str) {
        if let Ok(mut guard) = self.log.lock() {
            if let Some(file) = guard.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    }
}
