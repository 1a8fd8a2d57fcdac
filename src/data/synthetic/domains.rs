//! The four domains, each drawing one labelled image into a `[C, H, W]` byte slice:
//!
//! - `mnist`: white handwritten digit on black, 1x28x28; the ink fits a ~20x20 box centred in
//!   the frame, as MNIST normalised its digits.
//! - `mnistm`: the same digit, hardened towards binary, as `abs(texture - digit)` over a
//!   procedural colour texture, 3x28x28 (MNIST-M's construction with BSDS500 crops).
//! - `svhn`: a thicker, more regular digit in one colour on a painted plate, with neighbouring
//!   digits cut off at the left and right edges, random polarity and contrast, slight blur and
//!   sensor noise, 3x32x32.
//! - `usps`: a thick, blurry handwritten digit stretched to fill 1x16x16.

use std::f32::consts::TAU;

use rand::Rng;

use super::glyphs::{self, bounds, place, Point, Stroke, HANDWRITTEN, PRINTED};
use super::render::{blur, Canvas, Ink};
use super::textures::{self, hsv, luma, Rgb};
use super::{normal, DigitDomain, Grain};

/// Draws `digit` in `domain` into `out` (`domain.image_shape()` bytes, planar).
pub fn draw<R: Rng>(domain: DigitDomain, digit: u8, rng: &mut R, out: &mut [u8]) {
    match domain {
        DigitDomain::Mnist => mnist(digit, rng, out),
        DigitDomain::Mnistm => mnistm(digit, rng, out),
        DigitDomain::Svhn => svhn(digit, rng, out),
        DigitDomain::Usps => usps(digit, rng, out),
    }
}

const MNIST_SIDE: usize = 28;
const SVHN_SIDE: usize = 32;
const USPS_SIDE: usize = 16;

fn mnist<R: Rng>(digit: u8, rng: &mut R, out: &mut [u8]) {
    let canvas = mnist_canvas(digit, rng);
    for (o, &c) in out.iter_mut().zip(&canvas.data) {
        *o = to_u8(c);
    }
}

fn mnistm<R: Rng>(digit: u8, rng: &mut R, out: &mut [u8]) {
    let canvas = mnist_canvas(digit, rng);
    let background = textures::photo_patch(rng, MNIST_SIDE, MNIST_SIDE);
    let plane = MNIST_SIDE * MNIST_SIDE;
    for (i, (&coverage, colour)) in canvas.data.iter().zip(&background).enumerate() {
        // MNIST-M binarises the digit; keep a little of the anti-aliased edge.
        let digit = (coverage * 2.0).min(1.0);
        for (c, &channel) in colour.iter().enumerate() {
            out[c * plane + i] = to_u8((channel - digit).abs());
        }
    }
}

/// A handwritten digit as MNIST has them: ink inside a 20x20 box, centred with a small offset.
fn mnist_canvas<R: Rng>(digit: u8, rng: &mut R) -> Canvas {
    let ink = Ink {
        radius: rng.random_range(0.9..2.1),
        softness: 1.3,
        pressure: rng.random_range(0.0..0.25),
        phase: rng.random_range(0.0..TAU),
    };
    let mut strokes = glyphs::draw_digit(digit, &HANDWRITTEN, rng);
    let extent = rng.random_range(17.0..20.5) - 2.0 * ink.radius;
    let centre = [14.0 + normal(rng, 0.7), 14.0 + normal(rng, 0.7)];
    fit(&mut strokes, extent, extent, 1.0, centre);
    let mut canvas = Canvas::new(MNIST_SIDE, MNIST_SIDE);
    canvas.draw(&strokes, &ink);
    canvas
}

fn usps<R: Rng>(digit: u8, rng: &mut R, out: &mut [u8]) {
    let ink = Ink {
        radius: rng.random_range(0.8..1.3),
        softness: 1.2,
        pressure: rng.random_range(0.0..0.2),
        phase: rng.random_range(0.0..TAU),
    };
    let mut strokes = glyphs::draw_digit(digit, &HANDWRITTEN, rng);
    // USPS scaled each digit to fill the frame, stretching narrow ones sideways.
    let height = rng.random_range(14.5..16.5) - 2.0 * ink.radius;
    let max_width = USPS_SIDE as f32 + 0.5 - 2.0 * ink.radius;
    let stretch = rng.random_range(1.0..1.6);
    let centre = [8.0 + normal(rng, 0.3), 8.0 + normal(rng, 0.3)];
    fit(&mut strokes, max_width, height, stretch, centre);
    let mut canvas = Canvas::new(USPS_SIDE, USPS_SIDE);
    canvas.draw(&strokes, &ink);
    canvas.blur(rng.random_range(0.35..0.75));
    for (o, &c) in out.iter_mut().zip(&canvas.data) {
        *o = to_u8(c * 1.15);
    }
}

