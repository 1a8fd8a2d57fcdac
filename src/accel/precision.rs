//! The compute-precision setting of a stage, and the process-wide CUDA math flags.

use std::sync::Once;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind};

use super::{ffi, AccelError, Autocast};

/// How a stage computes: `precision = "fp32" | "bf16"` in a recipe.
///
/// Weights, optimizer state and losses stay fp32 either way; `bf16` runs the forward pass under
/// bf16 autocast. Stages whose numbers must match reference tools (FID, IS, parity tests) stay
/// `fp32`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in float32.
    #[default]
    Fp32,
    /// Forward matmuls and convolutions in bfloat16 (autocast) on fp32 master weights.
    Bf16,
}

impl Precision {
    /// The autocast scope for a forward pass on `device`: `None` for fp32. Keep the returned
    /// guard alive for the forward pass and the loss, and drop it before `backward()`.
    pub fn autocast(self, device: Device) -> Result<Option<Autocast>, AccelError> {
        match self {
            Precision::Fp32 => Ok(None),
            Precision::Bf16 => {
                if !has_fast_bf16(device) {
                    static WARNED: Once = Once::new();
                    WARNED.call_once(|| {
                        tracing::warn!(
                            "precision = \"bf16\" on a CPU without AVX-512: libtorch emulates bf16 \
                             there, many times slower than fp32; set precision = \"fp32\""
                        )
                    });
                }
                Autocast::new(device, Kind::BFloat16).map(Some)
            }
        }
    }
}

/// Whether `device` computes bf16 at speed: every CUDA device libtorch runs on, and a CPU when
/// [`cpu_has_fast_bf16`].
pub fn has_fast_bf16(device: Device) -> bool {
    device.is_cuda() || cpu_has_fast_bf16()
}

/// Whether this CPU computes bf16 matmuls and convolutions at speed: libtorch's own oneDNN check
/// (`torch.ops.mkldnn._is_mkldnn_bf16_supported()`), AVX-512 BW/VL/DQ on x86-64 (which every
/// AVX512-BF16 and AMX CPU has) or BF16 on aarch64. Elsewhere bf16 runs in reference kernels,
/// many times slower than fp32.
pub fn cpu_has_fast_bf16() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("bf16")
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// Lets CUDA matmuls (cuBLAS) and convolutions (cuDNN) use TF32 tensor cores for fp32 inputs
/// (about 10 mantissa bits). No effect without CUDA.
pub fn set_allow_tf32(allow: bool) -> Result<(), AccelError> {
    ffi::set_allow_tf32(allow)
}

/// Whether both cuBLAS and cuDNN may use TF32.
pub fn allow_tf32() -> Result<bool, AccelError> {
    ffi::allow_tf32()
}

/// Lets cuDNN time its algorithms on the first call of each shape and keep the fastest (worth
/// it when shapes repeat, as in training). No effect without CUDA.
pub fn set_cudnn_benchmark(enabled: bool) -> Result<(), AccelError> {
    ffi::set_cudnn_benchmark(enabled)
}

/// Whether cuDNN benchmark mode is on.
pub fn cudnn_benchmark() -> Result<bool, AccelError> {
    ffi::cudnn_benchmark()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Params {
        precision: Precision,
    }

    #[test]
    fn precision_reads_lowercase_names_and_defaults_to_fp32() {
        let p: Params = toml::from_str("precision = \"bf16\"").expect("parses");
        assert_eq!(p.precision, Precision::Bf16);
        let p: Params = toml::from_str("precision = \"fp32\"").expect("parses");
        assert_eq!(p.precision, Precision::Fp32);
        assert!(toml::from_str::<Params>("precision = \"fp16\"").is_err());
        assert_eq!(Precision::default(), Precision::Fp32);
        assert!(Precision::Fp32
            .autocast(Device::Cpu)
            .expect("no scope")
            .is_none());
        let scope = Precision::Bf16
            .autocast(Device::Cpu)
            .expect("enters")
            .expect("a scope");
        assert_eq!(scope.target(), (Device::Cpu, Kind::BFloat16));
    }

    #[test]
    fn cuda_math_flags_set_and_read_back_without_cuda() {
        let (tf32, benchmark) = (
            allow_tf32().expect("reads"),
            cudnn_benchmark().expect("reads"),
        );
        set_allow_tf32(!tf32).expect("sets");
        set_cudnn_benchmark(!benchmark).expect("sets");
        assert_eq!(
            (
                allow_tf32().expect("reads"),
                cudnn_benchmark().expect("reads")
            ),
            (!tf32, !benchmark)
        );
        set_allow_tf32(tf32).expect("restores");
        set_cudnn_benchmark(benchmark).expect("restores");
    }
}
