//! The three chart kinds, each drawn by one function generic over the plotters backend so the
//! PNG and the SVG are the same drawing.
use crate::{render_both, PlotError};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// One named line of points.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y)` points, drawn in order.
    pub points: Vec<(f64, f64)>,
    /// Palette index; `None` uses the series' position. Give the same index to the same
    /// thing (e.g. a scheme) in every chart so its colour does not change between charts.
    pub color: Option<usize>,
}

/// One named set of bars, one value per category.
#[derive(Clone, Debug)]
pub struct Bars {
    /// Legend label.
    pub name: String,
    /// One value per category.
    pub values: Vec<f64>,
    /// Palette index, as [`Series::color`].
    pub color: Option<usize>,
}

/// Vertical marks on a weight histogram.
#[derive(Clone, Debug, Default)]
pub struct Marks {
    /// Reconstruction levels (solid lines).
    pub levels: Vec<f32>,
    /// Decision thresholds (dashed lines); infinite ones are skipped.
    pub thresholds: Vec<f32>,
}

/// Distinguishable colours (Tableau 10), cycled.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

fn bad(title: &str, reason: impl Into<String>) -> PlotError {
    PlotError::BadData {
        title: title.to_string(),
        reason: reason.into(),
    }
}

/// `[lo, hi]` widened by `pad` of its span (or by 1 if empty).
fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let span = hi - lo;
    if span > 0.0 {
        (lo - span * pad, hi + span * pad)
    } else {
        (lo - 1.0, hi + 1.0)
    }
}

/// Tick labels with as many decimals as ticks about a tenth of `span` apart need, and never
/// "-0.0" (a tick at zero computed as -1e-17).
pub(crate) fn tick_label(v: f64, span: f64) -> String {
    let decimals = if span > 0.0 && span.is_finite() {
        (-(span / 10.0).log10()).ceil().clamp(0.0, 6.0) as usize
    } else {
        1
    };
    let s = format!("{v:.decimals$}");
    if s.trim_start_matches('-')
        .chars()
        .all(|c| c == '0' || c == '.')
    {
        s.trim_start_matches('-').to_string()
    } else {
        s
    }
}

/// A count axis: whole numbers.
fn count_label(v: &f64) -> String {
    format!("{:.0}", v.max(0.0))
}

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

type Chart<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// The legend box, the same on every chart.
fn legend<'a, DB: DrawingBackend + 'a>(
    chart: &mut Chart<'a, DB>,
    position: SeriesLabelPosition,
) -> Result<(), String> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .draw()
        .map_err(e2s)
}

/// A line chart: one line (with dots) per series, legend at the lower right.
pub fn line_chart(
    stem: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> Result<Vec<PathBuf>, PlotError> {
    let pts = || series.iter().flat_map(|s| s.points.iter().copied());
    if pts().next().is_none() {
        return Err(bad(title, "no points"));
    }
    if pts().any(|(x, y)| !x.is_finite() || !y.is_finite()) {
        return Err(bad(title, "a point is not finite"));
    }
    let (x0, x1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (x, _)| {
        (a.min(x), b.max(x))
    });
    let (y0, y1) = pts().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, y)| {
        (a.min(y), b.max(y))
    });
    let x = padded(x0, x1, 0.02);
    let y = padded(y0, y1, 0.05);
    fn draw<DB: DrawingBackend>(
        area: DrawingArea<DB, Shift>,
        title: &str,
        labels: (&str, &str),
        range: ((f64, f64), (f64, f64)),
        series: &[Series],
    ) -> Result<(), String> {
        area.fill(&WHITE).map_err(e2s)?;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(range.0 .0..range.0 .1, range.1 .0..range.1 .1)
            .map_err(e2s)?;
        let (xs, ys) = (range.0 .1 - range.0 .0, range.1 .1 - range.1 .0);
        chart
            .configure_mesh()
            .x_desc(labels.0)
            .y_desc(labels.1)
            .x_label_formatter(&|v| tick_label(*v, xs))
            .y_label_formatter(&|v| tick_label(*v, ys))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e2s)?;
        for (i, s) in series.iter().enumerate() {
            let c = color(s.color.unwrap_or(i));
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), c.stroke_width(2)))
                .map_err(e2s)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(
                    s.points
                        .iter()
                        .map(|&(x, y)| Circle::new((x, y), 3, c.filled())),
                )
                .map_err(e2s)?;
        }
        legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        area.present().map_err(e2s)
    }
    let labels = (x_label, y_label);
    render_both(
        stem,
        |a| draw(a, title, labels, (x, y), series),
        |a| draw(a, title, labels, (x, y), series),
    )
}

