//! The residual block of the diffusion UNets (Ho et al. 2020): `h = conv1(silu(norm1(x)))`, plus
//! the projected time embedding (`time.1` of `silu(temb)`) broadcast over the pixels, then
//! `conv2(dropout(silu(norm2(h))))`, plus `skip(x)` (a 1x1 conv when the channel count changes,
//! the identity otherwise). The time term enters before `norm2`.

use tch::{nn, Tensor};

use super::conv::{Conv2d, ConvSpec};
use super::linear::Linear;
use super::nonlinearity::Nonlinearity;
use super::norm::GroupNorm;
use super::{Init, Module};
use crate::models::summary::ModuleTree;

/// What a [`ResBlock`] maps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ResBlockSpec {
    pub in_channels: i64,
    pub out_channels: i64,
    /// Width of the time embedding fed to every block.
    pub time_dim: i64,
    pub groups: i64,
    pub eps: f64,
    pub dropout: f64,
}

pub struct ResBlock {
    norm1: GroupNorm,
    conv1: Conv2d,
    time: Linear,
    norm2: GroupNorm,
    conv2: Conv2d,
    skip: Option<Conv2d>,
    dropout: f64,
}

impl ResBlock {
    pub fn new(path: &nn::Path, spec: ResBlockSpec) -> Self {
        let (ci, co) = (spec.in_channels, spec.out_channels);
        ResBlock {
            norm1: GroupNorm::new(&(path / "norm1"), spec.groups, ci, spec.eps),
            conv1: Conv2d::new(&(path / "conv1"), ConvSpec::new(ci, co, 3).padding(1)),
            // `time` is `Sequential(SiLU, Linear)` in the reference, hence `time.1`.
            time: Linear::new(&(path / "time" / "1"), spec.time_dim, co, Init::Pytorch),
            norm2: GroupNorm::new(&(path / "norm2"), spec.groups, co, spec.eps),
            conv2: Conv2d::new(&(path / "conv2"), ConvSpec::new(co, co, 3).padding(1)),
            skip: (ci != co).then(|| Conv2d::new(&(path / "skip"), ConvSpec::new(ci, co, 1))),
            dropout: spec.dropout,
        }
    }

    /// `[b, ci, h, w]` and the time embedding `[b, time_dim]` -> `[b, co, h, w]`.
    pub fn forward_with_time(&self, xs: &Tensor, temb: &Tensor, train: bool) -> Tensor {
        let silu = Nonlinearity::Silu;
        let h = self
            .conv1
            .forward_t(&silu.apply(&self.norm1.forward_t(xs, train)), train);
        // (b, co) -> (b, co, 1, 1), broadcast over the pixels
        let h = h + self
            .time
            .forward_t(&silu.apply(temb), train)
            .unsqueeze(-1)
            .unsqueeze(-1);
        let h = silu
            .apply(&self.norm2.forward_t(&h, train))
            .dropout(self.dropout, train);
        let h = self.conv2.forward_t(&h, train);
        match &self.skip {
            Some(skip) => h + skip.forward_t(xs, train),
            None => h + xs,
        }
    }

    pub fn tree(&self) -> ModuleTree {
        let time = ModuleTree::node(
            "Sequential",
            vec![
                ("0".into(), Nonlinearity::Silu.tree()),
                ("1".into(), self.time.tree()),
            ],
        );
        let mut children = vec![
            ("norm1".into(), self.norm1.tree()),
            ("conv1".into(), self.conv1.tree()),
            ("time".into(), time),
            ("norm2".into(), self.norm2.tree()),
            ("conv2".into(), self.conv2.tree()),
        ];
        if let Some(skip) = &self.skip {
            children.push(("skip".into(), skip.tree()));
        }
        ModuleTree::node("ResBlock", children)
    }
}
