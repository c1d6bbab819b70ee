//! glibc's `malloc_info`: its XML, written into a buffer of ours and parsed in place.
//!
//! `malloc_info` writes to a `FILE*`. An ordinary stream (a file, `open_memstream`) would
//! allocate through glibc's malloc — the allocator under test — at every reading, so the probe
//! opens one `fmemopen` stream over a buffer mapped before the replay, gives it a stdio buffer
//! of ours too (`setvbuf` before its first write, so stdio never mallocs one), and rewinds it
//! before each reading. The only mallocs are `fmemopen`'s own two (its cookie and the `FILE`),
//! once, when the probe is made before the barrier. The parser only slices that buffer.
//!
//! What glibc does meanwhile: for each arena it takes the arena's mutex and walks every
//! fastbin and bin list, so a reading costs time proportional to the free chunks and briefly
//! holds up a replay thread that allocates from that arena.

use super::{IN_USE, Probe, RESIDENT, Sink};
use crate::mem::Mapping;

/// Bytes of XML a reading may produce (about 10 KiB per arena at most; glibc keeps at most
/// 8 arenas per CPU).
const XML_CAP: usize = 1 << 20;
/// The stdio buffer handed to the stream.
const STDIO_BUF: usize = 64 << 10;

/// The `malloc_info` probe.
pub struct MallocInfo {
    stream: *mut libc::FILE,
    xml: Mapping,
    _stdio: Mapping,
}

// SAFETY: the stream and the buffers are used by one thread at a time (the sampler, which owns
// the probe); glibc's stdio locks the stream anyway.
unsafe impl Send for MallocInfo {}

impl MallocInfo {
    /// Opens the stream (the two mallocs of `fmemopen` happen here). None if the buffers
    /// cannot be mapped or the stream cannot be opened.
    pub fn open() -> Option<MallocInfo> {
        let xml = Mapping::anon(XML_CAP).ok()?;
        let stdio = Mapping::anon(STDIO_BUF).ok()?;
        // SAFETY: `xml` is XML_CAP writable bytes that outlive the stream (both are owned by the
        // probe, and the stream is closed in Drop before the mappings go); the mode is a
        // NUL-terminated string.
        let stream = unsafe { libc::fmemopen(xml.as_ptr().cast(), XML_CAP, c"w".as_ptr()) };
        if stream.is_null() {
            return None;
        }
        // SAFETY: the stream has not been written yet, and `stdio` is STDIO_BUF writable bytes
        // that outlive it (see above).
        let r = unsafe { libc::setvbuf(stream, stdio.as_ptr().cast(), libc::_IOFBF, STDIO_BUF) };
        if r != 0 {
            // SAFETY: a stream we opened and never used.
            unsafe { libc::fclose(stream) };
            return None;
        }
        Some(MallocInfo {
            stream,
            xml,
            _stdio: stdio,
        })
    }

    /// Has glibc write its XML; returns it (empty if the call failed).
    fn xml(&mut self) -> &[u8] {
        // SAFETY: our open stream; rewind, malloc_info and fflush write only into our buffers.
        let len = unsafe {
            libc::rewind(self.stream);
            if libc::malloc_info(0, self.stream) != 0 {
                return &[];
            }
            libc::fflush(self.stream);
            libc::ftell(self.stream)
        };
        let len = (len.max(0) as usize).min(XML_CAP);
        // SAFETY: the first `len` bytes of the mapping were written by the stream and are not
        // written again until the next call, which needs `&mut self`.
        unsafe { std::slice::from_raw_parts(self.xml.as_ptr(), len) }
    }
}

impl Drop for MallocInfo {
    fn drop(&mut self) {
        // SAFETY: our stream, closed once, before its buffers are unmapped (fields drop after).
        unsafe { libc::fclose(self.stream) };
    }
}

impl Probe for MallocInfo {
    fn read(&mut self, out: &mut Sink<'_>) {
        let xml = self.xml();
        // The borrow of `self` ends with the parse; `parse` only slices the text.
        parse(xml, out);
    }
}

/// The value of attribute `name` in one tag's text.
fn attr(tag: &[u8], name: &[u8]) -> Option<u64> {
    let mut i = 0;
    while i + name.len() + 2 <= tag.len() {
        if tag[i..].starts_with(name)
            && tag[i + name.len()] == b'='
            && tag[i + name.len() + 1] == b'"'
            && (i == 0 || tag[i - 1] == b' ')
        {
            let v = &tag[i + name.len() + 2..];
            let end = v.iter().position(|&c| c == b'"')?;
            return std::str::from_utf8(&v[..end]).ok()?.parse().ok();
        }
        i += 1;
    }
    None
}

