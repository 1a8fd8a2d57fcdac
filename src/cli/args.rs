//! Command-line arguments, parsed by clap into typed options before any work starts.

use camino::Utf8PathBuf;
use clap::{Args, Parser, Subcommand};

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
    /// Remove cache entries not reachable from the given recipes.
    Gc(GcArgs),
    /// Re-verify the hashes of every cache entry.
    Fsck(FsckArgs),
    /// List the stage kinds hwrun knows, or document one: its inputs, outputs, every parameter
    /// with its default, and an example recipe.
    Stages(StagesArgs),
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
    #[arg(long, global = true, env = "HWRUN_CACHE", default_value = "cache", value_name = "DIR")]
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

    /// CSV instead of a markdown table.
    #[arg(long)]
    pub csv: bool,
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
        assert_eq!(cli.run.recipe.recipe.as_deref(), Some(camino::Utf8Path::new("r.toml")));
        assert_eq!(cli.run.recipe.overrides, ["a.b=1"]);
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        for args in [&["--json", "plan", "r.toml"][..], &["plan", "--json", "r.toml"], &["plan", "r.toml", "--json"]] {
            let cli = parse(args);
            assert!(matches!(cli.command, Some(Command::Plan(_))), "{args:?}");
            assert!(cli.global.json, "{args:?}");
        }
    }
}
