//! Microbenchmarks of fancy alone: the costs of its own paths, for changes to them to be
//! measured (comparisons between allocators are the lab's job: `scripts/lab`).
//!
//! ```text
//! cargo bench -p fancy --bench micro -- [--reps N] [--only case,case] [--baseline PATH]
//! ```
//! Every repetition runs all cases in a fresh child process (a new heap each time) and prints
//! nanoseconds per operation; the table shows the median over the repetitions. `--baseline
//! PATH` names another build of this benchmark (an earlier commit's
//! `target/release/deps/micro-*`, copied aside): its children and ours alternate (ours,
//! baseline, ours, baseline, …) and the table adds the baseline's median and the ratio
//! new / baseline, so a change to a hot path is judged side by side on the same machine state.
//!
//! The cases (sizes cycle or are drawn from a fixed seed, so every run does the same work):
//! - `small_pair`: malloc + free of one block, sizes cycling through the 16 small classes (the
//!   fast paths);
//! - `small_batch_lifo`: 4096 blocks of 48 B allocated, then freed newest first;
//! - `small_batch_random`: 4096 blocks of random small sizes freed in random order (free lists
//!   spread over many pages);
//! - `small_aligned`: `aligned_alloc(64, 100)` + free;
//! - `medium_pair`: malloc + free, sizes cycling over 513 B – 4 KiB (the front cache);
//! - `medium_batch_random`: 2048 blocks of 513 B – 16 KiB freed in random order (coalescing);
//! - `cross_thread_small`: 4096 small blocks allocated by one thread and freed by another
//!   (ns per free, the foreign and remote lists);
//! - `huge_pair`: malloc + free of 2 MiB (the huge pool);
//! - `realloc_grow`: a block grown from 16 B to 256 KiB in +50 % steps, then freed (ns per
//!   realloc).

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

/// One case: its name and a body that runs `rounds` rounds and returns the operations done.
struct Case {
    name: &'static str,
    rounds: usize,
    body: fn(usize) -> u64,
}

const CASES: &[Case] = &[
    Case {
        name: "small_pair",
        rounds: 2_000_000,
        body: small_pair,
    },
    Case {
        name: "small_batch_lifo",
        rounds: 300,
        body: small_batch_lifo,
    },
    Case {
        name: "small_batch_random",
        rounds: 300,
        body: small_batch_random,
    },
    Case {
        name: "small_aligned",
        rounds: 1_000_000,
        body: small_aligned,
    },
    Case {
        name: "medium_pair",
        rounds: 1_000_000,
        body: medium_pair,
    },
    Case {
        name: "medium_batch_random",
        rounds: 100,
        body: medium_batch_random,
    },
    Case {
        name: "cross_thread_small",
        rounds: 100,
        body: cross_thread_small,
    },
    Case {
        name: "huge_pair",
        rounds: 20_000,
        body: huge_pair,
    },
    Case {
        name: "realloc_grow",
        rounds: 20_000,
        body: realloc_grow,
    },
];

/// Writes the first and last byte, as a program would, so a block is really used.
#[inline(always)]
fn touch(p: *mut u8, n: usize) {
    assert!(!p.is_null(), "fancy returned null for {n} bytes");
    // SAFETY: `p` is a live block of at least `n` ≥ 1 bytes.
    unsafe {
        p.write(1);
        p.add(n - 1).write(2);
    }
}

/// Frees a block this benchmark allocated and has not freed.
#[inline(always)]
fn free(p: *mut u8) {
    // SAFETY: every caller passes a live block from fancy, freed exactly once.
    unsafe { fancy::free(p) }
}

fn small_pair(rounds: usize) -> u64 {
    for i in 0..rounds {
        let n = (i % 16) * 32 + 16;
        let p = black_box(fancy::malloc(n));
        touch(p, n);
        free(p);
    }
    2 * rounds as u64
}

