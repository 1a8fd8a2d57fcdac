//! Rasterising strokes: anti-aliased coverage from the distance of each pixel centre to each
//! polyline segment, with a stroke radius that varies smoothly along the stroke (pen pressure),
//! plus a separable Gaussian blur. Canvases hold coverage in `[0, 1]`, row-major.

use super::glyphs::{Point, Stroke};

/// A single-channel image of coverage values in `[0, 1]`.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub data: Vec<f32>,
}

/// How strokes are inked, in pixels.
#[derive(Debug, Clone, Copy)]
pub struct Ink {
    /// Half the stroke width.
    pub radius: f32,
    /// Width of the anti-aliased edge ramp (1 = a one-pixel ramp).
    pub softness: f32,
    /// Relative radius variation along a stroke.
    pub pressure: f32,
    /// Phase of the pressure wave, so strokes of one image differ.
    pub phase: f32,
}

impl Canvas {
    pub fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            data: vec![0.0; width * height],
        }
    }

    /// Draws every stroke; overlapping ink keeps the maximum coverage.
    pub fn draw(&mut self, strokes: &[Stroke], ink: &Ink) {
        for (index, stroke) in strokes.iter().enumerate() {
            let radii = pressure_radii(stroke, ink, index as f32);
            match stroke.len() {
                0 => {}
                1 => self.segment(stroke[0], stroke[0], radii[0], radii[0], ink.softness),
                _ => {
                    for i in 1..stroke.len() {
                        self.segment(
                            stroke[i - 1],
                            stroke[i],
                            radii[i - 1],
                            radii[i],
                            ink.softness,
                        );
                    }
                }
            }
        }
    }

    /// Coverage of a capsule from `a` (radius `ra`) to `b` (radius `rb`).
    fn segment(&mut self, a: Point, b: Point, ra: f32, rb: f32, softness: f32) {
        let reach = ra.max(rb) + 0.5 * softness;
        // Casts of non-negative values truncate, i.e. floor; `+ 1` covers the ceiling.
        let x0 = (a[0].min(b[0]) - reach).max(0.0) as usize;
        let y0 = (a[1].min(b[1]) - reach).max(0.0) as usize;
        let x1 = ((a[0].max(b[0]) + reach).max(0.0) as usize + 1).min(self.width);
        let y1 = ((a[1].max(b[1]) + reach).max(0.0) as usize + 1).min(self.height);
        let (dx, dy) = (b[0] - a[0], b[1] - a[1]);
        let len2 = dx * dx + dy * dy;
        let len = len2.sqrt();
        for y in y0..y1 {
            let py = y as f32 + 0.5 - a[1];
            let (xs, xe) = if dy.abs() > 1e-3 * len {
                // Only pixels within `reach` of the segment's line can be inked: on this row
                // they lie within `half` of where the line crosses it.
                let crossing = a[0] - 0.5 + py * dx / dy;
                let half = (reach * len / dy).abs();
                let lo = (crossing - half).max(0.0) as usize;
                let hi = (crossing + half).max(0.0) as usize + 1;
                (x0.max(lo), x1.min(hi))
            } else {
                (x0, x1)
            };
            for x in xs..xe {
                let px = x as f32 + 0.5 - a[0];
                let t = if len2 > 0.0 {
                    ((px * dx + py * dy) / len2).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let (ex, ey) = (px - t * dx, py - t * dy);
                let distance2 = ex * ex + ey * ey;
                // Most of the box is out of reach: skip the square root there.
                if distance2 >= reach * reach {
                    continue;
                }
                let radius = ra + t * (rb - ra);
                let coverage = ((radius - distance2.sqrt()) / softness + 0.5).clamp(0.0, 1.0);
                let cell = &mut self.data[y * self.width + x];
                *cell = cell.max(coverage);
            }
        }
    }

    /// Blurs the canvas in place.
    pub fn blur(&mut self, sigma: f32) {
        blur(&mut self.data, self.width, self.height, sigma);
    }
}

