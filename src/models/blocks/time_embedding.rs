//! The sinusoidal timestep embedding of the diffusion UNets (Vaswani et al.'s positional
//! encoding applied to the timestep): `outer(t, inv_freq)` then `[sin | cos]`, sin first, with
//! `inv_freq = 1 / 10000^(2i / dim)` kept as the buffer `inv_freq` so a checkpoint's exact values
//! are used (recomputing them can differ by an ulp).

use tch::{nn, Kind, Tensor};

use super::Module;
use crate::models::summary::ModuleTree;

pub struct SinusoidalEmbedding {
    dim: i64,
    inv_freq: Tensor,
}

impl SinusoidalEmbedding {
    /// An embedding of width `dim` (even).
    pub fn new(path: &nn::Path, dim: i64) -> Self {
        let half = dim / 2;
        let exponents =
            Tensor::arange_start_step(0, dim, 2, (Kind::Float, path.device())) / dim as f64;
        let inv_freq = (exponents * -(10000f64.ln())).exp();
        debug_assert_eq!(inv_freq.size(), [half]);
        let inv_freq = path.add("inv_freq", inv_freq, false);
        SinusoidalEmbedding { dim, inv_freq }
    }
}

impl Module for SinusoidalEmbedding {
    /// `[b]` timesteps (float) -> `[b, dim]`.
    fn forward_t(&self, t: &Tensor, _train: bool) -> Tensor {
        let angles = t.to_kind(Kind::Float).outer(&self.inv_freq);
        Tensor::cat(&[angles.sin(), angles.cos()], -1)
    }

    fn tree(&self) -> ModuleTree {
        ModuleTree::leaf(format!("SinusoidalEmbedding(dim={})", self.dim))
    }
}
