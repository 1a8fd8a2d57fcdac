//! Figures: scatter plots (t-SNE embeddings), training curves and confusion matrices, written as PNG with an
//! embedded font so they render the same on any machine, and generated images and their grids.

pub mod confusion;
pub mod curves;
mod font;
pub mod grid;
pub mod scatter;

pub use confusion::{confusion_png, ConfusionPlot};
pub use curves::{curves_png, CurvesPlot, Series};
pub use scatter::{scatter_png, ScatterPlot};

use camino::Utf8PathBuf;
use plotters::style::RGBColor;

/// Width and height in pixels of figures unless a caller asks otherwise.
pub const DEFAULT_SIZE: (u32, u32) = (960, 720);

/// Matplotlib's `tab10` palette: ten colours that stay distinguishable side by side.
pub const TAB10: [RGBColor; 10] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0x7f, 0x7f, 0x7f),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x17, 0xbe, 0xcf),
];

/// The colour of category `index` (the palette repeats past ten categories).
pub fn category_colour(index: usize) -> RGBColor {
    TAB10[index % TAB10.len()]
}

#[derive(Debug, thiserror::Error)]
pub enum VizError {
    #[error("the embedded plot font could not be loaded (a corrupt build?)")]
    Font,
    #[error("figure {path}: {message}")]
    Data { path: Utf8PathBuf, message: String },
    #[error("cannot draw figure {path}: {message}")]
    Draw { path: Utf8PathBuf, message: String },
}

/// Wraps a plotters error (whose type depends on the backend) with the figure's path.
fn draw_error(path: &camino::Utf8Path, err: impl std::fmt::Display) -> VizError {
    VizError::Draw {
        path: path.to_owned(),
        message: err.to_string(),
    }
}

/// Creates the directory a figure goes into.
fn create_parent(path: &camino::Utf8Path) -> Result<(), VizError> {
    match path.parent() {
        Some(parent) if !parent.as_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| draw_error(path, e))
        }
        _ => Ok(()),
    }
}
