//! Allocator adapters: one trait ([`Allocator`]), one file per allocator.
//!
//! The engine is generic over the trait, so each adapter gets its own replay loop with its
//! calls made directly. Rust allocators (fancy, bump) are called through `#[inline(never)]`
//! methods so that, like the C libraries, every allocator pays exactly one call per op and none
//! gets its fast path inlined into the harness.
//!
//! Adding an allocator: write `adapter/<name>.rs` with a type implementing [`Allocator`] and an
//! `open(&AdapterContext) -> Result<Self, ReplayError>`, then add one line to the
//! `adapters!` table below (its name, the type, what it is).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ReplayError;

pub mod bump;
pub mod check;
pub mod fancy;
pub mod jemalloc;
pub mod mempool;
pub mod mimalloc;
pub mod system;
pub mod tcmalloc;

/// What the allocator reports about itself at the end of a replay.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct AllocStats {
    /// Bytes in use by the program's blocks, as the allocator counts them.
    pub allocated: Option<u64>,
    /// Resident or mapped bytes, as the allocator counts them.
    pub resident: Option<u64>,
    /// Every figure the allocator reports, by name.
    pub all: serde_json::Map<String, serde_json::Value>,
}

impl AllocStats {
    /// Adds figure `name`.
    pub fn put(&mut self, name: &str, v: impl Into<serde_json::Value>) {
        self.all.insert(name.to_string(), v.into());
    }
}

/// An allocator under test.
///
/// # Safety
/// Implementors must behave as the C functions they stand for: `malloc`, `calloc` (zeroed),
/// `realloc` (`p` null acts as malloc; `size > 0`; on failure returns null and leaves `p`
/// valid) and `aligned` (`align` a power of two) return null or a block of at least `size`
/// bytes aligned to at least 16 (or `align`) that no other live block overlaps; `free(null)`
/// does nothing. They must not call back into the harness, and must be callable from any
/// thread (a block may be freed by a thread other than the one that allocated it).
pub unsafe trait Allocator: Sync {
    /// `malloc(size)`.
    ///
    /// # Safety
    /// See the trait.
    unsafe fn malloc(&self, size: usize) -> *mut u8;
    /// `calloc(1, size)`.
    ///
    /// # Safety
    /// See the trait.
    unsafe fn calloc(&self, size: usize) -> *mut u8;
    /// `realloc(p, size)`, `size > 0`.
    ///
    /// # Safety
    /// `p` is null or a live block of this allocator, not used again unless null is returned.
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8;
    /// An aligned allocation (`posix_memalign` semantics, whatever function the trace used).
    ///
    /// # Safety
    /// `align` is a power of two.
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8;
    /// `free(p)`.
    ///
    /// # Safety
    /// `p` is null or a live block of this allocator, never used again.
    unsafe fn free(&self, p: *mut u8);
    /// `malloc_usable_size(p)`.
    ///
    /// # Safety
    /// `p` is a live block of this allocator.
    unsafe fn usable_size(&self, p: *mut u8) -> usize;
    /// Whether [`Allocator::usable_size`] answers for this allocator's blocks (false: a
    /// preloaded library without its own `malloc_usable_size`).
    fn has_usable_size(&self) -> bool {
        true
    }
    /// What the allocator reports (called with every replay thread gone).
    fn stats(&self) -> AllocStats;
    /// A reader of the allocator's statistics while it runs ([`crate::introspect`]), made
    /// before the barrier; None when the allocator has none to give (`bump`, `preload:`).
    fn probe(&self) -> Option<Box<dyn crate::introspect::Probe>> {
        None
    }
    /// Called by each replay thread before its first op.
    fn thread_attach(&self) {}
    /// Called by each replay thread after its last op.
    fn thread_detach(&self) {}
    /// The allocator's version, as best known.
    fn version(&self) -> String;
}

/// What an adapter may want to know when it is opened.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AdapterContext {
    /// Largest single request of the plan, bytes.
    pub max_request: u64,
    /// Replay threads.
    pub threads: u32,
}

/// Calls `f` with an adapter: the engine's entry point, monomorphised per allocator.
pub trait WithAdapter {
    type Output;
    /// Runs with allocator `a` (`spec` says which).
    fn call<A: Allocator>(self, a: &A, spec: &AllocSpec) -> Self::Output;
}

