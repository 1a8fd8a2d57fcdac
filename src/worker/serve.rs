//! The worker side: read a request, run the stage, report.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use indicatif::ProgressBar;

use super::protocol::{DeviceRequest, StageRequest, WorkerEvent};
use crate::output::{chain_text, trim_native_trace};
use crate::stage::{CancelToken, Cancelled, StageContext};
use crate::stages::runners;

/// The worker's command line: `stage` or `cuda`.
pub fn main() -> i32 {
    init_logging();
    match std::env::args().nth(1).as_deref() {
        Some("stage") => serve_stage(),
        Some("fid") => super::fid::main(std::env::args().skip(1)),
        Some("cuda") => {
            println!("{}", describe_cuda());
            0
        }
        _ => {
            eprintln!("hwrun-torch is hwrun's worker process; run `hwrun` instead");
            2
        }
    }
}

/// Logs to stderr, which the scheduler shows; the filter comes from `HWRUN_LOG` (set by hwrun).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HWRUN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .without_time()
        .try_init();
}

/// Set by `hwrun` on its workers: its pid, to detect that it died before the worker started.
pub const PARENT_PID_ENV: &str = "HWRUN_PARENT_PID";
/// Set by `hwrun -vv`: keep libtorch's C++ frame lists in error messages.
pub const VERBOSE_ENV: &str = "HWRUN_VERBOSE";

/// `hwrun-torch stage`: runs the request on stdin; exit code 0 when the stage succeeded.
fn serve_stage() -> i32 {
    die_with_parent();
    let cancel = CancelToken::default();
    let handler_token = cancel.clone();
    let _ = ctrlc::set_handler(move || handler_token.cancel());
    let event = match run_request(&cancel) {
        Ok(event) => event,
        Err(error) => WorkerEvent::Failed {
            cancelled: error.downcast_ref::<Cancelled>().is_some(),
            error: trim_native_trace(&chain_text(&error), verbose()),
        },
    };
    let code = i32::from(!matches!(event, WorkerEvent::Done { .. }));
    emit(&event);
    code
}

/// `hwrun-torch cuda`: one line saying whether CUDA is usable.
fn describe_cuda() -> String {
    if tch::Cuda::is_available() {
        format!("available, {} device(s)", tch::Cuda::device_count())
    } else {
        "not available".to_owned()
    }
}

fn verbose() -> bool {
    std::env::var(VERBOSE_ENV)
        .ok()
        .and_then(|v| v.parse::<u8>().ok())
        .is_some_and(|v| v >= 2)
}

/// Makes sure no worker outlives `hwrun`: the kernel kills it when its parent dies
/// (`PR_SET_PDEATHSIG`), a parent that died before that was set is noticed by the pid check,
/// and `hwrun` closing the request pipe (see [`watch_parent`]) stops it too.
fn die_with_parent() {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    #[cfg(target_os = "linux")]
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    let expected = std::env::var(PARENT_PID_ENV)
        .ok()
        .and_then(|pid| pid.parse::<i32>().ok());
    // SAFETY: getppid has no preconditions.
    if expected.is_some_and(|pid| pid != unsafe { libc::getppid() }) {
        exit_now("hwrun-torch: the hwrun process that started this worker is gone");
    }
}

/// Exits at once, without running destructors (libtorch's static ones can block).
fn exit_now(message: &str) -> ! {
    eprintln!("{message}");
    // SAFETY: _exit ends the process immediately; nothing is used afterwards.
    unsafe { libc::_exit(1) }
}

/// `hwrun` keeps the worker's stdin open while the stage runs; end of file means it is gone
/// (killed without the death signal reaching us, e.g. from another pid namespace), so stop.
fn watch_parent(mut stdin: impl Read + Send + 'static) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 64];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) | Err(_) => exit_now("hwrun-torch: hwrun closed the request pipe; stopping"),
                Ok(_) => {}
            }
        }
    });
}

fn run_request(cancel: &CancelToken) -> anyhow::Result<WorkerEvent> {
    let mut stdin = BufReader::new(std::io::stdin());
    let mut text = String::new();
    stdin
        .read_line(&mut text)
        .context("cannot read the stage request")?;
    watch_parent(stdin);
    let request: StageRequest =
        serde_json::from_str(&text).context("malformed stage request (hwrun bug)")?;
    let runner = runners::find(&request.kind).with_context(|| {
        format!(
            "this hwrun-torch does not know stage kind `{}`: rebuild with `make build`",
            request.kind
        )
    })?;
    let params: toml::Table =
        toml::from_str(&request.params).context("malformed stage parameters (hwrun bug)")?;
    let device = resolve(request.device)?;
    if device.is_cuda() {
        // Shapes repeat from step to step: let cuDNN time its algorithms once and keep the
        // fastest, as PyTorch's `torch.backends.cudnn.benchmark = True`. TF32 stays off, so
        // fp32 stages compute in fp32 on every device.
        crate::accel::set_cudnn_benchmark(true)?;
    }
    let log_file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&request.log_file)
        .with_context(|| format!("cannot open the stage log `{}`", request.log_file))?;
    let bar = ProgressBar::hidden();
    let reporter = ProgressReporter::start(bar.clone());
    let mut ctx = StageContext::new(request.name, request.out_dir, request.inputs, request.seed)
        .on_device(device)
        .with_progress(bar)
        .with_cancel(cancel.clone())
        .with_log_file(log_file)
        .with_checkpoint_dir(request.checkpoint_dir);
    let result = runners::run_catching(runner, &params, &mut ctx);
    reporter.stop();
    let outcome = result?;
    Ok(WorkerEvent::Done {
        outcome,
        device: device_name(device),
    })
}

/// Turns the user's device request into a device, failing if CUDA was asked for and is absent.
pub(crate) fn resolve(request: DeviceRequest) -> anyhow::Result<tch::Device> {
    match request {
        DeviceRequest::Auto => Ok(tch::Device::cuda_if_available()),
        DeviceRequest::Cpu => Ok(tch::Device::Cpu),
        DeviceRequest::Cuda(index) => {
            let available = if tch::Cuda::is_available() {
                tch::Cuda::device_count() as usize
            } else {
                0
            };
            anyhow::ensure!(
                index < available,
                "device `cuda:{index}` is not available ({available} CUDA device(s) found); use `--device cpu`"
            );
            Ok(tch::Device::Cuda(index))
        }
    }
}

pub fn device_name(device: tch::Device) -> String {
    match device {
        tch::Device::Cuda(index) => format!("cuda:{index}"),
        _ => "cpu".to_owned(),
    }
}

fn emit(event: &WorkerEvent) {
    if let Ok(line) = serde_json::to_string(event) {
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            // Nobody reads the events any more: hwrun is gone.
            exit_now("hwrun-torch: hwrun stopped reading; stopping");
        }
    }
}

/// Polls the stage's (hidden) progress bar and reports changes, at most ten times a second.
struct ProgressReporter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl ProgressReporter {
    fn start(bar: ProgressBar) -> ProgressReporter {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut last = None;
            while !flag.load(Ordering::SeqCst) {
                let state = (bar.message(), bar.position(), bar.length());
                if last.as_ref() != Some(&state) {
                    emit(&WorkerEvent::Progress {
                        message: state.0.clone(),
                        position: state.1,
                        length: state.2,
                    });
                    last = Some(state);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        ProgressReporter { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}
