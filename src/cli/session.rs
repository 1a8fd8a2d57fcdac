//! What most commands do first: load the recipe, open the cache, plan, and assess.

use anyhow::Context;

use super::args::{GlobalArgs, RecipeArgs};
use super::{DEFAULT_RECIPE, DEFAULT_RECIPE_NAME};
use crate::cache::Cache;
use crate::error::{exit_code, render_error, render_recipe_error};
use crate::graph::{assess, NodeStatus, Plan, PlanError};
use crate::network::NetworkError;
use crate::recipe::{self, LoadError, Recipe, RecipeSource};

/// Why a command could not finish, rendered once at the top.
pub enum Failure {
    /// The recipe is invalid (rendered with its source line).
    Recipe(LoadError),
    /// Anything else about the input (a missing file, a bad flag).
    Input(anyhow::Error),
    /// A network description that does not read or fit (rendered with its line).
    Network {
        error: NetworkError,
        /// The file, as the user named it.
        source_name: String,
        text: String,
    },
}

impl Failure {
    pub fn render(&self) -> String {
        match self {
            Failure::Recipe(load) => render_recipe_error(&load.error, &load.sources),
            Failure::Input(error) => render_error(error),
            Failure::Network {
                error,
                source_name,
                text,
            } => error.render(source_name, text),
        }
    }

    pub fn exit_code(&self) -> i32 {
        exit_code::INVALID_INPUT
    }

    /// `{"error": ..., "exit_code": 2, "location": {"file", "line", "column"}}` for `--json`.
    pub fn json(&self) -> serde_json::Value {
        let (message, location) = match self {
            Failure::Recipe(load) => {
                let location = load.error.span().and_then(|span| load.sources.locate(span)).map(|at| {
                    serde_json::json!({ "file": at.name.as_str(), "line": at.line, "column": at.column })
                });
                (load.error.to_string(), location)
            }
            Failure::Input(error) => (crate::output::chain_text(error), None),
            Failure::Network {
                error, source_name, ..
            } => {
                let location = error.location.map(|at| {
                    serde_json::json!({ "file": source_name, "line": at.line, "column": at.column })
                });
                (error.to_string(), location)
            }
        };
        let help = match self {
            Failure::Recipe(load) => load.error.help(),
            Failure::Input(_) => None,
            Failure::Network { error, .. } => error.help(),
        };
        serde_json::json!({ "error": message, "exit_code": self.exit_code(), "location": location, "help": help })
    }
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Failure::Input(error)
    }
}

/// A loaded recipe with its plan and cache.
pub struct Session {
    pub cache: Cache,
    pub plan: Plan,
    pub statuses: Vec<NodeStatus>,
}

pub fn load_recipe(args: &RecipeArgs) -> Result<Recipe, Failure> {
    let source = match &args.recipe {
        Some(path) => RecipeSource::File(path),
        None => RecipeSource::Text {
            name: DEFAULT_RECIPE_NAME,
            text: DEFAULT_RECIPE,
        },
    };
    recipe::load(source, &args.overrides, crate::stages::registry()).map_err(Failure::Recipe)
}

/// Whether a command may create and write the cache (`run`, `gc`, `fsck`) or only reads it
/// (`plan`, `dag`, `compare`: they never create or change anything).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Write,
    Read,
}

pub fn open_cache(global: &GlobalArgs, access: Access) -> Result<Cache, Failure> {
    let cache = match access {
        Access::Write => Cache::open(&global.cache_dir),
        Access::Read => Cache::open_read_only(&global.cache_dir),
    }
    .with_context(|| {
        format!(
            "cannot use `{}` as the cache directory (set --cache-dir or HWRUN_CACHE)",
            global.cache_dir
        )
    })
    .map_err(Failure::Input)?;
    if access == Access::Write {
        super::set_cache_root(cache.root());
    }
    Ok(cache)
}

impl Session {
    pub fn open(
        global: &GlobalArgs,
        args: &RecipeArgs,
        access: Access,
    ) -> Result<Session, Failure> {
        let recipe = load_recipe(args)?;
        let cache = open_cache(global, access)?;
        let sources = recipe.document.sources.clone();
        let plan = Plan::build(recipe, &mut cache.stat_cache()).map_err(|error| match error {
            PlanError::Recipe(error) => Failure::Recipe(LoadError { error, sources }),
            other => Failure::Input(other.into()),
        })?;
        let statuses = assess(&plan, &cache);
        Ok(Session {
            cache,
            plan,
            statuses,
        })
    }

    /// Persists what was learnt about file hashes (nothing for a read-only cache).
    pub fn save_stat_cache(&self) {
        if let Err(error) = self.cache.save_stat_cache() {
            tracing::warn!("cannot save the stat cache: {error}");
        }
    }
}
