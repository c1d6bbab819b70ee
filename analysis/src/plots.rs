//! Charts: a small model (line charts with whiskers, grouped bar charts) drawn by plotters to
//! PNG and SVG.
//!
//! Text is drawn with ab_glyph from a TTF file found at run time ([`FONT_PATHS`], or the file
//! named by `ALLOCLAB_FONT`), so no fontconfig or freetype is needed. Log axes of the x side are
//! done by the caller transforming the data (thread counts to log2, quantiles to "nines") with a
//! label formatter; a log y axis uses plotters' log coordinates.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::error::Error;

/// Where a sans-serif TTF is looked for (Debian's fonts-dejavu-core first).
pub const FONT_PATHS: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

const FONT: &str = "sans-serif";

/// Registers the font once; the error says where it was looked for.
pub fn init_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let mut tried = Vec::new();
        let env = std::env::var("ALLOCLAB_FONT").ok();
        for path in env.iter().map(String::as_str).chain(FONT_PATHS) {
            tried.push(path.to_owned());
            if let Ok(bytes) = std::fs::read(path) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_ok() {
                    return Ok(());
                }
            }
        }
        Err(format!(
            "no usable TTF font for plot text (tried {}); install Debian's fonts-dejavu-core or \
             set ALLOCLAB_FONT to a .ttf file",
            tried.join(", ")
        ))
    })
    .clone()
}

/// Tableau 10: distinguishable, and readable on white.
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

/// The colour of palette slot `i` (wraps).
pub fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

/// One line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Legend text.
    pub label: String,
    /// Palette slot.
    pub color: usize,
    /// Points, x ascending.
    pub points: Vec<(f64, f64)>,
    /// Vertical spread bars `(x, low, high)` (min–max over repetitions).
    pub whiskers: Vec<(f64, f64, f64)>,
    /// Dashed (a secondary quantity) rather than solid.
    pub dashed: bool,
    /// A marker on each point.
    pub markers: bool,
}

/// How the x values of a line chart are labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum XAxis {
    /// Plain numbers.
    Linear,
    /// x is log2 of the value: labels are 2^x at integers.
    Log2,
    /// x is −log10(1 − q) of a quantile q, with the maximum at 5: labels p50 … p99.99, max.
    Nines,
}

/// How the y values are labelled.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YUnit {
    /// Plain numbers.
    Plain,
    /// Nanoseconds (ns/µs/ms labels).
    Ns,
    /// A ratio (`1.5×`).
    Ratio,
}

/// A line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    /// Axis description under the x axis, with units.
    pub x_desc: String,
    /// Axis description beside the y axis, with units.
    pub y_desc: String,
    /// x labelling.
    pub x_axis: XAxis,
    /// y labelling.
    pub y_unit: YUnit,
    /// Logarithmic y axis.
    pub y_log: bool,
    /// y axis starts at 0 (linear axes only).
    pub y_from_zero: bool,
    /// Values above this are drawn at it (the caption says so).
    pub y_clip: Option<f64>,
    /// A horizontal reference line `(y, label)`.
    pub reference: Option<(f64, String)>,
    /// The lines.
    pub lines: Vec<Line>,
}

/// One bar: a value and its spread.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Height.
    pub value: f64,
    /// Low end of the spread (min over repetitions).
    pub low: f64,
    /// High end of the spread.
    pub high: f64,
}

/// A grouped bar chart: groups along x, one bar per series in each group.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Axis description beside the y axis, with units.
    pub y_desc: String,
    /// x axis description.
    pub x_desc: String,
    /// y labelling.
    pub y_unit: YUnit,
    /// Group names (x).
    pub groups: Vec<String>,
    /// Series names (legend) and palette slots.
    pub series: Vec<(String, usize)>,
    /// `values[group][series]`.
    pub values: Vec<Vec<Option<Bar>>>,
    /// A horizontal reference line `(y, label)`.
    pub reference: Option<(f64, String)>,
}

/// What a figure draws.
#[derive(Debug, Clone, PartialEq)]
pub enum Chart {
    /// Lines.
    Line(LineChart),
    /// Grouped bars.
    Bar(BarChart),
}

/// A figure: file stem, title and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// `plots/<stem>.png` and `plots/<stem>.svg`.
    pub stem: String,
    /// Title drawn on the chart.
    pub title: String,
    /// How to read it (report and README).
    pub caption: String,
    /// The chart.
    pub chart: Chart,
}

/// The files a figure was written to.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// PNG file.
    pub png: PathBuf,
    /// SVG file.
    pub svg: PathBuf,
}

/// Lines with at most this many points get a marker on each (few samples: show where they are).
pub const SPARSE_POINTS: usize = 30;

/// Image size in pixels.
pub const SIZE: (u32, u32) = (1000, 620);

