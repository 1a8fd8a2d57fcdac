//! In-memory batching: a dataset stays on the device as its u8 `[N, C, H, W]` tensor and each
//! batch is gathered (`index_select`), converted to f32 and normalised in a few tensor ops, so the
//! hot loop does no per-sample work in Rust.
//!
//! Normalisation is per dataset: the per-channel mean and std of the pixels (scaled to `[0, 1]`)
//! of each training set, saved with the model so evaluation uses the same numbers.
//!
//! Images whose shape differs from the model's input are converted per batch, after
//! normalisation (both steps are affine per channel, so the order does not matter): greyscale is
//! repeated to three channels (colour is averaged to one when the model takes greyscale), then the
//! image is resized with bilinear interpolation (`align_corners=False`, no antialiasing, like
//! `torch.nn.functional.interpolate`) to the model's `image_size`. USPS `1x16x16` thus feeds an
//! MNIST-M `3x28x28` model.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use std::collections::HashMap;

use super::state::{StateError, TrainingState};
use crate::accel::memory_format::{channels_last, MemoryFormat};
use crate::data::Dataset;

/// The std used for a channel whose pixels are all equal, to avoid dividing by zero.
const FLAT_CHANNEL_STD: f64 = 1.0;

/// Per-channel statistics of one dataset's pixels in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// The dataset's domain, which is how evaluation finds the statistics again.
    pub domain: String,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Normalisation {
    /// Mean and (population) std per channel, from exact per-channel pixel histograms.
    pub fn of(dataset: &Dataset) -> Self {
        let [_, channels, height, width] = dataset.shape;
        let plane = height * width;
        let mut histograms = vec![[0u64; 256]; channels];
        if plane > 0 {
            for (index, chunk) in dataset.images.chunks(plane).enumerate() {
                let histogram = &mut histograms[index % channels];
                for &pixel in chunk {
                    histogram[pixel as usize] += 1;
                }
            }
        }
        let (mean, std) = histograms.iter().map(moments).unzip();
        Normalisation {
            domain: dataset.domain.clone(),
            mean,
            std,
        }
    }
}

/// Mean and std of the values `v / 255` counted in `histogram`.
fn moments(histogram: &[u64; 256]) -> (f64, f64) {
    let count: u64 = histogram.iter().sum();
    if count == 0 {
        return (0.0, FLAT_CHANNEL_STD);
    }
    let value = |v: usize| v as f64 / 255.0;
    let mean = histogram
        .iter()
        .enumerate()
        .map(|(v, &c)| value(v) * c as f64)
        .sum::<f64>()
        / count as f64;
    let var = histogram
        .iter()
        .enumerate()
        .map(|(v, &c)| (value(v) - mean).powi(2) * c as f64)
        .sum::<f64>()
        / count as f64;
    let std = var.sqrt();
    (mean, if std > 0.0 { std } else { FLAT_CHANNEL_STD })
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "dataset `{domain}` has {channels} channels but its normalisation statistics have {stats}"
    )]
    NormalisationChannels {
        domain: String,
        channels: usize,
        stats: usize,
    },
    #[error("dataset `{domain}` has {channels} channels; the model takes {model} and only 1 <-> 3 conversions exist")]
    Channels {
        domain: String,
        channels: usize,
        model: i64,
    },
}

/// The input a model expects: channels and square size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFormat {
    pub channels: i64,
    pub image_size: i64,
}

/// What a domain-adaptation method (DANN, ADDA) draws its batches from: the labelled source set
/// and the unlabelled target set, each with its own order.
pub struct AdaptationData {
    pub source: DeviceDataset,
    pub target: DeviceDataset,
    /// Over the source set; one pass is one epoch.
    pub source_order: IndexStream,
    /// Over the target set, with the same batch size.
    pub target_order: IndexStream,
}

/// One dataset on the device, ready to be batched for a model.
pub struct DeviceDataset {
    images: Tensor,
    labels: Tensor,
    /// `1 / (255 std)` per channel, `[1, C, 1, 1]`.
    scale: Tensor,
    /// `-mean / std` per channel, `[1, C, 1, 1]`.
    shift: Tensor,
    format: InputFormat,
    /// The batches' memory layout, channels-last unless [`DeviceDataset::in_layout`] says otherwise.
    layout: MemoryFormat,
    len: usize,
    shape: [usize; 4],
}

