//! The planned DAG: every stage instance of every sweep variant, keyed by content hash, with
//! identical instances merged into one node.
//!
//! In a sweep over `seed` each variant's stages get the variant's seed. A stage planned across
//! seeds ([`StageShape::across_seeds`], the report) is one node per group of variants that differ
//! only in seed, fed by every input of every seed of the group ([`seed_input_name`]), so one
//! report can show mean and standard deviation instead of one report per seed.

use std::collections::HashMap;

use camino::Utf8PathBuf;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::cache::file_hash::{HashError, StatCache};
use crate::cache::manifest::ExternalRecord;
use crate::cache::{CacheKey, InputKey, KeyMaterial};
use crate::recipe::analyzer::check_params;
use crate::recipe::sweep::{AxisTarget, Variant};
use crate::recipe::{Recipe, RecipeError, StageDecl};
use crate::stage::{seed_input_name, StageKind, StageShape};

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
    /// The seed the stage runs with: its variant's, or the recipe's when the stage summarises
    /// the seeds of a sweep (its inputs carry theirs).
    pub seed: u64,
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
    /// Every variant, in [`crate::recipe::sweep::Sweep::variants`] order.
    variants: Vec<Variant>,
    /// For each variant, the variants that differ from it only in seed (itself included), in
    /// order; empty when the sweep has no seed axis.
    seed_groups: Vec<std::rc::Rc<Vec<usize>>>,
}

impl<'a> Planner<'a> {
    fn new(recipe: &'a Recipe, stat_cache: &'a mut StatCache) -> Self {
        let axes_reaching = axes_reaching(recipe);
        let variants = recipe.sweep.variants();
        let seed_groups = seed_groups(recipe, &variants);
        Planner {
            recipe,
            stat_cache,
            graph: DiGraph::new(),
            by_key: HashMap::new(),
            axes_reaching,
            external_hashes: HashMap::new(),
            variants,
            seed_groups,
        }
    }

    /// Whether declaration `decl` is planned once per seed group.
    fn across_seeds(&self, decl: usize) -> bool {
        !self.seed_groups.is_empty() && self.recipe.stages[decl].checked.shape.across_seeds
    }

    fn run(mut self) -> Result<(DiGraph<PlannedStage, String>, Vec<PlannedVariant>), PlanError> {
        let count = self.variants.len();
        let stages = self.recipe.stages.len();
        let sweeping = count > 1;
        // Variant after variant, as long as no stage needs the other seeds' nodes; from the first
        // that does, stage after stage (declarations are in dependency order).
        let split = (0..stages)
            .find(|&d| self.across_seeds(d))
            .unwrap_or(stages);
        let mut nodes: Vec<Vec<NodeIndex>> = vec![Vec::with_capacity(stages); count];
        for variant in 0..count {
            for decl in 0..split {
                let node = self.plan_stage(decl, variant, &nodes, sweeping)?;
                nodes[variant].push(node);
            }
        }
        for decl in split..stages {
            for variant in 0..count {
                let node = self.plan_stage(decl, variant, &nodes, sweeping)?;
                nodes[variant].push(node);
            }
        }
        let sweep = &self.recipe.sweep;
        let variants = self
            .variants
            .iter()
            .zip(nodes)
            .map(|(variant, nodes)| PlannedVariant {
                label: sweep.label(variant),
                assignments: sweep
                    .axes
                    .iter()
                    .zip(&variant.choices)
                    .map(|(axis, &i)| (axis.dotted.clone(), axis.values[i].clone()))
                    .collect(),
                nodes,
            })
            .collect();
        Ok((self.graph, variants))
    }

