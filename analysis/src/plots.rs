//! Charts: a small model (line charts with whiskers, grouped bar charts) drawn by plotters to
//! PNG and SVG.
//!
//! Text is drawn with ab_glyph from a TTF file found at run time ([`FONT_PATHS`], or the file
//! named by `ALLOCLAB_FONT`), so no fontconfig or freetype is needed.
//!
//! Axes are [`Axis`] coordinates of our own (linear or log10), whose ticks are chosen here, not
//! by plotters: "nice" 1–2–5 steps with labels in one unit per axis (`20 M`, `1.5 µs`, `2×`,
//! `512 KiB`), or an explicit list (the thread counts that were replayed, the percentiles of
//! the latency grid, the trace names of a bar chart). Log axes of the x side are done by the
//! caller transforming the data (thread counts to log2, quantiles to "nines").
//!
//! Every figure has its title on top and its legend in a column to the right of the plot, so
//! the legend never covers data. A grouped bar chart is drawn with vertical bars while its
//! group names fit side by side under the axis, and with horizontal bars (names on the y axis,
//! the image as tall as the groups need) otherwise; see [`bar_orientation`].

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, Ranged, ValueFormatter};
use plotters::prelude::*;
use plotters::style::FontStyle;
use plotters::style::text_anchor::{HPos, Pos, VPos};

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

/// Reference lines and legend marks without a palette colour.
const INK: RGBColor = RGBColor(70, 70, 70);

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
    /// x is log2 of the value: a tick at each x of the data, labelled 2^x (thread counts).
    Log2,
    /// x is −log10(1 − q) of a quantile q, with the maximum at 5: ticks min, p50, p90 … p99.99,
    /// max.
    Nines,
}

/// The unit of an axis' values, which decides its tick labels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum YUnit {
    /// Plain numbers (the unit is in the axis description).
    Plain,
    /// Nanoseconds: `ns`, `µs`, `ms`, `s`.
    Ns,
    /// A ratio: `1.5×`.
    Ratio,
    /// Operations per second: `400`, `25 k`, `1.5 M`.
    OpsPerSec,
    /// Bytes: `B`, `KiB`, `MiB`, `GiB`.
    Bytes,
}

/// What a legend entry shows beside its text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Swatch {
    /// A line: palette slot (None: dark grey), dashed or solid.
    Line {
        /// Palette slot.
        color: Option<usize>,
        /// Dashed.
        dashed: bool,
    },
    /// A filled box in a palette colour (bars).
    Block(usize),
}

/// One legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LegendEntry {
    /// Text.
    pub label: String,
    /// Mark.
    pub swatch: Swatch,
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
    /// The legend; empty: one entry per line (and one for the reference).
    pub legend: Vec<LegendEntry>,
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

/// A grouped bar chart: one group per name (trace), one bar per series (allocator) in each.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    /// Description of the value axis, with units.
    pub value_desc: String,
    /// Description of the group axis.
    pub group_desc: String,
    /// Unit of the values.
    pub unit: YUnit,
    /// Logarithmic value axis.
    pub log: bool,
    /// Bars grow from this value (e.g. 1.0 for ratios: left of it is below, right above);
    /// None: from 0, or from the axis' low end on a log axis.
    pub base: Option<f64>,
    /// Group names.
    pub groups: Vec<String>,
    /// Series names (legend) and palette slots.
    pub series: Vec<(String, usize)>,
    /// `values[group][series]`.
    pub values: Vec<Vec<Option<Bar>>>,
    /// A reference value drawn as a dashed line across the groups `(value, label)`.
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

/// Where a figure goes in the report.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Group {
    /// The overview: one figure covers every trace (named section).
    Overview(String),
    /// A figure of one trace.
    Trace(String),
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
    /// Where it goes in the report.
    pub group: Group,
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
    /// Image size in pixels.
    pub size: (u32, u32),
}

/// Lines with at most this many points get a marker on each (few samples: show where they are).
pub const SPARSE_POINTS: usize = 30;

/// Image size in pixels of every figure but a horizontal bar chart (which is [`SIZE`]`.0` wide
/// and as tall as its groups need, at least [`SIZE`]`.1`).
pub const SIZE: (u32, u32) = (1000, 620);

/// Most bars (groups × series) a vertical bar chart has.
pub const MAX_VERTICAL_BARS: usize = 48;

