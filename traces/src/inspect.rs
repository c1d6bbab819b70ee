//! What `inspect` reports about a trace, computed in one pass over the merged (global-order)
//! events: counts per kind and thread, live bytes over time, sizes, cross-thread frees, and
//! the inconsistencies a replayer has to skip, and (format 1.2) the OS memory calls recorded.
//!
//! Live bytes, failures and inconsistencies follow [`crate::live`], the definition the
//! replayer shares. Memory use is one hash entry per live object plus one per freed address
//! not yet reused (to tell a double free from a free of an unknown pointer).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;

use crate::event::{Event, Kind, Record, ThreadId};
pub use crate::live::Inconsistencies;
use crate::live::{Addr, AddrTable, LiveSet, Transition};
use crate::os::{OsCall, advice_name};

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

/// The figures of one OS call (or one madvise advice).
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OsCallCount {
    /// Calls, failed ones included.
    pub calls: u64,
    /// Calls that failed (their bytes are not counted).
    pub failed: u64,
    /// Bytes of the calls that succeeded: mmap mapped, munmap unmapped, mremap's new length,
    /// brk's move of the break (either way), madvise advised.
    pub bytes: u64,
}

/// The OS memory calls of a trace (format 1.2; all zero when none were recorded).
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OsReport {
    /// Every call (`mmap`, `munmap`, `mremap`, `brk`, `madvise`), zero or not.
    pub calls: BTreeMap<&'static str, OsCallCount>,
    /// madvise by advice (`dontneed`, `free`, …): advice that occurred only.
    pub madvise_by_advice: BTreeMap<String, OsCallCount>,
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
    /// Live objects at that point.
    pub peak_live_objects: u64,
    pub final_live_bytes: u64,
    pub final_live_objects: u64,
    /// Sum of all requested sizes.
    pub total_requested_bytes: u64,
    /// Frees (and moving reallocs) of an object allocated by another thread.
    pub cross_thread_frees: u64,
    pub sizes: Vec<SizeBucket>,
    pub inconsistencies: Inconsistencies,
    /// OS memory calls (format 1.2).
    pub os_calls: OsReport,
}

#[derive(Clone, Copy)]
struct Live {
    size: u64,
    thread: ThreadId,
}

/// `inspect`'s address table: live objects with their thread, and freed addresses not yet
/// returned again.
#[derive(Default)]
struct Objects {
    live: HashMap<u64, Live>,
    freed: HashSet<u64>,
    /// The thread of the event being applied (a new object's).
    thread: ThreadId,
}

impl AddrTable for Objects {
    type Obj = Live;

    fn size(&self, obj: &Live) -> u64 {
        obj.size
    }

    fn get(&mut self, addr: u64) -> Addr<Live> {
        match self.live.get(&addr) {
            Some(l) => Addr::Live(*l),
            None if self.freed.contains(&addr) => Addr::Freed,
            None => Addr::Unknown,
        }
    }

    fn free(&mut self, addr: u64) -> Addr<Live> {
        match self.live.remove(&addr) {
            Some(l) => {
                self.freed.insert(addr);
                Addr::Live(l)
            }
            None if self.freed.contains(&addr) => Addr::Freed,
            None => Addr::Unknown,
        }
    }

    fn alloc(&mut self, addr: u64, size: u64) -> (Live, Option<Live>) {
        self.freed.remove(&addr);
        let obj = Live {
            size,
            thread: self.thread,
        };
        (obj, self.live.insert(addr, obj))
    }

    fn relocate(&mut self, _: Live, to: u64, size: u64) -> (Live, Option<Live>) {
        self.alloc(to, size)
    }

    fn resize(&mut self, addr: u64, obj: Live, size: u64) -> Live {
        let obj = Live { size, ..obj };
        self.live.insert(addr, obj);
        obj
    }
}

/// Accumulates a [`Report`] from events fed in global order.
pub struct Inspector {
    events: u64,
    ops: u64,
    first_ts: Option<u64>,
    last_ts: u64,
    by_kind: [u64; Kind::COUNT],
    threads: BTreeMap<ThreadId, (ThreadReport, [u64; Kind::COUNT])>,
    objects: Objects,
    live: LiveSet,
    total_requested: u64,
    cross_thread: u64,
    sizes: [u64; SIZE_BUCKETS],
    os: [OsCallCount; OsCall::COUNT],
    advice: BTreeMap<u32, OsCallCount>,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector::new()
    }
}

