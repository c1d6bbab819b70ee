//! Small wrappers over the kernel interfaces the engine reads: RSS from /proc/self/statm
//! without allocating, the VmHWM high-water mark and its reset, getrusage, CPU pinning, and
//! the time-stamp counter the timed pass reads around each call.

use std::io;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Reads this process's resident set size from /proc/self/statm through a descriptor opened
/// once, into a stack buffer: safe to call from the sampler while the replay runs.
pub struct Statm {
    fd: i32,
    page: u64,
}

impl Statm {
    /// Opens /proc/self/statm.
    pub fn open() -> io::Result<Statm> {
        // SAFETY: a NUL-terminated path; the descriptor is owned by the returned value.
        let fd = unsafe {
            libc::open(
                c"/proc/self/statm".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        Ok(Statm { fd, page })
    }

    /// Resident bytes now (0 if the read fails).
    pub fn rss_bytes(&self) -> u64 {
        let mut buf = [0u8; 256];
        // SAFETY: reads at most `buf.len()` bytes into a local buffer.
        let n = unsafe { libc::pread(self.fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            return 0;
        }
        // "size resident shared text lib data dt": the second field.
        let mut fields = buf[..n as usize].split(|b| *b == b' ');
        fields.next();
        let pages = fields.next().map_or(0, |f| {
            f.iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |v, b| v * 10 + (b - b'0') as u64)
        });
        pages * self.page
    }
}

impl Drop for Statm {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// Figures of /proc/self/smaps_rollup, bytes: the kernel's own sum over every mapping, read
/// beside statm to cross-check it and to see transparent huge pages (AnonHugePages).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Smaps {
    pub rss: u64,
    pub pss: u64,
    pub anonymous: u64,
    pub anon_huge_pages: u64,
}

impl Smaps {
    /// Reads /proc/self/smaps_rollup into a stack buffer (no allocation: callable inside the
    /// replay); None if it cannot be read. It walks every mapping of the process, so it costs
    /// tens of µs: it is read once at the peak-live op and once after the last op, never per op.
    pub fn read() -> Option<Smaps> {
        let mut buf = [0u8; 2048];
        // SAFETY: a NUL-terminated path; the descriptor is closed below.
        let fd = unsafe {
            libc::open(
                c"/proc/self/smaps_rollup".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return None;
        }
        let mut len = 0usize;
        while len < buf.len() {
            // SAFETY: reads at most the rest of the local buffer.
            let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(fd) };
        let mut s = Smaps::default();
        let mut found = false;
        for line in buf[..len].split(|b| *b == b'\n') {
            let field = match line.iter().position(|b| *b == b':') {
                Some(c) => (&line[..c], &line[c + 1..]),
                None => continue,
            };
            let kb = field
                .1
                .iter()
                .skip_while(|b| **b == b' ')
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |v, b| v * 10 + (b - b'0') as u64);
            match field.0 {
                b"Rss" => {
                    s.rss = kb * 1024;
                    found = true;
                }
                b"Pss" => s.pss = kb * 1024,
                b"Anonymous" => s.anonymous = kb * 1024,
                b"AnonHugePages" => s.anon_huge_pages = kb * 1024,
                _ => {}
            }
        }
        found.then_some(s)
    }

    /// Whether `statm_rss` (read at about the same moment) and this Rss differ by more than one
    /// page per MiB of the larger.
    pub fn disagrees_with(&self, statm_rss: u64) -> bool {
        self.disagrees_with_range(statm_rss, statm_rss)
    }

    /// Whether this Rss lies more than one page per MiB outside `[lo, hi]`: statm read just
    /// before and just after it (other threads may map and unmap in between).
    pub fn disagrees_with_range(&self, lo: u64, hi: u64) -> bool {
        let (lo, hi) = (lo.min(hi), lo.max(hi));
        let tolerance = (self.rss.max(hi) / 256).max(4096);
        self.rss + tolerance < lo || self.rss > hi + tolerance
    }
}

/// The CPU the calling thread runs on now (sched_getcpu: a vDSO call, no system call on
/// x86-64), or None.
#[inline]
pub fn current_cpu() -> Option<u32> {
    // SAFETY: sched_getcpu has no preconditions.
    let c = unsafe { libc::sched_getcpu() };
    (c >= 0).then_some(c as u32)
}

/// Turns transparent huge pages off for this process and its children (PR_SET_THP_DISABLE:
/// MADV_HUGEPAGE and THP "always" are then ignored); false if the kernel refuses.
pub fn disable_thp() -> bool {
    // SAFETY: prctl with PR_SET_THP_DISABLE takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) == 0 }
}

/// Resets VmHWM (the peak RSS) to the current RSS; false if the kernel refuses.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// VmHWM: the largest RSS since the start or the last [`reset_peak_rss`].
pub fn peak_rss_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

/// Resource usage of the whole process (all threads).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Usage {
    pub minor_faults: u64,
    pub major_faults: u64,
    pub voluntary_ctx_switches: u64,
    pub involuntary_ctx_switches: u64,
    pub user_cpu_ns: u64,
    pub sys_cpu_ns: u64,
}

impl Usage {
    /// getrusage(RUSAGE_SELF) now.
    pub fn now() -> Usage {
        // SAFETY: getrusage fills the plain struct it is given.
        let mut r: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
        let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1000;
        Usage {
            minor_faults: r.ru_minflt as u64,
            major_faults: r.ru_majflt as u64,
            voluntary_ctx_switches: r.ru_nvcsw as u64,
            involuntary_ctx_switches: r.ru_nivcsw as u64,
            user_cpu_ns: ns(r.ru_utime),
            sys_cpu_ns: ns(r.ru_stime),
        }
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &Usage) -> Usage {
        Usage {
            minor_faults: self.minor_faults - earlier.minor_faults,
            major_faults: self.major_faults - earlier.major_faults,
            voluntary_ctx_switches: self.voluntary_ctx_switches - earlier.voluntary_ctx_switches,
            involuntary_ctx_switches: self.involuntary_ctx_switches
                - earlier.involuntary_ctx_switches,
            user_cpu_ns: self.user_cpu_ns - earlier.user_cpu_ns,
            sys_cpu_ns: self.sys_cpu_ns - earlier.sys_cpu_ns,
        }
    }
}

/// Pins the calling thread to `cpu`; false if the kernel refuses.
pub fn pin_to(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it; the call only
    // reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Online CPUs.
pub fn cpus() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize
}

/// Nanoseconds since the Unix epoch.
pub fn unix_now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The time-stamp counter (constant-rate on this machine's CPUs: `constant_tsc nonstop_tsc`).
#[inline(always)]
pub fn ticks() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: rdtsc has no preconditions on x86-64.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        START.get_or_init(Instant::now).elapsed().as_nanos() as u64
    }
}

