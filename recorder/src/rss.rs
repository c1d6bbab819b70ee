//! Samples of the process's memory (resident set, peak, minor faults) for the trace's samples
//! frames (format 1.1). Taken by the writer thread at each flush and by the session at its
//! start and end: a read of `/proc/self/statm` and of `/proc/self/status` into stack buffers
//! and a `getrusage`, no allocation. The peak is `VmHWM`, the high-water mark of this
//! program's own address space: `getrusage`'s `ru_maxrss` is not, since Linux carries the
//! maximum over `exec` (a program started by a big process would show that process's RSS).

use traces::ProcessSample;

use crate::clock;

/// The process's memory now, stamped on the trace's clock (0 while the clock's rate is not
/// known yet: the session's first sample, taken at time 0).
pub fn sample() -> ProcessSample {
    let map = clock::anchor_map();
    let ts = map.ns(map.rel(clock::ordered_stamp()));
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    let rss_bytes = statm_resident_pages().map_or(0, |p| p * page);
    let hwm_bytes = status_hwm_kib().map_or(0, |k| k * 1024);
    // SAFETY: a zeroed rusage is a valid value of this plain C struct.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live, writable rusage; RUSAGE_SELF always exists.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) } == 0;
    let minor_faults = if ok { ru.ru_minflt.max(0) as u64 } else { 0 };
    ProcessSample {
        ts,
        rss_bytes,
        hwm_bytes: hwm_bytes.max(rss_bytes),
        minor_faults,
    }
}

/// Reads the start of `path` into `buf` (no allocation); the bytes read.
fn read_proc<'a>(path: &std::ffi::CStr, buf: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: a NUL-terminated path; the descriptor is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `buf` is writable for its whole length.
    let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
    // SAFETY: `fd` is ours and open.
    unsafe { libc::close(fd) };
    buf.get(..usize::try_from(n).ok()?)
}

/// The second field of `/proc/self/statm` (resident pages).
fn statm_resident_pages() -> Option<u64> {
    let mut buf = [0u8; 128];
    let text = read_proc(c"/proc/self/statm", &mut buf)?;
    let field = text.split(|&b| b == b' ').nth(1)?;
    std::str::from_utf8(field).ok()?.trim().parse().ok()
}

/// `VmHWM` of `/proc/self/status`, in KiB.
fn status_hwm_kib() -> Option<u64> {
    let mut buf = [0u8; 4096];
    let text = read_proc(c"/proc/self/status", &mut buf)?;
    let line = text
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"VmHWM:"))?;
    let digits = line[6..]
        .split(|&b| b == b' ' || b == b'\t')
        .find(|f| !f.is_empty())?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_sample_sees_memory_this_process_makes_resident() {
        let before = super::sample();
        assert!(before.rss_bytes > 0 && before.hwm_bytes >= before.rss_bytes);
        let mut v = vec![0u8; 64 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&mut v);
        let after = super::sample();
        assert!(
            after.rss_bytes >= before.rss_bytes + (60 << 20),
            "{before:?} {after:?}"
        );
        assert!(after.minor_faults >= before.minor_faults + (60 << 20) / 4096);
        assert!(after.hwm_bytes >= after.rss_bytes, "{after:?}");
    }
}
