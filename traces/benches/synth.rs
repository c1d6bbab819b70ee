//! Generation speed of the synthetic suite.
//!
//! `cargo bench -p traces --bench synth [-- [--scale X] [--reps N] [--only NAME,NAME…]
//! [--generate-only]]`
//!
//! For every workload at the given scale (default 1, the suite's default size), measured
//! `--reps` times (default 3; the runs of all workloads are interleaved so drift hits all
//! alike) and reported as medians:
//! * **generate**: the generator alone, events dropped (no encoding);
//! * **write ×1**: the whole path of `synth` with one encoder thread — generation on this thread,
//!   frame encoding and zstd on the encoder, writing on the writer thread — into a byte counter
//!   instead of a file (disk speed is not measured); as generation is faster than encoding, this
//!   is about the encoder's speed on one core;
//! * **write ×N**: the same with N encoder threads, N = the machine's cores (what `synth` uses);
//! * bytes per event of the written trace.
//!
//! The suite line divides the events of all workloads by the sum of their median times: the
//! rate `synth all` would reach on this machine, minus file-system time. Target: ≥ 20 M events/s.
//!
//! Wall-clock rates suffer when other processes share the cores, so CPU time is printed too:
//! **gen cpu** is events per second of the generating thread's CPU time (generation alone), and
//! **cpu ns/ev** the CPU time of all threads of the write ×N run per event — on C idle cores the
//! write rate can reach at most C / (cpu ns/ev).

use std::io::Write;
use std::time::Instant;

use traces::synth::{self, Config, Params, WORKLOADS};

struct Sink(u64);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn cpu_secs(clock: libc::clockid_t) -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; both clocks exist on Linux.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let mut scale = 1.0;
    let mut reps = 3;
    let mut only: Option<Vec<String>> = None;
    let mut generate_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--scale" => scale = args.next().and_then(|v| v.parse().ok()).expect("--scale X"),
            "--reps" => reps = args.next().and_then(|v| v.parse().ok()).expect("--reps N"),
            "--only" => {
                only = Some(
                    args.next()
                        .expect("--only NAME,NAME")
                        .split(',')
                        .map(String::from)
                        .collect(),
                )
            }
            "--generate-only" => generate_only = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let cfgs: Vec<Config> = WORKLOADS
        .iter()
        .filter(|w| only.as_ref().is_none_or(|o| o.iter().any(|n| n == w.name)))
        .map(|w| {
            Config::new(
                w.name,
                &Params {
                    scale,
                    ..Params::default()
                },
            )
            .expect("defaults are valid")
        })
        .collect();
    let mut gen_s = vec![Vec::new(); cfgs.len()];
    let mut write_s = vec![Vec::new(); cfgs.len()];
    let mut write1_s = vec![Vec::new(); cfgs.len()];
    let mut gen_cpu = vec![Vec::new(); cfgs.len()];
    let mut write_cpu = vec![Vec::new(); cfgs.len()];
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    let mut events = vec![0u64; cfgs.len()];
    let mut bytes = vec![0u64; cfgs.len()];
    for _ in 0..reps {
        for (i, cfg) in cfgs.iter().enumerate() {
            let t = Instant::now();
            let c = cpu_secs(libc::CLOCK_THREAD_CPUTIME_ID);
            let n = synth::generate_discarding(cfg);
            gen_cpu[i].push(cpu_secs(libc::CLOCK_THREAD_CPUTIME_ID) - c);
            gen_s[i].push(t.elapsed().as_secs_f64());
            events[i] = n;
            if generate_only {
                write_s[i].push(f64::NAN);
                write1_s[i].push(f64::NAN);
                write_cpu[i].push(f64::NAN);
                continue;
            }
            let t = Instant::now();
            synth::generate_with_encoders(cfg, Sink(0), "sink", 1).expect("writing to memory");
            write1_s[i].push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let c = cpu_secs(libc::CLOCK_PROCESS_CPUTIME_ID);
            let (s, _) = synth::generate_with_encoders(cfg, Sink(0), "sink", cores)
                .expect("writing to memory");
            write_cpu[i].push(cpu_secs(libc::CLOCK_PROCESS_CPUTIME_ID) - c);
            write_s[i].push(t.elapsed().as_secs_f64());
            assert_eq!(
                n, s.events,
                "{}: both runs make the same events",
                cfg.workload.name
            );
            events[i] = s.events;
            bytes[i] = s.bytes;
        }
    }
    println!(
        "synth generation speed: scale {scale}, medians of {reps} runs, M events/s \
         (generate = generator alone; write xK = generator + K encoder threads, into memory)"
    );
    let wn = format!("write x{cores}");
    println!(
        "{:<20} {:>11} {:>9} {:>8} {:>9} {:>9} {:>10} {:>8}",
        "workload", "events", "generate", "gen cpu", "write x1", wn, "cpu ns/ev", "B/event"
    );
    let (mut all_events, mut all_bytes) = (0u64, 0u64);
    let (mut all_gen, mut all_write1, mut all_write) = (0.0, 0.0, 0.0);
    let (mut all_gen_cpu, mut all_write_cpu) = (0.0, 0.0);
    for (i, cfg) in cfgs.iter().enumerate() {
        let g = median(&mut gen_s[i]);
        let gc = median(&mut gen_cpu[i]);
        let w1 = median(&mut write1_s[i]);
        let w = median(&mut write_s[i]);
        let wc = median(&mut write_cpu[i]);
        let rate = |secs: f64| events[i] as f64 / secs / 1e6;
        println!(
            "{:<20} {:>11} {:>9.1} {:>8.1} {:>9.1} {:>9.1} {:>10.1} {:>8.2}",
            cfg.workload.name,
            events[i],
            rate(g),
            rate(gc),
            rate(w1),
            rate(w),
            wc / events[i] as f64 * 1e9,
            bytes[i] as f64 / events[i] as f64
        );
        all_events += events[i];
        all_gen += g;
        all_gen_cpu += gc;
        all_write1 += w1;
        all_write += w;
        all_write_cpu += wc;
        all_bytes += bytes[i];
    }
    let rate = |secs: f64| all_events as f64 / secs / 1e6;
    println!(
        "{:<20} {:>11} {:>9.1} {:>8.1} {:>9.1} {:>9.1} {:>10.1} {:>8.2}",
        "SUITE",
        all_events,
        rate(all_gen),
        rate(all_gen_cpu),
        rate(all_write1),
        rate(all_write),
        all_write_cpu / all_events as f64 * 1e9,
        all_bytes as f64 / all_events as f64
    );
    println!(
        "suite: {all_gen:.2} s generate, {all_write1:.2} s write x1, {all_write:.2} s {wn} \
         (target: {wn} >= 20 M events/s)"
    );
}
