//! Embeds what built `replay`: the git commit (`unknown` outside a checkout or without git),
//! the compiler version and the cargo profile.

use std::process::Command;

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        run("git", &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ALLOCLAB_COMMIT={commit}");
    if let Some(dir) = run("git", &["rev-parse", "--absolute-git-dir"]) {
        // Rebuild the facts when HEAD moves (a commit, a checkout).
        println!("cargo:rerun-if-changed={dir}/HEAD");
        println!("cargo:rerun-if-changed={dir}/logs/HEAD");
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = run(&rustc, &["--version"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=ALLOCLAB_RUSTC={version}");
    // The flags that shape the code: profile, optimisation, debug info, and any RUSTFLAGS.
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS")
        .unwrap_or_default()
        .replace('\x1f', " ");
    let profile = format!(
        "{} (opt-level {}, debug {}{})",
        std::env::var("PROFILE").unwrap_or_default(),
        std::env::var("OPT_LEVEL").unwrap_or_default(),
        std::env::var("DEBUG").unwrap_or_default(),
        if flags.trim().is_empty() {
            String::new()
        } else {
            format!(", RUSTFLAGS {}", flags.trim())
        }
    );
    println!("cargo:rustc-env=ALLOCLAB_PROFILE={profile}");
    // The OS-call wrappers of src/interpose.rs must be reachable from shared libraries
    // (tcmalloc, `preload:` libraries), not only from code linked into `replay`.
    for sym in [
        "mmap", "mmap64", "munmap", "mremap", "madvise", "brk", "sbrk",
    ] {
        println!("cargo:rustc-link-arg-bin=replay=-Wl,--export-dynamic-symbol={sym}");
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
}
