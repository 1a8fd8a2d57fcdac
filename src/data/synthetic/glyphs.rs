//! Digit skeletons: each digit 0-9 as pen strokes (lines, cubic Béziers, elliptic arcs) in a
//! glyph box about 0.6 wide and 1 tall (x around 0, y from 0 at the top to 1 at the bottom), in
//! several handwriting styles (7 with or without crossbar, 1 with or without flag and foot, open
//! or closed 4, ...).
//!
//! Every control point is jittered as it is drawn, then [`Warp`] applies a per-sample slant,
//! rotation, aspect change and a smooth elastic displacement field. The result is a list of
//! polylines (points about [`STEP`] apart) that `render` rasterises after placement.

use std::f32::consts::{PI, TAU};

use rand::Rng;

use super::normal;

/// A point in glyph (or, after placement, pixel) coordinates.
pub type Point = [f32; 2];
/// One continuous pen stroke, as a polyline.
pub type Stroke = Vec<Point>;

/// Spacing of flattened points in glyph units: fine enough that the elastic warp bends lines.
const STEP: f32 = 0.09;

/// How a hand writes: how much it deviates from the skeleton and how it slants.
#[derive(Debug, Clone, Copy)]
pub struct HandStyle {
    /// Standard deviation of control-point jitter, glyph units.
    pub jitter: f32,
    /// Mean and standard deviation of the shear (positive leans right).
    pub slant: (f32, f32),
    /// Standard deviation of the rotation, degrees.
    pub rotation_deg: f32,
    /// Amplitude of each elastic displacement mode, glyph units.
    pub elastic: f32,
    /// Range of the horizontal stretch.
    pub aspect: (f32, f32),
}

/// Pen handwriting (MNIST, USPS): right-leaning on average, visibly irregular.
pub const HANDWRITTEN: HandStyle = HandStyle {
    jitter: 0.025,
    slant: (0.12, 0.2),
    rotation_deg: 7.0,
    elastic: 0.035,
    aspect: (0.75, 1.3),
};

/// Painted or printed house numbers (SVHN): upright and regular.
pub const PRINTED: HandStyle = HandStyle {
    jitter: 0.012,
    slant: (0.03, 0.1),
    rotation_deg: 4.0,
    elastic: 0.015,
    aspect: (0.8, 1.35),
};

/// The strokes of `digit` (taken modulo 10) in a random variant, jittered and warped.
pub fn draw_digit<R: Rng>(digit: u8, style: &HandStyle, rng: &mut R) -> Vec<Stroke> {
    let mut strokes = {
        let mut pen = Pen {
            rng: &mut *rng,
            jitter: style.jitter,
            strokes: Vec::new(),
        };
        pen.digit(digit % 10);
        pen.strokes
    };
    Warp::random(style, rng).apply(&mut strokes);
    strokes
}

/// Axis-aligned bounds `(min, max)` of all points; `None` without points.
pub fn bounds(strokes: &[Stroke]) -> Option<(Point, Point)> {
    let mut points = strokes.iter().flatten();
    let first = *points.next()?;
    Some(points.fold((first, first), |(lo, hi), p| {
        (
            [lo[0].min(p[0]), lo[1].min(p[1])],
            [hi[0].max(p[0]), hi[1].max(p[1])],
        )
    }))
}

/// Maps every point with `p' = centre + (p - from_centre) * scale` (per axis).
pub fn place(strokes: &mut [Stroke], from_centre: Point, scale: Point, centre: Point) {
    for p in strokes.iter_mut().flatten() {
        *p = [
            centre[0] + (p[0] - from_centre[0]) * scale[0],
            centre[1] + (p[1] - from_centre[1]) * scale[1],
        ];
    }
}

/// Draws strokes with jittered control points, flattening curves as it goes.
struct Pen<'r, R> {
    rng: &'r mut R,
    jitter: f32,
    strokes: Vec<Stroke>,
}

