//! The C API through its symbols (as a C caller sees them) and the header compiled by a C
//! compiler against the library's prototypes.

use std::ffi::c_void;

#[test]
fn c_api_roundtrip() {
    // SAFETY: every pointer here is a live block this test allocated and has not freed, used within its size.
    unsafe {
        let p = fancy::fancy_malloc(100);
        assert!(!p.is_null());
        assert_eq!(fancy::fancy_usable_size(p), 112);
        let q = fancy::fancy_realloc(p, 5000);
        assert!(fancy::fancy_usable_size(q) >= 5000);
        fancy::fancy_free(q);
        let z = fancy::fancy_calloc(10, 10) as *mut u8;
        assert!((0..100).all(|i| *z.add(i) == 0));
        fancy::fancy_free(z.cast());
        let mut out: *mut c_void = std::ptr::null_mut();
        assert_eq!(fancy::fancy_posix_memalign(&mut out, 256, 10), 0);
        assert_eq!(out as usize % 256, 0);
        fancy::fancy_free(out);
        assert_eq!(fancy::fancy_posix_memalign(&mut out, 24, 10), libc::EINVAL);
        assert!(fancy::fancy_aligned_alloc(48, 10).is_null());
        assert!(fancy::fancy_malloc(usize::MAX).is_null());
        assert_eq!(*libc::__errno_location(), libc::ENOMEM);
        assert!(fancy::fancy_validate_heap());
    }
}

#[test]
fn header_compiles_against_the_prototypes() {
    let cc = std::path::Path::new("/usr/bin/cc");
    assert!(
        cc.exists(),
        "/usr/bin/cc is missing: install the Debian package `gcc` (allocator/ci-deps.txt)"
    );
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("t.c");
    std::fs::write(
        &src,
        "#include \"fancy.h\"\nint main(void){void*p=fancy_malloc(1);size_t n=fancy_usable_size(p);fancy_free(p);void*q=0;\
         int r=fancy_posix_memalign(&q,64,1);bool ok=fancy_validate_heap();(void)fancy_check_leaks;(void)fancy_print_stats;\
         (void)fancy_calloc;(void)fancy_realloc;(void)fancy_aligned_alloc;return (int)n+r+ok;}\n",
    )
    .unwrap();
    let inc = concat!(env!("CARGO_MANIFEST_DIR"), "/include");
    let out = std::process::Command::new(cc)
        .args(["-std=c11", "-Wall", "-Werror", "-c", "-I", inc, "-o"])
        .arg(dir.path().join("t.o"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
