//! What most commands do first: load the recipe, open the cache, plan, and assess.

use anyhow::Context;

use super::args::{GlobalArgs, RecipeArgs};
use super::{DEFAULT_RECIPE, DEFAULT_RECIPE_NAME};
use crate::cache::file_hash::StatCache;
use crate::cache::Cache;
use crate::error::{exit_code, render_error, render_recipe_error};
use crate::graph::{assess, NodeStatus, Plan, PlanError};
use crate::recipe::{self, LoadError, Recipe, RecipeSource};

/// Why a command could not finish, rendered once at the top.
pub enum Failure {
    /// The recipe is invalid (rendered with its source line).
    Recipe(LoadError),
    /// Anything else about the input (a missing file, a bad flag).
    Input(anyhow::Error),
}

impl Failure {
    pub fn render(&self) -> String {
        match self {
            Failure::Recipe(load) => render_recipe_error(&load.error, &load.sources),
            Failure::Input(error) => render_error(error),
        }
    }

    pub fn exit_code(&self) -> i32 {
        exit_code::INVALID_INPUT
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
    stat_cache: StatCache,
}

pub fn load_recipe(args: &RecipeArgs) -> Result<Recipe, Failure> {
    let source = match &args.recipe {
        Some(path) => RecipeSource::File(path),
        None => RecipeSource::Text { name: DEFAULT_RECIPE_NAME, text: DEFAULT_RECIPE },
    };
    recipe::load(source, &args.overrides).map_err(Failure::Recipe)
}

pub fn open_cache(global: &GlobalArgs) -> Result<Cache, Failure> {
    Cache::open(&global.cache_dir)
        .with_context(|| format!("cannot use `{}` as the cache directory (set --cache-dir or HWRUN_CACHE)", global.cache_dir))
        .map_err(Failure::Input)
}

impl Session {
    pub fn open(global: &GlobalArgs, args: &RecipeArgs) -> Result<Session, Failure> {
        let recipe = load_recipe(args)?;
        let cache = open_cache(global)?;
        let mut stat_cache = StatCache::load(&cache.stat_cache_path());
        let sources = recipe.document.sources.clone();
        let plan = Plan::build(recipe, &mut stat_cache).map_err(|error| match error {
            PlanError::Recipe(error) => Failure::Recipe(LoadError { error, sources }),
            other => Failure::Input(other.into()),
        })?;
        let statuses = assess(&plan, &cache);
        Ok(Session { cache, plan, statuses, stat_cache })
    }

    /// Persists what was learnt about external files.
    pub fn save_stat_cache(&self) {
        if let Err(error) = self.stat_cache.save(&self.cache.stat_cache_path()) {
            tracing::warn!("cannot save the stat cache: {error}");
        }
    }
}
