//! `tcmalloc`: gperftools' tcmalloc from Debian's shared library, `dlopen`ed privately
//! (`RTLD_LOCAL`) and called through its `tc_*` entry points, so it lives beside glibc's malloc
//! without replacing it. The child that replays gets `TCMALLOC_SKIP_SBRK=true`: otherwise
//! tcmalloc grows its heap with `sbrk`, like glibc, and the two confuse each other's figures.
//! `ALLOCLAB_TCMALLOC=/path/lib.so` picks another library.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::path::PathBuf;

use super::{AdapterContext, AllocSpec, AllocStats, Allocator};
use crate::error::ReplayError;

const CANDIDATES: [&str; 2] = [
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/x86_64-linux-gnu/libtcmalloc.so.4",
];

/// The tcmalloc library to use, or a message saying how to install one.
pub fn find_library() -> Result<PathBuf, ReplayError> {
    if let Some(p) = std::env::var_os("ALLOCLAB_TCMALLOC") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(ReplayError::AllocatorUnavailable {
                name: "tcmalloc".into(),
                why: format!("ALLOCLAB_TCMALLOC={} is not a file", p.display()),
            })
        };
    }
    CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| ReplayError::AllocatorUnavailable {
            name: "tcmalloc".into(),
            why: format!(
                "gperftools' tcmalloc is not installed (looked for {}); install it with \
                 `apt-get install libtcmalloc-minimal4`, or set ALLOCLAB_TCMALLOC=/path/to/libtcmalloc.so",
                CANDIDATES.join(", ")
            ),
        })
}

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type MemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type SizeFn = unsafe extern "C" fn(*mut c_void) -> usize;
type VersionFn = unsafe extern "C" fn(*mut c_int, *mut c_int, *mut *const c_char) -> *const c_char;
type PropertyFn = unsafe extern "C" fn(*const c_char, *mut usize) -> c_int;

/// tcmalloc's functions, resolved from the library.
pub struct Tcmalloc {
    malloc: MallocFn,
    calloc: CallocFn,
    realloc: ReallocFn,
    posix_memalign: MemalignFn,
    free: FreeFn,
    malloc_size: SizeFn,
    version: Option<VersionFn>,
    property: Option<PropertyFn>,
    path: PathBuf,
}

fn sym(lib: *mut c_void, name: &CStr) -> Result<*mut c_void, ReplayError> {
    // SAFETY: `lib` is a handle from dlopen; the name is NUL-terminated.
    let p = unsafe { libc::dlsym(lib, name.as_ptr()) };
    if p.is_null() {
        Err(ReplayError::AllocatorUnavailable {
            name: "tcmalloc".into(),
            why: format!("the library has no {}", name.to_string_lossy()),
        })
    } else {
        Ok(p)
    }
}

impl Tcmalloc {
    /// Loads the library and resolves its entry points.
    pub fn open(_: &AllocSpec, _: &AdapterContext) -> Result<Tcmalloc, ReplayError> {
        let path = find_library()?;
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| ReplayError::BadInput("tcmalloc path contains NUL".into()))?;
        // SAFETY: loading a shared library by path; it stays loaded for the process's life.
        let lib = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
        if lib.is_null() {
            // SAFETY: dlerror returns a static message or null.
            let e = unsafe { libc::dlerror() };
            let why = if e.is_null() {
                "dlopen failed".to_string()
            } else {
                // SAFETY: NUL-terminated message from the loader.
                unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
            };
            return Err(ReplayError::AllocatorUnavailable {
                name: "tcmalloc".into(),
                why,
            });
        }
        // SAFETY: each symbol is transmuted to the C signature gperftools declares for it.
        unsafe {
            Ok(Tcmalloc {
                malloc: std::mem::transmute::<*mut c_void, MallocFn>(sym(lib, c"tc_malloc")?),
                calloc: std::mem::transmute::<*mut c_void, CallocFn>(sym(lib, c"tc_calloc")?),
                realloc: std::mem::transmute::<*mut c_void, ReallocFn>(sym(lib, c"tc_realloc")?),
                posix_memalign: std::mem::transmute::<*mut c_void, MemalignFn>(sym(
                    lib,
                    c"tc_posix_memalign",
                )?),
                free: std::mem::transmute::<*mut c_void, FreeFn>(sym(lib, c"tc_free")?),
                malloc_size: std::mem::transmute::<*mut c_void, SizeFn>(sym(
                    lib,
                    c"tc_malloc_size",
                )?),
                version: sym(lib, c"tc_version")
                    .ok()
                    .map(|p| std::mem::transmute::<*mut c_void, VersionFn>(p)),
                property: sym(lib, c"MallocExtension_GetNumericProperty")
                    .ok()
                    .map(|p| std::mem::transmute::<*mut c_void, PropertyFn>(p)),
                path,
            })
        }
    }

    fn property(&self, name: &CStr) -> Option<u64> {
        let f = self.property?;
        let mut v = 0usize;
        // SAFETY: a NUL-terminated property name and a pointer to a local.
        (unsafe { f(name.as_ptr(), &mut v) } != 0).then_some(v as u64)
    }
}

