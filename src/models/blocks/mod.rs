//! The model vocabulary: the building blocks every model family is written in.
//!
//! Each block is a struct built from an `nn::Path` and its hyper-parameters, owns its variables
//! under PyTorch's `state_dict` names (`conv1.weight`, `bn1.running_mean`,
//! `attention.qkv.bias`, `weight_orig` / `weight_u` / `weight_v` under spectral norm), runs
//! `forward_t(x, train)` with PyTorch's train/eval semantics, and prints itself the way PyTorch's
//! `print(model)` does through [`Module::tree`]. A model file is then its architecture and
//! nothing else: blocks in fields named like the reference implementation's attributes.

pub mod attention;
pub mod conv;
pub mod init;
pub mod linear;
pub mod nonlinearity;
pub mod norm;
pub mod repr;
pub mod residual;
pub mod sequential;
pub mod spectral_norm;
pub mod time_embedding;

use tch::Tensor;

use super::summary::ModuleTree;

pub use attention::SelfAttention;
pub use conv::{Conv2d, ConvSpec, ConvTranspose2d};
pub use init::Init;
pub use linear::Linear;
pub use nonlinearity::{Dropout, Nonlinearity};
pub use norm::{BatchNorm, GroupNorm, LayerNorm};
pub use residual::ResBlock;
pub use sequential::Sequential;
pub use spectral_norm::SpectralNorm;
pub use time_embedding::SinusoidalEmbedding;

/// A block of a model: a forward pass in training or eval mode, and its PyTorch printout.
pub trait Module: Send {
    /// `train`: batch norm uses batch statistics and updates its running ones, dropout drops,
    /// spectral norm runs its power iteration.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor;

    /// The block as PyTorch prints it.
    fn tree(&self) -> ModuleTree;
}
