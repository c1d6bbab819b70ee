//! Process samples (format 1.1): written, read back by both readers, skipped by a reader that
//! does not know their frame kind (what a 1.0 reader does), refused when corrupt; a 1.0 trace
//! (the golden one) still reads, with no samples.

use std::io::Cursor;
use std::path::PathBuf;

use traces::{
    ErrorKind, Event, Header, MergedReader, ProcessSample, Record, RssSummary, TraceReader,
    TraceWriter, Warning,
};

fn sample(ts: u64, rss_mb: u64) -> ProcessSample {
    ProcessSample {
        ts,
        rss_bytes: rss_mb << 20,
        hwm_bytes: (rss_mb + 1) << 20,
        minor_faults: ts / 10,
    }
}

/// A small trace: two threads' events, with samples frames at the start, between and at the
/// end.
fn trace_with_samples() -> (Vec<u8>, Vec<ProcessSample>) {
    let mut w =
        TraceWriter::new(Vec::new(), "mem", &Header::for_this_process("samples test")).unwrap();
    let samples = vec![
        sample(0, 3),
        sample(500, 40),
        sample(900, 41),
        sample(2_000, 5),
    ];
    w.write_samples(&samples[..1]).unwrap();
    w.append(
        0,
        100,
        Event::Malloc {
            size: 1 << 24,
            ptr: 0x1000_0000,
        },
    )
    .unwrap();
    w.append(
        1,
        200,
        Event::Malloc {
            size: 24,
            ptr: 0x5000,
        },
    )
    .unwrap();
    w.flush().unwrap();
    w.write_samples(&samples[1..3]).unwrap();
    w.append(0, 1_000, Event::Free { ptr: 0x1000_0000 })
        .unwrap();
    w.append(1, 1_500, Event::Free { ptr: 0x5000 }).unwrap();
    w.flush().unwrap();
    w.write_samples(&samples[3..]).unwrap();
    (w.finish(0).unwrap(), samples)
}

fn merged(bytes: &[u8]) -> traces::Result<(Vec<Record>, Vec<ProcessSample>, Vec<Warning>)> {
    let mut r = MergedReader::new(Cursor::new(bytes.to_vec()), "mem")?;
    let samples = r.process_samples().to_vec();
    let warnings = r.warnings().to_vec();
    let records = r.by_ref().collect::<traces::Result<Vec<_>>>()?;
    Ok((records, samples, warnings))
}

/// (offset, kind) of every frame of a trace.
fn frames(bytes: &[u8]) -> Vec<(usize, u8)> {
    let mut at = 20 + u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    while at + 44 <= bytes.len() && &bytes[at..at + 4] == b"AFRM" {
        out.push((at, bytes[at + 4]));
        at += 44 + u32::from_le_bytes(bytes[at + 36..at + 40].try_into().unwrap()) as usize;
    }
    out
}

/// Sets the CRC of the frame at `at` to match its (edited) header and payload.
fn fix_crc(bytes: &mut [u8], at: usize) {
    let stored = u32::from_le_bytes(bytes[at + 36..at + 40].try_into().unwrap()) as usize;
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[at..at + 40]);
    h.update(&bytes[at + 44..at + 44 + stored]);
    let crc = h.finalize();
    bytes[at + 40..at + 44].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn samples_read_back_through_both_readers_and_summarise() {
    let (bytes, samples) = trace_with_samples();
    assert_eq!(
        &bytes[10..12],
        &traces::FORMAT_MINOR.to_le_bytes(),
        "written as the current minor (samples came in 1.1)"
    );
    let kinds: Vec<u8> = frames(&bytes).iter().map(|f| f.1).collect();
    assert_eq!(kinds.iter().filter(|&&k| k == 3).count(), 3, "{kinds:?}");
    let (records, got, warnings) = merged(&bytes).unwrap();
    assert_eq!(got, samples);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(records.len(), 4, "samples are not events");
    let mut seq = TraceReader::new(Cursor::new(bytes.clone()), "mem").unwrap();
    let mut frame = traces::Frame::default();
    let mut events = 0;
    while seq.next_frame(&mut frame).unwrap() {
        events += frame.events.len();
    }
    assert_eq!(events, 4);
    assert_eq!(seq.process_samples(), &samples[..]);
    let s = RssSummary::of(&samples).unwrap();
    assert_eq!(
        (s.samples, s.baseline_bytes, s.peak_bytes, s.end_bytes),
        (4, 3 << 20, 42 << 20, 5 << 20)
    );
    assert_eq!(s.heap_peak_bytes(), 39 << 20);
    assert_eq!(s.minor_faults, 200);
}