fn small_batch_lifo(rounds: usize) -> u64 {
    let mut v = Vec::with_capacity(4096);
    for _ in 0..rounds {
        for _ in 0..4096 {
            let p = fancy::malloc(48);
            touch(p, 48);
            v.push(p);
        }
        while let Some(p) = v.pop() {
            free(p);
        }
    }
    2 * 4096 * rounds as u64
}

fn small_batch_random(rounds: usize) -> u64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
    let sizes: Vec<usize> = (0..4096).map(|_| rng.random_range(1..=512)).collect();
    let mut order: Vec<usize> = (0..4096).collect();
    order.shuffle(&mut rng);
    let mut v = vec![std::ptr::null_mut(); 4096];
    for _ in 0..rounds {
        for (slot, &n) in v.iter_mut().zip(&sizes) {
            let p = fancy::malloc(n);
            touch(p, n);
            *slot = p;
        }
        for &i in &order {
            free(v[i]);
        }
    }
    2 * 4096 * rounds as u64
}

fn small_aligned(rounds: usize) -> u64 {
    for _ in 0..rounds {
        let p = black_box(fancy::aligned_alloc(64, 100));
        touch(p, 100);
        free(p);
    }
    2 * rounds as u64
}

fn medium_pair(rounds: usize) -> u64 {
    for i in 0..rounds {
        let n = 513 + (i % 8) * 448;
        let p = black_box(fancy::malloc(n));
        touch(p, n);
        free(p);
    }
    2 * rounds as u64
}

fn medium_batch_random(rounds: usize) -> u64 {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
    let sizes: Vec<usize> = (0..2048).map(|_| rng.random_range(513..=16384)).collect();
    let mut order: Vec<usize> = (0..2048).collect();
    order.shuffle(&mut rng);
    let mut v = vec![std::ptr::null_mut(); 2048];
    for _ in 0..rounds {
        for (slot, &n) in v.iter_mut().zip(&sizes) {
            let p = fancy::malloc(n);
            touch(p, n);
            *slot = p;
        }
        for &i in &order {
            free(v[i]);
        }
    }
    2 * 2048 * rounds as u64
}

/// The figure is the time of the frees alone, on the freeing thread.
fn cross_thread_small(rounds: usize) -> u64 {
    use std::sync::mpsc;
    let (to_freer, batches) = mpsc::sync_channel::<Vec<usize>>(1);
    let (done_tx, done) = mpsc::channel::<f64>();
    let freer = std::thread::spawn(move || {
        for batch in batches {
            let t = Instant::now();
            for &p in &batch {
                free(p as *mut u8);
            }
            done_tx.send(t.elapsed().as_secs_f64()).unwrap();
        }
    });
    let mut secs = 0.0;
    for r in 0..rounds {
        let batch: Vec<usize> = (0..4096)
            .map(|i| {
                let n = 16 + ((i + r) % 8) * 16;
                let p = fancy::malloc(n);
                touch(p, n);
                p as usize
            })
            .collect();
        to_freer.send(batch).unwrap();
        secs += done.recv().unwrap();
    }
    drop(to_freer);
    freer.join().unwrap();
    // Reported as operations such that ns/op = seconds of frees / frees.
    OVERRIDE_SECS.with(|s| s.set(Some(secs)));
    4096 * rounds as u64
}

thread_local! {
    /// A case that times only part of its work stores the seconds to report here.
    static OVERRIDE_SECS: std::cell::Cell<Option<f64>> = const { std::cell::Cell::new(None) };
}

fn huge_pair(rounds: usize) -> u64 {
    for _ in 0..rounds {
        let p = black_box(fancy::malloc(2 << 20));
        touch(p, 2 << 20);
        free(p);
    }
    2 * rounds as u64
}

fn realloc_grow(rounds: usize) -> u64 {
    let mut ops = 0;
    for _ in 0..rounds {
        let mut n = 16;
        let mut p = fancy::malloc(n);
        touch(p, n);
        while n < 256 * 1024 {
            n += n / 2;
            // SAFETY: `p` is live; on success it is replaced by the returned block.
            p = unsafe { fancy::realloc(p, n) };
            touch(p, n);
            ops += 1;
        }
        free(p);
    }
    ops
}

