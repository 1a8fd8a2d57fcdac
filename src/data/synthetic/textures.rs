//! Procedural colour backgrounds: value noise and fBm mapped through random palettes, stripes,
//! blobs and region edges that stand in for the BSDS500 photo crops of MNIST-M, and painted
//! plates with lighting gradients and borders for SVHN. Images are row-major `Vec<Rgb>` with
//! channels in `[0, 1]`.

use std::f32::consts::TAU;

use rand::Rng;

use super::{normal, Grain};

/// A colour, channels in `[0, 1]`.
pub type Rgb = [f32; 3];

/// Smooth random field in `[0, 1]`: random values on a `cells x cells` lattice, interpolated
/// with smoothstep.
pub fn value_noise<R: Rng>(rng: &mut R, width: usize, height: usize, cells: usize) -> Vec<f32> {
    let cells = cells.max(1);
    let side = cells + 1;
    let lattice: Vec<f32> = (0..side * side).map(|_| rng.random()).collect();
    // The lattice cell and weight of a column (or row) are shared by the whole column.
    let columns = axis_weights(width, cells);
    let rows = axis_weights(height, cells);
    let mut out = Vec::with_capacity(width * height);
    for &(iy, ty) in &rows {
        let top = &lattice[iy * side..(iy + 1) * side];
        let bottom = &lattice[(iy + 1) * side..(iy + 2) * side];
        for &(ix, tx) in &columns {
            let upper = lerp(top[ix], top[ix + 1], tx);
            let lower = lerp(bottom[ix], bottom[ix + 1], tx);
            out.push(lerp(upper, lower, ty));
        }
    }
    out
}

