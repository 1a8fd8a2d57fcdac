// The libtorch calls tch 0.26 does not expose (see src/accel/mod.rs), behind a C ABI.
//
// Every `at::Tensor*` is the heap object a `tch::Tensor` wraps (torch-sys's `tensor` type).
// Every fallible function returns NULL on success or a malloc'd error message (freed with
// hwrun_accel_free_error), so no C++ exception ever crosses into Rust.

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/InferenceMode.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

namespace {

using at::Tensor;

char* copy_message(const char* what) {
  return strdup(what);
}

template <typename F>
char* catching(F&& body) {
  try {
    body();
    return nullptr;
  } catch (const c10::Error& e) {
    // what_without_backtrace: the C++ backtrace means nothing to a Rust caller.
    return copy_message(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return copy_message(e.what());
  } catch (...) {
    return copy_message("unknown C++ exception");
  }
}

std::vector<Tensor> gather(Tensor* const* tensors, size_t len) {
  std::vector<Tensor> list;
  list.reserve(len);
  for (size_t i = 0; i < len; i++) {
    list.push_back(*tensors[i]);
  }
  return list;
}

// 0 = the default (row-major) layout, 1 = channels-last (NHWC strides for 4-d tensors).
at::MemoryFormat memory_format(int code) {
  switch (code) {
    case 0:
      return at::MemoryFormat::Contiguous;
    case 1:
      return at::MemoryFormat::ChannelsLast;
    default:
      throw std::invalid_argument("unknown memory format code " + std::to_string(code));
  }
}

at::DeviceType device_type(int code) {
  switch (code) {
    case 0:
      return at::kCPU;
    case 1:
      return at::kCUDA;
    default:
      throw std::invalid_argument("autocast supports CPU (0) and CUDA (1), not device code " + std::to_string(code));
  }
}

at::ScalarType autocast_dtype(int code) {
  auto dtype = static_cast<at::ScalarType>(code);
  if (dtype != at::kBFloat16 && dtype != at::kHalf) {
    throw std::invalid_argument(std::string("autocast computes in bfloat16 or float16, not ") + c10::toString(dtype));
  }
  return dtype;
}

// The kernels walk raw memory, so every state tensor must share its parameter's layout.
void check_same_layout(const char* what, const std::vector<Tensor>& params, const std::vector<Tensor>& other) {
  for (size_t i = 0; i < params.size(); i++) {
    TORCH_CHECK(
        other[i].sizes() == params[i].sizes() && other[i].strides() == params[i].strides(),
        what, "[", i, "] has sizes ", other[i].sizes(), " and strides ", other[i].strides(),
        " but its parameter has sizes ", params[i].sizes(), " and strides ", params[i].strides());
  }
}

// What torch.autocast's __enter__ saves, restored by its __exit__.
struct AutocastScope {
  at::DeviceType device;
  bool prev_enabled;
  at::ScalarType prev_dtype;
  bool prev_cache_enabled;
};

}  // namespace

extern "C" {

struct hwrun_tensor_list {
  Tensor* const* data;
  size_t len;
};

void hwrun_accel_free_error(char* message) {
  free(message);
}

// Counts the step in every `state_steps` tensor, then one call of at::_fused_adam_ (L2 weight
// decay) or at::_fused_adamw_ (decoupled) over every listed parameter, as PyTorch's
// Adam(fused=True) does per device and dtype.
char* hwrun_accel_fused_adam(
    hwrun_tensor_list params,
    hwrun_tensor_list grads,
    hwrun_tensor_list exp_avgs,
    hwrun_tensor_list exp_avg_sqs,
    hwrun_tensor_list max_exp_avg_sqs,
    hwrun_tensor_list state_steps,
    double lr,
    double beta1,
    double beta2,
    double weight_decay,
    double eps,
    bool amsgrad,
    bool maximize,
    bool decoupled) {
  return catching([&] {
    size_t n = params.len;
    TORCH_CHECK(
        grads.len == n && exp_avgs.len == n && exp_avg_sqs.len == n && state_steps.len == n,
        "fused Adam: ", n, " parameters but ", grads.len, " gradients, ", exp_avgs.len, " exp_avg, ",
        exp_avg_sqs.len, " exp_avg_sq and ", state_steps.len, " step tensors");
    TORCH_CHECK(
        max_exp_avg_sqs.len == (amsgrad ? n : 0), "fused Adam: ", max_exp_avg_sqs.len,
        " max_exp_avg_sq tensors for ", n, " parameters with amsgrad=", amsgrad);
    auto p = gather(params.data, params.len);
    auto g = gather(grads.data, grads.len);
    auto m = gather(exp_avgs.data, exp_avgs.len);
    auto v = gather(exp_avg_sqs.data, exp_avg_sqs.len);
    auto vmax = gather(max_exp_avg_sqs.data, max_exp_avg_sqs.len);
    auto steps = gather(state_steps.data, state_steps.len);
    for (size_t i = 0; i < n; i++) {
      TORCH_CHECK(p[i].is_non_overlapping_and_dense(), "fused Adam: parameter ", i, " is not dense");
    }
    check_same_layout("gradient", p, g);
    check_same_layout("exp_avg", p, m);
    check_same_layout("exp_avg_sq", p, v);
    if (amsgrad) {
      check_same_layout("max_exp_avg_sq", p, vmax);
    }
    at::NoGradGuard no_grad;
    at::_foreach_add_(steps, 1);
    if (decoupled) {
      at::_fused_adamw_(p, g, m, v, vmax, steps, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize);
    } else {
      at::_fused_adam_(p, g, m, v, vmax, steps, lr, beta1, beta2, weight_decay, eps, amsgrad, maximize);
    }
  });
}

// Sets every listed tensor's gradient to none (PyTorch's zero_grad(set_to_none=True)): the
// next backward then writes the gradient instead of adding it to zeros.
char* hwrun_accel_clear_grads(hwrun_tensor_list tensors) {
  return catching([&] {
    for (size_t i = 0; i < tensors.len; i++) {
      tensors.data[i]->mutable_grad().reset();
    }
  });
}

// A copy of `self` in `format` (`self` itself, shared, when it already is).
char* hwrun_accel_contiguous(const Tensor* self, int format, Tensor** out) {
  return catching([&] { *out = new Tensor(self->contiguous(memory_format(format))); });
}

char* hwrun_accel_is_contiguous(const Tensor* self, int format, bool* out) {
  return catching([&] { *out = self->is_contiguous(memory_format(format)); });
}

// Re-lays every listed 4-d tensor (and its gradient) in `format` in place: the tensor object
// keeps its identity, so optimizers and modules holding it see the new layout. Other ranks are
// left as they are. Writes how many tensors were converted to `converted`.
char* hwrun_accel_set_memory_format(hwrun_tensor_list tensors, int format, size_t* converted) {
  return catching([&] {
    auto fmt = memory_format(format);
    at::NoGradGuard no_grad;
    size_t count = 0;
    for (size_t i = 0; i < tensors.len; i++) {
      Tensor& t = *tensors.data[i];
      if (t.dim() != 4) {
        continue;
      }
      t.set_data(t.contiguous(fmt));
      Tensor& grad = t.mutable_grad();
      if (grad.defined()) {
        grad = grad.contiguous(fmt);
      }
      count++;
    }
    *converted = count;
  });
}

// at::leaky_relu with its slope (tch binds only the default 0.01), recorded by autograd.
char* hwrun_accel_leaky_relu(const Tensor* self, double negative_slope, Tensor** out) {
  return catching([&] { *out = new Tensor(at::leaky_relu(*self, negative_slope)); });
}

// c10::InferenceMode is a thread-local RAII guard: each one restores the state found at its
// creation, so guards must end on their thread in reverse order of creation.
char* hwrun_accel_inference_mode_enter(bool enabled, void** guard) {
  return catching([&] { *guard = new c10::InferenceMode(enabled); });
}

void hwrun_accel_inference_mode_exit(void* guard) {
  delete static_cast<c10::InferenceMode*>(guard);
}

bool hwrun_accel_inference_mode_is_enabled() {
  return c10::InferenceMode::is_enabled();
}

// torch.autocast(device, dtype, enabled)'s __enter__: save the device's state, set it, count
// one more nesting level. Thread-local like InferenceMode, with the same ordering rule.
char* hwrun_accel_autocast_enter(int device, int dtype, bool enabled, void** scope) {
  return catching([&] {
    auto type = device_type(device);
    auto compute = autocast_dtype(dtype);
    auto* saved = new AutocastScope{
        type, at::autocast::is_autocast_enabled(type), at::autocast::get_autocast_dtype(type),
        at::autocast::is_autocast_cache_enabled()};
    at::autocast::set_autocast_enabled(type, enabled);
    at::autocast::set_autocast_dtype(type, compute);
    at::autocast::increment_nesting();
    at::autocast::set_autocast_cache_enabled(true);
    *scope = saved;
  });
}

// torch.autocast's __exit__: the outermost scope drops the cached low-precision copies of the
// weights (they would go stale after the next optimizer step), then the saved state returns.
char* hwrun_accel_autocast_exit(void* scope) {
  auto* saved = static_cast<AutocastScope*>(scope);
  char* error = catching([&] {
    if (at::autocast::decrement_nesting() == 0) {
      at::autocast::clear_cache();
    }
    at::autocast::set_autocast_enabled(saved->device, saved->prev_enabled);
    at::autocast::set_autocast_dtype(saved->device, saved->prev_dtype);
    at::autocast::set_autocast_cache_enabled(saved->prev_cache_enabled);
  });
  delete saved;
  return error;
}

char* hwrun_accel_autocast_state(int device, bool* enabled, int* dtype) {
  return catching([&] {
    auto type = device_type(device);
    *enabled = at::autocast::is_autocast_enabled(type);
    *dtype = static_cast<int>(at::autocast::get_autocast_dtype(type));
  });
}

// Process-wide math settings for CUDA; plain ATen context setters, so they build and run
// without CUDA (where they have no effect).
char* hwrun_accel_set_allow_tf32(bool allow) {
  return catching([&] {
    at::globalContext().setAllowTF32CuBLAS(allow);
    at::globalContext().setAllowTF32CuDNN(allow);
  });
}

char* hwrun_accel_allow_tf32(bool* out) {
  return catching([&] { *out = at::globalContext().allowTF32CuBLAS() && at::globalContext().allowTF32CuDNN(); });
}

char* hwrun_accel_set_cudnn_benchmark(bool enabled) {
  return catching([&] { at::globalContext().setBenchmarkCuDNN(enabled); });
}

char* hwrun_accel_cudnn_benchmark(bool* out) {
  return catching([&] { *out = at::globalContext().benchmarkCuDNN(); });
}

}  // extern "C"
