//! The Fréchet Inception Distance as pytorch-fid computes it, from Gaussian statistics of
//! features: `d² = |mu1 - mu2|² + Tr(S1) + Tr(S2) - 2 Tr(sqrt(S1 S2))`.
//!
//! Statistics are float64: the mean and the unbiased (`N - 1`) covariance of the feature rows,
//! as `np.mean(act, axis=0)` and `np.cov(act, rowvar=False)`. pytorch-fid takes the trace term
//! from `scipy.linalg.sqrtm(S1 @ S2)` (a Schur decomposition of a non-symmetric matrix, which
//! can come out complex); here it is `sum(sqrt(eig(S1^1/2 S2 S1^1/2)))` through two symmetric
//! eigendecompositions in f64 (`S1^1/2 S2 S1^1/2` is similar to `S1 S2`, so the eigenvalues and
//! the trace of the square root are the same), with eigenvalues clamped at 0 against rounding:
//! fast for 2048 dimensions and never complex.
//!
//! Statistics read and write pytorch-fid's `.npz` files (`mu`, `sigma`), so precomputed ones
//! can be brought along and hwrun's can be used with `python -m pytorch_fid`.

use camino::Utf8Path;
use tch::{Device, Kind, Tensor};

use crate::data::formats::npz::{self, NpyArray, NpzError};

/// Mean and covariance of features, f64 on the CPU.
#[derive(Debug)]
pub struct FidStatistics {
    /// `[D]`
    pub mu: Tensor,
    /// `[D, D]`
    pub sigma: Tensor,
    /// How many feature rows they came from, when known (not stored in `.npz` files).
    pub samples: Option<usize>,
}

