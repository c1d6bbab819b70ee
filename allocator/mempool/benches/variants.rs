//! The three variants side by side on the process-wide pools (the paths the replay adapters and
//! the preload library use), with the lock counts that explain the figures.
//!
//! ```text
//! cargo bench -p mempool --bench variants -- [--reps N] [--threads "1 2"] [--only case,case]
//!                                            [--baseline PATH]
//! ```
//! Every repetition runs each variant in a fresh child process (a new pool, so the first
//! replenishments are in every figure), variants interleaved (baseline, sharded, percls,
//! baseline, …); the table shows the median million operations per second over the
//! repetitions, percls ÷ sharded and percls ÷ baseline, and the lock counts of the median run
//! per million operations: class-lock acquisitions, how many of them found the lock taken,
//! global-lock acquisitions, how many found it taken, and class replenishments (absolute).
//! `--baseline PATH` names another build of this benchmark (an earlier commit's
//! `target/release/deps/variants-*`, copied aside): each of its children runs right after the
//! same child of ours, and the table adds new ÷ baseline per variant.
//!
//! Threads above the machine's cores are oversubscribed: the table says so.
//!
//! The cases (per thread, a seeded generator, so every run does the same work):
//! - `rl_small`: synth's rl_small — live set capped at 4096, each op allocates with probability
//!   0.65 else frees a random live block; sizes 16–512 B in power-of-two buckets each 0.7× as
//!   likely as the one below (≈ 91 % go through the thread caches, the rest through the 512 B
//!   class's lock). 4M ops in all.
//! - `rl_medium`: synth's rl_medium — live set 2048, probability 0.55, 128–4096 B uniform (≈ 97 %
//!   through a segregated class's lock on every op). 4M ops in all.
//! - `grow`: each thread allocates 40 000 blocks of 257–4096 B and then frees them all: the live
//!   set only grows, so classes are replenished all the time — the path the variants differ in.

use std::hint::black_box;
use std::process::Command;
use std::sync::Barrier;
use std::time::Instant;

use mempool::{LockCounts, Variant, global};

const CASES: [&str; 3] = ["rl_small", "rl_medium", "grow"];

/// splitmix64: a seeded stream, the same in every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

fn alloc(v: Variant, n: usize) -> *mut u8 {
    let p = global::malloc(v, n);
    assert!(!p.is_null(), "mempool {} returned null for {n} B", v.name());
    // SAFETY: `p` is a live block of at least `n` ≥ 1 bytes.
    unsafe { p.write(1) };
    black_box(p)
}

fn free(v: Variant, p: *mut u8) {
    // SAFETY: every caller passes a live block of variant `v`, freed once.
    unsafe { global::free(v, p) }
}

