//! The environment a run happened in: machine, kernel, transparent huge pages, libraries and
//! the build of `replay` itself. Recorded with every run (runs.parquet).

use serde::{Deserialize, Serialize};

/// What built this `replay` (embedded by build.rs).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct BuildInfo {
    pub version: String,
    pub commit: String,
    pub rustc: String,
    pub profile: String,
}

/// This build's facts.
pub fn build_info() -> BuildInfo {
    BuildInfo {
        version: env!("CARGO_PKG_VERSION").into(),
        commit: env!("ALLOCLAB_COMMIT").into(),
        rustc: env!("ALLOCLAB_RUSTC").into(),
        profile: env!("ALLOCLAB_PROFILE").into(),
    }
}

/// The machine's facts.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Environment {
    pub host: String,
    /// The distribution (`PRETTY_NAME` of /etc/os-release), or `unknown`.
    pub os: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: u32,
    /// The selected transparent-huge-page mode (`always`, `madvise`, `never`), or `unknown`.
    pub thp_enabled: String,
    pub glibc_version: String,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// The word in brackets of a sysfs choice list (`always [madvise] never` → `madvise`).
pub fn selected(choices: &str) -> Option<&str> {
    let a = choices.find('[')?;
    let b = choices[a..].find(']')?;
    Some(&choices[a + 1..a + b])
}

impl Environment {
    /// Reads the facts of this machine.
    pub fn detect() -> Environment {
        // SAFETY: uname fills the plain struct it is given.
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let ok = unsafe { libc::uname(&mut u) } == 0;
        let field = |f: &[libc::c_char]| {
            // SAFETY: uname's fields are NUL-terminated within their arrays.
            unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        let (host, kernel) = if ok {
            (field(&u.nodename), field(&u.release))
        } else {
            ("unknown".into(), "unknown".into())
        };
        let cpu_model = read("/proc/cpuinfo")
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        // SAFETY: sysconf has no preconditions.
        let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as u32;
        let thp_enabled = read("/sys/kernel/mm/transparent_hugepage/enabled")
            .and_then(|s| selected(&s).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let os = read("/etc/os-release")
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim().trim_matches('"').to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        Environment {
            host,
            os,
            kernel,
            cpu_model,
            cpus,
            thp_enabled,
            glibc_version: crate::adapter::system::glibc_version(),
        }
    }
}

/// Bytes of memory available now (`MemAvailable` of /proc/meminfo).
pub fn mem_available() -> Option<u64> {
    read("/proc/meminfo")?
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<u64>()
        .ok()
        .map(|kb| kb * 1024)
}

#[cfg(test)]
mod tests {
    #[test]
    fn selected_mode() {
        assert_eq!(super::selected("always [madvise] never\n"), Some("madvise"));
        assert_eq!(super::selected("never"), None);
    }
}
