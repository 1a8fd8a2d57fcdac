//! One DANN training step (Ganin et al. 2016): a source batch and an equally sized target batch
//! go through the feature extractor; the label head sees the source features, the domain head
//! both domains' features through the gradient reversal layer.
//!
//! How the two batches go through the network matters for batch norm ([`DannForward`]). With
//! one pass per domain (`per_domain`, as the popular PyTorch port does), every batch-norm batch
//! holds one domain: each domain's activations are standardised by their own statistics at every
//! batch-norm layer, which removes the first- and second-order shift between the domains before
//! the domain classifier (itself normalised per domain) ever sees it. With one joint pass
//! (`joint`), batch norm standardises the mixture and the domain shift stays in the features for
//! the reversed gradient alone to remove. On real digits (MNIST -> MNIST-M, MNIST-M -> USPS; see
//! fidelity/results.md) the per-domain pass adapts far better; evaluation then uses the
//! running statistics, which average both domains' batch statistics ([`BnStats`] can replace
//! them with the target's).
//!
//! loss = CE(class, source) + CE(domain, source = 0) + CE(domain, target = 1), with the GRL weight
//! `lambda_p` and the learning rate following the paper's schedules in the progress `p`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::{nn, Kind, Tensor};

use super::batches::{AdaptationData, DeviceDataset, Normalisation};
use super::classifier::constant_labels;
use super::method::{EpochEnd, Scalars, StepProgress, TrainingMethod};
use super::moving_average::MovingAverage;
use super::optimizer::{Optimizer, OptimizerSettings};
use super::schedule::dann_lambda;
use super::setup::val_accuracy;
use super::state::{restore_store, StateError, TrainingState};
use super::trainer::named_scalars;
use crate::models::blocks::norm::DEFAULT_MOMENTUM;
use crate::models::domain_classifier::{SOURCE_DOMAIN, TARGET_DOMAIN};
use crate::models::summary::ModuleTree;
use crate::models::{reverse_gradient, DigitCnn, DigitCnnConfig, DomainClassifier, ModelError};

/// How a step's source and target batches go through the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DannForward {
    /// One forward pass per domain: every batch-norm batch holds one domain (the PyTorch port).
    PerDomain,
    /// One forward pass of both batches concatenated: batch norm normalises the mixture.
    Joint,
}

/// Which batch-norm statistics the trained model keeps for evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BnStats {
    /// The running averages of the training batches' statistics (PyTorch's behaviour).
    Running,
    /// Re-estimated after training as the plain average of the batch statistics over one pass of
    /// the target training set (forward passes in training mode, no gradients; PyTorch's
    /// `momentum=None`), so the target is evaluated with its own statistics, as per-domain
    /// training normalised it (AdaBN, Li et al. 2016). The source's statistics, estimated the
    /// same way, are saved beside them (under `source_bn.`), so that `features` can run each
    /// domain through its own.
    Target,
}

/// One of the two domains of an adaptation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    Source,
    Target,
}

/// Whether a variable of a store is a batch-norm running statistic.
pub fn is_batch_norm_statistic(name: &str) -> bool {
    name.ends_with(".running_mean") || name.ends_with(".running_var")
}

/// Which statistics normalise each domain's input images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputNorm {
    /// Each training set by its own per-channel mean and std.
    PerDomain,
    /// Both domains by the source training set's mean and std.
    Source,
    /// Every channel of both domains as `(x - 0.5) / 0.5`, the PyTorch port's choice for its
    /// colour domains.
    Half,
}

impl InputNorm {
    /// The statistics of the source and of the target (still named after their domains) from
    /// each training set's own.
    pub fn apply(
        self,
        source: Normalisation,
        target: Normalisation,
    ) -> (Normalisation, Normalisation) {
        let renamed = |stats: &Normalisation, domain: &str| Normalisation {
            domain: domain.to_owned(),
            ..stats.clone()
        };
        let half = |stats: &Normalisation| Normalisation {
            domain: stats.domain.clone(),
            mean: vec![0.5; stats.mean.len()],
            std: vec![0.5; stats.std.len()],
        };
        match self {
            InputNorm::PerDomain => (source, target),
            InputNorm::Source if source.mean.len() == target.mean.len() => {
                let target = renamed(&source, &target.domain);
                (source, target)
            }
            // A greyscale target of a colour source (or the reverse) keeps its own statistics:
            // the channels do not correspond.
            InputNorm::Source => (source, target),
            InputNorm::Half => (half(&source), half(&target)),
        }
    }
}