impl<R: Rng> Pen<'_, R> {
    fn variant(&mut self, count: u32) -> u32 {
        self.rng.random_range(0..count)
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn jittered(&mut self, x: f32, y: f32) -> Point {
        [
            x + normal(self.rng, self.jitter),
            y + normal(self.rng, self.jitter),
        ]
    }

    fn last(&self) -> Option<Point> {
        self.strokes.last().and_then(|s| s.last().copied())
    }

    /// Lifts the pen and puts it down at `(x, y)`.
    fn start(&mut self, x: f32, y: f32) {
        let p = self.jittered(x, y);
        self.strokes.push(vec![p]);
    }

    /// Lifts the pen; the next arc begins a new stroke.
    fn lift(&mut self) {
        self.strokes.push(Vec::new());
    }

    fn push(&mut self, p: Point) {
        match self.strokes.last_mut() {
            Some(stroke) => stroke.push(p),
            None => self.strokes.push(vec![p]),
        }
    }

    fn line(&mut self, x: f32, y: f32) {
        let b = self.jittered(x, y);
        let Some(a) = self.last() else {
            return self.push(b);
        };
        let steps = (distance(a, b) / STEP).ceil().max(1.0) as usize;
        for i in 1..=steps {
            let t = i as f32 / steps as f32;
            self.push([a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]);
        }
    }

    /// A cubic Bézier from the current point through controls `c1`, `c2` to `end`.
    fn curve(&mut self, c1: Point, c2: Point, end: Point) {
        let c1 = self.jittered(c1[0], c1[1]);
        let c2 = self.jittered(c2[0], c2[1]);
        let p3 = self.jittered(end[0], end[1]);
        let p0 = self.last().unwrap_or(c1);
        let hull = distance(p0, c1) + distance(c1, c2) + distance(c2, p3);
        let steps = (hull / STEP).ceil().max(2.0) as usize;
        for i in 1..=steps {
            let t = i as f32 / steps as f32;
            let u = 1.0 - t;
            let w = [u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t];
            self.push([
                w[0] * p0[0] + w[1] * c1[0] + w[2] * c2[0] + w[3] * p3[0],
                w[0] * p0[1] + w[1] * c1[1] + w[2] * c2[1] + w[3] * p3[1],
            ]);
        }
    }

    /// An elliptic arc around `centre` with radii `radii`, from angle `from` to `to` (degrees;
    /// 0 points right, 90 down, so increasing angles run clockwise on screen). It continues the
    /// current stroke.
    fn arc(&mut self, centre: Point, radii: Point, from: f32, to: f32) {
        let c = self.jittered(centre[0], centre[1]);
        let rx = radii[0] * (1.0 + normal(self.rng, self.jitter * 3.0));
        let ry = radii[1] * (1.0 + normal(self.rng, self.jitter * 3.0));
        let from = (from + normal(self.rng, self.jitter * 250.0)).to_radians();
        let to = (to + normal(self.rng, self.jitter * 250.0)).to_radians();
        let length = (to - from).abs() * 0.5 * (rx + ry);
        let steps = (length / STEP).ceil().max(2.0) as usize;
        for i in 0..=steps {
            let a = from + (to - from) * i as f32 / steps as f32;
            self.push([c[0] + rx * a.cos(), c[1] + ry * a.sin()]);
        }
    }

    fn digit(&mut self, digit: u8) {
        match digit {
            0 => self.zero(),
            1 => self.one(),
            2 => self.two(),
            3 => self.three(),
            4 => self.four(),
            5 => self.five(),
            6 => self.six(),
            7 => self.seven(),
            8 => self.eight(),
            _ => self.nine(),
        }
    }

    fn zero(&mut self) {
        match self.variant(3) {
            0 => self.arc([0.0, 0.5], [0.27, 0.5], -90.0, 270.0),
            // Starts upper right and overshoots the start, as many people close a zero.
            1 => self.arc([0.0, 0.5], [0.25, 0.5], -60.0, 320.0),
            // Anticlockwise with a small gap at the top.
            _ => self.arc([0.0, 0.5], [0.22, 0.5], -100.0, -440.0),
        }
    }

    fn one(&mut self) {
        match self.variant(4) {
            0 | 1 => {
                self.start(0.0, 0.0);
                self.line(0.0, 1.0);
            }
            v => {
                self.start(-0.17, 0.2);
                self.line(0.02, 0.0);
                self.line(0.02, 1.0);
                if v == 3 {
                    self.start(-0.16, 1.0);
                    self.line(0.2, 1.0);
                }
            }
        }
    }

    fn two(&mut self) {
        match self.variant(3) {
            0 => {
                self.arc([0.0, 0.27], [0.26, 0.26], 200.0, 380.0);
                self.curve([0.2, 0.55], [-0.1, 0.78], [-0.28, 1.0]);
                self.line(0.3, 1.0);
            }
            // Wavy base line.
            1 => {
                self.arc([0.0, 0.27], [0.25, 0.27], 190.0, 375.0);
                self.curve([0.22, 0.6], [-0.05, 0.8], [-0.26, 0.97]);
                self.curve([-0.05, 0.9], [0.1, 1.04], [0.3, 0.97]);
            }
            // Angular, Z-like.
            _ => {
                self.start(-0.25, 0.14);
                self.curve([-0.15, -0.04], [0.24, -0.06], [0.24, 0.2]);
                self.line(-0.28, 1.0);
                self.line(0.3, 1.0);
            }
        }
    }

    fn three(&mut self) {
        match self.variant(3) {
            0 | 1 => {
                self.arc([0.0, 0.26], [0.23, 0.24], 200.0, 450.0);
                self.arc([0.0, 0.74], [0.27, 0.26], -90.0, 160.0);
            }
            // Flat top.
            _ => {
                self.start(-0.24, 0.02);
                self.line(0.24, 0.02);
                self.line(-0.04, 0.42);
                self.arc([0.0, 0.72], [0.27, 0.28], -110.0, 155.0);
            }
        }
    }

    fn four(&mut self) {
        match self.variant(3) {
            // Closed: the diagonal starts where the stem starts.
            0 => {
                self.start(0.1, 0.0);
                self.line(-0.3, 0.66);
                self.line(0.3, 0.66);
                self.start(0.12, 0.02);
                self.line(0.12, 1.0);
            }
            // Open, with a near-vertical left stroke.
            1 => {
                self.start(-0.2, 0.0);
                self.line(-0.27, 0.62);
                self.line(0.3, 0.6);
                self.start(0.14, 0.15);
                self.line(0.14, 1.0);
            }
            _ => {
                self.start(-0.05, 0.0);
                self.line(-0.3, 0.6);
                self.line(0.3, 0.6);
                self.start(0.15, 0.05);
                self.line(0.12, 1.0);
            }
        }
    }

    fn five(&mut self) {
        let joined_bar = self.chance(0.5);
        if joined_bar {
            self.start(0.24, 0.0);
            self.line(-0.18, 0.0);
        } else {
            self.start(-0.18, 0.0);
        }
        self.line(-0.22, 0.45);
        self.arc([0.0, 0.68], [0.27, 0.3], 215.0, 510.0);
        if !joined_bar {
            // The top bar as a second stroke, written after the body.
            self.start(-0.17, 0.0);
            self.line(0.26, 0.02);
        }
    }

    fn six(&mut self) {
        if self.chance(0.5) {
            self.start(0.18, 0.0);
            self.curve([-0.1, 0.1], [-0.28, 0.45], [-0.26, 0.7]);
            self.arc([0.0, 0.72], [0.26, 0.27], 180.0, -170.0);
        } else {
            self.start(0.12, 0.0);
            self.line(-0.2, 0.55);
            self.arc([0.0, 0.75], [0.24, 0.24], 200.0, -160.0);
        }
    }

    fn seven(&mut self) {
        let hook = self.chance(0.2);
        if hook {
            self.start(-0.28, 0.14);
            self.line(-0.27, 0.0);
        } else {
            self.start(-0.28, 0.0);
        }
        self.line(0.28, 0.0);
        if self.chance(0.5) {
            self.line(-0.04, 1.0);
        } else {
            self.curve([0.15, 0.3], [0.0, 0.6], [-0.02, 1.0]);
        }
        if self.chance(0.25) {
            self.start(-0.05, 0.52);
            self.line(0.26, 0.5);
        }
    }

    fn eight(&mut self) {
        if self.chance(0.5) {
            self.arc([0.0, 0.25], [0.21, 0.25], -90.0, 270.0);
            self.lift();
            self.arc([0.0, 0.73], [0.26, 0.27], -90.0, 270.0);
        } else {
            // One stroke: upper loop anticlockwise, cross, lower loop clockwise, cross back.
            self.start(0.18, 0.06);
            self.curve([0.05, -0.04], [-0.24, 0.0], [-0.2, 0.2]);
            self.curve([-0.16, 0.38], [0.28, 0.5], [0.27, 0.75]);
            self.curve([0.26, 1.02], [-0.27, 1.02], [-0.27, 0.76]);
            self.curve([-0.27, 0.52], [0.22, 0.42], [0.22, 0.22]);
            self.curve([0.22, 0.1], [0.2, 0.07], [0.16, 0.04]);
        }
    }

    fn nine(&mut self) {
        self.arc([0.0, 0.27], [0.25, 0.26], 0.0, -360.0);
        match self.variant(3) {
            0 => self.line(0.24, 1.0),
            1 => self.curve([0.26, 0.6], [0.2, 0.9], [-0.12, 1.0]),
            _ => self.line(0.1, 1.0),
        }
    }
}

