//! One planned stage instance as an executor receives it: everything needed to run it and to
//! commit it to the cache, without the plan. The local executors build it in memory; the Slurm
//! executor writes it into a job file that `hwrun run-job` reads on a compute node.

use std::collections::BTreeMap;

use anyhow::Context;
use camino::Utf8PathBuf;
use petgraph::graph::NodeIndex;
use serde::{Deserialize, Serialize};

use crate::cache::manifest::{ExternalRecord, InputRecord};
use crate::cache::{Cache, CacheKey};
use crate::graph::Plan;
use crate::stage::InputArtifact;

/// One stage instance, ready to run once its inputs are in the cache.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StageJob {
    /// The cache key, hex.
    pub key: String,
    pub kind: String,
    pub stage_version: u32,
    /// `stage` or `stage[lr=0.001]`.
    pub label: String,
    pub recipe: String,
    /// The stage's parameter table as TOML text (as the stage reads it).
    pub params: String,
    /// The canonical parameters (as hashed, recorded in the manifest).
    pub canonical: serde_json::Value,
    pub seed: u64,
    pub inputs: Vec<JobInput>,
    pub external: Vec<ExternalRecord>,
    /// Named outputs the stage must create.
    pub outputs: Vec<String>,
    /// Whether the stage computes on a device (GPU when there is one).
    pub uses_device: bool,
}

/// An input of a [`StageJob`]: the producing entry and which of its outputs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobInput {
    pub name: String,
    /// The producer's cache key, hex.
    pub key: String,
    pub output: Option<String>,
    /// The producer's label, kind and canonical parameters.
    pub stage: String,
    pub kind: String,
    pub params: serde_json::Value,
}

impl StageJob {
    /// The job of `node`.
    pub fn of(plan: &Plan, node: NodeIndex) -> anyhow::Result<StageJob> {
        let stage = &plan.graph[node];
        let inputs = plan
            .inputs_of(node)
            .into_iter()
            .map(|(name, upstream)| {
                let producer = &plan.graph[upstream];
                let output = stage
                    .inputs
                    .iter()
                    .find(|i| i.name == name)
                    .and_then(|i| i.output.clone());
                JobInput {
                    name,
                    key: producer.key.hex(),
                    output,
                    stage: producer.label.clone(),
                    kind: producer.kind.kind().to_owned(),
                    params: producer.canonical.clone(),
                }
            })
            .collect();
        Ok(StageJob {
            key: stage.key.hex(),
            kind: stage.kind.kind().to_owned(),
            stage_version: stage.kind.version(),
            label: stage.label.clone(),
            recipe: plan.recipe.name.clone(),
            params: toml::to_string(&stage.params)
                .with_context(|| format!("cannot serialise the parameters of `{}`", stage.label))?,
            canonical: stage.canonical.clone(),
            seed: stage.seed,
            inputs,
            external: stage.external.clone(),
            outputs: stage.shape.outputs.clone(),
            uses_device: stage.shape.uses_device,
        })
    }

    pub fn cache_key(&self) -> anyhow::Result<CacheKey> {
        CacheKey::from_hex(&self.key)
            .with_context(|| format!("job of `{}` has a malformed key `{}`", self.label, self.key))
    }

    /// The parameter table.
    pub fn param_table(&self) -> anyhow::Result<toml::Table> {
        toml::from_str(&self.params)
            .with_context(|| format!("malformed parameters of `{}` in its job", self.label))
    }

    /// The inputs as manifests in `cache` describe them; each must be committed already.
    pub fn resolve_inputs(&self, cache: &Cache) -> anyhow::Result<BTreeMap<String, InputArtifact>> {
        self.inputs
            .iter()
            .map(|input| {
                let key = CacheKey::from_hex(&input.key).with_context(|| {
                    format!(
                        "input `{}` of `{}` has a malformed key",
                        input.name, self.label
                    )
                })?;
                let manifest = cache.lookup(&key).with_context(|| {
                    format!(
                        "input `{}` of `{}` (stage `{}`, key {}) is not in the cache at `{}`",
                        input.name,
                        self.label,
                        input.stage,
                        &input.key[..12.min(input.key.len())],
                        cache.root()
                    )
                })?;
                let base = cache.output_dir(&key);
                let dir: Utf8PathBuf = match &input.output {
                    Some(output) => base.join(output),
                    None => base,
                };
                let artifact = InputArtifact {
                    dir,
                    stage: input.stage.clone(),
                    kind: input.kind.clone(),
                    params: input.params.clone(),
                    outcome: manifest.outcome,
                };
                Ok((input.name.clone(), artifact))
            })
            .collect()
    }

    /// The inputs as the manifest records them.
    pub fn input_records(&self) -> BTreeMap<String, InputRecord> {
        self.inputs
            .iter()
            .map(|i| {
                (
                    i.name.clone(),
                    InputRecord {
                        key: i.key.clone(),
                        output: i.output.clone(),
                    },
                )
            })
            .collect()
    }
}
