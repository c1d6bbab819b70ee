//! Writer → readers round trips, including proptest over random event sequences.

use proptest::prelude::*;
use traces::{AlignedFn, Event, Header, MergedReader, Record, Timed, TraceReader, TraceWriter};

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
        1 => (0usize..5, any::<u64>(), size, ptr).prop_map(|(f, align, size, ptr)| Event::Aligned {
            func: AlignedFn::ALL[f],
            align,
            size,
            ptr
        }),
        1 => any::<u32>().prop_map(|os_tid| Event::ThreadStart { os_tid }),
        1 => Just(Event::ThreadExit),
        1 => any::<u32>().prop_map(|child_pid| Event::Fork { child_pid }),
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