/// rl_small's sizes: buckets [16,32], (32,64], …, (256,512], weights 1, 0.7, 0.49, …
fn rl_small_size(r: &mut Rng) -> usize {
    const W: [f64; 5] = [1.0, 0.7, 0.49, 0.343, 0.2401];
    let total: f64 = W.iter().sum();
    let mut x = (r.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
    let (mut lo, mut hi) = (16u64, 32u64);
    for w in W {
        if x < w {
            break;
        }
        x -= w;
        lo = hi + 1;
        hi *= 2;
    }
    (lo + r.below(hi - lo + 1)) as usize
}

/// One thread's share of a churn case: returns the ops done.
fn churn(
    v: Variant,
    seed: u64,
    ops: u64,
    cap: usize,
    p_alloc: f64,
    size: fn(&mut Rng) -> usize,
) -> u64 {
    let mut r = Rng(seed);
    let mut live: Vec<*mut u8> = Vec::with_capacity(cap);
    let p = (p_alloc * u64::MAX as f64) as u64;
    for _ in 0..ops {
        let x = r.next();
        if live.is_empty() || (x < p && live.len() < cap) {
            live.push(alloc(v, size(&mut r)));
        } else {
            let i = r.below(live.len() as u64) as usize;
            free(v, live.swap_remove(i));
        }
    }
    let n = live.len() as u64;
    for q in live {
        free(v, q);
    }
    ops + n
}

fn run_case(case: &str, v: Variant, seed: u64, threads: u64) -> u64 {
    match case {
        "rl_small" => churn(v, seed, 4_000_000 / threads, 4096, 0.65, rl_small_size),
        "rl_medium" => churn(v, seed, 4_000_000 / threads, 2048, 0.55, |r| {
            128 + r.below(4096 - 128 + 1) as usize
        }),
        "grow" => {
            let mut r = Rng(seed);
            let blocks: Vec<*mut u8> = (0..40_000)
                .map(|_| alloc(v, 257 + r.below(4096 - 257 + 1) as usize))
                .collect();
            let n = 2 * blocks.len() as u64;
            for p in blocks {
                free(v, p);
            }
            n
        }
        _ => unreachable!("case names are checked before a child starts"),
    }
}

/// In a child: runs `case` on `threads` threads of variant `v` from a barrier; prints
/// `ops ns class_locks class_contended global_locks global_contended replenishes`.
fn child(case: &str, v: Variant, threads: u64) {
    let barrier = Barrier::new(threads as usize + 1);
    let (ops, ns) = std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let n = run_case(case, v, 1 + t, threads);
                    global::thread_detach();
                    n
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let ops: u64 = hs.into_iter().map(|h| h.join().unwrap()).sum();
        (ops, t0.elapsed().as_nanos() as u64)
    });
    let c = global::lock_counts(v);
    println!(
        "{ops} {ns} {} {} {} {} {}",
        c.class_locks, c.class_contended, c.global_locks, c.global_contended, c.replenishes
    );
}

struct Sample {
    mops: f64,
    ops: u64,
    counts: LockCounts,
}

