//! Heap maps and size-class histograms of a trace, streamed with the `traces` reader.
//!
//! A **heap map** is address space × time: one pixel row per address range, one pixel column
//! per span of ops (or of trace time), each cell coloured by what the trace's blocks did there —
//! allocated (darker = a larger share of the row's bytes live at the end of the column), freed
//! (something was allocated there earlier, nothing is now), or never allocated yet. Live blocks
//! follow `traces::live` (the definition `inspect` and the replayer share), so a free of an
//! unknown pointer or a failed allocation paints nothing.
//!
//! The address axis shows only the address ranges the trace's blocks used: the used ranges are
//! collected in a first pass (4 KiB granularity, coarser when there are very many), and the
//! largest gaps between them — those that would take more than [`GAP_SHARE`] of the axis and
//! more than four times a band's rows — are collapsed to a grey band labelled with the bytes left
//! out. Low addresses are at the bottom.
//!
//! Work and memory are bounded: two sequential passes over the trace; the grid is the plot's
//! pixels (a few hundred thousand cells) whatever the trace's length; the used-range set is
//! coarsened when it exceeds [`MAX_RANGES`]; the second pass keeps one hash entry per live
//! block (as any reader of the live set must).
//!
//! An **address trace** (`replay --heap-map`: the replayed ops with the addresses one allocator
//! returned, `results_schema::heapmap`) is drawn the same way, titled with its allocator and
//! trace ([`AddressTrace`]); when its mappings file is beside it, the cells with nothing live are
//! coloured by the OS state of their rows' bytes (resident / mapped, not resident / not mapped;
//! the rule and the bounds of the work are in `overlay`'s documentation), and [`Overlay`] holds
//! the retained-bytes figure.
//!
//! The same first pass counts the **size classes** of the requests (every allocating call's
//! requested bytes, `inspect`'s log2 buckets), by count and by bytes.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use traces::MergedReader;
use traces::inspect::{SIZE_BUCKETS, bucket, bucket_bounds};
use traces::live::{Addr, AddrTable, LiveSet, Transition};

use crate::error::Error;
use crate::plots::{self, Bar, BarChart, Chart, Figure, Group, YUnit, fmt_value, font};

mod overlay;
pub use overlay::{NEEDED as MAPPING_COLUMNS, Overlay, os_state};

/// Image size of a heap map, in pixels (the report's figure size).
pub const SIZE: (u32, u32) = plots::SIZE;

/// Where the grid sits in the image: left, top, right, bottom pixel edges (right and bottom
/// exclusive). One grid cell is one pixel.
pub const PLOT: (u32, u32, u32, u32) = (150, 56, 780, 560);

/// Grid columns (time).
pub const COLS: u32 = PLOT.2 - PLOT.0;

/// Grid rows (address), including the bands of collapsed gaps.
pub const ROWS: u32 = PLOT.3 - PLOT.1;

/// Pixel rows of the band that stands for a collapsed gap.
pub const GAP_ROWS: u32 = 8;

/// Most collapsed gaps (segments − 1).
pub const MAX_GAPS: usize = 12;

/// A gap between used ranges is collapsed when it would take more than this share of the
/// address axis.
pub const GAP_SHARE: f64 = 0.05;

/// Most used ranges kept; beyond it the granularity is multiplied by 16 and the ranges merged.
pub const MAX_RANGES: usize = 1 << 16;

/// Granularity of the used-range set at the start.
pub const PAGE: u64 = 4096;

/// Never allocated (so far) inside a used range.
pub const UNTOUCHED_RGB: RGBColor = RGBColor(246, 246, 246);
/// Freed: allocated earlier, nothing live now.
pub const FREED_RGB: RGBColor = RGBColor(252, 196, 140);
/// A collapsed gap's band.
pub const GAP_RGB: RGBColor = RGBColor(150, 150, 150);
/// Allocated, a small share of the row's bytes live.
pub const ALLOC_LIGHT_RGB: RGBColor = RGBColor(158, 202, 225);
/// Allocated, the row's bytes all live.
pub const ALLOC_FULL_RGB: RGBColor = RGBColor(8, 48, 107);
/// Overlay (an address trace with its mappings file): nothing live, the row's bytes mostly
/// resident — memory the allocator retains.
pub const RETAINED_RGB: RGBColor = RGBColor(215, 48, 39);
/// Overlay: nothing live, the row's bytes mostly mapped but not resident.
pub const NOT_RESIDENT_RGB: RGBColor = RGBColor(161, 217, 155);
/// Overlay: nothing live, the row's bytes mostly not mapped.
pub const NOT_MAPPED_RGB: RGBColor = RGBColor(255, 255, 255);

/// What the time axis counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeAxis {
    /// Allocator calls in global order (each op one step, whatever its time).
    #[default]
    Ops,
    /// The trace's timestamps (ns since its start).
    Ns,
}

impl std::str::FromStr for TimeAxis {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ops" => Ok(TimeAxis::Ops),
            "ns" | "time" => Ok(TimeAxis::Ns),
            _ => Err(format!("{s:?}: expected ops or time")),
        }
    }
}

/// What an address trace (`replay --heap-map`: the replayed ops with the addresses one
/// allocator returned) says about itself, from its header's `extra`
/// (`results_schema::heapmap`'s keys) or, where a key is missing, its file's name.
#[derive(Debug, Clone, PartialEq)]
pub struct AddressTrace {
    /// The allocator ([`HEADER_ALLOCATOR`](results_schema::heapmap::HEADER_ALLOCATOR); else
    /// the file's name without `.heapmap.zst`).
    pub allocator: String,
    /// The replayed trace's name (`HEADER_TRACE`; else the directory's name).
    pub trace: String,
    /// The replayed trace's content hash (`HEADER_TRACE_HASH`).
    pub trace_hash: Option<String>,
    /// The mapping snapshots' period, ms (`HEADER_SNAPSHOT_MS`).
    pub snapshot_ms: Option<f64>,
}

