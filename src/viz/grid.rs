//! Generated images as files: one image as PNG with torchvision's `save_image` rounding, and
//! grids laid out as torchvision's `make_grid` does (images in rows of `nrow`, `padding` pixels
//! of `pad_value` around each), so grids compare pixel for pixel with the course's scripts.

use camino::Utf8Path;
use tch::{Kind, Tensor};

use super::{create_parent, draw_error, VizError};

/// How a float image becomes bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Values already in `[0, 1]` (clamped).
    Unit,
    /// Values in `[-1, 1]` (a tanh generator, a diffusion sample), mapped to `[0, 1]` and clamped.
    Symmetric,
    /// Each image scaled by its own min and max over all channels and pixels.
    MinMax,
}

/// `[N, C, H, W]` (or `[C, H, W]`) float images scaled to `[0, 1]` per `scaling`.
pub fn to_unit(images: &Tensor, scaling: Scaling) -> Tensor {
    let x = images.to_kind(Kind::Float);
    match scaling {
        Scaling::Unit => x.clamp(0.0, 1.0),
        Scaling::Symmetric => ((x + 1.0) / 2.0).clamp(0.0, 1.0),
        Scaling::MinMax => {
            let batched = if x.dim() == 3 { x.unsqueeze(0) } else { x };
            let n = batched.size()[0];
            // (n, c, h, w) -> (n, c*h*w) for the per-image extremes
            let flat = batched.reshape([n, -1]);
            let low = flat.amin(&[1i64][..], true).reshape([n, 1, 1, 1]);
            let high = flat.amax(&[1i64][..], true).reshape([n, 1, 1, 1]);
            let scaled = (&batched - &low) / (high - &low).clamp_min(1e-12);
            if images.dim() == 3 {
                scaled.squeeze_dim(0)
            } else {
                scaled
            }
        }
    }
}

/// `[C, H, W]` in `[0, 1]` -> interleaved u8 pixels as torchvision's `save_image` rounds them:
/// `trunc(clamp(x * 255 + 0.5, 0, 255))`.
pub fn to_bytes(image: &Tensor) -> Vec<u8> {
    let bytes = (image.to_kind(Kind::Float) * 255.0 + 0.5)
        .clamp(0.0, 255.0)
        .to_kind(Kind::Uint8);
    // (c, h, w) -> (h, w, c)
    let interleaved = bytes
        .permute([1, 2, 0])
        .contiguous()
        .to_device(tch::Device::Cpu);
    Vec::<u8>::try_from(interleaved.flatten(0, -1)).unwrap_or_default()
}

/// Writes a `[C, H, W]` image in `[0, 1]` (C = 1 or 3) as PNG.
pub fn save_png(image: &Tensor, path: &Utf8Path) -> Result<(), VizError> {
    create_parent(path)?;
    let size = image.size();
    let (channels, height, width) = (size[0], size[1] as u32, size[2] as u32);
    let colour = match channels {
        1 => image::ExtendedColorType::L8,
        3 => image::ExtendedColorType::Rgb8,
        other => {
            return Err(VizError::Data {
                path: path.to_owned(),
                message: format!("{other} channels; PNG needs 1 or 3"),
            })
        }
    };
    image::save_buffer(path, &to_bytes(image), width, height, colour)
        .map_err(|e| draw_error(path, e))
}

/// torchvision's `make_grid(images, nrow, padding, pad_value)`: `[N, C, H, W]` -> `[C, H', W']`
/// with `nrow` images per row; greyscale images become three channels, like torchvision's.
pub fn make_grid(images: &Tensor, nrow: i64, padding: i64, pad_value: f64) -> Tensor {
    let images = if images.size()[1] == 1 {
        images.repeat([1, 3, 1, 1])
    } else {
        images.shallow_clone()
    };
    let size = images.size();
    let (n, c, h, w) = (size[0], size[1], size[2], size[3]);
    let columns = nrow.min(n).max(1);
    let rows = (n + columns - 1) / columns;
    let (cell_h, cell_w) = (h + padding, w + padding);
    let grid = Tensor::full(
        [c, rows * cell_h + padding, columns * cell_w + padding],
        pad_value,
        (images.kind(), images.device()),
    );
    for index in 0..n {
        let (row, column) = (index / columns, index % columns);
        grid.narrow(1, row * cell_h + padding, h)
            .narrow(2, column * cell_w + padding, w)
            .copy_(&images.get(index));
    }
    grid
}

/// Writes `[N, C, H, W]` images in `[0, 1]` as one grid PNG of `nrow` images per row.
pub fn save_grid(images: &Tensor, nrow: i64, path: &Utf8Path) -> Result<(), VizError> {
    save_png(&make_grid(images, nrow, 2, 0.0), path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn grids_lay_images_out_like_torchvision() {
        let images = Tensor::ones([5, 1, 2, 3], (Kind::Float, Device::Cpu));
        let grid = make_grid(&images, 2, 2, 0.0);
        // 3 rows of 2: height 3*(2+2)+2, width 2*(3+2)+2
        assert_eq!(grid.size(), [3, 14, 12]);
        assert_eq!(grid.double_value(&[0, 2, 2]), 1.0);
        assert_eq!(grid.double_value(&[0, 0, 0]), 0.0);
        assert_eq!(
            grid.double_value(&[0, 10, 7]),
            0.0,
            "the sixth cell stays padding"
        );
    }

    #[test]
    fn bytes_round_like_save_image_and_min_max_scales_per_image() {
        let image = Tensor::from_slice(&[0.0f32, 0.5, 1.0, 0.999]).reshape([1, 2, 2]);
        assert_eq!(to_bytes(&image), [0, 128, 255, 255]);
        let images = Tensor::from_slice(&[-2.0f32, 2.0, 10.0, 20.0]).reshape([2, 1, 1, 2]);
        let unit = to_unit(&images, Scaling::MinMax);
        assert_eq!(
            Vec::<f32>::try_from(unit.flatten(0, -1)).unwrap(),
            [0.0, 1.0, 0.0, 1.0]
        );
    }
}
