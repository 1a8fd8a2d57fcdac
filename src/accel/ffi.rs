//! The C ABI of `shim.cpp` and the only `unsafe` of [`crate::accel`]: each function here is a
//! safe call of one shim function, turning its error string into an [`AccelError`].
//!
//! Safety rests on two facts: a `tch::Tensor` owns a heap `at::Tensor` that stays valid while
//! the Rust value lives (every pointer passed below borrows one for the call only), and every
//! shim function catches its C++ exceptions and returns them as a malloc'd message.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr::NonNull;

use tch::Tensor;
use torch_sys::C_tensor;

use super::memory_format::MemoryFormat;
use super::AccelError;

/// A borrowed array of tensors, as `hwrun_tensor_list` in the shim.
#[repr(C)]
struct TensorList {
    data: *const *const C_tensor,
    len: usize,
}

extern "C" {
    fn hwrun_accel_free_error(message: *mut c_char);
    fn hwrun_accel_fused_adam(
        params: TensorList,
        grads: TensorList,
        exp_avgs: TensorList,
        exp_avg_sqs: TensorList,
        max_exp_avg_sqs: TensorList,
        state_steps: TensorList,
        lr: f64,
        beta1: f64,
        beta2: f64,
        weight_decay: f64,
        eps: f64,
        amsgrad: bool,
        maximize: bool,
        decoupled: bool,
    ) -> *mut c_char;
    fn hwrun_accel_clear_grads(tensors: TensorList) -> *mut c_char;
    fn hwrun_accel_contiguous(
        tensor: *const C_tensor,
        format: c_int,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn hwrun_accel_is_contiguous(
        tensor: *const C_tensor,
        format: c_int,
        out: *mut bool,
    ) -> *mut c_char;
    fn hwrun_accel_set_memory_format(
        tensors: TensorList,
        format: c_int,
        converted: *mut usize,
    ) -> *mut c_char;
    fn hwrun_accel_leaky_relu(
        tensor: *const C_tensor,
        negative_slope: f64,
        out: *mut *mut C_tensor,
    ) -> *mut c_char;
    fn hwrun_accel_inference_mode_enter(enabled: bool, guard: *mut *mut c_void) -> *mut c_char;
    fn hwrun_accel_inference_mode_exit(guard: *mut c_void);
    fn hwrun_accel_inference_mode_is_enabled() -> bool;
    fn hwrun_accel_autocast_enter(
        device: c_int,
        dtype: c_int,
        enabled: bool,
        scope: *mut *mut c_void,
    ) -> *mut c_char;
    fn hwrun_accel_autocast_exit(scope: *mut c_void) -> *mut c_char;
    fn hwrun_accel_autocast_state(
        device: c_int,
        enabled: *mut bool,
        dtype: *mut c_int,
    ) -> *mut c_char;
    fn hwrun_accel_set_allow_tf32(allow: bool) -> *mut c_char;
    fn hwrun_accel_allow_tf32(out: *mut bool) -> *mut c_char;
    fn hwrun_accel_set_cudnn_benchmark(enabled: bool) -> *mut c_char;
    fn hwrun_accel_cudnn_benchmark(out: *mut bool) -> *mut c_char;
}

/// `Ok` for a null result, else the shim's message (freed here) as the error of `op`.
fn check(op: &'static str, message: *mut c_char) -> Result<(), AccelError> {
    if message.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null result is a NUL-terminated string from strdup that nothing else frees.
    let text = unsafe { CStr::from_ptr(message) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above; freed exactly once.
    unsafe { hwrun_accel_free_error(message) };
    Err(AccelError::Libtorch { op, message: text })
}

/// The pointers of `tensors`, valid while they are borrowed.
fn pointers(tensors: &[&Tensor]) -> Vec<*const C_tensor> {
    tensors.iter().map(|t| t.as_ptr()).collect()
}

fn list(pointers: &[*const C_tensor]) -> TensorList {
    TensorList {
        data: pointers.as_ptr(),
        len: pointers.len(),
    }
}

/// The tensor lists of one fused Adam call; `max_exp_avg_sqs` is empty without amsgrad.
pub(super) struct AdamLists<'a> {
    pub params: &'a [&'a Tensor],
    pub grads: &'a [&'a Tensor],
    pub exp_avgs: &'a [&'a Tensor],
    pub exp_avg_sqs: &'a [&'a Tensor],
    pub max_exp_avg_sqs: &'a [&'a Tensor],
    pub steps: &'a [&'a Tensor],
}

