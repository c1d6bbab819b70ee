//! Process samples (format 1.1): the recorded process's resident set and minor faults, taken by
//! the recorder at its start, at each flush and at its end, so a trace carries the real
//! program's RSS curve under the recording allocator. A replay's `--touch recorded` policy
//! reads them to touch as much of each block as the program did.
//!
//! On disk a samples frame is kind 3, stored uncompressed (flag bit 0), thread 0, its event
//! count the number of samples, its first/last timestamps those of its first and last sample;
//! the payload is 32 bytes per sample, four little-endian u64: timestamp (trace ns), RSS bytes,
//! peak RSS so far (the kernel's high-water mark) bytes, minor faults so far. A 1.0 reader skips
//! the frame as an unknown kind.

use serde::Serialize;

use crate::frame::FrameHeader;

/// Frame kind of a samples frame.
pub(crate) const KIND_SAMPLES: u8 = 3;
/// Bytes per sample in a samples frame.
pub const SAMPLE_BYTES: usize = 32;

/// The recorded process's memory at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessSample {
    /// Trace timestamp (ns, the events' clock).
    pub ts: u64,
    /// Resident set size, bytes (`/proc/self/statm`'s resident pages × page size).
    pub rss_bytes: u64,
    /// Peak resident set size of the process so far, bytes (`getrusage`'s `ru_maxrss`).
    pub hwm_bytes: u64,
    /// Minor page faults of the process so far (`getrusage`'s `ru_minflt`).
    pub minor_faults: u64,
}

/// The RSS curve of a trace in three figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RssSummary {
    /// Samples in the trace.
    pub samples: usize,
    /// RSS at the first sample (the recorder's start, before `main`).
    pub baseline_bytes: u64,
    /// Largest RSS seen: the greatest sampled RSS or high-water mark.
    pub peak_bytes: u64,
    /// RSS at the last sample (the recorder's end).
    pub end_bytes: u64,
    /// Minor faults between the first and the last sample.
    pub minor_faults: u64,
}

impl RssSummary {
    /// The summary of `samples` (in time order); `None` when there are none.
    pub fn of(samples: &[ProcessSample]) -> Option<RssSummary> {
        let (first, last) = (samples.first()?, samples.last()?);
        Some(RssSummary {
            samples: samples.len(),
            baseline_bytes: first.rss_bytes,
            peak_bytes: samples
                .iter()
                .map(|s| s.rss_bytes.max(s.hwm_bytes))
                .max()
                .unwrap_or(0),
            end_bytes: last.rss_bytes,
            minor_faults: last.minor_faults.saturating_sub(first.minor_faults),
        })
    }

    /// Peak RSS above the baseline: what the program's run added, heap and all.
    pub fn heap_peak_bytes(&self) -> u64 {
        self.peak_bytes.saturating_sub(self.baseline_bytes)
    }
}

/// Appends a samples frame holding `samples` to `out` (nothing if there are none).
pub(crate) fn put_samples(out: &mut Vec<u8>, samples: &[ProcessSample]) {
    let Some(first) = samples.first() else {
        return;
    };
    let mut body = Vec::with_capacity(samples.len() * SAMPLE_BYTES);
    for s in samples {
        for v in [s.ts, s.rss_bytes, s.hwm_bytes, s.minor_faults] {
            body.extend_from_slice(&v.to_le_bytes());
        }
    }
    let h = FrameHeader {
        kind: KIND_SAMPLES,
        flags: crate::frame::FLAG_STORED,
        thread: 0,
        event_count: samples.len() as u32,
        first_ts: first.ts,
        last_ts: samples[samples.len() - 1].ts,
        raw_len: body.len() as u32,
        stored_len: 0,
        crc: 0,
    };
    crate::frame::put_frame(out, h, &body);
}

/// Decodes a samples frame's payload (its CRC already checked), appending to `out`.
pub(crate) fn decode(
    h: &FrameHeader,
    stored: &[u8],
    out: &mut Vec<ProcessSample>,
) -> Result<(), String> {
    if h.flags & crate::frame::FLAG_STORED == 0 || h.thread != 0 {
        return Err("a samples frame must be stored uncompressed, with thread 0".into());
    }
    if stored.len() != h.event_count as usize * SAMPLE_BYTES {
        return Err(format!(
            "a samples frame of {} samples holds {} bytes, not {}",
            h.event_count,
            stored.len(),
            h.event_count as usize * SAMPLE_BYTES
        ));
    }
    let start = out.len();
    let mut prev = h.first_ts;
    for c in stored.chunks_exact(SAMPLE_BYTES) {
        let v = |i: usize| u64::from_le_bytes(c[i * 8..i * 8 + 8].try_into().unwrap());
        let s = ProcessSample {
            ts: v(0),
            rss_bytes: v(1),
            hwm_bytes: v(2),
            minor_faults: v(3),
        };
        if s.ts < prev {
            return Err(format!("sample at {} ns goes back before {prev} ns", s.ts));
        }
        prev = s.ts;
        out.push(s);
    }
    if out.len() > start && (out[start].ts != h.first_ts || prev != h.last_ts) {
        return Err("the samples' timestamps differ from the frame header's".into());
    }
    Ok(())
}
