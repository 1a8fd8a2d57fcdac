//! `[sweep]`: run a recipe for several parameter values at once.
//!
//! ```toml
//! [sweep]
//! mode = "grid"               # every combination (default); "zip" pairs the i-th values
//! "train.lr" = [1e-4, 1e-3]
//! "train.epochs" = [5, 10]
//! ```
//! Each combination is a variant. Variants are planned independently and stages whose cache
//! keys coincide (everything upstream of the swept parameters) run once.
//!
//! `seed` is an axis too: `seed = [0, 1, 2]` gives each variant its own recipe seed (alone, or
//! combined with `stage.param` axes in either mode). The seed is part of every stage's cache key,
//! so every stage reruns per seed; there is no notion of a seed-independent stage. A stage whose
//! shape says [`crate::stage::StageShape::across_seeds`] (the report) is planned once per group of
//! variants that differ only in `seed`, and takes each input of every seed, named
//! [`crate::stage::seed_input_name`] (`eval[seed=1]`).

use toml::Value;

use super::analyzer::StageDecl;
use super::document::RecipeDocument;
use super::error::{suggest, RecipeError};

/// The most variants a sweep may have: each is planned, and the plan is held in memory
/// (100,000 variants of a 2-stage recipe plan in seconds, in tens of megabytes).
pub const MAX_VARIANTS: usize = 100_000;

/// The most stage instances a sweep may plan (its variants times the recipe's stages, before
/// shared upstream stages are merged): 10^8 would exhaust memory before the plan could say so.
pub const MAX_PLANNED_STAGES: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    Grid,
    Zip,
}

/// What an axis changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AxisTarget {
    /// The recipe seed; every value is a distinct non-negative integer.
    Seed,
    /// A stage parameter.
    Param {
        /// Index of the stage in [`super::Recipe::stages`].
        stage: usize,
        /// Path of the parameter inside the stage table.
        param: Vec<String>,
    },
}

/// One swept parameter.
#[derive(Debug, Clone)]
pub struct Axis {
    /// `stage.param` (or `seed`) as written.
    pub dotted: String,
    pub target: AxisTarget,
    pub values: Vec<Value>,
}

impl Axis {
    /// The stage whose parameter this axis sets (none for the seed).
    pub fn stage(&self) -> Option<usize> {
        match self.target {
            AxisTarget::Seed => None,
            AxisTarget::Param { stage, .. } => Some(stage),
        }
    }
}

/// The key of the seed axis in `[sweep]`.
pub const SEED_KEY: &str = "seed";

/// The parsed `[sweep]` table; no axes means a single variant.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub mode: SweepMode,
    pub axes: Vec<Axis>,
}

/// One combination: the value index of each axis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub choices: Vec<usize>,
}

