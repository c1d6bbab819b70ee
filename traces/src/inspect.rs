//! What `inspect` reports about a trace, computed in one pass over the merged (global-order)
//! events: counts per kind and thread, live bytes over time, sizes, cross-thread frees, and
//! the inconsistencies a replayer has to skip.
//!
//! Live bytes are the sum of requested sizes of objects allocated and not yet freed (the
//! lab's definition). Memory use is one hash entry per live object plus one per freed address
//! not yet reused (to tell a double free from a free of an unknown pointer).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::event::{Event, Kind, Record, ThreadId};

/// Size buckets of the histogram: bucket 0 counts zero-byte requests, bucket `i ≥ 1` requests of
/// `(2^(i-2), 2^(i-1)]` bytes, and the last bucket everything above 2^39 bytes as well.
pub const SIZE_BUCKETS: usize = 42;

/// Counts of one thread.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ThreadReport {
    pub thread: ThreadId,
    pub os_tid: u32,
    pub events: u64,
    /// Allocator calls (events other than thread and fork markers).
    pub ops: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// Events per kind name (only kinds that occur).
    pub by_kind: BTreeMap<&'static str, u64>,
}

/// One histogram bucket of requested sizes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SizeBucket {
    /// Requests in the bucket are `> min_exclusive` and `<= max` bytes.
    pub min_exclusive: u64,
    pub max: u64,
    pub count: u64,
}

/// Problems in the event stream: events a replayer cannot pass to an allocator as they are.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Inconsistencies {
    /// free/realloc of a pointer never returned by an allocation in the trace (for recorded
    /// programs, typically objects allocated before recording began).
    pub free_of_unknown: u64,
    /// free/realloc of a pointer already freed and not returned again since.
    pub double_free: u64,
    /// An allocation returned an address that was still live in the trace (a free was missed
    /// or the order is inverted).
    pub alloc_of_live_address: u64,
}

impl Inconsistencies {
    /// Total count.
    pub fn total(&self) -> u64 {
        self.free_of_unknown + self.double_free + self.alloc_of_live_address
    }
}

/// Everything `inspect` says about the events of a trace.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Report {
    pub events: u64,
    /// Allocator calls.
    pub ops: u64,
    pub first_ts: u64,
    pub last_ts: u64,
    /// `last_ts - first_ts`, in ns.
    pub duration_ns: u64,
    pub by_kind: BTreeMap<&'static str, u64>,
    /// Allocating calls that returned NULL.
    pub failed_allocations: u64,
    pub threads: Vec<ThreadReport>,
    /// Largest live bytes at any point, and when.
    pub peak_live_bytes: u64,
    pub peak_live_ts: u64,
    pub peak_live_objects: u64,
    pub final_live_bytes: u64,
    pub final_live_objects: u64,
    /// Sum of all requested sizes.
    pub total_requested_bytes: u64,
    /// Frees (and moving reallocs) of an object allocated by another thread.
    pub cross_thread_frees: u64,
    pub sizes: Vec<SizeBucket>,
    pub inconsistencies: Inconsistencies,
}

#[derive(Clone, Copy)]
struct Live {
    size: u64,
    thread: ThreadId,
}

/// Accumulates a [`Report`] from events fed in global order.
pub struct Inspector {
    events: u64,
    ops: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    by_kind: [u64; Kind::COUNT],
    failed: u64,
    threads: BTreeMap<ThreadId, (ThreadReport, [u64; Kind::COUNT])>,
    live: HashMap<u64, Live>,
    freed: HashSet<u64>,
    live_bytes: u64,
    peak_live_bytes: u64,
    peak_live_ts: u64,
    peak_live_objects: u64,
    total_requested: u64,
    cross_thread: u64,
    sizes: [u64; SIZE_BUCKETS],
    bad: Inconsistencies,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

fn bucket(size: u64) -> usize {
    if size == 0 {
        0
    } else {
        ((64 - (size - 1).leading_zeros()) as usize + 1).min(SIZE_BUCKETS - 1)
    }
}

impl Inspector {
    /// An empty inspector.
    pub fn new() -> Inspector {
        Inspector {
            events: 0,
            ops: 0,
            first_ts: None,
            last_ts: 0,
            by_kind: [0; Kind::COUNT],
            failed: 0,
            threads: BTreeMap::new(),
            live: HashMap::new(),
            freed: HashSet::new(),
            live_bytes: 0,
            peak_live_bytes: 0,
            peak_live_ts: 0,
            peak_live_objects: 0,
            total_requested: 0,
            cross_thread: 0,
            sizes: [0; SIZE_BUCKETS],
            bad: Inconsistencies::default(),
        }
    }

