//! Standalone benchmark: fancy against glibc, jemalloc and mimalloc on synthetic workloads (the
//! patterns of the lab's seeds) at 1 and 2 threads, plus a real program (python3 with
//! PYTHONMALLOC=malloc) under LD_PRELOAD of each allocator. Until the replayer exists this is
//! the published comparison; afterwards `replay --alloc …` on synth traces takes over.
//!
//! Every run is its own child process (RSS belongs to it alone); allocators are interleaved
//! (a b c … a b c …) over the repetitions and medians are reported.
//!
//! ```text
//! cargo build --release -p fancy-preload            # for the python3 row
//! cargo bench -p allocator --bench compare -- [--reps N] [--scale X] [--only w1,w2] [--threads 1,2]
//!                                             [--allocs glibc,fancy,…] [--no-python]
//! ```
//! Per run: throughput (ops/s, untimed pass), p99 latency (timed pass: every op timed with the
//! TSC-backed `Instant`), peak heap RSS (VmHWM after clearing it, minus the RSS before the
//! first op), retained heap RSS right after the last free and 300 ms later.

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

// ------------------------------------------------------------------------------------------
// Allocators under test: one call each way, never inlined, so every allocator pays one call.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum A {
    Glibc,
    Jemalloc,
    Mimalloc,
    Fancy,
    FancyReclaim,
}
const ALLOCS: [A; 5] = [
    A::Glibc,
    A::Jemalloc,
    A::Mimalloc,
    A::Fancy,
    A::FancyReclaim,
];

impl A {
    fn name(self) -> &'static str {
        match self {
            A::Glibc => "glibc",
            A::Jemalloc => "jemalloc",
            A::Mimalloc => "mimalloc",
            A::Fancy => "fancy",
            A::FancyReclaim => "fancy-reclaim",
        }
    }
    fn parse(s: &str) -> A {
        *ALLOCS
            .iter()
            .find(|a| a.name() == s)
            .expect("unknown allocator")
    }
}

trait Alloc: Sync + Send + Copy + 'static {
    fn malloc(self, n: usize) -> *mut u8;
    fn aligned(self, align: usize, n: usize) -> *mut u8;
    fn free(self, p: *mut u8);
}

#[derive(Clone, Copy)]
struct Glibc;
#[derive(Clone, Copy)]
struct Je;
#[derive(Clone, Copy)]
struct Mi;
#[derive(Clone, Copy)]
struct Fy;

impl Alloc for Glibc {
    #[inline(never)]
    fn malloc(self, n: usize) -> *mut u8 {
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        unsafe { libc::malloc(n).cast() }
    }
    #[inline(never)]
    fn aligned(self, align: usize, n: usize) -> *mut u8 {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { libc::aligned_alloc(align, n).cast() }
    }
    #[inline(never)]
    fn free(self, p: *mut u8) {
        // SAFETY: plain libc allocation calls on pointers this test got from the same allocator.
        unsafe { libc::free(p.cast()) }
    }
}
impl Alloc for Je {
    #[inline(never)]
    fn malloc(self, n: usize) -> *mut u8 {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { tikv_jemalloc_sys::malloc(n).cast() }
    }
    #[inline(never)]
    fn aligned(self, align: usize, n: usize) -> *mut u8 {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { tikv_jemalloc_sys::aligned_alloc(align, n).cast() }
    }
    #[inline(never)]
    fn free(self, p: *mut u8) {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { tikv_jemalloc_sys::free(p.cast()) }
    }
}
impl Alloc for Mi {
    #[inline(never)]
    fn malloc(self, n: usize) -> *mut u8 {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { libmimalloc_sys::mi_malloc(n).cast() }
    }
    #[inline(never)]
    fn aligned(self, align: usize, n: usize) -> *mut u8 {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { libmimalloc_sys::mi_malloc_aligned(n, align).cast() }
    }
    #[inline(never)]
    fn free(self, p: *mut u8) {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { libmimalloc_sys::mi_free(p.cast()) }
    }
}
impl Alloc for Fy {
    #[inline(never)]
    fn malloc(self, n: usize) -> *mut u8 {
        fancy::malloc(n)
    }
    #[inline(never)]
    fn aligned(self, align: usize, n: usize) -> *mut u8 {
        fancy::aligned_alloc(align, n)
    }
    #[inline(never)]
    fn free(self, p: *mut u8) {
        // SAFETY: the bench only passes pointers it got from the same allocator, each freed once.
        unsafe { fancy::free(p) }
    }
}

