//! The command line: parses arguments, sets up logging and Ctrl-C, dispatches to a command, and
//! maps the outcome to an exit code. `src/main.rs` only calls [`main`].

pub mod args;
mod compare;
pub mod fid;
mod maintenance;
mod net;
mod plan;
mod results;
mod run;
mod session;
mod status;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::error::exit_code;
use crate::output::{LogWriter, OutputMode, Printer};
use crate::stage::CancelToken;
use args::{Cli, Command};

/// The recipe `hwrun` runs when none is given (`make run`), embedded so it works anywhere.
pub const DEFAULT_RECIPE: &str = include_str!("../../recipes/quickstart.toml");
pub const DEFAULT_RECIPE_NAME: &str = "recipes/quickstart.toml (embedded)";

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return argument_error(&error),
    };
    let mode = if cli.global.json {
        OutputMode::Json
    } else if cli.global.quiet {
        OutputMode::Quiet
    } else {
        OutputMode::Human
    };
    let printer = Printer::new(mode);
    if cli.version {
        match mode {
            OutputMode::Json => printer.result(&version_json().to_string()),
            _ => println!("{}", version_text()),
        }
        return exit_code::SUCCESS;
    }
    init_logging(&printer, cli.global.verbose, mode);
    let cancel = install_ctrl_c(&printer);
    let outcome = match cli.command {
        None => run::run(&cli.global, &cli.run, &printer, &cancel),
        Some(Command::Run(ref args)) => run::run(&cli.global, args, &printer, &cancel),
        Some(Command::Plan(ref args)) => plan::plan(&cli.global, args, &printer),
        Some(Command::Dag(ref args)) => plan::dag(&cli.global, args, &printer),
        Some(Command::Compare(ref args)) => compare::compare(&cli.global, args, &printer),
        Some(Command::Status(ref args)) => status::status(&cli.global, args, &printer),
        Some(Command::RunJob(ref args)) => status::run_job(args, &printer, &cancel),
        Some(Command::Gc(ref args)) => maintenance::gc(&cli.global, args, &printer),
        Some(Command::Fsck(ref args)) => maintenance::fsck(&cli.global, args, &printer),
        Some(Command::Stages(ref args)) => maintenance::stages(args.kind.as_deref(), &printer),
        Some(Command::Fid(ref args)) => fid::fid(&cli.global, args),
        Some(Command::Net(ref args)) => net::net(args, &printer),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprint!("{}", failure.render());
            if mode == OutputMode::Json {
                printer.result(&failure.json().to_string());
            }
            failure.exit_code()
        }
    }
}

/// A command line clap rejects: its usual message, plus a JSON object on stdout under `--json`.
fn argument_error(error: &clap::Error) -> i32 {
    let code = error.exit_code();
    let _ = error.print();
    if code != exit_code::SUCCESS && std::env::args().any(|a| a == "--json") {
        let text = error.to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("error: ");
        println!(
            "{}",
            serde_json::json!({ "error": message, "exit_code": code })
        );
    }
    code
}

/// `--version --json`.
fn version_json() -> serde_json::Value {
    serde_json::json!({
        "hwrun": env!("CARGO_PKG_VERSION"),
        "libtorch": env!("HWRUN_TORCH_VERSION"),
        "cuda": cuda_text(),
    })
}

fn cuda_text() -> String {
    crate::worker::client::worker_path()
        .ok()
        .and_then(|path| std::process::Command::new(path).arg("cuda").output().ok())
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown (the hwrun-torch worker is missing)".to_owned())
}

/// `hwrun 0.1.0 (libtorch 2.13.0+cu130, CUDA: not available)`. CUDA is asked of the worker,
/// the only process that loads libtorch.
pub fn version_text() -> String {
    format!(
        "hwrun {} (libtorch {}, CUDA: {})",
        env!("CARGO_PKG_VERSION"),
        env!("HWRUN_TORCH_VERSION"),
        cuda_text()
    )
}

fn init_logging(printer: &Printer, verbose: u8, mode: OutputMode) {
    let default = match (verbose, mode) {
        (0, OutputMode::Human) => "warn",
        (0, _) => "error",
        (1, _) => "hwrun=debug,info",
        _ => "hwrun=trace,debug",
    };
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
    // The worker processes log with the same filter, and keep C++ traces with -vv.
    std::env::set_var("HWRUN_LOG", &directives);
    std::env::set_var(crate::worker::serve::VERBOSE_ENV, verbose.to_string());
    let filter = EnvFilter::new(directives);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter(printer.clone()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// How long a second Ctrl-C / SIGTERM waits for the clean stop already under way (which prints
/// the summary) before quitting hard.
const FORCED_EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// The cache directory of the running command, for a forced exit's clean-up.
static CACHE_ROOT: std::sync::OnceLock<camino::Utf8PathBuf> = std::sync::OnceLock::new();

/// Remembers the cache directory a forced exit cleans.
pub(crate) fn set_cache_root(root: &camino::Utf8Path) {
    let _ = CACHE_ROOT.set(root.to_owned());
}

/// First Ctrl-C / SIGTERM: stop cleanly (running stages and hashing are told to stop, nothing
/// half-done is cached, the summary is printed). Second: quit unless the clean stop finishes
/// within [`FORCED_EXIT_GRACE`]; a forced exit kills the workers and removes this process's
/// staging directories first.
fn install_ctrl_c(printer: &Printer) -> CancelToken {
    let cancel = CancelToken::default();
    let handler_token = cancel.clone();
    let handler_printer = printer.clone();
    let forcing = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(move || {
        if !handler_token.is_cancelled() {
            handler_printer.warn("interrupted: stopping running stages (Ctrl-C again to quit)");
            crate::cache::file_hash::interrupt();
            handler_token.cancel();
            return;
        }
        if forcing.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        std::thread::spawn(|| {
            std::thread::sleep(FORCED_EXIT_GRACE);
            crate::worker::client::kill_running_workers();
            if let Some(root) = CACHE_ROOT.get() {
                crate::cache::Cache::remove_own_staging(root);
            }
            std::process::exit(exit_code::INTERRUPTED);
        });
    });
    cancel
}
