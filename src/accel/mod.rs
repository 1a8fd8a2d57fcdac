//! The libtorch speed features tch 0.26 does not expose, through a small C++ shim
//! (`shim.cpp`, compiled by `build.rs` against the torch wheel's headers).
//!
//! PyTorch's fastest CPU configuration (issue 11) combines four things tch lacks:
//!
//! - **Fused Adam/AdamW** ([`FusedAdam`]): tch's optimizers are libtorch's C++ `torch::optim`
//!   classes, which update each parameter with a chain of separate tensor ops (about ten kernel
//!   launches and temporaries per parameter). `at::_fused_adam_` does the whole update of all
//!   parameters in one vectorised pass, as `torch.optim.Adam(fused=True)`.
//! - **Channels-last** ([`memory_format`]): tch can only make tensors row-major contiguous;
//!   oneDNN's convolutions run natively in NHWC, and with NCHW weights every convolution
//!   reorders its weights and activations on each call.
//! - **Inference mode** ([`InferenceMode`]): tch has `no_grad`, which still tracks version
//!   counters and views; `c10::InferenceMode` skips that bookkeeping for sampling, evaluation
//!   and feature extraction.
//! - **CPU bf16 autocast** ([`Autocast`]): `tch::autocast` drives CUDA fp16 only. The shim
//!   scopes autocast on any device type with bf16 or fp16, exactly as `torch.autocast` does
//!   (state saved and restored, nesting counted, weight-cast cache cleared when the outermost
//!   scope ends), so matmuls and convolutions run in bf16 on fp32 master weights. For CUDA,
//!   [`set_allow_tf32`] and [`set_cudnn_benchmark`] set the matching ATen context flags.
//!
//! [`ops::leaky_relu`] takes the slope tch's binding drops.
//!
//! [`Precision`] is the per-stage setting (`precision = "fp32" | "bf16"`) that picks autocast.
//! All `unsafe` of the module lives in `ffi.rs`; every C++ exception comes back as an
//! [`AccelError`].
//!
//! Nothing on the `hwrun` binary's code paths may call into this module: its symbols pull
//! libtorch in, and the binary must not load it (see `crate::stages::runners`).

mod ffi;
pub mod fused_adam;
pub mod guards;
pub mod memory_format;
pub mod ops;
pub mod precision;

pub use fused_adam::{AdamConfig, FusedAdam};
pub use guards::{inference, Autocast, InferenceMode};
pub use memory_format::MemoryFormat;
pub use precision::{
    allow_tf32, cpu_has_fast_bf16, cudnn_benchmark, has_fast_bf16, set_allow_tf32,
    set_cudnn_benchmark, Precision,
};

/// Sets the gradient of every tensor to none (PyTorch's `zero_grad()`): the next backward writes
/// the gradients instead of adding them to zeros.
pub fn clear_grads(tensors: &[&tch::Tensor]) -> Result<(), AccelError> {
    ffi::clear_grads(tensors)
}

/// What can go wrong in the accel wrappers.
#[derive(Debug, thiserror::Error)]
pub enum AccelError {
    /// libtorch threw inside the shim; `message` is its text without the C++ backtrace.
    #[error("libtorch failed while {op}: {message}")]
    Libtorch { op: &'static str, message: String },
    /// Autocast exists for CPU and CUDA only.
    #[error("autocast runs on the CPU or a CUDA device, not on {device:?}")]
    AutocastDevice { device: tch::Device },
    /// Autocast lowers precision to bf16 or fp16 only.
    #[error("autocast computes in BFloat16 or Half, not {kind:?}; use Precision::Fp32 to run without autocast")]
    AutocastKind { kind: tch::Kind },
    /// A restored optimizer state lacks an entry this optimizer needs.
    #[error("the optimizer state has no `{name}`; it must come from FusedAdam::state of an optimizer over the same parameters")]
    StateMissing { name: String },
    /// A restored optimizer state has an entry that belongs to no parameter of this optimizer.
    #[error("the optimizer state entry `{name}` matches no parameter of this optimizer (was the model changed?)")]
    StateUnknown { name: String },
    /// A restored optimizer state entry has the wrong shape.
    #[error("the optimizer state entry `{name}` has shape {found:?} but its parameter needs {expected:?}")]
    StateShape {
        name: String,
        expected: Vec<i64>,
        found: Vec<i64>,
    },
}
