//! Peak resident memory of one child process, from its own resource usage (`wait4`), so that
//! other children of the same process (tests running in parallel) do not count. Shared by the
//! `reader_memory` bench and `tests/memory.rs`.

use std::process::{Command, Stdio};

/// Runs `cmd` (output discarded) to its end; returns its peak RSS in KiB and its exit code
/// (`None` if a signal ended it).
pub fn peak_rss_kib(cmd: &mut Command) -> std::io::Result<(u64, Option<i32>)> {
    let child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: all-zero bytes are a valid `rusage` (plain integers).
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `pid` is our child, not yet waited for (`child` is never waited on: dropping
        // a `Child` does not wait); `status` and `ru` are valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    drop(child);
    let code = libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status));
    Ok((ru.ru_maxrss as u64, code))
}