/// Bar chart layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Groups along x, bars upwards.
    Vertical,
    /// Groups down the y axis (names on the left), bars to the right.
    Horizontal,
}

/// Rough width of `s` in 14 px DejaVu Sans (wide side: about 0.6 em a character).
fn label_px(s: &str) -> f64 {
    s.chars().count() as f64 * 8.5
}

/// How a bar chart is drawn: vertical while every group name fits under its group (in the
/// plot width left by the axis labels and the legend) and there are at most
/// [`MAX_VERTICAL_BARS`] bars; horizontal otherwise, so names never overlap.
pub fn bar_orientation(b: &BarChart) -> Orientation {
    let n = b.groups.len().max(1);
    let bars = n * b.series.len().max(1);
    let widest = b.groups.iter().map(|g| label_px(g)).fold(0.0, f64::max);
    let legend = b
        .series
        .iter()
        .map(|(s, _)| label_px(s))
        .fold(0.0, f64::max)
        + 60.0;
    let plot_w = SIZE.0 as f64 - 130.0 - legend;
    if bars <= MAX_VERTICAL_BARS && widest + 12.0 <= plot_w / n as f64 {
        Orientation::Vertical
    } else {
        Orientation::Horizontal
    }
}

/// Pixels per group of a horizontal bar chart.
fn group_px(b: &BarChart) -> u32 {
    (b.series.len().max(1) as u32 * 6 + 10).max(26)
}

/// Title, value axis and margins of a horizontal bar chart.
const HORIZONTAL_CHROME: u32 = 170;

/// The image size of a figure.
pub fn figure_size(fig: &Figure) -> (u32, u32) {
    match &fig.chart {
        Chart::Bar(b) if bar_orientation(b) == Orientation::Horizontal => {
            let h = HORIZONTAL_CHROME + b.groups.len() as u32 * group_px(b);
            (SIZE.0, h.clamp(SIZE.1, 6000))
        }
        _ => SIZE,
    }
}

/// Values spanning more than this factor (largest / smallest positive) are best drawn on a
/// log axis.
pub const LOG_SPAN: f64 = 30.0;

/// Whether these values span more than [`LOG_SPAN`] (non-positive values are ignored).
pub fn wide_span(values: impl IntoIterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0f64);
    for v in values {
        if v.is_finite() && v > 0.0 {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    }
    lo.is_finite() && hi / lo > LOG_SPAN
}

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
    let size = figure_size(fig);
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw(&root, fig).map_err(err(&png))?;
        root.present().map_err(|e| err(&png)(e.to_string()))?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw(&root, fig).map_err(err(&svg))?;
        root.present().map_err(|e| err(&svg)(e.to_string()))?;
    }
    Ok(Rendered { png, svg, size })
}

fn s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

// ---------------------------------------------------------------------------------------------
// Axes.

/// A 1-D coordinate: linear or log10 over `lo..hi`, with ticks (labelled, bold grid lines) and
/// light grid lines chosen by us.
#[derive(Debug, Clone)]
pub struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<(f64, String)>,
    light: Vec<f64>,
}

impl Axis {
    fn frac(&self, v: f64) -> f64 {
        let f = if self.log {
            let v = v.max(self.lo * 1e-6);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        };
        if f.is_finite() {
            f.clamp(-4.0, 5.0)
        } else {
            0.0
        }
    }

