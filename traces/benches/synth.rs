//! Generation speed of the synthetic suite.
//!
//! `cargo bench -p traces --bench synth [-- [--scale X] [--reps N] [--only NAME,NAME…]]`
//!
//! For every workload at the given scale (default 1, the suite's default size), measured
//! `--reps` times (default 3; the runs of all workloads are interleaved so drift hits all
//! alike) and reported as medians:
//! * **generate**: the generator alone, events dropped (no encoding);
//! * **write**: the whole path of `synth` — generation on this thread, frame encoding and zstd on
//!   the writer thread — into a byte counter instead of a file (disk speed is not measured);
//! * bytes per event of the written trace.
//!
//! The suite line divides the events of all workloads by the sum of their median times: the
//! rate `synth all` would reach on this machine, minus file-system time. Target: ≥ 20 M events/s.

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

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut scale = 1.0;
    let mut reps = 3;
    let mut only: Option<Vec<String>> = None;
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
    let mut events = vec![0u64; cfgs.len()];
    let mut bytes = vec![0u64; cfgs.len()];
    for _ in 0..reps {
        for (i, cfg) in cfgs.iter().enumerate() {
            let t = Instant::now();
            let n = synth::generate_discarding(cfg);
            gen_s[i].push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            let (s, _) = synth::generate(cfg, Sink(0), "sink").expect("writing to memory");
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
        "synth generation speed: scale {scale}, medians of {reps} runs \
         (generate = generator alone; write = generator + encoder thread into memory)"
    );
    println!(
        "{:<20} {:>12} {:>14} {:>14} {:>9}",
        "workload", "events", "generate M/s", "write M/s", "B/event"
    );
    let (mut all_events, mut all_gen, mut all_write, mut all_bytes) = (0u64, 0.0, 0.0, 0u64);
    for (i, cfg) in cfgs.iter().enumerate() {
        let g = median(&mut gen_s[i]);
        let w = median(&mut write_s[i]);
        println!(
            "{:<20} {:>12} {:>14.1} {:>14.1} {:>9.2}",
            cfg.workload.name,
            events[i],
            events[i] as f64 / g / 1e6,
            events[i] as f64 / w / 1e6,
            bytes[i] as f64 / events[i] as f64
        );
        all_events += events[i];
        all_gen += g;
        all_write += w;
        all_bytes += bytes[i];
    }
    println!(
        "{:<20} {:>12} {:>14.1} {:>14.1} {:>9.2}",
        "SUITE",
        all_events,
        all_events as f64 / all_gen / 1e6,
        all_events as f64 / all_write / 1e6,
        all_bytes as f64 / all_events as f64
    );
    println!(
        "suite: {:.2} s generate, {:.2} s write (target: write ≥ 20 M events/s)",
        all_gen, all_write
    );
}
