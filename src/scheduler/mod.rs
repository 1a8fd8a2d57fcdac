//! Runs a plan: every stage whose inputs are done, up to `--jobs` at once, at most one
//! device-bound stage per device, each committed to the cache the moment it finishes.

pub mod run_stage;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use petgraph::graph::NodeIndex;
use petgraph::Direction;

use crate::cache::{Cache, Manifest};
use crate::graph::{NodeStatus, Plan, Status};
use crate::output::Printer;
use crate::stage::{CancelToken, Cancelled};
use crate::worker::DeviceRequest;
use run_stage::{run_node, NodeEnv, NodeRun};
pub use summary::{RunSummary, StageReport, StageResult};

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub jobs: usize,
    pub keep_going: bool,
    pub device: DeviceRequest,
}

#[derive(Default)]
struct State {
    /// Nodes whose inputs are all done, not yet started.
    ready: Vec<NodeIndex>,
    /// Inputs still unfinished, per node.
    waiting_on: BTreeMap<NodeIndex, usize>,
    manifests: BTreeMap<NodeIndex, Manifest>,
    results: BTreeMap<NodeIndex, StageReport>,
    running: usize,
    device_busy: bool,
    stop: bool,
}

/// Runs every node not yet cached; returns what happened to each.
pub fn execute(
    plan: &Plan,
    statuses: &[NodeStatus],
    cache: &Cache,
    options: &RunOptions,
    printer: &Printer,
    cancel: &CancelToken,
) -> RunSummary {
    // Hold every entry the plan will reuse in one go (each `run_node` would hold it anyway):
    // a sweep of thousands of cached stages costs one write, not thousands.
    let cached: Vec<_> = plan
        .graph
        .node_indices()
        .filter(|n| statuses[n.index()].status == Status::Cached)
        .map(|n| plan.graph[n].key)
        .collect();
    if let Err(error) = cache.hold_all(&cached) {
        printer.warn(&format!("cannot record the entries this run reads (`hwrun gc` may remove them): {error}"));
    }
    let mut state = State::default();
    for node in plan.graph.node_indices() {
        let inputs = plan.graph.neighbors_directed(node, Direction::Incoming).count();
        state.waiting_on.insert(node, inputs);
        if inputs == 0 {
            state.ready.push(node);
        }
    }
    // Start with the first stages in recipe order (the ready list is popped from the back).
    state.ready.sort_by_key(|n| std::cmp::Reverse(n.index()));
    let shared = (Mutex::new(state), Condvar::new());
    let overall = printer.overall_bar(plan.graph.node_count() as u64);
    let workers = options.jobs.max(1).min(plan.graph.node_count().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(plan, statuses, cache, options, printer, cancel, &shared, &overall));
        }
    });
    overall.finish_and_clear();
    let state = shared.0.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut results = state.results;
    let stages = plan
        .topological()
        .into_iter()
        .map(|node| {
            results.remove(&node).unwrap_or_else(|| skipped(plan, node, "the run stopped before it"))
        })
        .collect();
    RunSummary { recipe: plan.recipe.name.clone(), stages, interrupted: cancel.is_cancelled() }
}

