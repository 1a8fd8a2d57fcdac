//! Procedurally generated digit domains (mnist, mnistm, svhn, usps): the offline default data of
//! hwrun, mirroring the domains of the course's domain-adaptation homework without downloads.
//!
//! Digits 0-9 are drawn as pen strokes in several handwriting variants (`glyphs`), jittered,
//! slanted, rotated and elastically warped, then rasterised with anti-aliasing (`render`) and
//! composed per domain (`domains`) over procedural colour textures (`textures`). No font or
//! image files are read.
//!
//! Output contract (see [`Dataset`]): u8 `[N, C, H, W]`, planar, with `C x H x W` given by
//! [`DigitDomain::image_shape`] (mnist 1x28x28, mnistm 3x28x28, svhn 3x32x32, usps 1x16x16);
//! labels `0..10`, classes `"0"..="9"`, domain = the domain's name.
//!
//! Determinism: image `i` of `(domain, seed)` is drawn from its own ChaCha8 stream, keyed by
//! `(seed, domain)` with stream number `i`, so generation runs in parallel and the first `k`
//! images are the same for every `n >= k`. Labels are balanced: indices are grouped in blocks of
//! ten, and each block holds a random permutation of the digits (keyed like the images), so every
//! digit appears exactly `n / 10` times, plus at most one more for the last partial block.

mod domains;
mod glyphs;
mod render;
mod textures;

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::Dataset;

/// A generated digit domain, named in recipes in lowercase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DigitDomain {
    /// White handwritten digits on black, 1x28x28.
    Mnist,
    /// MNIST digits blended into colour textures, 3x28x28.
    Mnistm,
    /// Coloured house-number-like digits on cluttered plates, 3x32x32.
    Svhn,
    /// Thick, blurry handwritten digits filling 1x16x16.
    Usps,
}

/// A domain name that is none of the known ones.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown digit domain `{0}`: expected one of mnist, mnistm, svhn, usps")]
pub struct UnknownDomain(pub String);

impl DigitDomain {
    pub const ALL: [DigitDomain; 4] = [
        DigitDomain::Mnist,
        DigitDomain::Mnistm,
        DigitDomain::Svhn,
        DigitDomain::Usps,
    ];

    /// The recipe name, also used as the dataset's domain.
    pub fn name(self) -> &'static str {
        match self {
            DigitDomain::Mnist => "mnist",
            DigitDomain::Mnistm => "mnistm",
            DigitDomain::Svhn => "svhn",
            DigitDomain::Usps => "usps",
        }
    }

    /// `[C, H, W]` of one image.
    pub fn image_shape(self) -> [usize; 3] {
        match self {
            DigitDomain::Mnist => [1, 28, 28],
            DigitDomain::Mnistm => [3, 28, 28],
            DigitDomain::Svhn => [3, 32, 32],
            DigitDomain::Usps => [1, 16, 16],
        }
    }
}

impl fmt::Display for DigitDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigitDomain {
    type Err = UnknownDomain;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DigitDomain::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| UnknownDomain(s.to_owned()))
    }
}

/// The first `n` images of `domain` for `seed`.
pub fn generate(domain: DigitDomain, n: usize, seed: u64) -> Dataset {
    generate_range(domain, 0..n, seed)
}

/// Images `indices` of `domain` for `seed` (image `i` is the same whatever range contains it),
/// drawn in parallel.
pub fn generate_range(domain: DigitDomain, indices: Range<usize>, seed: u64) -> Dataset {
    let [c, h, w] = domain.image_shape();
    let streams = Streams::new(seed, domain);
    let mut images = vec![0u8; indices.len() * c * h * w];
    let labels: Vec<i64> = images
        .par_chunks_mut(c * h * w)
        .enumerate()
        .map(|(offset, out)| {
            let index = indices.start + offset;
            let digit = streams.label(index);
            domains::draw(domain, digit, &mut streams.image_rng(index), out);
            i64::from(digit)
        })
        .collect();
    Dataset {
        images,
        shape: [indices.len(), c, h, w],
        labels,
        classes: Dataset::digit_classes(),
        domain: domain.name().to_owned(),
    }
}

