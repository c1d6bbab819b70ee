//! The recorder's options: one table, read once from `ALLOCLAB_*` environment variables with
//! `getenv` (which never allocates), bad values warned about and replaced by the default.

use std::ffi::CStr;
use std::sync::OnceLock;

/// Every option: name, default, meaning. README.md shows the same table.
pub const TABLE: &[(&str, &str, &str)] = &[
    (
        "ALLOCLAB_OUTPUT",
        "alloclab.%p.trace.zst",
        "trace path; %p is the pid. Without %p the first process writes the path itself and \
         every other one (forked children, exec'd programs) PATH-with-.<pid>-before-the-extension",
    ),
    (
        "ALLOCLAB_FLUSH_MS",
        "100",
        "longest time between an event and its frame reaching the file (1..=10000)",
    ),
    (
        "ALLOCLAB_RING_EVENTS",
        "262144",
        "per-thread ring capacity in events of 32 bytes (power of two, 1024..=16777216); \
         while the writer encodes a frame the thread goes on into its ring, so a ring smaller \
         than a frame makes a busy thread wait",
    ),
    (
        "ALLOCLAB_FRAME_EVENTS",
        "262144",
        "events per frame for busy threads (1024..=1048576); larger frames compress better \
         (churn: 2.84 bytes/event at 65536, 2.57 at 262144) and hold up to 40 bytes/event of \
         staging per busy thread",
    ),
    ("ALLOCLAB_ZSTD_LEVEL", "1", "zstd level of frames (-7..=19)"),
    (
        "ALLOCLAB_CLOCK",
        "auto",
        "auto: the TSC when the CPU and kernel vouch for it (constant_tsc, nonstop_tsc, \
         rdtscp, clocksource tsc), else clock_gettime; tsc: the same, but say so if it cannot; \
         monotonic: always clock_gettime(CLOCK_MONOTONIC)",
    ),
    (
        "ALLOCLAB_FOLLOW_FORK",
        "1",
        "0: a forked child stops recording instead of writing its own trace",
    ),
    (
        "ALLOCLAB_OS_CALLS",
        "0",
        "1: also record the program's mmap, munmap, mremap, madvise and brk/sbrk calls as OS \
         call events (format 1.2; record --os-calls sets it)",
    ),
    (
        "ALLOCLAB_DISABLE",
        "0",
        "1: record nothing (the hooks only forward to glibc)",
    ),
    (
        "ALLOCLAB_VERBOSE",
        "0",
        "1: print the options at start and one summary line per process at the end",
    ),
];

/// Parsed options.
#[derive(Clone, Debug)]
pub struct Options {
    pub output: String,
    pub flush_ms: u64,
    pub ring_events: u64,
    pub frame_events: usize,
    pub zstd_level: i32,
    /// [`crate::clock::AUTO`], [`crate::clock::TSC`] or [`crate::clock::MONOTONIC`].
    pub clock: u8,
    pub follow_fork: bool,
    pub os_calls: bool,
    pub disable: bool,
    pub verbose: bool,
}

static OPTIONS: OnceLock<Options> = OnceLock::new();

/// The options (read from the environment on first use).
pub fn get() -> &'static Options {
    OPTIONS.get_or_init(|| {
        let _g = crate::local::InternalScope::enter();
        read(|name| {
            let c = std::ffi::CString::new(name).ok()?;
            // SAFETY: getenv with a NUL-terminated name; the result, if any, is a C string
            // owned by the environment, copied out at once.
            unsafe {
                let p = libc::getenv(c.as_ptr());
                (!p.is_null()).then(|| CStr::from_ptr(p).to_string_lossy().into_owned())
            }
        })
    })
}

fn default(name: &str) -> &'static str {
    TABLE.iter().find(|r| r.0 == name).map_or("", |r| r.1)
}