// ------------------------------------------------------------------------------------------
// Workloads: per-thread op arrays generated before timing.

#[derive(Clone, Copy)]
struct Op {
    /// Bit 31: free; else alloc. Low bits: slot.
    slot: u32,
    size: u32,
}
const FREE: u32 = 1 << 31;

struct Plan {
    name: &'static str,
    ops: Vec<Vec<Op>>,
    slots: usize,
    align: usize,
    /// Producer/consumer: thread 0 allocates, thread 1 frees (ops ignored).
    xthread: usize,
}

fn gen_slots(
    r: &mut Xoshiro256PlusPlus,
    n: usize,
    slots: usize,
    p_alloc: f64,
    size: &mut dyn FnMut(&mut Xoshiro256PlusPlus) -> u32,
) -> Vec<Op> {
    let mut free: Vec<u32> = (0..slots as u32).rev().collect();
    let mut live: Vec<u32> = Vec::new();
    let mut ops = Vec::with_capacity(n + slots);
    for _ in 0..n {
        let alloc = !free.is_empty() && (live.is_empty() || r.random_bool(p_alloc));
        if alloc {
            let s = free.pop().unwrap();
            live.push(s);
            ops.push(Op {
                slot: s,
                size: size(r),
            });
        } else {
            let i = r.random_range(0..live.len());
            let s = live.swap_remove(i);
            free.push(s);
            ops.push(Op {
                slot: s | FREE,
                size: 0,
            });
        }
    }
    for s in live {
        ops.push(Op {
            slot: s | FREE,
            size: 0,
        });
    }
    ops
}

fn weighted_small(r: &mut Xoshiro256PlusPlus) -> u32 {
    match r.random_range(0..10) {
        0..=4 => r.random_range(16..=64),
        5..=7 => r.random_range(65..=256),
        _ => r.random_range(257..=512),
    }
}

