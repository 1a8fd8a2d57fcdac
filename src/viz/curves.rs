//! Line plots of training curves: several named series over epochs (loss, accuracy, ...), with
//! axis labels and a legend, as PNG.

use camino::Utf8Path;
use plotters::prelude::*;

use super::font::{self, FAMILY};
use super::{category_colour, create_parent, draw_error, VizError};

/// One named curve; `values[e]` belongs to epoch `e + 1`. Non-finite values are left out.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a> {
    pub name: &'a str,
    pub values: &'a [f64],
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct CurvesPlot<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series<'a>],
}

/// Draws `plot` into a `size` (width, height) PNG at `path`, creating its directory.
pub fn curves_png(
    path: &Utf8Path,
    plot: &CurvesPlot<'_>,
    size: (u32, u32),
) -> Result<(), VizError> {
    let (epochs, y_range) = extent(path, plot)?;
    font::ensure_registered()?;
    create_parent(path)?;
    let root = BitMapBackend::new(path.as_std_path(), size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| draw_error(path, e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(plot.title, (FAMILY, 24))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.5..epochs as f64 + 0.5, y_range)
        .map_err(|e| draw_error(path, e))?;
    chart
        .configure_mesh()
        .light_line_style(RGBColor(0xee, 0xee, 0xee))
        .x_desc(plot.x_label)
        .y_desc(plot.y_label)
        .label_style((FAMILY, 14))
        .x_label_formatter(&|epoch| format!("{epoch:.0}"))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(|e| draw_error(path, e))?;
    for (index, series) in plot.series.iter().enumerate() {
        let colour = category_colour(index);
        let points: Vec<(f64, f64)> = series
            .values
            .iter()
            .enumerate()
            .filter(|(_, v)| v.is_finite())
            .map(|(epoch, &v)| (epoch as f64 + 1.0, v))
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| draw_error(path, e))?
            .label(series.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, colour.filled())),
            )
            .map_err(|e| draw_error(path, e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font((FAMILY, 15))
        .draw()
        .map_err(|e| draw_error(path, e))?;
    root.present().map_err(|e| draw_error(path, e))
}

/// The number of epochs and the padded value range over all finite values.
fn extent(
    path: &Utf8Path,
    plot: &CurvesPlot<'_>,
) -> Result<(usize, std::ops::Range<f64>), VizError> {
    let epochs = plot
        .series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(0);
    let finite = plot
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| v.is_finite());
    let (low, high) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if epochs == 0 || low > high {
        return Err(VizError::Data {
            path: path.to_owned(),
            message: "no finite value in any series: nothing to plot".to_owned(),
        });
    }
    let pad = if high > low { 0.05 * (high - low) } else { 1.0 };
    Ok((epochs, low - pad..high + pad))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_png_of_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("curves.png");
        let loss: Vec<f64> = (0..10).map(|e| 2.0 / (1.0 + e as f64)).collect();
        let accuracy: Vec<f64> = (0..10).map(|e| 1.0 - 0.8 / (1.0 + e as f64)).collect();
        let series = [
            Series {
                name: "train loss",
                values: &loss,
            },
            Series {
                name: "val accuracy",
                values: &accuracy,
            },
        ];
        let plot = CurvesPlot {
            title: "Training",
            x_label: "epoch",
            y_label: "value",
            series: &series,
        };
        curves_png(&path, &plot, (800, 500)).unwrap();
        assert_eq!(image::image_dimensions(&path).unwrap(), (800, 500));
    }

    #[test]
    fn refuses_series_without_finite_values() {
        let series = [Series {
            name: "loss",
            values: &[f64::NAN],
        }];
        let plot = CurvesPlot {
            title: "t",
            x_label: "x",
            y_label: "y",
            series: &series,
        };
        assert!(curves_png(Utf8Path::new("unused.png"), &plot, (10, 10)).is_err());
    }
}
