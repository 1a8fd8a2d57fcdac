//! Interpolation between two noise vectors: spherical (slerp), which keeps the norm a Gaussian
//! sample would have, and linear, which shrinks it in the middle (and so gives washed-out DDIM
//! samples).
//!
//! slerp(z0, z1, a) = sin((1 - a) theta) / sin(theta) z0 + sin(a theta) / sin(theta) z1 with
//! theta = arccos(<z0, z1> / (|z0| |z1|)) over all elements, in f32 like the course's scripts.

use tch::{Kind, Tensor};

pub fn linear(z0: &Tensor, z1: &Tensor, alpha: f64) -> Tensor {
    z0 * (1.0 - alpha) + z1 * alpha
}

/// Falls back to [`linear`] when the vectors are (numerically) parallel.
pub fn slerp(z0: &Tensor, z1: &Tensor, alpha: f64) -> Tensor {
    let cosine = (z0 * z1).sum(Kind::Float) / (z0.norm() * z1.norm());
    let theta = cosine.clamp(-1.0, 1.0).acos();
    let sin_theta = theta.sin();
    if sin_theta.double_value(&[]).abs() < 1e-6 {
        return linear(z0, z1, alpha);
    }
    let w0 = (&theta * (1.0 - alpha)).sin() / &sin_theta;
    let w1 = (&theta * alpha).sin() / &sin_theta;
    z0 * w0 + z1 * w1
}

/// `alpha = 0, 1/(n-1), ..., 1`.
pub fn alphas(n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![0.0],
        _ => (0..n).map(|i| i as f64 / (n - 1) as f64).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slerp_of_orthogonal_unit_vectors_stays_on_the_circle() {
        let z0 = Tensor::from_slice(&[1.0f32, 0.0]);
        let z1 = Tensor::from_slice(&[0.0f32, 1.0]);
        let mid = slerp(&z0, &z1, 0.5);
        let h = std::f64::consts::FRAC_1_SQRT_2;
        assert!(mid.allclose(
            &Tensor::from_slice(&[h as f32, h as f32]),
            1e-6,
            1e-6,
            false
        ));
        assert!(slerp(&z0, &z1, 0.0).allclose(&z0, 1e-6, 1e-6, false));
        assert!(slerp(&z0, &z1, 1.0).allclose(&z1, 1e-6, 1e-6, false));
        assert!(linear(&z0, &z1, 0.5).allclose(
            &Tensor::from_slice(&[0.5f32, 0.5]),
            0.0,
            0.0,
            false
        ));
        assert_eq!(alphas(11)[1], 0.1);
    }
}
