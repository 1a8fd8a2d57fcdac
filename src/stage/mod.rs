//! The contract between the runner and a stage kind: the [`Stage`] trait, what a running stage
//! sees ([`StageContext`]), the artifacts it consumes ([`InputArtifact`]) and what it produces
//! ([`StageOutcome`], [`Metrics`]).
//!
//! It sits below everything that computes (`training`, `metrics`, `report`) so that those can
//! report progress and honour Ctrl-C without knowing any stage kind; the kinds themselves live in
//! [`crate::stages`].

pub mod context;
pub mod kind;
pub mod param_docs;
pub mod seed_inputs;

pub use context::{CancelToken, Cancelled, InputArtifact, LogSink, StageContext};
pub use kind::{
    checked_params, fill_missing, CheckedParams, FigureRef, InputSpec, Inputs, Metrics, ParamDoc,
    ParamError, Registered, Stage, StageKind, StageOutcome, StageRunner, StageShape,
};
pub use seed_inputs::{seed_input_name, split_seed_input_name};