/// Parses the options from `env` (a lookup function), warning about bad values.
pub fn read(env: impl Fn(&str) -> Option<String>) -> Options {
    let num = |name: &str, lo: i64, hi: i64| -> i64 {
        let d: i64 = default(name).parse().unwrap_or(0);
        match env(name) {
            None => d,
            Some(v) => match v.trim().parse::<i64>() {
                Ok(n) if (lo..=hi).contains(&n) => n,
                _ => {
                    crate::diag::say(&format_args!(
                        "{name}={v:?} is not a number in {lo}..={hi}; using {d}"
                    ));
                    d
                }
            },
        }
    };
    let flag = |name: &str| num(name, 0, 1) == 1;
    let mut ring = num("ALLOCLAB_RING_EVENTS", 1024, 1 << 24) as u64;
    if !ring.is_power_of_two() {
        let up = ring.next_power_of_two();
        crate::diag::say(&format_args!(
            "ALLOCLAB_RING_EVENTS={ring} is not a power of two; using {up}"
        ));
        ring = up;
    }
    let output = match env("ALLOCLAB_OUTPUT") {
        Some(v) if !v.is_empty() => v,
        _ => default("ALLOCLAB_OUTPUT").to_string(),
    };
    let clock = match env("ALLOCLAB_CLOCK").as_deref().map(str::trim) {
        None | Some("auto") => crate::clock::AUTO,
        Some("tsc") => crate::clock::TSC,
        Some("monotonic") => crate::clock::MONOTONIC,
        Some(v) => {
            crate::diag::say(&format_args!(
                "ALLOCLAB_CLOCK={v:?} is not auto, tsc or monotonic; using auto"
            ));
            crate::clock::AUTO
        }
    };
    Options {
        output,
        clock,
        flush_ms: num("ALLOCLAB_FLUSH_MS", 1, 10_000) as u64,
        ring_events: ring,
        frame_events: num("ALLOCLAB_FRAME_EVENTS", 1024, 1 << 20) as usize,
        zstd_level: num("ALLOCLAB_ZSTD_LEVEL", -7, 19) as i32,
        follow_fork: flag("ALLOCLAB_FOLLOW_FORK"),
        os_calls: flag("ALLOCLAB_OS_CALLS"),
        disable: flag("ALLOCLAB_DISABLE"),
        verbose: flag("ALLOCLAB_VERBOSE"),
    }
}

impl Options {
    /// One line listing every option's value.
    pub fn describe(&self) -> String {
        format!(
            "ALLOCLAB_OUTPUT={} ALLOCLAB_FLUSH_MS={} ALLOCLAB_RING_EVENTS={} \
             ALLOCLAB_FRAME_EVENTS={} ALLOCLAB_ZSTD_LEVEL={} ALLOCLAB_CLOCK={} \
             ALLOCLAB_FOLLOW_FORK={} ALLOCLAB_OS_CALLS={} ALLOCLAB_DISABLE={} \
             ALLOCLAB_VERBOSE={}",
            self.output,
            self.flush_ms,
            self.ring_events,
            self.frame_events,
            self.zstd_level,
            ["auto", "monotonic", "tsc"][self.clock as usize],
            self.follow_fork as u8,
            self.os_calls as u8,
            self.disable as u8,
            self.verbose as u8
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bad_values() {
        let o = read(|_| None);
        assert_eq!(o.output, "alloclab.%p.trace.zst");
        assert_eq!(
            (o.flush_ms, o.ring_events, o.frame_events),
            (100, 262144, 262144)
        );
        assert!(o.follow_fork && !o.disable && !o.verbose && !o.os_calls);
        assert!(read(|n| (n == "ALLOCLAB_OS_CALLS").then(|| "1".into())).os_calls);
        assert_eq!(o.clock, crate::clock::AUTO);
        let o = read(|n| match n {
            "ALLOCLAB_FLUSH_MS" => Some("0".into()),
            "ALLOCLAB_RING_EVENTS" => Some("5000".into()),
            "ALLOCLAB_OUTPUT" => Some("x.zst".into()),
            "ALLOCLAB_FOLLOW_FORK" => Some("0".into()),
            "ALLOCLAB_CLOCK" => Some("monotonic".into()),
            _ => None,
        });
        assert_eq!((o.flush_ms, o.ring_events), (100, 8192));
        assert_eq!(o.output, "x.zst");
        assert!(!o.follow_fork);
        assert_eq!(o.clock, crate::clock::MONOTONIC);
        assert_eq!(
            read(|n| (n == "ALLOCLAB_CLOCK").then(|| "hpet".into())).clock,
            0
        );
    }
}
