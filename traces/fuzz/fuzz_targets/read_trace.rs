//! Whole files: header, frames, trailer, through both readers. Seeded with real traces (see the
//! Fuzzing section of the README), mutations reach the frame and payload checks.
//!
//! The header and every frame carry a CRC-32, so a mutated file is nearly always refused at
//! the first checksum. Each input is therefore read twice: as is (the checksum paths), and with
//! the checksums recomputed over the mutated bytes (everything behind them: bincode header and
//! trailer, zstd, the payload decoder, the merge).
#![no_main]
use std::io::Cursor;

use libfuzzer_sys::fuzz_target;

fn read_both(data: &[u8]) {
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
}

fn u32_at(b: &[u8], i: usize) -> usize {
    u32::from_le_bytes(b[i..i + 4].try_into().unwrap()) as usize
}

/// Recomputes the header CRC and the CRC of every complete frame (FORMAT.md's layout), as far
/// as the structure can be followed.
fn fix_checksums(b: &mut [u8]) {
    if b.len() < 20 || b[..8] != traces::MAGIC {
        return;
    }
    let n = u32_at(b, 12);
    if n > traces::MAX_HEADER_BYTES as usize || 20 + n > b.len() {
        return;
    }
    let crc = crc32fast::hash(&b[20..20 + n]);
    b[16..20].copy_from_slice(&crc.to_le_bytes());
    let mut off = 20 + n;
    while off + 44 <= b.len() && &b[off..off + 4] == b"AFRM" {
        let stored = u32_at(b, off + 36);
        let Some(end) = (off + 44).checked_add(stored).filter(|&e| e <= b.len()) else {
            break;
        };
        let mut h = crc32fast::Hasher::new();
        h.update(&b[off..off + 40]);
        h.update(&b[off + 44..end]);
        let crc = h.finalize();
        b[off + 40..off + 44].copy_from_slice(&crc.to_le_bytes());
        off = end;
    }
}

fuzz_target!(|data: &[u8]| {
    read_both(data);
    let mut fixed = data.to_vec();
    fix_checksums(&mut fixed);
    if fixed[..] != data[..] {
        read_both(&fixed);
    }
});
