//! Spectral normalisation (Miyato et al., "Spectral Normalization for Generative Adversarial
//! Networks", ICLR 2018) as `torch.nn.utils.spectral_norm` does it: the layer's weight is
//! `weight_orig / sigma`, sigma estimated by power iteration on `weight_orig` reshaped to
//! `(out, -1)` with persistent vectors `weight_u` and `weight_v`. In training each forward pass
//! runs one iteration and updates the vectors in place; in eval mode the stored vectors are used.

use tch::{nn, Tensor};

/// The `eps` PyTorch uses when normalising the power-iteration vectors.
const EPS: f64 = 1e-12;
/// Power iterations per training forward pass (PyTorch's default).
const ITERATIONS: usize = 1;

/// A weight under spectral normalisation.
pub struct SpectralNorm {
    weight_orig: Tensor,
    u: Tensor,
    v: Tensor,
    /// The dimension holding the outputs (0 for conv and linear weights; PyTorch uses 1 for
    /// transposed convs).
    dim: usize,
}

impl SpectralNorm {
    /// Creates `weight_orig` of `shape` with `init`, and `weight_u` / `weight_v` started as
    /// normalised random vectors (as PyTorch does).
    pub fn new(path: &nn::Path, shape: &[i64], init: nn::Init, dim: usize) -> Self {
        let weight_orig = path.var("weight_orig", shape, init);
        let (rows, cols) = matrix_shape(shape, dim);
        let u = path
            .var(
                "weight_u",
                &[rows],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
            .set_requires_grad(false);
        let v = path
            .var(
                "weight_v",
                &[cols],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: 1.0,
                },
            )
            .set_requires_grad(false);
        tch::no_grad(|| {
            let (mut u_, mut v_) = (u.shallow_clone(), v.shallow_clone());
            u_.copy_(&normalize(&u));
            v_.copy_(&normalize(&v));
        });
        SpectralNorm {
            weight_orig,
            u,
            v,
            dim,
        }
    }

    /// The normalised weight; in training, after one power iteration that updates `u` and `v`.
    pub fn weight(&self, train: bool) -> Tensor {
        let matrix = self.matrix();
        if train {
            tch::no_grad(|| {
                let (mut u, mut v) = (self.u.shallow_clone(), self.v.shallow_clone());
                for _ in 0..ITERATIONS {
                    v.copy_(&normalize(&matrix.detach().transpose(0, 1).mv(&u)));
                    u.copy_(&normalize(&matrix.detach().mv(&v)));
                }
            });
        }
        // sigma = u^T W v, differentiable in W with u and v held fixed (as PyTorch does).
        let sigma = self.u.dot(&matrix.mv(&self.v));
        &self.weight_orig / sigma
    }

    /// The current estimate of the largest singular value.
    pub fn sigma(&self) -> f64 {
        tch::no_grad(|| self.u.dot(&self.matrix().mv(&self.v)).double_value(&[]))
    }

    /// `weight_orig` as `(out, -1)`.
    fn matrix(&self) -> Tensor {
        let w = if self.dim == 0 {
            self.weight_orig.shallow_clone()
        } else {
            self.weight_orig.transpose(0, self.dim as i64)
        };
        let rows = w.size()[0];
        w.reshape([rows, -1])
    }
}

fn matrix_shape(shape: &[i64], dim: usize) -> (i64, i64) {
    let rows = shape[dim];
    let total: i64 = shape.iter().product();
    (rows, total / rows.max(1))
}

/// `torch.nn.functional.normalize(x, dim=0, eps=1e-12)` of a vector.
fn normalize(x: &Tensor) -> Tensor {
    x / x.norm().clamp_min(EPS)
}

/// A layer's weight, plain or spectrally normalised.
pub enum Weight {
    Plain(Tensor),
    Spectral(SpectralNorm),
}

impl Weight {
    pub fn get(&self, train: bool) -> Tensor {
        match self {
            Weight::Plain(weight) => weight.shallow_clone(),
            Weight::Spectral(spectral) => spectral.weight(train),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn power_iteration_converges_to_the_largest_singular_value() {
        tch::manual_seed(0);
        let vs = nn::VarStore::new(Device::Cpu);
        let sn = SpectralNorm::new(
            &vs.root(),
            &[6, 4, 3, 3],
            nn::Init::Randn {
                mean: 0.0,
                stdev: 1.0,
            },
            0,
        );
        for _ in 0..200 {
            let _ = sn.weight(true);
        }
        let largest_singular = |m: &Tensor| {
            m.tr()
                .mm(m)
                .linalg_eigvalsh("L")
                .max()
                .sqrt()
                .double_value(&[])
        };
        let largest = largest_singular(&sn.matrix().detach());
        assert!(
            (sn.sigma() - largest).abs() < 1e-3 * largest,
            "{} vs {largest}",
            sn.sigma()
        );
        let w = sn.weight(false);
        let normalised = largest_singular(&w.reshape([6, -1]));
        assert!((normalised - 1.0).abs() < 1e-3, "{normalised}");
        assert_eq!(sn.u.kind(), Kind::Float);
    }
}
