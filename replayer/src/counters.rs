//! Hardware and scheduler counters of the replay loop, through `perf_event_open` (the
//! perf-event2 crate): page faults, context switches, CPU migrations, instructions, cycles,
//! cache and dTLB load misses, and the kernel's syscall tracepoints for the OS memory calls
//! (every allocator's, glibc's internal ones included).
//!
//! Each counter is opened in the replay child before any replay thread exists, for the whole
//! process (`pid` 0, any CPU) with `inherit`, so the threads created later count into it;
//! it is enabled at the barrier and disabled once the last replay thread is joined (an
//! enable/disable on an inherited counter reaches its children). A counter the machine or its
//! permissions refuse (a VM without a PMU: ENOENT; `perf_event_paranoid`: EACCES; no tracefs)
//! is recorded as unavailable with the reason; the others still count, and getrusage's
//! figures are in the runs table regardless.

use std::collections::BTreeMap;

use perf_event::events::{Cache, CacheId, CacheOp, CacheResult, Hardware, Software, Tracepoint};
use perf_event::{Builder, Counter};
use serde::{Deserialize, Serialize};

/// The counters, by their column name (`perf_<name>` / `kernel_<name>_calls`).
const SOFTWARE: [(&str, Software); 3] = [
    ("page_faults", Software::PAGE_FAULTS),
    ("context_switches", Software::CONTEXT_SWITCHES),
    ("cpu_migrations", Software::CPU_MIGRATIONS),
];

const HARDWARE: [(&str, Hardware); 3] = [
    ("instructions", Hardware::INSTRUCTIONS),
    ("cycles", Hardware::CPU_CYCLES),
    ("cache_misses", Hardware::CACHE_MISSES),
];

/// The syscall tracepoints counted (`syscalls:sys_enter_<name>`).
pub const SYSCALLS: [&str; 5] = ["mmap", "munmap", "mremap", "brk", "madvise"];

/// Counters to leave out, comma-separated names (`page_faults,sys_mmap`): each one costs the
/// replay something on every event it counts.
pub const SKIP_ENV: &str = "ALLOCLAB_PERF_SKIP";

fn skipped(name: &str) -> bool {
    std::env::var(SKIP_ENV)
        .is_ok_and(|v| v.split(',').any(|s| s.trim() == name || s.trim() == "all"))
}

/// What the counters read for one pass: values by name, and why the others are missing.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Readings {
    /// Counter values (scaled by enabled/running time when the kernel multiplexed them).
    pub values: BTreeMap<String, u64>,
    /// Counters that could not be opened or read, with the reason.
    pub unavailable: BTreeMap<String, String>,
}

impl Readings {
    /// The value of counter `name`, if it counted.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }

    /// `name: reason; …` for every unavailable counter, None if all counted.
    pub fn unavailable_text(&self) -> Option<String> {
        (!self.unavailable.is_empty()).then(|| {
            self.unavailable
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }
}

/// The open counters of one pass.
pub struct Counters {
    open: Vec<(String, Counter)>,
    unavailable: BTreeMap<String, String>,
}

fn why(e: &std::io::Error) -> String {
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
            " (no such event on this CPU or VM: no PMU exposed)"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            " (not permitted: lower /proc/sys/kernel/perf_event_paranoid or run with CAP_PERFMON)"
        }
        _ => "",
    };
    format!("{e}{hint}")
}

/// The id of tracepoint `syscalls/sys_enter_<name>`, from tracefs.
fn tracepoint_id(name: &str) -> Result<u64, String> {
    let mut last = String::new();
    for root in ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"] {
        let p = format!("{root}/events/syscalls/sys_enter_{name}/id");
        match std::fs::read_to_string(&p) {
            Ok(s) => {
                return s
                    .trim()
                    .parse()
                    .map_err(|_| format!("{p} does not hold a number"));
            }
            Err(e) => last = format!("{p}: {e}"),
        }
    }
    Err(format!(
        "{last} (tracefs is not mounted or not readable: mount -t tracefs nodev /sys/kernel/tracing, as root)"
    ))
}