fn plan(name: &str, threads: usize, scale: f64) -> Plan {
    let n = |x: f64| (x * scale) as usize;
    let mut ops = Vec::new();
    let (mut slots, mut align, mut xthread) = (0, 16, 0);
    for t in 0..threads {
        let mut r = Xoshiro256PlusPlus::seed_from_u64(0xA110C + t as u64);
        let v = match name {
            "rl_small" => {
                slots = 20_000;
                gen_slots(&mut r, n(3e6), slots, 0.65, &mut |r| weighted_small(r))
            }
            "rl_medium" => {
                slots = 20_000;
                gen_slots(&mut r, n(2e6), slots, 0.65, &mut |r| {
                    r.random_range(128..=4096)
                })
            }
            "fragmentation_mix" => {
                slots = 50_000;
                gen_slots(&mut r, n(2e6), slots, 0.55, &mut |r| {
                    r.random_range(16..=4096)
                })
            }
            "alignment64" => {
                slots = 20_000;
                align = 64;
                gen_slots(&mut r, n(2e6), slots, 0.6, &mut |r| {
                    r.random_range(64..=1024)
                })
            }
            "ring_buffer" => {
                // The FancyAllocator seed: ring of 100 000 slots per thread; 60 % 16–256 B,
                // 30 % 512–2048 B, 10 % 4–32 KiB; the slot's old block freed first.
                slots = 100_000;
                let mut v = Vec::new();
                let mut full = vec![false; slots];
                for i in 0..n(1.5e6) {
                    let s = (i % slots) as u32;
                    if full[s as usize] {
                        v.push(Op {
                            slot: s | FREE,
                            size: 0,
                        });
                    }
                    let size = match r.random_range(0..10) {
                        0..=5 => r.random_range(16..=256),
                        6..=8 => r.random_range(512..=2048),
                        _ => r.random_range(4096..=32768),
                    };
                    v.push(Op { slot: s, size });
                    full[s as usize] = true;
                }
                for s in 0..slots {
                    if full[s] {
                        v.push(Op {
                            slot: s as u32 | FREE,
                            size: 0,
                        });
                    }
                }
                v
            }
            "malloc_large" => {
                // 5–25 MiB blocks, at most 20 live (mimalloc-bench's malloc-large).
                slots = 20;
                let mut v = Vec::new();
                let mut full = [false; 20];
                for _ in 0..n(3000.0) {
                    let s = r.random_range(0..20u32);
                    if full[s as usize] {
                        v.push(Op {
                            slot: s | FREE,
                            size: 0,
                        });
                    }
                    v.push(Op {
                        slot: s,
                        size: r.random_range(5 << 20..=25 << 20),
                    });
                    full[s as usize] = true;
                }
                for s in 0..20 {
                    if full[s] {
                        v.push(Op {
                            slot: s as u32 | FREE,
                            size: 0,
                        });
                    }
                }
                v
            }
            "xmalloc" => {
                // Producer/consumer (xmalloc-test): thread 0 allocates, thread 1 frees.
                xthread = n(4e6);
                let v: Vec<Op> = (0..xthread)
                    .map(|_| Op {
                        slot: 0,
                        size: weighted_small(&mut r),
                    })
                    .collect();
                ops.push(v);
                break;
            }
            _ => panic!("unknown workload {name}"),
        };
        ops.push(v);
    }
    Plan {
        name: leak(name),
        ops,
        slots,
        align,
        xthread,
    }
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

const WORKLOADS: [&str; 7] = [
    "rl_small",
    "rl_medium",
    "fragmentation_mix",
    "alignment64",
    "ring_buffer",
    "xmalloc",
    "malloc_large",
];

#[inline(always)]
fn touch(p: *mut u8, n: usize) {
    // One byte per page (the replayer's default touch policy), so RSS reflects use.
    let mut off = 0;
    while off < n {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { p.add(off).write_volatile(1) };
        off += 4096;
    }
    if n > 0 {
        // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
        unsafe { p.add(n - 1).write_volatile(1) };
    }
}

fn run_thread<X: Alloc>(
    a: X,
    ops: &[Op],
    slots: usize,
    align: usize,
    lat: Option<&mut Vec<u32>>,
) -> usize {
    let mut table: Vec<*mut u8> = vec![std::ptr::null_mut(); slots];
    match lat {
        None => {
            for op in ops {
                if op.slot & FREE != 0 {
                    let s = (op.slot & !FREE) as usize;
                    a.free(table[s]);
                } else {
                    let n = op.size as usize;
                    let p = if align > 16 {
                        a.aligned(align, n)
                    } else {
                        a.malloc(n)
                    };
                    touch(p, n);
                    table[op.slot as usize] = p;
                }
            }
        }
        Some(lat) => {
            for op in ops {
                if op.slot & FREE != 0 {
                    let s = (op.slot & !FREE) as usize;
                    let t = Instant::now();
                    a.free(table[s]);
                    lat.push(t.elapsed().as_nanos() as u32);
                } else {
                    let n = op.size as usize;
                    let t = Instant::now();
                    let p = if align > 16 {
                        a.aligned(align, n)
                    } else {
                        a.malloc(n)
                    };
                    lat.push(t.elapsed().as_nanos() as u32);
                    touch(p, n);
                    table[op.slot as usize] = p;
                }
            }
        }
    }
    ops.len()
}

fn run_xthread<X: Alloc>(a: X, ops: &[Op], lat: bool) -> (usize, Vec<u32>, Vec<u32>) {
    // A bounded SPSC ring of pointers between the producer and the consumer.
    const Q: usize = 1 << 14;
    let ring: Vec<AtomicPtr<u8>> = (0..Q)
        .map(|_| AtomicPtr::new(std::ptr::null_mut()))
        .collect();
    let head = AtomicUsize::new(0);
    let n = ops.len();
    let (mut l0, mut l1) = (Vec::new(), Vec::new());
    if lat {
        l0.reserve(n);
        l1.reserve(n);
    }
    std::thread::scope(|s| {
        let ring = &ring;
        let head = &head;
        let l1r = &mut l1;
        s.spawn(move || {
            let mut i = 0;
            while i < n {
                let slot = &ring[i % Q];
                let p = slot.swap(std::ptr::null_mut(), Ordering::Acquire);
                if p.is_null() {
                    std::hint::spin_loop();
                    if head.load(Ordering::Acquire) <= i {
                        std::thread::yield_now();
                    }
                    continue;
                }
                if lat {
                    let t = Instant::now();
                    a.free(p);
                    l1r.push(t.elapsed().as_nanos() as u32);
                } else {
                    a.free(p);
                }
                i += 1;
            }
        });
        for (i, op) in ops.iter().enumerate() {
            let slot = &ring[i % Q];
            while !slot.load(Ordering::Acquire).is_null() {
                std::thread::yield_now();
            }
            let t = if lat { Some(Instant::now()) } else { None };
            let p = a.malloc(op.size as usize);
            if let Some(t) = t {
                l0.push(t.elapsed().as_nanos() as u32);
            }
            touch(p, op.size as usize);
            slot.store(p, Ordering::Release);
            head.store(i + 1, Ordering::Release);
        }
    });
    (2 * n, l0, l1)
}

fn rss_kb(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    for line in s.lines() {
        if let Some(rest) = line.strip_prefix(field) {
            return rest.trim().trim_end_matches("kB").trim().parse().unwrap();
        }
    }
    0
}

fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").expect("clear_refs");
}

