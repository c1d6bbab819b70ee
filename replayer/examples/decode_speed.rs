fn main() {
    let p = std::env::args().nth(1).unwrap();
    let t = std::time::Instant::now();
    let r = traces::MergedReader::open(&p).unwrap();
    let mut n = 0u64;
    let mut x = 0u64;
    for rec in r {
        let rec = rec.unwrap();
        n += 1;
        x ^= rec.ts;
    }
    let e = t.elapsed();
    println!(
        "{n} events in {e:?}: {:.1} M/s ({x})",
        n as f64 / e.as_secs_f64() / 1e6
    );
    // frame-level
    let t = std::time::Instant::now();
    let mut r = traces::TraceReader::open(&p).unwrap();
    let mut f = traces::Frame {
        thread: 0,
        offset: 0,
        events: Vec::new(),
    };
    let mut n = 0u64;
    while r.next_frame(&mut f).unwrap() {
        n += f.events.len() as u64;
    }
    let e = t.elapsed();
    println!(
        "frames: {n} events in {e:?}: {:.1} M/s",
        n as f64 / e.as_secs_f64() / 1e6
    );
}
