//! Channels-last (NHWC-strided) tensors for convolution nets.
//!
//! A conv net runs channels-last end to end when its 4-d weights are channels-last (convert the
//! var store once, *before* building the optimizer, so its state gets the same layout) and its
//! input batches are: convolutions, batch norm, pooling and pointwise ops then keep the layout,
//! and autograd gives every gradient its parameter's layout.

use std::ffi::c_int;

use tch::{nn, Tensor};

use super::{ffi, AccelError};

/// How a 4-d tensor's elements are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFormat {
    /// Row-major NCHW, what tch creates.
    Contiguous,
    /// NHWC strides with the NCHW shape, what oneDNN's kernels use natively.
    ChannelsLast,
}

impl MemoryFormat {
    /// The code the shim understands.
    pub(super) fn code(self) -> c_int {
        match self {
            MemoryFormat::Contiguous => 0,
            MemoryFormat::ChannelsLast => 1,
        }
    }
}

/// `tensor` laid out in `format` (a shallow copy when it already is). Fails for
/// channels-last on a tensor that is not 4-d.
pub fn to_format(tensor: &Tensor, format: MemoryFormat) -> Result<Tensor, AccelError> {
    ffi::contiguous(tensor, format)
}

/// `tensor` with channels-last strides; see [`to_format`].
pub fn to_channels_last(tensor: &Tensor) -> Result<Tensor, AccelError> {
    to_format(tensor, MemoryFormat::ChannelsLast)
}

/// A 4-d `x` with channels-last strides (NHWC in memory, the same values); other ranks as they
/// are. oneDNN's convolutions and poolings run natively in this layout, and it propagates
/// through a network.
pub fn channels_last(x: &Tensor) -> Tensor {
    if x.dim() != 4 {
        return x.shallow_clone();
    }
    x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether `tensor` is dense in `format` (`tensor.is_contiguous(memory_format=...)`).
pub fn is_in_format(tensor: &Tensor, format: MemoryFormat) -> Result<bool, AccelError> {
    ffi::is_contiguous(tensor, format)
}

/// Whether `tensor` is dense with channels-last strides.
pub fn is_channels_last(tensor: &Tensor) -> Result<bool, AccelError> {
    is_in_format(tensor, MemoryFormat::ChannelsLast)
}

/// Re-lays every 4-d variable of `vs` (convolution weights) in `format` in place, keeping the
/// variables' identity so modules holding them see the change; returns how many changed.
pub fn convert_vars(vs: &nn::VarStore, format: MemoryFormat) -> Result<usize, AccelError> {
    let vars = vs.variables();
    let tensors: Vec<&Tensor> = vars.values().collect();
    ffi::set_memory_format(&tensors, format)
}

/// [`convert_vars`] to channels-last.
pub fn vars_to_channels_last(vs: &nn::VarStore) -> Result<usize, AccelError> {
    convert_vars(vs, MemoryFormat::ChannelsLast)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::ModuleT;
    use tch::{Device, Kind};

    fn conv_net(vs: &nn::VarStore) -> nn::SequentialT {
        let root = vs.root();
        let conv = |name: &str, cin, cout| {
            nn::conv2d(
                &root / name,
                cin,
                cout,
                3,
                nn::ConvConfig {
                    padding: 1,
                    ..Default::default()
                },
            )
        };
        nn::seq_t()
            .add(conv("c1", 3, 16))
            .add(nn::batch_norm2d(&root / "bn1", 16, Default::default()))
            .add_fn(|x| x.relu().max_pool2d_default(2))
            .add(conv("c2", 16, 32))
            .add_fn(|x| x.relu().flatten(1, -1))
            .add(nn::linear(&root / "fc", 32 * 8 * 8, 10, Default::default()))
    }

    #[test]
    fn channels_last_conv_net_matches_contiguous_forward_and_gradients() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = conv_net(&vs);
        let x = Tensor::randn([8, 3, 16, 16], (Kind::Float, Device::Cpu));
        let run = |input: &Tensor| {
            let out = net.forward_t(input, true);
            vs.variables().values().for_each(|v| {
                let mut v = v.shallow_clone();
                v.zero_grad();
            });
            out.square().mean(Kind::Float).backward();
            let grad = vs.variables()["c1.weight"].grad().copy();
            (out, grad)
        };
        let (reference, reference_grad) = run(&x);

        assert_eq!(
            vars_to_channels_last(&vs).expect("converts"),
            2,
            "the two conv weights"
        );
        assert!(is_channels_last(&vs.variables()["c2.weight"]).expect("query"));
        let x_cl = to_channels_last(&x).expect("converts");
        assert!(
            is_channels_last(&x_cl).expect("query")
                && !is_in_format(&x_cl, MemoryFormat::Contiguous).expect("query")
        );
        let (out, grad) = run(&x_cl);
        assert!(
            is_channels_last(&grad).expect("query"),
            "the gradient follows its weight's layout"
        );
        let diff = (&out - &reference).abs().max().double_value(&[]);
        let grad_diff = (&grad - &reference_grad).abs().max().double_value(&[]);
        assert!(
            diff < 1e-5 && grad_diff < 1e-5,
            "output differs by {diff}, gradient by {grad_diff}"
        );
        // The linear layer's 2-d weight is left row-major.
        assert!(vs.variables()["fc.weight"].is_contiguous());
    }

    #[test]
    fn channels_last_of_a_3d_tensor_is_an_error_not_an_abort() {
        let t = Tensor::zeros([2, 3, 4], (Kind::Float, Device::Cpu));
        let err = to_channels_last(&t).expect_err("rank 3 has no channels-last layout");
        assert!(
            matches!(err, AccelError::Libtorch { .. }) && err.to_string().contains("rank 4"),
            "{err}"
        );
    }
}