macro_rules! adapters {
    ($( $variant:ident => $name:literal, $module:ident :: $ty:ident, $about:literal; )*) => {
        /// A parsed `--alloc` entry.
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum AllocSpec {
            $( #[doc = $about] $variant, )*
            /// `preload:/path/lib.so`: glibc's entry points, replaced by the library through
            /// `LD_PRELOAD` in the child that replays.
            Preload(PathBuf),
        }

        /// Names and one-line descriptions of the allocators, for `--list-allocators`.
        pub const ALLOCATORS: &[(&str, &str)] = &[
            $( ($name, $about), )*
            ("preload:/path/lib.so", "any malloc replacement, through LD_PRELOAD (glibc's entry points)"),
        ];

        impl AllocSpec {
            /// The adapter name used in results (`preload:<path>` as given).
            pub fn name(&self) -> String {
                match self {
                    $( AllocSpec::$variant => $name.to_string(), )*
                    AllocSpec::Preload(p) => format!("preload:{}", p.display()),
                }
            }

            /// Parses one `--alloc` entry; an unknown name lists the valid ones.
            pub fn parse(s: &str) -> Result<AllocSpec, ReplayError> {
                let s = s.trim();
                if let Some(p) = s.strip_prefix("preload:") {
                    return Ok(AllocSpec::Preload(PathBuf::from(p)));
                }
                match s {
                    $( $name => Ok(AllocSpec::$variant), )*
                    _ => Err(ReplayError::UnknownAllocator {
                        name: s.to_string(),
                        valid: ALLOCATORS.iter().map(|a| a.0).collect::<Vec<_>>().join(", "),
                    }),
                }
            }

            /// Opens the adapter and calls `f` with it.
            pub fn with<W: WithAdapter>(
                &self,
                ctx: &AdapterContext,
                f: W,
            ) -> Result<W::Output, ReplayError> {
                match self {
                    $( AllocSpec::$variant => Ok(f.call(&$module::$ty::open(self, ctx)?, self)), )*
                    AllocSpec::Preload(_) => Ok(f.call(&system::System::open(self, ctx)?, self)),
                }
            }
        }
    };
}

adapters! {
    System => "system", system::System, "glibc's malloc (the process's libc)";
    Jemalloc => "jemalloc", jemalloc::Jemalloc, "jemalloc 5.3, linked in (tikv-jemalloc-sys, `_rjem_` prefix, stats on)";
    Mimalloc => "mimalloc", mimalloc::Mimalloc, "mimalloc, linked in (libmimalloc-sys)";
    Tcmalloc => "tcmalloc", tcmalloc::Tcmalloc, "gperftools tcmalloc (Debian's libtcmalloc_minimal.so.4, dlopen'ed)";
    Fancy => "fancy", fancy::Fancy, "alloclab's allocator (allocator/)";
    FancyReclaim => "fancy-reclaim", fancy::Fancy, "fancy with its background reclaimer on";
    Bump => "bump", bump::Bump, "never frees (a per-thread ring): the floor that shows the harness's own cost";
    MempoolBaseline => "mempool-baseline", mempool::Mempool, "the AllocatorBench pool, one global lock (allocator/mempool)";
    MempoolSharded => "mempool-sharded", mempool::Mempool, "the AllocatorBench pool, per-class locks, refilled under the global lock";
    MempoolPercls => "mempool-percls", mempool::Mempool, "the AllocatorBench pool, per-class locks, each class carving its own chunks";
    Check => "check", check::Check, "glibc malloc with block headers that catch frees of blocks not live (a self-test of the replay)";
}

impl AllocSpec {
    /// Checks, before any replay, that the allocator can be used here: a clear message for a
    /// missing tcmalloc or preload library.
    pub fn check_available(&self) -> Result<(), ReplayError> {
        match self {
            AllocSpec::Tcmalloc => tcmalloc::find_library().map(|_| ()),
            AllocSpec::Preload(p) => {
                if p.as_os_str().is_empty() {
                    return Err(ReplayError::BadInput(
                        "preload: needs a library path, as in preload:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
                            .into(),
                    ));
                }
                if !p.is_file() {
                    return Err(ReplayError::AllocatorUnavailable {
                        name: self.name(),
                        why: format!("{} is not a file", p.display()),
                    });
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Environment variables the child replaying with this allocator gets.
    pub fn child_env(&self) -> Vec<(String, String)> {
        match self {
            AllocSpec::Preload(p) => {
                let abs = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
                vec![("LD_PRELOAD".into(), abs.display().to_string())]
            }
            // Without it tcmalloc grows its heap with sbrk beside glibc's (docs/DESIGN.md, Facts).
            AllocSpec::Tcmalloc if std::env::var_os("TCMALLOC_SKIP_SBRK").is_none() => {
                vec![("TCMALLOC_SKIP_SBRK".into(), "true".into())]
            }
            _ => Vec::new(),
        }
    }

    /// Prefixes of environment variables that configure this allocator (recorded with a run).
    pub fn option_prefixes(&self) -> &'static [&'static str] {
        match self {
            AllocSpec::System | AllocSpec::Check => &["GLIBC_TUNABLES", "MALLOC_"],
            AllocSpec::Jemalloc => &["_RJEM_MALLOC_CONF", "MALLOC_CONF"],
            AllocSpec::Mimalloc => &["MIMALLOC_"],
            AllocSpec::Tcmalloc => &["TCMALLOC_"],
            AllocSpec::Fancy | AllocSpec::FancyReclaim => &["FANCY_"],
            AllocSpec::Bump => &[],
            AllocSpec::MempoolBaseline | AllocSpec::MempoolSharded | AllocSpec::MempoolPercls => {
                &[]
            }
            AllocSpec::Preload(_) => &[
                "LD_PRELOAD",
                "GLIBC_TUNABLES",
                "MALLOC_",
                "MIMALLOC_",
                "TCMALLOC_",
                "FANCY_",
                "JEMALLOC_",
            ],
        }
    }
}

/// Parses a comma-separated `--alloc` list (clap value parser).
pub fn parse_list(s: &str) -> Result<Vec<AllocSpec>, String> {
    let v: Result<Vec<_>, _> = s
        .split(',')
        .filter(|x| !x.trim().is_empty())
        .map(AllocSpec::parse)
        .collect();
    match v {
        Ok(v) if v.is_empty() => Err("no allocator given".into()),
        Ok(v) => Ok(v),
        Err(e) => Err(e.to_string()),
    }
}

/// `k=v` pairs of the environment variables starting with one of `prefixes`, space-separated.
pub fn options_in_env(prefixes: &[&str]) -> String {
    let mut v: Vec<String> = std::env::vars()
        .filter(|(k, _)| prefixes.iter().any(|p| k.starts_with(p)))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    v.sort();
    v.join(" ")
}