impl Counters {
    /// Opens every counter (disabled) for this process and the threads it creates from now on.
    pub fn open() -> Counters {
        let mut c = Counters {
            open: Vec::new(),
            unavailable: BTreeMap::new(),
        };
        // Faults and switches happen in the kernel on the program's behalf: count them there.
        for (name, ev) in SOFTWARE {
            c.add(name, Builder::new(ev), false);
        }
        for (name, ev) in HARDWARE {
            c.add(name, Builder::new(ev), true);
        }
        let dtlb = Cache {
            which: CacheId::DTLB,
            operation: CacheOp::READ,
            result: CacheResult::MISS,
        };
        c.add("dtlb_load_misses", Builder::new(dtlb), true);
        for s in SYSCALLS {
            let name = format!("sys_{s}");
            match tracepoint_id(s).and_then(|id| {
                if skipped(&name) {
                    Err(format!("left out ({SKIP_ENV})"))
                } else {
                    Ok(id)
                }
            }) {
                Ok(id) => c.add(&name, Builder::new(Tracepoint::with_id(id)), false),
                Err(e) => {
                    c.unavailable.insert(name, e);
                }
            }
        }
        c
    }

    fn add(&mut self, name: &str, mut b: Builder<'_>, user_only: bool) {
        if skipped(name) {
            self.unavailable
                .insert(name.to_string(), format!("left out ({SKIP_ENV})"));
            return;
        }
        b.observe_self().any_cpu().inherit(true).enabled(false);
        // Tracepoints and software events fire in kernel context: excluding the kernel would
        // count nothing.
        b.exclude_kernel(user_only);
        match b.build() {
            Ok(c) => self.open.push((name.to_string(), c)),
            Err(e) => {
                self.unavailable.insert(name.to_string(), why(&e));
            }
        }
    }

    /// Starts counting (zeroing first).
    pub fn enable(&mut self) {
        for (name, c) in &mut self.open {
            if let Err(e) = c.reset().and_then(|_| c.enable()) {
                self.unavailable.insert(name.clone(), why(&e));
            }
        }
    }

    /// Stops counting.
    pub fn disable(&mut self) {
        for (name, c) in &mut self.open {
            if let Err(e) = c.disable() {
                self.unavailable.insert(name.clone(), why(&e));
            }
        }
    }

    /// What the counters read.
    pub fn read(&mut self) -> Readings {
        let mut r = Readings {
            values: BTreeMap::new(),
            unavailable: self.unavailable.clone(),
        };
        for (name, c) in &mut self.open {
            if r.unavailable.contains_key(name.as_str()) {
                continue;
            }
            match c.read_count_and_time() {
                Ok(v) if v.time_running == 0 && v.time_enabled > 0 => {
                    r.unavailable.insert(
                        name.clone(),
                        "never scheduled on the PMU (too many counters at once)".into(),
                    );
                }
                Ok(v) => {
                    let scaled = if v.time_running > 0 && v.time_running < v.time_enabled {
                        (v.count as f64 * v.time_enabled as f64 / v.time_running as f64) as u64
                    } else {
                        v.count
                    };
                    r.values.insert(name.clone(), scaled);
                }
                Err(e) => {
                    r.unavailable.insert(name.clone(), why(&e));
                }
            }
        }
        r
    }
}

/// The CPU frequency governor and boost (turbo) state, as sysfs says; None where the machine
/// does not expose them (most VMs).
pub fn cpu_governor() -> Option<String> {
    let mut govs: Vec<String> = (0..crate::sys::cpus())
        .filter_map(|c| {
            std::fs::read_to_string(format!(
                "/sys/devices/system/cpu/cpu{c}/cpufreq/scaling_governor"
            ))
            .ok()
        })
        .map(|s| s.trim().to_string())
        .collect();
    govs.sort();
    govs.dedup();
    (!govs.is_empty()).then(|| govs.join(","))
}

/// `on`/`off` from /sys/devices/system/cpu/cpufreq/boost (acpi-cpufreq, amd-pstate) or
/// intel_pstate's `no_turbo`; None if neither exists.
pub fn cpu_boost() -> Option<String> {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    if let Some(b) = read("/sys/devices/system/cpu/cpufreq/boost") {
        return Some(if b == "1" { "on" } else { "off" }.into());
    }
    read("/sys/devices/system/cpu/intel_pstate/no_turbo")
        .map(|n| if n == "1" { "off" } else { "on" }.into())
}