/// The histogram bucket of a request of `size` bytes (see [`SIZE_BUCKETS`]).
pub fn bucket(size: u64) -> usize {
    if size == 0 {
        0
    } else {
        ((64 - (size - 1).leading_zeros()) as usize + 1).min(SIZE_BUCKETS - 1)
    }
}

/// The sizes bucket `i` holds: `(min_exclusive, max)` (requests `> min_exclusive` and `<= max`
/// bytes; bucket 0 is `(0, 0)`, zero-byte requests).
pub fn bucket_bounds(i: usize) -> (u64, u64) {
    let min_exclusive = if i <= 1 { 0 } else { 1u64 << (i - 2) };
    let max = match i {
        0 => 0,
        i if i >= SIZE_BUCKETS - 1 => u64::MAX,
        i => 1u64 << (i - 1),
    };
    (min_exclusive, max)
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
            threads: BTreeMap::new(),
            objects: Objects::default(),
            live: LiveSet::new(),
            total_requested: 0,
            cross_thread: 0,
            sizes: [0; SIZE_BUCKETS],
            os: [OsCallCount::default(); OsCall::COUNT],
            advice: BTreeMap::new(),
        }
    }

    /// Live bytes now.
    pub fn live_bytes(&self) -> u64 {
        self.live.bytes
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
        match r.event {
            Event::ThreadStart { os_tid } => t.os_tid = os_tid,
            Event::Os {
                call,
                err,
                arg,
                len,
                ..
            } => {
                let add = |c: &mut OsCallCount| {
                    c.calls += 1;
                    if err == 0 {
                        c.bytes = c.bytes.saturating_add(len);
                    } else {
                        c.failed += 1;
                    }
                };
                add(&mut self.os[call as usize]);
                if call == OsCall::Madvise {
                    add(self.advice.entry(arg).or_default());
                }
            }
            _ => {}
        }
        if let Some(size) = r.event.requested_bytes() {
            self.total_requested = self.total_requested.saturating_add(size);
            self.sizes[bucket(size)] += 1;
        }
        self.objects.thread = r.thread;
        match self.live.apply(&mut self.objects, &r.event, r.ts) {
            Transition::Free(g) | Transition::Move { old: g, .. } if g.obj.thread != r.thread => {
                self.cross_thread += 1;
            }
            _ => {}
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
            failed_allocations: self.live.failed,
            threads: self
                .threads
                .values()
                .map(|(t, k)| ThreadReport {
                    by_kind: names(k),
                    ..t.clone()
                })
                .collect(),
            peak_live_bytes: self.live.peak_bytes,
            peak_live_ts: self.live.peak_ts,
            peak_live_objects: self.live.peak_objects,
            final_live_bytes: self.live.bytes,
            final_live_objects: self.live.objects,
            total_requested_bytes: self.total_requested,
            cross_thread_frees: self.cross_thread,
            sizes: (0..top)
                .map(|i| {
                    let (min_exclusive, max) = bucket_bounds(i);
                    SizeBucket {
                        min_exclusive,
                        max,
                        count: self.sizes[i],
                    }
                })
                .collect(),
            inconsistencies: self.live.bad.clone(),
            os_calls: OsReport {
                calls: OsCall::ALL
                    .iter()
                    .map(|c| (c.name(), self.os[*c as usize]))
                    .collect(),
                madvise_by_advice: self
                    .advice
                    .iter()
                    .map(|(a, c)| (advice_name(*a), *c))
                    .collect(),
            },
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

    #[test]
    fn the_objects_at_the_peak_are_counted_at_the_peak() {
        // Ten small objects, all freed, then one big one: the peak is the big one alone.
        let mut i = Inspector::new();
        let r = |ts, event| Record {
            ts,
            thread: 0,
            event,
        };
        for k in 1..=10u64 {
            i.feed(&r(
                k,
                Event::Malloc {
                    size: 8,
                    ptr: k * 16,
                },
            ));
        }
        for k in 1..=10u64 {
            i.feed(&r(10 + k, Event::Free { ptr: k * 16 }));
        }
        i.feed(&r(
            30,
            Event::Malloc {
                size: 4096,
                ptr: 0x1000,
            },
        ));
        let rep = i.report();
        assert_eq!(
            (rep.peak_live_bytes, rep.peak_live_objects, rep.peak_live_ts),
            (4096, 1, 30)
        );
    }
}
