//! fancy as the `#[global_allocator]` of this whole test binary: std collections, strings,
//! threads and the test harness itself all allocate through it.

use std::collections::{BTreeMap, HashMap};

#[global_allocator]
static A: fancy::Fancy = fancy::Fancy;

#[test]
fn collections_and_strings() {
    let mut m: HashMap<String, Vec<u64>> = HashMap::new();
    for i in 0..50_000u64 {
        m.entry(format!("key-{}", i % 5000)).or_default().push(i);
    }
    assert_eq!(m.len(), 5000);
    assert_eq!(m["key-42"].len(), 10);
    let mut b = BTreeMap::new();
    for i in 0..100_000u32 {
        b.insert(i.wrapping_mul(2654435761), i);
    }
    assert_eq!(b.len(), 100_000);
    let big: Vec<u8> = vec![7; 8 << 20];
    assert!(big.iter().all(|&x| x == 7));
    let mut grow = Vec::new();
    for i in 0..1_000_000u32 {
        grow.push(i);
    }
    assert_eq!(grow.iter().map(|&x| x as u64).sum::<u64>(), 499_999_500_000);
}

#[test]
fn over_aligned_types() {
    #[repr(align(4096))]
    struct Page([u8; 4096]);
    #[repr(align(64))]
    struct Line(#[allow(dead_code)] [u8; 64]);
    let v: Vec<Box<Page>> = (0..100).map(|_| Box::new(Page([1; 4096]))).collect();
    for p in &v {
        assert_eq!(&**p as *const Page as usize % 4096, 0);
        assert_eq!(p.0[4095], 1);
    }
    let mut lines: Vec<Line> = Vec::new();
    for _ in 0..10_000 {
        lines.push(Line([0; 64]));
        assert_eq!(lines.as_ptr() as usize % 64, 0);
    }
}

#[test]
fn threads_share_and_drop_across() {
    let (tx, rx) = std::sync::mpsc::channel::<Vec<String>>();
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for i in 0..200 {
                    tx.send((0..50).map(|j| format!("{t}-{i}-{j}")).collect())
                        .unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    let mut n = 0;
    for v in rx {
        n += v.len();
        drop(v); // freed on this thread: cross-thread frees
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(n, 4 * 200 * 50);
    fancy::validate_heap().unwrap();
}
