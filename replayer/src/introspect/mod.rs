//! The allocator's own statistics over time (introspection.parquet, replayer/SCHEMA.md).
//!
//! Each adapter may hand the engine a [`Probe`] ([`crate::adapter::Allocator::probe`]), made
//! before the barrier: everything it needs (jemalloc's MIBs, glibc's `FILE*` over a
//! preallocated buffer, tcmalloc's property function) is set up then. The sampler thread calls
//! [`Probe::read`] every `introspect_ms` (checked after each RSS sample, so never more often
//! than the RSS sampler) and once more after the last replay thread is joined. A probe writes
//! `(metric, key, value)` points into a [`Sink`]: a slice of a buffer sized up front, so reading
//! allocates nothing through the harness's allocator and nothing through the allocator under
//! test either (each probe says how). When the buffer is close to full, every other sample is
//! dropped and the period doubles, as the RSS sampler does.
//!
//! What a probe costs the replay: the sampler runs on its own thread, so a probe takes no time
//! from the replay threads except where the allocator locks for it — glibc's `malloc_info` holds
//! each arena's mutex while it walks that arena's free lists, jemalloc's `epoch` merges the
//! arenas' statistics under their stats mutexes, tcmalloc's properties take its page-heap lock.
//! The period (100 ms by default) keeps that well below the loop's time: the figure is measured
//! side by side by `benches/inside_cost.rs` (replayer/README.md).
//!
//! Every probe also writes the two metrics all allocators share where they can:
//! [`IN_USE`] (the bytes of live blocks as the allocator counts them) and [`RESIDENT`] (the
//! allocator's own figure of the memory it holds from the OS: committed, mapped or resident, as
//! it defines it) — what `analyze` plots side by side.

pub mod glibc;

use serde::{Deserialize, Serialize};

use crate::engine::Phase;

/// Bytes of live blocks, as the allocator counts them (common to every probe that can).
pub const IN_USE: &str = "in_use_bytes";
/// Memory the allocator holds from the OS, as it counts it (common to every probe that can).
pub const RESIDENT: &str = "resident_bytes";
/// How long the reading took on the sampler thread, ns (added to every reading by
/// [`Readings::read`]): what the probe's call cost, locks held included.
pub const READ_NS: &str = "read_ns";

/// Points the buffer holds (about 1.3 MiB, prefaulted with the harness's other buffers).
pub const POINTS_CAP: usize = 1 << 15;
/// Room kept free before a probe: no probe writes more points than this in one reading.
pub const SAMPLE_MAX_POINTS: usize = 1024;

/// One figure of one reading, as the sampler stores it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RawPoint {
    pub phase: Phase,
    /// ns since the first op.
    pub t_ns: u64,
    /// Which reading (counted from 0 in the run, before any thinning).
    pub reading: u32,
    pub metric: &'static str,
    /// The arena, size class or size bucket the figure is for (None: the whole allocator).
    pub key: Option<u32>,
    pub value: i64,
}

/// Where a probe writes one reading's points: at most `room` of them; the rest is counted as
/// dropped.
pub struct Sink<'a> {
    buf: &'a mut Vec<RawPoint>,
    room: usize,
    phase: Phase,
    t_ns: u64,
    reading: u32,
    dropped: u64,
}

impl Sink<'_> {
    /// Adds `metric` (for `key`, if any) = `value`.
    #[inline]
    pub fn put(&mut self, metric: &'static str, key: Option<u32>, value: i64) {
        if self.room == 0 || self.buf.len() == self.buf.capacity() {
            self.dropped += 1;
            return;
        }
        self.room -= 1;
        self.buf.push(RawPoint {
            phase: self.phase,
            t_ns: self.t_ns,
            reading: self.reading,
            metric,
            key,
            value,
        });
    }

    /// Adds an unsigned figure (saturating at `i64::MAX`).
    #[inline]
    pub fn put_u(&mut self, metric: &'static str, key: Option<u32>, value: u64) {
        self.put(metric, key, value.min(i64::MAX as u64) as i64);
    }
}