impl AddressTrace {
    /// `Some` when the file is named as an address trace or its header names an allocator.
    pub fn of(path: &Path, header: &traces::Header) -> Option<AddressTrace> {
        use results_schema::heapmap as hm;
        let get = |key: &str| {
            header
                .extra
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let named = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(hm::TRACE_SUFFIX))
            .map(str::to_owned);
        let allocator = get(hm::HEADER_ALLOCATOR);
        if allocator.is_none() && named.is_none() {
            return None;
        }
        let dir = path
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().into_owned());
        Some(AddressTrace {
            allocator: allocator.or(named).unwrap_or_default(),
            trace: get(hm::HEADER_TRACE).or(dir).unwrap_or_default(),
            trace_hash: get(hm::HEADER_TRACE_HASH),
            snapshot_ms: get(hm::HEADER_SNAPSHOT_MS).and_then(|v| v.trim().parse().ok()),
        })
    }

    /// `<trace> under <allocator>`.
    pub fn name(&self) -> String {
        format!("{} under {}", self.trace, self.allocator)
    }
}

/// Each column's end time in ns (the trace's clock): on the ops axis the time of the last op
/// painted in it or an earlier column; on the time axis the last ns it covers. The last column
/// ends with the trace (`u64::MAX`). `None`: no op yet.
fn column_ends(time: TimeAxis, t_range: (u64, u64), last_ts: &[Option<u64>]) -> Vec<Option<u64>> {
    let mut out: Vec<Option<u64>> = match time {
        TimeAxis::Ops => {
            let mut so_far: Option<u64> = None;
            last_ts
                .iter()
                .map(|t| {
                    if let Some(t) = *t {
                        so_far = Some(so_far.map_or(t, |s| s.max(t)));
                    }
                    so_far
                })
                .collect()
        }
        TimeAxis::Ns => {
            let span = (t_range.1 - t_range.0) as u128 + 1;
            (0..COLS as u128)
                .map(|c| Some(t_range.0 + (((c + 1) * span).div_ceil(COLS as u128) - 1) as u64))
                .collect()
        }
    };
    if let Some(l) = out.last_mut().filter(|l| l.is_some()) {
        *l = Some(u64::MAX);
    }
    out
}

/// One contiguous shown range of addresses and its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// Its first row (row 0 is the bottom of the grid).
    pub row0: u32,
    /// Rows it takes.
    pub rows: u32,
}

/// The compressed address axis: the shown segments, bottom to top, with collapsed gaps between
/// them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressAxis {
    /// Segments, ascending addresses.
    pub segments: Vec<Segment>,
    /// Bytes one row stands for.
    pub bytes_per_row: u64,
    /// The bytes of each collapsed gap (between segment i and i + 1).
    pub gaps: Vec<u64>,
}

impl AddressAxis {
    /// The axis for these used ranges (sorted, disjoint) over `rows` rows.
    pub fn new(ranges: &[(u64, u64)], rows: u32) -> AddressAxis {
        if ranges.is_empty() {
            return AddressAxis {
                segments: Vec::new(),
                bytes_per_row: 1,
                gaps: Vec::new(),
            };
        }
        let span = ranges[ranges.len() - 1].1 - ranges[0].0;
        let mut gaps: Vec<(u64, usize)> = ranges
            .windows(2)
            .enumerate()
            .map(|(i, w)| (w[1].0 - w[0].1, i))
            .collect();
        gaps.sort_by(|a, b| b.cmp(a));
        let mut shown = span;
        let mut cut = vec![false; ranges.len()];
        for (g, i) in gaps.into_iter().take(MAX_GAPS) {
            // Worth a band: the gap would take a share of the axis, and many times the band's
            // rows.
            let rows_of_gap = g as f64 / (shown as f64 / rows.max(1) as f64);
            if (g as f64) <= shown as f64 * GAP_SHARE || rows_of_gap <= (4 * GAP_ROWS) as f64 {
                break;
            }
            cut[i] = true;
            shown -= g;
        }
        let mut segs: Vec<(u64, u64)> = Vec::new();
        let mut gap_bytes = Vec::new();
        let mut start = ranges[0].0;
        for i in 0..ranges.len() {
            if i + 1 == ranges.len() || cut[i] {
                segs.push((start, ranges[i].1));
                if i + 1 < ranges.len() {
                    gap_bytes.push(ranges[i + 1].0 - ranges[i].1);
                    start = ranges[i + 1].0;
                }
            }
        }
        let bands = GAP_ROWS * (segs.len() as u32 - 1);
        let avail = rows.saturating_sub(bands + segs.len() as u32).max(1) as u64;
        let bytes_per_row = shown.div_ceil(avail).max(1);
        let mut row = 0;
        let segments = segs
            .iter()
            .map(|&(start, end)| {
                let n = ((end - start).div_ceil(bytes_per_row) as u32).max(1);
                let s = Segment {
                    start,
                    end,
                    row0: row,
                    rows: n,
                };
                row += n + GAP_ROWS;
                s
            })
            .collect();
        AddressAxis {
            segments,
            bytes_per_row,
            gaps: gap_bytes,
        }
    }

    /// The segment holding `addr`.
    pub fn segment_of(&self, addr: u64) -> Option<&Segment> {
        let i = self.segments.partition_point(|s| s.start <= addr);
        let s = self.segments.get(i.checked_sub(1)?)?;
        (addr < s.end).then_some(s)
    }

    /// The row of `addr` (0 at the bottom), if it is in a shown segment.
    pub fn row_of(&self, addr: u64) -> Option<u32> {
        let s = self.segment_of(addr)?;
        Some(s.row0 + ((addr - s.start) / self.bytes_per_row) as u32)
    }

    /// Rows in use, bands included.
    pub fn rows_used(&self) -> u32 {
        self.segments.last().map_or(0, |s| s.row0 + s.rows)
    }
}

/// Address ranges used by a trace's blocks: merged, at a granularity that grows (×16) when
/// there are more than [`MAX_RANGES`].
#[derive(Debug, Clone)]
pub struct UsedRanges {
    map: BTreeMap<u64, u64>,
    /// Granularity in bytes.
    pub granularity: u64,
}

