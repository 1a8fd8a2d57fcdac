//! The stage graph: planning every stage instance with its cache key ([`plan`]), deciding what
//! must run and why ([`status`]), and drawing it ([`render`]).

pub mod plan;
pub mod render;
pub mod status;

pub use plan::{Plan, PlanError, PlannedStage};
pub use status::{assess, NodeStatus, Status};
