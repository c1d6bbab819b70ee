//! Cross-thread free queues: the depth of each heap's queue (`fancy::queue_depths`, the stats'
//! deepest and non-empty queues) counts exactly the blocks other threads freed and the owner
//! has not taken back. Its own process, one test: the figures are process-wide.

use std::sync::mpsc;

#[test]
fn a_heaps_queue_holds_exactly_the_blocks_other_threads_freed_until_it_takes_them_back() {
    const N: usize = 100;
    let (to_b, from_a) = mpsc::channel::<Vec<usize>>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let b = std::thread::spawn(move || {
        let blocks = from_a.recv().unwrap();
        for p in blocks {
            // SAFETY: medium blocks (4 KiB) thread A allocated and handed over, freed once.
            unsafe { fancy::free(p as *mut u8) };
        }
        fancy::thread_detach();
        done_tx.send(()).unwrap();
    });
    let a = std::thread::spawn(move || {
        let blocks: Vec<usize> = (0..N).map(|_| fancy::malloc(4096) as usize).collect();
        assert!(blocks.iter().all(|&p| p != 0));
        let before = fancy::stats();
        to_b.send(blocks).unwrap();
        done_rx.recv().unwrap();
        // B freed them all into this heap's queue; this thread has not allocated since.
        let s = fancy::stats();
        let mut depths = Vec::new();
        fancy::queue_depths(|h, d| depths.push((h, d)));
        let (seen, s_after_walk) = (depths.clone(), fancy::stats());
        // Take them back: detaching hands the heap over, collecting its queue first.
        fancy::thread_detach();
        (before, s, seen, s_after_walk)
    });
    let (before, s, depths, again) = a.join().unwrap();
    b.join().unwrap();
    assert_eq!(before.cross_thread_queue_max, 0, "{before:?}");
    assert_eq!(s.cross_thread_queue_max, N as u64, "{s:?}");
    assert_eq!(s.cross_thread_queues_nonempty, 1);
    assert_eq!(s.cross_thread_frees_pending, N as u64);
    assert_eq!(
        depths
            .iter()
            .filter(|d| d.1 > 0)
            .map(|d| d.1)
            .collect::<Vec<_>>(),
        vec![N as u64],
        "{depths:?}"
    );
    assert_eq!(depths.len() as u64, s.heaps, "one depth per heap");
    assert_eq!(
        again.cross_thread_queue_max, N as u64,
        "reading changes nothing"
    );
    let end = fancy::stats();
    assert_eq!(end.cross_thread_queue_max, 0, "{end:?}");
    assert_eq!(end.cross_thread_queues_nonempty, 0);
    assert_eq!(end.cross_thread_frees_pending, 0);
    fancy::validate_heap().expect("heap valid");
}
