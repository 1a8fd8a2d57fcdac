//! The command line: parses arguments, sets up logging and Ctrl-C, dispatches to a command, and
//! maps the outcome to an exit code. `src/main.rs` only calls [`main`].

pub mod args;
mod compare;
pub mod fid;
mod maintenance;
mod plan;
mod run;
mod session;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::error::exit_code;
use crate::output::{LogWriter, OutputMode, Printer};
use crate::stages::CancelToken;
use args::{Cli, Command};

/// The recipe `hwrun` runs when none is given (`make run`), embedded so it works anywhere.
pub const DEFAULT_RECIPE: &str = include_str!("../../recipes/quickstart.toml");
pub const DEFAULT_RECIPE_NAME: &str = "recipes/quickstart.toml (embedded)";

/// Runs the command line and returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    if cli.version {
        println!("{}", version_text());
        return exit_code::SUCCESS;
    }
    let mode = if cli.global.json {
        OutputMode::Json
    } else if cli.global.quiet {
        OutputMode::Quiet
    } else {
        OutputMode::Human
    };
    let printer = Printer::new(mode);
    init_logging(&printer, cli.global.verbose, mode);
    let cancel = install_ctrl_c(&printer);
    let outcome = match cli.command {
        None => run::run(&cli.global, &cli.run, &printer, &cancel),
        Some(Command::Run(ref args)) => run::run(&cli.global, args, &printer, &cancel),
        Some(Command::Plan(ref args)) => plan::plan(&cli.global, args, &printer),
        Some(Command::Dag(ref args)) => plan::dag(&cli.global, args, &printer),
        Some(Command::Compare(ref args)) => compare::compare(&cli.global, args, &printer),
        Some(Command::Gc(ref args)) => maintenance::gc(&cli.global, args, &printer),
        Some(Command::Fsck) => maintenance::fsck(&cli.global, &printer),
        Some(Command::Stages) => maintenance::stages(&printer),
        Some(Command::Fid(ref args)) => fid::fid(&cli.global, args),
    };
    match outcome {
        Ok(code) => code,
        Err(failure) => {
            eprint!("{}", failure.render());
            failure.exit_code()
        }
    }
}

/// `hwrun 0.1.0 (libtorch 2.13.0+cu130, CUDA: not available)`. CUDA is asked of the worker,
/// the only process that loads libtorch.
pub fn version_text() -> String {
    let cuda = crate::worker::client::worker_path()
        .ok()
        .and_then(|path| std::process::Command::new(path).arg("cuda").output().ok())
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown (the hwrun-torch worker is missing)".to_owned());
    format!(
        "hwrun {} (libtorch {}, CUDA: {cuda})",
        env!("CARGO_PKG_VERSION"),
        env!("HWRUN_TORCH_VERSION")
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
    // The worker processes log with the same filter.
    std::env::set_var("HWRUN_LOG", &directives);
    let filter = EnvFilter::new(directives);
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(LogWriter(printer.clone()))
        .with_target(false)
        .without_time()
        .try_init();
}

/// First Ctrl-C: stop cleanly (running stages are told to stop, nothing half-done is cached).
/// Second: exit at once; staging directories are cleaned by the next run.
fn install_ctrl_c(printer: &Printer) -> CancelToken {
    let cancel = CancelToken::default();
    let handler_token = cancel.clone();
    let handler_printer = printer.clone();
    let _ = ctrlc::set_handler(move || {
        if handler_token.is_cancelled() {
            std::process::exit(exit_code::INTERRUPTED);
        }
        handler_printer.warn("interrupted: stopping running stages (Ctrl-C again to quit at once)");
        handler_token.cancel();
    });
    cancel
}
