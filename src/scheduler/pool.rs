//! The local scheduler: worker threads take ready stages (inputs done) and run them through a
//! [`Compute`], up to `--jobs` at once and one device-bound stage per device.

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use petgraph::graph::NodeIndex;
use petgraph::Direction;

use super::executor::Compute;
use super::job::StageJob;
use super::run_stage::{run_job, NodeRun, RunSettings};
use super::summary::{RunSummary, StageReport, StageResult};
use super::RunEnv;
use crate::graph::Status;
use crate::stage::Cancelled;

#[derive(Default)]
struct State {
    /// Nodes whose inputs are all done, not yet started.
    ready: Vec<NodeIndex>,
    /// Inputs still unfinished, per node.
    waiting_on: BTreeMap<NodeIndex, usize>,
    results: BTreeMap<NodeIndex, StageReport>,
    running: usize,
    device_busy: bool,
    stop: bool,
}

/// Runs every node not yet cached; returns what happened to each.
pub fn execute(compute: &dyn Compute, run: &RunEnv<'_>) -> RunSummary {
    let plan = run.plan;
    // Hold every entry the plan will reuse in one go (each `run_job` would hold it anyway):
    // a sweep of thousands of cached stages costs one write, not thousands.
    let cached: Vec<_> = plan
        .graph
        .node_indices()
        .filter(|n| run.statuses[n.index()].status == Status::Cached)
        .map(|n| plan.graph[n].key)
        .collect();
    if let Err(error) = run.cache.hold_all(&cached) {
        run.printer.warn(&format!(
            "cannot record the entries this run reads (`hwrun gc` may remove them): {error}"
        ));
    }
    let mut state = State::default();
    for node in plan.graph.node_indices() {
        let inputs = plan
            .graph
            .neighbors_directed(node, Direction::Incoming)
            .count();
        state.waiting_on.insert(node, inputs);
        if inputs == 0 {
            state.ready.push(node);
        }
    }
    // Start with the first stages in recipe order (the ready list is popped from the back).
    state.ready.sort_by_key(|n| std::cmp::Reverse(n.index()));
    let shared = (Mutex::new(state), Condvar::new());
    let overall = run.printer.overall_bar(plan.graph.node_count() as u64);
    let workers = run.options.jobs.max(1).min(plan.graph.node_count().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| worker(compute, run, &shared, &overall));
        }
    });
    overall.finish_and_clear();
    let state = shared.0.into_inner().unwrap_or_else(|e| e.into_inner());
    let mut results = state.results;
    let stages = plan
        .topological()
        .into_iter()
        .map(|node| {
            results.remove(&node).unwrap_or_else(|| {
                StageReport::skipped(&plan.graph[node], "the run stopped before it")
            })
        })
        .collect();
    RunSummary {
        recipe: plan.recipe.name.clone(),
        stages,
        interrupted: run.cancel.is_cancelled(),
    }
}

fn worker(
    compute: &dyn Compute,
    run: &RunEnv<'_>,
    shared: &(Mutex<State>, Condvar),
    overall: &indicatif::ProgressBar,
) {
    let RunEnv {
        plan,
        statuses,
        cache,
        options,
        printer,
        cancel,
    } = *run;
    let (lock, wake) = shared;
    loop {
        let node = {
            let mut state = lock.lock().unwrap_or_else(|e| e.into_inner());
            let node = loop {
                if state.stop
                    || cancel.is_cancelled()
                    || (state.ready.is_empty() && state.running == 0)
                {
                    wake.notify_all();
                    return;
                }
                let pick = state.ready.iter().rposition(|&n| {
                    !(plan.graph[n].shape.uses_device
                        && state.device_busy
                        && statuses[n.index()].status == Status::Run)
                });
                if let Some(position) = pick {
                    break state.ready.remove(position);
                }
                state = wake.wait(state).unwrap_or_else(|e| e.into_inner());
            };
            let uses_device =
                plan.graph[node].shape.uses_device && statuses[node.index()].status == Status::Run;
            state.running += 1;
            state.device_busy |= uses_device;
            node
        };
        let stage = &plan.graph[node];
        let started = Instant::now();
        let will_run = statuses[node.index()].status == Status::Run;
        if will_run {
            printer.status(&format!("running {} ({})", stage.label, stage.kind.kind()));
        }
        let bar = if will_run {
            printer.stage_bar(&stage.label)
        } else {
            indicatif::ProgressBar::hidden()
        };
        let settings = RunSettings {
            device: options.device,
            cancel,
            printer,
        };
        // A cached stage needs no job description (a cached sweep of thousands of stages stays fast).
        let result = match cache.lookup(&stage.key) {
            Some(manifest) => Ok(NodeRun::AlreadyCached(manifest)),
            None => StageJob::of(plan, node).and_then(|job| {
                run_job(cache, &job, compute, &settings, bar.clone(), || {
                    printer.status(&format!(
                        "waiting for another hwrun process running {}",
                        stage.label
                    ))
                })
            }),
        };
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
                release_dependents(run, node, &mut state);
                StageReport::finished(stage, cache, &manifest, StageResult::Cached, 0.0)
            }
            Ok(NodeRun::Ran(manifest)) => {
                printer.status(&format!("✓ {} {:.1}s", stage.label, seconds));
                release_dependents(run, node, &mut state);
                StageReport::finished(stage, cache, &manifest, StageResult::Ran, seconds)
            }
            Err(error) => {
                let interrupted = error.downcast_ref::<Cancelled>().is_some();
                let message = crate::output::chain_text(&error);
                if interrupted {
                    printer.status(&format!("✗ {} interrupted", stage.label));
                } else {
                    // The error itself is printed once, in the summary.
                    printer.status(&format!(
                        "✗ {} failed (the error is in the summary below)",
                        stage.label
                    ));
                }
                if !options.keep_going || interrupted {
                    state.stop = true;
                }
                skip_dependents(run, node, &mut state);
                StageReport::failed(
                    stage,
                    seconds,
                    if interrupted {
                        "interrupted".to_owned()
                    } else {
                        message
                    },
                )
            }
        };
        state.results.insert(node, report);
        overall.inc(1);
        wake.notify_all();
    }
}

/// Marks a node's dependents ready whose inputs are now all done.
fn release_dependents(run: &RunEnv<'_>, node: NodeIndex, state: &mut State) {
    for next in run.plan.graph.neighbors_directed(node, Direction::Outgoing) {
        if let Some(waiting) = state.waiting_on.get_mut(&next) {
            *waiting -= 1;
            if *waiting == 0 && !state.results.contains_key(&next) {
                state.ready.push(next);
            }
        }
    }
}

/// Marks everything downstream of a failed node as skipped.
fn skip_dependents(run: &RunEnv<'_>, failed: NodeIndex, state: &mut State) {
    let graph = &run.plan.graph;
    let reason = format!("input `{}` failed", graph[failed].label);
    let mut stack: Vec<NodeIndex> = graph
        .neighbors_directed(failed, Direction::Outgoing)
        .collect();
    while let Some(node) = stack.pop() {
        if state.results.contains_key(&node) {
            continue;
        }
        state
            .results
            .insert(node, StageReport::skipped(&graph[node], &reason));
        stack.extend(graph.neighbors_directed(node, Direction::Outgoing));
    }
}