    /// Live bytes now.
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes
    }

    fn release(&mut self, ptr: u64, thread: ThreadId) {
        match self.live.remove(&ptr) {
            Some(l) => {
                self.live_bytes -= l.size;
                if l.thread != thread {
                    self.cross_thread += 1;
                }
                self.freed.insert(ptr);
            }
            None if self.freed.contains(&ptr) => self.bad.double_free += 1,
            None => self.bad.free_of_unknown += 1,
        }
    }

    fn acquire(&mut self, ptr: u64, size: u64, thread: ThreadId, ts: u64) {
        self.freed.remove(&ptr);
        if let Some(old) = self.live.insert(ptr, Live { size, thread }) {
            self.bad.alloc_of_live_address += 1;
            self.live_bytes -= old.size;
        }
        self.live_bytes += size;
        if self.live_bytes > self.peak_live_bytes {
            self.peak_live_bytes = self.live_bytes;
            self.peak_live_ts = ts;
        }
        self.peak_live_objects = self.peak_live_objects.max(self.live.len() as u64);
    }

    /// Takes one event (events must come in global order).
    pub fn feed(&mut self, r: &Record) {
        let kind = r.event.kind();
        self.events += 1;
        self.first_ts.get_or_insert(r.ts);
        self.last_ts = self.last_ts.max(r.ts);
        self.by_kind[kind as usize] += 1;
        let (t, per_kind) = self.threads.entry(r.thread).or_insert_with(|| {
            (
                ThreadReport {
                    thread: r.thread,
                    first_ts: r.ts,
                    ..ThreadReport::default()
                },
                [0; Kind::COUNT],
            )
        });
        t.events += 1;
        t.last_ts = r.ts;
        per_kind[kind as usize] += 1;
        if kind.is_op() {
            self.ops += 1;
            t.ops += 1;
        }
        if let Event::ThreadStart { os_tid } = r.event {
            t.os_tid = os_tid;
        }
        if let Some(size) = r.event.requested_bytes() {
            self.total_requested = self.total_requested.saturating_add(size);
            self.sizes[bucket(size)] += 1;
        }
        match r.event {
            Event::Free { ptr } => {
                if ptr != 0 {
                    self.release(ptr, r.thread);
                }
            }
            Event::Realloc { old_ptr, size, ptr } => {
                if ptr == 0 {
                    self.failed += (size != 0) as u64;
                    if size == 0 && old_ptr != 0 {
                        self.release(old_ptr, r.thread);
                    }
                } else if ptr == old_ptr {
                    // Resized in place: same object, new size.
                    match self.live.get_mut(&ptr) {
                        Some(l) => {
                            self.live_bytes = self.live_bytes - l.size + size;
                            l.size = size;
                            if self.live_bytes > self.peak_live_bytes {
                                self.peak_live_bytes = self.live_bytes;
                                self.peak_live_ts = r.ts;
                            }
                        }
                        None => {
                            self.release(old_ptr, r.thread);
                            self.acquire(ptr, size, r.thread, r.ts);
                        }
                    }
                } else {
                    if old_ptr != 0 {
                        self.release(old_ptr, r.thread);
                    }
                    self.acquire(ptr, size, r.thread, r.ts);
                }
            }
            Event::Malloc { ptr, .. } | Event::Calloc { ptr, .. } | Event::Aligned { ptr, .. } => {
                if ptr == 0 {
                    self.failed += 1;
                } else {
                    let size = r.event.requested_bytes().unwrap_or(0);
                    self.acquire(ptr, size, r.thread, r.ts);
                }
            }
            Event::ThreadStart { .. } | Event::ThreadExit | Event::Fork { .. } => {}
        }
    }

