//! The per-thread cost of fancy against glibc's malloc: `tests/data/live_threads.c` (compiled
//! here with gcc) starts N threads that each keep a small working set (64 blocks of 16–512 B,
//! 4 of 1–4 KiB) and reads the process's RSS while all are alive. Each repetition runs the
//! program under glibc and under `LD_PRELOAD=libfancy_preload.so`, alternated; the table shows
//! medians of RSS and of wall time (start to all joined).
//!
//! ```text
//! cargo bench -p fancy-preload --bench live_threads -- [--reps N] [--threads 100,1000]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

fn lib() -> PathBuf {
    let exe = std::env::current_exe().expect("live_threads: cannot find its own executable");
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join("libfancy_preload.so");
        if p.exists() {
            return p;
        }
    }
    eprintln!(
        "live_threads: libfancy_preload.so not found next to {}",
        exe.display()
    );
    std::process::exit(2);
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("live_threads: {msg}\nusage: live_threads [--reps N] [--threads N,N]");
    std::process::exit(2);
}

fn main() {
    let mut reps = 5usize;
    let mut threads = vec![100usize, 1000];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--bench" => {}
            "--reps" => {
                reps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .filter(|&n| n > 0)
                    .unwrap_or_else(|| usage("--reps needs a positive number"))
            }
            "--threads" => {
                let v = args
                    .next()
                    .unwrap_or_else(|| usage("--threads needs numbers"));
                threads = v
                    .split(',')
                    .map(|t| {
                        t.parse()
                            .unwrap_or_else(|_| usage(&format!("bad thread count `{t}`")))
                    })
                    .collect();
            }
            other => usage(&format!("unknown argument `{other}`")),
        }
    }
    let dir = tempfile::tempdir().expect("live_threads: no temporary directory");
    let exe = dir.path().join("live_threads");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/live_threads.c");
    let out = Command::new("/usr/bin/cc")
        .args(["-O1", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| usage(&format!("cannot run /usr/bin/cc (Debian package gcc): {e}")));
    if !out.status.success() {
        usage(&format!(
            "cc failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let lib = lib();
    println!(
        "| threads | glibc RSS MiB | fancy RSS MiB | fancy/glibc RSS | glibc s | fancy s | fancy/glibc time |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &threads {
        let mut rss = [Vec::new(), Vec::new()];
        let mut secs = [Vec::new(), Vec::new()];
        for _ in 0..reps {
            for (i, preload) in [false, true].into_iter().enumerate() {
                let mut c = Command::new(&exe);
                c.arg(n.to_string());
                if preload {
                    c.env("LD_PRELOAD", &lib);
                } else {
                    c.env_remove("LD_PRELOAD");
                }
                let o = c.output().expect("live_threads: cannot run the program");
                let text = String::from_utf8_lossy(&o.stdout);
                let f: Vec<&str> = text.split_whitespace().collect();
                if !o.status.success() || f.len() != 4 {
                    eprintln!("live_threads: {n} threads (preload {preload}) failed: {text}");
                    std::process::exit(1);
                }
                rss[i].push(f[1].parse::<f64>().unwrap() / 1024.0);
                secs[i].push(f[3].parse::<f64>().unwrap());
            }
        }
        let (gr, fr) = (median(&mut rss[0]), median(&mut rss[1]));
        let (gs, fs) = (median(&mut secs[0]), median(&mut secs[1]));
        println!(
            "| {n} | {gr:.1} | {fr:.1} | {:.2} | {gs:.3} | {fs:.3} | {:.2} |",
            fr / gr,
            fs / gs
        );
    }
}