impl Sweep {
    pub fn parse(document: &RecipeDocument, stages: &[StageDecl]) -> Result<Sweep, RecipeError> {
        let none = Sweep {
            mode: SweepMode::Grid,
            axes: Vec::new(),
        };
        let Some(table) = document.root.get("sweep") else {
            return Ok(none);
        };
        let Value::Table(table) = table else {
            return Err(document.wrong_type("sweep", "a table", table));
        };
        let at = |key: &str| document.spans.key(&["sweep".to_owned(), key.to_owned()]);
        let invalid = |key: &str, reason: String| RecipeError::SweepInvalid {
            reason,
            at: at(key),
        };
        let mut mode = SweepMode::Grid;
        let mut axes = Vec::new();
        for (key, value) in table {
            if key == "mode" {
                mode = match value.as_str() {
                    Some("grid") => SweepMode::Grid,
                    Some("zip") => SweepMode::Zip,
                    _ => {
                        return Err(invalid(
                            key,
                            "`mode` must be \"grid\" or \"zip\"".to_owned(),
                        ))
                    }
                };
                continue;
            }
            if key == SEED_KEY {
                let values = seed_values(value).map_err(|reason| RecipeError::SweepInvalid {
                    reason,
                    at: document.spans.value(&["sweep".to_owned(), key.clone()]),
                })?;
                axes.push(Axis {
                    dotted: key.clone(),
                    target: AxisTarget::Seed,
                    values,
                });
                continue;
            }
            let Some((stage_name, param)) = key.split_once('.') else {
                return Err(invalid(
                    key,
                    format!("`{key}` must name a stage parameter as `stage.param`, or be `seed`"),
                ));
            };
            let Some(stage) = stages.iter().position(|s| s.name == stage_name) else {
                let hint = suggest(stage_name, stages.iter().map(|s| s.name.as_str()))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(invalid(
                    key,
                    format!("the recipe has no stage `{stage_name}`{hint}"),
                ));
            };
            let param: Vec<String> = param.split('.').map(str::to_owned).collect();
            if param[0] == "kind" || param[0] == "inputs" {
                return Err(invalid(
                    key,
                    "a sweep changes parameters, not `kind` or `inputs`".to_owned(),
                ));
            }
            let values = match value {
                Value::Array(values) if !values.is_empty() => values.clone(),
                _ => {
                    return Err(invalid(
                        key,
                        format!("`{key}` must be a non-empty array of values"),
                    ))
                }
            };
            axes.push(Axis {
                dotted: key.clone(),
                target: AxisTarget::Param { stage, param },
                values,
            });
        }
        if mode == SweepMode::Zip {
            if let Some(first) = axes.first() {
                if let Some(other) = axes.iter().find(|a| a.values.len() != first.values.len()) {
                    return Err(invalid(
                        &other.dotted,
                        format!(
                            "zip mode needs arrays of equal length: `{}` has {}, `{}` has {}",
                            first.dotted,
                            first.values.len(),
                            other.dotted,
                            other.values.len()
                        ),
                    ));
                }
            }
        }
        let count = match mode {
            SweepMode::Zip => axes.first().map_or(1, |a| a.values.len()),
            SweepMode::Grid => axes
                .iter()
                .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
                .unwrap_or(usize::MAX),
        };
        if count > MAX_VARIANTS {
            let sizes: Vec<String> = axes.iter().map(|a| a.values.len().to_string()).collect();
            return Err(RecipeError::SweepInvalid {
                reason: format!(
                    "{} variants ({}) is more than the {MAX_VARIANTS} hwrun plans at most: sweep fewer values, or pair them with `mode = \"zip\"`",
                    if count == usize::MAX { "too many".to_owned() } else { count.to_string() },
                    sizes.join(" x ")
                ),
                at: document.spans.key(&["sweep".to_owned()]),
            });
        }
        let planned = count.saturating_mul(stages.len());
        if planned > MAX_PLANNED_STAGES {
            return Err(RecipeError::SweepInvalid {
                reason: format!(
                    "{count} variants of {} stages would plan {planned} stage instances, more than the {MAX_PLANNED_STAGES} hwrun plans at most: sweep fewer values",
                    stages.len()
                ),
                at: document.spans.key(&["sweep".to_owned()]),
            });
        }
        let sweep = Sweep { mode, axes };
        if let Some(reason) = repeated_seed(&sweep) {
            return Err(RecipeError::SweepInvalid {
                reason,
                at: document
                    .spans
                    .value(&["sweep".to_owned(), SEED_KEY.to_owned()]),
            });
        }
        if sweep.seed_axis().is_some() {
            // A `--set seed=N` would be silently replaced by every variant's own seed.
            let seed_span = document.spans.value(&["seed".to_owned()]);
            if let Some(span) = seed_span.filter(|span| {
                document.sources.get(span.file).name.as_str() == super::overrides::SOURCE_NAME
            }) {
                return Err(RecipeError::SeedOverrideSwept { at: Some(span) });
            }
        }
        Ok(sweep)
    }

    /// Index of the `seed` axis, if the sweep has one.
    pub fn seed_axis(&self) -> Option<usize> {
        self.axes.iter().position(|a| a.target == AxisTarget::Seed)
    }

    /// The seed `variant` sets, if the sweep has a seed axis.
    pub fn seed(&self, variant: &Variant) -> Option<u64> {
        let axis = self.seed_axis()?;
        self.axes[axis].values[variant.choices[axis]]
            .as_integer()
            .and_then(|seed| u64::try_from(seed).ok())
    }

    /// The values of every axis but the seed: variants that agree on these differ only in seed.
    pub fn non_seed_values<'a>(&'a self, variant: &'a Variant) -> Vec<&'a Value> {
        self.axes
            .iter()
            .zip(&variant.choices)
            .filter(|(axis, _)| axis.target != AxisTarget::Seed)
            .map(|(axis, &i)| &axis.values[i])
            .collect()
    }

    /// Every variant, in a stable order (the last axis varies fastest in grid mode).
    pub fn variants(&self) -> Vec<Variant> {
        if self.axes.is_empty() {
            return vec![Variant {
                choices: Vec::new(),
            }];
        }
        match self.mode {
            SweepMode::Zip => (0..self.axes[0].values.len())
                .map(|i| Variant {
                    choices: vec![i; self.axes.len()],
                })
                .collect(),
            SweepMode::Grid => {
                let mut variants = vec![Variant {
                    choices: Vec::new(),
                }];
                for axis in &self.axes {
                    variants = variants
                        .into_iter()
                        .flat_map(|v| {
                            (0..axis.values.len()).map(move |i| {
                                let mut choices = v.choices.clone();
                                choices.push(i);
                                Variant { choices }
                            })
                        })
                        .collect();
                }
                variants
            }
        }
    }

