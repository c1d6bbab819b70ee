//! What the replay harness itself costs, on rl_small and on a recorded python3 trace:
//!
//! * preprocessing speed (events/s, median of 5; wall time and the calling thread's CPU time,
//!   since the trace is decoded ahead on a second thread);
//! * replay state per op (op arrays, checkpoints, slot table);
//! * `bump` replay time over `system` replay time (the harness's share of what it measures),
//!   from `replay -a system,bump -r N`, whose children run interleaved (system bump system
//!   bump …); median of the per-repetition ratios.
//!
//! `cargo bench -p replayer --bench harness` (`HARNESS_REPS`, default 7; `HARNESS_PY_ENTRIES`,
//! default 1000000, sizes the python trace). Targets (issue 5): bump ≤ 0.15× system,
//! preprocessing ≥ 20M events/s, ≤ 16 bytes of replay state per op.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use replayer::prep::{PrepOptions, preprocess};
use traces::synth::{Config, Params, generate_file};

fn env_u64(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn thread_cpu_ns() -> u64 {
    // SAFETY: clock_gettime writes the plain struct it is given.
    let mut t: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn recorder_lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [
        deps.join("liballoclab_recorder.so"),
        deps.parent().unwrap().join("liballoclab_recorder.so"),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .expect("liballoclab_recorder.so is missing: cargo bench -p replayer builds it")
}

fn record_python(dir: &Path, entries: u64) -> PathBuf {
    let out = dir.join("py-dict.trace.zst");
    let script = format!(
        "d = {{}}\nfor i in range({entries}):\n    d['key%d' % i] = 'value%d' % i\nprint(len(d))\n"
    );
    let o = Command::new("/usr/bin/python3")
        .args(["-c", &script])
        .env("LD_PRELOAD", recorder_lib())
        .env("ALLOCLAB_OUTPUT", &out)
        .env("PYTHONMALLOC", "malloc")
        .output()
        .expect("/usr/bin/python3 (Debian's python3) is needed");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

struct Figures {
    name: String,
    events: u64,
    ops: u64,
    prep_wall: f64,
    prep_cpu: f64,
    bytes_per_op: f64,
    bump_over_system: f64,
    system_wall_ms: f64,
    bump_wall_ms: f64,
}

fn measure(name: &str, trace: &Path, reps: u64) -> Figures {
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut meta = None;
    for _ in 0..5 {
        let r = traces::MergedReader::open(trace).unwrap();
        let c0 = thread_cpu_ns();
        let t0 = Instant::now();
        let plan = preprocess(r, &PrepOptions::default(), &mut |_| {}).unwrap();
        let w = t0.elapsed().as_secs_f64();
        let c = (thread_cpu_ns() - c0) as f64 / 1e9;
        wall.push(plan.meta.events as f64 / w);
        cpu.push(plan.meta.events as f64 / c);
        meta = Some(plan.meta);
    }
    let meta = meta.unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_replay"))
        .args([
            "-a",
            "system,bump",
            "--no-latency",
            "--retained-wait",
            "0",
            "--sample-ms",
            "0",
        ])
        .args(["-q", "--json", "-r", &reps.to_string()])
        .arg(trace)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let runs = doc["runs"].as_array().unwrap();
    let wall_of = |a: &str| -> Vec<f64> {
        runs.iter()
            .filter(|r| r["allocator"] == a)
            .map(|r| r["wall_ns"].as_f64().unwrap())
            .collect()
    };
    let (sys, bump) = (wall_of("system"), wall_of("bump"));
    let mut ratios: Vec<f64> = bump.iter().zip(&sys).map(|(b, s)| b / s).collect();
    Figures {
        name: name.to_string(),
        events: meta.events,
        ops: meta.total_ops(),
        prep_wall: median(&mut wall),
        prep_cpu: median(&mut cpu),
        bytes_per_op: meta.bytes_per_op(),
        bump_over_system: median(&mut ratios),
        system_wall_ms: median(&mut sys.clone()) / 1e6,
        bump_wall_ms: median(&mut bump.clone()) / 1e6,
    }
}

fn main() {
    let reps = env_u64("HARNESS_REPS", 7);
    let dir = tempfile::tempdir().unwrap();
    let rl = dir.path().join("rl_small.trace.zst");
    let cfg = Config::new(
        "rl_small",
        &Params {
            threads: Some(2),
            ops: Some(8_000_000),
            ..Params::default()
        },
    )
    .unwrap();
    generate_file(&cfg, &rl).unwrap();
    let py = record_python(dir.path(), env_u64("HARNESS_PY_ENTRIES", 1_000_000));
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "replay harness, {cpus} CPUs, load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!(
        "{:<22} {:>10} {:>10} {:>16} {:>16} {:>10} {:>12} {:>12} {:>12}",
        "trace",
        "events",
        "ops",
        "prep M ev/s wall",
        "prep M ev/s cpu",
        "B/op",
        "system ms",
        "bump ms",
        "bump/system"
    );
    for (name, t) in [
        ("rl_small (2 threads)", &rl),
        ("python3 dict (recorded)", &py),
    ] {
        let f = measure(name, t, reps);
        println!(
            "{:<22} {:>10} {:>10} {:>16.1} {:>16.1} {:>10.2} {:>12.1} {:>12.1} {:>12.3}",
            f.name,
            f.events,
            f.ops,
            f.prep_wall / 1e6,
            f.prep_cpu / 1e6,
            f.bytes_per_op,
            f.system_wall_ms,
            f.bump_wall_ms,
            f.bump_over_system
        );
    }
    println!(
        "targets: prep >= 20 M events/s, <= 16 B/op, bump/system <= 0.15 (medians of 5 and {reps})"
    );
}
