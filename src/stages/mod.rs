//! Stage kinds: one file per kind, each implementing [`Stage`]; all of them listed once in
//! [`registry`], and how each runs in [`runners`].

pub mod command;
pub mod context;
pub mod dataset;
pub mod download;
pub mod evaluate;
pub mod features;
pub mod mnistm;
pub mod report;
pub mod runners;
pub mod stage;
pub mod synthetic;
pub mod train_adda;
pub mod train_classifier;
pub mod train_dann;
pub mod tsne;

pub use context::{CancelToken, Cancelled, InputArtifact, StageContext};
pub use stage::{
    CheckedParams, Metrics, ParamError, Registered, Stage, StageKind, StageOutcome, StageRunner, StageShape,
};

/// Every stage kind hwrun knows, in the order `hwrun stages` lists them.
pub fn registry() -> &'static [&'static dyn StageKind] {
    static KINDS: &[&dyn StageKind] = &[
        &Registered::<command::CommandStage>::new(),
        &Registered::<report::ReportStage>::new(),
        &Registered::<download::DownloadStage>::new(),
        &Registered::<synthetic::SyntheticStage>::new(),
        &Registered::<dataset::DatasetStage>::new(),
        &Registered::<mnistm::MnistmStage>::new(),
        &Registered::<train_classifier::TrainClassifierStage>::new(),
        &Registered::<train_dann::TrainDannStage>::new(),
        &Registered::<train_adda::TrainAddaStage>::new(),
        &Registered::<evaluate::EvaluateStage>::new(),
        &Registered::<features::FeaturesStage>::new(),
        &Registered::<tsne::TsneStage>::new(),
    ];
    KINDS
}

/// Looks a kind up by its recipe name.
pub fn find(kind: &str) -> Option<&'static dyn StageKind> {
    registry().iter().copied().find(|k| k.kind() == kind)
}
