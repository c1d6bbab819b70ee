//! Writer → readers round trips, including proptest over random event sequences.

use proptest::prelude::*;
use traces::inspect::Inspector;
use traces::{
    AlignedFn, Event, Header, MergedReader, OsCall, Record, Timed, TraceReader, TraceWriter,
};

fn header() -> Header {
    let mut h = Header::for_this_process("roundtrip-test 1");
    h.command_line = vec!["test".into()];
    h
}

/// Writes `threads` (each a thread's events in order) with small frames, interleaving the
/// threads' frames in file order by timestamp the way a recorder would.
fn write(path: &std::path::Path, threads: &[Vec<Timed>], frame: usize) {
    let mut w = TraceWriter::create(path, &header())
        .unwrap()
        .with_frame_events(frame);
    let mut all: Vec<(u64, u32, Timed)> = Vec::new();
    for (t, evs) in threads.iter().enumerate() {
        all.extend(evs.iter().map(|e| (e.ts, t as u32, *e)));
    }
    all.sort_by_key(|(ts, t, _)| (*ts, *t));
    // stable per-thread order: sort_by_key is stable and per-thread ts are non-decreasing
    for (_, t, e) in all {
        w.append(t, e.ts, e.event).unwrap();
    }
    w.finish(0).unwrap();
}

fn merged(threads: &[Vec<Timed>]) -> Vec<Record> {
    let mut all: Vec<Record> = Vec::new();
    for (t, evs) in threads.iter().enumerate() {
        all.extend(evs.iter().map(|e| Record {
            ts: e.ts,
            thread: t as u32,
            event: e.event,
        }));
    }
    all.sort_by_key(|r| (r.ts, r.thread)); // stable: keeps each thread's order
    all
}

fn arb_event() -> impl Strategy<Value = Event> {
    // Pointers from a small pool so frees hit earlier allocations (refs, ring), plus arbitrary.
    let ptr = prop_oneof![
        3 => (0u64..64).prop_map(|i| 0x7f00_0000_0000 + i * 48),
        1 => any::<u64>(),
        1 => Just(0u64),
    ];
    let size = prop_oneof![4 => 0u64..4096, 1 => any::<u64>()];
    prop_oneof![
        1 => (size.clone(), ptr.clone()).prop_map(|(size, ptr)| Event::Malloc { size, ptr }),
        1 => (any::<u64>(), size.clone(), ptr.clone())
            .prop_map(|(nmemb, size, ptr)| Event::Calloc { nmemb, size, ptr }),
        1 => (ptr.clone(), size.clone(), ptr.clone())
            .prop_map(|(old_ptr, size, ptr)| Event::Realloc { old_ptr, size, ptr }),
        1 => (ptr.clone(), size.clone()).prop_map(|(old_ptr, size)| Event::Realloc {
            old_ptr,
            size,
            ptr: old_ptr
        }),
        3 => ptr.clone().prop_map(|ptr| Event::Free { ptr }),
        1 => (0usize..5, any::<u64>(), size.clone(), ptr.clone()).prop_map(|(f, align, size, ptr)| Event::Aligned {
            func: AlignedFn::ALL[f],
            align,
            size,
            ptr
        }),
        1 => any::<u32>().prop_map(|os_tid| Event::ThreadStart { os_tid }),
        1 => Just(Event::ThreadExit),
        1 => any::<u32>().prop_map(|child_pid| Event::Fork { child_pid }),
        // OS calls (format 1.2): any field values, between allocations that must still code
        // their pointers against each other as if the OS calls were not there.
        2 => (0usize..OsCall::COUNT, any::<u8>(), any::<u8>(), any::<u32>(), ptr.clone(),
              size, ptr)
            .prop_map(|(c, prot, err, arg, addr, len, result)| Event::Os {
                call: OsCall::ALL[c],
                prot,
                err,
                arg,
                addr,
                len,
                result,
            }),
    ]
}