// SAFETY: tcmalloc's tc_* functions have the C semantics the trait asks for.
unsafe impl Allocator for Tcmalloc {
    #[inline(always)]
    unsafe fn malloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { (self.malloc)(size).cast() }
    }
    #[inline(always)]
    unsafe fn calloc(&self, size: usize) -> *mut u8 {
        // SAFETY: plain allocator call.
        unsafe { (self.calloc)(1, size).cast() }
    }
    #[inline(always)]
    unsafe fn realloc(&self, p: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: `p` is null or a live tcmalloc block (caller's contract).
        unsafe { (self.realloc)(p.cast(), size).cast() }
    }
    #[inline(always)]
    unsafe fn aligned(&self, align: usize, size: usize) -> *mut u8 {
        let mut p = std::ptr::null_mut();
        // SAFETY: `align` is a power of two, raised to posix_memalign's minimum.
        let r = unsafe { (self.posix_memalign)(&mut p, align.max(8), size) };
        if r == 0 {
            p.cast()
        } else {
            std::ptr::null_mut()
        }
    }
    #[inline(always)]
    unsafe fn free(&self, p: *mut u8) {
        // SAFETY: `p` is null or a live tcmalloc block (caller's contract).
        unsafe { (self.free)(p.cast()) }
    }
    unsafe fn usable_size(&self, p: *mut u8) -> usize {
        // SAFETY: `p` is a live tcmalloc block (caller's contract).
        unsafe { (self.malloc_size)(p.cast()) }
    }
    fn stats(&self) -> AllocStats {
        let mut s = AllocStats::default();
        for name in [
            c"generic.current_allocated_bytes",
            c"generic.heap_size",
            c"tcmalloc.pageheap_free_bytes",
            c"tcmalloc.pageheap_unmapped_bytes",
            c"tcmalloc.current_total_thread_cache_bytes",
            c"tcmalloc.central_cache_free_bytes",
        ] {
            if let Some(v) = self.property(name) {
                s.put(&name.to_string_lossy(), v);
            }
        }
        s.allocated = self.property(c"generic.current_allocated_bytes");
        if let (Some(heap), Some(unmapped)) = (
            self.property(c"generic.heap_size"),
            self.property(c"tcmalloc.pageheap_unmapped_bytes"),
        ) {
            s.resident = Some(heap.saturating_sub(unmapped));
        }
        s
    }
    fn probe(&self) -> Option<Box<dyn crate::introspect::Probe>> {
        self.property
            .map(|f| Box::new(TcProbe(f)) as Box<dyn crate::introspect::Probe>)
    }
    fn version(&self) -> String {
        let file = self
            .path
            .file_name()
            .map_or(String::new(), |f| format!(" ({})", f.to_string_lossy()));
        let Some(f) = self.version else {
            return format!("tcmalloc{file}");
        };
        let (mut major, mut minor) = (0, 0);
        let mut patch: *const c_char = std::ptr::null();
        // SAFETY: pointers to locals; tcmalloc returns static strings.
        let v = unsafe { f(&mut major, &mut minor, &mut patch) };
        if v.is_null() {
            return format!("tcmalloc {major}.{minor}{file}");
        }
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(v) }.to_string_lossy();
        format!("{v}{file}")
    }
}

/// gperftools' numeric properties through its C API (`MallocExtension_GetNumericProperty`):
/// each compares the name and reads its counters under the page-heap lock; none allocates.
struct TcProbe(PropertyFn);

/// Properties read at each sample (metric, tcmalloc's name).
const PROPERTIES: [(&str, &CStr); 9] = [
    (
        crate::introspect::IN_USE,
        c"generic.current_allocated_bytes",
    ),
    (
        "current_allocated_bytes",
        c"generic.current_allocated_bytes",
    ),
    ("heap_size_bytes", c"generic.heap_size"),
    ("physical_bytes", c"generic.total_physical_bytes"),
    ("pageheap_free_bytes", c"tcmalloc.pageheap_free_bytes"),
    (
        "pageheap_unmapped_bytes",
        c"tcmalloc.pageheap_unmapped_bytes",
    ),
    (
        "central_cache_free_bytes",
        c"tcmalloc.central_cache_free_bytes",
    ),
    (
        "transfer_cache_free_bytes",
        c"tcmalloc.transfer_cache_free_bytes",
    ),
    (
        "thread_cache_free_bytes",
        c"tcmalloc.current_total_thread_cache_bytes",
    ),
];

impl crate::introspect::Probe for TcProbe {
    fn read(&mut self, out: &mut crate::introspect::Sink<'_>) {
        let get = |name: &CStr| {
            let mut v = 0usize;
            // SAFETY: a NUL-terminated property name and a pointer to a local.
            (unsafe { (self.0)(name.as_ptr(), &mut v) } != 0).then_some(v as u64)
        };
        for (metric, name) in PROPERTIES {
            if let Some(v) = get(name) {
                out.put_u(metric, None, v);
            }
        }
        // Resident: the heap minus what tcmalloc has returned to the OS.
        if let (Some(heap), Some(unmapped)) = (
            get(c"generic.heap_size"),
            get(c"tcmalloc.pageheap_unmapped_bytes"),
        ) {
            out.put_u(
                crate::introspect::RESIDENT,
                None,
                heap.saturating_sub(unmapped),
            );
        }
    }
}
