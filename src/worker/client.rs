//! The scheduler side: start `hwrun-torch stage`, feed it the request, follow its events.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context};
use camino::Utf8PathBuf;
use indicatif::ProgressBar;

use super::protocol::{StageRequest, WorkerEvent};
use super::serve::PARENT_PID_ENV;
use crate::output::Printer;
use crate::stage::{CancelToken, Cancelled, StageOutcome};

/// The worker binary's name; it is installed next to `hwrun`.
pub const WORKER_BINARY: &str = "hwrun-torch";

/// Where the worker is: `HWRUN_WORKER`, or next to the running `hwrun`.
pub fn worker_path() -> anyhow::Result<Utf8PathBuf> {
    if let Some(path) = std::env::var_os("HWRUN_WORKER") {
        return Utf8PathBuf::from_path_buf(path.into())
            .map_err(|p| anyhow::anyhow!("HWRUN_WORKER `{}` is not UTF-8", p.display()));
    }
    let exe = std::env::current_exe().context("cannot locate the running hwrun binary")?;
    let path = exe.with_file_name(WORKER_BINARY);
    let path = Utf8PathBuf::from_path_buf(path)
        .map_err(|p| anyhow::anyhow!("`{}` is not UTF-8", p.display()))?;
    anyhow::ensure!(
        path.exists(),
        "cannot find the `{WORKER_BINARY}` worker at `{path}`: build both binaries with `make build` (or set HWRUN_WORKER)"
    );
    Ok(path)
}

/// Runs one stage in a worker process; returns its outcome and the device it ran on.
pub fn run_in_worker(
    request: &StageRequest,
    bar: &ProgressBar,
    cancel: &CancelToken,
    printer: &Printer,
) -> anyhow::Result<(StageOutcome, String)> {
    let mut command = Command::new(worker_path()?);
    // The worker dies with hwrun even while it is still loading libtorch (seconds on a busy
    // machine), before its own `main` runs.
    crate::process::dies_with_parent(&mut command);
    let mut child = command
        .arg("stage")
        .env(PARENT_PID_ENV, std::process::id().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start the hwrun-torch worker")?;
    let _tracked = Tracked::new(child.id());
    let mut request_json = serde_json::to_vec(request)?;
    request_json.push(b'\n');
    // Kept open until the worker is done: the worker stops when it closes (see `serve`).
    let mut stdin = child.stdin.take().context("worker stdin")?;
    stdin
        .write_all(&request_json)
        .and_then(|()| stdin.flush())
        .context("cannot send the stage request")?;
    let events = follow_stdout(&mut child)?;
    let stderr = forward_stderr(&mut child, printer.clone());
    let mut last = None;
    loop {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(WorkerEvent::Progress {
                message,
                position,
                length,
            }) => {
                if let Some(length) = length {
                    bar.set_length(length);
                }
                bar.set_position(position);
                bar.set_message(message);
            }
            Ok(final_event) => last = Some(final_event),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if cancel.is_cancelled() {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Cancelled.into());
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    let status = child.wait().context("cannot wait for the worker")?;
    drop(stdin);
    let _ = stderr.join();
    match last {
        Some(WorkerEvent::Done { outcome, device }) => Ok((outcome, device)),
        Some(WorkerEvent::Failed {
            cancelled: true, ..
        }) => Err(Cancelled.into()),
        Some(WorkerEvent::Failed { error, .. }) => Err(anyhow::anyhow!(error)),
        _ => bail!(
            "the worker process died ({status}) before the stage finished; its log may say why"
        ),
    }
}

/// Pids of the running workers, so a forced exit can take them along.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// A worker listed in [`RUNNING`] while it lives.
struct Tracked(u32);

impl Tracked {
    fn new(pid: u32) -> Tracked {
        RUNNING.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
        Tracked(pid)
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        RUNNING
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&pid| pid != self.0);
    }
}

/// Kills every running worker (SIGKILL); for a forced exit of `hwrun`.
pub fn kill_running_workers() {
    for &pid in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill takes plain integers; the pid is a child of ours not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Parses the worker's stdout into events on a channel (closed when the worker exits).
fn follow_stdout(child: &mut Child) -> anyhow::Result<mpsc::Receiver<WorkerEvent>> {
    let stdout = child.stdout.take().context("worker stdout")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            match serde_json::from_str(&line) {
                Ok(event) => {
                    if sender.send(event).is_err() {
                        break;
                    }
                }
                Err(_) => tracing::debug!("worker: {line}"),
            }
        }
    });
    Ok(receiver)
}

/// Shows the worker's log output (tracing lines, libtorch warnings) through the printer.
fn forward_stderr(child: &mut Child, printer: Printer) -> std::thread::JoinHandle<()> {
    let stderr = child.stderr.take();
    std::thread::spawn(move || {
        let Some(stderr) = stderr else { return };
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            printer.write_stderr(&format!("{line}\n"));
        }
    })
}
