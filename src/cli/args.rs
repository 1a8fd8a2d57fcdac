//! Command-line arguments, parsed by clap into typed options before any work starts.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::worker::fid::FidOptions;

/// Reproduce deep-learning experiments from declarative TOML recipes.
///
/// `hwrun RECIPE` plans the recipe's stages, runs the ones not in the cache and prints where the
/// outputs and the report are. Without a recipe it runs the embedded quickstart.
#[derive(Debug, Parser)]
#[command(name = "hwrun", disable_version_flag = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub global: GlobalArgs,

    /// Print hwrun's version, the libtorch version and whether CUDA is available.
    #[arg(short = 'V', long, global = true)]
    pub version: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Plan and run a recipe (the default command).
    Run(RunArgs),
    /// Show every stage with its cache key, whether it is cached, and why it would run.
    Plan(RecipeArgs),
    /// Print the stage graph as Graphviz DOT or Mermaid.
    Dag(DagArgs),
    /// Compare a sweep's variants: swept parameters and recorded metrics.
    Compare(CompareArgs),
    /// Where each stage of a recipe submitted to Slurm is: pending, running, done or failed.
    Status(RecipeArgs),
    /// Run one stage from a job file (what a Slurm job runs on its node).
    #[command(hide = true)]
    RunJob(RunJobArgs),
    /// Remove cache entries not reachable from the given recipes.
    Gc(GcArgs),
    /// Re-verify the hashes of every cache entry.
    Fsck(FsckArgs),
    /// List the stage kinds hwrun knows, or document one: its inputs, outputs, every parameter
    /// with its default, and an example recipe.
    Stages(StagesArgs),
    /// FID of two image folders or `.npz` statistics, as `python -m pytorch_fid A B`.
    Fid(FidOptions),
    /// Describe a network given as the text PyTorch's `print(model)` printed, or as a TOML
    /// `[network]` table: PyTorch's printout of it, its parameter count, every state_dict
    /// entry with its shape and, with `--input`, the output shape.
    Net(NetArgs),
}

/// `hwrun net FILE --input 3x64x64`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// The network: a `print(model)` text pasted into a file, or a `.toml` file with a
    /// `[network]` table.
    #[arg(value_name = "FILE")]
    pub file: Utf8PathBuf,

    /// The shape of one input sample, without the batch: `3x64x64` for an image, `100` for a
    /// vector. Checks every layer's input and prints the output shape.
    #[arg(long, value_name = "SHAPE", value_parser = parse_shape)]
    pub input: Option<InputShape>,
}

/// A per-sample tensor shape (`3x64x64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputShape(pub Vec<i64>);

fn parse_shape(text: &str) -> Result<InputShape, String> {
    text.split('x')
        .map(|dim| match dim.trim().parse::<i64>() {
            Ok(size) if size > 0 => Ok(size),
            _ => Err(format!(
                "`{text}` is not a shape: positive sizes joined by `x`, such as 3x64x64"
            )),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(InputShape)
}

#[derive(Debug, Args)]
pub struct StagesArgs {
    /// The kind to document (`hwrun stages train_dann`).
    pub kind: Option<String>,
}

/// Options every command shares.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Device for learning stages: `cpu`, `cuda`, `cuda:N` (default: CUDA when available).
    #[arg(long, global = true, value_name = "DEVICE")]
    pub device: Option<String>,

    /// Cache directory.
    #[arg(
        long,
        global = true,
        env = "HWRUN_CACHE",
        default_value = "cache",
        value_name = "DIR"
    )]
    pub cache_dir: Utf8PathBuf,

    /// No progress or status lines, results only.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// Machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// Where `results/<recipe>/<stage>` links go (default: `results` beside the cache directory).
    #[arg(long, global = true, env = "HWRUN_RESULTS", value_name = "DIR")]
    pub results_dir: Option<Utf8PathBuf>,

    /// More logging (-v debug, -vv trace); `RUST_LOG` is honoured too.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A recipe and overrides of its parameters.
#[derive(Debug, Args, Default)]
pub struct RecipeArgs {
    /// The recipe TOML file (default: the embedded quickstart).
    #[arg(value_name = "RECIPE")]
    pub recipe: Option<Utf8PathBuf>,

    /// Override a parameter: `--set train.lr=1e-3` (repeatable).
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,

    /// How many stages may run at once (device-bound stages still run one per device).
    #[arg(short, long, value_name = "N")]
    pub jobs: Option<usize>,

    /// Keep running the stages that do not depend on a failed one.
    #[arg(short, long)]
    pub keep_going: bool,

