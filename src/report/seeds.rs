//! A report over the seeds of a `[sweep] seed`: each table cell is the mean ± standard deviation
//! of one metric over the seeds, with the per-seed values in a table of their own.
//!
//! The planner gives a `report` stage of such a sweep every seed's inputs, named
//! `input[seed=N]` ([`crate::stage::seed_input_name`]), and plans it once per group of
//! variants that differ only in seed: one report for `seed = [0, 1, 2]`, one per learning rate
//! for `"train.lr" = [..]` beside it. A report per seed is not made as well: the aggregated
//! report holds everything those would (the per-seed values of every cell, every seed's figures,
//! curves and metrics, sectioned `input[seed=N]`), and the seed-to-seed spread that a single seed's
//! report hides is the point of sweeping seeds. A cell naming `src` aggregates the metric of
//! `src[seed=0]`, `src[seed=1]`, ...; the standard deviation is the sample one (divided by
//! n - 1), which the table's note says along with the number of seeds.

use std::collections::{BTreeMap, BTreeSet};

use super::format_metric;
use crate::stage::{split_seed_input_name, Metrics};

/// Mean and sample standard deviation of a metric over seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub mean: f64,
    /// Divided by `n - 1`; `None` for a single value.
    pub std: Option<f64>,
}

impl Spread {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let n = values.len();
        if n == 0 {
            return None;
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = (n > 1).then(|| {
            let squares: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
            (squares / (n - 1) as f64).sqrt()
        });
        Some(Spread { n, mean, std })
    }

    /// `0.7412 ± 0.0123`; `0.7412 (1 seed)` when there is nothing to spread over.
    pub fn text(&self) -> String {
        match self.std {
            Some(std) => format!("{} ± {}", format_metric(self.mean), format_metric(std)),
            None => format!("{} (1 seed)", format_metric(self.mean)),
        }
    }
}

/// The metrics of each seed of `input` (`input[seed=N]` among `metrics_of`), by seed.
pub fn replicas<'a>(
    input: &str,
    metrics_of: &'a BTreeMap<String, Metrics>,
) -> BTreeMap<u64, &'a Metrics> {
    metrics_of
        .iter()
        .filter_map(|(name, metrics)| {
            let (base, seed) = split_seed_input_name(name)?;
            (base == input).then_some((seed, metrics))
        })
        .collect()
}

/// Every seed any of `inputs` has a replica for, in increasing order.
pub fn seeds_of<'a>(
    inputs: impl IntoIterator<Item = &'a str>,
    metrics_of: &BTreeMap<String, Metrics>,
) -> Vec<u64> {
    let mut seeds = BTreeSet::new();
    for input in inputs {
        seeds.extend(replicas(input, metrics_of).into_keys());
    }
    seeds.into_iter().collect()
}

/// The note under an aggregated table.
pub fn note(seeds: &[u64]) -> String {
    let list: Vec<String> = seeds.iter().map(u64::to_string).collect();
    format!(
        "Each cell: mean ± sample standard deviation (divided by n − 1) over {} seeds ({}); the per-seed values follow.",
        seeds.len(),
        list.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_standard_deviation() {
        let spread = Spread::of(&[0.5, 0.7, 0.9]).unwrap();
        assert_eq!(spread.n, 3);
        assert!((spread.mean - 0.7).abs() < 1e-12);
        // Deviations -0.2, 0, 0.2: squares 0.08 over n - 1 = 2.
        assert!((spread.std.unwrap() - 0.2).abs() < 1e-12);
        assert_eq!(spread.text(), "0.7000 ± 0.2000");
        assert_eq!(Spread::of(&[0.25]).unwrap().text(), "0.2500 (1 seed)");
        assert_eq!(Spread::of(&[]), None);
    }

    #[test]
    fn replicas_are_found_by_input_name() {
        let metrics = |v: f64| Metrics::from([("accuracy".to_owned(), v)]);
        let metrics_of = BTreeMap::from([
            ("src[seed=10]".to_owned(), metrics(0.1)),
            ("src[seed=2]".to_owned(), metrics(0.2)),
            ("src_other[seed=3]".to_owned(), metrics(0.3)),
            ("src".to_owned(), metrics(0.4)),
        ]);
        let found: Vec<(u64, f64)> = replicas("src", &metrics_of)
            .into_iter()
            .map(|(seed, m)| (seed, m["accuracy"]))
            .collect();
        assert_eq!(found, [(2, 0.2), (10, 0.1)]);
        assert_eq!(seeds_of(["src", "src_other"], &metrics_of), [2, 3, 10]);
    }
}