fn arb_thread() -> impl Strategy<Value = Vec<Timed>> {
    prop::collection::vec((0u64..5000, arb_event()), 0..300).prop_map(|v| {
        let mut ts = 0u64;
        v.into_iter()
            .map(|(dt, event)| {
                ts += dt;
                Timed { ts, event }
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn random_traces_round_trip(threads in prop::collection::vec(arb_thread(), 1..5), frame in 1usize..100) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.zst");
        write(&path, &threads, frame);

        // Global order.
        let got: Vec<Record> = MergedReader::open(&path).unwrap().map(|r| r.unwrap()).collect();
        prop_assert_eq!(&got, &merged(&threads));

        // File order, per thread.
        let mut r = TraceReader::open(&path).unwrap();
        let mut per: Vec<Vec<Timed>> = vec![Vec::new(); threads.len()];
        let mut frame_buf = traces::Frame::default();
        while r.next_frame(&mut frame_buf).unwrap() {
            per[frame_buf.thread as usize].extend_from_slice(&frame_buf.events);
        }
        prop_assert_eq!(&per, &threads);
        prop_assert!(r.warnings().is_empty());
        let t = r.trailer().expect("trailer");
        prop_assert_eq!(t.total_events, threads.iter().map(|t| t.len() as u64).sum::<u64>());
        prop_assert_eq!(t.dropped_events, 0);
    }
}

/// Ops for a simulated allocator that reuses freed blocks LIFO per size class, as real ones do:
/// this drives the codec's bins at every depth, including reallocs that move within a class
/// (a random-pointer trace almost never hits a bin).
#[derive(Clone, Debug)]
enum Op {
    Malloc(u64),
    Free(usize),
    Realloc(usize, u64, bool),
    Calloc(u64, u64),
    /// An OS call naming a live block's address (or NULL): it must change neither the
    /// pointer coding around it nor the live set.
    Os(usize, usize, u64, u8),
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let size = prop_oneof![0u64..64, 0u64..600, 1000u64..70_000];
    prop::collection::vec(
        prop_oneof![
            3 => size.clone().prop_map(Op::Malloc),
            3 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), size, any::<bool>()).prop_map(|(i, s, m)| Op::Realloc(i, s, m)),
            1 => (1u64..8, 1u64..100).prop_map(|(n, s)| Op::Calloc(n, s)),
            1 => (0..OsCall::COUNT, any::<usize>(), 0u64..1 << 30, prop_oneof![Just(0u8), 1u8..=255])
                .prop_map(|(c, i, len, err)| Op::Os(c, i, len, err)),
        ],
        1..2000,
    )
}

fn simulate(ops: &[Op]) -> Vec<Timed> {
    let class = |s: u64| (s + 8).div_ceil(16);
    let mut free: std::collections::HashMap<u64, Vec<u64>> = Default::default();
    let mut live: Vec<u64> = Vec::new();
    let mut next = 0x5555_0000_0000u64;
    let mut fresh = |s: u64| {
        let p = next;
        next += (s + 31) & !15;
        p
    };
    let mut out = Vec::new();
    let mut ts = 0;
    let mut take = |s: u64, free: &mut std::collections::HashMap<u64, Vec<u64>>| {
        free.get_mut(&class(s))
            .and_then(|v| v.pop())
            .unwrap_or_else(|| fresh(s))
    };
    let mut sizes: std::collections::HashMap<u64, u64> = Default::default();
    for op in ops {
        ts += 7;
        let event = match *op {
            Op::Malloc(s) => {
                let p = take(s, &mut free);
                live.push(p);
                sizes.insert(p, s);
                Event::Malloc { size: s, ptr: p }
            }
            Op::Calloc(n, s) => {
                let p = take(n * s, &mut free);
                live.push(p);
                sizes.insert(p, n * s);
                Event::Calloc {
                    nmemb: n,
                    size: s,
                    ptr: p,
                }
            }
            Op::Free(i) if !live.is_empty() => {
                let p = live.swap_remove(i % live.len());
                free.entry(class(sizes[&p])).or_default().push(p);
                Event::Free { ptr: p }
            }
            Op::Realloc(i, s, moves) if !live.is_empty() => {
                let i = i % live.len();
                let old = live[i];
                if moves || s == 0 {
                    // Moves into a block of the new class; the old one is freed after.
                    let p = if s == 0 { 0 } else { take(s, &mut free) };
                    free.entry(class(sizes[&old])).or_default().push(old);
                    if p == 0 {
                        live.swap_remove(i);
                    } else {
                        live[i] = p;
                        sizes.insert(p, s);
                    }
                    Event::Realloc {
                        old_ptr: old,
                        size: s,
                        ptr: p,
                    }
                } else {
                    sizes.insert(old, s);
                    Event::Realloc {
                        old_ptr: old,
                        size: s,
                        ptr: old,
                    }
                }
            }
            Op::Os(c, i, len, err) => {
                let addr = if live.is_empty() {
                    0
                } else {
                    live[i % live.len()]
                };
                Event::Os {
                    call: OsCall::ALL[c],
                    prot: 3,
                    err,
                    arg: i as u32,
                    addr,
                    len,
                    result: addr.wrapping_add(len),
                }
            }
            _ => Event::Free { ptr: 0 },
        };
        out.push(Timed { ts, event });
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]
    #[test]
    fn allocator_like_traces_round_trip(ops in arb_ops(), frame in 1usize..3000) {
        let evs = simulate(&ops);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.zst");
        write(&path, std::slice::from_ref(&evs), frame);
        let got: Vec<Record> = MergedReader::open(&path).unwrap().map(|r| r.unwrap()).collect();
        prop_assert_eq!(&got, &merged(&[evs]));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    /// One definition of live (traces::live): OS calls in a trace change no live-set figure
    /// `inspect` (and the replayer) derive, and `inspect` counts them exactly.
    #[test]
    fn os_calls_change_no_live_accounting(ops in arb_ops()) {
        let with = simulate(&ops);
        let without: Vec<Timed> = with
            .iter()
            .filter(|e| !matches!(e.event, Event::Os { .. }))
            .copied()
            .collect();
        let report = |evs: &[Timed]| {
            let mut i = Inspector::new();
            for e in evs {
                i.feed(&Record { ts: e.ts, thread: 0, event: e.event });
            }
            i.report()
        };
        let (a, b) = (report(&with), report(&without));
        prop_assert_eq!(
            (a.ops, a.peak_live_bytes, a.peak_live_objects, a.final_live_bytes, a.final_live_objects),
            (b.ops, b.peak_live_bytes, b.peak_live_objects, b.final_live_bytes, b.final_live_objects)
        );
        prop_assert_eq!(a.failed_allocations, b.failed_allocations);
        prop_assert_eq!(a.total_requested_bytes, b.total_requested_bytes);
        prop_assert_eq!(&a.inconsistencies, &b.inconsistencies);
        prop_assert_eq!(&a.sizes, &b.sizes);
        for c in OsCall::ALL {
            let mine: Vec<&Timed> = with
                .iter()
                .filter(|e| matches!(e.event, Event::Os { call, .. } if call == c))
                .collect();
            let ok = |e: &&&Timed| matches!(e.event, Event::Os { err: 0, .. });
            let bytes: u64 = mine
                .iter()
                .filter(ok)
                .map(|e| match e.event { Event::Os { len, .. } => len, _ => 0 })
                .sum();
            let got = a.os_calls.calls[c.name()];
            prop_assert_eq!(got.calls, mine.len() as u64);
            prop_assert_eq!(got.failed, mine.iter().filter(|e| !ok(e)).count() as u64);
            prop_assert_eq!(got.bytes, bytes);
        }
        prop_assert!(b.os_calls.calls.values().all(|c| c.calls == 0));
    }
}