    /// Plans declaration `decl_index` of variant `variant_index`; `planned` holds the nodes of
    /// the declarations planned so far, per variant.
    fn plan_stage(
        &mut self,
        decl_index: usize,
        variant_index: usize,
        planned: &[Vec<NodeIndex>],
        sweeping: bool,
    ) -> Result<NodeIndex, PlanError> {
        let decl = &self.recipe.stages[decl_index];
        let sweep = &self.recipe.sweep;
        let variant = &self.variants[variant_index];
        let swept: Vec<(&[String], &toml::Value)> = sweep
            .axes
            .iter()
            .zip(&variant.choices)
            .filter_map(|(axis, &i)| match &axis.target {
                AxisTarget::Param { stage, param } if *stage == decl_index => {
                    Some((param.as_slice(), &axis.values[i]))
                }
                _ => None,
            })
            .collect();
        let (params, checked) = if swept.is_empty() {
            (decl.params.clone(), decl.checked.clone())
        } else {
            let mut params = decl.params.clone();
            for (param, value) in swept {
                set_path(&mut params, param, value.clone());
            }
            let checked = check_params(&self.recipe.document, &decl.name, decl.kind, &params)?;
            (params, checked)
        };
        let across_seeds = self.across_seeds(decl_index);
        // (input key, producing node), one per input, or one per input and seed across seeds.
        let mut inputs: Vec<(InputKey, NodeIndex)> = Vec::with_capacity(decl.inputs.len());
        let sources: Vec<(usize, Option<u64>)> = if across_seeds {
            self.seed_groups[variant_index]
                .iter()
                .map(|&member| (member, sweep.seed(&self.variants[member])))
                .collect()
        } else {
            vec![(variant_index, None)]
        };
        for (name, reference) in &decl.inputs {
            for &(member, seed) in &sources {
                let producer = planned[member][reference.stage];
                let name = seed.map_or_else(|| name.clone(), |seed| seed_input_name(name, seed));
                inputs.push((
                    InputKey {
                        name,
                        key: self.graph[producer].key,
                        output: reference.output.clone(),
                    },
                    producer,
                ));
            }
        }
        inputs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        let seed = match sweep.seed(variant) {
            Some(seed) if !across_seeds => seed,
            _ => self.recipe.seed,
        };
        let (inputs, producers): (Vec<InputKey>, Vec<NodeIndex>) = inputs.into_iter().unzip();
        let external = self.hash_external(&decl.name, &checked.shape)?;
        let external_hashes: Vec<blake3::Hash> = external.iter().map(|(_, h)| *h).collect();
        let key = KeyMaterial {
            kind: decl.kind.kind(),
            version: decl.kind.version(),
            params: &checked.canonical,
            seed,
            inputs: &inputs,
            external: &external_hashes,
        }
        .key();
        if let Some(&node) = self.by_key.get(&key) {
            return Ok(node);
        }
        let label = self.label(decl_index, variant_index, sweeping);
        let node = self.graph.add_node(PlannedStage {
            key,
            decl: decl_index,
            kind: decl.kind,
            params,
            canonical: checked.canonical,
            shape: checked.shape,
            inputs: inputs.clone(),
            external: external
                .into_iter()
                .map(|(path, hash)| ExternalRecord {
                    path: path.into_string(),
                    blake3: hash.to_hex().to_string(),
                })
                .collect(),
            seed,
            label,
        });
        for (input, producer) in inputs.iter().zip(producers) {
            self.graph.add_edge(producer, node, input.name.clone());
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

    /// The stage name, plus the values of the sweep axes that reach it (but the seed for a stage
    /// planned across seeds).
    fn label(&self, decl: usize, variant: usize, sweeping: bool) -> String {
        let name = &self.recipe.stages[decl].name;
        let variant = &self.variants[variant];
        let seed_axis = self
            .recipe
            .sweep
            .seed_axis()
            .filter(|_| self.across_seeds(decl));
        let reaching: Vec<usize> = self.axes_reaching[decl]
            .iter()
            .copied()
            .filter(|&axis| Some(axis) != seed_axis)
            .collect();
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

/// For each variant, the variants that agree with it on every axis but the seed (none without a
/// seed axis). Grouped by value, not by position, so that in zip mode `lr = [a, a, b, b]` with
/// `seed = [0, 1, 0, 1]` makes two groups of two.
fn seed_groups(recipe: &Recipe, variants: &[Variant]) -> Vec<std::rc::Rc<Vec<usize>>> {
    let sweep = &recipe.sweep;
    if sweep.seed_axis().is_none() {
        return Vec::new();
    }
    let mut groups: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    let mut index: HashMap<Vec<String>, usize> = HashMap::new();
    let mut group_of = Vec::with_capacity(variants.len());
    for (i, variant) in variants.iter().enumerate() {
        let values: Vec<String> = sweep
            .non_seed_values(variant)
            .iter()
            .map(|v| v.to_string())
            .collect();
        let group = *index.entry(values.clone()).or_insert_with(|| {
            groups.push((values, Vec::new()));
            groups.len() - 1
        });
        groups[group].1.push(i);
        group_of.push(group);
    }
    let groups: Vec<std::rc::Rc<Vec<usize>>> = groups
        .into_iter()
        .map(|(_, members)| std::rc::Rc::new(members))
        .collect();
    group_of.into_iter().map(|g| groups[g].clone()).collect()
}

/// For each declaration, the sweep axes set on it or on any stage upstream of it; the seed axis
/// reaches every stage.
fn axes_reaching(recipe: &Recipe) -> Vec<Vec<usize>> {
    let mut reaching: Vec<Vec<usize>> = Vec::with_capacity(recipe.stages.len());
    for (index, decl) in recipe.stages.iter().enumerate() {
        let mut axes: Vec<usize> = recipe
            .sweep
            .axes
            .iter()
            .enumerate()
            .filter(|(_, a)| a.stage().is_none_or(|stage| stage == index))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::load_recipe;

    const RECIPE: &str = r#"name = "t"
seed = 9

[stages.data]
kind = "synthetic"
domain = "mnistm"
n_train = 20
n_val = 10

[stages.train]
kind = "train_classifier"
inputs = { train = "data.train" }
epochs = 1

[stages.eval]
kind = "evaluate"
inputs = { model = "train", data = "data.val" }

[stages.report]
kind = "report"
inputs = { eval = "eval" }
"#;

    fn plan(sweep: &str) -> Plan {
        let text = format!("{RECIPE}\n[sweep]\n{sweep}\n");
        let recipe = load_recipe("t.toml", &text, &[])
            .map_err(|e| e.error)
            .unwrap();
        Plan::build(recipe, &mut StatCache::default()).unwrap()
    }

    fn nodes_of<'a>(plan: &'a Plan, stage: &str) -> Vec<&'a PlannedStage> {
        let (decl, _) = plan.recipe.stage(stage).unwrap();
        plan.graph
            .node_indices()
            .map(|n| &plan.graph[n])
            .filter(|s| s.decl == decl)
            .collect()
    }

    #[test]
    fn every_stage_runs_per_seed_and_one_report_takes_them_all() {
        let plan = plan("seed = [0, 1, 2]");
        assert_eq!(plan.variants.len(), 3);
        for stage in ["data", "train", "eval"] {
            let seeds: Vec<u64> = nodes_of(&plan, stage).iter().map(|s| s.seed).collect();
            assert_eq!(seeds, [0, 1, 2], "{stage}");
        }
        let reports = nodes_of(&plan, "report");
        assert_eq!(reports.len(), 1);
        let report = reports[0];
        assert_eq!(report.label, "report");
        assert_eq!(report.seed, 9, "the recipe's seed");
        let names: Vec<&str> = report.inputs.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["eval[seed=0]", "eval[seed=1]", "eval[seed=2]"]);
        let evals: Vec<CacheKey> = nodes_of(&plan, "eval").iter().map(|s| s.key).collect();
        let fed: Vec<CacheKey> = report.inputs.iter().map(|i| i.key).collect();
        assert_eq!(fed, evals);
        let report_node = plan.variants[0].nodes[3];
        assert!(plan.variants.iter().all(|v| v.nodes[3] == report_node));
        let edges: Vec<String> = plan
            .inputs_of(report_node)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        assert_eq!(edges, names);
        assert_eq!(nodes_of(&plan, "eval")[1].label, "eval[seed=1]");
        assert_eq!(
            plan.variants[1].assignments,
            [("seed".to_owned(), toml::Value::Integer(1))]
        );
    }

    #[test]
    fn one_report_per_group_of_variants_that_differ_only_in_seed() {
        let plan = plan("\"train.epochs\" = [1, 2]\nseed = [0, 1]");
        assert_eq!(plan.variants.len(), 4);
        // The data does not depend on the epochs: one per seed.
        assert_eq!(nodes_of(&plan, "data").len(), 2);
        assert_eq!(nodes_of(&plan, "train").len(), 4);
        let reports = nodes_of(&plan, "report");
        let labels: Vec<&str> = reports.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(labels, ["report[train.epochs=1]", "report[train.epochs=2]"]);
        for report in reports {
            assert_eq!(report.inputs.len(), 2);
        }
        // Axes in key order: `seed` varies slowest, so variants 0 and 2 differ only in seed.
        assert_eq!(plan.variants[0].label, "seed=0,train.epochs=1");
        assert_eq!(plan.variants[0].nodes[3], plan.variants[2].nodes[3]);
        assert_ne!(plan.variants[0].nodes[3], plan.variants[1].nodes[3]);
    }

    #[test]
    fn without_a_seed_axis_the_report_is_per_variant_with_the_recipe_seed() {
        let plan = plan("\"train.epochs\" = [1, 2]");
        let reports = nodes_of(&plan, "report");
        assert_eq!(reports.len(), 2);
        assert!(reports
            .iter()
            .all(|r| r.seed == 9 && r.inputs[0].name == "eval"));
    }
}
