//! What an event does to the live set: the one definition `inspect` and the replayer's
//! preprocessing share, so that their counts and peaks agree.
//!
//! Live bytes are the sum of the requested sizes of the objects allocated and not yet freed.
//! Events come in global order; [`LiveSet::apply`] turns each into a typed [`Transition`]
//! and keeps the counts and the peak. The address table is the caller's ([`AddrTable`]):
//! `inspect` keeps a hash map, the replayer an open-addressing table it prefetches.
//!
//! The rules:
//! * an allocating call that returned NULL is a failed allocation and changes nothing
//!   (`realloc(p, n)` with `n > 0` leaves `p` live; `realloc(NULL, n)` is a `malloc(n)`, so
//!   `realloc(NULL, 0)` returning NULL is a failed allocation like `malloc(0)` returning NULL);
//! * `realloc(p, 0)` returning NULL freed `p`;
//! * `free(NULL)` does nothing (and is still a call a replay makes);
//! * a free (or realloc) of an address that is not live is skipped and counted: a *double
//!   free* if the address was freed before and not returned again since, else a free of an
//!   *unknown* pointer (typically allocated before recording began). A realloc of such an
//!   address still makes its new object, as `realloc(NULL, n)` would;
//! * a realloc returning its old (live) pointer resized the object in place; one returning
//!   another pointer moved it: the old address is freed, the object lives at the new one;
//! * an allocation returning an address that is still live is an *inversion* (the trace lost
//!   that address's free, or two threads' events are out of order): the old object is gone
//!   first, then the new one is made;
//! * the peak is the largest live-bytes value after any event; the objects "at the peak" are
//!   the live objects right then;
//! * an OS memory call (`mmap`, `madvise`, …, format 1.2) is not an allocator call: it changes
//!   nothing here (a [`Transition::Marker`]), whatever addresses it names.

use serde::Serialize;

use crate::event::Event;

/// What an address table knows of an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr<O> {
    /// Never returned by an allocation of the trace.
    Unknown,
    /// Returned, then freed, and not returned again since.
    Freed,
    /// The address of a live object.
    Live(O),
}

/// The address → object map a [`LiveSet`] works on. `Obj` is whatever the caller keeps per
/// live object (its size at least); the table creates it, so it may allocate a slot for it.
pub trait AddrTable {
    /// What the table keeps of a live object.
    type Obj: Copy;
    /// The object's requested size.
    fn size(&self, obj: &Self::Obj) -> u64;
    /// What the table knows of `addr` (never 0).
    fn get(&mut self, addr: u64) -> Addr<Self::Obj>;
    /// Frees the object at `addr` if one is live there (`addr` becomes [`Addr::Freed`]);
    /// returns what the table knew of `addr` before (one lookup: frees are most events).
    fn free(&mut self, addr: u64) -> Addr<Self::Obj>;
    /// A new object of `size` bytes lives at `addr`. Returns it, and the object that was still
    /// live at `addr` (an inversion), which the new one replaces in the table.
    fn alloc(&mut self, addr: u64, size: u64) -> (Self::Obj, Option<Self::Obj>);
    /// The object `obj`, just freed at its old address, lives on at `to` with `size` bytes (a
    /// realloc moved it). Returns the object at its new address, and the object that was still
    /// live at `to` (an inversion), which it replaces in the table.
    fn relocate(&mut self, obj: Self::Obj, to: u64, size: u64) -> (Self::Obj, Option<Self::Obj>);
    /// The live object `obj` at `addr` now has `size` bytes; returns it.
    fn resize(&mut self, addr: u64, obj: Self::Obj, size: u64) -> Self::Obj;
}

/// An object that left the live set, with its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gone<O> {
    pub obj: O,
    pub size: u64,
}

/// Why an event was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// free/realloc of an address already freed.
    DoubleFree,
    /// free/realloc of an address never returned.
    UnknownFree,
}

/// What one event did to the live set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition<O> {
    /// A thread start or exit, a fork, or an OS memory call: no allocator call.
    Marker,
    /// `free(NULL)`.
    FreeNull,
    /// An allocating call that returned NULL (counted).
    Failed,
    /// A free (or `realloc(p, 0)`) of an address that is not live (counted), or a realloc of
    /// one that failed (nothing else happens).
    Skipped(Skip),
    /// A new object of `size` bytes (an allocation; a realloc of NULL; a realloc of an address
    /// that was not live, then `skipped` says why). `dropped`: the object that was still live
    /// at its address (an inversion), gone first.
    Alloc {
        obj: O,
        size: u64,
        dropped: Option<Gone<O>>,
        skipped: Option<Skip>,
    },
    /// A live object was freed (`free`, or `realloc(p, 0)` returning NULL).
    Free(Gone<O>),
    /// A realloc resized a live object in place.
    Resize { obj: O, old_size: u64, size: u64 },
    /// A realloc moved a live object (`old`, the object as it was) to a new address (`obj`).
    /// `dropped` as for [`Transition::Alloc`].
    Move {
        old: Gone<O>,
        obj: O,
        size: u64,
        dropped: Option<Gone<O>>,
    },
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

