//! Metrics computed from models and features (accuracy, t-SNE, trustworthiness, k-NN accuracy, ...).

pub mod distance;
pub mod face_score;
pub mod fid;
pub mod inception_features;
pub mod inception_score;
pub mod knn;
pub mod trustworthiness;
pub mod tsne;

pub use knn::{knn_accuracy, KnnError};
pub use trustworthiness::{trustworthiness, TrustworthinessError};
pub use tsne::{tsne, Embedding, Init, TsneConfig, TsneError, TsneProgress};
