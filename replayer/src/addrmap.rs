//! The heap-map pass (`replay --heap-map`): where each block went under this allocator, and
//! what the process had mapped and resident meanwhile.
//!
//! One extra untimed child per allocator (it measures nothing the results report) replays the
//! plan with two additions, both filled without allocating once the replay runs:
//!
//! * each replay thread logs every op — time, the pointer it freed or resized, the pointer the
//!   allocator returned, kind, alignment and size — into an [`OpLog`] sized to its op array
//!   before the barrier (32 bytes per op);
//! * the sampler thread takes a [`Snapshots`] snapshot every `--heap-map-ms`: it reads
//!   `/proc/self/maps` into a fixed buffer, keeps the private read-write anonymous mappings and
//!   `[heap]`, and cuts each into runs of resident and not-resident pages with `mincore`.
//!
//! After the pass the child writes them as `results_schema::heapmap` says: the ops as an
//! address trace in the lab's format, the snapshots as a mappings Parquet file. Reading the
//! maps takes the kernel's mapping lock, which the allocator's `mmap` calls wait for — one
//! reason this pass is not one of the measured ones.

use results_schema::heapmap::{self as hm, MappingRow};
use traces::{AlignedFn, Event, Header, TraceWriter};

use crate::error::ReplayError;
use crate::plan::op;

/// One logged op.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpRec {
    /// ns since the pass's first op, when the op was done.
    pub t_ns: u64,
    /// The block freed or resized (0 for none).
    pub old: u64,
    /// The block the allocator returned (0 for none, or a failure).
    pub new: u64,
    /// Kind (bits 56–63), log2 of the alignment (48–55), requested size (0–47, saturated).
    pub word: u64,
}

const SIZE_MASK: u64 = (1 << 48) - 1;

impl OpRec {
    /// Packs the kind, alignment and size.
    #[inline(always)]
    pub fn word(kind: u8, align_log2: u8, size: usize) -> u64 {
        ((kind as u64) << 56) | ((align_log2 as u64 & 0xff) << 48) | (size as u64).min(SIZE_MASK)
    }

    /// The op kind (`plan::op`).
    pub fn kind(&self) -> u8 {
        (self.word >> 56) as u8
    }

    /// The requested size.
    pub fn size(&self) -> u64 {
        self.word & SIZE_MASK
    }

    /// The alignment asked for (aligned ops).
    pub fn align(&self) -> u64 {
        1u64 << ((self.word >> 48) & 0x3f)
    }

    /// The trace event this op is, with the replayed addresses.
    pub fn event(&self) -> Event {
        let size = self.size();
        match self.kind() {
            op::MALLOC => Event::Malloc {
                size,
                ptr: self.new,
            },
            op::CALLOC => Event::Calloc {
                nmemb: 1,
                size,
                ptr: self.new,
            },
            op::ALIGNED => Event::Aligned {
                func: AlignedFn::PosixMemalign,
                align: self.align(),
                size,
                ptr: self.new,
            },
            op::REALLOC => Event::Realloc {
                old_ptr: self.old,
                size,
                ptr: self.new,
            },
            // free, free(NULL), realloc(p, 0) replayed as free, and dropped objects: all frees.
            _ => Event::Free { ptr: self.old },
        }
    }
}

/// One replay thread's op log: a vector sized before the replay; a push past its capacity is
/// counted, never allocated.
#[derive(Debug, Default)]
pub struct OpLog {
    /// The ops, in the thread's order.
    pub ops: Vec<OpRec>,
    /// Ops not logged (the log was full: never, when sized to the thread's ops).
    pub lost: u64,
}

impl OpLog {
    /// A log for `n` ops.
    pub fn with_capacity(n: usize) -> OpLog {
        OpLog {
            ops: Vec::with_capacity(n),
            lost: 0,
        }
    }

    /// Logs one op.
    #[inline(always)]
    pub fn push(&mut self, r: OpRec) {
        if self.ops.len() < self.ops.capacity() {
            self.ops.push(r);
        } else {
            self.lost += 1;
        }
    }
}

/// One run of pages in one snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapRun {
    /// The snapshot's number.
    pub snapshot: u32,
    /// When it was taken (ns since the pass's first op).
    pub t_ns: u64,
    /// First address.
    pub start: u64,
    /// One past the last.
    pub end: u64,
    /// Resident pages (else mapped, not resident).
    pub resident: bool,
    /// In `[heap]`.
    pub heap: bool,
}

/// Runs the snapshots hold at most; when full, every other snapshot is dropped (the period the
/// sampler uses is doubled by the caller).
pub const RUNS_CAP: usize = 1 << 18;