    /// Where stages run (default: the recipe's `[run] executor`, else `local`).
    #[arg(long, value_enum, value_name = "EXECUTOR")]
    pub executor: Option<ExecutorChoice>,

    /// With `--executor slurm`: return once every job is queued; `hwrun status RECIPE` follows them.
    #[arg(long)]
    pub detach: bool,

    /// With `--executor slurm`: try a failed stage up to N more times in its job (default: the
    /// recipe's `[run] retries`, else 0).
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
}

/// `--executor` (and the recipe's `[run] executor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorChoice {
    /// This machine: in process, and `hwrun-torch` worker processes for libtorch stages.
    Local,
    /// A Slurm cluster: one `sbatch` job per stage (a job array per swept stage).
    Slurm,
}

#[derive(Debug, Args)]
pub struct RunJobArgs {
    /// The job file written at submission.
    #[arg(value_name = "FILE")]
    pub file: Utf8PathBuf,
}

#[derive(Debug, Args)]
pub struct DagArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,

    /// Graphviz DOT (the default).
    #[arg(long, conflicts_with = "mermaid")]
    pub dot: bool,

    /// Mermaid flowchart.
    #[arg(long)]
    pub mermaid: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub recipe: RecipeArgs,

    /// CSV instead of a table.
    #[arg(long, conflicts_with = "md")]
    pub csv: bool,

    /// A markdown table (for a CI job summary); the best value per metric in bold.
    #[arg(long)]
    pub md: bool,

    /// Show the metrics matching PATTERN (`stage.metric`; `*` and `?` are wildcards, anything
    /// else matches as a substring). Repeatable. Default: the metrics that differ between variants.
    #[arg(long, value_name = "PATTERN", conflicts_with = "all")]
    pub metric: Vec<String>,

    /// Show every metric, also those equal in every variant.
    #[arg(long)]
    pub all: bool,

    /// In a sweep over `seed`, one row per seed instead of mean ± std over the seeds.
    #[arg(long)]
    pub per_seed: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Move every corrupt entry to `cache/quarantine/` (the next run redoes it).
    #[arg(long)]
    pub repair: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Recipes whose stages (every sweep variant) are kept.
    #[arg(value_name = "RECIPE", required = true)]
    pub recipes: Vec<Utf8PathBuf>,

    /// Show what would be removed without removing it.
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hwrun").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn a_bare_recipe_runs_it() {
        let cli = parse(&["--json", "r.toml", "--set", "a.b=1"]);
        assert!(cli.command.is_none() && cli.global.json);
        assert_eq!(
            cli.run.recipe.recipe.as_deref(),
            Some(camino::Utf8Path::new("r.toml"))
        );
        assert_eq!(cli.run.recipe.overrides, ["a.b=1"]);
    }

    #[test]
    fn fid_takes_two_paths_and_pytorch_fids_options() {
        let cli = parse(&[
            "fid",
            "a",
            "b.npz",
            "--dims",
            "64",
            "--batch-size",
            "8",
            "--device",
            "cpu",
        ]);
        let Some(Command::Fid(args)) = cli.command else {
            panic!("not fid")
        };
        assert_eq!(args.paths, ["a", "b.npz"]);
        assert_eq!(
            (args.dims, args.batch_size, args.save_stats),
            (64, 8, false)
        );
        assert_eq!(cli.global.device.as_deref(), Some("cpu"));
        assert!(Cli::try_parse_from(["hwrun", "fid", "a"]).is_err());
    }

    #[test]
    fn net_takes_a_file_and_an_input_shape() {
        let cli = parse(&["net", "g.txt", "--input", "3x64x64", "--json"]);
        let Some(Command::Net(args)) = cli.command else {
            panic!("not net")
        };
        assert_eq!(args.file, "g.txt");
        assert_eq!(args.input, Some(InputShape(vec![3, 64, 64])));
        assert!(cli.global.json);
        assert!(Cli::try_parse_from(["hwrun", "net", "g.txt", "--input", "3x0"]).is_err());
        assert!(Cli::try_parse_from(["hwrun", "net", "g.txt", "--input", "3,64"]).is_err());
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for args in [
            &["--json", "plan", "r.toml"][..],
            &["plan", "--json", "r.toml"],
            &["plan", "r.toml", "--json"],
        ] {
            let cli = parse(args);
            assert!(matches!(cli.command, Some(Command::Plan(_))), "{args:?}");
            assert!(cli.global.json, "{args:?}");
        }
    }
}