impl DeviceDataset {
    /// Moves `dataset` to `device`, to be normalised with `norm` and converted to `format`.
    pub fn new(
        dataset: &Dataset,
        norm: &Normalisation,
        format: InputFormat,
        device: Device,
    ) -> Result<Self, BatchError> {
        let channels = dataset.shape[1] as i64;
        if norm.mean.len() != dataset.shape[1] || norm.std.len() != dataset.shape[1] {
            return Err(BatchError::NormalisationChannels {
                domain: dataset.domain.clone(),
                channels: dataset.shape[1],
                stats: norm.mean.len(),
            });
        }
        if !matches!(
            (channels, format.channels),
            (1, 1) | (3, 3) | (1, 3) | (3, 1)
        ) {
            return Err(BatchError::Channels {
                domain: dataset.domain.clone(),
                channels: dataset.shape[1],
                model: format.channels,
            });
        }
        let per_channel = |values: Vec<f64>| {
            Tensor::from_slice(&values)
                .to_kind(Kind::Float)
                .reshape([1, channels, 1, 1])
                .to_device(device)
        };
        let scale = per_channel(norm.std.iter().map(|s| 1.0 / (255.0 * s)).collect());
        let shift = per_channel(
            norm.mean
                .iter()
                .zip(&norm.std)
                .map(|(m, s)| -m / s)
                .collect(),
        );
        Ok(DeviceDataset {
            images: dataset.images_tensor().to_device(device),
            labels: dataset.labels_tensor().to_device(device),
            scale,
            shift,
            format,
            layout: MemoryFormat::ChannelsLast,
            len: dataset.len(),
            shape: dataset.shape,
        })
    }

    /// The same data, batched in `layout` (the layout the model's weights are in).
    pub fn in_layout(self, layout: MemoryFormat) -> Self {
        DeviceDataset { layout, ..self }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `[C, H, W]` of the stored images.
    pub fn image_shape(&self) -> [usize; 3] {
        [self.shape[1], self.shape[2], self.shape[3]]
    }

    /// All labels, `[N]` i64 on the device.
    pub fn labels(&self) -> &Tensor {
        &self.labels
    }

    /// Images at `index` (i64 `[b]` on the device), as normalised f32 `[b, channels, size, size]`.
    pub fn images(&self, index: &Tensor) -> Tensor {
        let x = self.images.index_select(0, index).to_kind(Kind::Float) * &self.scale + &self.shift;
        convert(x, self.format, self.layout)
    }

    /// Labels at `index`, `[b]`.
    pub fn labels_at(&self, index: &Tensor) -> Tensor {
        self.labels.index_select(0, index)
    }

    /// Images `start..start+len` in order, converted like [`DeviceDataset::images`].
    pub fn images_range(&self, start: usize, len: usize) -> Tensor {
        let x = self
            .images
            .narrow(0, start as i64, len as i64)
            .to_kind(Kind::Float)
            * &self.scale
            + &self.shift;
        convert(x, self.format, self.layout)
    }
}

/// Adapts channels, then size, of normalised `[b, c, h, w]` images to `format`, laid out in
/// `layout`.
fn convert(x: Tensor, format: InputFormat, layout: MemoryFormat) -> Tensor {
    let size = x.size();
    let x = match (size[1], format.channels) {
        // (b, 1, h, w) -> (b, 3, h, w)
        (1, 3) => x.repeat([1, 3, 1, 1]),
        // (b, 3, h, w) -> (b, 1, h, w)
        (3, 1) => x.mean_dim(1, true, Kind::Float),
        _ => x,
    };
    let x = if size[2] == format.image_size && size[3] == format.image_size {
        x
    } else {
        x.upsample_bilinear2d([format.image_size, format.image_size], false, None, None)
    };
    match layout {
        MemoryFormat::ChannelsLast => channels_last(&x),
        MemoryFormat::Contiguous => x.contiguous(),
    }
}

/// An endless stream of index batches over `0..n`: each pass is a fresh seeded shuffle and the
/// last partial batch of a pass is dropped, so every batch has the same size.
pub struct IndexStream {
    order: Vec<i64>,
    position: usize,
    batch: usize,
    rng: ChaCha8Rng,
    device: Device,
}

impl IndexStream {
    /// `batch` must be in `1..=n` (see [`effective_batch`]).
    pub fn new(n: usize, batch: usize, seed: u64, device: Device) -> Self {
        let mut stream = IndexStream {
            order: (0..n as i64).collect(),
            position: 0,
            batch: batch.clamp(1, n.max(1)),
            rng: ChaCha8Rng::seed_from_u64(seed),
            device,
        };
        stream.order.shuffle(&mut stream.rng);
        stream
    }

    /// Batches in one pass over the data.
    pub fn batches_per_pass(&self) -> usize {
        (self.order.len() / self.batch).max(1)
    }

    /// The next `batch` indices, `[batch]` i64 on the device.
    pub fn next_batch(&mut self) -> Tensor {
        if self.position + self.batch > self.order.len() {
            self.order.shuffle(&mut self.rng);
            self.position = 0;
        }
        let slice = &self.order[self.position..self.position + self.batch];
        self.position += self.batch;
        Tensor::from_slice(slice).to_device(self.device)
    }