impl Default for UsedRanges {
    fn default() -> Self {
        UsedRanges {
            map: BTreeMap::new(),
            granularity: PAGE,
        }
    }
}

impl UsedRanges {
    /// Adds `[addr, addr + len)` (rounded out to the granularity).
    pub fn insert(&mut self, addr: u64, len: u64) {
        let g = self.granularity;
        let mut lo = addr / g * g;
        let mut hi = addr
            .saturating_add(len.max(1))
            .div_ceil(g)
            .saturating_mul(g);
        // Merge with a range starting at or before `hi` that reaches `lo`, repeatedly.
        while let Some((&s, &e)) = self.map.range(..=hi).next_back() {
            if e < lo {
                break;
            }
            self.map.remove(&s);
            lo = lo.min(s);
            hi = hi.max(e);
        }
        self.map.insert(lo, hi);
        if self.map.len() > MAX_RANGES {
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        self.granularity = self.granularity.saturating_mul(16);
        let old = std::mem::take(&mut self.map);
        for (s, e) in old {
            self.insert(s, e - s);
        }
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.map.iter().map(|(&s, &e)| (s, e)).collect()
    }
}

/// One size class: requests of `> min_exclusive` and `<= max` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeClass {
    /// Lower bound, exclusive.
    pub min_exclusive: u64,
    /// Upper bound, inclusive (`u64::MAX` for the last class).
    pub max: u64,
    /// Requests.
    pub count: u64,
    /// Requested bytes.
    pub bytes: u64,
}

impl SizeClass {
    /// `0 B`, `1 B`, `3–4 B`, `513 B–1 KiB`…
    pub fn label(&self) -> String {
        let b = |v: u64| fmt_value(YUnit::Bytes, v as f64);
        if self.max == 0 {
            "0 B".into()
        } else if self.max == u64::MAX {
            format!("> {}", b(self.min_exclusive))
        } else if self.min_exclusive + 1 == self.max {
            b(self.max)
        } else {
            format!("{}–{}", b(self.min_exclusive + 1), b(self.max))
        }
    }
}

/// Requests by size class (`traces::inspect`'s log2 buckets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeHistogram {
    counts: [u64; SIZE_BUCKETS],
    bytes: [u64; SIZE_BUCKETS],
}

impl Default for SizeHistogram {
    fn default() -> Self {
        SizeHistogram {
            counts: [0; SIZE_BUCKETS],
            bytes: [0; SIZE_BUCKETS],
        }
    }
}

impl SizeHistogram {
    /// Counts one request of `size` bytes.
    pub fn add(&mut self, size: u64) {
        let b = bucket(size);
        self.counts[b] += 1;
        self.bytes[b] = self.bytes[b].saturating_add(size);
    }

    /// The classes from the smallest to the largest non-empty one (empty ones between included).
    pub fn classes(&self) -> Vec<SizeClass> {
        let Some(lo) = self.counts.iter().position(|&c| c > 0) else {
            return Vec::new();
        };
        let hi = self.counts.iter().rposition(|&c| c > 0).unwrap_or(lo);
        (lo..=hi)
            .map(|i| {
                let (min_exclusive, max) = bucket_bounds(i);
                SizeClass {
                    min_exclusive,
                    max,
                    count: self.counts[i],
                    bytes: self.bytes[i],
                }
            })
            .collect()
    }

    /// Requests counted.
    pub fn requests(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Bytes requested.
    pub fn total_bytes(&self) -> u64 {
        self.bytes.iter().fold(0, |a, &b| a.saturating_add(b))
    }
}

/// One grid cell's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// Outside every segment (a collapsed gap's band, or above the last segment).
    Gap,
    /// Never allocated so far.
    Untouched,
    /// Something was allocated here earlier (possibly within this column) and nothing is live
    /// at the column's end.
    Freed,
    /// Live bytes at the column's end, as a share of the row's bytes (0, 1].
    Allocated(f32),
    /// Overlay: nothing live at the column's end, and at least half the row's bytes resident
    /// at the snapshot that column shows.
    Retained,
    /// Overlay: nothing live, less than half the row's bytes resident, at least half mapped.
    MappedNotResident,
    /// Overlay: nothing live, less than half the row's bytes mapped.
    NotMapped,
}

impl Cell {
    /// The cell's colour.
    pub fn rgb(self) -> RGBColor {
        match self {
            Cell::Gap => GAP_RGB,
            Cell::Untouched => UNTOUCHED_RGB,
            Cell::Freed => FREED_RGB,
            Cell::Retained => RETAINED_RGB,
            Cell::MappedNotResident => NOT_RESIDENT_RGB,
            Cell::NotMapped => NOT_MAPPED_RGB,
            Cell::Allocated(f) => {
                let f = f.clamp(0.0, 1.0) as f64;
                // sqrt: a few live bytes in a row are visible, full rows are dark.
                let t = f.sqrt();
                let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * t).round() as u8;
                RGBColor(
                    mix(ALLOC_LIGHT_RGB.0, ALLOC_FULL_RGB.0),
                    mix(ALLOC_LIGHT_RGB.1, ALLOC_FULL_RGB.1),
                    mix(ALLOC_LIGHT_RGB.2, ALLOC_FULL_RGB.2),
                )
            }
        }
    }
}

/// Options of a heap map.
#[derive(Debug, Clone, Default)]
pub struct HeapMapOptions {
    /// What the columns count.
    pub time: TimeAxis,
}

/// A heap map of one trace, with its size histogram.
#[derive(Debug, Clone)]
pub struct HeapMap {
    /// The trace's name (file stem).
    pub name: String,
    /// The address axis.
    pub axis: AddressAxis,
    /// Granularity the used ranges were collected at.
    pub granularity: u64,
    /// What the columns count.
    pub time: TimeAxis,
    /// First and last time value (op index, or ns) the columns cover.
    pub t_range: (u64, u64),
    /// Allocator calls in the trace.
    pub ops: u64,
    /// Largest live bytes.
    pub peak_live_bytes: u64,
    /// Frees of unknown or freed pointers, and allocations at live addresses (`traces::live`).
    pub inconsistent: u64,
    /// Requests by size class.
    pub sizes: SizeHistogram,
    /// `cells[row * COLS + col]`, row 0 at the bottom.
    pub cells: Vec<Cell>,
    /// What an address trace's header says (`replay --heap-map`); `None` for another trace.
    pub address: Option<AddressTrace>,
    /// The OS mappings drawn over the cells with nothing live, when the address trace's
    /// mappings file exists.
    pub overlay: Option<Overlay>,
}

