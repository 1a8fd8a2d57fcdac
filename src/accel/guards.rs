//! Scoped libtorch modes: [`InferenceMode`] and [`Autocast`].
//!
//! Both are thread-local in libtorch and restore, when they end, the state they found: they
//! nest, and must end in reverse order of creation on the thread that created them. Rust's drop
//! order of locals gives that for free; the guards cannot be sent to another thread, and
//! ending one out of order (an explicit early `drop` of an outer guard) is logged, because the
//! state it restores is then stale.

use std::cell::Cell;
use std::ffi::c_int;

use tch::{Device, Kind};

use super::{ffi, AccelError};

/// Where a guard sits in its thread's stack of guards of one kind.
struct Nesting {
    depth: usize,
    counter: &'static std::thread::LocalKey<Cell<usize>>,
    what: &'static str,
}

impl Nesting {
    fn enter(counter: &'static std::thread::LocalKey<Cell<usize>>, what: &'static str) -> Self {
        let depth = counter.with(|c| {
            c.set(c.get() + 1);
            c.get()
        });
        Nesting {
            depth,
            counter,
            what,
        }
    }
}

impl Drop for Nesting {
    fn drop(&mut self) {
        let current = self.counter.with(|c| {
            let current = c.get();
            c.set(current.saturating_sub(1));
            current
        });
        if current != self.depth {
            tracing::error!(
                "a {} guard created at nesting depth {} ended at depth {current}: guards must end in reverse order of creation",
                self.what,
                self.depth
            );
        }
    }
}

thread_local! {
    static INFERENCE_DEPTH: Cell<usize> = const { Cell::new(0) };
    static AUTOCAST_DEPTH: Cell<usize> = const { Cell::new(0) };
}

/// `c10::InferenceMode` while alive: no autograd recording, no version counters or view
/// tracking; tensors created inside are inference tensors, which autograd refuses later (use
/// it for sampling, evaluation and feature extraction, not for values a backward needs).
/// A guard built with `enabled = false` inside another turns the mode off for its scope.
pub struct InferenceMode {
    // Field order: the C++ guard ends before the nesting check.
    _guard: ffi::InferenceModeHandle,
    _nesting: Nesting,
}

impl InferenceMode {
    /// Enters inference mode.
    pub fn new() -> Result<Self, AccelError> {
        Self::with_enabled(true)
    }

    /// Enters (`true`) or locally leaves (`false`) inference mode.
    pub fn with_enabled(enabled: bool) -> Result<Self, AccelError> {
        let guard = ffi::inference_mode_enter(enabled)?;
        Ok(InferenceMode {
            _guard: guard,
            _nesting: Nesting::enter(&INFERENCE_DEPTH, "InferenceMode"),
        })
    }

    /// Whether this thread is in inference mode.
    pub fn is_enabled() -> bool {
        ffi::inference_mode_is_enabled()
    }
}

/// Runs `f` in inference mode (as under `torch.inference_mode()`), or under `no_grad` when
/// libtorch refuses to enter it: the values are the same either way, only autograd's
/// bookkeeping differs. The results are inference tensors: no backward may use them.
pub fn inference<T>(f: impl FnOnce() -> T) -> T {
    match InferenceMode::new() {
        Ok(_mode) => f(),
        Err(error) => {
            tracing::warn!("{error}; running without gradients instead");
            tch::no_grad(f)
        }
    }
}

/// Autocast on one device type while alive, as `torch.autocast(device, dtype)`: eligible ops
/// (matmul, linear, convolutions, ...) compute in `dtype` from fp32 weights, precision-sensitive
/// ones (losses, softmax, norms) stay fp32. End it before `backward()`; the backward replays the
/// recorded casts.
pub struct Autocast {
    scope: ffi::AutocastHandle,
    _nesting: Nesting,
    device: Device,
    dtype: Kind,
}

/// The shim's device-type code (c10::DeviceType's CPU and CUDA).
fn device_code(device: Device) -> Result<c_int, AccelError> {
    match device {
        Device::Cpu => Ok(0),
        Device::Cuda(_) => Ok(1),
        _ => Err(AccelError::AutocastDevice { device }),
    }
}

/// c10::ScalarType's codes of the two autocast dtypes.
fn dtype_code(kind: Kind) -> Result<c_int, AccelError> {
    match kind {
        Kind::Half => Ok(5),
        Kind::BFloat16 => Ok(15),
        _ => Err(AccelError::AutocastKind { kind }),
    }
}

fn dtype_of_code(code: c_int) -> Result<Kind, AccelError> {
    [Kind::Half, Kind::BFloat16]
        .into_iter()
        .find(|k| dtype_code(*k).ok() == Some(code))
        .ok_or(AccelError::Libtorch {
            op: "reading the autocast state",
            message: format!("unexpected dtype code {code}"),
        })
}

impl Autocast {
    /// Enters autocast on `device`'s type (CPU or CUDA) computing in `dtype` (`BFloat16` or
    /// `Half`).
    pub fn new(device: Device, dtype: Kind) -> Result<Self, AccelError> {
        Self::enter(device, dtype, true)
    }

    /// A scope without autocast inside an autocast one (for an op that must run in fp32).
    pub fn disabled(device: Device) -> Result<Self, AccelError> {
        let dtype = Self::dtype(device)?;
        Self::enter(device, dtype, false)
    }