    /// `train.lr=0.001,train.epochs=5`; empty for the single variant of an unswept recipe.
    pub fn label(&self, variant: &Variant) -> String {
        self.axes
            .iter()
            .zip(&variant.choices)
            .map(|(axis, &i)| format!("{}={}", axis.dotted, axis.values[i]))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The values of `[sweep] seed`: a non-empty array of distinct non-negative integers.
fn seed_values(value: &Value) -> Result<Vec<Value>, String> {
    let Value::Array(values) = value else {
        return Err(format!(
            "`seed` must be an array of seeds such as `[0, 1, 2]`, found {}",
            value.type_str()
        ));
    };
    if values.is_empty() {
        return Err("`seed` must list at least one seed, e.g. `[0, 1, 2]`".to_owned());
    }
    for (i, value) in values.iter().enumerate() {
        match value {
            Value::Integer(seed) if *seed >= 0 => {}
            Value::Integer(seed) => {
                return Err(format!(
                    "seed {seed} (item {}) is negative: seeds are non-negative integers",
                    i + 1
                ))
            }
            other => {
                return Err(format!(
                    "seed `{other}` (item {}) is not an integer: seeds are non-negative integers",
                    i + 1
                ))
            }
        }
    }
    Ok(values.clone())
}

/// A seed listed twice where it would run the same variant twice: anywhere in grid mode, and in
/// zip mode where the other axes pair it with the same values too.
fn repeated_seed(sweep: &Sweep) -> Option<String> {
    let seeds = &sweep.axes[sweep.seed_axis()?].values;
    let zip = sweep.mode == SweepMode::Zip;
    // Item -> its first position; the key is what makes two items the same variant.
    let mut first = std::collections::HashMap::with_capacity(seeds.len());
    for (j, seed) in seeds.iter().enumerate() {
        let key: Vec<String> = if zip {
            sweep.axes.iter().map(|a| a.values[j].to_string()).collect()
        } else {
            vec![seed.to_string()]
        };
        if let Some(&i) = first.get(&key) {
            let with = if zip {
                " with the same values of the other axes"
            } else {
                ""
            };
            return Some(format!(
                "seed {seed} is listed twice{with} (items {} and {}): each seed runs once",
                i + 1,
                j + 1
            ));
        }
        first.insert(key, j);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(mode: SweepMode, lengths: &[usize]) -> Sweep {
        let axes = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| Axis {
                dotted: format!("s.p{i}"),
                target: AxisTarget::Param {
                    stage: 0,
                    param: vec![format!("p{i}")],
                },
                values: (0..n as i64).map(Value::Integer).collect(),
            })
            .collect();
        Sweep { mode, axes }
    }

    #[test]
    fn grid_is_the_cartesian_product() {
        let s = sweep(SweepMode::Grid, &[2, 3]);
        let variants = s.variants();
        assert_eq!(variants.len(), 6);
        assert_eq!(s.label(&variants[1]), "s.p0=0,s.p1=1");
    }

    #[test]
    fn zip_pairs_values() {
        let variants = sweep(SweepMode::Zip, &[3, 3]).variants();
        assert_eq!(
            variants
                .iter()
                .map(|v| v.choices.clone())
                .collect::<Vec<_>>(),
            vec![vec![0, 0], vec![1, 1], vec![2, 2]]
        );
    }

    #[test]
    fn no_axes_is_one_variant() {
        assert_eq!(sweep(SweepMode::Grid, &[]).variants().len(), 1);
    }

    const RECIPE: &str = "name = \"t\"\nseed = 7\n\n[stages.data]\nkind = \"synthetic\"\ndomain = \"mnistm\"\nn_train = 20\nn_val = 10\n\n[sweep]\n";

    fn load(sweep: &str, overrides: &[&str]) -> Result<crate::recipe::Recipe, String> {
        // `Recipe` is not `Debug`; tests read the error through `err`.
        let text = format!("{RECIPE}{sweep}\n");
        let overrides: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        crate::testing::load_recipe("t.toml", &text, &overrides).map_err(|e| {
            let line = e
                .error
                .span()
                .and_then(|span| e.sources.locate(span))
                .map(|at| format!("{}:{}", at.name, at.line))
                .unwrap_or_default();
            format!("{line}: {}", e.error)
        })
    }

    /// The seed of each variant.
    fn seeds(sweep: &Sweep) -> Vec<Option<u64>> {
        sweep.variants().iter().map(|v| sweep.seed(v)).collect()
    }

    fn err(result: Result<crate::recipe::Recipe, String>) -> String {
        match result {
            Ok(_) => panic!("the recipe loaded"),
            Err(err) => err,
        }
    }

    #[test]
    fn a_sweep_that_would_plan_too_many_stage_instances_is_refused() {
        let stages: String = (0..20)
            .map(|i| format!("[stages.s{i}]\nkind = \"command\"\nshell = \"true\"\n"))
            .collect();
        let values: Vec<String> = (0..60_000).map(|i| format!("\"{i}\"")).collect();
        let text = format!(
            "name = \"t\"\n{stages}[sweep]\n\"s0.env.A\" = [{}]\n",
            values.join(", ")
        );
        let error = match crate::testing::load_recipe("t.toml", &text, &[]) {
            Ok(_) => panic!("20 stages x 60,000 variants planned"),
            Err(load) => load.error.to_string(),
        };
        assert!(
            error.contains("would plan 1200000 stage instances"),
            "{error}"
        );
    }

    #[test]
    fn seed_is_an_axis_of_its_own() {
        let recipe = load("seed = [0, 1, 2]", &[]).unwrap();
        let sweep = &recipe.sweep;
        assert_eq!(sweep.seed_axis(), Some(0));
        let variants = sweep.variants();
        assert_eq!(seeds(sweep), [Some(0), Some(1), Some(2)]);
        assert_eq!(sweep.label(&variants[2]), "seed=2");
        assert!(sweep.non_seed_values(&variants[1]).is_empty());
    }

    #[test]
    fn seed_combines_with_parameters_in_grid_and_zip() {
        let grid = load("\"data.n_train\" = [20, 40]\nseed = [3, 4]", &[]).unwrap();
        let sweep = &grid.sweep;
        let labels: Vec<String> = sweep.variants().iter().map(|v| sweep.label(v)).collect();
        assert_eq!(
            labels,
            [
                "data.n_train=20,seed=3",
                "data.n_train=20,seed=4",
                "data.n_train=40,seed=3",
                "data.n_train=40,seed=4"
            ]
        );
        let variants = sweep.variants();
        assert_eq!(
            sweep.non_seed_values(&variants[1]),
            [&Value::Integer(20)],
            "the seed is not among the values that tell groups apart"
        );
        let zip = load(
            "mode = \"zip\"\n\"data.n_train\" = [20, 20, 40]\nseed = [0, 1, 0]",
            &[],
        )
        .unwrap();
        assert_eq!(seeds(&zip.sweep), [Some(0), Some(1), Some(0)]);
    }

    #[test]
    fn bad_seed_lists_are_errors_at_their_line() {
        for (sweep, expected) in [
            ("seed = [0, 1.5]", "seed `1.5` (item 2) is not an integer"),
            ("seed = [0, \"1\"]", "(item 2) is not an integer"),
            ("seed = [2, -1]", "seed -1 (item 2) is negative"),
            ("seed = [0, 1, 0]", "seed 0 is listed twice (items 1 and 3)"),
            (
                "mode = \"zip\"\n\"data.n_train\" = [20, 40, 20]\nseed = [0, 1, 0]",
                "seed 0 is listed twice with the same values of the other axes (items 1 and 3)",
            ),
            ("seed = []", "at least one seed"),
            ("seed = 3", "must be an array of seeds"),
            ("seeds = [0, 1]", "or be `seed`"),
        ] {
            let err = err(load(sweep, &[]));
            let line = 11 + sweep.matches('\n').count();
            assert!(
                err.starts_with(&format!("t.toml:{line}: ")),
                "{sweep}: {err}"
            );
            assert!(err.contains(expected), "{sweep}: {err}");
        }
    }

    #[test]
    fn set_seed_keeps_working_and_conflicts_with_a_seed_sweep() {
        let plain = load("", &["seed=5"]).unwrap();
        assert_eq!(plain.seed, 5);
        assert!(plain.sweep.axes.is_empty());
        let err = err(load("seed = [0, 1]", &["seed=5"]));
        assert!(err.starts_with("--set:1: "), "{err}");
        assert!(err.contains("the recipe sweeps `seed`"), "{err}");
        let chosen = load("seed = [0, 1]", &["sweep.seed=[4, 5, 6]"]).unwrap();
        assert_eq!(seeds(&chosen.sweep), [Some(4), Some(5), Some(6)]);
        assert_eq!(chosen.seed, 7, "the recipe's own seed is left as written");
    }
}