/// Bytes of `/proc/self/maps` read per snapshot (a larger file is cut there and counted).
const MAPS_BUF: usize = 1 << 20;

/// Pages asked of `mincore` at once.
const MINCORE_PAGES: usize = 1 << 16;

/// The mapping snapshots of one pass, in buffers sized up front.
pub struct Snapshots {
    /// The runs, in snapshot order.
    pub runs: Vec<MapRun>,
    /// Snapshots taken (numbers are 0..taken, some dropped by thinning).
    pub taken: u32,
    /// Snapshots whose maps did not fit the buffer, or whose runs did not fit after thinning.
    pub cut: u32,
    overflow: bool,
    fd: i32,
    text: Vec<u8>,
    vec: Vec<u8>,
    page: u64,
}

impl Snapshots {
    /// Opens `/proc/self/maps` and sizes the buffers.
    pub fn new() -> Result<Snapshots, ReplayError> {
        // SAFETY: a NUL-terminated path; the descriptor is owned by the returned value.
        let fd = unsafe {
            libc::open(
                c"/proc/self/maps".as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(ReplayError::io(
                "opening /proc/self/maps for --heap-map",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64;
        Ok(Snapshots {
            runs: Vec::with_capacity(RUNS_CAP),
            taken: 0,
            cut: 0,
            overflow: false,
            fd,
            text: vec![0; MAPS_BUF],
            vec: vec![0; MINCORE_PAGES],
            page,
        })
    }

    /// Whether the next snapshot may not fit: the caller thins ([`Snapshots::thin`]) first.
    pub fn nearly_full(&self) -> bool {
        let last = self.runs.last().map_or(0, |r| r.snapshot);
        let in_last = self
            .runs
            .iter()
            .rev()
            .take_while(|r| r.snapshot == last)
            .count();
        self.runs.len() + 2 * in_last.max(64) > self.runs.capacity()
    }

    /// Drops every other snapshot (the odd-numbered ones), in place.
    pub fn thin(&mut self) {
        self.runs.retain(|r| r.snapshot % 2 == 0);
    }

    /// Reads the maps into the text buffer; the bytes read (the file is cut at the buffer).
    fn read_maps(&mut self) -> usize {
        let mut n = 0usize;
        while n < self.text.len() {
            // SAFETY: reads into the unused tail of our own buffer, at the file offset `n`.
            let r = unsafe {
                libc::pread(
                    self.fd,
                    self.text[n..].as_mut_ptr().cast(),
                    self.text.len() - n,
                    n as libc::off_t,
                )
            };
            if r <= 0 {
                return n;
            }
            n += r as usize;
        }
        self.cut += 1;
        n
    }

    /// Takes one snapshot at `t_ns`. Allocates nothing.
    pub fn take(&mut self, t_ns: u64) {
        let snapshot = self.taken;
        self.taken += 1;
        let n = self.read_maps();
        let mut at = 0;
        while at < n {
            let end = self.text[at..n]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(n, |e| at + e);
            if let Some((lo, hi, heap)) = parse_line(&self.text[at..end]) {
                self.residency(snapshot, t_ns, lo, hi, heap);
            }
            at = end + 1;
        }
        if std::mem::take(&mut self.overflow) {
            self.cut += 1;
        }
    }

    /// Cuts `[lo, hi)` into resident and not-resident runs.
    fn residency(&mut self, snapshot: u32, t_ns: u64, lo: u64, hi: u64, heap: bool) {
        let mut a = lo;
        let mut cur: Option<MapRun> = None;
        while a < hi {
            let pages = (((hi - a) / self.page) as usize).min(self.vec.len()).max(1);
            // SAFETY: `a` is page-aligned (a mapping's start, advanced by whole pages); the
            // vector holds one byte per page asked; a range that is no longer mapped (the
            // allocator unmapped it since the maps were read) fails with ENOMEM and is skipped.
            let rc = unsafe {
                libc::mincore(
                    a as *mut libc::c_void,
                    pages * self.page as usize,
                    self.vec.as_mut_ptr(),
                )
            };
            if rc != 0 {
                // Gone since the read: what was seen before it stays.
                break;
            }
            for i in 0..pages {
                let resident = self.vec[i] & 1 != 0;
                let page_end = a + self.page;
                match &mut cur {
                    Some(c) if c.resident == resident => c.end = page_end,
                    _ => {
                        if let Some(c) = cur.take() {
                            self.push(c);
                        }
                        cur = Some(MapRun {
                            snapshot,
                            t_ns,
                            start: a,
                            end: page_end,
                            resident,
                            heap,
                        });
                    }
                }
                a = page_end;
            }
        }
        if let Some(c) = cur {
            self.push(c);
        }
    }

    fn push(&mut self, r: MapRun) {
        if self.runs.len() < self.runs.capacity() {
            self.runs.push(r);
        } else {
            self.overflow = true;
        }
    }

    /// The rows of the mappings file, snapshots renumbered 0, 1, … in time order.
    pub fn rows(&self, allocator: &str, trace_name: &str) -> Vec<MappingRow> {
        let mut rows = Vec::with_capacity(self.runs.len());
        let (mut last, mut k) = (None, 0u32);
        for r in &self.runs {
            if last.is_some_and(|l| l != r.snapshot) {
                k += 1;
            }
            last = Some(r.snapshot);
            rows.push(MappingRow {
                schema_version: results_schema::SCHEMA_VERSION,
                allocator: allocator.to_string(),
                trace_name: trace_name.to_string(),
                snapshot: k,
                t_ns: r.t_ns,
                start: r.start,
                end: r.end,
                resident: r.resident,
                heap: r.heap,
            });
        }
        rows
    }
}

impl Drop for Snapshots {
    fn drop(&mut self) {
        // SAFETY: our own descriptor, closed once.
        unsafe { libc::close(self.fd) };
    }
}

fn hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        let d = (b as char).to_digit(16)? as u64;
        Some(v << 4 | d)
    })
}

/// One `/proc/self/maps` line: `start-end perms offset dev inode [path]`. The range and
/// whether it is `[heap]`, for a private read-write anonymous mapping or `[heap]`; None for
/// anything else (files, stacks, vdso, guard pages).
pub fn parse_line(line: &[u8]) -> Option<(u64, u64, bool)> {
    let mut f = line.split(|&b| b == b' ').filter(|s| !s.is_empty()).fuse();
    let range = f.next()?;
    let perms = f.next()?;
    let (_offset, _dev, inode) = (f.next()?, f.next()?, f.next()?);
    let path = f.next().unwrap_or(b"");
    let dash = range.iter().position(|&b| b == b'-')?;
    let (lo, hi) = (hex(&range[..dash])?, hex(&range[dash + 1..])?);
    if perms.len() < 4 || &perms[..2] != b"rw" || perms[3] != b'p' || lo >= hi {
        return None;
    }
    let heap = path == b"[heap]";
    (heap || (inode == b"0" && path.is_empty())).then_some((lo, hi, heap))
}

/// What the heap-map pass captured: one op log per plan thread and the snapshots.
pub struct Capture {
    /// By plan thread.
    pub logs: Vec<OpLog>,
    /// The mapping snapshots.
    pub snapshots: Snapshots,
}

/// Who and what the heap-map files describe.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct HeapMapPass {
    /// The directory (`DIR` of `--heap-map`); files go into `DIR/<trace_name>/`.
    pub dir: std::path::PathBuf,
    /// The allocator's name (runs' `allocator`).
    pub allocator: String,
    /// The trace's `trace_name` and `trace_hash`.
    pub trace_name: String,
    pub trace_hash: String,
    /// Snapshot period, ms.
    pub snapshot_ms: u64,
}