/// Writes the figure as `dir/<stem>.png` and `dir/<stem>.svg`.
pub fn render(fig: &Figure, dir: &Path) -> Result<Rendered, Error> {
    init_font().map_err(|reason| Error::Plot {
        path: dir.join(&fig.stem),
        reason,
    })?;
    let png = dir.join(format!("{}.png", fig.stem));
    let svg = dir.join(format!("{}.svg", fig.stem));
    let err = |path: &Path| {
        let path = path.to_path_buf();
        move |reason: String| Error::Plot { path, reason }
    };
    {
        let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
        draw(&root, fig).map_err(err(&png))?;
        root.present().map_err(|e| err(&png)(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, SIZE).into_drawing_area();
        draw(&root, fig).map_err(err(&svg))?;
        root.present().map_err(|e| err(&svg)(e.to_string()))?;
    }
    Ok(Rendered { png, svg })
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    match &fig.chart {
        Chart::Line(c) => {
            let (x0, x1) = x_bounds(c);
            let (y0, y1) = y_bounds(c);
            if c.y_log {
                line_chart(root, &fig.title, c, x0..x1, (y0..y1).log_scale())
            } else {
                line_chart(root, &fig.title, c, x0..x1, y0..y1)
            }
        }
        Chart::Bar(b) => bar_chart(root, &fig.title, b),
    }
}

fn finite_points(c: &LineChart) -> impl Iterator<Item = (f64, f64)> + '_ {
    c.lines
        .iter()
        .flat_map(|l| {
            l.points.iter().copied().chain(
                l.whiskers
                    .iter()
                    .flat_map(|&(x, lo, hi)| [(x, lo), (x, hi)]),
            )
        })
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

fn x_bounds(c: &LineChart) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, _) in finite_points(c) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    match c.x_axis {
        XAxis::Nines => (0.0, 5.0),
        XAxis::Log2 => (lo.floor() - 0.25, hi.ceil() + 0.25),
        XAxis::Linear => {
            if hi <= lo {
                (lo - 1.0, hi + 1.0)
            } else {
                (lo.min(0.0), hi)
            }
        }
    }
}

fn y_bounds(c: &LineChart) -> (f64, f64) {
    let clip = c.y_clip.unwrap_or(f64::INFINITY);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (_, y) in finite_points(c) {
        if c.y_log && y <= 0.0 {
            continue;
        }
        let y = y.min(clip);
        lo = lo.min(y);
        hi = hi.max(y);
    }
    if let Some((r, _)) = c.reference {
        lo = lo.min(r);
        hi = hi.max(r);
    }
    if !lo.is_finite() {
        return if c.y_log { (1.0, 10.0) } else { (0.0, 1.0) };
    }
    if c.y_log {
        (lo / 1.5, hi * 1.5)
    } else {
        let lo = if c.y_from_zero { lo.min(0.0) } else { lo };
        let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
        let lo = if c.y_from_zero && lo >= 0.0 {
            0.0
        } else {
            lo - span * 0.05
        };
        (lo, hi + span * 0.08)
    }
}

fn fmt_y(unit: YUnit, v: f64) -> String {
    match unit {
        YUnit::Ns => crate::tables::fmt_ns(v),
        YUnit::Ratio => format!("{}×", short_num(v)),
        YUnit::Plain => short_num(v),
    }
}

fn short_num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.2e}")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

fn is_int(v: f64) -> bool {
    (v - v.round()).abs() < 1e-6
}

fn fmt_x(axis: XAxis, v: f64) -> String {
    match axis {
        XAxis::Linear => short_num(v),
        XAxis::Log2 if is_int(v) => format!("{}", 2f64.powi(v.round() as i32)),
        XAxis::Log2 => String::new(),
        XAxis::Nines if is_int(v) => match v.round() as i32 {
            0 => "min".into(),
            1 => "p90".into(),
            2 => "p99".into(),
            3 => "p99.9".into(),
            4 => "p99.99".into(),
            5 => "max".into(),
            _ => String::new(),
        },
        XAxis::Nines if (v - std::f64::consts::LOG10_2).abs() < 0.01 => "p50".into(),
        XAxis::Nines => String::new(),
    }
}