    /// The tick labels.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.ticks.iter().map(|(_, l)| l.as_str())
    }

    /// Explicit ticks over `lo..hi` (linear).
    pub fn fixed(lo: f64, hi: f64, ticks: Vec<(f64, String)>) -> Axis {
        Axis {
            lo,
            hi,
            log: false,
            ticks,
            light: Vec::new(),
        }
    }

    /// A linear axis over `lo..hi` with 1–2–5 ticks labelled in `unit`.
    pub fn linear(lo: f64, hi: f64, unit: YUnit) -> Axis {
        let (lo, hi) = if hi > lo {
            (lo, hi)
        } else {
            (lo - 1.0, lo + 1.0)
        };
        // One unit for the whole axis: the largest value's, unless that would write it as
        // 1.x (then the next smaller one: 200 … 1000, not 0.2 k … 1.0 k).
        let top = lo.abs().max(hi.abs());
        let (mut div, mut suffix) = unit_prefix(unit, top);
        if top / div < 1.5 {
            (div, suffix) = unit_prefix(unit, div * 0.999);
        }
        let step = nice_step((hi - lo) / div / 7.0) * div;
        let first = (lo / step).ceil() as i64;
        let last = (hi / step).floor() as i64;
        let values: Vec<f64> = (first..=last).map(|i| i as f64 * step).collect();
        let decimals = decimals_for(step / div);
        let ticks = values
            .iter()
            .map(|&v| {
                let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
                (v, fmt_scaled(unit, v, div, decimals, suffix))
            })
            .collect();
        let light_step = step / 2.0;
        let light = ((lo / light_step).ceil() as i64..=(hi / light_step).floor() as i64)
            .map(|i| i as f64 * light_step)
            .collect();
        Axis {
            lo,
            hi,
            log: false,
            ticks,
            light,
        }
    }

    /// A log10 axis covering `lo..hi` (both > 0), widened to 1–2–5 values, ticks at decades
    /// (and at 2 and 5 when there are few decades), each labelled in `unit`.
    pub fn log(lo: f64, hi: f64, unit: YUnit) -> Axis {
        let (lo, hi) = if lo > 0.0 && hi > lo {
            (lo, hi)
        } else if hi > 0.0 {
            (hi / 10.0, hi * 10.0)
        } else {
            (1.0, 10.0)
        };
        let lo = nice_below(lo);
        let hi = nice_above(hi);
        let decades = (hi / lo).log10();
        let mults: &[f64] = if decades <= 1.5 {
            &[1.0, 2.0, 3.0, 5.0]
        } else if decades <= 3.2 {
            &[1.0, 2.0, 5.0]
        } else {
            &[1.0]
        };
        let mut ticks = Vec::new();
        let mut light = Vec::new();
        let e0 = lo.log10().floor() as i32 - 1;
        let e1 = hi.log10().ceil() as i32 + 1;
        let step = if decades > 12.0 { 2 } else { 1 };
        for e in e0..=e1 {
            let d = 10f64.powi(e);
            for m in 1..10 {
                let v = d * m as f64;
                if v < lo * (1.0 - 1e-9) || v > hi * (1.0 + 1e-9) {
                    continue;
                }
                if mults.contains(&(m as f64)) && (m != 1 || e.rem_euclid(step) == 0) {
                    let (div, suffix) = unit_prefix(unit, v);
                    let decimals = decimals_for(v / div).min(3);
                    ticks.push((v, fmt_scaled(unit, v, div, decimals, suffix)));
                } else if decades <= 6.0 {
                    light.push(v);
                }
            }
        }
        // The low end (where bars start) gets a label too, when it is not too close to the
        // next one (8 % of the axis: a label's width).
        let room = |t: &(f64, String)| (t.0 / lo).log10() / decades >= 0.08;
        if ticks.first().is_none_or(room) && ticks.first().is_none_or(|t| t.0 > lo * (1.0 + 1e-9)) {
            let (div, suffix) = unit_prefix(unit, lo);
            let decimals = decimals_for(lo / div).min(3);
            ticks.insert(0, (lo, fmt_scaled(unit, lo, div, decimals, suffix)));
            light.retain(|v| *v > lo * (1.0 + 1e-9));
        }
        Axis {
            lo,
            hi,
            log: true,
            ticks,
            light,
        }
    }
}

impl Ranged for Axis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        limit.0 + ((limit.1 - limit.0) as f64 * self.frac(*v)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        let mut v: Vec<f64> = self.ticks.iter().map(|t| t.0).collect();
        if hint.weight().allow_light_points() {
            v.extend(&self.light);
        }
        v
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

impl ValueFormatter<f64> for Axis {
    fn format_ext(&self, v: &f64) -> String {
        let tol = if self.log {
            v.abs() * 1e-9
        } else {
            (self.hi - self.lo).abs() * 1e-9
        };
        self.ticks
            .iter()
            .find(|(t, _)| (t - v).abs() <= tol)
            .map(|(_, l)| l.clone())
            .unwrap_or_default()
    }
}

/// 1, 2 or 5 × 10^k, the smallest not below `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let d = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if m * d >= raw * (1.0 - 1e-9) {
            return m * d;
        }
    }
    10.0 * d
}

