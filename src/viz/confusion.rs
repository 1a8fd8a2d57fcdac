//! Confusion matrices as PNG: one cell per (true class, predicted class), shaded by the share
//! of the true class's images it holds (so rows of unequal size read alike), with the count
//! written in the cell and the per-class accuracy beside each row.

use camino::Utf8Path;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::font::{self, FAMILY};
use super::{create_parent, draw_error, VizError};

/// What to draw: `counts[true][predicted]`, square, one name per class.
#[derive(Debug, Clone, Copy)]
pub struct ConfusionPlot<'a> {
    pub title: &'a str,
    pub counts: &'a [Vec<u64>],
    pub class_names: &'a [String],
}

/// Pixels of one cell, and of the margins holding the labels.
const CELL: i32 = 56;
const LEFT: i32 = 110;
const TOP: i32 = 80;
const RIGHT: i32 = 90;
const BOTTOM: i32 = 30;

/// The image size `plot` is drawn at (it grows with the class count).
pub fn confusion_size(plot: &ConfusionPlot<'_>) -> (u32, u32) {
    let n = plot.counts.len() as i32;
    (
        (LEFT + n * CELL + RIGHT) as u32,
        (TOP + n * CELL + BOTTOM) as u32,
    )
}

/// Draws `plot` into a PNG at `path`, creating its directory.
pub fn confusion_png(path: &Utf8Path, plot: &ConfusionPlot<'_>) -> Result<(), VizError> {
    let n = plot.counts.len();
    if n == 0 || plot.counts.iter().any(|row| row.len() != n) || plot.class_names.len() != n {
        return Err(VizError::Data {
            path: path.to_owned(),
            message: format!(
                "a confusion matrix needs {n} x {n} counts and {n} class names, got rows of {:?} and {} names",
                plot.counts.iter().map(Vec::len).collect::<Vec<_>>(),
                plot.class_names.len()
            ),
        });
    }
    font::ensure_registered()?;
    create_parent(path)?;
    let size = confusion_size(plot);
    let root = BitMapBackend::new(path.as_std_path(), size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
    let text = |size: i32, pos: Pos| {
        TextStyle::from((FAMILY, size).into_font())
            .color(&BLACK)
            .pos(pos)
    };
    let centre = Pos::new(HPos::Center, VPos::Center);
    let draw = |element: Text<'_, (i32, i32), String>| {
        root.draw(&element).map_err(|e| draw_error(path, e))
    };
    draw(Text::new(
        plot.title.to_owned(),
        (size.0 as i32 / 2, 18),
        text(20, centre),
    ))?;
    let grid_centre = LEFT + n as i32 * CELL / 2;
    draw(Text::new(
        "predicted".to_owned(),
        (grid_centre, TOP - 42),
        text(15, centre),
    ))?;
    draw(Text::new(
        "true \\ predicted".to_owned(),
        (LEFT / 2, TOP - 18),
        text(13, centre),
    ))?;
    draw(Text::new(
        "accuracy".to_owned(),
        (LEFT + n as i32 * CELL + RIGHT / 2, TOP - 18),
        text(13, centre),
    ))?;
    for (i, name) in plot.class_names.iter().enumerate() {
        let middle = i as i32 * CELL + CELL / 2;
        draw(Text::new(
            name.clone(),
            (LEFT + middle, TOP - 18),
            text(14, centre),
        ))?;
        draw(Text::new(
            name.clone(),
            (LEFT - 10, TOP + middle),
            text(14, Pos::new(HPos::Right, VPos::Center)),
        ))?;
    }
    for (t, row) in plot.counts.iter().enumerate() {
        let total: u64 = row.iter().sum();
        for (p, &count) in row.iter().enumerate() {
            let share = if total == 0 {
                0.0
            } else {
                count as f64 / total as f64
            };
            let (x, y) = (LEFT + p as i32 * CELL, TOP + t as i32 * CELL);
            root.draw(&Rectangle::new(
                [(x, y), (x + CELL - 1, y + CELL - 1)],
                shade(share).filled(),
            ))
            .map_err(|e| draw_error(path, e))?;
            let ink = if share > 0.5 { WHITE } else { BLACK };
            root.draw(&Text::new(
                count.to_string(),
                (x + CELL / 2, y + CELL / 2),
                text(14, centre).color(&ink),
            ))
            .map_err(|e| draw_error(path, e))?;
        }
        let accuracy = if total == 0 {
            "-".to_owned()
        } else {
            format!("{:.3}", row[t] as f64 / total as f64)
        };
        draw(Text::new(
            accuracy,
            (
                LEFT + n as i32 * CELL + RIGHT / 2,
                TOP + t as i32 * CELL + CELL / 2,
            ),
            text(14, centre),
        ))?;
    }
    root.present().map_err(|e| draw_error(path, e))?;
    Ok(())
}

/// White (0) to a dark blue (1), linearly.
fn shade(share: f64) -> RGBColor {
    let dark = (0x08, 0x30, 0x6b);
    let mix = |d: u8| (255.0 - share.clamp(0.0, 1.0) * (255.0 - f64::from(d))).round() as u8;
    RGBColor(mix(dark.0), mix(dark.1), mix(dark.2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_matrix_and_refuses_a_ragged_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path())
            .unwrap()
            .join("c/confusion.png");
        let names: Vec<String> = ["0", "1", "2"].iter().map(|s| s.to_string()).collect();
        let counts = vec![vec![5, 1, 0], vec![0, 6, 0], vec![2, 0, 0]];
        let plot = ConfusionPlot {
            title: "t",
            counts: &counts,
            class_names: &names,
        };
        confusion_png(&path, &plot).unwrap();
        let image = image::open(path.as_std_path()).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), confusion_size(&plot));
        // The cell of (true 1, predicted 1) holds all of its row: the darkest shade.
        let (x, y) = (LEFT + CELL + 3, TOP + CELL + 3);
        assert_eq!(image.get_pixel(x as u32, y as u32).0, [0x08, 0x30, 0x6b]);
        let ragged = vec![vec![1, 2], vec![3]];
        let err = confusion_png(
            &path,
            &ConfusionPlot {
                title: "t",
                counts: &ragged,
                class_names: &names[..2],
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("2 x 2 counts"), "{err}");
    }
}