/// Reads one allocator's statistics.
///
/// Implementations must not allocate (neither through Rust's global allocator — the harness
/// counts that as an allocation inside the loop — nor through the allocator under test), and
/// must be callable from the sampler thread while replay threads run.
pub trait Probe: Send {
    /// Writes the allocator's figures now.
    fn read(&mut self, out: &mut Sink<'_>);
}

/// The readings of one pass, in a buffer sized up front.
pub struct Readings {
    buf: Vec<RawPoint>,
    next: u32,
    /// Points that did not fit.
    pub dropped: u64,
}

impl Default for Readings {
    fn default() -> Self {
        Readings::with_capacity(0)
    }
}

impl Readings {
    /// A buffer of `cap` points (allocated now: call before the barrier).
    pub fn with_capacity(cap: usize) -> Readings {
        Readings {
            buf: Vec::with_capacity(cap),
            next: 0,
            dropped: 0,
        }
    }

    /// Whether the buffer is so full that the next reading might not fit.
    pub fn nearly_full(&self) -> bool {
        self.buf.capacity() - self.buf.len() < SAMPLE_MAX_POINTS
    }

    /// Drops every other reading (the even ones among those kept), in place.
    pub fn thin(&mut self) {
        let mut rank = 0usize;
        let mut last = None;
        self.buf.retain(|p| {
            if last != Some(p.reading) {
                if last.is_some() {
                    rank += 1;
                }
                last = Some(p.reading);
            }
            rank % 2 == 1
        });
    }

    /// Takes one reading through `probe`.
    pub fn read(&mut self, probe: &mut dyn Probe, phase: Phase, t_ns: u64) {
        let room = (self.buf.capacity() - self.buf.len()).min(SAMPLE_MAX_POINTS);
        let mut sink = Sink {
            buf: &mut self.buf,
            room,
            phase,
            t_ns,
            reading: self.next,
            dropped: 0,
        };
        let t0 = std::time::Instant::now();
        probe.read(&mut sink);
        let took = t0.elapsed().as_nanos() as u64;
        sink.room += 1;
        sink.put_u(READ_NS, None, took);
        self.dropped += sink.dropped;
        self.next += 1;
    }

    /// The points, for the result (allocates: call after the loop).
    pub fn points(&self) -> Vec<Point> {
        let mut out = Vec::with_capacity(self.buf.len());
        let mut sample = 0u32;
        let mut last = None;
        for p in &self.buf {
            if last.is_some() && last != Some(p.reading) {
                sample += 1;
            }
            last = Some(p.reading);
            out.push(Point {
                phase: p.phase,
                sample,
                t_ns: p.t_ns,
                metric: p.metric.to_string(),
                key: p.key,
                value: p.value,
            });
        }
        out
    }
}

/// One figure of one reading, as the child hands it to the parent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub phase: Phase,
    /// The reading's number among those kept (0, 1, … in time order).
    pub sample: u32,
    /// ns since the first op.
    pub t_ns: u64,
    pub metric: String,
    pub key: Option<u32>,
    pub value: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Counting(i64);
    impl Probe for Counting {
        fn read(&mut self, out: &mut Sink<'_>) {
            self.0 += 1;
            out.put("a", None, self.0);
            out.put("b", Some(3), -self.0);
        }
    }

    #[test]
    fn thinning_keeps_every_other_reading_whole_and_renumbers() {
        let mut r = Readings::with_capacity(64);
        let mut p = Counting(0);
        for i in 0..6 {
            r.read(&mut p, Phase::Replay, i * 10);
        }
        r.thin();
        let pts = r.points();
        // Readings 1, 3, 5 kept (values 2, 4, 6), three points each (a, b and the reading's
        // own time), numbered 0, 1, 2.
        assert_eq!(pts.len(), 9);
        assert_eq!(pts.iter().filter(|p| p.metric == READ_NS).count(), 3);
        let a: Vec<(u32, i64)> = pts
            .iter()
            .filter(|p| p.metric == "a")
            .map(|p| (p.sample, p.value))
            .collect();
        assert_eq!(a, vec![(0, 2), (1, 4), (2, 6)]);
        assert!(pts.iter().all(|p| p.metric != "b" || p.key == Some(3)));
    }

    #[test]
    fn a_full_buffer_counts_what_it_drops() {
        let mut r = Readings::with_capacity(3);
        let mut p = Counting(0);
        r.read(&mut p, Phase::Replay, 0);
        r.read(&mut p, Phase::Replay, 1);
        // The first reading fills it (a, b, read_ns); the second is dropped whole.
        assert_eq!(r.points().len(), 3);
        assert_eq!(r.dropped, 3);
    }
}
