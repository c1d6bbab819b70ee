//! Allocator misuse through the Rust API: double frees (same thread, A-B-A, across threads,
//! through the front cache and after coalescing), interior, stray and foreign pointers given to
//! `free` and `realloc`. Each case runs in a forked child whose stderr goes to a file: the child
//! must die of SIGABRT with fancy's one-line message naming the very pointer it was given —
//! never hand the block out twice, never go on with a corrupt heap. (The same cases through the
//! C symbols, under `LD_PRELOAD`, are in `preload/tests/faults.rs`.)

use std::io::Read;

/// Runs `body` in a forked child with fd 2 redirected to a file. Returns the child's stderr and
/// its wait status.
fn in_child(body: fn()) -> (String, i32) {
    let mut file = tempfile::tempfile().unwrap();
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: the child only calls fancy (fork-safe through its atfork handlers), write(2) and
    // _exit; the parent waits for it.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: plain descriptor calls in the child.
        unsafe { libc::dup2(fd, 2) };
        body();
        // SAFETY: ends the child without running the parent's handlers.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut err = String::new();
    std::io::Seek::rewind(&mut file).unwrap();
    file.read_to_string(&mut err).unwrap();
    (err, status)
}

/// Tells the parent which pointer the child is about to misuse (one line on stderr).
fn announce(p: *const u8) {
    let line = format!("misusing {p:p}\n");
    // SAFETY: writes a valid buffer to fd 2.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The child must abort with `fancy: <call> … <the announced pointer>: <why>` where the line
/// contains `want`.
fn must_abort(name: &str, body: fn(), want: &str) {
    let (err, status) = in_child(body);
    assert!(
        libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGABRT,
        "{name}: the child was not aborted (status {status:#x}); stderr:\n{err}"
    );
    let ptr = err
        .lines()
        .find_map(|l| l.strip_prefix("misusing "))
        .unwrap_or_else(|| panic!("{name}: the child announced no pointer:\n{err}"));
    let msg = err
        .lines()
        .find(|l| l.starts_with("fancy: "))
        .unwrap_or_else(|| panic!("{name}: no fancy message:\n{err}"));
    assert!(
        msg.contains(&format!(" {ptr}: ")) && msg.contains(want),
        "{name}: wanted a line naming {ptr} and saying `{want}`, got:\n{err}"
    );
}

fn free(p: *mut u8) {
    // SAFETY: NOT safe in general — these tests free on purpose what they must not; fancy must
    // refuse it (abort) before touching anything.
    unsafe { fancy::free(p) }
}

#[test]
fn small_double_free_aborts_before_the_block_is_handed_out_twice() {
    must_abort(
        "small double free",
        || {
            let a = fancy::malloc(24);
            let _b = fancy::malloc(24);
            free(a);
            announce(a);
            free(a);
            // Without the check the next two mallocs return `a` twice.
            let (x, y) = (fancy::malloc(24), fancy::malloc(24));
            assert_ne!(x, y);
        },
        "double free of",
    );
}

#[test]
fn small_aba_double_free_aborts() {
    must_abort(
        "small A-B-A",
        || {
            let a = fancy::malloc(100);
            let b = fancy::malloc(100);
            free(a);
            free(b);
            announce(a);
            free(a);
        },
        "already free",
    );
}

#[test]
fn small_double_free_of_every_class_aborts() {
    let cases: [(usize, fn()); 9] = [
        (1, || twice(1)),
        (16, || twice(16)),
        (17, || twice(17)),
        (48, || twice(48)),
        (100, || twice(100)),
        (128, || twice(128)),
        (200, || twice(200)),
        (384, || twice(384)),
        (512, || twice(512)),
    ];
    for (size, body) in cases {
        let (err, status) = in_child(body);
        assert!(
            libc::WIFSIGNALED(status) && err.contains("double free of"),
            "size {size}: status {status:#x}\n{err}"
        );
    }
    fn twice(n: usize) {
        let keep: Vec<*mut u8> = (0..50).map(|_| fancy::malloc(n)).collect();
        let a = fancy::malloc(n);
        free(a);
        free(keep[10]);
        free(a);
    }
}

#[test]
fn small_interior_pointer_aborts() {
    must_abort(
        "small interior",
        || {
            let a = fancy::malloc(64);
            let p = a.wrapping_add(16);
            announce(p);
            free(p);
        },
        "not the start of a live block",
    );
    must_abort(
        "small interior, unaligned",
        || {
            let a = fancy::malloc(48);
            let p = a.wrapping_add(5);
            announce(p);
            free(p);
        },
        "interior or stray",
    );
}

#[test]
fn small_pointer_past_the_carved_blocks_aborts() {
    must_abort(
        "never handed out",
        || {
            let a = fancy::malloc(32);
            // 200 blocks further on: in the same page, not carved yet.
            let p = a.wrapping_add(32 * 200);
            announce(p);
            free(p);
        },
        "invalid pointer",
    );
}

#[test]
fn small_pointers_into_the_arena_header_abort() {
    // A fresh heap's first small block is the first of page 0 of its arena, right after the
    // arena's 4 KiB header: pointers before it, a whole number of blocks before it included,
    // must be refused by its owner and by another thread (whose offset test wraps around).
    fn header_pointer() -> *mut u8 {
        let a = fancy::malloc(48);
        let base = a as usize & !((4 << 20) - 1);
        assert_eq!(
            a as usize - base,
            4096,
            "the first block follows the arena header"
        );
        a.wrapping_sub(48)
    }
    must_abort(
        "a block's size before the first block",
        || {
            let p = header_pointer();
            announce(p);
            free(p);
        },
        "interior or stray",
    );
    must_abort(
        "the arena's second word",
        || {
            let p = header_pointer().wrapping_sub(4096 - 48 - 16);
            announce(p);
            free(p);
        },
        "interior or stray",
    );
    must_abort(
        "a block's size before the first block, from another thread",
        || {
            let p = header_pointer() as usize;
            std::thread::spawn(move || {
                announce(p as *const u8);
                free(p as *mut u8);
            })
            .join()
            .ok();
        },
        "interior or stray",
    );
}

#[test]
fn medium_double_free_aborts_from_the_front_cache_and_the_bins() {
    must_abort(
        "medium parked",
        || {
            let a = fancy::malloc(2000);
            free(a);
            announce(a);
            free(a);
        },
        "already free",
    );
    must_abort(
        "medium coalesced",
        || {
            let a = fancy::malloc(100_000);
            free(a);
            announce(a);
            free(a);
        },
        "already free",
    );
}

#[test]
fn medium_double_free_after_merging_backwards_aborts() {
    must_abort(
        "medium merged into its neighbour",
        || {
            let a = fancy::malloc(50_000);
            let b = fancy::malloc(50_000);
            let _guard = fancy::malloc(50_000);
            free(a);
            free(b); // coalesces into `a`: b's header is now inside a free chunk
            announce(b);
            free(b);
        },
        "not the start of a live medium block",
    );
}

#[test]
fn medium_interior_pointer_aborts() {
    must_abort(
        "medium interior",
        || {
            let a = fancy::malloc(3000);
            // SAFETY: in bounds of the block; user data that looks like nothing in particular.
            unsafe { a.write_bytes(0x41, 3000) };
            let p = a.wrapping_add(1024);
            announce(p);
            free(p);
        },
        "not the start of a live medium block",
    );
    must_abort(
        "medium interior, unaligned",
        || {
            let a = fancy::malloc(3000);
            let p = a.wrapping_add(3);
            announce(p);
            free(p);
        },
        "misaligned",
    );
}

#[test]
fn huge_interior_and_double_free_abort() {
    must_abort(
        "huge interior",
        || {
            let a = fancy::malloc(3 << 20);
            let p = a.wrapping_add(4096);
            announce(p);
            free(p);
        },
        "inside a huge block",
    );
    must_abort(
        "huge double free",
        || {
            let a = fancy::malloc(3 << 20);
            free(a);
            announce(a);
            free(a);
        },
        "invalid pointer",
    );
}

#[test]
fn foreign_and_wild_pointers_abort() {
    must_abort(
        "stack pointer",
        || {
            let x = [0u64; 4];
            let p = x.as_ptr().wrapping_add(2) as *mut u8;
            announce(p);
            free(p);
        },
        "not allocated by fancy",
    );
    must_abort(
        "wild pointer",
        || {
            let p = 0x1234_5670usize as *mut u8;
            announce(p);
            free(p);
        },
        "not allocated by fancy",
    );
    must_abort(
        "glibc's block",
        || {
            // SAFETY: a plain glibc allocation.
            let p = unsafe { libc::malloc(64) } as *mut u8;
            announce(p);
            free(p);
        },
        "not allocated by fancy",
    );
}

#[test]
fn realloc_of_an_interior_or_freed_pointer_aborts() {
    must_abort(
        "realloc interior",
        || {
            let a = fancy::malloc(200);
            let p = a.wrapping_add(32);
            announce(p);
            // SAFETY: the misuse under test.
            unsafe { fancy::realloc(p, 1000) };
        },
        "realloc(): invalid pointer",
    );
    must_abort(
        "realloc freed",
        || {
            let a = fancy::malloc(200);
            free(a);
            announce(a);
            // SAFETY: the misuse under test.
            unsafe { fancy::realloc(a, 1000) };
        },
        "realloc(): invalid pointer",
    );
}

#[test]
fn cross_thread_double_frees_abort() {
    must_abort(
        "freed twice by another thread",
        || {
            let a = fancy::malloc(40) as usize;
            std::thread::spawn(move || {
                free(a as *mut u8);
                announce(a as *const u8);
                free(a as *mut u8);
            })
            .join()
            .ok();
        },
        "this thread freed it before",
    );
    must_abort(
        "freed by another thread, then by the owner",
        || {
            let a = fancy::malloc(40) as usize;
            std::thread::spawn(move || {
                let _own = fancy::malloc(8); // the freeing thread has a heap, keeps `a`
                free(a as *mut u8);
            })
            .join()
            .unwrap();
            announce(a as *const u8);
            free(a as *mut u8);
        },
        "already free",
    );
    must_abort(
        "medium freed twice by another thread",
        || {
            let a = fancy::malloc(5000) as usize;
            std::thread::spawn(move || {
                free(a as *mut u8);
                announce(a as *const u8);
                free(a as *mut u8);
            })
            .join()
            .ok();
            // The owner finds the block twice on its remote list when it collects it.
            for _ in 0..3 {
                fancy::collect();
                let _ = fancy::malloc(5000);
            }
        },
        "already free",
    );
}

/// The checks must not refuse what is valid: blocks whose second word holds every pattern a
/// program could write, freed by their owner and by another thread, in every class.
#[test]
fn valid_frees_are_never_refused() {
    let mut blocks = Vec::new();
    for round in 0..20u64 {
        for &n in &[8usize, 16, 24, 100, 512, 600, 4000, 70_000] {
            let p = fancy::malloc(n);
            assert!(!p.is_null());
            // SAFETY: `p` has at least 8.max(n) bytes; words written inside it.
            unsafe {
                let w = p as *mut u64;
                w.write(round);
                if n >= 16 {
                    // The address itself, zero, all ones: nothing a program writes is taken
                    // for a free block.
                    w.add(1).write(match round % 3 {
                        0 => p as u64,
                        1 => 0,
                        _ => u64::MAX,
                    });
                }
            }
            blocks.push(p as usize);
        }
    }
    let (mine, theirs) = blocks.split_at(blocks.len() / 2);
    let theirs = theirs.to_vec();
    std::thread::spawn(move || {
        for p in theirs {
            free(p as *mut u8);
        }
    })
    .join()
    .unwrap();
    for &p in mine {
        free(p as *mut u8);
    }
    fancy::validate_heap().unwrap();
}
