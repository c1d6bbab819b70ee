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

/// Whether the kernel refuses a mapping larger than the machine can back (overcommit modes 0
/// and 2): fancy maps huge blocks so that its policy applies, as glibc does.
fn kernel_refuses_huge() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() != "1")
}

#[test]
fn impossible_requests_fail_through_the_rust_api_and_global_alloc() {
    use std::alloc::{GlobalAlloc, Layout};
    const TIB: usize = 1 << 40;
    // Above isize::MAX: always refused.
    assert!(fancy::malloc(usize::MAX).is_null());
    assert!(fancy::malloc(isize::MAX as usize + 1).is_null());
    assert!(fancy::calloc(usize::MAX / 2 + 2, 2).is_null());
    assert!(fancy::aligned_alloc(64, usize::MAX - 64).is_null());
    assert!(Vec::<u8>::new().try_reserve(isize::MAX as usize).is_err());
    // 64 TiB and a 1 TiB alignment: refused unless the kernel is set to overcommit anything.
    let expect = kernel_refuses_huge();
    assert_eq!(fancy::malloc(64 * TIB).is_null(), expect);
    assert_eq!(fancy::calloc(64, TIB).is_null(), expect);
    assert_eq!(fancy::aligned_alloc(TIB, 16).is_null(), expect);
    let layout = Layout::from_size_align(64 * TIB, 16).unwrap();
    // SAFETY: a valid layout of nonzero size; a returned block would be freed with it.
    unsafe {
        let p = fancy::Fancy.alloc(layout);
        assert_eq!(p.is_null(), expect);
        if !p.is_null() {
            fancy::Fancy.dealloc(p, layout);
        }
        let q = std::alloc::alloc(Layout::from_size_align(16, TIB).unwrap());
        assert_eq!(q.is_null(), expect);
        // A live block realloc'ed to an impossible size stays as it was.
        let small = Layout::from_size_align(100, 16).unwrap();
        let r = std::alloc::alloc(small);
        r.write_bytes(7, 100);
        assert!(std::alloc::realloc(r, small, isize::MAX as usize - 64).is_null());
        assert!((0..100).all(|i| *r.add(i) == 7));
        std::alloc::dealloc(r, small);
    }
    if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() != "1") {
        assert!(
            expect,
            "glibc's malloc(64 TiB) succeeded under heuristic overcommit"
        );
    }
    let mut v: Vec<u8> = Vec::new();
    assert_eq!(v.try_reserve(64 * TIB).is_err(), expect);
}
