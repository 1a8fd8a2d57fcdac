//! Adam and AdamW as `torch.optim.Adam(fused=True)` / `AdamW(fused=True)` compute them: one
//! `at::_fused_adam_` call per device and dtype updates every parameter, its moments and its
//! step count in a single vectorised pass.
//!
//! The state (`exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` with amsgrad, and the float32 `step`
//! count, per parameter) is exposed by name, so a training run can checkpoint it with its
//! weights and resume bit for bit.

use tch::{nn, Device, Kind, Tensor};

use super::ffi::{self, AdamLists, AdamScalars};
use super::AccelError;

/// Hyper-parameters; the defaults are `torch.optim.Adam`'s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    /// Decay rates of the first and second moment estimates.
    pub betas: (f64, f64),
    /// Added to the denominator for numerical stability.
    pub eps: f64,
    /// L2 penalty added to the gradient (Adam), or decoupled decay of the weights (AdamW).
    pub weight_decay: f64,
    /// AdamW: decay the weights directly instead of through the gradient.
    pub decoupled: bool,
    /// Divide by the running maximum of the second moment (Reddi et al. 2018).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad: false,
        }
    }
}

/// One parameter and its optimizer state, laid out like the parameter.
struct Slot {
    name: String,
    param: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Option<Tensor>,
    /// float32 scalar on the parameter's device, as the fused kernels read it.
    step: Tensor,
}

impl Slot {
    /// `param` is floating point: autograd lets no other tensor require a gradient.
    fn new(name: String, param: Tensor, amsgrad: bool) -> Self {
        // zeros_like keeps the parameter's strides (channels-last included), as the kernels need.
        Slot {
            exp_avg: param.zeros_like(),
            exp_avg_sq: param.zeros_like(),
            max_exp_avg_sq: amsgrad.then(|| param.zeros_like()),
            step: Tensor::zeros([], (Kind::Float, param.device())),
            name,
            param,
        }
    }

    /// `(suffix, tensor)` of every state entry.
    fn entries(&self) -> impl Iterator<Item = (&'static str, &Tensor)> {
        [
            ("exp_avg", Some(&self.exp_avg)),
            ("exp_avg_sq", Some(&self.exp_avg_sq)),
        ]
        .into_iter()
        .chain([
            ("max_exp_avg_sq", self.max_exp_avg_sq.as_ref()),
            ("step", Some(&self.step)),
        ])
        .filter_map(|(suffix, t)| t.map(|t| (suffix, t)))
    }
}

/// Fused Adam/AdamW over a fixed set of named trainable tensors.
pub struct FusedAdam {
    config: AdamConfig,
    slots: Vec<Slot>,
    /// Slot indices sharing a device and dtype: one kernel call each.
    groups: Vec<Vec<usize>>,
}

impl FusedAdam {
    /// Over every trainable variable of `vs` (those that require grad), in name order. Convert
    /// the variables' memory format first: the state takes their layout now.
    pub fn new(vs: &nn::VarStore, config: AdamConfig) -> Self {
        let mut params: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        Self::over(params, config)
    }