#[allow(clippy::too_many_arguments)]
fn worker(
    plan: &Plan,
    statuses: &[NodeStatus],
    cache: &Cache,
    options: &RunOptions,
    printer: &Printer,
    cancel: &CancelToken,
    shared: &(Mutex<State>, Condvar),
    overall: &indicatif::ProgressBar,
) {
    let (lock, wake) = shared;
    loop {
        let (node, manifests) = {
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            let node = loop {
                if state.stop || cancel.is_cancelled() || (state.ready.is_empty() && state.running == 0) {
                    wake.notify_all();
                    return;
                }
                let pick = state.ready.iter().rposition(|&n| {
                    !(plan.graph[n].shape.uses_device && state.device_busy && statuses[n.index()].status == Status::Run)
                });
                if let Some(position) = pick {
                    break state.ready.remove(position);
                }
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            };
            let uses_device = plan.graph[node].shape.uses_device && statuses[node.index()].status == Status::Run;
            state.running += 1;
            state.device_busy |= uses_device;
            let inputs = plan
                .graph
                .neighbors_directed(node, Direction::Incoming)
                .filter_map(|n| Some((n, state.manifests.get(&n)?.clone())))
                .collect::<BTreeMap<_, _>>();
            (node, inputs)
        };
        let stage = &plan.graph[node];
        let started = Instant::now();
        let will_run = statuses[node.index()].status == Status::Run;
        if will_run {
            printer.status(&format!("running {} ({})", stage.label, stage.kind.kind()));
        }
        let bar = if will_run { printer.stage_bar(&stage.label) } else { indicatif::ProgressBar::hidden() };
        let env = NodeEnv { plan, cache, device: options.device, cancel, printer, manifests: &manifests };
        let result = run_node(&env, node, bar.clone(), || {
            printer.status(&format!("waiting for another hwrun process running {}", stage.label))
        });
        bar.finish_and_clear();
        let seconds = started.elapsed().as_secs_f64();
        let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
        state.running -= 1;
        if stage.shape.uses_device && will_run {
            state.device_busy = false;
        }
        let report = match result {
            Ok(NodeRun::AlreadyCached(manifest)) => {
                if will_run {
                    printer.status(&format!("✓ {} (produced by another process)", stage.label));
                }
                finished(plan, cache, node, manifest, StageResult::Cached, 0.0, &mut state)
            }
            Ok(NodeRun::Ran(manifest)) => {
                printer.status(&format!("✓ {} {:.1}s", stage.label, seconds));
                finished(plan, cache, node, manifest, StageResult::Ran, seconds, &mut state)
            }
            Err(error) => {
                let interrupted = error.downcast_ref::<Cancelled>().is_some();
                let message = crate::output::chain_text(&error);
                if interrupted {
                    printer.status(&format!("✗ {} interrupted", stage.label));
                } else {
                    // The error itself is printed once, in the summary.
                    printer.status(&format!("✗ {} failed (the error is in the summary below)", stage.label));
                }
                if !options.keep_going || interrupted {
                    state.stop = true;
                }
                skip_dependents(plan, node, &mut state);
                StageReport {
                    result: StageResult::Failed,
                    seconds,
                    error: Some(if interrupted { "interrupted".to_owned() } else { message }),
                    ..skipped(plan, node, "")
                }
            }
        };
        state.results.insert(node, report);
        overall.inc(1);
        wake.notify_all();
    }
}

/// Records a finished node and releases its dependents.
fn finished(
    plan: &Plan,
    cache: &Cache,
    node: NodeIndex,
    manifest: Manifest,
    result: StageResult,
    seconds: f64,
    state: &mut State,
) -> StageReport {
    let stage = &plan.graph[node];
    let report = StageReport {
        name: stage.label.clone(),
        kind: stage.kind.kind().to_owned(),
        key: stage.key.hex(),
        result,
        seconds,
        output: Some(cache.output_dir(&stage.key)),
        results: None,
        outcome: manifest.outcome.clone(),
        error: None,
    };
    state.manifests.insert(node, manifest);
    for next in plan.graph.neighbors_directed(node, Direction::Outgoing) {
        if let Some(waiting) = state.waiting_on.get_mut(&next) {
            *waiting -= 1;
            if *waiting == 0 && !state.results.contains_key(&next) {
                state.ready.push(next);
            }
        }
    }
    report
}

/// Marks everything downstream of a failed node as skipped.
fn skip_dependents(plan: &Plan, failed: NodeIndex, state: &mut State) {
    let mut stack: Vec<NodeIndex> = plan.graph.neighbors_directed(failed, Direction::Outgoing).collect();
    while let Some(node) = stack.pop() {
        if state.results.contains_key(&node) {
            continue;
        }
        let reason = format!("input `{}` failed", plan.graph[failed].label);
        state.results.insert(node, skipped(plan, node, &reason));
        stack.extend(plan.graph.neighbors_directed(node, Direction::Outgoing));
    }
}

fn skipped(plan: &Plan, node: NodeIndex, reason: &str) -> StageReport {
    let stage = &plan.graph[node];
    StageReport {
        name: stage.label.clone(),
        kind: stage.kind.kind().to_owned(),
        key: stage.key.hex(),
        result: StageResult::Skipped,
        seconds: 0.0,
        output: None,
        results: None,
        outcome: Default::default(),
        error: (!reason.is_empty()).then(|| reason.to_owned()),
    }
}