/// A histogram of `values` in `bins` equal bins over their range (widened to show every
/// mark), with levels drawn solid and finite thresholds dashed.
pub fn histogram(
    stem: &Path,
    title: &str,
    values: &[f32],
    bins: usize,
    marks: &Marks,
) -> Result<Vec<PathBuf>, PlotError> {
    if values.is_empty() || bins == 0 {
        return Err(bad(title, "no values"));
    }
    if values.iter().any(|v| !v.is_finite()) {
        return Err(bad(title, "a value is not finite"));
    }
    let finite_marks = marks
        .levels
        .iter()
        .chain(&marks.thresholds)
        .filter(|v| v.is_finite());
    let (lo, hi) = values
        .iter()
        .chain(finite_marks)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v as f64), b.max(v as f64))
        });
    let (lo, hi) = padded(lo, hi, 0.03);
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in values {
        let i = (((v as f64 - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    let top = counts.iter().copied().max().unwrap_or(1).max(1) as f64 * 1.08;
    fn draw<DB: DrawingBackend>(
        area: DrawingArea<DB, Shift>,
        title: &str,
        (lo, hi, width, top): (f64, f64, f64, f64),
        counts: &[u64],
        marks: &Marks,
    ) -> Result<(), String> {
        area.fill(&WHITE).map_err(e2s)?;
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(lo..hi, 0.0..top)
            .map_err(e2s)?;
        let span = hi - lo;
        chart
            .configure_mesh()
            .x_desc("weight")
            .y_desc("count")
            .x_label_formatter(&|v| tick_label(*v, span))
            .y_label_formatter(&count_label)
            .label_style(("sans-serif", 14))
            .disable_x_mesh()
            .draw()
            .map_err(e2s)?;
        let bar = RGBColor(120, 150, 190);
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x0 = lo + i as f64 * width;
                Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], bar.filled())
            }))
            .map_err(e2s)?
            .label("weights")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], bar.filled()));
        let level = RGBColor(200, 30, 30);
        let mut first = true;
        for &l in &marks.levels {
            let s = chart
                .draw_series(LineSeries::new(
                    [(l as f64, 0.0), (l as f64, top)],
                    level.stroke_width(2),
                ))
                .map_err(e2s)?;
            if std::mem::take(&mut first) {
                s.label("levels").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], level.stroke_width(2))
                });
            }
        }
        let thr = RGBColor(30, 30, 30);
        let mut first = true;
        for &t in marks.thresholds.iter().filter(|t| t.is_finite()) {
            // Dashes by hand: short segments along the line (plotters 0.3's DashedLineSeries
            // is not in every backend path we use).
            let n = 40;
            let seg = top / n as f64;
            let dashes = (0..n).step_by(2).map(|k| {
                PathElement::new(
                    vec![
                        (t as f64, k as f64 * seg),
                        (t as f64, (k as f64 + 1.0) * seg),
                    ],
                    thr.stroke_width(2),
                )
            });
            let s = chart.draw_series(dashes).map_err(e2s)?;
            if std::mem::take(&mut first) {
                s.label("thresholds").legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 6, y)], thr.stroke_width(2))
                });
            }
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        area.present().map_err(e2s)
    }
    let geo = (lo, hi, width, top);
    render_both(
        stem,
        |a| draw(a, title, geo, &counts, marks),
        |a| draw(a, title, geo, &counts, marks),
    )
}

/// Grouped vertical bars: for each category (x), one bar per series, legend at upper right.
pub fn grouped_bars(
    stem: &Path,
    title: &str,
    y_label: &str,
    categories: &[String],
    series: &[Bars],
) -> Result<Vec<PathBuf>, PlotError> {
    if categories.is_empty() || series.is_empty() {
        return Err(bad(title, "no bars"));
    }
    if let Some(b) = series.iter().find(|b| b.values.len() != categories.len()) {
        return Err(bad(
            title,
            format!("series '{}' does not have one value per category", b.name),
        ));
    }
    if series
        .iter()
        .flat_map(|b| &b.values)
        .any(|v| !v.is_finite())
    {
        return Err(bad(title, "a value is not finite"));
    }
    let top = series
        .iter()
        .flat_map(|b| b.values.iter().copied())
        .fold(0.0f64, f64::max)
        .max(1e-12)
        * 1.45;
    fn draw<DB: DrawingBackend>(
        area: DrawingArea<DB, Shift>,
        title: &str,
        y_label: &str,
        top: f64,
        categories: &[String],
        series: &[Bars],
    ) -> Result<(), String> {
        area.fill(&WHITE).map_err(e2s)?;
        let n = categories.len();
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, 0.0..top)
            .map_err(e2s)?;
        let cats = categories.to_vec();
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&move |x| {
                // Label only the centre of each group.
                let i = x.floor();
                if (x - i - 0.5).abs() < 1e-6 && (i as usize) < cats.len() {
                    cats[i as usize].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(y_label)
            .y_label_formatter(&move |v| tick_label(*v, top))
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e2s)?;
        let k = series.len() as f64;
        let w = 0.8 / k;
        for (j, b) in series.iter().enumerate() {
            let c = color(b.color.unwrap_or(j));
            chart
                .draw_series(b.values.iter().enumerate().map(|(i, &v)| {
                    let x0 = i as f64 + 0.1 + j as f64 * w;
                    Rectangle::new([(x0, 0.0), (x0 + w * 0.92, v)], c.filled())
                }))
                .map_err(e2s)?
                .label(b.name.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], c.filled()));
        }
        legend(&mut chart, SeriesLabelPosition::UpperRight)?;
        area.present().map_err(e2s)
    }
    render_both(
        stem,
        |a| draw(a, title, y_label, top, categories, series),
        |a| draw(a, title, y_label, top, categories, series),
    )
}

#[cfg(test)]
mod tests {
    use super::{count_label, tick_label};

    #[test]
    fn ticks_have_no_negative_zero_and_counts_no_decimals() {
        assert_eq!(tick_label(-1e-17, 0.4), "0.00");
        assert_eq!(tick_label(-0.0, 2.0), "0.0");
        assert_eq!(tick_label(-0.25, 0.1), "-0.25");
        assert_eq!(tick_label(-0.2, 1.0), "-0.2");
        assert_eq!(tick_label(30.0, 300.0), "30");
        assert_eq!(count_label(&1200.0), "1200");
        assert_eq!(count_label(&-0.0), "0");
    }
}
