//! The contract every stage kind implements.
//!
//! A kind is a type implementing [`Stage`]: its parameters are one serde struct (with
//! `deny_unknown_fields`), and `run` turns the parameters plus the input artifacts into files in
//! the output directory and a set of metrics. The runner wraps each kind in [`StageKind`], the
//! object-safe form that the registry lists and the planner and scheduler use.

use std::collections::BTreeMap;
use std::marker::PhantomData;

use camino::Utf8PathBuf;
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
}

/// How a stage instance plugs into the graph, derived from its parameters before anything runs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageShape {
    /// Named outputs, each a sub-directory of the output directory that other stages can
    /// reference as `stage.output`. Empty: the whole output directory is the only output.
    pub outputs: Vec<String>,
    /// Input names the stage cannot run without.
    pub required_inputs: Vec<String>,
    /// Files or directories outside the cache the stage reads; their content is part of the key.
    pub external_paths: Vec<Utf8PathBuf>,
    /// Whether the stage computes on the selected device (GPU-bound stages run one per device).
    pub uses_device: bool,
}

/// One stage kind, implemented once per file under `src/stages/`.
pub trait Stage: Send + Sync + 'static {
    /// Parameters as written in the recipe; unknown keys are an error.
    type Params: DeserializeOwned + Serialize;
    /// The `kind = "..."` name in recipes.
    const KIND: &'static str;
    /// Bump whenever a code change can change this stage's results: it is part of every key.
    const VERSION: u32;
    /// One line for `hwrun stages`.
    const ABOUT: &'static str;

    /// Outputs, inputs and external files of an instance with these parameters.
    fn shape(_params: &Self::Params) -> StageShape {
        StageShape::default()
    }

    /// Checks parameter values the types cannot express (a required checksum, a positive
    /// rate), when the recipe is planned. A [`ParamError`] with the parameter's path is reported
    /// at that parameter's line.
    fn validate(_params: &Self::Params) -> Result<(), ParamError> {
        Ok(())
    }

    /// Does the work. Files go into `ctx.out_dir()`; they become a cache entry only if this
    /// returns `Ok`.
    fn run(params: Self::Params, ctx: &mut StageContext) -> anyhow::Result<StageOutcome>;
}

/// Why a stage's parameters were rejected: the dotted path inside the stage table (empty for the
/// table itself) and serde's message.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ParamError {
    pub path: Vec<String>,
    pub message: String,
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

fn parse_params<P: DeserializeOwned>(params: &toml::Table) -> Result<P, ParamError> {
    let value = toml::Value::Table(params.clone());
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
    fn check(&self, params: &toml::Table) -> Result<CheckedParams, ParamError> {
        let typed: S::Params = parse_params(params)?;
        S::validate(&typed)?;
        let canonical = serde_json::to_value(&typed).map_err(|err| ParamError {
            path: Vec::new(),
            message: err.to_string(),
        })?;
        Ok(CheckedParams { canonical, shape: S::shape(&typed) })
    }
}

impl<S: Stage> StageRunner for Registered<S> {
    fn kind(&self) -> &'static str {
        S::KIND
    }
    fn run(&self, params: &toml::Table, ctx: &mut StageContext) -> anyhow::Result<StageOutcome> {
        let typed: S::Params = parse_params(params)?;
        S::run(typed, ctx)
    }
}