/// The counter's rate and cost: ns per tick (measured against the monotonic clock over
/// `span`) and the median difference of two back-to-back reads, in ns (in a VM here, ~26
/// ticks, ~10 ns, with rare 1-tick outliers, so the minimum would understate it).
pub fn calibrate(span: Duration) -> (f64, f64) {
    let (t0, c0) = (Instant::now(), ticks());
    while t0.elapsed() < span {
        std::hint::spin_loop();
    }
    let (c1, t1) = (ticks(), Instant::now());
    let ns_per_tick = (t1 - t0).as_nanos() as f64 / (c1 - c0).max(1) as f64;
    let mut d: Vec<u64> = (0..10_001)
        .map(|_| {
            let a = ticks();
            ticks() - a
        })
        .collect();
    d.sort_unstable();
    (ns_per_tick, d[d.len() / 2] as f64 * ns_per_tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_reads_a_plausible_rss() {
        let s = Statm::open().unwrap();
        let r = s.rss_bytes();
        assert!(r > 100 << 10 && r < 64 << 30, "{r}");
        assert!(peak_rss_bytes().unwrap() >= r / 2);
        let m = Smaps::read().expect("smaps_rollup is readable");
        assert!(
            m.rss > 100 << 10 && m.pss <= m.rss && m.anonymous <= m.rss,
            "{m:?}"
        );
        assert!(
            !m.disagrees_with(m.rss) && m.disagrees_with(m.rss * 2),
            "{m:?}"
        );
    }

    #[test]
    fn tsc_rate_is_plausible() {
        let (ns, overhead) = calibrate(Duration::from_millis(20));
        assert!(ns > 0.05 && ns < 10.0, "{ns} ns per tick");
        assert!(overhead < 1000.0, "{overhead}");
    }
}
