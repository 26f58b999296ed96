//! PNG and SVG charts for twobit's reports, drawn with plotters.
//!
//! Three charts, each written as `STEM.png` and `STEM.svg` (atomically: temporary file, then
//! rename):
//! - [`line_chart`]: e.g. test accuracy per epoch, one line per scheme;
//! - [`histogram`]: a layer's float weights with the quantizer's levels (solid) and
//!   thresholds (dashed) marked;
//! - [`grouped_bars`]: e.g. relative quantization error per layer, one bar per scheme.
//!
//! Text needs a TrueType font. plotters' `ab_glyph` renderer is pure Rust, so instead of
//! fontconfig we look for a font file: `$TWOBIT_FONT`, then the usual DejaVu / Liberation
//! locations (Debian: `fonts-dejavu-core`). Without one, every chart fails with
//! [`PlotError::NoFont`], which says what to install.
#![deny(missing_docs)]

mod charts;
mod font;

pub use charts::{grouped_bars, histogram, line_chart, Bars, Marks, Series};
pub use font::{find_font, FONT_ENV};

use std::path::{Path, PathBuf};

/// Why a chart could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// No TrueType font was found for the labels.
    #[error("no TrueType font for plot labels (looked at ${env} and {looked}); install fonts-dejavu-core or set {env}=/path/to/font.ttf", env = FONT_ENV)]
    NoFont {
        /// The places searched, comma-separated.
        looked: String,
    },
    /// The font file exists but could not be read or parsed.
    #[error("font {path}: {reason}")]
    BadFont {
        /// The font file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Nothing to draw (no points, no values) or values that are not finite.
    #[error("chart '{title}': {reason}")]
    BadData {
        /// The chart's title.
        title: String,
        /// What is wrong with the data.
        reason: String,
    },
    /// plotters failed while drawing.
    #[error("drawing {path}: {reason}")]
    Draw {
        /// The output file.
        path: PathBuf,
        /// plotters' message.
        reason: String,
    },
    /// The output path is refused by the shared policy (not a regular file, directory
    /// missing), or writing it failed; the message names the file.
    #[error("{0}")]
    Output(String),
    /// Writing or renaming the output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The output file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Chart size in pixels (PNG) and user units (SVG).
pub const SIZE: (u32, u32) = (900, 560);

/// `STEM.png` and `STEM.svg`.
pub fn outputs(stem: &Path) -> [PathBuf; 2] {
    let with = |ext: &str| {
        let mut s = stem.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    [with(".png"), with(".svg")]
}

/// A temporary name beside `path` that keeps its extension (the PNG encoder picks the format
/// from it).
fn temp_beside(path: &Path) -> PathBuf {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_extension(format!("tmp-{}.{ext}", std::process::id()))
}

fn rename(tmp: &Path, path: &Path) -> Result<(), PlotError> {
    std::fs::rename(tmp, path).map_err(|source| {
        let _ = std::fs::remove_file(tmp);
        PlotError::Io {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The output policy all twobit writers share ([`twobit_format::output_target`]): a symlink's
/// target is written, a non-regular file refused, a missing directory refused.
fn target(path: &Path) -> Result<PathBuf, PlotError> {
    twobit_format::output_target(path).map_err(|e| PlotError::Output(e.to_string()))
}

pub(crate) use render_impl::render_both;

mod render_impl {
    use super::*;
    use plotters::prelude::*;

    /// Draws the same chart on a bitmap and an SVG backend and writes both atomically.
    pub(crate) fn render_both(
        stem: &Path,
        draw_png: impl FnOnce(
            DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
        ) -> Result<(), String>,
        draw_svg: impl FnOnce(DrawingArea<SVGBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
    ) -> Result<Vec<PathBuf>, PlotError> {
        font::ensure_font()?;
        let [png, svg] = outputs(stem);
        // Both checked before drawing either, so a refused SVG leaves no new PNG.
        let png_target = target(&png)?;
        target(&svg)?;
        let tmp = temp_beside(&png_target);
        {
            let area = BitMapBackend::new(&tmp, SIZE).into_drawing_area();
            let res = draw_png(area);
            if let Err(reason) = res {
                let _ = std::fs::remove_file(&tmp);
                return Err(PlotError::Draw { path: png, reason });
            }
        }
        rename(&tmp, &png_target)?;

        let mut text = String::new();
        {
            let area = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
            draw_svg(area).map_err(|reason| PlotError::Draw {
                path: svg.clone(),
                reason,
            })?;
        }
        twobit_format::write_atomic(&svg, text.as_bytes())
            .map_err(|e| PlotError::Output(e.to_string()))?;
        Ok(vec![png, svg])
    }
}
