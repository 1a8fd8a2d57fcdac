//! The planned DAG: every stage instance of every sweep variant, keyed by content hash, with
//! identical instances merged into one node.

use std::collections::HashMap;

use camino::Utf8PathBuf;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::cache::file_hash::{HashError, StatCache};
use crate::cache::manifest::ExternalRecord;
use crate::cache::{CacheKey, InputKey, KeyMaterial};
use crate::recipe::analyzer::check_params;
use crate::recipe::sweep::Variant;
use crate::recipe::{Recipe, RecipeError, StageDecl};
use crate::stage::{StageKind, StageShape};

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Recipe(#[from] RecipeError),
    #[error("stage `{stage}` reads `{path}`, which cannot be read: {source}")]
    ExternalUnreadable {
        stage: String,
        path: Utf8PathBuf,
        source: HashError,
    },
}

/// One stage instance: a unique key.
pub struct PlannedStage {
    pub key: CacheKey,
    /// Index of the declaration in [`Recipe::stages`].
    pub decl: usize,
    pub kind: &'static dyn StageKind,
    /// Parameters as written, with this variant's sweep values.
    pub params: toml::Table,
    /// Canonical parameters, as hashed.
    pub canonical: serde_json::Value,
    pub shape: StageShape,
    /// Input keys sorted by input name, as hashed.
    pub inputs: Vec<InputKey>,
    pub external: Vec<ExternalRecord>,
    /// `stage`, or `stage[lr=0.001]` when the instance belongs to some sweep variants only.
    pub label: String,
}

/// One sweep variant: its label and the node of each declared stage.
pub struct PlannedVariant {
    pub label: String,
    /// The parameter values of this variant, by `stage.param`.
    pub assignments: Vec<(String, toml::Value)>,
    /// Node of each declaration, indexed like [`Recipe::stages`].
    pub nodes: Vec<NodeIndex>,
}

/// The whole plan. Edges go from an input to its consumer and carry the input name.
pub struct Plan {
    pub recipe: Recipe,
    pub graph: DiGraph<PlannedStage, String>,
    pub variants: Vec<PlannedVariant>,
}

impl Plan {
    pub fn build(recipe: Recipe, stat_cache: &mut StatCache) -> Result<Plan, PlanError> {
        Planner::new(&recipe, stat_cache)
            .run()
            .map(|(graph, variants)| Plan {
                recipe,
                graph,
                variants,
            })
    }

    /// Nodes in an order where inputs come first.
    pub fn topological(&self) -> Vec<NodeIndex> {
        petgraph::algo::toposort(&self.graph, None)
            .unwrap_or_else(|_| self.graph.node_indices().collect())
    }

    /// The nodes feeding `node`, by input name.
    pub fn inputs_of(&self, node: NodeIndex) -> Vec<(String, NodeIndex)> {
        let mut inputs: Vec<(String, NodeIndex)> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (e.weight().clone(), petgraph::visit::EdgeRef::source(&e)))
            .collect();
        inputs.sort();
        inputs
    }

    pub fn decl(&self, node: NodeIndex) -> &StageDecl {
        &self.recipe.stages[self.graph[node].decl]
    }

    pub fn is_sweep(&self) -> bool {
        self.variants.len() > 1
    }
}

struct Planner<'a> {
    recipe: &'a Recipe,
    stat_cache: &'a mut StatCache,
    graph: DiGraph<PlannedStage, String>,
    by_key: HashMap<CacheKey, NodeIndex>,
    /// For each declaration, the sweep axes that reach it (on it or upstream).
    axes_reaching: Vec<Vec<usize>>,
    external_hashes: HashMap<Utf8PathBuf, blake3::Hash>,
}

impl<'a> Planner<'a> {
    fn new(recipe: &'a Recipe, stat_cache: &'a mut StatCache) -> Self {
        let axes_reaching = axes_reaching(recipe);
        Planner {
            recipe,
            stat_cache,
            graph: DiGraph::new(),
            by_key: HashMap::new(),
            axes_reaching,
            external_hashes: HashMap::new(),
        }
    }

    fn run(mut self) -> Result<(DiGraph<PlannedStage, String>, Vec<PlannedVariant>), PlanError> {
        let sweep = &self.recipe.sweep;
        let all = sweep.variants();
        let sweeping = all.len() > 1;
        let mut variants = Vec::with_capacity(all.len());
        for variant in &all {
            let mut nodes = Vec::with_capacity(self.recipe.stages.len());
            for decl in 0..self.recipe.stages.len() {
                let node = self.plan_stage(decl, variant, &nodes, sweeping)?;
                nodes.push(node);
            }
            let assignments = sweep
                .axes
                .iter()
                .zip(&variant.choices)
                .map(|(axis, &i)| (axis.dotted.clone(), axis.values[i].clone()))
                .collect();
            variants.push(PlannedVariant {
                label: sweep.label(variant),
                assignments,
                nodes,
            });
        }
        Ok((self.graph, variants))
    }