/// Feature extractor, label predictor and domain classifier (`feature`, `classifier`, `domain`).
pub struct DannModel {
    pub cnn: DigitCnn,
    pub domain: DomainClassifier,
}

impl DannModel {
    pub fn new(root: &nn::Path, config: DigitCnnConfig) -> Result<Self, ModelError> {
        let cnn = DigitCnn::new(root, config)?;
        let domain = DomainClassifier::dann(&(root / "domain"), config.arch, cnn.feature_dim())?;
        Ok(DannModel { cnn, domain })
    }

    /// The model as PyTorch would print it.
    pub fn tree(&self) -> ModuleTree {
        let mut parts = self.cnn.tree_parts();
        parts.push(("domain".into(), self.domain.tree()));
        ModuleTree::node("DANN", parts)
    }
}

/// The model, its optimizer, the two data streams and the GRL schedule.
pub struct DannTraining {
    pub vs: nn::VarStore,
    pub model: DannModel,
    optimizer: Optimizer,
    data: AdaptationData,
    val: Option<DeviceDataset>,
    /// Steepness of the GRL weight schedule [`dann_lambda`].
    lambda_gamma: f64,
    passes: DannPasses,
    /// A moving average of the weights, which [`DannTraining::adopt_average`] makes the model's.
    average: Option<MovingAverage>,
}

impl DannTraining {
    /// Trains every variable of `vs` (which holds `model`).
    pub fn new(
        vs: nn::VarStore,
        model: DannModel,
        settings: OptimizerSettings,
        (lambda_gamma, passes): (f64, DannPasses),
        data: AdaptationData,
        val: Option<DeviceDataset>,
    ) -> Self {
        let optimizer = Optimizer::new(settings, &[&vs]);
        DannTraining {
            vs,
            model,
            optimizer,
            data,
            val,
            lambda_gamma,
            passes,
            average: None,
        }
    }

    /// Also keeps a moving average of the weights with `decay` (`config` is the model's).
    pub fn with_moving_average(
        mut self,
        decay: f64,
        config: DigitCnnConfig,
    ) -> Result<Self, ModelError> {
        let store = nn::VarStore::new(self.vs.device());
        DannModel::new(&store.root(), config)?;
        self.average = Some(MovingAverage::new(store, &self.vs, decay));
        Ok(self)
    }

    /// Replaces the model's weights with their moving average, when one is kept. Its batch-norm
    /// statistics are still those of the last training batches; [`Self::estimate_statistics`]
    /// recomputes them for the averaged weights.
    pub fn adopt_average(&mut self) -> Result<(), tch::TchError> {
        match &self.average {
            Some(average) => self.vs.copy(&average.store),
            None => Ok(()),
        }
    }

    /// Replaces every batch-norm running statistic with `domain`'s (see [`BnStats::Target`]):
    /// the average of the batch statistics of one pass of that domain's training batches. An
    /// exponential average (momentum 0.1) would weigh the last few batches most, and its
    /// accuracy would move with which images they hold. The domain's stream continues where
    /// training left it, and the other domain's stream is not drawn from.
    pub fn estimate_statistics(&mut self, domain: Domain) {
        // Each forward pass in training mode moves a running statistic r to
        // (1 - m) r + m b; b, the batch's statistic, is recovered from r before and after.
        let momentum = DEFAULT_MOMENTUM;
        let statistics: Vec<Tensor> = self
            .batch_norm_statistics()
            .into_iter()
            .map(|(_, statistic)| statistic)
            .collect();
        let (data, order) = match domain {
            Domain::Source => (&self.data.source, &mut self.data.source_order),
            Domain::Target => (&self.data.target, &mut self.data.target_order),
        };
        let batches = order.batches_per_pass();
        tch::no_grad(|| {
            let mut sums: Vec<Tensor> = statistics.iter().map(Tensor::zeros_like).collect();
            for _ in 0..batches {
                let before: Vec<Tensor> = statistics.iter().map(Tensor::copy).collect();
                let index = order.next_batch();
                let _ = self.model.cnn.logits(&data.images(&index), true);
                for ((sum, after), before) in sums.iter_mut().zip(&statistics).zip(&before) {
                    *sum += (after - before * (1.0 - momentum)) / momentum;
                }
            }
            for (statistic, sum) in statistics.iter().zip(&sums) {
                statistic.shallow_clone().copy_(&(sum / batches as f64));
            }
        });
    }