/// The random streams of one `(seed, domain)`: one ChaCha8 key for images, one for labels.
struct Streams {
    images: [u8; 32],
    labels: [u8; 32],
}

impl Streams {
    fn new(seed: u64, domain: DigitDomain) -> Self {
        let key = |purpose: &str| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(b"hwrun.synthetic.v1");
            hasher.update(&seed.to_le_bytes());
            hasher.update(domain.name().as_bytes());
            hasher.update(purpose.as_bytes());
            *hasher.finalize().as_bytes()
        };
        Streams {
            images: key("images"),
            labels: key("labels"),
        }
    }

    fn image_rng(&self, index: usize) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::from_seed(self.images);
        rng.set_stream(index as u64);
        rng
    }

    /// The digit of image `index`: position `index % 10` of its block's permutation.
    fn label(&self, index: usize) -> u8 {
        let mut rng = ChaCha8Rng::from_seed(self.labels);
        rng.set_stream((index / 10) as u64);
        let mut block: [u8; 10] = std::array::from_fn(|d| d as u8);
        block.shuffle(&mut rng);
        block[index % 10]
    }
}

/// A normal sample with mean 0 (Box-Muller; `rand` alone has no normal distribution).
fn normal<R: Rng>(rng: &mut R, sd: f32) -> f32 {
    let u1: f32 = 1.0 - rng.random::<f32>();
    let u2: f32 = rng.random();
    sd * (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
}

/// Cheap per-pixel noise (SplitMix64) seeded from an image's stream: grain needs thousands of
/// samples per image, where ChaCha plus Box-Muller would dominate the generation time.
struct Grain(u64);

impl Grain {
    fn new<R: Rng>(rng: &mut R) -> Self {
        Grain(rng.random())
    }

    fn unit(&mut self) -> f32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z >> 40) as f32 / (1u32 << 24) as f32
    }

    /// Zero-mean noise with standard deviation `sd` (triangular: the sum of two uniforms).
    fn sample(&mut self, sd: f32) -> f32 {
        (self.unit() + self.unit() - 1.0) * sd * 6f32.sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean over images of the per-pixel variance across channels.
    fn channel_spread(dataset: &Dataset) -> f64 {
        let plane = dataset.shape[2] * dataset.shape[3];
        let mut total = 0.0;
        for i in 0..dataset.len() {
            let image = dataset.image(i);
            for p in 0..plane {
                let v: Vec<f64> = (0..3).map(|c| f64::from(image[c * plane + p])).collect();
                let mean = v.iter().sum::<f64>() / 3.0;
                total += v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
            }
        }
        total / (dataset.len() * plane) as f64
    }

    #[test]
    fn same_seed_same_bytes_different_seed_different() {
        for domain in DigitDomain::ALL {
            let a = generate(domain, 30, 7);
            assert_eq!(a, generate(domain, 30, 7), "{domain}");
            assert_ne!(a.images, generate(domain, 30, 8).images, "{domain}");
        }
    }

    #[test]
    fn a_prefix_does_not_depend_on_n() {
        let long = generate(DigitDomain::Svhn, 40, 1);
        assert_eq!(
            generate(DigitDomain::Svhn, 25, 1),
            long.select(&(0..25).collect::<Vec<_>>())
        );
        let tail = generate_range(DigitDomain::Svhn, 25..40, 1);
        assert_eq!(tail, long.select(&(25..40).collect::<Vec<_>>()));
    }

    #[test]
    fn shapes_classes_and_domain_names() {
        for domain in DigitDomain::ALL {
            let dataset = generate(domain, 3, 0);
            let [c, h, w] = domain.image_shape();
            assert_eq!(dataset.shape, [3, c, h, w]);
            assert_eq!(dataset.images.len(), 3 * c * h * w);
            assert_eq!(dataset.classes, Dataset::digit_classes());
            assert_eq!(dataset.domain, domain.name());
        }
        assert_eq!(DigitDomain::Mnistm.image_shape(), [3, 28, 28]);
        assert_eq!(DigitDomain::Svhn.image_shape(), [3, 32, 32]);
    }

    #[test]
    fn labels_are_balanced() {
        let dataset = generate(DigitDomain::Usps, 1005, 3);
        let counts = dataset.class_counts();
        assert!(counts.iter().all(|&c| c == 100 || c == 101), "{counts:?}");
        assert_eq!(counts.iter().sum::<usize>(), 1005);
        let first_block: Vec<i64> = dataset.labels[..10].to_vec();
        assert_ne!(
            first_block,
            (0..10).collect::<Vec<_>>(),
            "labels should be shuffled"
        );
    }

    #[test]
    fn colour_domains_are_coloured_and_grey_ones_are_not() {
        assert!(channel_spread(&generate(DigitDomain::Mnistm, 50, 0)) > 200.0);
        assert!(channel_spread(&generate(DigitDomain::Svhn, 50, 0)) > 100.0);
        assert_eq!(DigitDomain::Mnist.image_shape()[0], 1);
        assert_eq!(DigitDomain::Usps.image_shape()[0], 1);
    }

    #[test]
    fn mnist_is_white_ink_on_black() {
        let dataset = generate(DigitDomain::Mnist, 50, 0);
        for i in 0..dataset.len() {
            let image = dataset.image(i);
            let corners = [0, 27, 27 * 28, 28 * 28 - 1];
            assert!(
                corners.iter().all(|&p| image[p] == 0),
                "image {i} has a lit corner"
            );
            let ink = image.iter().filter(|&&v| v > 128).count();
            assert!(
                (30..400).contains(&ink),
                "image {i} has {ink} bright pixels"
            );
            assert_eq!(image.iter().max(), Some(&255));
        }
    }

    #[test]
    fn domain_names_parse() {
        for domain in DigitDomain::ALL {
            assert_eq!(domain.name().parse::<DigitDomain>(), Ok(domain));
            let json = serde_json::to_string(&domain).unwrap();
            assert_eq!(json, format!("\"{}\"", domain.name()));
        }
        let err = "mnist-m".parse::<DigitDomain>().unwrap_err();
        assert!(err.to_string().contains("mnistm"), "{err}");
    }

    /// Prints generation times for 100k images per domain:
    /// `cargo test --release --lib data::synthetic -- --ignored --nocapture generation_speed`.
    /// CPU time so far of this process in seconds (Linux: utime + stime from /proc, 100 Hz),
    /// so timings stay meaningful while other builds share the machine.
    fn cpu_seconds() -> f64 {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        (ticks(11) + ticks(12)) / 100.0
    }

    #[test]
    #[ignore]
    fn generation_speed() {
        for domain in DigitDomain::ALL {
            let (start, cpu) = (std::time::Instant::now(), cpu_seconds());
            let dataset = generate(domain, 100_000, 0);
            let wall = start.elapsed().as_secs_f64();
            println!(
                "{domain}: {} images in {wall:.2}s wall, {:.2}s CPU",
                dataset.len(),
                cpu_seconds() - cpu
            );
        }
    }

    /// Writes a 10x10 grid of samples per domain to the temp dir, for eyeballing:
    /// `cargo test --release --lib data::synthetic -- --ignored write_sample_grids`.
    #[test]
    #[ignore]
    fn write_sample_grids() {
        for domain in DigitDomain::ALL {
            let dataset = generate(domain, 100, 0);
            let [c, h, w] = domain.image_shape();
            let (scale, gap) = (4, 2);
            let side = 10 * (w * scale + gap);
            let mut grid = image::RgbImage::new(side as u32, side as u32);
            for i in 0..100 {
                let image = dataset.image(i);
                let (gx, gy) = ((i % 10) * (w * scale + gap), (i / 10) * (h * scale + gap));
                for y in 0..h * scale {
                    for x in 0..w * scale {
                        let p = (y / scale) * w + x / scale;
                        let rgb: Vec<u8> = (0..3).map(|ch| image[(ch % c) * h * w + p]).collect();
                        grid.put_pixel(
                            (gx + x) as u32,
                            (gy + y) as u32,
                            image::Rgb([rgb[0], rgb[1], rgb[2]]),
                        );
                    }
                }
            }
            let path = std::env::temp_dir().join(format!("hwrun_synthetic_{domain}.png"));
            grid.save(&path).unwrap();
            println!("{}: labels {:?}", path.display(), &dataset.labels[..10]);
        }
    }
}
