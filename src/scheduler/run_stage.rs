//! Runs one stage instance: lock its key, stage its outputs in a temporary directory, commit on
//! success. Panics inside a stage (libtorch reports some errors that way) become failures.

use std::collections::BTreeMap;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use indicatif::ProgressBar;
use petgraph::graph::NodeIndex;

use crate::cache::manifest::InputRecord;
use crate::cache::file_hash::HashError;
use crate::cache::{Cache, CacheError, Lookup, Manifest};
use crate::graph::Plan;
use crate::output::Printer;
use crate::cache::Staging;
use crate::stage::{CancelToken, Cancelled, InputArtifact, StageContext, StageOutcome};
use crate::stages::{runners};
use crate::worker::{run_in_worker, DeviceRequest, StageRequest};

/// What running a node gave.
pub enum NodeRun {
    /// Another process (or an earlier step of this one) had already produced it.
    AlreadyCached(Manifest),
    Ran(Manifest),
}

/// Everything a node needs from the rest of the run.
pub struct NodeEnv<'a> {
    pub plan: &'a Plan,
    pub cache: &'a Cache,
    pub device: DeviceRequest,
    pub cancel: &'a CancelToken,
    pub printer: &'a Printer,
    /// Manifests of finished nodes, by node index (inputs are always there).
    pub manifests: &'a BTreeMap<NodeIndex, Manifest>,
}

pub fn run_node(env: &NodeEnv<'_>, node: NodeIndex, bar: ProgressBar, on_wait: impl FnOnce()) -> anyhow::Result<NodeRun> {
    let stage = &env.plan.graph[node];
    // Hold before checking, so `gc` either sees the hold or has moved the entry away already;
    // the hold lasts until this process exits, so the stages reading it find it too.
    env.cache.hold(&stage.key)?;
    if let Lookup::Valid(manifest) = env.cache.check(&stage.key) {
        return Ok(NodeRun::AlreadyCached(manifest));
    }
    let lock = env.cache.lock_waiting(&stage.key, on_wait)?;
    match env.cache.check(&stage.key) {
        Lookup::Valid(manifest) => return Ok(NodeRun::AlreadyCached(manifest)),
        Lookup::Corrupt(problem) => {
            let moved = env.cache.quarantine(&stage.key, &lock)?;
            env.printer.warn(&format!(
                "the cached result of `{}` is corrupt: {problem}; moved it to `{moved}`, running the stage again",
                stage.label
            ));
        }
        Lookup::Absent => {}
    }
    let staging = env.cache.stage(stage.key, lock)?;
    let started = Instant::now();
    let (outcome, device) = match run_staged(env, node, &staging, bar) {
        Ok(result) => result,
        Err(error) if error.downcast_ref::<Cancelled>().is_some() => return Err(error),
        Err(error) => {
            return Err(match env.cache.keep_failed_log(&staging, &stage.label) {
                Some(log) => anyhow::anyhow!("{}\n(stage log: {log})", crate::output::chain_text(&error)),
                None => error,
            })
        }
    };
    let manifest = Manifest {
        format: Manifest::format_version(),
        key: stage.key.hex(),
        kind: stage.kind.kind().to_owned(),
        stage_version: stage.kind.version(),
        stage: stage.label.clone(),
        recipe: env.plan.recipe.name.clone(),
        params: stage.canonical.clone(),
        seed: env.plan.recipe.seed,
        inputs: stage
            .inputs
            .iter()
            .map(|i| (i.name.clone(), InputRecord { key: i.key.hex(), output: i.output.clone() }))
            .collect(),
        external: stage.external.clone(),
        outcome,
        files: Vec::new(),
        wall_time_s: started.elapsed().as_secs_f64(),
        device,
        hwrun_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    match env.cache.commit(staging, manifest) {
        Ok(manifest) => Ok(NodeRun::Ran(manifest)),
        Err(CacheError::Hash(HashError::Interrupted { .. })) => Err(Cancelled.into()),
        Err(error) => Err(error.into()),
    }
}

/// Runs the stage into its staging directory, here or in the worker; checks its outputs.
fn run_staged(
    env: &NodeEnv<'_>,
    node: NodeIndex,
    staging: &Staging,
    bar: ProgressBar,
) -> anyhow::Result<(StageOutcome, String)> {
    let stage = &env.plan.graph[node];
    let inputs = input_artifacts(env, node)?;
    let log_path = staging.log_path();
    let log_file = std::fs::File::create(&log_path).with_context(|| format!("cannot create `{log_path}`"))?;
    let out_dir = staging.out_dir();
    let (outcome, device) = match runners::find_in_process(stage.kind.kind()) {
        Some(runner) => {
            let mut ctx = StageContext::new(
                stage.label.clone(),
                out_dir.clone(),
                inputs,
                env.plan.recipe.seed,
                tch::Device::Cpu,
                bar,
                env.cancel.clone(),
                Some(log_file),
            )
            .with_checkpoint_dir(Some(env.cache.checkpoint_dir(&stage.key)));
            (runners::run_catching(runner, &stage.params, &mut ctx)?, "cpu".to_owned())
        }
        None => {
            let request = StageRequest {
                kind: stage.kind.kind().to_owned(),
                params: toml::to_string(&stage.params)?,
                name: stage.label.clone(),
                out_dir: out_dir.clone(),
                log_file: log_path,
                inputs,
                seed: env.plan.recipe.seed,
                device: env.device,
                checkpoint_dir: Some(env.cache.checkpoint_dir(&stage.key)),
            };
            drop(log_file);
            run_in_worker(&request, &bar, env.cancel, env.printer)?
        }
    };
    for output in &stage.shape.outputs {
        anyhow::ensure!(
            out_dir.join(output).is_dir(),
            "stage kind `{}` declared output `{output}` but did not write it (hwrun bug)",
            stage.kind.kind()
        );
    }
    Ok((outcome, device))
}

fn input_artifacts(env: &NodeEnv<'_>, node: NodeIndex) -> anyhow::Result<BTreeMap<String, InputArtifact>> {
    let stage = &env.plan.graph[node];
    env.plan
        .inputs_of(node)
        .into_iter()
        .map(|(name, upstream)| {
            let producer = &env.plan.graph[upstream];
            let manifest = env
                .manifests
                .get(&upstream)
                .with_context(|| format!("input `{name}` of `{}` has not finished (hwrun bug)", stage.label))?;
            let output = stage.inputs.iter().find(|i| i.name == name).and_then(|i| i.output.clone());
            let base = env.cache.output_dir(&producer.key);
            let dir = match output {
                Some(output) => base.join(output),
                None => base,
            };
            let artifact = InputArtifact {
                dir,
                stage: producer.label.clone(),
                kind: producer.kind.kind().to_owned(),
                params: producer.canonical.clone(),
                outcome: manifest.outcome.clone(),
            };
            Ok((name, artifact))
        })
        .collect()
}