/// Runs every selected case once (after a short warm-up round) and prints `name<TAB>ns/op`.
fn child(only: &[String]) {
    for c in CASES {
        if !only.is_empty() && !only.iter().any(|o| o == c.name) {
            continue;
        }
        (c.body)((c.rounds / 20).max(1));
        OVERRIDE_SECS.with(|s| s.set(None));
        let t = Instant::now();
        let ops = (c.body)(c.rounds);
        let secs = OVERRIDE_SECS
            .with(|s| s.take())
            .unwrap_or_else(|| t.elapsed().as_secs_f64());
        println!("{}\t{:.2}", c.name, secs * 1e9 / ops as f64);
    }
    if let Err(e) = fancy::validate_heap() {
        eprintln!("micro: heap invalid after the cases: {e}");
        std::process::exit(1);
    }
}

/// Runs one child of `exe` and returns its (case, ns/op) lines.
fn run_child(exe: &std::path::Path, only: &[String]) -> Vec<(String, f64)> {
    let mut cmd = Command::new(exe);
    cmd.arg("--child");
    if !only.is_empty() {
        cmd.arg("--only").arg(only.join(","));
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("micro: cannot run {}: {e}", exe.display()));
    if !out.status.success() {
        eprintln!(
            "micro: {} failed ({}): {}",
            exe.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        std::process::exit(1);
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, ns) = l.split_once('\t')?;
            Some((name.to_string(), ns.parse().ok()?))
        })
        .collect()
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("micro: {msg}");
    eprintln!("usage: micro [--reps N] [--only case,case] [--baseline PATH]");
    std::process::exit(2);
}

fn main() {
    let mut reps = 9usize;
    let mut only: Vec<String> = Vec::new();
    let mut baseline: Option<std::path::PathBuf> = None;
    let mut is_child = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--child" => is_child = true,
            "--bench" => {} // passed by `cargo bench`
            "--reps" => {
                reps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--reps needs a positive number"))
            }
            "--only" => {
                let v = args
                    .next()
                    .unwrap_or_else(|| usage("--only needs case names"));
                only = v.split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|o| !CASES.iter().any(|c| c.name == *o)) {
                    usage(&format!("unknown case `{bad}`"));
                }
            }
            "--baseline" => {
                let p = std::path::PathBuf::from(
                    args.next()
                        .unwrap_or_else(|| usage("--baseline needs a path")),
                );
                if !p.is_file() {
                    usage(&format!("--baseline {}: no such file", p.display()));
                }
                baseline = Some(p);
            }
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    if is_child {
        child(&only);
        return;
    }
    let me = std::env::current_exe().expect("micro: cannot find its own executable");
    let names: Vec<&str> = CASES
        .iter()
        .map(|c| c.name)
        .filter(|n| only.is_empty() || only.iter().any(|o| o == n))
        .collect();
    let mut ours: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    let mut base: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    for r in 0..reps {
        eprint!("\rmicro: repetition {}/{reps}", r + 1);
        for (which, exe) in [(0, Some(&me)), (1, baseline.as_ref())] {
            let Some(exe) = exe else { continue };
            for (name, ns) in run_child(exe, &only) {
                if let Some(i) = names.iter().position(|n| *n == name) {
                    let dst = if which == 0 { &mut ours } else { &mut base };
                    dst[i].push(ns);
                }
            }
        }
    }
    eprintln!();
    match &baseline {
        None => {
            println!("| case | ns/op (median of {reps}) |");
            println!("|---|---|");
            for (i, n) in names.iter().enumerate() {
                println!("| {n} | {:.2} |", median(&mut ours[i]));
            }
        }
        Some(b) => {
            println!("baseline: {}", b.display());
            println!("| case | this build ns/op | baseline ns/op | this / baseline |");
            println!("|---|---|---|---|");
            for (i, n) in names.iter().enumerate() {
                let (o, b) = (median(&mut ours[i]), median(&mut base[i]));
                println!("| {n} | {o:.2} | {b:.2} | {:.3} |", o / b);
            }
        }
    }
}