fn child<X: Alloc>(a: X, which: A, workload: &str, threads: usize, scale: f64) {
    if which == A::FancyReclaim {
        fancy::configure(fancy::Config {
            reclaim: true,
            ..fancy::config()
        })
        .unwrap();
    }
    let p = plan(workload, threads, scale);
    // Throughput pass.
    reset_peak();
    let base = rss_kb("VmRSS:");
    let t0 = Instant::now();
    let ops: usize = if p.xthread > 0 {
        run_xthread(a, &p.ops[0], false).0
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = p
                .ops
                .iter()
                .map(|o| s.spawn(|| run_thread(a, o, p.slots, p.align, None)))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        })
    };
    let secs = t0.elapsed().as_secs_f64();
    let peak = rss_kb("VmHWM:").saturating_sub(base);
    let retained = rss_kb("VmRSS:").saturating_sub(base);
    std::thread::sleep(Duration::from_millis(300));
    let retained_later = rss_kb("VmRSS:").saturating_sub(base);
    // Latency pass (same ops, every op timed).
    let mut all: Vec<u32> = if p.xthread > 0 {
        let (_, mut l0, l1) = run_xthread(a, &p.ops[0], true);
        l0.extend(l1);
        l0
    } else {
        std::thread::scope(|s| {
            let hs: Vec<_> = p
                .ops
                .iter()
                .map(|o| {
                    s.spawn(|| {
                        let mut l = Vec::with_capacity(o.len());
                        run_thread(a, o, p.slots, p.align, Some(&mut l));
                        l
                    })
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        })
    };
    all.sort_unstable();
    let p99 = all[(all.len() * 99 / 100).min(all.len() - 1)];
    println!(
        "RESULT {} {} {} {} {:.6} {} {} {} {}",
        which.name(),
        p.name,
        threads,
        ops,
        secs,
        p99,
        peak,
        retained,
        retained_later
    );
}

// ------------------------------------------------------------------------------------------
// Parent: interleaved child runs, medians, the table.

#[derive(Clone, Debug, Default)]
struct Res {
    mops: Vec<f64>,
    p99: Vec<f64>,
    peak: Vec<f64>,
    retained: Vec<f64>,
    later: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    if v.is_empty() {
        f64::NAN
    } else {
        v[v.len() / 2]
    }
}

fn lib_dir() -> std::path::PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

fn python_bench(reps: usize) -> Vec<(String, f64, f64)> {
    let libs = [
        ("glibc", None),
        (
            "jemalloc",
            Some("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2".to_string()),
        ),
        (
            "mimalloc",
            Some("/usr/lib/x86_64-linux-gnu/libmimalloc.so.2.0".to_string()),
        ),
        (
            "tcmalloc",
            Some("/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4".to_string()),
        ),
        (
            "fancy",
            Some(lib_dir().join("libfancymalloc.so").display().to_string()),
        ),
    ];
    for (n, l) in &libs {
        if let Some(l) = l
            && !std::path::Path::new(l).exists()
        {
            eprintln!(
                "python row: {n} library {l} missing (apt-get install libjemalloc2 libmimalloc2.0 libtcmalloc-minimal4; cargo build --release -p fancy-preload)"
            );
            return Vec::new();
        }
    }
    let script = "d={}\nfor i in range(1500000):\n d[str(i)]=[i,str(i)*3,(i,i+1)]\n if i%3==0: d.pop(str(i//2),None)\nimport json\ns=json.dumps(list(d.items())[:200000])\nx=json.loads(s)\nprint(len(d),len(x))";
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); libs.len()];
    let mut rss: Vec<Vec<f64>> = vec![Vec::new(); libs.len()];
    for _ in 0..reps {
        for (i, (_, l)) in libs.iter().enumerate() {
            let mut c = Command::new("/usr/bin/python3");
            c.env("PYTHONMALLOC", "malloc").args(["-c", script]);
            if let Some(l) = l {
                c.env("LD_PRELOAD", l);
            }
            let t = Instant::now();
            let child = c.stdout(std::process::Stdio::null()).spawn().unwrap();
            let pid = child.id() as i32;
            let mut status = 0;
            // SAFETY: wait4 on our own child with valid out-pointers; rusage is plain data.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child with valid out-pointers; rusage is plain data.
            unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
            times[i].push(t.elapsed().as_secs_f64());
            rss[i].push(ru.ru_maxrss as f64);
            assert!(
                libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
                "python under {} failed",
                libs[i].0
            );
        }
    }
    libs.iter()
        .enumerate()
        .map(|(i, (n, _))| (n.to_string(), median(&times[i]), median(&rss[i])))
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let which = A::parse(&args[i + 1]);
        let w = &args[i + 2];
        let t: usize = args[i + 3].parse().unwrap();
        let scale: f64 = args[i + 4].parse().unwrap();
        match which {
            A::Glibc => child(Glibc, which, w, t, scale),
            A::Jemalloc => child(Je, which, w, t, scale),
            A::Mimalloc => child(Mi, which, w, t, scale),
            A::Fancy | A::FancyReclaim => child(Fy, which, w, t, scale),
        }
        return;
    }
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let reps: usize = get("--reps").map(|s| s.parse().unwrap()).unwrap_or(5);
    let scale: f64 = get("--scale").map(|s| s.parse().unwrap()).unwrap_or(1.0);
    let only: Vec<String> = get("--only")
        .map(|s| s.split(',').map(String::from).collect())
        .unwrap_or_default();
    let allocs: Vec<A> = get("--allocs")
        .map(|s| s.split(',').map(A::parse).collect())
        .unwrap_or(ALLOCS.to_vec());
    let threads: Vec<usize> = get("--threads")
        .map(|s| s.split(',').map(|t| t.parse().unwrap()).collect())
        .unwrap_or(vec![1, 2]);
    let thp =
        std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
    eprintln!(
        "THP: {}; reps {reps}, scale {scale}; allocators in their default options",
        thp.trim()
    );
    let mut cells: Vec<(String, usize)> = Vec::new();
    for w in WORKLOADS {
        if !only.is_empty() && !only.iter().any(|o| o == w) {
            continue;
        }
        let ts: Vec<usize> = match w {
            "xmalloc" => vec![2],
            "malloc_large" => vec![1],
            _ => threads.clone(),
        };
        for t in ts {
            cells.push((w.to_string(), t));
        }
    }
    let mut res: std::collections::BTreeMap<(String, usize, &str), Res> = Default::default();
    let exe = std::env::current_exe().unwrap();
    for rep in 0..reps {
        for (w, t) in &cells {
            for &a in &allocs {
                let out = Command::new(&exe)
                    .args(["--child", a.name(), w, &t.to_string(), &scale.to_string()])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                let Some(line) = text.lines().find(|l| l.starts_with("RESULT ")) else {
                    eprintln!(
                        "run {} {} {} failed: {:?}\n{}",
                        a.name(),
                        w,
                        t,
                        out.status,
                        String::from_utf8_lossy(&out.stderr)
                    );
                    continue;
                };
                let f: Vec<&str> = line.split_whitespace().collect();
                let ops: f64 = f[4].parse().unwrap();
                let secs: f64 = f[5].parse().unwrap();
                let r = res.entry((w.clone(), *t, a.name())).or_default();
                r.mops.push(ops / secs / 1e6);
                r.p99.push(f[6].parse().unwrap());
                r.peak.push(f[7].parse::<f64>().unwrap() / 1024.0);
                r.retained.push(f[8].parse::<f64>().unwrap() / 1024.0);
                r.later.push(f[9].parse::<f64>().unwrap() / 1024.0);
            }
        }
        eprintln!("rep {}/{} done", rep + 1, reps);
    }
    let names: Vec<&str> = allocs.iter().map(|a| a.name()).collect();
    let mut out = String::new();
    out += &format!(
        "\n### Throughput (Mops/s, median of {reps}; higher is better)\n\n| workload | threads | {} | fancy/glibc | fancy/mimalloc |\n|---|---|{}---|---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    let mut geo: Vec<f64> = vec![0.0; names.len()];
    let mut geo_n = 0;
    for (w, t) in &cells {
        let m: Vec<f64> = names
            .iter()
            .map(|n| {
                res.get(&(w.clone(), *t, *n))
                    .map(|r| median(&r.mops))
                    .unwrap_or(f64::NAN)
            })
            .collect();
        for (i, v) in m.iter().enumerate() {
            geo[i] += v.ln();
        }
        geo_n += 1;
        let g = m[names.iter().position(|n| *n == "glibc").unwrap_or(0)];
        let mi = m[names.iter().position(|n| *n == "mimalloc").unwrap_or(0)];
        let f = m[names.iter().position(|n| *n == "fancy").unwrap_or(0)];
        out += &format!(
            "| {w} | {t} | {} | {:.2} | {:.2} |\n",
            m.iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" | "),
            f / g,
            f / mi
        );
    }
    out += &format!(
        "| **geometric mean** | | {} | | |\n",
        geo.iter()
            .map(|g| format!("**{:.2}**", (g / geo_n as f64).exp()))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    out += &format!(
        "\n### p99 latency per op (ns, timed pass, median of {reps}; lower is better)\n\n| workload | threads | {} |\n|---|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (w, t) in &cells {
        out += &format!(
            "| {w} | {t} | {} |\n",
            names
                .iter()
                .map(|n| res
                    .get(&(w.clone(), *t, *n))
                    .map(|r| format!("{:.0}", median(&r.p99)))
                    .unwrap_or("-".into()))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    out += &format!(
        "\n### Peak heap RSS (MiB; fancy ÷ lowest of glibc/jemalloc/mimalloc in the last column)\n\n| workload | threads | {} | fancy/best peer |\n|---|---|{}---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (w, t) in &cells {
        let m: Vec<f64> = names
            .iter()
            .map(|n| {
                res.get(&(w.clone(), *t, *n))
                    .map(|r| median(&r.peak))
                    .unwrap_or(f64::NAN)
            })
            .collect();
        let best = names
            .iter()
            .zip(&m)
            .filter(|(n, _)| ["glibc", "jemalloc", "mimalloc"].contains(n))
            .map(|(_, v)| *v)
            .fold(f64::INFINITY, f64::min);
        let f = m[names.iter().position(|n| *n == "fancy").unwrap_or(0)];
        out += &format!(
            "| {w} | {t} | {} | {:.2} |\n",
            m.iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(" | "),
            f / best
        );
    }
    out += "\n### Retained heap RSS after the last free (MiB: right after / 300 ms later)\n\n";
    out += &format!(
        "| workload | threads | {} |\n|---|---|{}\n",
        names.join(" | "),
        "---|".repeat(names.len())
    );
    for (w, t) in &cells {
        out += &format!(
            "| {w} | {t} | {} |\n",
            names
                .iter()
                .map(|n| res
                    .get(&(w.clone(), *t, *n))
                    .map(|r| format!("{:.1} / {:.1}", median(&r.retained), median(&r.later)))
                    .unwrap_or("-".into()))
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if !args.iter().any(|a| a == "--no-python") {
        let py = python_bench(reps);
        if !py.is_empty() {
            let g = py[0].1;
            out += &format!(
                "\n### Real program: `PYTHONMALLOC=malloc python3` (dict/str/json churn) under LD_PRELOAD, median of {reps}\n\n| allocator | wall s | ÷ glibc | max RSS MiB |\n|---|---|---|---|\n"
            );
            for (n, t, r) in &py {
                out += &format!("| {n} | {t:.3} | {:.2} | {:.1} |\n", t / g, r / 1024.0);
            }
        }
    }
    print!("{out}");
    std::io::stdout().flush().unwrap();
}