/// The scalars of one fused Adam call.
pub(super) struct AdamScalars {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub amsgrad: bool,
    pub decoupled: bool,
}

/// Adds one to every step tensor, then one `at::_fused_adam_` (or `_fused_adamw_` when
/// decoupled) over all the lists, updating parameters and state in place.
pub(super) fn fused_adam(lists: &AdamLists<'_>, s: &AdamScalars) -> Result<(), AccelError> {
    let [p, g, m, v, vmax, steps] = [
        lists.params,
        lists.grads,
        lists.exp_avgs,
        lists.exp_avg_sqs,
        lists.max_exp_avg_sqs,
        lists.steps,
    ]
    .map(pointers);
    // SAFETY: every list borrows live tensors for the duration of the call.
    let message = unsafe {
        hwrun_accel_fused_adam(
            list(&p),
            list(&g),
            list(&m),
            list(&v),
            list(&vmax),
            list(&steps),
            s.lr,
            s.beta1,
            s.beta2,
            s.weight_decay,
            s.eps,
            s.amsgrad,
            false,
            s.decoupled,
        )
    };
    check("fused Adam step", message)
}

/// Sets the gradient of every tensor to none.
pub(super) fn clear_grads(tensors: &[&Tensor]) -> Result<(), AccelError> {
    let p = pointers(tensors);
    // SAFETY: the list borrows live tensors for the call.
    check("clearing gradients", unsafe {
        hwrun_accel_clear_grads(list(&p))
    })
}

/// Runs a shim function that writes a new tensor, and takes ownership of it.
fn new_tensor(
    op: &'static str,
    call: impl FnOnce(*mut *mut C_tensor) -> *mut c_char,
) -> Result<Tensor, AccelError> {
    let mut out: *mut C_tensor = std::ptr::null_mut();
    check(op, call(&mut out))?;
    // SAFETY: on success the shim wrote a fresh heap at::Tensor that nothing else owns.
    Ok(unsafe { Tensor::from_ptr(out) })
}

/// `tensor.contiguous(format)`: `tensor` itself (shared) when already in `format`.
pub(super) fn contiguous(tensor: &Tensor, format: MemoryFormat) -> Result<Tensor, AccelError> {
    // SAFETY: `tensor` is live for the call.
    new_tensor("memory format conversion", |out| unsafe {
        hwrun_accel_contiguous(tensor.as_ptr(), format.code(), out)
    })
}

/// `at::leaky_relu(tensor, negative_slope)`.
pub(super) fn leaky_relu(tensor: &Tensor, negative_slope: f64) -> Result<Tensor, AccelError> {
    // SAFETY: `tensor` is live for the call.
    new_tensor("leaky_relu", |out| unsafe {
        hwrun_accel_leaky_relu(tensor.as_ptr(), negative_slope, out)
    })
}

pub(super) fn is_contiguous(tensor: &Tensor, format: MemoryFormat) -> Result<bool, AccelError> {
    let mut out = false;
    // SAFETY: `tensor` is live for the call.
    check("memory format query", unsafe {
        hwrun_accel_is_contiguous(tensor.as_ptr(), format.code(), &mut out)
    })?;
    Ok(out)
}

/// Re-lays every 4-d tensor of `tensors` (and its gradient) in `format`, in place; returns
/// how many were converted.
pub(super) fn set_memory_format(
    tensors: &[&Tensor],
    format: MemoryFormat,
) -> Result<usize, AccelError> {
    let p = pointers(tensors);
    let mut converted = 0;
    // SAFETY: the list borrows live tensors for the call.
    check("memory format conversion", unsafe {
        hwrun_accel_set_memory_format(list(&p), format.code(), &mut converted)
    })?;
    Ok(converted)
}

/// A live `c10::InferenceMode`, destroyed on drop. Holding a raw pointer keeps it on its
/// thread (`!Send`), as the thread-local guard requires.
pub(super) struct InferenceModeHandle(NonNull<c_void>);