/// A live block: its address and requested size.
#[derive(Clone, Copy)]
struct Block {
    addr: u64,
    size: u64,
}

/// The live blocks by address (freed addresses are not remembered: the map only paints).
#[derive(Default)]
struct Blocks(HashMap<u64, Block>);

impl AddrTable for Blocks {
    type Obj = Block;
    fn size(&self, obj: &Block) -> u64 {
        obj.size
    }
    fn get(&mut self, addr: u64) -> Addr<Block> {
        self.0.get(&addr).map_or(Addr::Unknown, |b| Addr::Live(*b))
    }
    fn free(&mut self, addr: u64) -> Addr<Block> {
        self.0.remove(&addr).map_or(Addr::Unknown, Addr::Live)
    }
    fn alloc(&mut self, addr: u64, size: u64) -> (Block, Option<Block>) {
        let b = Block { addr, size };
        (b, self.0.insert(addr, b))
    }
    fn relocate(&mut self, _: Block, to: u64, size: u64) -> (Block, Option<Block>) {
        self.alloc(to, size)
    }
    fn resize(&mut self, addr: u64, _: Block, size: u64) -> Block {
        let b = Block { addr, size };
        self.0.insert(addr, b);
        b
    }
}

fn trace_err(path: &Path) -> impl Fn(traces::TraceError) -> Error + '_ {
    move |e| Error::Trace {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// The grid being painted: byte deltas per cell (live bytes change at that column) and whether
/// anything was allocated in it.
struct Painter<'a> {
    axis: &'a AddressAxis,
    delta: Vec<i64>,
    touched: Vec<bool>,
}

impl Painter<'_> {
    /// Adds (`sign` 1) or removes (−1) the bytes of `[addr, addr + size)` at column `col`.
    fn paint(&mut self, addr: u64, size: u64, col: u32, sign: i64) {
        let Some(seg) = self.axis.segment_of(addr) else {
            return;
        };
        let bpr = self.axis.bytes_per_row;
        let end = addr.saturating_add(size.max(1)).min(seg.end);
        let mut a = addr;
        while a < end {
            let r = (a - seg.start) / bpr;
            let row_end = (seg.start + (r + 1) * bpr).min(end);
            let i = ((seg.row0 as u64 + r) * COLS as u64 + col as u64) as usize;
            if let Some(d) = self.delta.get_mut(i) {
                *d += sign * (row_end - a) as i64;
                if sign > 0 {
                    self.touched[i] = true;
                }
            }
            a = row_end;
        }
    }
}

impl HeapMap {
    /// Streams the trace at `path` twice (used ranges and sizes, then the live blocks) into a
    /// heap map.
    pub fn from_trace(path: &Path, opts: &HeapMapOptions) -> Result<HeapMap, Error> {
        let e = trace_err(path);
        // Pass 1: used ranges, time range, ops, sizes.
        let mut used = UsedRanges::default();
        let mut sizes = SizeHistogram::default();
        let (mut ops, mut t_lo, mut t_hi) = (0u64, u64::MAX, 0u64);
        let mut r = MergedReader::open(path).map_err(&e)?;
        let address = AddressTrace::of(path, r.header());
        while let Some(rec) = r.next_record().map_err(&e)? {
            if !rec.event.kind().is_op() {
                continue;
            }
            ops += 1;
            t_lo = t_lo.min(rec.ts);
            t_hi = t_hi.max(rec.ts);
            if let Some(size) = rec.event.requested_bytes() {
                sizes.add(size);
                if let Some(p) = rec.event.result_ptr().filter(|&p| p != 0) {
                    used.insert(p, size);
                }
            }
        }
        drop(r);
        let axis = AddressAxis::new(&used.ranges(), ROWS);
        let t_range = match opts.time {
            TimeAxis::Ops => (0, ops.saturating_sub(1)),
            TimeAxis::Ns if t_lo <= t_hi => (t_lo, t_hi),
            TimeAxis::Ns => (0, 0),
        };
        let span = (t_range.1 - t_range.0) as u128 + 1;
        let col_of = |t: u64| {
            ((t.saturating_sub(t_range.0) as u128 * COLS as u128 / span) as u32).min(COLS - 1)
        };
        // Pass 2: the live blocks, painted as byte deltas.
        let n = (COLS * ROWS) as usize;
        let mut p = Painter {
            axis: &axis,
            delta: vec![0; n],
            touched: vec![false; n],
        };
        let mut live = LiveSet::new();
        let mut table = Blocks::default();
        let mut op = 0u64;
        // Per column, the time (ns) of the last op painted in it (ops axis).
        let mut last_ts: Vec<Option<u64>> = vec![None; COLS as usize];
        let mut r = MergedReader::open(path).map_err(&e)?;
        while let Some(rec) = r.next_record().map_err(&e)? {
            let is_op = rec.event.kind().is_op();
            let col = col_of(match opts.time {
                TimeAxis::Ops => op,
                TimeAxis::Ns => rec.ts,
            });
            if is_op {
                op += 1;
                let l = &mut last_ts[col as usize];
                *l = Some(l.map_or(rec.ts, |t| t.max(rec.ts)));
            }
            let gone = |g: traces::live::Gone<Block>, p: &mut Painter| {
                p.paint(g.obj.addr, g.size, col, -1)
            };
            match live.apply(&mut table, &rec.event, rec.ts) {
                Transition::Alloc {
                    obj, size, dropped, ..
                } => {
                    if let Some(g) = dropped {
                        gone(g, &mut p);
                    }
                    p.paint(obj.addr, size, col, 1);
                }
                Transition::Free(g) => gone(g, &mut p),
                Transition::Resize {
                    obj,
                    old_size,
                    size,
                } => {
                    p.paint(obj.addr, old_size, col, -1);
                    p.paint(obj.addr, size, col, 1);
                }
                Transition::Move {
                    old,
                    obj,
                    size,
                    dropped,
                } => {
                    gone(old, &mut p);
                    if let Some(g) = dropped {
                        gone(g, &mut p);
                    }
                    p.paint(obj.addr, size, col, 1);
                }
                _ => {}
            }
        }
        let col_end = column_ends(opts.time, t_range, &last_ts);
        // Resolve: live bytes at each column's end, and whether the row was ever used.
        let mut cells = vec![Cell::Gap; n];
        let bpr = axis.bytes_per_row as f64;
        for s in &axis.segments {
            for row in s.row0..s.row0 + s.rows {
                let (mut bytes, mut ever) = (0i64, false);
                for col in 0..COLS {
                    let i = (row * COLS + col) as usize;
                    bytes += p.delta[i];
                    ever |= p.touched[i];
                    cells[i] = if bytes > 0 {
                        Cell::Allocated((bytes as f64 / bpr).min(1.0) as f32)
                    } else if ever {
                        Cell::Freed
                    } else {
                        Cell::Untouched
                    };
                }
            }
        }
        let mut map = HeapMap {
            name: address
                .as_ref()
                .map_or_else(|| trace_stem(path), AddressTrace::name),
            axis,
            granularity: used.granularity,
            time: opts.time,
            t_range,
            ops,
            peak_live_bytes: live.peak_bytes,
            inconsistent: live.bad.total(),
            sizes,
            cells,
            address,
            overlay: None,
        };
        if let Some(maps) = results_schema::heapmap::maps_file(path).filter(|m| m.exists()) {
            map.overlay = Some(overlay::apply(&mut map, &maps, &col_end)?);
        }
        Ok(map)
    }