/// The largest 1, 2 or 5 × 10^k not above `v`.
fn nice_below(v: f64) -> f64 {
    let d = 10f64.powf(v.log10().floor());
    for m in [5.0, 2.0, 1.0] {
        if m * d <= v * (1.0 + 1e-9) {
            return m * d;
        }
    }
    d
}

/// The smallest 1, 2 or 5 × 10^k not below `v`.
fn nice_above(v: f64) -> f64 {
    let d = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * d >= v * (1.0 - 1e-9) {
            return m * d;
        }
    }
    10.0 * d
}

/// Decimals needed to write `v` exactly (up to 6).
fn decimals_for(v: f64) -> usize {
    let v = v.abs();
    (0..6)
        .find(|&d| {
            let x = v * 10f64.powi(d as i32);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        })
        .unwrap_or(6)
}

/// The divisor and suffix a value of magnitude `top` is written with.
fn unit_prefix(unit: YUnit, top: f64) -> (f64, &'static str) {
    let table: &[(f64, &'static str)] = match unit {
        YUnit::Plain => &[(1.0, "")],
        YUnit::Ratio => &[(1.0, "×")],
        YUnit::Ns => &[(1e9, " s"), (1e6, " ms"), (1e3, " µs"), (1.0, " ns")],
        YUnit::OpsPerSec => &[(1e9, " G"), (1e6, " M"), (1e3, " k"), (1.0, "")],
        YUnit::Bytes => &[
            (1024.0 * 1024.0 * 1024.0, " GiB"),
            (1024.0 * 1024.0, " MiB"),
            (1024.0, " KiB"),
            (1.0, " B"),
        ],
    };
    let top = top.abs();
    table
        .iter()
        .copied()
        .find(|(d, _)| top >= *d * (1.0 - 1e-9))
        .unwrap_or(*table.last().expect("non-empty"))
}

fn fmt_scaled(unit: YUnit, v: f64, div: f64, decimals: usize, suffix: &str) -> String {
    if v == 0.0 {
        return if unit == YUnit::Ratio { "0×" } else { "0" }.into();
    }
    let x = v / div;
    if x.abs() >= 1e6 || x.abs() < 1e-4 {
        return format!("{v:.1e}{suffix}");
    }
    format!("{x:.decimals$}{suffix}")
}

/// A value as an axis of `unit` would write it (3 significant digits).
pub fn fmt_value(unit: YUnit, v: f64) -> String {
    let (div, suffix) = unit_prefix(unit, v);
    let x = (v / div).abs();
    let decimals = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    let s = fmt_scaled(unit, v, div, decimals, "");
    let s = if s.contains('.') && !s.contains('e') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    };
    format!("{s}{suffix}")
}

// ---------------------------------------------------------------------------------------------
// Figure layout: title on top, legend column on the right.

/// The figures' font at `size` px.
pub(crate) fn font(size: u32) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font())
}

fn text_w<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, t: &str, size: u32) -> u32 {
    area.estimate_text_size(t, &font(size))
        .map(|(w, _)| w)
        .unwrap_or_else(|_| (t.chars().count() as u32) * size * 6 / 10)
}

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, fig: &Figure) -> Result<(), String> {
    root.fill(&WHITE).map_err(s)?;
    let (w, _) = root.dim_in_pixel();
    let (head, body) = root.split_vertically(46);
    head.draw(&Text::new(
        fig.title.clone(),
        (w as i32 / 2, 26),
        font(22).pos(Pos::new(HPos::Center, VPos::Center)),
    ))
    .map_err(s)?;
    let legend = legend_of(fig);
    let lw = legend
        .iter()
        .map(|e| text_w(root, &e.label, 14))
        .max()
        .unwrap_or(0)
        + 52;
    let lw = lw.clamp(110, w / 3);
    let (plot, side) = body.split_horizontally(w - lw);
    match &fig.chart {
        Chart::Line(c) => line_chart(&plot, c)?,
        Chart::Bar(b) => match bar_orientation(b) {
            Orientation::Vertical => bar_chart_vertical(&plot, b)?,
            Orientation::Horizontal => bar_chart_horizontal(&plot, b)?,
        },
    }
    draw_legend(&side, &legend)
}