impl Drop for InferenceModeHandle {
    fn drop(&mut self) {
        // SAFETY: the pointer came from hwrun_accel_inference_mode_enter and is freed once.
        unsafe { hwrun_accel_inference_mode_exit(self.0.as_ptr()) }
    }
}

pub(super) fn inference_mode_enter(enabled: bool) -> Result<InferenceModeHandle, AccelError> {
    let mut guard: *mut c_void = std::ptr::null_mut();
    // SAFETY: `guard` receives a heap c10::InferenceMode on success.
    check("entering inference mode", unsafe {
        hwrun_accel_inference_mode_enter(enabled, &mut guard)
    })?;
    NonNull::new(guard)
        .map(InferenceModeHandle)
        .ok_or(AccelError::Libtorch {
            op: "entering inference mode",
            message: "no guard returned".into(),
        })
}

pub(super) fn inference_mode_is_enabled() -> bool {
    // SAFETY: reads thread-local state.
    unsafe { hwrun_accel_inference_mode_is_enabled() }
}

/// A live autocast scope (the state it replaced), restored by [`AutocastHandle::exit`] or on
/// drop. `!Send` like [`InferenceModeHandle`].
pub(super) struct AutocastHandle(Option<NonNull<c_void>>);

impl AutocastHandle {
    /// Restores the replaced state, reporting a failure (drop only logs it).
    pub(super) fn exit(mut self) -> Result<(), AccelError> {
        self.release()
    }

    fn release(&mut self) -> Result<(), AccelError> {
        match self.0.take() {
            // SAFETY: the pointer came from hwrun_accel_autocast_enter; `take` frees it once.
            Some(scope) => check("leaving autocast", unsafe {
                hwrun_accel_autocast_exit(scope.as_ptr())
            }),
            None => Ok(()),
        }
    }
}

impl Drop for AutocastHandle {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::error!("{e}");
        }
    }
}

/// Enters autocast on device type `device` (0 CPU, 1 CUDA) computing in ScalarType `dtype`.
pub(super) fn autocast_enter(
    device: c_int,
    dtype: c_int,
    enabled: bool,
) -> Result<AutocastHandle, AccelError> {
    let mut scope: *mut c_void = std::ptr::null_mut();
    // SAFETY: `scope` receives the saved state on success.
    check("entering autocast", unsafe {
        hwrun_accel_autocast_enter(device, dtype, enabled, &mut scope)
    })?;
    Ok(AutocastHandle(NonNull::new(scope)))
}

/// Whether autocast is on for device type `device`, and its ScalarType code.
pub(super) fn autocast_state(device: c_int) -> Result<(bool, c_int), AccelError> {
    let (mut enabled, mut dtype) = (false, 0);
    // SAFETY: reads thread-local state into the two locals.
    check("reading the autocast state", unsafe {
        hwrun_accel_autocast_state(device, &mut enabled, &mut dtype)
    })?;
    Ok((enabled, dtype))
}

pub(super) fn set_allow_tf32(allow: bool) -> Result<(), AccelError> {
    // SAFETY: sets process-wide ATen context flags.
    check("setting TF32", unsafe { hwrun_accel_set_allow_tf32(allow) })
}

pub(super) fn allow_tf32() -> Result<bool, AccelError> {
    let mut out = false;
    // SAFETY: reads process-wide ATen context flags.
    check("reading TF32", unsafe { hwrun_accel_allow_tf32(&mut out) })?;
    Ok(out)
}

pub(super) fn set_cudnn_benchmark(enabled: bool) -> Result<(), AccelError> {
    // SAFETY: sets a process-wide ATen context flag.
    check("setting cuDNN benchmark", unsafe {
        hwrun_accel_set_cudnn_benchmark(enabled)
    })
}

pub(super) fn cudnn_benchmark() -> Result<bool, AccelError> {
    let mut out = false;
    // SAFETY: reads a process-wide ATen context flag.
    check("reading cuDNN benchmark", unsafe {
        hwrun_accel_cudnn_benchmark(&mut out)
    })?;
    Ok(out)
}