/// The live set's totals, counts and peak, updated by [`LiveSet::apply`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveSet {
    /// Live bytes now.
    pub bytes: u64,
    /// Live objects now.
    pub objects: u64,
    /// Largest `bytes` after any event so far.
    pub peak_bytes: u64,
    /// Live objects when `peak_bytes` was reached.
    pub peak_objects: u64,
    /// Timestamp of the event that reached `peak_bytes`.
    pub peak_ts: u64,
    /// Allocating calls that returned NULL.
    pub failed: u64,
    /// Skipped frees and inversions.
    pub bad: Inconsistencies,
    /// Whether the last event reached a new peak.
    peaked: bool,
}

impl LiveSet {
    /// An empty live set.
    pub fn new() -> LiveSet {
        LiveSet::default()
    }

    /// Whether the last [`apply`](LiveSet::apply) set a new peak.
    pub fn peaked(&self) -> bool {
        self.peaked
    }

    /// Counts why `addr` could not be freed.
    fn skipped<O>(&mut self, what: Addr<O>) -> Skip {
        if let Addr::Freed = what {
            self.bad.double_free += 1;
            Skip::DoubleFree
        } else {
            self.bad.free_of_unknown += 1;
            Skip::UnknownFree
        }
    }

    /// Frees the live object at `addr`, or counts why it cannot.
    fn release<T: AddrTable>(&mut self, table: &mut T, addr: u64) -> Transition<T::Obj> {
        match table.free(addr) {
            Addr::Live(obj) => {
                let size = table.size(&obj);
                self.bytes -= size;
                self.objects -= 1;
                Transition::Free(Gone { obj, size })
            }
            other => Transition::Skipped(self.skipped(other)),
        }
    }

    /// Accounts for the object `replaced` that a new one displaced at its address.
    fn displaced<T: AddrTable>(
        &mut self,
        table: &T,
        replaced: Option<T::Obj>,
    ) -> Option<Gone<T::Obj>> {
        let obj = replaced?;
        let size = table.size(&obj);
        self.bad.alloc_of_live_address += 1;
        self.bytes -= size;
        self.objects -= 1;
        Some(Gone { obj, size })
    }

    fn alloc<T: AddrTable>(
        &mut self,
        table: &mut T,
        addr: u64,
        size: u64,
        skipped: Option<Skip>,
    ) -> Transition<T::Obj> {
        let (obj, replaced) = table.alloc(addr, size);
        let dropped = self.displaced(table, replaced);
        self.bytes += size;
        self.objects += 1;
        Transition::Alloc {
            obj,
            size,
            dropped,
            skipped,
        }
    }

