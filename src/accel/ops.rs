//! Tensor ops whose arguments tch's bindings drop.

use tch::Tensor;

use super::{ffi, AccelError};

/// `leaky_relu(x, negative_slope)` in one kernel, differentiable (tch's `leaky_relu` fixes the
/// slope at 0.01; DCGAN's discriminator uses 0.2).
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor, AccelError> {
    ffi::leaky_relu(x, negative_slope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    #[test]
    fn leaky_relu_uses_the_slope_and_backpropagates() {
        let x = Tensor::from_slice(&[-2.0f32, -0.5, 0.0, 3.0]).set_requires_grad(true);
        let y = leaky_relu(&x, 0.2).expect("runs");
        assert_eq!(
            Vec::<f32>::try_from(&y).expect("values"),
            vec![-0.4, -0.1, 0.0, 3.0]
        );
        y.sum(Kind::Float).backward();
        assert_eq!(
            Vec::<f32>::try_from(x.grad()).expect("values"),
            vec![0.2, 0.2, 0.2, 1.0]
        );
    }
}
