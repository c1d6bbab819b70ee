//! The few facts about the running system a header needs. All of the crate's `unsafe` is here.

/// CLOCK_MONOTONIC now and its resolution, both in ns.
pub fn monotonic_now_and_resolution() -> (u64, u64) {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let mut res = now;
    // SAFETY: both pointers are to live, writable timespecs; CLOCK_MONOTONIC always exists on
    // Linux, so the calls cannot fail (and if they did, the zeroed values stay valid).
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
        libc::clock_getres(libc::CLOCK_MONOTONIC, &mut res);
    }
    (timespec_ns(&now), timespec_ns(&res))
}

/// CLOCK_MONOTONIC now, in ns.
pub fn monotonic_now_ns() -> u64 {
    monotonic_now_and_resolution().0
}

fn timespec_ns(t: &libc::timespec) -> u64 {
    (t.tv_sec as u64).wrapping_mul(1_000_000_000) + t.tv_nsec as u64
}

/// Wall-clock time in ns since the Unix epoch.
pub fn unix_now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The parent process id.
pub fn parent_pid() -> u32 {
    // SAFETY: getppid has no preconditions and cannot fail.
    unsafe { libc::getppid() as u32 }
}

/// The page size in bytes.
pub fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions; it returns -1 only for unknown names.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as u32 } else { 4096 }
}

/// This machine's host name ("" if it cannot be read).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its full length, which is what we pass.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}
