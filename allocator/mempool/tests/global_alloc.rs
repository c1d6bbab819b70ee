//! A whole test binary (the harness, its threads, std's collections) running on the percls
//! pool as Rust's global allocator.

use std::collections::{BTreeMap, HashMap};

use mempool::{PoolAlloc, Variant, global};

#[global_allocator]
static A: PoolAlloc = PoolAlloc(Variant::Percls);

#[test]
fn std_collections_and_threads_run_on_the_pool() {
    let before = global::stats(Variant::Percls).allocs;
    let hs: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let mut h = HashMap::new();
                let mut b = BTreeMap::new();
                for i in 0..50_000u64 {
                    h.insert(i, format!("{t}-{i}"));
                    b.insert(
                        i.wrapping_mul(2_654_435_761) % 100_003,
                        vec![i; (i % 17) as usize],
                    );
                    if i % 4 == 0 {
                        h.remove(&(i / 2));
                    }
                }
                let sum: usize = h.values().map(String::len).sum::<usize>()
                    + b.values().map(Vec::len).sum::<usize>();
                (h.len(), sum)
            })
        })
        .collect();
    let out: Vec<_> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(out.windows(2).all(|w| w[0].0 == w[1].0));
    let p = Box::into_raw(Box::new([7u8; 100]));
    assert!(mempool::owns(p.cast()));
    // SAFETY: from Box::into_raw just above.
    drop(unsafe { Box::from_raw(p) });
    assert!(global::stats(Variant::Percls).allocs > before + 200_000);
}