/// Lattice cell and smoothstepped fraction of each pixel centre along an axis of `len` pixels.
fn axis_weights(len: usize, cells: usize) -> Vec<(usize, f32)> {
    (0..len)
        .map(|i| {
            let f = (i as f32 + 0.5) / len as f32 * cells as f32;
            // f >= 0, so truncation is floor.
            let cell = (f as usize).min(cells - 1);
            let t = f - cell as f32;
            (cell, t * t * (3.0 - 2.0 * t))
        })
        .collect()
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

/// Fractal noise: octaves of value noise, each twice as fine and half as strong, rescaled to
/// span `[0, 1]`.
pub fn fbm<R: Rng>(
    rng: &mut R,
    width: usize,
    height: usize,
    cells: usize,
    octaves: u32,
) -> Vec<f32> {
    let mut total = vec![0.0; width * height];
    let mut amplitude = 1.0;
    for octave in 0..octaves {
        let layer = value_noise(rng, width, height, cells << octave);
        for (t, v) in total.iter_mut().zip(layer) {
            *t += amplitude * v;
        }
        amplitude *= 0.5;
    }
    normalise(&mut total);
    total
}

fn normalise(values: &mut [f32]) {
    let (lo, hi) = values
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let span = (hi - lo).max(1e-6);
    for v in values {
        *v = (*v - lo) / span;
    }
}

/// A random colour as photos have them: any hue, saturation and brightness spread wide.
pub fn random_colour<R: Rng>(rng: &mut R) -> Rgb {
    // Skewed towards muted colours, as in photographs.
    let saturation = 0.85 * rng.random::<f32>().powf(1.5);
    hsv(
        rng.random_range(0.0..1.0),
        saturation,
        rng.random_range(0.08..1.0),
    )
}

/// A paint colour for walls and plates: mostly greys, whites, browns and dark tones.
pub fn paint_colour<R: Rng>(rng: &mut R) -> Rgb {
    let saturation = 0.75 * rng.random::<f32>().powi(2);
    hsv(
        rng.random_range(0.0..1.0),
        saturation,
        rng.random_range(0.1..0.95),
    )
}

/// HSV (all in `[0, 1]`) to RGB.
pub fn hsv(h: f32, s: f32, v: f32) -> Rgb {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

/// Luma of a colour (Rec. 601), to reason about contrast.
pub fn luma(c: Rgb) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn mix(a: Rgb, b: Rgb, t: f32) -> Rgb {
    [
        lerp(a[0], b[0], t),
        lerp(a[1], b[1], t),
        lerp(a[2], b[2], t),
    ]
}

/// Piecewise-linear colour ramp through `palette` for `t` in `[0, 1]`.
fn ramp(palette: &[Rgb], t: f32) -> Rgb {
    let f = t.clamp(0.0, 1.0) * (palette.len() - 1) as f32;
    let i = (f as usize).min(palette.len() - 2);
    mix(palette[i], palette[i + 1], f - i as f32)
}

fn palette<R: Rng>(rng: &mut R, colours: usize) -> Vec<Rgb> {
    (0..colours.max(2)).map(|_| random_colour(rng)).collect()
}

/// A colourful natural-image-like patch (the BSDS500 crops behind MNIST-M digits): smooth
/// fBm scenes, stripes, blobs or two regions split by an edge, with film grain.
pub fn photo_patch<R: Rng>(rng: &mut R, width: usize, height: usize) -> Vec<Rgb> {
    let mut image = match rng.random_range(0..4) {
        0 => noise_scene(rng, width, height),
        1 => stripes(rng, width, height),
        2 => blobs(rng, width, height),
        _ => regions(rng, width, height),
    };
    let strength = rng.random_range(0.0..0.05);
    let mut grain = Grain::new(rng);
    for pixel in &mut image {
        for c in pixel.iter_mut() {
            *c = (*c + grain.sample(strength)).clamp(0.0, 1.0);
        }
    }
    image
}

fn noise_scene<R: Rng>(rng: &mut R, width: usize, height: usize) -> Vec<Rgb> {
    let colours = rng.random_range(2..5);
    let palette = palette(rng, colours);
    let cells = rng.random_range(1..4);
    let field = fbm(rng, width, height, cells, 3);
    field.into_iter().map(|t| ramp(&palette, t)).collect()
}

fn stripes<R: Rng>(rng: &mut R, width: usize, height: usize) -> Vec<Rgb> {
    let palette = palette(rng, 2);
    let angle = rng.random_range(0.0..TAU);
    let period = rng.random_range(3.0..12.0);
    let turbulence = rng.random_range(0.0..6.0);
    let field = fbm(rng, width, height, 2, 3);
    let (sin, cos) = angle.sin_cos();
    (0..width * height)
        .map(|i| {
            let (x, y) = ((i % width) as f32, (i / width) as f32);
            let phase = (x * cos + y * sin) / period * TAU + turbulence * field[i];
            ramp(&palette, 0.5 + 0.5 * phase.sin())
        })
        .collect()
}

fn blobs<R: Rng>(rng: &mut R, width: usize, height: usize) -> Vec<Rgb> {
    let mut image = noise_scene(rng, width, height);
    for _ in 0..rng.random_range(2..7) {
        let colour = random_colour(rng);
        let centre = [
            rng.random_range(0.0..width as f32),
            rng.random_range(0.0..height as f32),
        ];
        let radius = rng.random_range(2.0..width as f32 * 0.5);
        let hardness = rng.random_range(0.5..4.0);
        for (i, pixel) in image.iter_mut().enumerate() {
            let (dx, dy) = (
                (i % width) as f32 - centre[0],
                (i / width) as f32 - centre[1],
            );
            let d = (dx * dx + dy * dy).sqrt();
            let alpha = ((radius - d) * hardness / radius.max(1.0) + 0.5).clamp(0.0, 1.0);
            *pixel = mix(*pixel, colour, alpha);
        }
    }
    image
}

fn regions<R: Rng>(rng: &mut R, width: usize, height: usize) -> Vec<Rgb> {
    let first = noise_scene(rng, width, height);
    let second = noise_scene(rng, width, height);
    let wobble = fbm(rng, width, height, 2, 2);
    let angle = rng.random_range(0.0..TAU);
    let (sin, cos) = angle.sin_cos();
    let offset = rng.random_range(-0.3..0.3) * width as f32;
    let softness = rng.random_range(0.3..2.0);
    (0..width * height)
        .map(|i| {
            let x = (i % width) as f32 - width as f32 / 2.0;
            let y = (i / width) as f32 - height as f32 / 2.0;
            let side = x * cos + y * sin - offset + (wobble[i] - 0.5) * 6.0;
            mix(first[i], second[i], (side / softness + 0.5).clamp(0.0, 1.0))
        })
        .collect()
}

/// A painted surface behind house numbers: one base colour under a lighting gradient with mild
/// texture, sometimes a border or band of another colour and a dark line.
pub fn plate<R: Rng>(rng: &mut R, width: usize, height: usize, base: Rgb) -> Vec<Rgb> {
    let cells = rng.random_range(1..4);
    let texture = fbm(rng, width, height, cells, 3);
    let texture_strength = rng.random_range(0.02..0.18);
    let light_angle = rng.random_range(0.0..TAU);
    let light = rng.random_range(0.0..0.35);
    let (sin, cos) = light_angle.sin_cos();
    let band = rng.random_bool(0.4).then(|| Band::random(rng));
    (0..width * height)
        .map(|i| {
            let x = (i % width) as f32 / width as f32 - 0.5;
            let y = (i / width) as f32 / height as f32 - 0.5;
            let colour = match &band {
                Some(b) if b.covers(x, y) => b.colour,
                _ => base,
            };
            let shade = 1.0 + light * (x * cos + y * sin) + texture_strength * (texture[i] - 0.5);
            colour.map(|c| (c * shade).clamp(0.0, 1.0))
        })
        .collect()
}

/// A straight-edged region of another colour (plate border, door frame, wall).
struct Band {
    colour: Rgb,
    normal: [f32; 2],
    offset: f32,
}

impl Band {
    fn random<R: Rng>(rng: &mut R) -> Self {
        // Mostly horizontal or vertical edges, as on buildings.
        let angle = rng.random_range(0..4) as f32 * TAU / 4.0 + normal(rng, 0.08);
        Band {
            colour: paint_colour(rng),
            normal: [angle.cos(), angle.sin()],
            offset: rng.random_range(0.3..0.48),
        }
    }

    fn covers(&self, x: f32, y: f32) -> bool {
        x * self.normal[0] + y * self.normal[1] > self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn fbm_spans_the_unit_interval() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let field = fbm(&mut rng, 28, 28, 2, 4);
        let lo = field.iter().copied().fold(f32::MAX, f32::min);
        let hi = field.iter().copied().fold(f32::MIN, f32::max);
        assert!(lo.abs() < 1e-6 && (hi - 1.0).abs() < 1e-6, "{lo} {hi}");
    }

    #[test]
    fn hsv_primaries() {
        assert_eq!(hsv(0.0, 1.0, 1.0), [1.0, 0.0, 0.0]);
        assert_eq!(hsv(0.5, 1.0, 1.0), [0.0, 1.0, 1.0]);
        assert_eq!(hsv(0.5, 0.0, 0.5), [0.5, 0.5, 0.5]);
    }

    #[test]
    fn photo_patches_stay_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for _ in 0..40 {
            let patch = photo_patch(&mut rng, 28, 28);
            assert_eq!(patch.len(), 28 * 28);
            assert!(patch.iter().flatten().all(|c| (0.0..=1.0).contains(c)));
        }
    }
}