    /// The stream's position (current order, offset in it, generator position) under `name`.
    pub fn save_state(&self, name: &str, state: &mut TrainingState) {
        let word = self.rng.get_word_pos();
        let cursor = [
            self.position as i64,
            (word >> 64) as i64,
            word as u64 as i64,
        ];
        state.insert(format!("{name}.order"), Tensor::from_slice(&self.order));
        state.insert(format!("{name}.cursor"), Tensor::from_slice(&cursor));
    }

    /// Continues from a position saved by [`IndexStream::save_state`].
    pub fn load_state(
        &mut self,
        name: &str,
        state: &HashMap<String, Tensor>,
    ) -> Result<(), StateError> {
        let get = |key: String| state.get(&key).ok_or(StateError::Missing(key));
        let order = Vec::<i64>::try_from(get(format!("{name}.order"))?).unwrap_or_default();
        let cursor = Vec::<i64>::try_from(get(format!("{name}.cursor"))?).unwrap_or_default();
        if order.len() != self.order.len() || cursor.len() != 3 {
            return Err(StateError::Shape {
                name: format!("{name}.order"),
                found: vec![order.len() as i64],
                expected: vec![self.order.len() as i64],
            });
        }
        self.order = order;
        self.position = cursor[0] as usize;
        self.rng
            .set_word_pos(((cursor[1] as u64 as u128) << 64) | cursor[2] as u64 as u128);
        Ok(())
    }
}

/// The batch size actually used: the requested one, but no larger than the smallest dataset.
pub fn effective_batch(requested: usize, sizes: &[usize]) -> usize {
    sizes.iter().copied().fold(requested, usize::min).max(1)
}

/// A seed for the data order of one stream (`stream` tells source and target apart).
pub fn stream_seed(seed: u64, stream: u64) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(channels: usize, size: usize, pixels: Vec<u8>) -> Dataset {
        let n = pixels.len() / (channels * size * size);
        Dataset::new(
            pixels,
            [n, channels, size, size],
            vec![0; n],
            Dataset::digit_classes(),
            "d",
        )
        .unwrap()
    }

    #[test]
    fn normalisation_is_per_channel() {
        // Two 1x1 RGB images: channel 0 is 0 and 255, channel 1 always 51, channel 2 always 0.
        let norm = Normalisation::of(&dataset(3, 1, vec![0, 51, 0, 255, 51, 0]));
        assert_eq!(norm.mean, [0.5, 0.2, 0.0]);
        assert_eq!(norm.std[0], 0.5);
        assert_eq!(norm.std[1], FLAT_CHANNEL_STD);
    }

    #[test]
    fn batches_are_normalised_and_converted_to_the_model_input() {
        let data = dataset(1, 2, vec![0, 255, 255, 0]);
        let norm = Normalisation::of(&data);
        let format = InputFormat {
            channels: 3,
            image_size: 4,
        };
        let domain = DeviceDataset::new(&data, &norm, format, Device::Cpu).unwrap();
        let x = domain.images(&Tensor::from_slice(&[0i64]));
        assert_eq!(x.size(), [1, 3, 4, 4]);
        // Normalised to -1/+1; bilinear resizing keeps the extremes in the corners.
        assert_eq!(x.double_value(&[0, 2, 0, 0]), -1.0);
        assert_eq!(x.double_value(&[0, 1, 0, 3]), 1.0);
    }

    #[test]
    fn batches_come_in_the_requested_layout_with_the_same_values() {
        let data = dataset(3, 2, (0..24).map(|v| v * 10).collect());
        let norm = Normalisation::of(&data);
        let format = InputFormat {
            channels: 3,
            image_size: 2,
        };
        let index = Tensor::from_slice(&[1i64, 0]);
        let nhwc = DeviceDataset::new(&data, &norm, format, Device::Cpu).unwrap();
        let nchw = DeviceDataset::new(&data, &norm, format, Device::Cpu)
            .unwrap()
            .in_layout(MemoryFormat::Contiguous);
        let (a, b) = (nhwc.images(&index), nchw.images(&index));
        assert!(crate::accel::memory_format::is_channels_last(&a).unwrap());
        assert!(b.is_contiguous());
        assert!(a.equal(&b));
    }

    #[test]
    fn index_stream_is_seeded_and_covers_each_pass() {
        let mut a = IndexStream::new(10, 3, 7, Device::Cpu);
        let mut b = IndexStream::new(10, 3, 7, Device::Cpu);
        assert_eq!(a.batches_per_pass(), 3);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let batch = a.next_batch();
            assert!(batch.equal(&b.next_batch()));
            seen.extend(Vec::<i64>::try_from(&batch).unwrap());
        }
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9, "one pass never repeats an index");
    }
}
