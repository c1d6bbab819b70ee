//! The pools as collection allocators: hashbrown's `HashMap` (its `allocator-api2` feature) and
//! `allocator_api2::vec::Vec` over each process-wide variant and over a `Pool` of one's own,
//! grown, shrunk and checked entry by entry; the pool's statistics show every block came back.

use allocator_api2::vec::Vec as AVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use mempool::{Pool, PoolAlloc, Strategy, Variant, global};

fn exercise<A: allocator_api2::alloc::Allocator + Clone>(a: A) {
    let mut m: HashMap<u64, AVec<u64, A>, DefaultHashBuilder, A> =
        HashMap::with_hasher_in(DefaultHashBuilder::default(), a.clone());
    for i in 0..20_000u64 {
        let mut v = AVec::with_capacity_in((i % 9) as usize, a.clone());
        for j in 0..(i % 40) {
            v.push(i * 1000 + j);
        }
        m.insert(i, v);
    }
    for i in (0..20_000u64).step_by(3) {
        assert!(m.remove(&i).is_some());
    }
    m.shrink_to_fit();
    for i in 0..20_000u64 {
        match m.get(&i) {
            Some(v) => {
                assert_ne!(i % 3, 0);
                assert_eq!(v.len() as u64, i % 40);
                assert!(v.iter().enumerate().all(|(j, x)| *x == i * 1000 + j as u64));
            }
            None => assert_eq!(i % 3, 0),
        }
    }
    // Over-aligned elements.
    #[repr(align(64))]
    #[derive(Clone, Copy)]
    struct Line([u8; 64]);
    let mut lines = AVec::new_in(a.clone());
    for i in 0..5000u32 {
        lines.push(Line([i as u8; 64]));
        assert_eq!(lines.as_ptr() as usize % 64, 0);
    }
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(i, l)| l.0.iter().all(|b| *b == i as u8))
    );
    lines.truncate(10);
    lines.shrink_to_fit();
    assert!(lines.iter().enumerate().all(|(i, l)| l.0[63] == i as u8));
}

#[test]
fn hashmap_and_vec_on_each_process_wide_variant() {
    for v in Variant::ALL {
        std::thread::scope(|s| {
            s.spawn(|| {
                exercise(PoolAlloc(v));
                global::thread_detach();
            });
        });
        let st = global::stats(v);
        assert!(st.allocs > 15_000, "{v:?}: {st:?}");
        assert_eq!(st.live(), 0, "{v:?}: {st:?}");
    }
}

#[test]
fn hashmap_and_vec_on_a_pool_of_each_strategy() {
    for s in Strategy::ALL {
        let pool = Pool::new(s, Variant::Percls);
        exercise(&pool);
        let st = pool.stats();
        assert!(st.allocs > 15_000, "{s:?}: {st:?}");
        assert_eq!(st.live(), 0, "{s:?}: {st:?}");
    }
}
