//! The Inception Score as torch-fidelity computes it (`isc_features_to_metric`): the rows of the
//! 1008-way logits (without the fc bias) are shuffled with `np.random.RandomState(2020)
//! .permutation(N)`, split into 10 consecutive parts (`i * N // 10 ..`), and each part scores
//! `exp(mean_x KL(p(y|x) || p(y)))` in f64, `p(y)` being the part's mean prediction; the result
//! is the mean and the population standard deviation of the 10 scores.
//!
//! The permutation is numpy's legacy one, reproduced here: MT19937 seeded with
//! `init_genrand(seed)`, then a Fisher-Yates shuffle of `0..N` from the end, each index drawn by
//! rejection from 32-bit outputs masked to the next power of two (numpy's `random_interval`).

use tch::{Device, Kind, Tensor};

/// torch-fidelity's defaults: `isc_splits`, `rng_seed`.
pub const SPLITS: usize = 10;
pub const SEED: u32 = 2020;

/// Mean and population standard deviation of the per-split scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InceptionScore {
    pub mean: f64,
    pub std: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum InceptionScoreError {
    #[error("the Inception Score needs at least {splits} images (one per split), found {found}")]
    TooFewImages { splits: usize, found: usize },
    #[error("libtorch failed: {0}")]
    Torch(#[from] tch::TchError),
}

/// The score of `logits` (`[N, C]`), shuffled with `seed`, in `splits` parts.
pub fn inception_score(
    logits: &Tensor,
    splits: usize,
    seed: u32,
) -> Result<InceptionScore, InceptionScoreError> {
    let n = logits.size()[0] as usize;
    if n < splits.max(1) {
        return Err(InceptionScoreError::TooFewImages { splits, found: n });
    }
    let order: Vec<i64> = numpy_permutation(n, seed)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    let features = logits
        .to_device(Device::Cpu)
        .index_select(0, &Tensor::from_slice(&order))
        .to_kind(Kind::Double);
    let p = features.softmax(1, Kind::Double);
    let log_p = features.log_softmax(1, Kind::Double);
    let scores: Vec<f64> = (0..splits)
        .map(|i| {
            let (start, end) = (i * n / splits, (i + 1) * n / splits);
            let p_part = p.narrow(0, start as i64, (end - start) as i64);
            let log_p_part = log_p.narrow(0, start as i64, (end - start) as i64);
            let q = p_part.mean_dim(0, true, Kind::Double);
            let kl = &p_part * (&log_p_part - q.log());
            kl.sum_dim_intlist(1, false, Kind::Double)
                .mean(Kind::Double)
                .exp()
                .double_value(&[])
        })
        .collect();
    let mean = scores.iter().sum::<f64>() / splits as f64;
    let variance = scores.iter().map(|s| (s - mean).powi(2)).sum::<f64>() / splits as f64;
    Ok(InceptionScore {
        mean,
        std: variance.sqrt(),
    })
}

/// `np.random.RandomState(seed).permutation(n)`.
pub fn numpy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut rng = Mt19937::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.interval(i as u64) as usize;
        order.swap(i, j);
    }
    order
}

/// The Mersenne Twister MT19937 (32-bit), as numpy's legacy generator.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            state[i] = 1_812_433_253u32
                .wrapping_mul(state[i - 1] ^ (state[i - 1] >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
            let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 == 1 {
                next ^= 0x9908_b0df;
            }
            self.state[i] = next;
        }
        self.index = 0;
    }

    fn next_u64(&mut self) -> u64 {
        (u64::from(self.next_u32()) << 32) | u64::from(self.next_u32())
    }

    /// A uniform integer in `0..=max` (numpy's `random_interval`).
    fn interval(&mut self, max: u64) -> u64 {
        if max == 0 {
            return 0;
        }
        let mut mask = max;
        for shift in [1, 2, 4, 8, 16, 32] {
            mask |= mask >> shift;
        }
        loop {
            let value = if max <= u64::from(u32::MAX) {
                u64::from(self.next_u32()) & mask
            } else {
                self.next_u64() & mask
            };
            if value <= max {
                return value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_equals_numpys() {
        // np.random.RandomState(2020).permutation(10) and (1000)[:8], numpy 2.4.
        assert_eq!(
            numpy_permutation(10, 2020),
            vec![2, 4, 9, 1, 5, 7, 6, 3, 8, 0]
        );
        assert_eq!(
            numpy_permutation(1000, 2020)[..8],
            [725, 986, 815, 656, 469, 76, 668, 286]
        );
    }

    #[test]
    fn raw_outputs_equal_numpys() {
        // np.random.RandomState(2020).randint(0, 2**32, size=3, dtype=np.uint64)
        let mut rng = Mt19937::new(2020);
        let draws: Vec<u32> = (0..3).map(|_| rng.next_u32()).collect();
        assert_eq!(draws, vec![4236026720, 639299976, 3751189827]);
    }

    #[test]
    fn uniform_predictions_score_one_and_confident_distinct_ones_score_the_class_count() {
        let uniform = Tensor::zeros([20, 4], (Kind::Float, Device::Cpu));
        let score = inception_score(&uniform, 2, SEED).unwrap();
        assert!(
            (score.mean - 1.0).abs() < 1e-12 && score.std.abs() < 1e-12,
            "{score:?}"
        );
        // Each split holds all 4 classes exactly once, predicted with certainty: score 4.
        let confident = Tensor::eye(4, (Kind::Float, Device::Cpu)) * 100.0;
        let score = inception_score(&confident, 1, SEED).unwrap();
        assert!((score.mean - 4.0).abs() < 1e-6, "{score:?}");
        assert!(matches!(
            inception_score(&uniform, 30, SEED),
            Err(InceptionScoreError::TooFewImages { .. })
        ));
    }
}
