//! The contract every stage kind implements.
//!
//! A kind is a type implementing [`Stage`]: its parameters are one serde struct (with
//! `deny_unknown_fields`), and `run` turns the parameters plus the input artifacts into files in
//! the output directory and a set of metrics. The runner wraps each kind in [`StageKind`], the
//! object-safe form that the registry lists and the planner and scheduler use.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use camino::Utf8PathBuf;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::StageContext;

/// Metrics a stage records (accuracy, FID, loss, ...). `hwrun compare` and the report read them.
pub type Metrics = BTreeMap<String, f64>;

/// What a successful run produced, besides the files in its output directory.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct StageOutcome {
    /// Numbers worth comparing across runs, by name.
    pub metrics: Metrics,
    /// One-line summaries printed at the end of every run (also when the stage was cached),
    /// e.g. the shape and class counts of a dataset artifact.
    pub summary: Vec<String>,
    /// The file a person should open (e.g. a report's `index.html`), relative to the output
    /// directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The files a report shows for this stage (figures, grids), relative to the output
    /// directory, in order. A report shows these and nothing else of the stage's files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub figures: Vec<FigureRef>,
}

/// A figure a stage wrote, as a report shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct FigureRef {
    /// Relative to the stage's output directory.
    pub file: String,
    pub caption: String,
}

impl StageOutcome {
    /// Adds `file` (relative to the output directory) to the figures a report shows.
    pub fn figure(&mut self, file: impl Into<String>, caption: impl Into<String>) {
        self.figures.push(FigureRef {
            file: file.into(),
            caption: caption.into(),
        });
    }
}

/// One input a stage kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputSpec {
    /// The key in the stage's `inputs` table.
    pub name: &'static str,
    pub required: bool,
    /// What it must be, for `hwrun stages KIND` (`a dataset (a dataset stage's train or val)`).
    pub about: &'static str,
}

impl InputSpec {
    pub const fn required(name: &'static str, about: &'static str) -> Self {
        InputSpec {
            name,
            required: true,
            about,
        }
    }

    pub const fn optional(name: &'static str, about: &'static str) -> Self {
        InputSpec {
            name,
            required: false,
            about,
        }
    }
}

/// The inputs a kind declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inputs {
    /// Exactly these names (others are an error at plan time).
    Named(&'static [InputSpec]),
    /// Any names the recipe chooses (a report's sections, a command's files).
    Any(&'static str),
}

/// How a stage instance plugs into the graph, derived from its parameters before anything runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageShape {
    /// Named outputs, each a sub-directory of the output directory that other stages can
    /// reference as `stage.output`. Empty: the whole output directory is the only output.
    pub outputs: Vec<String>,
    /// Input names the stage cannot run without (filled in from [`Stage::INPUTS`]).
    pub required_inputs: Vec<String>,
    /// Files or directories outside the cache the stage reads; their content is part of the key.
    pub external_paths: Vec<Utf8PathBuf>,
    /// Whether the stage computes on the selected device (GPU-bound stages run one per device).
    pub uses_device: bool,
    /// Whether the stage summarises the seeds of a `[sweep] seed`: it is then planned once per
    /// group of variants that differ only in seed, with every input of every seed, named
    /// `input[seed=N]` ([`super::seed_input_name`]).
    pub across_seeds: bool,
}

/// One stage kind, implemented once per file under `src/stages/`.
pub trait Stage: Send + Sync + 'static {
    /// Parameters as written in the recipe; unknown keys are an error. The doc comment of each
    /// field is what `hwrun stages KIND` prints for it.
    type Params: DeserializeOwned + Serialize + JsonSchema;
    /// The `kind = "..."` name in recipes.
    const KIND: &'static str;
    /// Bump whenever a code change can change this stage's results: it is part of every key.
    const VERSION: u32;
    /// One line for `hwrun stages`.
    const ABOUT: &'static str;
    /// The inputs the kind takes.
    const INPUTS: Inputs = Inputs::Named(&[]);
    /// A complete recipe using the kind (with the stages it needs), printed by
    /// `hwrun stages KIND` and planned by a test.
    const EXAMPLE: &'static str;

    /// Defaults that depend on the kind or on other parameters, merged under the parameters as
    /// written before they are parsed (a table the recipe gives, such as `optimizer`, is filled
    /// in key by key).
    fn defaults(_written: &toml::Table) -> toml::Table {
        toml::Table::new()
    }

    /// Range checks on parsed parameters, run at plan time: the error names the parameter.
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }

    /// Outputs and external files of an instance with these parameters.
    fn shape(_params: &Self::Params) -> StageShape {
        StageShape::default()
    }

    /// Does the work. Files go into `ctx.out_dir()`; they become a cache entry only if this
    /// returns `Ok`.
    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome>;
}

/// Why a stage's parameters were rejected: the dotted path inside the stage table (empty for the
/// table itself) and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub path: Vec<String>,
    pub message: String,
}