fn distance(a: Point, b: Point) -> f32 {
    (a[0] - b[0]).hypot(a[1] - b[1])
}

/// A per-sample smooth deformation of the glyph box.
struct Warp {
    aspect: f32,
    slant: f32,
    rotation: f32,
    /// Elastic modes: wave vector, phase, displacement amplitude.
    modes: [(Point, f32, Point); 3],
}

impl Warp {
    fn random<R: Rng>(style: &HandStyle, rng: &mut R) -> Self {
        let mode = |rng: &mut R| {
            let angle = rng.random_range(0.0..TAU);
            let frequency = rng.random_range(0.5..1.6) * TAU;
            (
                [frequency * angle.cos(), frequency * angle.sin()],
                rng.random_range(0.0..TAU),
                [normal(rng, style.elastic), normal(rng, style.elastic)],
            )
        };
        Warp {
            aspect: rng.random_range(style.aspect.0..style.aspect.1),
            slant: style.slant.0 + normal(rng, style.slant.1),
            rotation: normal(rng, style.rotation_deg) * PI / 180.0,
            modes: [mode(rng), mode(rng), mode(rng)],
        }
    }

    fn apply(&self, strokes: &mut [Stroke]) {
        let (sin, cos) = self.rotation.sin_cos();
        for p in strokes.iter_mut().flatten() {
            let (mut x, mut y) = (p[0], p[1]);
            for (k, phase, amplitude) in &self.modes {
                let wave = (k[0] * p[0] + k[1] * p[1] + phase).sin();
                x += amplitude[0] * wave;
                y += amplitude[1] * wave;
            }
            x = x * self.aspect + self.slant * (0.5 - y);
            let (dx, dy) = (x, y - 0.5);
            *p = [dx * cos - dy * sin, 0.5 + dx * sin + dy * cos];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn every_digit_has_ink_inside_a_sane_box() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for digit in 0..10 {
            for _ in 0..50 {
                let strokes = draw_digit(digit, &HANDWRITTEN, &mut rng);
                let (lo, hi) = bounds(&strokes).expect("a digit has points");
                assert!(
                    hi[1] - lo[1] > 0.6,
                    "digit {digit} too short: {lo:?} {hi:?}"
                );
                assert!(lo[0] > -1.0 && hi[0] < 1.0 && lo[1] > -0.5 && hi[1] < 1.5);
            }
        }
    }

    #[test]
    fn place_maps_centre_to_centre() {
        let mut strokes = vec![vec![[0.0, 0.0], [1.0, 2.0]]];
        place(&mut strokes, [0.5, 1.0], [2.0, 3.0], [10.0, 10.0]);
        assert_eq!(strokes[0], vec![[9.0, 7.0], [11.0, 13.0]]);
    }
}