fn legend_of(fig: &Figure) -> Vec<LegendEntry> {
    let reference = |r: &Option<(f64, String)>| {
        r.as_ref().map(|(_, l)| LegendEntry {
            label: l.clone(),
            swatch: Swatch::Line {
                color: None,
                dashed: true,
            },
        })
    };
    match &fig.chart {
        Chart::Line(c) if !c.legend.is_empty() => c.legend.clone(),
        Chart::Line(c) => c
            .lines
            .iter()
            .map(|l| LegendEntry {
                label: l.label.clone(),
                swatch: Swatch::Line {
                    color: Some(l.color),
                    dashed: l.dashed,
                },
            })
            .chain(reference(&c.reference))
            .collect(),
        Chart::Bar(b) => b
            .series
            .iter()
            .map(|(l, c)| LegendEntry {
                label: l.clone(),
                swatch: Swatch::Block(*c),
            })
            .chain(reference(&b.reference))
            .collect(),
    }
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entries: &[LegendEntry],
) -> Result<(), String> {
    let row = 22;
    let top = 24;
    for (i, e) in entries.iter().enumerate() {
        let y = top + i as i32 * row;
        match e.swatch {
            Swatch::Block(c) => {
                area.draw(&Rectangle::new(
                    [(6, y - 7), (26, y + 7)],
                    color(c).filled(),
                ))
                .map_err(s)?;
            }
            Swatch::Line { color: c, dashed } => {
                let col = c.map_or(INK, color);
                let style = ShapeStyle::from(&col).stroke_width(if c.is_some() { 3 } else { 1 });
                if dashed {
                    for k in 0..3 {
                        let x = 4 + k * 9;
                        area.draw(&PathElement::new(vec![(x, y), (x + 5, y)], style))
                            .map_err(s)?;
                    }
                } else {
                    area.draw(&PathElement::new(vec![(4, y), (28, y)], style))
                        .map_err(s)?;
                }
            }
        }
        area.draw(&Text::new(
            e.label.clone(),
            (36, y),
            font(14).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(s)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Line charts.

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
    if c.x_axis == XAxis::Nines {
        return (-0.12, 5.12);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    match c.x_axis {
        XAxis::Log2 => (lo - 0.3, hi + 0.3),
        _ => {
            if hi <= lo {
                (lo - 1.0, hi + 1.0)
            } else {
                (lo.min(0.0), hi + (hi - lo.min(0.0)) * 0.01)
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
        (lo / 1.2, hi * 1.2)
    } else {
        let lo = if c.y_from_zero { lo.min(0.0) } else { lo };
        let span = (hi - lo).max(hi.abs() * 0.1).max(1e-9);
        let lo = if c.y_from_zero && lo >= 0.0 {
            0.0
        } else {
            lo - span * 0.05
        };
        (lo, hi + span * 0.06)
    }
}

fn nines_label(x: f64) -> Option<&'static str> {
    const T: [(f64, &str); 7] = [
        (0.0, "min"),
        (std::f64::consts::LOG10_2, "p50"),
        (1.0, "p90"),
        (2.0, "p99"),
        (3.0, "p99.9"),
        (4.0, "p99.99"),
        (5.0, "max"),
    ];
    T.iter().find(|(v, _)| (v - x).abs() < 1e-6).map(|t| t.1)
}

/// The x axis of a line chart.
pub fn line_x_axis(c: &LineChart) -> Axis {
    let (x0, x1) = x_bounds(c);
    match c.x_axis {
        XAxis::Linear => Axis::linear(x0, x1, YUnit::Plain),
        XAxis::Nines => {
            let ticks = [0.0, std::f64::consts::LOG10_2, 1.0, 2.0, 3.0, 4.0, 5.0]
                .into_iter()
                .map(|v| (v, nines_label(v).unwrap_or_default().to_owned()))
                .collect();
            let mut a = Axis::fixed(x0, x1, ticks);
            // Light lines at the grid's quantiles between the labelled ones.
            a.light = [0.6, 0.7, 0.8, 0.9, 0.95, 0.995, 0.9995]
                .iter()
                .map(|q: &f64| -(1.0 - q).log10())
                .collect();
            a
        }
        XAxis::Log2 => {
            let mut xs: Vec<f64> = finite_points(c).map(|p| p.0).collect();
            xs.sort_by(f64::total_cmp);
            xs.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
            let ticks = xs
                .into_iter()
                .map(|x| (x, format!("{}", 2f64.powf(x).round())))
                .collect();
            Axis::fixed(x0, x1, ticks)
        }
    }
}

/// The y axis of a line chart.
pub fn line_y_axis(c: &LineChart) -> Axis {
    let (y0, y1) = y_bounds(c);
    if c.y_log {
        Axis::log(y0, y1, c.y_unit)
    } else {
        Axis::linear(y0, y1, c.y_unit)
    }
}

fn mesh_style<'a, 'b, DB: DrawingBackend>(
    mesh: &mut plotters::chart::MeshStyle<'a, 'b, Axis, Axis, DB>,
) {
    mesh.axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .light_line_style(RGBColor(242, 242, 242))
        .bold_line_style(RGBColor(215, 215, 215))
        .x_labels(64)
        .y_labels(64);
}

fn y_label_area<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, a: &Axis) -> u32 {
    a.labels().map(|l| text_w(area, l, 14)).max().unwrap_or(0) + 44
}

fn line_chart<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    c: &LineChart,
) -> Result<(), String> {
    let xa = line_x_axis(c);
    let ya = line_y_axis(c);
    let (x0, x1) = (xa.lo, xa.hi);
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .margin_right(18)
        .x_label_area_size(54)
        .y_label_area_size(y_label_area(root, &ya))
        .build_cartesian_2d(xa, ya)
        .map_err(s)?;
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(c.x_desc.as_str()).y_desc(c.y_desc.as_str());
    mesh_style(&mut mesh);
    mesh.draw().map_err(s)?;

    let clip = c.y_clip.unwrap_or(f64::INFINITY);
    let ok = |p: &(f64, f64)| p.0.is_finite() && p.1.is_finite() && (!c.y_log || p.1 > 0.0);
    if let Some((y, _)) = &c.reference {
        let style = ShapeStyle::from(&INK.mix(0.8)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(vec![(x0, *y), (x1, *y)], 6, 4, style))
            .map_err(s)?;
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
        if line.dashed {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))
                .map_err(s)?;
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(s)?;
        }
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
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Bar charts.

/// The value axis of a bar chart.
pub fn bar_value_axis(b: &BarChart) -> Axis {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    for v in b.values.iter().flatten().flatten() {
        for x in [v.value, v.low, v.high] {
            if x.is_finite() && (!b.log || x > 0.0) {
                lo = lo.min(x);
                hi = hi.max(x);
            }
        }
    }
    for x in b.reference.iter().map(|r| r.0).chain(b.base) {
        if !b.log || x > 0.0 {
            lo = lo.min(x);
            hi = hi.max(x);
        }
    }
    if b.log {
        if !lo.is_finite() {
            return Axis::log(1.0, 10.0, b.unit);
        }
        Axis::log(lo / 1.15, hi * 1.15, b.unit)
    } else {
        let lo = if lo.is_finite() { lo.min(0.0) } else { 0.0 };
        let hi = if hi.is_finite() && hi > lo {
            hi
        } else {
            lo + 1.0
        };
        Axis::linear(lo, hi + (hi - lo) * 0.08, b.unit)
    }
}

fn bar_base(b: &BarChart, axis: &Axis) -> f64 {
    match b.base {
        Some(v) => v,
        None if b.log => axis.lo,
        None => 0.0,
    }
}

fn group_axis(n: usize, labels: Vec<String>) -> Axis {
    let ticks = labels
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i as f64, l))
        .collect();
    Axis::fixed(-0.5, n as f64 - 0.5, ticks)
}

fn bar_chart_vertical<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    b: &BarChart,
) -> Result<(), String> {
    let n = b.groups.len().max(1);
    let va = bar_value_axis(b);
    let base = bar_base(b, &va);
    let mut chart = ChartBuilder::on(root)
        .margin(10)
        .margin_right(18)
        .x_label_area_size(54)
        .y_label_area_size(y_label_area(root, &va))
        .build_cartesian_2d(group_axis(n, b.groups.clone()), va)
        .map_err(s)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_desc(b.group_desc.as_str())
        .y_desc(b.value_desc.as_str());
    mesh_style(&mut mesh);
    mesh.draw().map_err(s)?;
    let k = b.series.len().max(1) as f64;
    let slot = 0.8 / k;
    for (si, (_, ci)) in b.series.iter().enumerate() {
        let col = color(*ci);
        let bars = series_bars(b, si);
        let left = |g: f64| g - 0.4 + slot * si as f64;
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                Rectangle::new(
                    [
                        (left(g) + slot * 0.06, base),
                        (left(g) + slot * 0.94, v.value),
                    ],
                    col.filled(),
                )
            }))
            .map_err(s)?;
        if b.base.is_some() {
            chart
                .draw_series(bars.iter().map(|&(g, v)| {
                    PathElement::new(
                        vec![
                            (left(g) + slot * 0.02, v.value),
                            (left(g) + slot * 0.98, v.value),
                        ],
                        ShapeStyle::from(&col).stroke_width(3),
                    )
                }))
                .map_err(s)?;
        }
        chart
            .draw_series(bars.iter().filter(|(_, v)| v.high > v.low).map(|&(g, v)| {
                let x = left(g) + slot * 0.5;
                PathElement::new(vec![(x, v.low), (x, v.high)], BLACK.stroke_width(2))
            }))
            .map_err(s)?;
    }
    if let Some((y, _)) = &b.reference {
        let style = ShapeStyle::from(&INK.mix(0.8)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(-0.5, *y), (n as f64 - 0.5, *y)],
                6,
                4,
                style,
            ))
            .map_err(s)?;
    }
    Ok(())
}