fn spawn(exe: &str, case: &str, v: Variant, threads: u64) -> Sample {
    let o = Command::new(exe)
        .args(["--child", case, v.name(), &threads.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("could not run {exe}: {e}"));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{exe} --child {case} {} {threads} failed: {:?}\n{out}{}",
        v.name(),
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let f: Vec<u64> = out
        .split_whitespace()
        .map(|x| {
            x.parse()
                .unwrap_or_else(|_| panic!("bad child output {out:?}"))
        })
        .collect();
    assert_eq!(f.len(), 7, "bad child output {out:?}");
    Sample {
        mops: f[0] as f64 / f[1] as f64 * 1e3,
        ops: f[0],
        counts: LockCounts {
            class_locks: f[2],
            class_contended: f[3],
            global_locks: f[4],
            global_contended: f[5],
            replenishes: f[6],
        },
    }
}

/// The median sample (by throughput; the upper one of an even count) and the spread (max −
/// min over median, %).
fn median(s: &mut [Sample]) -> (&Sample, f64) {
    s.sort_by(|a, b| a.mops.total_cmp(&b.mops));
    let m = &s[s.len() / 2];
    let spread = (s[s.len() - 1].mops - s[0].mops) / m.mops * 100.0;
    (m, spread)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        let v = Variant::from_name(&args[3]).expect("a variant name");
        child(&args[2], v, args[4].parse().expect("a thread count"));
        return;
    }
    let mut reps = 5usize;
    let mut threads: Vec<u64> = vec![1, 2];
    let mut only: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    let mut baseline: Option<String> = None;
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut val = || {
            it.next()
                .unwrap_or_else(|| {
                    eprintln!("variants: {a} needs a value");
                    std::process::exit(2)
                })
                .clone()
        };
        match a.as_str() {
            "--reps" => {
                reps = val().parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                    eprintln!("variants: --reps needs a whole number ≥ 1");
                    std::process::exit(2)
                })
            }
            "--threads" => {
                threads = val()
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
                            eprintln!(
                                "variants: --threads {s}: give thread counts ≥ 1, as in \"1 2\""
                            );
                            std::process::exit(2)
                        })
                    })
                    .collect()
            }
            "--only" => {
                only = val().split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|c| !CASES.contains(&c.as_str())) {
                    eprintln!(
                        "variants: --only {bad}: no such case (cases: {})",
                        CASES.join(", ")
                    );
                    std::process::exit(2)
                }
            }
            "--baseline" => {
                let p = val();
                if !std::path::Path::new(&p).is_file() {
                    eprintln!(
                        "variants: --baseline {p}: no such file (copy an earlier build of this bench there)"
                    );
                    std::process::exit(2)
                }
                baseline = Some(p)
            }
            "--bench" => {}
            _ => {
                eprintln!(
                    "variants: unknown argument {a} (see the comment at the top of benches/variants.rs)"
                );
                std::process::exit(2)
            }
        }
    }
    let exe = std::env::current_exe()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    println!(
        "mempool variants: {reps} interleaved repetitions, each variant in a fresh child; {cpus} CPUs{}",
        if baseline.is_some() {
            "; baseline build alternating"
        } else {
            ""
        }
    );
    println!(
        "{:<10} {:>3}  {:>9} {:>6}  {:>9} {:>6}  {:>9} {:>6}  {:>7} {:>7}   (M ops/s, median; ±: max−min over median)",
        "case", "thr", "baseline", "±%", "sharded", "±%", "percls", "±%", "pc÷sh", "pc÷bl"
    );
    for case in &only {
        for &t in &threads {
            let mut ours: Vec<Vec<Sample>> = (0..3).map(|_| Vec::new()).collect();
            let mut theirs: Vec<Vec<Sample>> = (0..3).map(|_| Vec::new()).collect();
            for _ in 0..reps {
                for (i, v) in Variant::ALL.into_iter().enumerate() {
                    ours[i].push(spawn(&exe, case, v, t));
                    if let Some(b) = &baseline {
                        theirs[i].push(spawn(b, case, v, t));
                    }
                }
            }
            let m: Vec<(f64, f64, LockCounts, u64)> = ours
                .iter_mut()
                .map(|s| {
                    let (x, sp) = median(s);
                    (x.mops, sp, x.counts, x.ops)
                })
                .collect();
            let over = if t > cpus { " (oversubscribed)" } else { "" };
            println!(
                "{:<10} {:>3}  {:>9.2} {:>6.1}  {:>9.2} {:>6.1}  {:>9.2} {:>6.1}  {:>7.2} {:>7.2}{over}",
                case,
                t,
                m[0].0,
                m[0].1,
                m[1].0,
                m[1].1,
                m[2].0,
                m[2].1,
                m[2].0 / m[1].0,
                m[2].0 / m[0].0,
            );
            for (i, v) in Variant::ALL.into_iter().enumerate() {
                let (_, _, c, ops) = m[i];
                let per = |n: u64| n as f64 / ops as f64 * 1e6;
                println!(
                    "{:>14} counts per M ops: class locks {:.0}, found taken {:.0}; global locks {:.0}, found taken {:.1}; replenishes {}",
                    v.name(),
                    per(c.class_locks),
                    per(c.class_contended),
                    per(c.global_locks),
                    per(c.global_contended),
                    c.replenishes
                );
            }
            if baseline.is_some() {
                let r: Vec<String> = Variant::ALL
                    .into_iter()
                    .zip(theirs.iter_mut().zip(&m))
                    .map(|(v, (s, mine))| {
                        let (b, sp) = median(s);
                        format!(
                            "{} {:.2} (±{sp:.1} %) → new÷baseline {:.3}",
                            v.name(),
                            b.mops,
                            mine.0 / b.mops
                        )
                    })
                    .collect();
                println!("{:>14} baseline build: {}{over}", "", r.join("; "));
            }
        }
    }
}
