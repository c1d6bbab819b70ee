//! One definition of "live": `inspect` and the replay's preprocessing both go through
//! `traces::live`, so on any trace — including the events a replayer has to repair (double and
//! unknown frees, `realloc(NULL, 0)`, failed allocations, inversions, frees from other threads)
//! — they count the same failures and inconsistencies and find the same live bytes and objects
//! at the peak and at the end. Random traces are written to a real file and read back by the
//! real reader, as `inspect` and `replay` read them.

use proptest::prelude::*;
use replayer::prep::{PrepOptions, preprocess};
use traces::inspect::Inspector;
use traces::{AlignedFn, Event, Header, MergedReader, TraceWriter};

/// A few addresses only, so that reuse, double frees and inversions are frequent; 0 is NULL.
fn addr(a: u8) -> u64 {
    if a == 0 {
        0
    } else {
        0x5555_0000 + a as u64 * 0x40
    }
}

/// One random event: (thread, kind, address, second address, size).
fn event((kind, a, b, size): (u8, u8, u8, u64)) -> Event {
    let (p, q) = (addr(a), addr(b));
    match kind {
        0..=2 => Event::Malloc { size, ptr: p },
        3 => Event::Calloc {
            nmemb: size % 7,
            size: size / 3,
            ptr: p,
        },
        4 => Event::Aligned {
            func: AlignedFn::ALL[(size % 5) as usize],
            align: 16 << (size % 4),
            size,
            ptr: p,
        },
        // realloc(NULL, 0), realloc(p, 0), in place, moves, failures: all reachable.
        5 | 6 => Event::Realloc {
            old_ptr: p,
            size: if kind == 6 { 0 } else { size },
            ptr: q,
        },
        7 => Event::Realloc {
            old_ptr: p,
            size,
            ptr: p,
        },
        8..=10 => Event::Free { ptr: p },
        11 => Event::ThreadStart {
            os_tid: 100 + a as u32,
        },
        _ => Event::ThreadExit,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn inspect_and_preprocessing_agree(
        events in prop::collection::vec((0u32..3, (0u8..13, 0u8..12, 0u8..12, 0u64..3000)), 1..400),
        threads in prop::option::of(1u32..3),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.zst");
        let mut w = TraceWriter::create(&path, &Header::for_this_process("live-test"))
            .unwrap()
            .with_frame_events(37);
        for (i, &(thread, e)) in events.iter().enumerate() {
            // Two events per timestamp on different threads: ties are broken by thread id.
            w.append(thread, i as u64 / 2, event(e)).unwrap();
        }
        w.finish(0).unwrap();

        let mut insp = Inspector::new();
        for r in MergedReader::open(&path).unwrap() {
            insp.feed(&r.unwrap());
        }
        let rep = insp.report();
        let opts = PrepOptions { threads, ..PrepOptions::default() };
        let plan = preprocess(MergedReader::open(&path).unwrap(), &opts, &mut |_| {}).unwrap();
        let m = &plan.meta;
        prop_assert_eq!(m.events, rep.events);
        prop_assert_eq!(m.failed_in_trace, rep.failed_allocations);
        prop_assert_eq!(m.double_free, rep.inconsistencies.double_free);
        prop_assert_eq!(m.free_of_unknown, rep.inconsistencies.free_of_unknown);
        prop_assert_eq!(m.inversions, rep.inconsistencies.alloc_of_live_address);
        prop_assert_eq!(m.peak_live_bytes, rep.peak_live_bytes);
        prop_assert_eq!(m.peak_live_objects, rep.peak_live_objects);
        prop_assert_eq!(m.final_live_bytes, rep.final_live_bytes);
        // The plan's ops change live bytes by exactly what inspect saw: the peak is where the
        // plan says it is.
        let (t, at) = m.peak_at.unwrap_or((0, 0));
        if rep.peak_live_bytes > 0 {
            prop_assert!(at > 0 && (t as usize) < plan.arrays.len());
        }
    }
}
