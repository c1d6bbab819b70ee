//! The event decoder on arbitrary payloads (what is inside a frame after decompression): it
//! must return an error or events, never panic, hang or allocate beyond the event count.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 12 {
        return;
    }
    let count = u32::from_le_bytes(data[0..4].try_into().unwrap()) % 4096;
    let first_ts = u64::from_le_bytes(data[4..12].try_into().unwrap());
    let _ = traces::__fuzz::decode_payload(&data[12..], count, first_ts);
});
