//! The gradient reversal layer of DANN (Ganin & Lempitsky, <https://arxiv.org/abs/1409.7495>):
//! identity on the forward pass, gradient multiplied by `-lambda` on the backward pass.
//!
//! tch cannot define custom autograd functions, so the layer is written as
//! `detach(x) + (x - detach(x)) * -lambda`: the second term is exactly zero, so the output equals
//! `x` bit for bit, and its only path to `x` is the multiplication, so the gradient is exactly
//! `-lambda * grad`.

use tch::Tensor;

/// Identity forward, `-lambda * grad` backward.
pub fn reverse_gradient(xs: &Tensor, lambda: f64) -> Tensor {
    let detached = xs.detach();
    (xs - &detached) * (-lambda) + detached
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn forward_is_identity_and_backward_reverses_the_gradient() {
        tch::manual_seed(0);
        let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let upstream = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
        let lambda = 0.37;
        let y = reverse_gradient(&x, lambda);
        assert!(y.equal(&x), "forward must be the identity");
        (&y * &upstream).sum(Kind::Float).backward();
        let expected = &upstream * (-lambda);
        assert!(
            x.grad().equal(&expected),
            "backward must be exactly -lambda * grad"
        );
    }
}
