//! Which planned stages are cached and, for the others, why they must run — by comparing with
//! the key each stage had at its last run.

use std::collections::BTreeMap;

use petgraph::graph::NodeIndex;
use serde::Serialize;

use super::plan::Plan;
use crate::cache::{Cache, Lookup, Manifest};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Cached,
    Run,
}

/// A node's status and the reasons behind a `Run`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub status: Status,
    pub reasons: Vec<String>,
}

/// The status of every node, indexed by node index.
pub fn assess(plan: &Plan, cache: &Cache) -> Vec<NodeStatus> {
    let mut statuses: Vec<Option<NodeStatus>> = vec![None; plan.graph.node_count()];
    for node in plan.topological() {
        let stage = &plan.graph[node];
        let status = match cache.check(&stage.key) {
            Lookup::Valid(_) => NodeStatus {
                status: Status::Cached,
                reasons: Vec::new(),
            },
            Lookup::Corrupt(problem) => NodeStatus {
                status: Status::Run,
                reasons: vec![format!(
                    "the cached entry is corrupt ({problem}): it will be quarantined and rerun"
                )],
            },
            Lookup::Absent => {
                // Only to explain the difference: the old entry is not used, so not verified.
                let previous = cache
                    .last_ref(&plan.recipe.name, &stage.label)
                    .filter(|key| *key != stage.key)
                    .and_then(|key| Manifest::read(&cache.entry_dir(&key)).ok());
                let mut reasons = match previous {
                    Some(previous) => explain(plan, node, &previous, &statuses),
                    None => Vec::new(),
                };
                if reasons.is_empty() {
                    reasons.push("not in cache".to_owned());
                }
                NodeStatus {
                    status: Status::Run,
                    reasons,
                }
            }
        };
        statuses[node.index()] = Some(status);
    }
    statuses
        .into_iter()
        .map(|s| {
            s.unwrap_or(NodeStatus {
                status: Status::Run,
                reasons: Vec::new(),
            })
        })
        .collect()
}

/// What differs between the planned stage and the entry it had last time.
fn explain(
    plan: &Plan,
    node: NodeIndex,
    previous: &Manifest,
    statuses: &[Option<NodeStatus>],
) -> Vec<String> {
    let stage = &plan.graph[node];
    let name = &plan.decl(node).name;
    let mut reasons = Vec::new();
    if previous.stage_version != stage.kind.version() {
        reasons.push(format!(
            "stage code version changed {} -> {}",
            previous.stage_version,
            stage.kind.version()
        ));
    }
    if previous.seed != stage.seed {
        reasons.push(format!("seed changed {} -> {}", previous.seed, stage.seed));
    }
    let (old, new) = (flatten(&previous.params), flatten(&stage.canonical));
    for (path, new_value) in &new {
        match old.get(path) {
            Some(old_value) if old_value != new_value => reasons.push(format!(
                "parameter `{name}.{path}` changed {old_value} -> {new_value}"
            )),
            None => reasons.push(format!("parameter `{name}.{path}` set to {new_value}")),
            _ => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        reasons.push(format!("parameter `{name}.{path}` removed"));
    }
    let inputs = plan.inputs_of(node);
    for input in &stage.inputs {
        let changed = previous
            .inputs
            .get(&input.name)
            .is_none_or(|old| old.key != input.key.hex());
        if !changed {
            continue;
        }
        let upstream = inputs
            .iter()
            .find(|(n, _)| *n == input.name)
            .map(|(_, n)| *n);
        let rerun = upstream
            .and_then(|n| statuses[n.index()].as_ref())
            .is_some_and(|s| s.status == Status::Run);
        let upstream_name = upstream.map_or(input.name.clone(), |n| plan.graph[n].label.clone());
        reasons.push(if rerun {
            format!("input `{upstream_name}` will rerun")
        } else {
            format!("input `{upstream_name}` changed")
        });
    }
    for (i, external) in stage.external.iter().enumerate() {
        if previous
            .external
            .get(i)
            .is_some_and(|old| old.blake3 != external.blake3)
        {
            reasons.push(format!("file `{}` changed", external.path));
        }
    }
    reasons
}

/// Dotted paths to leaf values, rendered compactly (`0.001`, `"sgd"`, `[1,2]`).
fn flatten(value: &serde_json::Value) -> BTreeMap<String, String> {
    crate::dotted::leaves(value)
        .into_iter()
        .map(|(path, leaf)| (path, leaf.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_gives_dotted_leaves() {
        let flat = flatten(&serde_json::json!({"lr": 0.001, "opt": {"name": "sgd"}}));
        assert_eq!(flat["lr"], "0.001");
        assert_eq!(flat["opt.name"], "\"sgd\"");
    }
}