    /// The report on everything fed so far.
    pub fn report(&self) -> Report {
        let names = |counts: &[u64; Kind::COUNT]| {
            Kind::ALL
                .iter()
                .filter(|k| counts[**k as usize] > 0)
                .map(|k| (k.name(), counts[*k as usize]))
                .collect::<BTreeMap<_, _>>()
        };
        let first_ts = self.first_ts.unwrap_or(0);
        let top = self.sizes.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
        Report {
            events: self.events,
            ops: self.ops,
            first_ts,
            last_ts: self.last_ts,
            duration_ns: self.last_ts - first_ts,
            by_kind: names(&self.by_kind),
            failed_allocations: self.failed,
            threads: self
                .threads
                .values()
                .map(|(t, k)| ThreadReport {
                    by_kind: names(k),
                    ..t.clone()
                })
                .collect(),
            peak_live_bytes: self.peak_live_bytes,
            peak_live_ts: self.peak_live_ts,
            peak_live_objects: self.peak_live_objects,
            final_live_bytes: self.live_bytes,
            final_live_objects: self.live.len() as u64,
            total_requested_bytes: self.total_requested,
            cross_thread_frees: self.cross_thread,
            sizes: (0..top)
                .map(|i| SizeBucket {
                    min_exclusive: if i <= 1 { 0 } else { 1u64 << (i - 2) },
                    max: match i {
                        0 => 0,
                        i if i == SIZE_BUCKETS - 1 => u64::MAX,
                        i => 1u64 << (i - 1),
                    },
                    count: self.sizes[i],
                })
                .collect(),
            inconsistencies: self.bad.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(3), 3);
        assert_eq!(bucket(4), 3);
        assert_eq!(bucket(5), 4);
        assert_eq!(bucket(1 << 20), 21);
        assert_eq!(bucket(u64::MAX), SIZE_BUCKETS - 1);
    }

    #[test]
    fn live_bytes_cross_thread_and_inconsistencies() {
        let mut i = Inspector::new();
        let r = |ts, thread, event| Record { ts, thread, event };
        i.feed(&r(
            1,
            0,
            Event::Malloc {
                size: 100,
                ptr: 0x10,
            },
        ));
        i.feed(&r(
            2,
            0,
            Event::Calloc {
                nmemb: 4,
                size: 25,
                ptr: 0x20,
            },
        ));
        i.feed(&r(3, 1, Event::Free { ptr: 0x10 })); // cross-thread
        i.feed(&r(4, 1, Event::Free { ptr: 0x10 })); // double
        i.feed(&r(5, 1, Event::Free { ptr: 0x99 })); // unknown
        i.feed(&r(
            6,
            0,
            Event::Realloc {
                old_ptr: 0x20,
                size: 300,
                ptr: 0x20,
            },
        )); // in place
        i.feed(&r(7, 0, Event::Malloc { size: 8, ptr: 0x20 })); // live address
        i.feed(&r(
            8,
            0,
            Event::Malloc {
                size: 1 << 50,
                ptr: 0,
            },
        )); // failed
        let rep = i.report();
        assert_eq!(rep.peak_live_bytes, 300);
        assert_eq!(rep.peak_live_ts, 6);
        assert_eq!(rep.final_live_bytes, 8);
        assert_eq!(rep.cross_thread_frees, 1);
        assert_eq!(rep.failed_allocations, 1);
        assert_eq!(
            rep.inconsistencies,
            Inconsistencies {
                free_of_unknown: 1,
                double_free: 1,
                alloc_of_live_address: 1
            }
        );
        assert_eq!(rep.by_kind["free"], 3);
        assert_eq!(rep.threads.len(), 2);
        assert_eq!(rep.threads[1].ops, 3);
    }
}
