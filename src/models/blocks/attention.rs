//! Single-head self-attention over the pixels of a feature map, as in the diffusion UNets
//! (Ho et al. 2020; rosinality's denoising-diffusion-pytorch): `norm` (GroupNorm), `qkv` (1x1
//! conv C -> 3C, split into contiguous q, k, v channel blocks), softmax over the key positions
//! of `q.k / sqrt(C)`, `out` (1x1 conv), plus the input.

use tch::{nn, Kind, Tensor};

use super::conv::{Conv2d, ConvSpec};
use super::norm::GroupNorm;
use super::Module;
use crate::models::summary::ModuleTree;

pub struct SelfAttention {
    channels: i64,
    norm: GroupNorm,
    qkv: Conv2d,
    out: Conv2d,
}

impl SelfAttention {
    pub fn new(path: &nn::Path, channels: i64, groups: i64, eps: f64) -> Self {
        SelfAttention {
            channels,
            norm: GroupNorm::new(&(path / "norm"), groups, channels, eps),
            qkv: Conv2d::new(&(path / "qkv"), ConvSpec::new(channels, 3 * channels, 1)),
            out: Conv2d::new(&(path / "out"), ConvSpec::new(channels, channels, 1)),
        }
    }
}

impl Module for SelfAttention {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let size = xs.size();
        let (b, c, h, w) = (size[0], size[1], size[2], size[3]);
        let qkv = self.qkv.forward_t(&self.norm.forward_t(xs, train), train);
        // (b, 3c, h, w) -> three (b, c, h*w)
        let parts = qkv.reshape([b, 3, c, h * w]).unbind(1);
        let (q, k, v) = (&parts[0], &parts[1], &parts[2]);
        // (b, hw_q, c) x (b, c, hw_k) -> (b, hw_q, hw_k), softmax over the keys
        let weights =
            (q.transpose(1, 2).matmul(k) / (self.channels as f64).sqrt()).softmax(-1, Kind::Float);
        // (b, c, hw_k) x (b, hw_k, hw_q) -> (b, c, hw_q) -> (b, c, h, w)
        let attended = v.matmul(&weights.transpose(1, 2)).reshape([b, c, h, w]);
        self.out.forward_t(&attended, train) + xs
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::node(
            "SelfAttention",
            vec![
                ("norm".into(), self.norm.tree()),
                ("qkv".into(), self.qkv.tree()),
                ("out".into(), self.out.tree()),
            ],
        )
    }
}
