//! The pool as a collections allocator (the counterpart of the original pool's STL allocator):
//! a word count in a hashbrown `HashMap` whose table and `allocator_api2` `Vec` values live in
//! the process-wide `percls` pool, and the same in a `Pool` of one's own inside a scope.
//!
//! ```text
//! cargo run -p mempool --example collections
//! ```
//!
//! It prints the most frequent words and the pools' statistics; `cargo test -p mempool
//! --example collections` runs it and checks the counts and that every block came back.

use allocator_api2::vec::Vec as AVec;
use hashbrown::{DefaultHashBuilder, HashMap};
use mempool::{Pool, PoolAlloc, Stats, Strategy, Variant, global};

const TEXT: &str = "the pool hands out blocks and the blocks go back to the pool \
                    a scope frees what was allocated inside the scope";

/// Word → positions where it occurs, every allocation made through `a`.
fn index<A: allocator_api2::alloc::Allocator + Clone>(
    a: A,
    text: &str,
) -> HashMap<&str, AVec<usize, A>, DefaultHashBuilder, A> {
    let mut m = HashMap::with_hasher_in(DefaultHashBuilder::default(), a.clone());
    for (i, w) in text.split_whitespace().enumerate() {
        m.entry(w)
            .or_insert_with(|| AVec::new_in(a.clone()))
            .push(i);
    }
    m
}

/// The words occurring more than once, most frequent first (ties by word).
fn top<A: allocator_api2::alloc::Allocator>(
    m: &HashMap<&str, AVec<usize, A>, DefaultHashBuilder, A>,
) -> Vec<(String, usize)> {
    let mut v: Vec<(String, usize)> = m
        .iter()
        .filter(|(_, p)| p.len() > 1)
        .map(|(w, p)| (w.to_string(), p.len()))
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Runs the example and returns, for the test, the top words, the process-wide pool's
/// statistics and the own pool's statistics after its scope ended.
fn run() -> (Vec<(String, usize)>, Stats, Stats) {
    // The process-wide percls pool, on a thread that empties its caches when done.
    let words = std::thread::scope(|s| {
        s.spawn(|| {
            let words = top(&index(PoolAlloc(Variant::Percls), TEXT));
            global::thread_detach();
            words
        })
        .join()
        .unwrap()
    });
    let shared = global::stats(Variant::Percls);
    println!("most frequent: {words:?}");
    println!(
        "process-wide percls pool: {} allocations, {} frees, {} B requested",
        shared.allocs, shared.frees, shared.bytes_requested
    );

    // A pool of one's own: everything allocated inside the scope is freed by end_scope, even
    // what the map still holds — so the map is forgotten, not dropped, before the scope ends.
    let long = TEXT.repeat(50);
    let pool = Pool::new(Strategy::Segregated, Variant::Percls);
    pool.begin_scope();
    let m = index(&pool, &long);
    let n = m.len();
    std::mem::forget(m);
    let freed = pool.end_scope().unwrap_or(0);
    let own = pool.stats();
    println!(
        "own pool: {n} words indexed, end_scope freed {freed} blocks; {} allocations, {} frees",
        own.allocs, own.frees
    );
    (words, shared, own)
}

fn main() {
    run();
}

#[test]
fn the_example_counts_words_and_gives_every_block_back() {
    let (words, shared, own) = run();
    // The same count with std's HashMap and Vec on the global allocator.
    let mut m: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for w in TEXT.split_whitespace() {
        *m.entry(w).or_default() += 1;
    }
    let mut want: Vec<(String, usize)> = m
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|(w, n)| (w.to_string(), n))
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    assert_eq!(words, want);
    assert_eq!(words[0], ("the".to_string(), 4));
    assert!(shared.allocs >= 20, "{shared:?}");
    assert_eq!(shared.live(), 0, "{shared:?}");
    assert!(own.allocs >= 20, "{own:?}");
    assert_eq!(own.live(), 0, "end_scope freed what the map held: {own:?}");
}