    /// The model's batch-norm running statistics (`feature.bn1.running_mean`, ...), sharing
    /// storage with the variables.
    pub fn batch_norm_statistics(&self) -> Vec<(String, Tensor)> {
        let mut statistics: Vec<(String, Tensor)> = self
            .vs
            .variables()
            .into_iter()
            .filter(|(name, _)| is_batch_norm_statistic(name))
            .collect();
        statistics.sort_by(|a, b| a.0.cmp(&b.0));
        statistics
    }

    /// Target validation accuracy of the label path in eval mode, if there is a `val` set.
    pub fn val_accuracy(&self) -> Option<f64> {
        val_accuracy(self.val.as_ref(), |x| self.model.cnn.logits(x, false))
            .first()
            .map(|&(_, acc)| acc)
    }
}

impl TrainingMethod for DannTraining {
    /// One pass over the source set.
    fn steps_per_epoch(&self) -> usize {
        self.data.source_order.batches_per_pass()
    }

    fn step(&mut self, at: StepProgress) -> anyhow::Result<Scalars> {
        let source_index = self.data.source_order.next_batch();
        let target_index = self.data.target_order.next_batch();
        let batch = DannBatch {
            source: self.data.source.images(&source_index),
            labels: self.data.source.labels_at(&source_index),
            target: self.data.target.images(&target_index),
        };
        let lambda = dann_lambda(at.p, self.lambda_gamma);
        let scalars = dann_step(
            &self.model,
            &mut self.optimizer,
            &batch,
            (lambda, self.passes),
            at.p,
        )?;
        if let Some(average) = &self.average {
            average.update();
        }
        Ok(scalars)
    }

    fn end_epoch(&mut self, end: EpochEnd<'_>) -> anyhow::Result<Scalars> {
        let mut record = vec![
            ("lr", self.optimizer.lr()),
            ("lambda", dann_lambda(end.p, self.lambda_gamma)),
        ];
        record.extend(val_accuracy(self.val.as_ref(), |x| {
            self.model.cnn.logits(x, false)
        }));
        Ok(record)
    }

    fn save_state(&self, state: &mut TrainingState) {
        state.add_store("model", &self.vs);
        if let Some(average) = &self.average {
            average.save_state("average", state);
        }
        self.optimizer.save_state("optimizer", state);
        self.data.source_order.save_state("source_order", state);
        self.data.target_order.save_state("target_order", state);
    }

    fn load_state(&mut self, state: &HashMap<String, Tensor>) -> Result<(), StateError> {
        restore_store(&self.vs, "model", state)?;
        if let Some(average) = &self.average {
            average.load_state("average", state)?;
        }
        self.optimizer.load_state("optimizer", state)?;
        self.data.source_order.load_state("source_order", state)?;
        self.data.target_order.load_state("target_order", state)
    }
}

/// Normalised source images with labels, and target images.
pub struct DannBatch {
    pub source: Tensor,
    pub labels: Tensor,
    pub target: Tensor,
}

/// How a step's batches go through the network.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DannPasses {
    pub forward: DannForward,
    /// The target features also go through the label head in training mode, their class logits
    /// unused (the PyTorch port runs its whole network on the target batch). Only the label
    /// head's batch-norm running statistics change: they follow both domains instead of the
    /// source alone, and evaluation with `BnStats::Running` uses them on the target.
    pub target_through_label_head: bool,
    /// Weight of the information-maximisation loss on the target's class predictions, ramped
    /// in with the GRL weight (0: none). The adversarial loss aligns the two domains'
    /// feature distributions but not class by class, and on real digits it can map a target
    /// digit onto another digit's source cluster; this term moves the label head's decision
    /// boundaries out of the target's dense regions, without letting the predictions collapse
    /// onto few classes (see [`information_loss`]). The target batch then goes through the
    /// label head with gradients, in training mode.
    pub target_information_weight: f64,
}

/// SHOT's information-maximisation loss (Liang et al. 2020) of a batch of class logits: the
/// mean entropy of the predictions, minus the entropy of their mean. The first term rewards
/// confident predictions, the second predictions spread over all classes.
pub fn information_loss(logits: &Tensor) -> Tensor {
    let log_p = logits.log_softmax(-1, Kind::Float);
    let p = log_p.exp();
    let conditional = -(&p * &log_p)
        .sum_dim_intlist(-1, false, Kind::Float)
        .mean(Kind::Float);
    let marginal = p.mean_dim(0, false, Kind::Float);
    let diversity = -(&marginal * (&marginal + 1e-8).log()).sum(Kind::Float);
    conditional - diversity
}

