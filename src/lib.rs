//! hwrun: reproduce deep-learning experiments from declarative TOML recipes.
//!
//! A recipe (see [`recipe`]) names stages and how their outputs feed each other. The [`graph`]
//! module turns it into a DAG of stage instances with content-hash keys, the [`cache`] stores
//! every finished stage under its key, and the [`scheduler`] runs what is missing. Stage kinds live
//! in [`stages`], one file each; they build on [`data`] (datasets and their formats),
//! [`download`], [`models`], [`metrics`], [`viz`] and [`report`].

pub mod accel;
pub mod cache;
pub mod cli;
pub mod data;
pub mod diffusion;
pub mod dotted;
pub mod download;
pub mod error;
pub mod graph;
pub mod metrics;
pub mod models;
pub mod network;
pub mod output;
pub mod process;
pub mod pytorch_file;
pub mod recipe;
pub mod report;
pub mod scheduler;
pub mod stage;
pub mod stages;
#[cfg(test)]
pub(crate) mod testing;
pub mod training;
pub mod viz;
pub mod worker;