    /// Applies one event (events must come in global order) and says what it did.
    pub fn apply<T: AddrTable>(
        &mut self,
        table: &mut T,
        event: &Event,
        ts: u64,
    ) -> Transition<T::Obj> {
        let t = match *event {
            Event::Malloc { ptr, .. } | Event::Calloc { ptr, .. } | Event::Aligned { ptr, .. } => {
                if ptr == 0 {
                    self.failed += 1;
                    Transition::Failed
                } else {
                    let size = event.requested_bytes().unwrap_or(0);
                    self.alloc(table, ptr, size, None)
                }
            }
            Event::Free { ptr } => {
                if ptr == 0 {
                    Transition::FreeNull
                } else {
                    self.release(table, ptr)
                }
            }
            Event::Realloc { old_ptr, size, ptr } => {
                if ptr == 0 {
                    if size == 0 && old_ptr != 0 {
                        // realloc(p, 0) freed p.
                        self.release(table, old_ptr)
                    } else {
                        // Failed: the old object (if any) stays live.
                        self.failed += 1;
                        Transition::Failed
                    }
                } else if old_ptr == 0 {
                    self.alloc(table, ptr, size, None)
                } else if ptr == old_ptr
                    && let Addr::Live(obj) = table.get(ptr)
                {
                    let old_size = table.size(&obj);
                    let obj = table.resize(ptr, obj, size);
                    self.bytes = self.bytes - old_size + size;
                    Transition::Resize {
                        obj,
                        old_size,
                        size,
                    }
                } else {
                    match table.free(old_ptr) {
                        Addr::Live(obj) => {
                            let old = Gone {
                                obj,
                                size: table.size(&obj),
                            };
                            let (obj, replaced) = table.relocate(obj, ptr, size);
                            self.bytes -= old.size;
                            let dropped = self.displaced(table, replaced);
                            self.bytes += size;
                            Transition::Move {
                                old,
                                obj,
                                size,
                                dropped,
                            }
                        }
                        // The old pointer was not live (counted): the new object exists all
                        // the same, as if made by realloc(NULL, size).
                        other => {
                            let s = self.skipped(other);
                            self.alloc(table, ptr, size, Some(s))
                        }
                    }
                }
            }
            Event::ThreadStart { .. }
            | Event::ThreadExit
            | Event::Fork { .. }
            | Event::Os { .. } => Transition::Marker,
        };
        self.peaked = self.bytes > self.peak_bytes;
        if self.peaked {
            self.peak_bytes = self.bytes;
            self.peak_objects = self.objects;
            self.peak_ts = ts;
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// The simplest table: address → size, and the freed addresses.
    #[derive(Default)]
    struct Map(HashMap<u64, Option<u64>>);

    impl AddrTable for Map {
        type Obj = u64;
        fn size(&self, obj: &u64) -> u64 {
            *obj
        }
        fn get(&mut self, addr: u64) -> Addr<u64> {
            match self.0.get(&addr) {
                None => Addr::Unknown,
                Some(None) => Addr::Freed,
                Some(Some(s)) => Addr::Live(*s),
            }
        }
        fn free(&mut self, addr: u64) -> Addr<u64> {
            let was = self.get(addr);
            if let Addr::Live(_) = was {
                self.0.insert(addr, None);
            }
            was
        }
        fn alloc(&mut self, addr: u64, size: u64) -> (u64, Option<u64>) {
            (size, self.0.insert(addr, Some(size)).flatten())
        }
        fn relocate(&mut self, _: u64, to: u64, size: u64) -> (u64, Option<u64>) {
            self.alloc(to, size)
        }
        fn resize(&mut self, addr: u64, _: u64, size: u64) -> u64 {
            self.0.insert(addr, Some(size));
            size
        }
    }

    #[test]
    fn every_rule() {
        let mut m = Map::default();
        let mut l = LiveSet::new();
        let mut ap = |e: Event, ts| l.apply(&mut m, &e, ts);
        let malloc = |size, ptr| Event::Malloc { size, ptr };
        let realloc = |old_ptr, size, ptr| Event::Realloc { old_ptr, size, ptr };
        assert!(matches!(
            ap(malloc(100, 0x10), 1),
            Transition::Alloc {
                size: 100,
                dropped: None,
                ..
            }
        ));
        assert_eq!(ap(realloc(0, 0, 0), 2), Transition::Failed);
        assert_eq!(ap(realloc(0x10, 5, 0), 3), Transition::Failed);
        assert_eq!(ap(Event::Free { ptr: 0 }, 4), Transition::FreeNull);
        assert_eq!(
            ap(realloc(0x10, 300, 0x10), 5),
            Transition::Resize {
                obj: 300,
                old_size: 100,
                size: 300
            }
        );
        assert!(matches!(
            ap(realloc(0x10, 50, 0x20), 6),
            Transition::Move {
                old: Gone { size: 300, .. },
                size: 50,
                ..
            }
        ));
        assert_eq!(
            ap(Event::Free { ptr: 0x10 }, 7),
            Transition::Skipped(Skip::DoubleFree)
        );
        assert_eq!(
            ap(Event::Free { ptr: 0x99 }, 8),
            Transition::Skipped(Skip::UnknownFree)
        );
        assert!(matches!(
            ap(realloc(0x99, 8, 0x30), 9),
            Transition::Alloc {
                size: 8,
                skipped: Some(Skip::UnknownFree),
                ..
            }
        ));
        assert!(matches!(
            ap(malloc(7, 0x30), 10),
            Transition::Alloc {
                dropped: Some(Gone { size: 8, .. }),
                ..
            }
        ));
        assert!(matches!(
            ap(realloc(0x20, 0, 0), 11),
            Transition::Free(Gone { size: 50, .. })
        ));
        assert_eq!(l.bytes, 7);
        assert_eq!(l.objects, 1);
        assert_eq!((l.peak_bytes, l.peak_objects, l.peak_ts), (300, 1, 5));
        assert_eq!(l.failed, 2);
        assert_eq!(
            l.bad,
            Inconsistencies {
                free_of_unknown: 2,
                double_free: 1,
                alloc_of_live_address: 1
            }
        );
    }

    #[test]
    fn objects_at_the_peak_not_the_most_objects() {
        let mut m = Map::default();
        let mut l = LiveSet::new();
        for i in 1..=10u64 {
            l.apply(
                &mut m,
                &Event::Malloc {
                    size: 1,
                    ptr: i * 16,
                },
                i,
            );
        }
        for i in 1..=10u64 {
            l.apply(&mut m, &Event::Free { ptr: i * 16 }, 10 + i);
        }
        l.apply(
            &mut m,
            &Event::Malloc {
                size: 1000,
                ptr: 0x1000,
            },
            30,
        );
        assert_eq!((l.peak_bytes, l.peak_objects, l.peak_ts), (1000, 1, 30));
    }
}
