//! Figures: scatter plots and training curves as PNG.
