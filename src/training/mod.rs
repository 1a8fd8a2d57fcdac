//! The learning core shared by the training stages and by `evaluate` / `features`: the one
//! training loop ([`trainer`]) that every method ([`method::TrainingMethod`]) plugs into,
//! optimizers with their schedules and state, resumable training state, in-memory batching
//! with per-dataset normalisation, the methods themselves (classifier, DANN, ADDA), and the
//! checkpoint format.
//!
//! The stages own the recipe-facing parts (parameters, inputs, output files); everything here is
//! usable from tests and benchmarks without a runner.

pub mod adda;
pub mod batches;
pub mod checkpoint;
pub mod classifier;
pub mod dann;
pub mod ddpm;
pub mod evaluation;
pub mod gan;
pub mod method;
pub mod moving_average;
pub mod optimizer;
pub mod schedule;
pub mod setup;
pub mod state;
pub mod threads;
pub mod trainer;

pub use batches::{AdaptationData, DeviceDataset, IndexStream, InputFormat, Normalisation};
pub use method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
pub use optimizer::{LrSchedule, Optimizer, OptimizerKind, OptimizerSettings};
pub use state::{StateError, TrainingState};
pub use trainer::{train, History, LoopPlan, TrainingError};