/// Size buckets of the free-chunk histogram: powers of two, keyed by their lower bound.
const BUCKETS: usize = 64;

/// Parses `malloc_info`'s XML (version 1) into points. Arena figures are keyed by the arena
/// number; free chunks by size are summed over arenas into power-of-two buckets of the bin's
/// smallest chunk (glibc prints each bin's smallest and largest chunk, not fixed bounds). A
/// truncated document yields what it holds.
pub fn parse(xml: &[u8], out: &mut Sink<'_>) {
    let mut heap: Option<u32> = None;
    let mut arenas = 0u32;
    let mut by_size_bytes = [0u64; BUCKETS];
    let mut by_size_chunks = [0u64; BUCKETS];
    let (mut fast, mut rest, mut mmap, mut system) = (None, None, None, None);
    for line in xml.split(|&c| c == b'\n') {
        let t = line.trim_ascii();
        let Some(t) = t.strip_prefix(b"<") else {
            continue;
        };
        // The name runs to the first space, `>` or `/` after its first byte (`</heap>`).
        let name_end = t
            .iter()
            .skip(1)
            .position(|&c| c == b' ' || c == b'>' || c == b'/')
            .map_or(t.len(), |i| i + 1);
        let (tag, body) = t.split_at(name_end);
        let ty = |want: &[u8]| body.windows(want.len()).any(|w| w == want);
        match tag {
            b"heap" => {
                heap = attr(body, b"nr").map(|n| n as u32);
                arenas += 1;
            }
            b"/heap" => heap = None,
            b"size" | b"unsorted" => {
                if let (Some(from), Some(total), Some(count)) = (
                    attr(body, b"from"),
                    attr(body, b"total"),
                    attr(body, b"count"),
                ) && heap.is_some()
                {
                    let b = (63 - from.max(1).leading_zeros()) as usize;
                    by_size_bytes[b] += total;
                    by_size_chunks[b] += count;
                }
            }
            b"total" => {
                let (count, size) = (attr(body, b"count"), attr(body, b"size"));
                let (Some(count), Some(size)) = (count, size) else {
                    continue;
                };
                match (heap, ty(b"type=\"fast\""), ty(b"type=\"rest\"")) {
                    (Some(h), true, _) => out.put_u("arena_free_fast_bytes", Some(h), size),
                    (Some(h), _, true) => out.put_u("arena_free_rest_bytes", Some(h), size),
                    (None, true, _) => {
                        out.put_u("free_fast_bytes", None, size);
                        out.put_u("free_fast_chunks", None, count);
                        fast = Some(size);
                    }
                    (None, _, true) => {
                        out.put_u("free_rest_bytes", None, size);
                        out.put_u("free_rest_chunks", None, count);
                        rest = Some(size);
                    }
                    (None, false, false) if ty(b"type=\"mmap\"") => {
                        out.put_u("mmap_bytes", None, size);
                        out.put_u("mmap_chunks", None, count);
                        mmap = Some(size);
                    }
                    _ => {}
                }
            }
            b"system" => {
                let Some(size) = attr(body, b"size") else {
                    continue;
                };
                match (heap, ty(b"type=\"current\""), ty(b"type=\"max\"")) {
                    (Some(h), true, _) => out.put_u("arena_system_bytes", Some(h), size),
                    (None, true, _) => {
                        out.put_u("system_bytes", None, size);
                        system = Some(size);
                    }
                    (None, _, true) => out.put_u("system_max_bytes", None, size),
                    _ => {}
                }
            }
            b"aspace" if heap.is_none() && ty(b"type=\"total\"") => {
                if let Some(size) = attr(body, b"size") {
                    out.put_u("aspace_bytes", None, size);
                }
            }
            _ => {}
        }
    }
    if arenas > 0 {
        out.put_u("arenas", None, arenas as u64);
    }
    for b in 0..BUCKETS {
        if by_size_chunks[b] > 0 {
            out.put_u("free_bytes_by_size", Some(1 << b), by_size_bytes[b]);
            out.put_u("free_chunks_by_size", Some(1 << b), by_size_chunks[b]);
        }
    }
    if let (Some(f), Some(r), Some(m), Some(s)) = (fast, rest, mmap, system) {
        // `rest` includes each arena's top chunk: what is left is in blocks.
        out.put_u(IN_USE, None, (s + m).saturating_sub(f + r));
        out.put_u(RESIDENT, None, s + m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Phase;
    use crate::introspect::Readings;

    struct Fixed(&'static [u8]);
    impl Probe for Fixed {
        fn read(&mut self, out: &mut Sink<'_>) {
            parse(self.0, out);
        }
    }

    fn value(r: &Readings, m: &str, key: Option<u32>) -> Option<i64> {
        r.points()
            .iter()
            .find(|p| p.metric == m && p.key == key)
            .map(|p| p.value)
    }

    // glibc 2.36's malloc_info output for a process with two arenas (abridged only in the
    // number of bins).
    const XML: &[u8] = br#"<malloc version="1">
<heap nr="0">
<sizes>
  <size from="33" to="48" total="96" count="2"/>
  <size from="1041" to="1041" total="1041" count="1"/>
  <unsorted from="2049" to="2049" total="2049" count="1"/>
</sizes>
<total type="fast" count="2" size="96"/>
<total type="rest" count="3" size="135000"/>
<system type="current" size="200704"/>
<system type="max" size="200704"/>
<aspace type="total" size="200704"/>
<aspace type="mprotect" size="200704"/>
</heap>
<heap nr="1">
<sizes>
  <size from="49" to="64" total="64" count="1"/>
</sizes>
<total type="fast" count="1" size="64"/>
<total type="rest" count="1" size="60000"/>
<system type="current" size="135168"/>
<system type="max" size="135168"/>
<aspace type="total" size="135168"/>
<aspace type="mprotect" size="135168"/>
</heap>
<total type="fast" count="3" size="160"/>
<total type="rest" count="4" size="195000"/>
<total type="mmap" count="1" size="1052672"/>
<system type="current" size="335872"/>
<system type="max" size="335872"/>
<aspace type="total" size="335872"/>
<aspace type="mprotect" size="335872"/>
</malloc>
"#;

    #[test]
    fn parses_arenas_totals_and_free_chunks_by_size() {
        let mut r = Readings::with_capacity(256);
        r.read(&mut Fixed(XML), Phase::Replay, 0);
        assert_eq!(value(&r, "arenas", None), Some(2));
        assert_eq!(value(&r, "arena_system_bytes", Some(1)), Some(135168));
        assert_eq!(value(&r, "arena_free_rest_bytes", Some(0)), Some(135000));
        assert_eq!(value(&r, "system_bytes", None), Some(335872));
        assert_eq!(value(&r, "mmap_bytes", None), Some(1052672));
        assert_eq!(value(&r, "free_fast_chunks", None), Some(3));
        // 33..48 lands in [32, 64) with the 49..64 bin of arena 1: 96 + 64 bytes, 3 chunks.
        assert_eq!(value(&r, "free_bytes_by_size", Some(32)), Some(160));
        assert_eq!(value(&r, "free_chunks_by_size", Some(32)), Some(3));
        assert_eq!(value(&r, "free_bytes_by_size", Some(2048)), Some(2049));
        assert_eq!(
            value(&r, IN_USE, None),
            Some(335872 + 1052672 - 160 - 195000)
        );
        assert_eq!(value(&r, RESIDENT, None), Some(335872 + 1052672));
    }

    #[test]
    fn a_truncated_document_yields_what_it_holds() {
        let cut = &XML[..XML.len() / 2];
        let mut r = Readings::with_capacity(256);
        struct Cut(&'static [u8]);
        impl Probe for Cut {
            fn read(&mut self, out: &mut Sink<'_>) {
                parse(self.0, out);
            }
        }
        r.read(&mut Cut(cut), Phase::Replay, 0);
        assert_eq!(value(&r, "arena_system_bytes", Some(0)), Some(200704));
        assert_eq!(value(&r, IN_USE, None), None, "no totals, no in-use figure");
    }

    #[test]
    fn the_real_malloc_info_parses_and_is_plausible() {
        let mut probe = MallocInfo::open().expect("fmemopen");
        // Twice through the same stream: the rewind must give a whole second document.
        for _ in 0..2 {
            let mut r = Readings::with_capacity(4096);
            r.read(&mut probe, Phase::Replay, 0);
            assert!(value(&r, "arenas", None).unwrap() >= 1);
            let system = value(&r, "system_bytes", None).unwrap();
            assert!(system > 0);
            assert!(value(&r, "arena_system_bytes", Some(0)).unwrap() <= system);
            assert!(value(&r, IN_USE, None).unwrap() <= value(&r, RESIDENT, None).unwrap());
        }
    }
}
