//! Datasets: the in-memory/on-disk artifact, readers for the real formats, and generated digits.

pub mod artifact;
pub mod dataset;
pub mod features;
pub mod formats;
pub mod mnistm;
pub mod synthetic;
pub mod transforms;

pub use dataset::Dataset;
pub use features::FeatureSet;