impl ParamError {
    /// `key` (dotted for nested tables: `optimizer.lr`) is out of range: it must be `expected`.
    pub fn out_of_range(key: &str, expected: &str) -> Self {
        ParamError {
            path: key.split('.').map(str::to_owned).collect(),
            message: format!("`{key}` must be {expected}"),
        }
    }

    /// Fails with [`ParamError::out_of_range`] unless `ok`.
    pub fn check(ok: bool, key: &str, expected: &str) -> Result<(), Self> {
        if ok {
            Ok(())
        } else {
            Err(Self::out_of_range(key, expected))
        }
    }
}

/// A parameter as `hwrun stages KIND` documents it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamDoc {
    /// Dotted for nested tables (`optimizer.lr`).
    pub name: String,
    /// The JSON-schema type (`number`, `string`, `array`, ...) or the allowed values.
    pub kind: String,
    pub default: Option<serde_json::Value>,
    pub doc: String,
}

/// Parameters after validation: the canonical form (defaults filled in, numbers typed) that the
/// cache key hashes and the plan diffs.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedParams {
    pub canonical: serde_json::Value,
    pub shape: StageShape,
}

/// The object-safe description of a [`Stage`]: everything the planner needs, nothing that runs.
///
/// Kept apart from [`StageRunner`] so that the `hwrun` binary, which plans and schedules, never
/// references the learning code and so never loads libtorch (see [`super::runners`]).
pub trait StageKind: Send + Sync {
    fn kind(&self) -> &'static str;
    fn version(&self) -> u32;
    fn about(&self) -> &'static str;
    fn inputs(&self) -> Inputs;
    fn example(&self) -> &'static str;
    /// Every parameter with its type, default and doc line.
    fn params(&self) -> Vec<ParamDoc>;
    /// Parses and validates parameters.
    fn check(&self, params: &toml::Table) -> Result<CheckedParams, ParamError>;
}

/// The object-safe way to run a [`Stage`].
pub trait StageRunner: Send + Sync {
    fn kind(&self) -> &'static str;
    fn run(&self, params: &toml::Table, ctx: &mut StageContext) -> anyhow::Result<StageOutcome>;
}

/// Adapts a typed [`Stage`] to [`StageKind`] and [`StageRunner`].
pub struct Registered<S>(PhantomData<S>);

impl<S> Registered<S> {
    pub const fn new() -> Self {
        Registered(PhantomData)
    }
}

impl<S> Default for Registered<S> {
    fn default() -> Self {
        Self::new()
    }
}

/// The parameters as written, with the kind's defaults filled in, parsed.
fn parse_params<S: Stage>(written: &toml::Table) -> Result<S::Params, ParamError> {
    let mut merged = written.clone();
    fill_missing(&mut merged, S::defaults(written));
    let value = toml::Value::Table(merged);
    serde_path_to_error::deserialize(value).map_err(|err| ParamError {
        path: err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect(),
        message: err.into_inner().to_string(),
    })
}

/// The parameters of a `S` stage written as `written`, with the kind's defaults and range checks:
/// what the planner accepts and the stage runs with.
pub fn checked_params<S: Stage>(written: &toml::Table) -> Result<S::Params, ParamError> {
    let typed = parse_params::<S>(written)?;
    S::validate(&typed)?;
    Ok(typed)
}

/// Inserts every entry of `defaults` that `table` lacks, descending into tables both have.
pub fn fill_missing(table: &mut toml::Table, defaults: toml::Table) {
    for (key, value) in defaults {
        match (table.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(inner_defaults)) => {
                fill_missing(inner, inner_defaults)
            }
            (Some(_), _) => {}
            (None, value) => {
                table.insert(key, value);
            }
        }
    }
}

impl<S: Stage> StageKind for Registered<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn version(&self) -> u32 {
        S::VERSION
    }
    fn about(&self) -> &'static str {
        S::ABOUT
    }
    fn inputs(&self) -> Inputs {
        S::INPUTS
    }
    fn example(&self) -> &'static str {
        S::EXAMPLE
    }
    fn params(&self) -> Vec<ParamDoc> {
        let defaults = serde_json::to_value(S::defaults(&toml::Table::new())).unwrap_or_default();
        super::param_docs::document::<S::Params>(&defaults)
    }
    fn check(&self, params: &toml::Table) -> Result<CheckedParams, ParamError> {
        let typed = checked_params::<S>(params)?;
        let canonical = serde_json::to_value(&typed).map_err(|err| ParamError {
            path: Vec::new(),
            message: err.to_string(),
        })?;
        let mut shape = S::shape(&typed);
        if let Inputs::Named(specs) = S::INPUTS {
            shape.required_inputs = specs
                .iter()
                .filter(|s| s.required)
                .map(|s| s.name.to_owned())
                .collect();
        }
        Ok(CheckedParams { canonical, shape })
    }
}

impl<S: Stage> StageRunner for Registered<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn run(&self, params: &toml::Table, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let typed = parse_params::<S>(params)?;
        S::run(typed, ctx)
    }
}