/// Why statistics or a distance could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum FidError {
    #[error("FID statistics need at least 2 images, found {0}")]
    TooFewSamples(usize),
    #[error(
        "the statistics have different dimensions ({0} and {1}): compute both with the same `dims`"
    )]
    DimensionMismatch(i64, i64),
    #[error("{path}: `{name}` has shape {shape:?}, expected {expected}")]
    BadShape {
        path: String,
        name: &'static str,
        shape: Vec<usize>,
        expected: String,
    },
    #[error("the statistics contain NaN or infinite values{0}")]
    NotFinite(String),
    #[error(transparent)]
    Npz(#[from] NpzError),
    #[error("libtorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

impl FidStatistics {
    /// Mean and unbiased covariance of `features` (`[N, D]`, any float kind), in f64.
    pub fn of_features(features: &Tensor) -> Result<FidStatistics, FidError> {
        let x = features.to_device(Device::Cpu).to_kind(Kind::Double);
        let n = x.size()[0] as usize;
        if n < 2 {
            return Err(FidError::TooFewSamples(n));
        }
        let mu = x.mean_dim(0, false, Kind::Double);
        let centred = &x - mu.unsqueeze(0);
        let sigma = centred.transpose(0, 1).mm(&centred) / (n as f64 - 1.0);
        Ok(FidStatistics {
            mu,
            sigma,
            samples: Some(n),
        })
    }

    /// The feature dimension.
    pub fn dims(&self) -> i64 {
        self.mu.size()[0]
    }

    /// pytorch-fid's warning condition, in words: with fewer images than dimensions the
    /// covariance is singular and the distance is unreliable.
    pub fn few_samples_warning(&self) -> Option<String> {
        let n = self.samples?;
        let dims = self.dims() as usize;
        (n <= dims).then(|| {
            format!(
                "only {n} images for {dims}-dimensional features: their covariance has rank at most {} < {dims}, \
                 so it is singular and the FID is unreliable (biased and noisy; use more than {dims} images, or \
                 smaller `dims`). pytorch-fid computes it anyway (scipy's sqrtm of the singular product, adding \
                 1e-6 to both diagonals when that is not finite) and its README warns the same.",
                n - 1
            )
        })
    }

    /// Reads pytorch-fid's `.npz` statistics (`mu` `[D]`, `sigma` `[D, D]`).
    pub fn read_npz(path: &Utf8Path) -> Result<FidStatistics, FidError> {
        let mut arrays = npz::read_npz(path)?;
        let mu = npz::take_array(&mut arrays, "mu", path)?;
        let sigma = npz::take_array(&mut arrays, "sigma", path)?;
        let bad = |name, shape: &[usize], expected: String| FidError::BadShape {
            path: path.to_string(),
            name,
            shape: shape.to_vec(),
            expected,
        };
        let [d] = mu.shape[..] else {
            return Err(bad("mu", &mu.shape, "[D]".into()));
        };
        if sigma.shape != [d, d] {
            return Err(bad(
                "sigma",
                &sigma.shape,
                format!("[{d}, {d}] to match `mu`"),
            ));
        }
        Ok(FidStatistics {
            mu: Tensor::from_slice(&mu.data),
            sigma: Tensor::from_slice(&sigma.data).view([d as i64, d as i64]),
            samples: None,
        })
    }

    /// Writes them as `np.savez_compressed(path, mu=mu, sigma=sigma)` does.
    pub fn write_npz(&self, path: &Utf8Path) -> Result<(), FidError> {
        let d = self.dims() as usize;
        let mu = NpyArray {
            shape: vec![d],
            data: Vec::<f64>::try_from(&self.mu)?,
        };
        let sigma = NpyArray {
            shape: vec![d, d],
            data: Vec::<f64>::try_from(self.sigma.flatten(0, -1))?,
        };
        Ok(npz::write_npz(path, &[("mu", &mu), ("sigma", &sigma)])?)
    }
}

/// The Fréchet distance between two Gaussians given by their statistics.
pub fn frechet_distance(a: &FidStatistics, b: &FidStatistics) -> Result<f64, FidError> {
    if a.dims() != b.dims() {
        return Err(FidError::DimensionMismatch(a.dims(), b.dims()));
    }
    for (which, stats) in [("first", a), ("second", b)] {
        let finite = stats.mu.isfinite().all().int64_value(&[]) == 1
            && stats.sigma.isfinite().all().int64_value(&[]) == 1;
        if !finite {
            return Err(FidError::NotFinite(format!(" (the {which} set)")));
        }
    }
    let diff = &a.mu - &b.mu;
    let mean_term = diff.dot(&diff).double_value(&[]);
    let traces = a.sigma.trace().double_value(&[]) + b.sigma.trace().double_value(&[]);
    Ok(mean_term + traces - 2.0 * trace_sqrt_product(&a.sigma, &b.sigma)?)
}

/// `Tr(sqrt(S1 S2))` as `sum(sqrt(eig(S1^1/2 S2 S1^1/2)))`, negative eigenvalues (rounding of
/// singular covariances) clamped to 0.
fn trace_sqrt_product(s1: &Tensor, s2: &Tensor) -> Result<f64, FidError> {
    let (w1, v1) = symmetric(s1).f_linalg_eigh("L")?;
    let sqrt_s1 = (&v1 * w1.clamp_min(0.0).sqrt().unsqueeze(0)).mm(&v1.transpose(0, 1));
    let inner = symmetric(&sqrt_s1.mm(s2).mm(&sqrt_s1));
    let eigenvalues = inner.f_linalg_eigvalsh("L")?;
    Ok(eigenvalues
        .clamp_min(0.0)
        .sqrt()
        .sum(Kind::Double)
        .double_value(&[]))
}

/// `(m + mᵀ) / 2`: removes the rounding asymmetry before a symmetric eigensolver.
fn symmetric(m: &Tensor) -> Tensor {
    (m + m.transpose(0, 1)) / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mu: &[f64], sigma: &[f64]) -> FidStatistics {
        let d = mu.len() as i64;
        FidStatistics {
            mu: Tensor::from_slice(mu),
            sigma: Tensor::from_slice(sigma).view([d, d]),
            samples: None,
        }
    }

    #[test]
    fn distance_of_diagonal_gaussians_is_closed_form() {
        // Diagonal covariances: Tr(sqrt(S1 S2)) = sum(sqrt(s1_i s2_i)).
        let a = stats(&[0.0, 1.0], &[4.0, 0.0, 0.0, 1.0]);
        let b = stats(&[1.0, 1.0], &[1.0, 0.0, 0.0, 9.0]);
        let expected = 1.0 + (4.0 + 1.0) + (1.0 + 9.0) - 2.0 * (2.0 + 3.0);
        assert!((frechet_distance(&a, &b).unwrap() - expected).abs() < 1e-12);
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-12);
    }

    #[test]
    fn statistics_are_mean_and_unbiased_covariance() {
        let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 6.0, 5.0, 10.0]).view([3, 2]);
        let s = FidStatistics::of_features(&x).unwrap();
        assert_eq!(Vec::<f64>::try_from(&s.mu).unwrap(), vec![3.0, 6.0]);
        assert_eq!(
            Vec::<f64>::try_from(s.sigma.flatten(0, -1)).unwrap(),
            vec![4.0, 8.0, 8.0, 16.0]
        );
        assert!(s.few_samples_warning().is_none());
        let few =
            FidStatistics::of_features(&Tensor::ones([2, 5], (Kind::Float, Device::Cpu))).unwrap();
        assert!(few
            .few_samples_warning()
            .unwrap()
            .contains("only 2 images for 5-dimensional"));
        assert!(matches!(
            FidStatistics::of_features(&x.narrow(0, 0, 1)),
            Err(FidError::TooFewSamples(1))
        ));
    }

    #[test]
    fn npz_round_trip_and_dimension_check() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("s.npz");
        let a = stats(&[0.5, 1.5], &[2.0, 0.1, 0.1, 1.0]);
        a.write_npz(&path).unwrap();
        let back = FidStatistics::read_npz(&path).unwrap();
        assert_eq!(back.mu, a.mu);
        assert_eq!(back.sigma, a.sigma);
        let other = stats(&[0.0], &[1.0]);
        assert!(matches!(
            frechet_distance(&a, &other),
            Err(FidError::DimensionMismatch(2, 1))
        ));
    }
}
