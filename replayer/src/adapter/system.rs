//! `system`: the process's libc malloc (glibc here). Also what `preload:` replays with: under
//! `LD_PRELOAD` these same entry points resolve to the preloaded library.

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

/// glibc's malloc, or whatever `LD_PRELOAD` put in its place.
pub struct System {
    preload: Option<String>,
    /// `malloc_usable_size` resolves into the same object as `malloc` (so it knows its blocks).
    usable_known: bool,
}

impl System {
    /// Opens the adapter (nothing to set up).
    pub fn open(spec: &AllocSpec, _: &AdapterContext) -> Result<System, ReplayError> {
        Ok(System {
            preload: match spec {
                AllocSpec::Preload(p) => Some(p.display().to_string()),
                _ => None,
            },
            usable_known: same_object("malloc_usable_size", "malloc"),
        })
    }
}

/// glibc's version string.
pub fn glibc_version() -> String {
    // SAFETY: returns a pointer to a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) }
        .to_string_lossy()
        .into_owned()
}

/// Whether `mallinfo2` resolves into glibc itself (not into a preloaded library).
fn mallinfo2_is_glibc() -> bool {
    // SAFETY: dladdr only reads the loader's tables; `info` is plain output data.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr());
        let mut info: libc::Dl_info = std::mem::zeroed();
        if f.is_null() || libc::dladdr(f, &mut info) == 0 || info.dli_fname.is_null() {
            return false;
        }
        std::ffi::CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .contains("libc.so")
    }
}

/// The file of the object that `name` resolves to in this process (None: not found).
fn object_of(name: &std::ffi::CStr) -> Option<String> {
    // SAFETY: dlsym/dladdr only read the loader's tables; `info` is plain output data and its
    // file name a NUL-terminated string the loader owns.
    unsafe {
        let f = libc::dlsym(libc::RTLD_DEFAULT, name.as_ptr());
        let mut info: libc::Dl_info = std::mem::zeroed();
        if f.is_null() || libc::dladdr(f, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        Some(
            std::ffi::CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned(),
        )
    }
}

/// Whether symbols `a` and `b` resolve into the same object: under `LD_PRELOAD`, a library
/// replacing `malloc` but not `malloc_usable_size` leaves glibc's, which must not be asked
/// about the library's blocks.
fn same_object(a: &str, b: &str) -> bool {
    let c = |s: &str| std::ffi::CString::new(s).ok();
    match (
        c(a).and_then(|a| object_of(&a)),
        c(b).and_then(|b| object_of(&b)),
    ) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// glibc's `mallinfo2` as stats.
pub fn mallinfo2_stats() -> AllocStats {
    // SAFETY: mallinfo2 takes no arguments and returns a plain struct.
    let m = unsafe { libc::mallinfo2() };
    let mut s = AllocStats {
        allocated: Some((m.uordblks + m.hblkhd) as u64),
        resident: Some((m.arena + m.hblkhd) as u64),
        ..Default::default()
    };
    for (k, v) in [
        ("arena", m.arena),
        ("ordblks", m.ordblks),
        ("smblks", m.smblks),
        ("hblks", m.hblks),
        ("hblkhd", m.hblkhd),
        ("fsmblks", m.fsmblks),
        ("uordblks", m.uordblks),
        ("fordblks", m.fordblks),
        ("keepcost", m.keepcost),
    ] {
        s.put(k, v as u64);
    }
    s
}

// SAFETY: libc's malloc family has exactly the trait's semantics.
unsafe impl Allocator for System {
    #[inline(always)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain libc call.
        unsafe { libc::malloc(size).cast() }
    }
    #[inline(always)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain libc call.
        unsafe { libc::calloc(1, size).cast() }
    }
    #[inline(always)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or live (caller's contract).
        unsafe { libc::realloc(p.cast(), size).cast() }
    }
    #[inline(always)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        // SAFETY: `align` is a power of two, raised to posix_memalign's minimum.
        let r = unsafe { libc::posix_memalign(&mut p, align.max(8), size) };
        if r == 0 {
            p.cast()
        } else {
            std::ptr::null_mut()
        }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or live (caller's contract).
        unsafe { libc::free(p.cast()) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is live (caller's contract).
        unsafe { libc::malloc_usable_size(p.cast()) }
    }

    fn has_usable_size(&self) -> bool {
        self.usable_known
    }
    fn stats(&self) -> AllocStats {
        if self.preload.is_none() || !mallinfo2_is_glibc() {
            mallinfo2_stats()
        } else {
            // glibc's mallinfo2 would describe glibc's unused heap, not the preloaded library.
            AllocStats::default()
        }
    }
    fn probe(&self) -> Option<Box<dyn crate::introspect::Probe>> {
        // A preloaded library's statistics are its own business (glibc's would describe
        // glibc's unused heap).
        if self.preload.is_some() {
            return None;
        }
        crate::introspect::glibc::MallocInfo::open()
            .map(|p| Box::new(p) as Box<dyn crate::introspect::Probe>)
    }
    fn version(&self) -> String {
        match &self.preload {
            None => format!("glibc {}", glibc_version()),
            Some(p) => {
                let real = std::fs::canonicalize(p)
                    .map(|r| r.display().to_string())
                    .unwrap_or_else(|_| p.clone());
                real.rsplit('/').next().unwrap_or(&real).to_string()
            }
        }
    }
}