fn series_bars(b: &BarChart, si: usize) -> Vec<(f64, Bar)> {
    b.values
        .iter()
        .enumerate()
        .filter_map(|(gi, row)| row.get(si).copied().flatten().map(|v| (gi as f64, v)))
        .filter(|(_, v)| v.value.is_finite() && (!b.log || v.value > 0.0))
        .collect()
}

fn bar_chart_horizontal<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    b: &BarChart,
) -> Result<(), String> {
    let n = b.groups.len().max(1);
    let va = bar_value_axis(b);
    let base = bar_base(b, &va);
    // The first group at the top: group i sits at y = n − 1 − i.
    let labels: Vec<String> = b.groups.iter().rev().cloned().collect();
    let label_w = labels
        .iter()
        .map(|l| text_w(root, l, 14))
        .max()
        .unwrap_or(0)
        + 40;
    let (vlo, vhi) = (va.lo, va.hi);
    let mut builder = ChartBuilder::on(root);
    builder
        .margin(10)
        .margin_right(18)
        .x_label_area_size(54)
        .y_label_area_size(label_w);
    if n > 12 {
        // A tall chart: the value labels on top as well.
        builder.top_x_label_area_size(50);
    }
    let mut chart = builder
        .build_cartesian_2d(va, group_axis(n, labels))
        .map_err(s)?;
    // Faint bands behind every other group, so a row is easy to follow to its name.
    chart
        .draw_series((0..n).filter(|i| i % 2 == 1).map(|i| {
            let y = i as f64;
            Rectangle::new(
                [(vlo, y - 0.5), (vhi, y + 0.5)],
                RGBColor(246, 246, 246).filled(),
            )
        }))
        .map_err(s)?;
    let mut mesh = chart.configure_mesh();
    mesh.disable_y_mesh()
        .x_desc(b.value_desc.as_str())
        .y_desc(b.group_desc.as_str());
    mesh_style(&mut mesh);
    mesh.draw().map_err(s)?;
    let k = b.series.len().max(1) as f64;
    let slot = 0.8 / k;
    let y_of = |g: f64| (n - 1) as f64 - g;
    for (si, (_, ci)) in b.series.iter().enumerate() {
        let col = color(*ci);
        let bars = series_bars(b, si);
        let top = |g: f64| y_of(g) + 0.4 - slot * si as f64;
        chart
            .draw_series(bars.iter().map(|&(g, v)| {
                Rectangle::new(
                    [
                        (base, top(g) - slot * 0.08),
                        (v.value, top(g) - slot * 0.92),
                    ],
                    col.filled(),
                )
            }))
            .map_err(s)?;
        if b.base.is_some() {
            // Bars from a reference (1×) can be short: a cap at the value shows even those.
            chart
                .draw_series(bars.iter().map(|&(g, v)| {
                    PathElement::new(
                        vec![
                            (v.value, top(g) - slot * 0.02),
                            (v.value, top(g) - slot * 0.98),
                        ],
                        ShapeStyle::from(&col).stroke_width(3),
                    )
                }))
                .map_err(s)?;
        }
        chart
            .draw_series(bars.iter().filter(|(_, v)| v.high > v.low).map(|&(g, v)| {
                let y = top(g) - slot * 0.5;
                PathElement::new(vec![(v.low, y), (v.high, y)], BLACK.stroke_width(1))
            }))
            .map_err(s)?;
    }
    if let Some((x, _)) = &b.reference {
        let style = ShapeStyle::from(&INK.mix(0.8)).stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(*x, -0.5), (*x, n as f64 - 0.5)],
                6,
                4,
                style,
            ))
            .map_err(s)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_share_one_unit() {
        let a = Axis::linear(0.0, 126e6, YUnit::OpsPerSec);
        let l: Vec<&str> = a.labels().collect();
        assert_eq!(l, ["0", "20 M", "40 M", "60 M", "80 M", "100 M", "120 M"]);
        let a = Axis::linear(0.0, 0.36 * 1024.0 * 1024.0, YUnit::Bytes);
        assert!(a.labels().all(|l| l == "0" || l.ends_with(" KiB")), "{a:?}");
        let a = Axis::linear(0.0, 2.6, YUnit::Ratio);
        assert_eq!(
            a.labels().collect::<Vec<_>>(),
            ["0×", "0.5×", "1.0×", "1.5×", "2.0×", "2.5×"]
        );
    }

    #[test]
    fn log_ticks_are_decades_with_units() {
        let a = Axis::log(9.0, 600_000.0, YUnit::Ns);
        let l: Vec<&str> = a.labels().collect();
        assert_eq!(l, ["10 ns", "100 ns", "1 µs", "10 µs", "100 µs", "1 ms"]);
        // The low end is labelled when there is room before the next label.
        let a = Axis::log(5.5, 18_000.0, YUnit::Ns);
        let l: Vec<&str> = a.labels().collect();
        assert_eq!(l, ["5 ns", "10 ns", "100 ns", "1 µs", "10 µs"]);
        let a = Axis::log(0.3, 4.0, YUnit::Ratio);
        let l: Vec<&str> = a.labels().collect();
        assert_eq!(l, ["0.2×", "0.3×", "0.5×", "1×", "2×", "3×", "5×"]);
        let a = Axis::log(0.045, 15.0, YUnit::Ratio);
        let l: Vec<&str> = a.labels().collect();
        assert_eq!(
            l,
            [
                "0.02×", "0.05×", "0.1×", "0.2×", "0.5×", "1×", "2×", "5×", "10×", "20×"
            ]
        );
        let a = Axis::log(130.0, 1.3e8, YUnit::OpsPerSec);
        assert!(a.labels().any(|l| l == "1 M") && a.labels().any(|l| l == "1 k"));
    }

    #[test]
    fn values_read_like_the_axes() {
        assert_eq!(fmt_value(YUnit::OpsPerSec, 34_537_000.0), "34.5 M");
        assert_eq!(fmt_value(YUnit::Ns, 1500.0), "1.5 µs");
        assert_eq!(fmt_value(YUnit::Ratio, 1.0), "1×");
        assert_eq!(fmt_value(YUnit::Bytes, 3.0 * 1024.0 * 1024.0), "3 MiB");
    }

    fn bars(groups: usize, series: usize, name_len: usize) -> BarChart {
        BarChart {
            value_desc: "v".into(),
            group_desc: "trace".into(),
            unit: YUnit::Plain,
            log: false,
            base: None,
            groups: (0..groups)
                .map(|i| format!("{i:0>width$}", width = name_len))
                .collect(),
            series: (0..series).map(|i| (format!("alloc{i}"), i)).collect(),
            values: vec![vec![None; series]; groups],
            reference: None,
        }
    }

    #[test]
    fn bar_orientation_turns_horizontal_when_names_would_overlap() {
        assert_eq!(bar_orientation(&bars(1, 5, 8)), Orientation::Vertical);
        assert_eq!(bar_orientation(&bars(4, 6, 12)), Orientation::Vertical);
        assert_eq!(bar_orientation(&bars(25, 6, 10)), Orientation::Horizontal);
        assert_eq!(bar_orientation(&bars(6, 3, 19)), Orientation::Horizontal);
        assert_eq!(bar_orientation(&bars(10, 6, 4)), Orientation::Horizontal);
    }
}
