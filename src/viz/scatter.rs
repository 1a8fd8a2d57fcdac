//! Scatter plots of 2-D points coloured by category (a t-SNE embedding by digit or by domain),
//! with a title and a legend to the right of the plot, as PNG.

use camino::Utf8Path;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::font::{self, FAMILY};
use super::{category_colour, create_parent, draw_error, VizError};

/// Pixels per legend row, and the marker radius of the points.
const LEGEND_ROW: i32 = 24;
const POINT_RADIUS: i32 = 2;

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct ScatterPlot<'a> {
    pub title: &'a str,
    /// `[n, 2]` row-major.
    pub points: &'a [f32],
    /// One category per point, indexing `names`; it picks the colour.
    pub categories: &'a [usize],
    /// Legend entries, in colour order.
    pub names: &'a [String],
}

/// Draws `plot` into a `size` (width, height) PNG at `path`, creating its directory. Points are
/// drawn in the given order, so shuffle them if one category should not hide another.
pub fn scatter_png(
    path: &Utf8Path,
    plot: &ScatterPlot<'_>,
    size: (u32, u32),
) -> Result<(), VizError> {
    validate(path, plot)?;
    font::ensure_registered()?;
    create_parent(path)?;
    let root = BitMapBackend::new(path.as_std_path(), size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
    let (chart_area, legend_area) =
        root.split_horizontally(size.0.saturating_sub(legend_width(plot.names)));
    let (x_range, y_range) = (padded_range(plot.points, 0), padded_range(plot.points, 1));
    let mut chart = ChartBuilder::on(&chart_area)
        .caption(plot.title, (FAMILY, 24))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|e| draw_error(path, e))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .label_style((FAMILY, 14))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| draw_error(path, e))?;
    let markers = plot
        .points
        .chunks_exact(2)
        .zip(plot.categories)
        .map(|(p, &category)| {
            Circle::new(
                (f64::from(p[0]), f64::from(p[1])),
                POINT_RADIUS,
                category_colour(category).mix(0.8).filled(),
            )
        });
    chart
        .draw_series(markers)
        .map_err(|e| draw_error(path, e))?;
    draw_legend(&legend_area, plot.names).map_err(|e| draw_error(path, e))?;
    root.present().map_err(|e| draw_error(path, e))
}

fn validate(path: &Utf8Path, plot: &ScatterPlot<'_>) -> Result<(), VizError> {
    let fail = |message: String| {
        Err(VizError::Data {
            path: path.to_owned(),
            message,
        })
    };
    if plot.points.is_empty() || plot.points.len() != 2 * plot.categories.len() {
        return fail(format!(
            "{} coordinates for {} categories: need two per point and at least one point",
            plot.points.len(),
            plot.categories.len()
        ));
    }
    if let Some(&category) = plot.categories.iter().find(|&&c| c >= plot.names.len()) {
        return fail(format!(
            "category {category} has no name (only {} names)",
            plot.names.len()
        ));
    }
    if plot.points.iter().any(|v| !v.is_finite()) {
        return fail("a coordinate is NaN or infinite".to_owned());
    }
    Ok(())
}

/// Room for the longest name next to its marker.
fn legend_width(names: &[String]) -> u32 {
    let longest = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as u32;
    (48 + 9 * longest).clamp(80, 300)
}

/// The range of one coordinate with 5% room on both sides (or +-1 when all values are equal).
fn padded_range(points: &[f32], axis: usize) -> std::ops::Range<f64> {
    let values = points.iter().skip(axis).step_by(2).map(|&v| f64::from(v));
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let pad = if high > low { 0.05 * (high - low) } else { 1.0 };
    low - pad..high + pad
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    names: &[String],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let style = TextStyle::from((FAMILY, 16).into_font()).color(&BLACK);
    for (index, name) in names.iter().enumerate() {
        let y = 64 + LEGEND_ROW * index as i32;
        area.draw(&Circle::new((14, y), 6, category_colour(index).filled()))?;
        area.draw(&Text::new(name.clone(), (28, y - 8), style.clone()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path())
            .unwrap()
            .join("figs/scatter.png");
        let points: Vec<f32> = (0..200).map(|i| ((i * 37) % 101) as f32 / 7.0).collect();
        let categories: Vec<usize> = (0..100).map(|i| i % 10).collect();
        let names: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let plot = ScatterPlot {
            title: "t-SNE by digit",
            points: &points,
            categories: &categories,
            names: &names,
        };
        scatter_png(&path, &plot, (640, 480)).unwrap();
        assert_eq!(image::image_dimensions(&path).unwrap(), (640, 480));
    }

    #[test]
    fn rejects_a_category_without_name() {
        let names = vec!["a".to_owned()];
        let plot = ScatterPlot {
            title: "x",
            points: &[0.0, 1.0],
            categories: &[1],
            names: &names,
        };
        let err = scatter_png(Utf8Path::new("unused.png"), &plot, (10, 10)).unwrap_err();
        assert!(err.to_string().contains("category 1 has no name"), "{err}");
    }
}