/// Forward in training mode (per domain or joint), the three losses, backward through the GRL
/// with weight `lambda`, optimizer step at progress `p`.
pub fn dann_step(
    model: &DannModel,
    optimizer: &mut Optimizer,
    batch: &DannBatch,
    (lambda, passes): (f64, DannPasses),
    p: f64,
) -> anyhow::Result<Scalars> {
    let (ns, nt) = (batch.source.size()[0], batch.target.size()[0]);
    let device = batch.source.device();
    let domain_head = |features: &Tensor| {
        model
            .domain
            .forward_t(&reverse_gradient(features, lambda), true)
    };
    // -> (ns | nt, feature_dim) source and target features, (ns | nt, 2) domain logits.
    let (source_features, target_features, source_domain, target_domain) = match passes.forward {
        DannForward::PerDomain => {
            let source = model.cnn.features(&batch.source, true);
            let target = model.cnn.features(&batch.target, true);
            let (ds, dt) = (domain_head(&source), domain_head(&target));
            (source, target, ds, dt)
        }
        DannForward::Joint => {
            let features = model
                .cnn
                .features(&Tensor::cat(&[&batch.source, &batch.target], 0), true);
            let domain = domain_head(&features);
            (
                features.narrow(0, 0, ns),
                features.narrow(0, ns, nt),
                domain.narrow(0, 0, ns),
                domain.narrow(0, ns, nt),
            )
        }
    };
    // Only the labelled source images train the label predictor.
    let class_logits = model.cnn.classifier.forward_t(&source_features, true);
    let class_loss = class_logits.cross_entropy_for_logits(&batch.labels);
    let domain_loss =
        source_domain.cross_entropy_for_logits(&constant_labels(SOURCE_DOMAIN, ns, device))
            + target_domain.cross_entropy_for_logits(&constant_labels(TARGET_DOMAIN, nt, device));
    let mut loss = &class_loss + &domain_loss;
    // The target's pass through the label head: with gradients for the information loss, or
    // for its batch-norm statistics alone.
    if passes.target_information_weight > 0.0 {
        let target_logits = model.cnn.classifier.forward_t(&target_features, true);
        loss += information_loss(&target_logits) * (passes.target_information_weight * lambda);
    } else if passes.target_through_label_head {
        tch::no_grad(|| {
            let _ = model.cnn.classifier.forward_t(&target_features, true);
        });
    }
    optimizer.backward_step(&loss, p)?;
    let accuracy = class_logits
        .argmax(-1, false)
        .eq_tensor(&batch.labels)
        .to_kind(Kind::Float)
        .mean(Kind::Float);
    Ok(named_scalars(
        &["train_loss", "class_loss", "domain_loss", "train_acc"],
        &[&loss, &class_loss, &domain_loss, &accuracy],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Arch, DigitCnnConfig};
    use crate::training::IndexStream;
    use tch::Device;

    fn model(arch: Arch) -> (nn::VarStore, DannModel) {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = DigitCnnConfig {
            arch,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let model = DannModel::new(&vs.root(), config).unwrap();
        (vs, model)
    }

    /// Source and target batches of 8 whose pixel statistics differ (the target is shifted).
    fn batch() -> DannBatch {
        let options = (Kind::Float, Device::Cpu);
        DannBatch {
            source: Tensor::randn([8, 3, 28, 28], options),
            labels: Tensor::randint(10, [8], (Kind::Int64, Device::Cpu)),
            target: Tensor::randn([8, 3, 28, 28], options) * 2.0 + 1.5,
        }
    }

    /// The step's losses with the per-domain and the joint pass, on one model and one batch
    /// (built once: tests in other threads draw from libtorch's global generator too).
    fn losses_of_both_passes(arch: Arch) -> (Vec<f64>, Vec<f64>) {
        tch::manual_seed(3);
        let (vs, model) = model(arch);
        let batch = batch();
        // lr 0: the weights stay as built, so both passes see the same function.
        let mut frozen = Optimizer::new(OptimizerSettings::sgd(0.0, 0.0), &[&vs]);
        let mut losses = |forward| {
            let passes = DannPasses {
                forward,
                target_through_label_head: true,
                target_information_weight: 0.0,
            };
            let scalars = dann_step(&model, &mut frozen, &batch, (0.5, passes), 0.0).unwrap();
            scalars.iter().map(|&(_, v)| v).collect::<Vec<f64>>()
        };
        (losses(DannForward::PerDomain), losses(DannForward::Joint))
    }

    #[test]
    fn forward_passes_differ_only_through_batch_norm() {
        // Without batch norm or dropout (`mnist`), per-domain and joint passes are one function.
        let (per_domain, joint) = losses_of_both_passes(Arch::Mnist);
        for (a, b) in per_domain.iter().zip(&joint) {
            assert!((a - b).abs() < 1e-5, "{per_domain:?} vs {joint:?}");
        }
        // With it (`dann_bn`), a shifted target changes the source's normalisation only in the
        // joint pass.
        let (per_domain, joint) = losses_of_both_passes(Arch::DannBn);
        assert!(
            (per_domain[1] - joint[1]).abs() > 1e-3,
            "class loss {per_domain:?} vs {joint:?}"
        );
    }

    #[test]
    fn input_norm_chooses_the_statistics() {
        let stats = |domain: &str, mean: f64| Normalisation {
            domain: domain.into(),
            mean: vec![mean; 3],
            std: vec![0.2; 3],
        };
        let (s, t) = (stats("mnist", 0.1), stats("mnistm", 0.4));
        assert_eq!(
            InputNorm::PerDomain.apply(s.clone(), t.clone()),
            (s.clone(), t.clone())
        );
        let (_, target) = InputNorm::Source.apply(s.clone(), t.clone());
        assert_eq!((target.domain.as_str(), target.mean[0]), ("mnistm", 0.1));
        let (source, target) = InputNorm::Half.apply(s, t);
        assert_eq!(
            (source.mean[2], source.std[0], target.std[1]),
            (0.5, 0.5, 0.5)
        );
        assert_eq!(target.domain, "mnistm");
    }

    /// A training on two banded 32-image domains (batches of 16) with Adam 1e-3.
    fn banded_training() -> DannTraining {
        use crate::testing::banded;
        use crate::training::InputFormat;
        tch::manual_seed(4);
        let (vs, model) = model(Arch::DannBn);
        let format = InputFormat {
            channels: 3,
            image_size: 28,
        };
        let (source, target) = (banded(32, 3, 28, 1), banded(32, 3, 28, 2));
        let domain = |d: &crate::data::Dataset, mean: f64| {
            let norm = Normalisation {
                domain: d.domain.clone(),
                mean: vec![mean; 3],
                std: vec![0.25; 3],
            };
            DeviceDataset::new(d, &norm, format, Device::Cpu).unwrap()
        };
        let data = AdaptationData {
            source: domain(&source, 0.0),
            target: domain(&target, 0.0),
            source_order: IndexStream::new(32, 16, 1, Device::Cpu),
            target_order: IndexStream::new(32, 16, 2, Device::Cpu),
        };
        let settings = OptimizerSettings::adam(1e-3, [0.9, 0.999]);
        DannTraining::new(
            vs,
            model,
            settings,
            (
                10.0,
                DannPasses {
                    forward: DannForward::PerDomain,
                    target_through_label_head: true,
                    target_information_weight: 0.0,
                },
            ),
            data,
            None,
        )
    }

    #[test]
    fn target_statistics_replace_the_running_averages() {
        let mut training = banded_training();
        training.estimate_statistics(Domain::Target);
        // One pass of two batches holds each of the 32 target images once, so the first batch
        // norm's statistics are conv1's per-channel mean and (unbiased) variance over all of
        // them: the per-batch variances average to the same only up to the batches' spread of
        // means, hence the looser tolerance there.
        let vars = training.vs.variables();
        let all = Tensor::arange(32, (Kind::Int64, Device::Cpu));
        let conv1 = training.data.target.images(&all).conv2d(
            &vars["feature.conv1.weight"],
            Some(&vars["feature.conv1.bias"]),
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        );
        let mean = conv1.mean_dim([0, 2, 3].as_slice(), false, Kind::Float);
        let var = conv1.var_dim([0, 2, 3].as_slice(), true, false);
        let gap = |a: &Tensor, b: &Tensor| (a - b).abs().max().double_value(&[]);
        let scale = var.abs().max().double_value(&[]);
        assert!(gap(&vars["feature.bn1.running_mean"], &mean) < 1e-4);
        assert!(gap(&vars["feature.bn1.running_var"], &var) < 0.05 * scale);
    }

    #[test]
    fn the_saved_weights_are_the_moving_average() {
        let config = DigitCnnConfig {
            arch: Arch::DannBn,
            channels: 3,
            image_size: 28,
            classes: 10,
        };
        let mut training = banded_training().with_moving_average(0.5, config).unwrap();
        let name = "classifier.fc3.weight";
        let mut expected = training.vs.variables()[name].copy();
        for step in 1..=3 {
            let at = StepProgress {
                epoch: 1,
                step,
                p: step as f64 / 4.0,
            };
            training.step(at).unwrap();
            expected = expected * 0.5 + training.vs.variables()[name].copy() * 0.5;
        }
        let averaged = training.average.as_ref().unwrap().store.variables()[name].copy();
        assert!(averaged.allclose(&expected, 1e-6, 1e-7, false));
        assert!(!averaged.allclose(&training.vs.variables()[name], 1e-6, 1e-7, false));
        training.adopt_average().unwrap();
        assert!(training.vs.variables()[name].equal(&averaged));
    }

    #[test]
    fn the_target_through_the_label_head_updates_its_batch_norms() {
        tch::manual_seed(5);
        let (vs, model) = model(Arch::DannBn);
        let batch = batch();
        // Batches each batch-norm layer of `part` has seen (its `num_batches_tracked`).
        let tracked = |part: &str| -> Vec<i64> {
            let variables = vs.variables();
            let mut names: Vec<&String> = variables
                .keys()
                .filter(|n| n.starts_with(part) && n.ends_with(".num_batches_tracked"))
                .collect();
            names.sort();
            names
                .iter()
                .map(|n| variables[*n].int64_value(&[]))
                .collect()
        };
        let mut frozen = Optimizer::new(OptimizerSettings::sgd(0.0, 0.0), &[&vs]);
        let mut step = |target_through_label_head| {
            let passes = DannPasses {
                forward: DannForward::PerDomain,
                target_through_label_head,
                target_information_weight: 0.0,
            };
            dann_step(&model, &mut frozen, &batch, (0.5, passes), 0.0).unwrap();
            (tracked("feature."), tracked("classifier."))
        };
        // One step each: the feature extractor sees both batches either way, the label head
        // the source batch, and the target batch only when asked.
        assert_eq!(step(false), (vec![2, 2], vec![1, 1]));
        assert_eq!(step(true), (vec![4, 4], vec![3, 3]));
    }

    #[test]
    fn information_loss_prefers_confident_predictions_spread_over_the_classes() {
        let classes = 4;
        let confident = |labels: &[i64]| {
            Tensor::from_slice(labels)
                .one_hot(classes)
                .to_kind(Kind::Float)
                * 50.0
        };
        let loss = |logits: &Tensor| information_loss(logits).double_value(&[]);
        let spread = loss(&confident(&[0, 1, 2, 3]));
        let collapsed = loss(&confident(&[2, 2, 2, 2]));
        let uncertain = loss(&Tensor::zeros([4, classes], (Kind::Float, Device::Cpu)));
        // -log K at best; 0 for predictions all on one class or all uniform.
        assert!((spread + (classes as f64).ln()).abs() < 1e-4, "{spread}");
        assert!(
            collapsed.abs() < 1e-4 && uncertain.abs() < 1e-4,
            "{collapsed} {uncertain}"
        );
    }

    #[test]
    fn the_information_loss_joins_the_step_in_proportion_to_its_weight() {
        tch::manual_seed(6);
        // A network without dropout, so the step draws nothing from libtorch's global generator,
        // which the tests running beside this one draw from too; without batch norm its random
        // weights predict almost uniformly, so the target images are scaled up to give the
        // information loss confident predictions to score.
        let (vs, model) = model(Arch::Mnist);
        let mut batch = batch();
        batch.target = &batch.target * 50.0;
        let mut frozen = Optimizer::new(OptimizerSettings::sgd(0.0, 0.0), &[&vs]);
        let mut train_loss = |target_information_weight| {
            let passes = DannPasses {
                forward: DannForward::PerDomain,
                target_through_label_head: false,
                target_information_weight,
            };
            dann_step(&model, &mut frozen, &batch, (0.5, passes), 0.0).unwrap()[0].1
        };
        let without = train_loss(0.0);
        let (once, twice) = (train_loss(1.0) - without, train_loss(2.0) - without);
        assert!(once.abs() > 1e-3, "{once}");
        assert!((twice - 2.0 * once).abs() < 1e-5, "{once} {twice}");
    }
}