    fn plan_stage(
        &mut self,
        decl_index: usize,
        variant: &Variant,
        planned: &[NodeIndex],
        sweeping: bool,
    ) -> Result<NodeIndex, PlanError> {
        let decl = &self.recipe.stages[decl_index];
        let swept: Vec<usize> = self
            .recipe
            .sweep
            .axes
            .iter()
            .enumerate()
            .filter(|(_, axis)| axis.stage == decl_index)
            .map(|(i, _)| i)
            .collect();
        let (params, checked) = if swept.is_empty() {
            (decl.params.clone(), decl.checked.clone())
        } else {
            let mut params = decl.params.clone();
            for &axis in &swept {
                let axis_def = &self.recipe.sweep.axes[axis];
                set_path(
                    &mut params,
                    &axis_def.param,
                    axis_def.values[variant.choices[axis]].clone(),
                );
            }
            let checked = check_params(&self.recipe.document, &decl.name, decl.kind, &params)?;
            (params, checked)
        };
        let mut inputs: Vec<InputKey> = decl
            .inputs
            .iter()
            .map(|(name, reference)| InputKey {
                name: name.clone(),
                key: self.graph[planned[reference.stage]].key,
                output: reference.output.clone(),
            })
            .collect();
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        let external = self.hash_external(&decl.name, &checked.shape)?;
        let external_hashes: Vec<blake3::Hash> = external.iter().map(|(_, h)| *h).collect();
        let key = KeyMaterial {
            kind: decl.kind.kind(),
            version: decl.kind.version(),
            params: &checked.canonical,
            seed: self.recipe.seed,
            inputs: &inputs,
            external: &external_hashes,
        }
        .key();
        if let Some(&node) = self.by_key.get(&key) {
            return Ok(node);
        }
        let label = self.label(decl_index, variant, sweeping);
        let node = self.graph.add_node(PlannedStage {
            key,
            decl: decl_index,
            kind: decl.kind,
            params,
            canonical: checked.canonical,
            shape: checked.shape,
            inputs,
            external: external
                .into_iter()
                .map(|(path, hash)| ExternalRecord {
                    path: path.into_string(),
                    blake3: hash.to_hex().to_string(),
                })
                .collect(),
            label,
        });
        for (name, reference) in &decl.inputs {
            self.graph
                .add_edge(planned[reference.stage], node, name.clone());
        }
        self.by_key.insert(key, node);
        Ok(node)
    }

    fn hash_external(
        &mut self,
        stage: &str,
        shape: &StageShape,
    ) -> Result<Vec<(Utf8PathBuf, blake3::Hash)>, PlanError> {
        shape
            .external_paths
            .iter()
            .map(|path| {
                if let Some(hash) = self.external_hashes.get(path) {
                    return Ok((path.clone(), *hash));
                }
                let hash = self.stat_cache.hash_path(path).map_err(|source| {
                    PlanError::ExternalUnreadable {
                        stage: stage.to_owned(),
                        path: path.clone(),
                        source,
                    }
                })?;
                self.external_hashes.insert(path.clone(), hash);
                Ok((path.clone(), hash))
            })
            .collect()
    }

    /// The stage name, plus the values of the sweep axes that reach it.
    fn label(&self, decl: usize, variant: &Variant, sweeping: bool) -> String {
        let name = &self.recipe.stages[decl].name;
        let reaching = &self.axes_reaching[decl];
        if !sweeping || reaching.is_empty() {
            return name.clone();
        }
        let values: Vec<String> = reaching
            .iter()
            .map(|&axis| {
                let axis_def = &self.recipe.sweep.axes[axis];
                format!(
                    "{}={}",
                    axis_def.dotted, axis_def.values[variant.choices[axis]]
                )
            })
            .collect();
        format!("{name}[{}]", values.join(","))
    }
}

/// For each declaration, the sweep axes set on it or on any stage upstream of it.
fn axes_reaching(recipe: &Recipe) -> Vec<Vec<usize>> {
    let mut reaching: Vec<Vec<usize>> = Vec::with_capacity(recipe.stages.len());
    for (index, decl) in recipe.stages.iter().enumerate() {
        let mut axes: Vec<usize> = recipe
            .sweep
            .axes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.stage == index)
            .map(|(i, _)| i)
            .collect();
        for input in decl.inputs.values() {
            axes.extend(reaching[input.stage].iter().copied());
        }
        axes.sort_unstable();
        axes.dedup();
        reaching.push(axes);
    }
    reaching
}

/// Sets a nested value in a TOML table, creating tables on the way.
fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(next) = entry else {
            return;
        };
        current = next;
    }
    current.insert(last.clone(), value);
}
