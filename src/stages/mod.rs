//! Stage kinds: one file per kind, each implementing [`Stage`]; all of them listed once in
//! [`registry`], and how each runs in [`runners`].

pub mod command;
pub mod dataset;
pub mod ddim;
pub mod download;
pub mod evaluate;
pub mod face_score;
pub mod features;
pub mod fid;
pub mod fid_stats;
pub mod inception_score;
pub mod mnistm;
pub mod report;
pub mod runners;
pub mod sample;
pub mod sample_diffusion;
pub mod synthetic;
pub mod train_adda;
pub mod train_classifier;
pub mod train_dann;
pub mod train_ddpm;
pub mod train_gan;
pub mod tsne;

use crate::stage::{Registered, StageKind, StageRunner};

/// Lists every stage kind once and generates from that list both [`registry`] (what the
/// planner checks, in the `hwrun` binary) and [`runners::all`] (what the worker runs). They are
/// separate functions so that the `hwrun` binary never references the kinds' run code.
macro_rules! stage_kinds {
    ($($kind:ty),+ $(,)?) => {
        /// Every stage kind hwrun knows, in the order `hwrun stages` lists them.
        pub fn registry() -> &'static [&'static dyn StageKind] {
            static KINDS: &[&dyn StageKind] = &[$(&Registered::<$kind>::new()),+];
            KINDS
        }

        /// Every kind's runner, in registry order.
        fn all_runners() -> &'static [&'static dyn StageRunner] {
            static RUNNERS: &[&dyn StageRunner] = &[$(&Registered::<$kind>::new()),+];
            RUNNERS
        }
    };
}

stage_kinds![
    command::CommandStage,
    report::ReportStage,
    download::DownloadStage,
    synthetic::SyntheticStage,
    dataset::DatasetStage,
    mnistm::MnistmStage,
    train_classifier::TrainClassifierStage,
    train_dann::TrainDannStage,
    train_adda::TrainAddaStage,
    train_gan::TrainGanStage,
    sample::SampleStage,
    face_score::FaceScoreStage,
    train_ddpm::TrainDdpmStage,
    sample_diffusion::SampleDiffusionStage,
    ddim::DdimStage,
    evaluate::EvaluateStage,
    features::FeaturesStage,
    tsne::TsneStage,
    fid_stats::FidStatsStage,
    fid::FidStage,
    inception_score::InceptionScoreStage,
];

/// Looks a kind up by its recipe name.
pub fn find(kind: &str) -> Option<&'static dyn StageKind> {
    registry().iter().copied().find(|k| k.kind() == kind)
}