fn line_chart<DB, XR, YR>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    c: &LineChart,
    xr: XR,
    yr: YR,
) -> Result<(), String>
where
    DB: DrawingBackend,
    XR: AsRangedCoord<Value = f64>,
    YR: AsRangedCoord<Value = f64>,
    XR::CoordDescType: ValueFormatter<f64> + Ranged<ValueType = f64>,
    YR::CoordDescType: ValueFormatter<f64> + Ranged<ValueType = f64>,
{
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(88)
        .build_cartesian_2d(xr, yr)
        .map_err(s)?;
    let x_axis = c.x_axis;
    let y_unit = c.y_unit;
    let xf = move |v: &f64| fmt_x(x_axis, *v);
    let yf = move |v: &f64| fmt_y(y_unit, *v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(c.x_desc.as_str())
        .y_desc(c.y_desc.as_str())
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .light_line_style(RGBColor(235, 235, 235));
    match c.x_axis {
        XAxis::Nines => {
            mesh.x_labels(11);
        }
        XAxis::Log2 => {
            mesh.x_labels(12);
        }
        XAxis::Linear => {
            mesh.x_labels(10);
        }
    }
    mesh.draw().map_err(s)?;

    let clip = c.y_clip.unwrap_or(f64::INFINITY);
    let ok = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!c.y_log || p.1 > 0.0);
    if let Some((y, label)) = &c.reference {
        let (x0, x1) = x_bounds(c);
        let style = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(vec![(x0, *y), (x1, *y)], 6, 4, style))
            .map_err(s)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    for line in &c.lines {
        let col = color(line.color);
        let style = ShapeStyle::from(&col).stroke_width(if line.dashed { 2 } else { 3 });
        let pts: Vec<(f64, f64)> = line
            .points
            .iter()
            .filter(|p| ok(p))
            .map(|&(x, y)| (x, y.min(clip)))
            .collect();
        if pts.is_empty() {
            continue;
        }
        let anno = if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                .map_err(s)?
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(s)?
        };
        let dashed = line.dashed;
        anno.label(line.label.as_str()).legend(move |(x, y)| {
            if dashed {
                PathElement::new(vec![(x, y), (x + 8, y)], style)
            } else {
                PathElement::new(vec![(x, y), (x + 22, y)], style)
            }
        });
        // Markers on request, and on every sparse line (a line of one point draws nothing).
        if line.markers || pts.len() <= SPARSE_POINTS {
            let r = if line.markers { 4 } else { 3 };
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, r, col.filled())))
                .map_err(s)?;
        }
        let whisk = ShapeStyle::from(&col).stroke_width(2);
        chart
            .draw_series(
                line.whiskers
                    .iter()
                    .filter(|(x, lo, hi)| ok(&(*x, *lo)) && ok(&(*x, *hi)))
                    .map(|&(x, lo, hi)| {
                        PathElement::new(vec![(x, lo.min(clip)), (x, hi.min(clip))], whisk)
                    }),
            )
            .map_err(s)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 14))
        .draw()
        .map_err(s)?;
    Ok(())
}

fn bar_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    b: &BarChart,
) -> Result<(), String> {
    let n = b.groups.len().max(1);
    let mut hi = f64::NEG_INFINITY;
    for v in b.values.iter().flatten().flatten() {
        hi = hi.max(v.value).max(v.high);
    }
    if let Some((r, _)) = b.reference {
        hi = hi.max(r);
    }
    if !hi.is_finite() || hi <= 0.0 {
        hi = 1.0;
    }
    let mut chart = ChartBuilder::on(root)
        .caption(title, (FONT, 24))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(88)
        .build_cartesian_2d(-0.5f64..(n as f64 - 0.5), 0f64..hi * 1.15)
        .map_err(s)?;
    let groups = b.groups.clone();
    let xf = move |v: &f64| {
        if is_int(*v) && *v >= 0.0 {
            groups.get(v.round() as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    let unit = b.y_unit;
    let yf = move |v: &f64| fmt_y(unit, *v);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .x_desc(b.x_desc.as_str())
        .y_desc(b.y_desc.as_str())
        .axis_desc_style((FONT, 17))
        .label_style((FONT, 14))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(s)?;
    let k = b.series.len().max(1) as f64;
    let slot = 0.8 / k;
    for (si, (label, ci)) in b.series.iter().enumerate() {
        let col = color(*ci);
        let bars: Vec<(f64, Bar)> = b
            .values
            .iter()
            .enumerate()
            .filter_map(|(gi, row)| row.get(si).copied().flatten().map(|v| (gi as f64, v)))
            .collect();
        let left = |g: f64| g - 0.4 + slot * si as f64;
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                Rectangle::new(
                    [
                        (left(g) + slot * 0.06, 0.0),
                        (left(g) + slot * 0.94, v.value),
                    ],
                    col.filled(),
                )
            }))
            .map_err(s)?
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], col.filled()));
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                let x = left(g) + slot * 0.5;
                PathElement::new(vec![(x, v.low), (x, v.high)], BLACK.stroke_width(2))
            }))
            .map_err(s)?;
    }
    if let Some((y, label)) = &b.reference {
        let style = ShapeStyle::from(&BLACK.mix(0.6)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.5, *y), (n as f64 - 0.5, *y)],
                6,
                4,
                style,
            ))
            .map_err(s)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], style));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .label_font((FONT, 14))
        .draw()
        .map_err(s)?;
    Ok(())
}