    fn enter(device: Device, dtype: Kind, enabled: bool) -> Result<Self, AccelError> {
        let scope = ffi::autocast_enter(device_code(device)?, dtype_code(dtype)?, enabled)?;
        Ok(Autocast {
            scope,
            _nesting: Nesting::enter(&AUTOCAST_DEPTH, "Autocast"),
            device,
            dtype,
        })
    }

    /// The device and dtype this scope was entered with.
    pub fn target(&self) -> (Device, Kind) {
        (self.device, self.dtype)
    }

    /// Ends the scope, reporting a failure to restore the previous state (dropping logs it).
    pub fn exit(self) -> Result<(), AccelError> {
        let Autocast {
            scope, _nesting, ..
        } = self;
        scope.exit()
    }

    /// Whether autocast is on for `device`'s type on this thread.
    pub fn is_enabled(device: Device) -> Result<bool, AccelError> {
        Ok(ffi::autocast_state(device_code(device)?)?.0)
    }

    /// The dtype autocast uses (or would use) on `device`'s type on this thread.
    pub fn dtype(device: Device) -> Result<Kind, AccelError> {
        dtype_of_code(ffi::autocast_state(device_code(device)?)?.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Tensor;

    const CPU: Device = Device::Cpu;

    #[test]
    fn cpu_bf16_autocast_lowers_matmul_and_conv_and_restores_the_state() {
        let a = Tensor::randn([8, 16], (Kind::Float, CPU));
        let image = Tensor::randn([2, 3, 8, 8], (Kind::Float, CPU));
        let weight = Tensor::randn([4, 3, 3, 3], (Kind::Float, CPU));
        let conv = |x: &Tensor| x.conv2d(&weight, None::<Tensor>, [1, 1], [0, 0], [1, 1], 1);
        assert!(!Autocast::is_enabled(CPU).expect("state"));
        assert_eq!(a.matmul(&a.tr()).kind(), Kind::Float);
        {
            let scope = Autocast::new(CPU, Kind::BFloat16).expect("enters");
            assert_eq!(scope.target(), (CPU, Kind::BFloat16));
            assert!(Autocast::is_enabled(CPU).expect("state"));
            assert_eq!(a.matmul(&a.tr()).kind(), Kind::BFloat16);
            assert_eq!(conv(&image).kind(), Kind::BFloat16);
            // Losses stay fp32 under autocast.
            let logits = a.matmul(&a.tr());
            let loss = logits.cross_entropy_for_logits(&Tensor::zeros([8], (Kind::Int64, CPU)));
            assert_eq!(loss.kind(), Kind::Float);
            {
                let _off = Autocast::disabled(CPU).expect("nests");
                assert!(!Autocast::is_enabled(CPU).expect("state"));
                assert_eq!(a.matmul(&a.tr()).kind(), Kind::Float);
            }
            assert!(
                Autocast::is_enabled(CPU).expect("state"),
                "the inner scope restores the outer one"
            );
            scope.exit().expect("restores");
        }
        assert!(!Autocast::is_enabled(CPU).expect("state"));
        assert_eq!(conv(&image).kind(), Kind::Float);
    }

    #[test]
    fn autocast_backward_reaches_fp32_master_weights() {
        let w = Tensor::randn([16, 4], (Kind::Float, CPU)).set_requires_grad(true);
        let x = Tensor::randn([8, 16], (Kind::Float, CPU));
        let loss = {
            let _bf16 = Autocast::new(CPU, Kind::BFloat16).expect("enters");
            x.matmul(&w).to_kind(Kind::Float).square().mean(Kind::Float)
        };
        loss.backward();
        assert_eq!(w.grad().kind(), Kind::Float);
        assert!(w.grad().abs().sum(Kind::Float).double_value(&[]) > 0.0);
    }

    #[test]
    fn autocast_rejects_fp32_and_unsupported_devices() {
        assert!(matches!(
            Autocast::new(CPU, Kind::Float),
            Err(AccelError::AutocastKind { kind: Kind::Float })
        ));
        assert!(matches!(
            Autocast::new(Device::Mps, Kind::BFloat16),
            Err(AccelError::AutocastDevice { .. })
        ));
        assert!(
            !Autocast::is_enabled(CPU).expect("state"),
            "a failed entry leaves the state alone"
        );
    }

    #[test]
    fn inference_mode_makes_inference_tensors_and_nests() {
        let w = Tensor::randn([4, 4], (Kind::Float, CPU)).set_requires_grad(true);
        assert!(!InferenceMode::is_enabled());
        {
            let _outer = InferenceMode::new().expect("enters");
            assert!(InferenceMode::is_enabled());
            let y = w.matmul(&w);
            assert!(y.is_inference() && !y.requires_grad());
            {
                let _inner = InferenceMode::with_enabled(false).expect("nests");
                assert!(!InferenceMode::is_enabled());
                let z = w.matmul(&w);
                assert!(
                    !z.is_inference() && z.requires_grad(),
                    "autograd records again inside"
                );
            }
            assert!(
                InferenceMode::is_enabled(),
                "the inner guard restores the outer mode"
            );
        }
        assert!(!InferenceMode::is_enabled());
        let y = w.matmul(&w);
        assert!(!y.is_inference() && y.requires_grad());
    }
}
