//! Neural network models built on tch.
//!
//! The digit models of the domain-adaptation experiments (DANN, ADDA and their baselines) are
//! built from [`layers::Sequential`] blocks whose parameter names match PyTorch `state_dict` keys
//! (`feature.conv1.weight`), so checkpoints load with `safetensors.torch.load_file` and
//! [`summary`] can print them the way PyTorch's `print(model)` does.

pub mod digit_cnn;
pub mod discriminator;
pub mod grl;
pub mod inception;
pub mod layers;
pub mod summary;

pub use digit_cnn::{Arch, DigitCnn, DigitCnnConfig};
pub use discriminator::DomainClassifier;
pub use grl::reverse_gradient;
pub use layers::{LayerSpec, ModelError, Sequential};
