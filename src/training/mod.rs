//! The learning core shared by the training stages (`train_classifier`, `train_dann`,
//! `train_adda`) and by `evaluate` / `features`: schedules, in-memory batching with per-dataset
//! normalisation, optimizers, the epoch loop with its divergence check and history, the training
//! steps of each method, and the checkpoint format.
//!
//! The stages own the recipe-facing parts (parameters, inputs, output files); everything here is
//! usable from tests and benchmarks without a runner.

pub mod adda;
pub mod batches;
pub mod checkpoint;
pub mod classifier;
pub mod dann;
pub mod epochs;
pub mod evaluation;
pub mod optim;
pub mod schedule;
pub mod setup;
pub mod threads;

pub use batches::{DomainData, IndexStream, InputFormat, Normalisation};
pub use epochs::{run_epochs, History, LoopPlan, StepProgress, StepStats, TrainingError};
pub use optim::{LrSchedule, OptimizerKind, OptimizerSpec};