impl Capture {
    /// Writes the address trace and the mappings file (each through a temporary name).
    pub fn write(&self, pass: &HeapMapPass) -> Result<(), ReplayError> {
        let trace = hm::trace_file(&pass.dir, &pass.trace_name, &pass.allocator);
        let maps = hm::maps_file(&trace).expect("named by trace_file");
        let dir = trace.parent().expect("inside the directory");
        std::fs::create_dir_all(dir)
            .map_err(|e| ReplayError::io(format!("creating {}", dir.display()), e))?;
        let mut header = Header::for_this_process(format!(
            "alloclab-replay {} (heap-map pass)",
            env!("CARGO_PKG_VERSION")
        ));
        header.extra = vec![
            (hm::HEADER_ALLOCATOR.into(), pass.allocator.clone()),
            (hm::HEADER_TRACE.into(), pass.trace_name.clone()),
            (hm::HEADER_TRACE_HASH.into(), pass.trace_hash.clone()),
            (hm::HEADER_SNAPSHOT_MS.into(), pass.snapshot_ms.to_string()),
            (
                hm::HEADER_REPLAY_THREADS.into(),
                self.logs.len().to_string(),
            ),
        ];
        let tmp = trace.with_extension("zst.tmp");
        let werr = |e: traces::TraceError| {
            ReplayError::io(
                format!("writing {}", tmp.display()),
                std::io::Error::other(e.to_string()),
            )
        };
        let written = (|| {
            let mut w = TraceWriter::create(&tmp, &header).map_err(werr)?;
            for (t, log) in self.logs.iter().enumerate() {
                for r in &log.ops {
                    w.append(t as u32, r.t_ns, r.event()).map_err(werr)?;
                }
            }
            let lost: u64 = self.logs.iter().map(|l| l.lost).sum();
            w.finish(lost).map_err(werr)?;
            std::fs::rename(&tmp, &trace)
                .map_err(|e| ReplayError::io(format!("writing {}", trace.display()), e))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written?;
        crate::parquet::write_file(
            &maps,
            &self.snapshots.rows(&pass.allocator, &pass.trace_name),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_lines_keep_private_rw_anonymous_mappings_and_the_heap() {
        type Case<'a> = (&'a [u8], Option<(u64, u64, bool)>);
        let cases: [Case<'_>; 7] = [
            (
                b"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]",
                Some((0x55d0c0a00000, 0x55d0c0a21000, true)),
            ),
            (
                b"7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0 ",
                Some((0x7f1c2c000000, 0x7f1c2c021000, false)),
            ),
            (
                b"7f1c2c000000-7f1c2c021000 rw-p 00000000 00:00 0",
                Some((0x7f1c2c000000, 0x7f1c2c021000, false)),
            ),
            // Guard pages, files, shared memory, the stack.
            (b"7f1c2c021000-7f1c30000000 ---p 00000000 00:00 0 ", None),
            (
                b"7f1c34000000-7f1c34100000 rw-p 00001000 08:01 1234 /usr/lib/x.so",
                None,
            ),
            (
                b"7f1c34000000-7f1c34100000 rw-s 00000000 00:05 77 /memfd:plan (deleted)",
                None,
            ),
            (
                b"7ffd1c000000-7ffd1c021000 rw-p 00000000 00:00 0 [stack]",
                None,
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line), want, "{}", String::from_utf8_lossy(line));
        }
        assert_eq!(parse_line(b"garbage"), None);
        assert_eq!(parse_line(b""), None);
    }

    #[test]
    fn a_snapshot_sees_a_mapping_and_which_of_its_pages_are_resident() {
        let len = 64 * 4096;
        let p = crate::mem::map_anon(len, false).unwrap() as u64;
        // Touch pages 0..8 and 32..40 only.
        for pg in (0..8).chain(32..40) {
            // SAFETY: inside the mapping just made, read-write.
            unsafe { *((p + pg * 4096) as *mut u8) = 1 };
        }
        let mut s = Snapshots::new().unwrap();
        s.take(7);
        let mine: Vec<&MapRun> = s
            .runs
            .iter()
            .filter(|r| r.start < p + len as u64 && r.end > p)
            .collect();
        let inside =
            |r: &MapRun| (r.start.max(p) - p) / 4096..(r.end.min(p + len as u64) - p) / 4096;
        let resident: Vec<_> = mine
            .iter()
            .filter(|r| r.resident)
            .map(|r| inside(r))
            .collect();
        assert_eq!(resident, vec![0..8, 32..40], "{mine:?}");
        assert!(
            mine.iter()
                .all(|r| r.t_ns == 7 && r.snapshot == 0 && !r.heap)
        );
        let rows = s.rows("fancy", "t");
        assert_eq!(rows.len(), s.runs.len());
        // SAFETY: our own mapping, unused from here on.
        unsafe { libc::munmap(p as *mut libc::c_void, len) };
        s.take(9);
        assert!(
            !s.runs
                .iter()
                .any(|r| r.snapshot == 1 && r.start < p + len as u64 && r.end > p),
            "an unmapped range is in no later snapshot"
        );
    }

    #[test]
    fn logged_ops_become_trace_events_with_the_replayed_addresses() {
        let r = OpRec {
            t_ns: 5,
            old: 0,
            new: 0x1000,
            word: OpRec::word(op::ALIGNED, 6, 100),
        };
        assert_eq!(
            r.event(),
            Event::Aligned {
                func: AlignedFn::PosixMemalign,
                align: 64,
                size: 100,
                ptr: 0x1000
            }
        );
        let f = OpRec {
            old: 0x2000,
            word: OpRec::word(op::REALLOC_FREE, 0, 0),
            ..r
        };
        assert_eq!(f.event(), Event::Free { ptr: 0x2000 });
        assert_eq!(
            OpRec::word(op::MALLOC, 0, usize::MAX) & SIZE_MASK,
            SIZE_MASK
        );
    }
}