fn svhn<R: Rng>(digit: u8, rng: &mut R, out: &mut [u8]) {
    let (background, ink_colour) = svhn_colours(rng);
    let plate = textures::plate(rng, SVHN_SIDE, SVHN_SIDE, background);
    let coverage = svhn_digits(digit, rng);
    let noise = rng.random_range(0.0..0.04);
    let mut grain = Grain::new(rng);
    let plane = SVHN_SIDE * SVHN_SIDE;
    for (i, (&alpha, colour)) in coverage.iter().zip(&plate).enumerate() {
        for c in 0..3 {
            let value = colour[c] + (ink_colour[c] - colour[c]) * alpha + grain.sample(noise);
            out[c * plane + i] = to_u8(value);
        }
    }
}

/// Coverage of the centred digit and its cut-off neighbours, blurred.
fn svhn_digits<R: Rng>(digit: u8, rng: &mut R) -> Vec<f32> {
    let ink = Ink {
        radius: rng.random_range(1.1..2.8),
        softness: 1.0,
        pressure: rng.random_range(0.0..0.1),
        phase: rng.random_range(0.0..TAU),
    };
    let height = rng.random_range(16.0..28.0) - 2.0 * ink.radius;
    let baseline = 16.0 + normal(rng, 1.0);
    let centre = [16.0 + normal(rng, 1.0), baseline];
    let mut canvas = Canvas::new(SVHN_SIDE, SVHN_SIDE);
    let mut strokes = glyphs::draw_digit(digit, &PRINTED, rng);
    let width = fit(&mut strokes, height, height, 1.0, centre);
    canvas.draw(&strokes, &ink);
    let gap = rng.random_range(1.0..5.0) + 2.0 * ink.radius;
    for side in [-1.0, 1.0] {
        if rng.random_bool(0.75) {
            let neighbour = rng.random_range(0..10);
            let mut strokes = glyphs::draw_digit(neighbour, &PRINTED, rng);
            let y = baseline + normal(rng, 0.5);
            let neighbour_width = fit(&mut strokes, height, height, 1.0, [0.0, y]);
            let x = centre[0] + side * (width / 2.0 + gap + neighbour_width / 2.0);
            place(&mut strokes, [0.0, 0.0], [1.0, 1.0], [x, 0.0]);
            canvas.draw(&strokes, &ink);
        }
    }
    blur(
        &mut canvas.data,
        SVHN_SIDE,
        SVHN_SIDE,
        rng.random_range(0.2..1.1),
    );
    canvas.data
}

/// A plate colour and an ink colour whose luma differs by a random contrast, in either
/// polarity (dark on light or light on dark) where the plate allows it.
fn svhn_colours<R: Rng>(rng: &mut R) -> (Rgb, Rgb) {
    let background = textures::paint_colour(rng);
    let base = luma(background);
    let contrast = rng.random_range(0.2..0.75);
    let lighter = match (base + contrast <= 1.0, base - contrast >= 0.0) {
        (true, true) => rng.random_bool(0.5),
        (true, false) => true,
        (false, true) => false,
        (false, false) => base < 0.5,
    };
    let target = if lighter {
        base + contrast
    } else {
        base - contrast
    }
    .clamp(0.0, 1.0);
    let bright = hsv(
        rng.random_range(0.0..1.0),
        0.8 * rng.random::<f32>().powi(2),
        1.0,
    );
    (background, with_luma(bright, target))
}

/// Darkens (scaling the value) or whitens (mixing with white) a colour to the given luma.
fn with_luma(colour: Rgb, target: f32) -> Rgb {
    let current = luma(colour).max(1e-3);
    if target <= current {
        colour.map(|c| c * target / current)
    } else {
        let t = (target - current) / (1.0 - current).max(1e-3);
        colour.map(|c| c + (1.0 - c) * t)
    }
}

/// Scales strokes uniformly to fit `max_width x max_height`, stretches them sideways by
/// `stretch` (never beyond `max_width`) and centres them on `centre`. Returns the width.
fn fit(
    strokes: &mut [Stroke],
    max_width: f32,
    max_height: f32,
    stretch: f32,
    centre: Point,
) -> f32 {
    let Some((lo, hi)) = bounds(strokes) else {
        return 0.0;
    };
    let (width, height) = ((hi[0] - lo[0]).max(1e-3), (hi[1] - lo[1]).max(1e-3));
    let scale = (max_width / width).min(max_height / height);
    let scale_x = (scale * stretch).min(max_width / width);
    let from = [(lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0];
    place(strokes, from, [scale_x, scale], centre);
    width * scale_x
}

fn to_u8(value: f32) -> u8 {
    // `as` truncates, so adding 0.5 rounds (and avoids a libm call per pixel).
    (value.clamp(0.0, 1.0) * 255.0 + 0.5) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn svhn_ink_differs_from_the_plate() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let (plate, ink) = svhn_colours(&mut rng);
            assert!((luma(plate) - luma(ink)).abs() > 0.1, "{plate:?} {ink:?}");
        }
    }

    #[test]
    fn fit_respects_the_box() {
        let mut strokes = vec![vec![[0.0, 0.0], [2.0, 1.0]]];
        let width = fit(&mut strokes, 10.0, 10.0, 3.0, [5.0, 5.0]);
        assert_eq!(width, 10.0);
        assert_eq!(strokes[0], vec![[0.0, 2.5], [10.0, 7.5]]);
    }
}
