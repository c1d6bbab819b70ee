//! Shared by the tests that run real programs under the preload library.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;

/// The built `libfancy_preload.so` (cargo puts it in `target/*/deps` or next to it).
pub fn lib() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    for dir in [deps, deps.parent().unwrap()] {
        let p = dir.join("libfancy_preload.so");
        if p.exists() {
            return p;
        }
    }
    panic!(
        "libfancy_preload.so not found next to {}: build it with `cargo build -p fancy-preload`",
        exe.display()
    );
}

/// Gives the child the default action for SIGINT, SIGQUIT and SIGPIPE before it execs, so a
/// program's behaviour does not depend on how the test suite was started: a suite run as a
/// shell background job ignores SIGINT and SIGQUIT, the child would inherit that, and python3
/// then installs no SIGINT handler (its `test_threading` `test_interrupt_main_*` tests fail).
pub fn default_signals(cmd: &mut Command) -> &mut Command {
    // SAFETY: the closure runs in the forked child before exec and only calls `signal`, which is
    // async-signal-safe; it touches no lock and allocates nothing.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGPIPE] {
                if libc::signal(sig, libc::SIG_DFL) == libc::SIG_ERR {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        })
    }
}