/// Radius at each point: a slow sine of the distance travelled along the stroke.
fn pressure_radii(stroke: &[Point], ink: &Ink, stroke_index: f32) -> Vec<f32> {
    let mut travelled = 0.0;
    let mut previous = stroke.first().copied().unwrap_or([0.0, 0.0]);
    stroke
        .iter()
        .map(|p| {
            travelled += (p[0] - previous[0]).hypot(p[1] - previous[1]);
            previous = *p;
            let wave = (ink.phase + 1.7 * stroke_index + travelled * 0.25).sin();
            (ink.radius * (1.0 + ink.pressure * wave)).max(0.3)
        })
        .collect()
}

/// Separable Gaussian blur of a `width x height` plane, clamping at the borders.
pub fn blur(plane: &mut [f32], width: usize, height: usize, sigma: f32) {
    if sigma <= 0.05 {
        return;
    }
    let kernel = gaussian_kernel(sigma);
    let mut scratch = vec![0.0; plane.len()];
    convolve(plane, &mut scratch, width, height, &kernel, 1, width);
    convolve(&scratch, plane, height, width, &kernel, width, 1);
}

fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (2.5 * sigma).ceil() as i32;
    let weights: Vec<f32> = (-radius..=radius)
        .map(|i| (-(i * i) as f32 / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f32 = weights.iter().sum();
    weights.into_iter().map(|w| w / total).collect()
}

/// 1-D convolution along lines of `len` samples spaced `step` apart; `lines` lines spaced
/// `line_step` apart. Each line is first copied with its edge values repeated, so the inner loop
/// needs no bounds clamping.
fn convolve(
    src: &[f32],
    dst: &mut [f32],
    len: usize,
    lines: usize,
    kernel: &[f32],
    step: usize,
    line_step: usize,
) {
    let radius = kernel.len() / 2;
    let mut padded = vec![0.0; len + 2 * radius];
    for line in 0..lines {
        let base = line * line_step;
        for (i, value) in padded.iter_mut().enumerate() {
            let j = i.saturating_sub(radius).min(len - 1);
            *value = src[base + j * step];
        }
        for i in 0..len {
            let window = &padded[i..i + kernel.len()];
            dst[base + i * step] = window.iter().zip(kernel).map(|(v, w)| v * w).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INK: Ink = Ink {
        radius: 1.5,
        softness: 1.0,
        pressure: 0.0,
        phase: 0.0,
    };

    #[test]
    fn a_line_covers_its_centre_and_fades_at_the_edge() {
        let mut canvas = Canvas::new(10, 10);
        canvas.draw(&[vec![[1.0, 5.0], [9.0, 5.0]]], &INK);
        assert_eq!(canvas.data[5 * 10 + 5], 1.0);
        assert_eq!(canvas.data[0], 0.0);
        let edge = canvas.data[6 * 10 + 5];
        assert!(edge > 0.0 && edge <= 1.0, "{edge}");
        assert!(canvas.data[7 * 10 + 5] < edge);
    }

    #[test]
    fn slanted_segments_match_the_distance_formula_everywhere() {
        let (a, b) = ([2.3, 1.7], [7.9, 12.2]);
        let mut canvas = Canvas::new(12, 14);
        canvas.draw(&[vec![a, b]], &INK);
        for y in 0..14 {
            for x in 0..12 {
                let p = [x as f32 + 0.5 - a[0], y as f32 + 0.5 - a[1]];
                let d = [b[0] - a[0], b[1] - a[1]];
                let t = ((p[0] * d[0] + p[1] * d[1]) / (d[0] * d[0] + d[1] * d[1])).clamp(0.0, 1.0);
                let distance = (p[0] - t * d[0]).hypot(p[1] - t * d[1]);
                let expected = (INK.radius - distance + 0.5).clamp(0.0, 1.0);
                let found = canvas.data[y * 12 + x];
                assert!(
                    (found - expected).abs() < 1e-5,
                    "({x}, {y}): {found} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn blur_keeps_the_total_of_an_interior_dot() {
        let mut plane = vec![0.0; 15 * 15];
        plane[7 * 15 + 7] = 1.0;
        blur(&mut plane, 15, 15, 1.0);
        let total: f32 = plane.iter().sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
        assert!(plane[7 * 15 + 7] < 0.5 && plane[7 * 15 + 8] > 0.0);
    }
}