    /// Over the given named tensors.
    pub fn over(params: Vec<(String, Tensor)>, config: AdamConfig) -> Self {
        let slots: Vec<Slot> = params
            .into_iter()
            .map(|(name, param)| Slot::new(name, param, config.amsgrad))
            .collect();
        let mut keys: Vec<(Device, Kind)> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, slot) in slots.iter().enumerate() {
            let key = (slot.param.device(), slot.param.kind());
            match keys.iter().position(|k| *k == key) {
                Some(g) => groups[g].push(i),
                None => {
                    keys.push(key);
                    groups.push(vec![i]);
                }
            }
        }
        FusedAdam {
            config,
            slots,
            groups,
        }
    }

    pub fn lr(&self) -> f64 {
        self.config.lr
    }

    /// The learning rate of the following steps (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Sets every parameter's gradient to none (`zero_grad(set_to_none=True)`, PyTorch's
    /// default): the next backward writes the gradients instead of adding to zeros.
    pub fn zero_grad(&mut self) -> Result<(), AccelError> {
        let params: Vec<&Tensor> = self.slots.iter().map(|s| &s.param).collect();
        ffi::clear_grads(&params)
    }

    /// One Adam step of every parameter that has a gradient (others, like PyTorch's, keep
    /// their value and state).
    pub fn step(&mut self) -> Result<(), AccelError> {
        let c = &self.config;
        let scalars = AdamScalars {
            lr: c.lr,
            beta1: c.betas.0,
            beta2: c.betas.1,
            weight_decay: c.weight_decay,
            eps: c.eps,
            amsgrad: c.amsgrad,
            decoupled: c.decoupled,
        };
        for group in &self.groups {
            let (active, grads): (Vec<&Slot>, Vec<Tensor>) = group
                .iter()
                .map(|&i| &self.slots[i])
                .map(|s| (s, s.param.grad()))
                .filter(|(_, g)| g.defined())
                .unzip();
            if active.is_empty() {
                continue;
            }
            let field =
                |f: fn(&Slot) -> &Tensor| active.iter().map(|s| f(s)).collect::<Vec<&Tensor>>();
            let max_exp_avg_sqs: Vec<&Tensor> = active
                .iter()
                .filter_map(|s| s.max_exp_avg_sq.as_ref())
                .collect();
            let lists = AdamLists {
                params: &field(|s| &s.param),
                grads: &grads.iter().collect::<Vec<_>>(),
                exp_avgs: &field(|s| &s.exp_avg),
                exp_avg_sqs: &field(|s| &s.exp_avg_sq),
                max_exp_avg_sqs: &max_exp_avg_sqs,
                steps: &field(|s| &s.step),
            };
            ffi::fused_adam(&lists, &scalars)?;
        }
        Ok(())
    }

    /// The names of the parameters, in update order.
    pub fn parameter_names(&self) -> impl Iterator<Item = &str> {
        self.slots.iter().map(|s| s.name.as_str())
    }

    /// The state by name: `<parameter>.exp_avg`, `.exp_avg_sq`, `.max_exp_avg_sq` (amsgrad only)
    /// and `.step`. The tensors are the live state (shallow copies): save them (for instance
    /// with `Tensor::save_multi`) or deep-copy them to snapshot.
    pub fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .flat_map(|slot| {
                slot.entries()
                    .map(move |(suffix, t)| (format!("{}.{suffix}", slot.name), t.shallow_clone()))
            })
            .collect()
    }

    /// Restores a state saved from [`FusedAdam::state`] of an optimizer over the same parameters
    /// (values copied into this optimizer's tensors, keeping their device and layout). Every
    /// entry must be present, of the right shape, and belong to a parameter.
    pub fn load_state(&mut self, state: &[(String, Tensor)]) -> Result<(), AccelError> {
        let lookup: std::collections::HashMap<&str, &Tensor> =
            state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let mut used = 0;
        for slot in &self.slots {
            for (suffix, dst) in slot.entries() {
                let name = format!("{}.{suffix}", slot.name);
                let src = lookup
                    .get(name.as_str())
                    .ok_or_else(|| AccelError::StateMissing { name: name.clone() })?;
                if src.size() != dst.size() {
                    return Err(AccelError::StateShape {
                        name,
                        expected: dst.size(),
                        found: src.size(),
                    });
                }
                used += 1;
            }
        }
        if used != lookup.len() {
            let expected: std::collections::HashSet<String> = self
                .slots
                .iter()
                .flat_map(|s| {
                    s.entries()
                        .map(move |(suffix, _)| format!("{}.{suffix}", s.name))
                })
                .collect();
            let stray = lookup
                .keys()
                .find(|n| !expected.contains(**n))
                .map_or_else(String::new, |n| n.to_string());
            return Err(AccelError::StateUnknown { name: stray });
        }
        tch::no_grad(|| {
            for slot in &self.slots {
                for (suffix, dst) in slot.entries() {
                    let src = lookup[format!("{}.{suffix}", slot.name).as_str()];
                    dst.shallow_clone().copy_(src);
                }
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::{ModuleT, OptimizerConfig};

    const CPU: Device = Device::Cpu;

    /// A conv layer, a batch-norm (whose running statistics are variables that must not be
    /// trained) and a biased linear layer. The conv has no bias: before a batch norm its exact
    /// gradient is zero, and Adam would amplify the rounding noise left in it into steps of
    /// size lr in random directions, which no two implementations reproduce.
    fn model(vs: &nn::VarStore) -> nn::SequentialT {
        let root = vs.root();
        let conv = nn::ConvConfig {
            bias: false,
            ..Default::default()
        };
        nn::seq_t()
            .add(nn::conv2d(&root / "conv", 3, 6, 3, conv))
            .add(nn::batch_norm2d(&root / "bn", 6, Default::default()))
            .add_fn(|x| x.relu().flatten(1, -1))
            .add(nn::linear(&root / "fc", 6 * 6 * 6, 5, Default::default()))
    }

    /// Batch `i` of a fixed data stream.
    fn batch(i: i64) -> (Tensor, Tensor) {
        let x = Tensor::arange(16 * 3 * 8 * 8, (Kind::Float, CPU)).view([16, 3, 8, 8]);
        let x = ((&x * (0.37 + i as f64 * 0.11)).sin() + 0.1 * i as f64).set_requires_grad(false);
        let y = (Tensor::arange(16, (Kind::Int64, CPU)) + i).remainder(5);
        (x, y)
    }

    fn loss(net: &dyn ModuleT, i: i64) -> Tensor {
        let (x, y) = batch(i);
        net.forward_t(&x, true).cross_entropy_for_logits(&y)
    }

    fn max_diff(a: &nn::VarStore, b: &nn::VarStore) -> f64 {
        let (va, vb) = (a.variables(), b.variables());
        va.iter()
            .map(|(n, t)| (t - &vb[n]).abs().max().double_value(&[]))
            .fold(0.0, f64::max)
    }

    fn fresh(seed: i64) -> (nn::VarStore, nn::SequentialT) {
        tch::manual_seed(seed);
        let vs = nn::VarStore::new(CPU);
        let net = model(&vs);
        (vs, net)
    }

    /// torch.optim.Adam's update (`_single_tensor_adam`), written out with tensor ops.
    struct ReferenceAdam {
        config: AdamConfig,
        params: Vec<Tensor>,
        m: Vec<Tensor>,
        v: Vec<Tensor>,
        vmax: Vec<Tensor>,
        t: i32,
    }

    impl ReferenceAdam {
        fn new(vs: &nn::VarStore, config: AdamConfig) -> Self {
            let params = vs.trainable_variables();
            let zeros = || params.iter().map(|p| p.zeros_like()).collect::<Vec<_>>();
            ReferenceAdam {
                config,
                m: zeros(),
                v: zeros(),
                vmax: zeros(),
                params,
                t: 0,
            }
        }

        fn step(&mut self) {
            let c = self.config;
            let (b1, b2) = c.betas;
            self.t += 1;
            let (bc1, bc2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
            tch::no_grad(|| {
                for i in 0..self.params.len() {
                    let p = &mut self.params[i];
                    let mut g = p.grad();
                    if c.decoupled {
                        let _ = p.g_mul_scalar_(1.0 - c.lr * c.weight_decay);
                    } else if c.weight_decay != 0.0 {
                        g = &g + &*p * c.weight_decay;
                    }
                    self.m[i] = &self.m[i] * b1 + &g * (1.0 - b1);
                    self.v[i] = &self.v[i] * b2 + g.square() * (1.0 - b2);
                    let second = if c.amsgrad {
                        self.vmax[i] = self.vmax[i].maximum(&self.v[i]);
                        &self.vmax[i]
                    } else {
                        &self.v[i]
                    };
                    let denom = second.sqrt() / bc2.sqrt() + c.eps;
                    let update = &self.m[i] / denom * (c.lr / bc1);
                    let _ = p.g_sub_(&update);
                }
            });
        }

        fn zero_grad(&mut self) {
            self.params.iter_mut().for_each(Tensor::zero_grad);
        }
    }

    /// Ten steps of the fused optimizer and of `reference` from the same weights agree to 1e-6.
    fn matches_reference(
        config: AdamConfig,
        mut reference: impl FnMut(&nn::VarStore, &dyn ModuleT),
    ) {
        let (vs, net) = fresh(7);
        let (mut reference_vs, reference_net) = fresh(8);
        reference_vs.copy(&vs).expect("same variables");
        let (mut initial, _) = fresh(9);
        initial.copy(&vs).expect("same variables");
        let mut opt = FusedAdam::new(&vs, config);
        assert_eq!(
            opt.parameter_names().count(),
            5,
            "the weights and biases, not the running stats"
        );
        for i in 0..10 {
            opt.zero_grad().expect("clears");
            loss(&net, i).backward();
            opt.step().expect("steps");
        }
        reference(&reference_vs, &reference_net);
        let diff = max_diff(&vs, &reference_vs);
        assert!(
            diff < 1e-6,
            "{config:?}: the weights differ by {diff} after 10 steps"
        );
        assert!(max_diff(&vs, &initial) > 1e-3, "the weights moved");
    }

    fn reference_run(config: AdamConfig) -> impl FnMut(&nn::VarStore, &dyn ModuleT) {
        move |vs: &nn::VarStore, net: &dyn ModuleT| {
            let mut opt = ReferenceAdam::new(vs, config);
            for i in 0..10 {
                opt.zero_grad();
                loss(net, i).backward();
                opt.step();
            }
        }
    }

    /// Ten steps of libtorch's own (unfused, `torch::optim`) optimizer built by `optimizer`.
    fn libtorch_run(
        optimizer: impl OptimizerConfig + Copy,
        lr: f64,
    ) -> impl FnMut(&nn::VarStore, &dyn ModuleT) {
        move |vs: &nn::VarStore, net: &dyn ModuleT| {
            let mut opt = optimizer.build(vs, lr).expect("builds");
            for i in 0..10 {
                opt.zero_grad();
                loss(net, i).backward();
                opt.step();
            }
        }
    }

    #[test]
    fn fused_adam_matches_libtorch_adam_with_l2_decay_over_ten_steps() {
        let config = AdamConfig {
            lr: 1e-2,
            weight_decay: 0.05,
            ..Default::default()
        };
        matches_reference(config, libtorch_run(nn::adam(0.9, 0.999, 0.05), 1e-2));
        matches_reference(config, reference_run(config));
    }

    #[test]
    fn fused_adamw_matches_libtorch_adamw_over_ten_steps() {
        let config = AdamConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            decoupled: true,
            betas: (0.8, 0.99),
            ..Default::default()
        };
        matches_reference(config, libtorch_run(nn::adamw(0.8, 0.99, 0.1), 1e-2));
        matches_reference(config, reference_run(config));
    }

    #[test]
    fn fused_amsgrad_matches_the_reference_formulas_over_ten_steps() {
        let config = AdamConfig {
            lr: 5e-3,
            amsgrad: true,
            ..Default::default()
        };
        matches_reference(config, reference_run(config));
    }

    #[test]
    fn state_saved_and_restored_mid_run_resumes_bit_for_bit() {
        let config = AdamConfig {
            lr: 1e-2,
            weight_decay: 0.01,
            amsgrad: true,
            ..Default::default()
        };
        let train = |net: &dyn ModuleT, opt: &mut FusedAdam, steps: std::ops::Range<i64>| {
            for i in steps {
                opt.zero_grad().expect("clears");
                loss(net, i).backward();
                opt.step().expect("steps");
            }
        };
        // Both runs start from one initialisation, copied (the global seed is shared with
        // tests running in parallel).
        let (init, _) = fresh(11);
        let start = || {
            let (mut vs, net) = fresh(0);
            vs.copy(&init).expect("same variables");
            (vs, net)
        };
        let (straight_vs, straight_net) = start();
        let mut straight = FusedAdam::new(&straight_vs, config);
        train(&straight_net, &mut straight, 0..10);

        let dir = tempfile::tempdir().expect("temp dir");
        let (weights, state) = (dir.path().join("weights.ot"), dir.path().join("adam.ot"));
        {
            let (vs, net) = start();
            let mut opt = FusedAdam::new(&vs, config);
            train(&net, &mut opt, 0..5);
            vs.save(&weights).expect("saves weights");
            Tensor::save_multi(&opt.state(), &state).expect("saves state");
        }
        let (mut vs, net) = fresh(99);
        vs.load(&weights).expect("loads weights");
        let mut resumed = FusedAdam::new(&vs, config);
        resumed
            .load_state(&Tensor::load_multi(&state).expect("loads state"))
            .expect("restores");
        train(&net, &mut resumed, 5..10);

        assert_eq!(max_diff(&vs, &straight_vs), 0.0, "weights");
        for ((name, a), (_, b)) in resumed.state().iter().zip(straight.state()) {
            assert!(a.equal(&b), "{name}");
        }
        assert_eq!(
            resumed
                .state()
                .iter()
                .find(|(n, _)| n == "fc.weight.step")
                .map(|(_, t)| t.double_value(&[])),
            Some(10.0)
        );
    }

    #[test]
    fn restoring_a_foreign_state_names_the_problem() {
        let (vs, _net) = fresh(1);
        let mut opt = FusedAdam::new(&vs, AdamConfig::default());
        let mut state = opt.state();
        state.retain(|(n, _)| n != "bn.bias.exp_avg");
        let err = opt.load_state(&state).expect_err("incomplete");
        assert!(
            matches!(&err, AccelError::StateMissing { name } if name == "bn.bias.exp_avg"),
            "{err}"
        );
        let mut state = opt.state();
        state.push((
            "head.weight.step".into(),
            Tensor::zeros([], (Kind::Float, CPU)),
        ));
        let err = opt.load_state(&state).expect_err("stray entry");
        assert!(
            matches!(&err, AccelError::StateUnknown { name } if name == "head.weight.step"),
            "{err}"
        );
        let mut state = opt.state();
        state[0].1 = Tensor::zeros([3], (Kind::Float, CPU));
        assert!(matches!(
            opt.load_state(&state),
            Err(AccelError::StateShape { .. })
        ));
    }

    #[test]
    fn set_lr_changes_the_step_size_and_unused_parameters_keep_their_value() {
        let w = Tensor::ones([3], (Kind::Float, CPU)).set_requires_grad(true);
        let unused = Tensor::ones([2], (Kind::Float, CPU)).set_requires_grad(true);
        let mut opt = FusedAdam::over(
            vec![
                ("w".into(), w.shallow_clone()),
                ("unused".into(), unused.shallow_clone()),
            ],
            AdamConfig::default(),
        );
        opt.set_lr(0.5);
        assert_eq!(opt.lr(), 0.5);
        w.sum(Kind::Float).backward();
        opt.step().expect("steps");
        // Adam's first step moves each weight by lr against the gradient's sign.
        assert!(
            (w.double_value(&[0]) - 0.5).abs() < 1e-6,
            "{}",
            w.double_value(&[0])
        );
        assert_eq!(unused.double_value(&[0]), 1.0);
        opt.zero_grad().expect("clears");
        assert!(!w.grad().defined(), "zero_grad sets gradients to none");
    }

    #[test]
    fn errors_inside_the_cpp_kernel_come_back_as_errors() {
        let p = Tensor::zeros([4], (Kind::Float, CPU));
        let s = AdamScalars {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            weight_decay: 0.0,
            eps: 1e-8,
            amsgrad: false,
            decoupled: false,
        };
        let short = AdamLists {
            params: &[&p, &p],
            grads: &[&p],
            exp_avgs: &[&p],
            exp_avg_sqs: &[&p],
            max_exp_avg_sqs: &[],
            steps: &[&p],
        };
        let err = ffi::fused_adam(&short, &s).expect_err("mismatched list lengths");
        assert!(
            err.to_string().contains("2 parameters but 1 gradients"),
            "{err}"
        );
        // The kernel's own dtype dispatch rejects integer tensors.
        let q = Tensor::zeros([4], (Kind::Int64, CPU));
        let step = Tensor::zeros([], (Kind::Float, CPU));
        let ints = AdamLists {
            params: &[&q],
            grads: &[&q],
            exp_avgs: &[&q],
            exp_avg_sqs: &[&q],
            max_exp_avg_sqs: &[],
            steps: &[&step],
        };
        let err = ffi::fused_adam(&ints, &s).expect_err("integer parameters");
        assert!(matches!(err, AccelError::Libtorch { .. }), "{err}");
        // A state laid out unlike its parameter would be walked wrongly by the kernel.
        let image = Tensor::zeros([2, 3, 4, 4], (Kind::Float, CPU));
        let nhwc = super::super::memory_format::to_channels_last(&image).expect("converts");
        let mixed = AdamLists {
            params: &[&image],
            grads: &[&nhwc],
            exp_avgs: &[&image],
            exp_avg_sqs: &[&image],
            max_exp_avg_sqs: &[],
            steps: &[&step],
        };
        let err = ffi::fused_adam(&mixed, &s).expect_err("mixed layouts");
        assert!(err.to_string().contains("gradient[0]"), "{err}");
    }
}
