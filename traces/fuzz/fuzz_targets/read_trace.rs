//! Whole files: header, frames, trailer, through both readers. Seeded with real traces (see
//! traces/fuzz/README.md), mutations reach the frame and payload checks.
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = traces::TraceReader::new(Cursor::new(data), "fuzz") {
        for rec in r.records().take(1 << 20) {
            if rec.is_err() {
                break;
            }
        }
    }
    if let Ok(r) = traces::MergedReader::new(Cursor::new(data), "fuzz") {
        for rec in r.take(1 << 20) {
            if rec.is_err() {
                break;
            }
        }
    }
});
