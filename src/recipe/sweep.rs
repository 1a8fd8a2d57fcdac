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

use toml::Value;

use super::analyzer::StageDecl;
use super::document::RecipeDocument;
use super::error::{suggest, RecipeError};

/// The most variants a sweep may have: each is planned, and the plan is held in memory
/// (100,000 variants of a 2-stage recipe plan in seconds, in tens of megabytes).
pub const MAX_VARIANTS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepMode {
    Grid,
    Zip,
}

/// One swept parameter.
#[derive(Debug, Clone)]
pub struct Axis {
    /// `stage.param` as written.
    pub dotted: String,
    /// Index of the stage in [`super::Recipe::stages`].
    pub stage: usize,
    /// Path of the parameter inside the stage table.
    pub param: Vec<String>,
    pub values: Vec<Value>,
}

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
            let Some((stage_name, param)) = key.split_once('.') else {
                return Err(invalid(
                    key,
                    format!("`{key}` must name a stage parameter as `stage.param`"),
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
                stage,
                param,
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
        Ok(Sweep { mode, axes })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sweep(mode: SweepMode, lengths: &[usize]) -> Sweep {
        let axes = lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| Axis {
                dotted: format!("s.p{i}"),
                stage: 0,
                param: vec![format!("p{i}")],
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
}
