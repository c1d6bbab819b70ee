//! The multithreaded stress with background reclamation on (its own test binary: the option is
//! process-wide), at a 1 ms period so the reclaimer runs through the stress many times. After
//! the threads exit, the heap must be valid and empty, and a reclaim pass must give every cached
//! arena and pooled huge page back to the OS.

mod common;

use common::*;

#[test]
fn fancy_stress_with_reclaimer_running() {
    fancy::configure(fancy::Config {
        reclaim: true,
        reclaim_interval_ms: 1,
        ..fancy::config()
    })
    .unwrap();
    assert!(fancy::reclaimer_running());
    let before = fancy::stats().reclaim_passes;
    stress(&Fancy, 6, 4, 20_000);
    fancy_quiet_and_empty();
    let s = fancy::stats();
    assert!(
        s.reclaim_passes > before + 10,
        "the reclaimer did not run: {s:?}"
    );
    // Everything is free: after a pass and the trim, nothing may stay cached.
    fancy::collect();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fancy::collect();
    let s = fancy::stats();
    assert_eq!(s.arenas_cached, 0, "{s:?}");
    assert_eq!(s.bytes_cached, 0, "{s:?}");
    assert_eq!(
        s.arenas, 0,
        "the main thread's heap kept arenas after collect: {s:?}"
    );
    assert!(s.bytes_returned > 0);
}