    /// The cell at `row` (0 at the bottom), `col`.
    pub fn cell(&self, row: u32, col: u32) -> Cell {
        self.cells[(row * COLS + col) as usize]
    }

    /// The column of time value `t` (an op index, or ns).
    pub fn col_of(&self, t: u64) -> u32 {
        let span = (self.t_range.1 - self.t_range.0) as u128 + 1;
        ((t.saturating_sub(self.t_range.0) as u128 * COLS as u128 / span) as u32).min(COLS - 1)
    }

    /// The image pixel `(x, y)` of grid cell `(row, col)`.
    pub fn pixel(row: u32, col: u32) -> (u32, u32) {
        (PLOT.0 + col, PLOT.3 - 1 - row)
    }

    /// The grid as RGB bytes, top row first.
    fn rgb(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity((COLS * ROWS * 3) as usize);
        for y in 0..ROWS {
            let row = ROWS - 1 - y;
            for col in 0..COLS {
                let RGBColor(r, g, b) = self.cell(row, col).rgb();
                v.extend_from_slice(&[r, g, b]);
            }
        }
        v
    }

    fn time_desc(&self) -> &'static str {
        match self.time {
            TimeAxis::Ops => "ops (allocator calls, global order)",
            TimeAxis::Ns => "trace time",
        }
    }

    /// The file stem of its pictures: the trace's name, or for an address trace
    /// `<trace>__<allocator>` (so neither traces nor allocators collide).
    pub fn stem(&self) -> String {
        use crate::figures::slug;
        match &self.address {
            Some(a) => format!("{}__{}", slug(&a.trace), slug(&a.allocator)),
            None => slug(&self.name),
        }
    }

    /// The picture's title.
    pub fn title(&self) -> String {
        match &self.address {
            Some(a) => format!("Heap map: {} under {}", a.trace, a.allocator),
            None => format!("Heap map: {}", self.name),
        }
    }

    /// How to read the picture.
    pub fn caption(&self) -> String {
        let gaps = if self.axis.gaps.is_empty() {
            String::new()
        } else {
            format!(
                " {} unused address range{} collapsed to grey bands ({} in all).",
                self.axis.gaps.len(),
                if self.axis.gaps.len() == 1 { "" } else { "s" },
                fmt_value(YUnit::Bytes, self.axis.gaps.iter().sum::<u64>() as f64)
            )
        };
        let who = match &self.address {
            Some(a) => format!(
                "Allocator `{}` replaying `{}`: the addresses it returned (the heap-map pass's \
                 address trace). ",
                a.allocator, a.trace
            ),
            None => String::new(),
        };
        let colours = match &self.overlay {
            Some(o) => self.overlay_caption(o),
            None => "Blue: bytes live at the end of the column (darker = a larger share of the \
                     row); orange: allocated earlier, nothing live now; light grey: not \
                     allocated yet."
                .to_owned(),
        };
        format!(
            "{who}Address (low at the bottom; one pixel row = {}) × {} ({} ops; one column = {}). \
             {colours}{gaps} Peak live {}.{}",
            fmt_value(YUnit::Bytes, self.axis.bytes_per_row as f64),
            self.time_desc(),
            self.ops,
            self.col_desc(),
            fmt_value(YUnit::Bytes, self.peak_live_bytes as f64),
            if self.inconsistent > 0 {
                format!(" {} inconsistent events skipped.", self.inconsistent)
            } else {
                String::new()
            }
        )
    }

    fn snapshot_desc(&self) -> String {
        match self.address.as_ref().and_then(|a| a.snapshot_ms) {
            Some(ms) => format!("one every {} ms", fmt_value(YUnit::Plain, ms)),
            None => "period not recorded".into(),
        }
    }

    fn overlay_caption(&self, o: &Overlay) -> String {
        let before = match o.first_col {
            Some(0) => String::new(),
            Some(c) => format!(
                " The first {c} column{} end before the first snapshot: orange = allocated \
                 earlier, nothing live; light grey = not allocated yet.",
                if c == 1 { "" } else { "s" }
            ),
            None => " Every column ends before the first snapshot: orange = allocated earlier, \
                     nothing live; light grey = not allocated yet."
                .into(),
        };
        let fact = match (o.retained_bytes, o.resident_bytes) {
            (Some(ret), Some(all)) => format!(
                " At the last snapshot, {} was resident in the shown address ranges in rows with \
                 nothing live (retained; counted by whole rows, so a row holding any live byte \
                 counts nothing), of {} resident there in all.",
                fmt_value(YUnit::Bytes, ret as f64),
                fmt_value(YUnit::Bytes, all as f64)
            ),
            _ => String::new(),
        };
        format!(
            "Blue: bytes live at the end of the column (darker = a larger share of the row). \
             Where nothing is live, the OS state of the row's bytes at the latest mapping \
             snapshot taken by the column's end ({} snapshots, {}; the last column shows the \
             last one, after the last op): red = resident, nothing live (memory the allocator \
             retains; at least half the row's bytes resident); green = mapped, not resident \
             (less than half resident, at least half mapped); white = not mapped (less than \
             half mapped; private anonymous read-write memory and [heap] only).{before}{fact}",
            o.snapshots,
            self.snapshot_desc()
        )
    }

    fn col_desc(&self) -> String {
        let per = (self.t_range.1 - self.t_range.0 + 1) as f64 / COLS as f64;
        match self.time {
            TimeAxis::Ops => format!("{} ops", fmt_value(YUnit::Plain, per.max(1.0).round())),
            TimeAxis::Ns => fmt_value(YUnit::Ns, per),
        }
    }

    /// Draws the heap map as `dir/<stem>.png` and `dir/<stem>.svg` (the grid is embedded in
    /// the SVG as a PNG image; axes and text are vector).
    pub fn render(&self, title: &str, dir: &Path, stem: &str) -> Result<plots::Rendered, Error> {
        let png = dir.join(format!("{stem}.png"));
        let svg = dir.join(format!("{stem}.svg"));
        let err = |path: &PathBuf| {
            let path = path.clone();
            move |reason: String| Error::Plot { path, reason }
        };
        plots::init_font().map_err(err(&png))?;
        let grid = self.rgb();
        {
            let root = BitMapBackend::new(&png, SIZE).into_drawing_area();
            self.decorate(&root, title).map_err(err(&png))?;
            for y in 0..ROWS {
                for x in 0..COLS {
                    let i = ((y * COLS + x) * 3) as usize;
                    let c = RGBColor(grid[i], grid[i + 1], grid[i + 2]);
                    root.draw_pixel(((PLOT.0 + x) as i32, (PLOT.1 + y) as i32), &c)
                        .map_err(|e| err(&png)(e.to_string()))?;
                }
            }
            root.present().map_err(|e| err(&png)(e.to_string()))?;
        }
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
            self.decorate(&root, title).map_err(err(&svg))?;
            root.present().map_err(|e| err(&svg)(e.to_string()))?;
        }
        let image = format!(
            "<image x=\"{}\" y=\"{}\" width=\"{COLS}\" height=\"{ROWS}\" \
             style=\"image-rendering:pixelated\" href=\"data:image/png;base64,{}\"/>\n",
            PLOT.0,
            PLOT.1,
            base64(&png_bytes(&grid, COLS, ROWS).map_err(err(&svg))?)
        );
        let text = insert_after_background(&text, &image).ok_or_else(|| {
            err(&svg)("the SVG backend wrote no background rectangle to put the grid on".into())
        })?;
        std::fs::write(&svg, text).map_err(|source| Error::Write {
            path: svg.clone(),
            source,
        })?;
        Ok(plots::Rendered {
            png,
            svg,
            size: SIZE,
        })
    }

    /// Everything but the grid: title, address labels, gap bands' labels, time axis, legend.
    fn decorate<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
        title: &str,
    ) -> Result<(), String> {
        let s = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(s)?;
        root.draw(&Text::new(
            title.to_owned(),
            (SIZE.0 as i32 / 2, 26),
            font(22).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(s)?;
        let (x0, y0, x1, y1) = (PLOT.0 as i32, PLOT.1 as i32, PLOT.2 as i32, PLOT.3 as i32);
        let ink = RGBColor(70, 70, 70);
        root.draw(&Rectangle::new(
            [(x0 - 1, y0 - 1), (x1, y1)],
            ink.stroke_width(1),
        ))
        .map_err(s)?;
        // Address labels: gaps first, then segment starts and the top end, skipping any that
        // would overlap one already placed.
        let y_of = |row: u32| y1 - row as i32;
        let mut labels: Vec<(i32, String)> = Vec::new();
        for (i, g) in self.axis.gaps.iter().enumerate() {
            let s = &self.axis.segments[i];
            let mid = y_of(s.row0 + s.rows) - GAP_ROWS as i32 / 2;
            labels.push((mid, format!("⋯ {} gap", fmt_value(YUnit::Bytes, *g as f64))));
        }
        for s in &self.axis.segments {
            labels.push((y_of(s.row0), format!("{:#x}", s.start)));
        }
        if let Some(s) = self.axis.segments.last() {
            labels.push((y_of(s.row0 + s.rows), format!("{:#x}", s.end)));
        }
        // Addresses inside the segments, every 80 rows.
        for s in &self.axis.segments {
            for r in (80..s.rows.saturating_sub(20)).step_by(80) {
                let addr = s.start + r as u64 * self.axis.bytes_per_row;
                labels.push((y_of(s.row0 + r), format!("{addr:#x}")));
            }
        }
        let mut placed: Vec<i32> = Vec::new();
        for (y, l) in labels {
            if placed.iter().any(|p| (p - y).abs() < 14) {
                continue;
            }
            placed.push(y);
            root.draw(&Text::new(
                l,
                (x0 - 6, y.clamp(y0 + 6, y1 - 6)),
                font(12).pos(Pos::new(HPos::Right, VPos::Center)),
            ))
            .map_err(s)?;
            root.draw(&PathElement::new(vec![(x0 - 4, y), (x0, y)], ink))
                .map_err(s)?;
        }
        root.draw(&Text::new(
            "address".to_owned(),
            (8, y0 - 14),
            font(13).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(s)?;
        // Time ticks.
        let (lo, hi) = (self.t_range.0 as f64, self.t_range.1 as f64 + 1.0);
        let unit = match self.time {
            TimeAxis::Ops => YUnit::OpsPerSec,
            TimeAxis::Ns => YUnit::Ns,
        };
        let step = nice_step((hi - lo) / 6.0);
        let mut v = (lo / step).ceil() * step;
        while v <= hi {
            let x = x0 + ((v - lo) / (hi - lo) * COLS as f64).round() as i32;
            root.draw(&PathElement::new(vec![(x, y1), (x, y1 + 5)], ink))
                .map_err(s)?;
            let label = match self.time {
                TimeAxis::Ops => fmt_value(unit, v).trim().to_owned(),
                TimeAxis::Ns => fmt_value(unit, v - lo),
            };
            root.draw(&Text::new(
                label,
                (x, y1 + 16),
                font(12).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(s)?;
            v += step;
        }
        root.draw(&Text::new(
            self.time_desc().to_owned(),
            ((x0 + x1) / 2, y1 + 40),
            font(14).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(s)?;
        // Legend.
        let lx = x1 + 18;
        let mut entries: Vec<(RGBColor, &str)> = vec![
            (Cell::Allocated(1.0).rgb(), "allocated (row full)"),
            (Cell::Allocated(0.1).rgb(), "allocated (10 % of row)"),
        ];
        if self.overlay.is_some() {
            entries.extend([
                (RETAINED_RGB, "resident, nothing live"),
                (NOT_RESIDENT_RGB, "mapped, not resident"),
                (NOT_MAPPED_RGB, "not mapped"),
            ]);
        }
        let before = self
            .overlay
            .as_ref()
            .is_some_and(|o| o.first_col != Some(0));
        if self.overlay.is_none() || before {
            entries.extend([(FREED_RGB, "freed"), (UNTOUCHED_RGB, "not allocated yet")]);
        }
        entries.push((GAP_RGB, "unused range, collapsed"));
        for (i, (c, l)) in entries.iter().enumerate() {
            let y = y0 + 10 + i as i32 * 22;
            root.draw(&Rectangle::new([(lx, y - 7), (lx + 20, y + 7)], c.filled()))
                .map_err(s)?;
            root.draw(&Rectangle::new(
                [(lx, y - 7), (lx + 20, y + 7)],
                ink.stroke_width(1),
            ))
            .map_err(s)?;
            root.draw(&Text::new(
                l.to_string(),
                (lx + 28, y),
                font(14).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(s)?;
        }
        let mut facts = vec![
            format!(
                "1 row = {}",
                fmt_value(YUnit::Bytes, self.axis.bytes_per_row as f64)
            ),
            format!("1 column = {}", self.col_desc()),
            format!(
                "{} ops",
                fmt_value(YUnit::OpsPerSec, self.ops as f64).trim()
            ),
            format!(
                "peak live {}",
                fmt_value(YUnit::Bytes, self.peak_live_bytes as f64)
            ),
        ];
        if let Some(o) = &self.overlay {
            facts.push(format!("{} snapshots,", o.snapshots));
            facts.push(self.snapshot_desc());
            if let Some(r) = o.retained_bytes {
                facts.push("retained at the end:".into());
                facts.push(format!("{} resident,", fmt_value(YUnit::Bytes, r as f64)));
                facts.push("nothing live (by rows)".into());
            }
        }
        let facts_y = y0 + 30 + entries.len() as i32 * 22;
        for (i, f) in facts.iter().enumerate() {
            root.draw(&Text::new(
                f.clone(),
                (lx, facts_y + i as i32 * 20),
                font(13).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(s)?;
        }
        Ok(())
    }

    /// The size histogram as a bar chart figure: share of requests and of requested bytes per
    /// size class.
    pub fn sizes_figure(&self, stem: &str, group: Group) -> Figure {
        sizes_figure(&self.name, &self.sizes, stem, group)
    }
}

/// A bar chart of a size histogram: per size class, its share of the requests and of the
/// requested bytes (percent).
pub fn sizes_figure(name: &str, h: &SizeHistogram, stem: &str, group: Group) -> Figure {
    let classes = h.classes();
    let (n, b) = (h.requests().max(1) as f64, h.total_bytes().max(1) as f64);
    let pct = |v: f64| Bar {
        value: v,
        low: v,
        high: v,
    };
    Figure {
        stem: stem.to_owned(),
        title: format!("Request sizes: {name}"),
        caption: format!(
            "Size classes of the {} allocation requests of `{name}` (log2 classes): share of \
             the requests (count) and of the {} requested. Exact counts in `{stem}.csv`.",
            h.requests(),
            fmt_value(YUnit::Bytes, h.total_bytes() as f64)
        ),
        group,
        chart: Chart::Bar(BarChart {
            value_desc: "share (%)".into(),
            group_desc: "requested size".into(),
            unit: YUnit::Plain,
            log: false,
            base: None,
            groups: classes.iter().map(SizeClass::label).collect(),
            series: vec![("requests".into(), 0), ("bytes".into(), 1)],
            values: classes
                .iter()
                .map(|c| {
                    vec![
                        Some(pct(c.count as f64 / n * 100.0)),
                        Some(pct(c.bytes as f64 / b * 100.0)),
                    ]
                })
                .collect(),
            reference: None,
        }),
    }
}

/// The size histogram as CSV: `min_exclusive_bytes,max_bytes,requests,bytes`.
pub fn sizes_csv(h: &SizeHistogram) -> String {
    let mut s = String::from("size_class,min_exclusive_bytes,max_bytes,requests,bytes\n");
    for c in h.classes() {
        let _ = writeln!(
            s,
            "{},{},{},{},{}",
            c.label(),
            c.min_exclusive,
            c.max,
            c.count,
            c.bytes
        );
    }
    s
}

/// The file stem of a trace (`x.trace.zst` → `x`).
pub fn trace_stem(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(stem) = name.strip_suffix(results_schema::heapmap::TRACE_SUFFIX) {
        return stem.to_owned();
    }
    let name = name.strip_suffix(".zst").unwrap_or(&name);
    name.strip_suffix(".trace").unwrap_or(name).to_owned()
}

/// 1, 2 or 5 × 10^k, the smallest not below `raw`.
fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let d = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * d)
        .find(|v| *v >= raw * (1.0 - 1e-9))
        .unwrap_or(10.0 * d)
}

fn png_bytes(rgb: &[u8], w: u32, h: u32) -> Result<Vec<u8>, String> {
    use image::ImageEncoder as _;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(rgb, w, h, image::ColorType::Rgb8)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// Standard base64 (RFC 4648, with padding).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// `svg` with `element` inserted right after its first element (the white background the
/// drawing starts with), so everything drawn later is on top of it.
fn insert_after_background(svg: &str, element: &str) -> Option<String> {
    let open = svg.find("<svg")?;
    let first = open + svg[open..].find('>')? + 1;
    let bg_end = first + svg[first..].find("/>")? + 2;
    let mut out = String::with_capacity(svg.len() + element.len() + 1);
    out.push_str(&svg[..bg_end]);
    out.push('\n');
    out.push_str(element);
    out.push_str(&svg[bg_end..]);
    Some(out)
}

/// `analyze --heap-map TRACE`: writes `heapmap_<stem>.png|svg`, `sizes_<stem>.png|svg` and
/// `sizes_<stem>.csv` into `out` ([`HeapMap::stem`]: the trace's name, or
/// `<trace>__<allocator>` for an address trace); returns the map and the files written.
pub fn write_for_trace(
    trace: &Path,
    out: &Path,
    opts: &HeapMapOptions,
) -> Result<(HeapMap, Vec<PathBuf>), Error> {
    let map = HeapMap::from_trace(trace, opts)?;
    let files = write_map(&map, out, &map.stem())?;
    Ok((map, files))
}

fn write_map(map: &HeapMap, out: &Path, stem: &str) -> Result<Vec<PathBuf>, Error> {
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.to_path_buf(),
        source,
    })?;
    let r = map.render(&map.title(), out, &format!("heapmap_{stem}"))?;
    let fig = map.sizes_figure(&format!("sizes_{stem}"), Group::Trace(map.name.clone()));
    let s = plots::render(&fig, out)?;
    let csv = out.join(format!("sizes_{stem}.csv"));
    std::fs::write(&csv, sizes_csv(&map.sizes)).map_err(|source| Error::Write {
        path: csv.clone(),
        source,
    })?;
    Ok(vec![r.png, r.svg, s.png, s.svg, csv])
}

/// Every address trace (`*.heapmap.zst`) under `dir`, recursively, sorted.
pub fn address_traces(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let bad = |reason: String| Error::BadArgument {
        arg: dir.display().to_string(),
        reason,
    };
    let mut found = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| bad(format!("cannot list {}: {e}", d.display())))?;
        for e in entries {
            let p = e
                .map_err(|e| bad(format!("cannot list {}: {e}", d.display())))?
                .path();
            if p.is_dir() {
                todo.push(p);
            } else if p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(results_schema::heapmap::TRACE_SUFFIX))
            {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(bad(format!(
            "no address trace (*{}) under it: `replay --heap-map [DIR]` writes them to \
             DIR/<trace>/ (default OUT/{}/)",
            results_schema::heapmap::TRACE_SUFFIX,
            results_schema::heapmap::DIR_NAME
        )));
    }
    Ok(found)
}

/// `analyze --heap-map DIR`: [`write_for_trace`] for every address trace under `dir`, calling
/// `done` after each (the trace, its map, the files written); a stem already used (the same
/// trace and allocator in two directories) gets `_2`, `_3`… Stops at the first error.
pub fn write_for_dir(
    dir: &Path,
    out: &Path,
    opts: &HeapMapOptions,
    mut done: impl FnMut(&Path, &HeapMap, &[PathBuf]),
) -> Result<usize, Error> {
    let mut used = std::collections::HashSet::new();
    let traces = address_traces(dir)?;
    for trace in &traces {
        let map = HeapMap::from_trace(trace, opts)?;
        let base = map.stem();
        let mut stem = base.clone();
        let mut k = 1;
        while !used.insert(stem.clone()) {
            k += 1;
            stem = format!("{base}_{k}");
        }
        let files = write_map(&map, out, &stem)?;
        done(trace, &map, &files);
    }
    Ok(traces.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn used_ranges_merge_and_coarsen() {
        let mut u = UsedRanges::default();
        u.insert(0x1000, 10);
        u.insert(0x1800, 0x1000);
        u.insert(0x10_0000, 1);
        assert_eq!(u.ranges(), vec![(0x1000, 0x3000), (0x10_0000, 0x10_1000)]);
        for i in 0..(MAX_RANGES as u64 + 1) {
            u.insert(0x1_0000_0000 + i * 0x2000, 1);
        }
        assert_eq!(u.granularity, PAGE * 16);
        assert!(u.ranges().len() <= MAX_RANGES);
        assert!(u.ranges().windows(2).all(|w| w[0].1 < w[1].0));
    }

    #[test]
    fn far_apart_ranges_are_collapsed_near_ones_kept() {
        let a = AddressAxis::new(
            &[
                (0x1000, 0x9000),
                (0xa000, 0xb000),
                (1 << 40, (1 << 40) + 0x8000),
            ],
            200,
        );
        assert_eq!(a.segments.len(), 2, "{a:?}");
        assert_eq!(a.gaps, vec![(1 << 40) - 0xb000]);
        assert_eq!(a.row_of(0x1000), Some(0));
        assert_eq!(a.row_of(0x9800), a.row_of(0x9800));
        assert!(a.row_of(1 << 40).unwrap() > a.row_of(0xafff).unwrap() + GAP_ROWS);
        assert_eq!(a.row_of(0xc000), None);
        assert!(a.rows_used() <= 200);
    }
}
