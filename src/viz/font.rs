//! The one font every figure uses: Noto Sans Regular from the `ttf-noto-sans` crate, compiled into
//! the binary (plotters' `ab_glyph` backend has no access to system fonts, and figures should not
//! depend on what a machine has installed).

use std::sync::OnceLock;

use plotters::style::FontStyle;

use super::VizError;

/// The family name figures ask plotters for.
pub(super) const FAMILY: &str = "sans-serif";

/// Registers the font with plotters once per process.
pub(super) fn ensure_registered() -> Result<(), VizError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = REGISTERED.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, ttf_noto_sans::REGULAR).is_ok()
    });
    if *ok {
        Ok(())
    } else {
        Err(VizError::Font)
    }
}
