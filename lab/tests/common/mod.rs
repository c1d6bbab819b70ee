//! What the lab's test binaries share.

use std::path::PathBuf;

pub fn target_dir() -> PathBuf {
    // <target>/<profile>/deps/lab-…
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `analyze` binary: ALLOCLAB_ANALYZE, or where `cargo build --profile analysis -p
/// analysis` puts it.
pub fn analyze_bin() -> PathBuf {
    let p = std::env::var_os("ALLOCLAB_ANALYZE")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("analysis/analyze"));
    assert!(
        p.is_file(),
        "{} is missing: build it first with `cargo build --locked --profile analysis -p analysis` \
         (scripts/test-all does), or point ALLOCLAB_ANALYZE at it",
        p.display()
    );
    p
}