#[test]
fn a_reader_that_does_not_know_the_samples_kind_skips_them_and_reads_every_event() {
    // A 1.0 reader knows kinds 1 and 2 only; the frames of kind 3 take its unknown-kind path.
    // Relabelling them as a kind this reader does not know either runs that same path here.
    let (mut bytes, _) = trace_with_samples();
    let (want, _, _) = merged(&bytes).unwrap();
    for (at, kind) in frames(&bytes) {
        if kind == 3 {
            bytes[at + 4] = 0xEE;
            fix_crc(&mut bytes, at);
        }
    }
    let (got, samples, warnings) = merged(&bytes).unwrap();
    assert_eq!(got, want);
    assert!(samples.is_empty());
    assert_eq!(warnings.len(), 3);
    assert!(
        warnings
            .iter()
            .all(|w| matches!(w, Warning::UnknownFrameKind { kind: 0xEE, .. }))
    );
    let mut seq = TraceReader::new(Cursor::new(bytes), "mem").unwrap();
    let mut frame = traces::Frame::default();
    let mut events = 0;
    while seq.next_frame(&mut frame).unwrap() {
        events += frame.events.len();
    }
    assert_eq!(events, 4);
    assert!(seq.trailer().is_some(), "read to the end");
    assert_eq!(seq.warnings().len(), 3);
}

#[test]
fn a_samples_frame_with_a_bad_checksum_is_reported_corrupt() {
    let (mut bytes, _) = trace_with_samples();
    let (at, _) = frames(&bytes)
        .into_iter()
        .filter(|f| f.1 == 3)
        .nth(1)
        .unwrap();
    bytes[at + 44 + 9] ^= 0x40; // the second sample's RSS
    let e = merged(&bytes).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::FrameChecksum { .. }), "{e}");
    assert_eq!(e.offset, at as u64);
    let mut seq = TraceReader::new(Cursor::new(bytes), "mem").unwrap();
    let mut frame = traces::Frame::default();
    let e = loop {
        match seq.next_frame(&mut frame) {
            Ok(true) => {}
            Ok(false) => panic!("read a corrupt samples frame without complaint"),
            Err(e) => break e,
        }
    };
    assert!(matches!(e.kind, ErrorKind::FrameChecksum { .. }), "{e}");
    // A samples frame whose length does not match its count is refused too.
    let (mut bytes, _) = trace_with_samples();
    let (at, _) = frames(&bytes).into_iter().find(|f| f.1 == 3).unwrap();
    bytes[at + 12] = 2; // claims two samples, holds one
    fix_crc(&mut bytes, at);
    let e = merged(&bytes).unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Malformed(_)), "{e}");
}

#[test]
fn the_golden_1_0_trace_still_reads_with_no_samples() {
    let golden = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/golden.zst");
    let bytes = std::fs::read(&golden).unwrap();
    assert_eq!(&bytes[10..12], &0u16.to_le_bytes());
    let r = MergedReader::open(&golden).unwrap();
    assert!(r.process_samples().is_empty());
    assert!(r.warnings().is_empty());
    assert!(r.trailer().is_some());
    assert!(RssSummary::of(r.process_samples()).is_none());
    assert!(r.count() > 0);
}
