//! OS call events (format 1.2) through the writer, both readers and the `inspect` binary: its
//! JSON counts them per call and per advice, its text shows them, and the live figures ignore
//! them.

use std::process::Command;

use traces::{Event, Header, MergedReader, OsCall, Record, TraceWriter};

fn os(call: OsCall, addr: u64, len: u64, result: u64, arg: u32, err: u8) -> Event {
    Event::Os {
        call,
        prot: 3,
        err,
        arg,
        addr,
        len,
        result,
    }
}

#[test]
fn inspect_counts_os_calls_per_call_and_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("os.zst");
    let mut h = Header::for_this_process("oscalls-test 1");
    h.command_line = vec!["test".into()];
    let dontneed = libc::MADV_DONTNEED as u32;
    let free = libc::MADV_FREE as u32;
    let events = [
        (
            0,
            Event::Malloc {
                size: 100,
                ptr: 0x1000,
            },
        ),
        (0, os(OsCall::Mmap, 0x7f00_0000_0000, 1 << 20, 0, 0x22, 0)),
        (1, os(OsCall::Mmap, 0, 1 << 40, 0, 0x22, 12)),
        (
            1,
            os(OsCall::Madvise, 0x7f00_0000_0000, 8192, 0, dontneed, 0),
        ),
        (0, os(OsCall::Madvise, 0x7f00_0001_0000, 4096, 0, free, 0)),
        (
            1,
            os(OsCall::Madvise, 0x7f00_0000_0001, 4096, 0, dontneed, 22),
        ),
        (
            0,
            os(
                OsCall::Mremap,
                0x7f00_0000_0000,
                2 << 20,
                0x7e00_0000_0000,
                1,
                0,
            ),
        ),
        (0, os(OsCall::Munmap, 0x7e00_0000_0000, 2 << 20, 0, 0, 0)),
        (1, os(OsCall::Brk, 0x55_0000, 0x2_1000, 0x57_1000, 0, 0)),
        (0, Event::Free { ptr: 0x1000 }),
    ];
    let mut w = TraceWriter::create(&path, &h).unwrap().with_frame_events(3);
    for (i, (t, e)) in events.iter().enumerate() {
        w.append(*t, 10 * i as u64, *e).unwrap();
    }
    w.finish(0).unwrap();

    let got: Vec<Record> = MergedReader::open(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let want: Vec<Record> = events
        .iter()
        .enumerate()
        .map(|(i, (t, e))| Record {
            ts: 10 * i as u64,
            thread: *t,
            event: *e,
        })
        .collect();
    assert_eq!(got, want);

    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg("--json")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["header"]["format_version"], "1.2");
    assert_eq!(
        j["os_calls"],
        serde_json::json!({
            "calls": {
                "mmap": {"calls": 2, "failed": 1, "bytes": 1 << 20},
                "munmap": {"calls": 1, "failed": 0, "bytes": 2 << 20},
                "mremap": {"calls": 1, "failed": 0, "bytes": 2 << 20},
                "brk": {"calls": 1, "failed": 0, "bytes": 0x2_1000},
                "madvise": {"calls": 3, "failed": 1, "bytes": 8192 + 4096},
            },
            "madvise_by_advice": {
                "dontneed": {"calls": 2, "failed": 1, "bytes": 8192},
                "free": {"calls": 1, "failed": 0, "bytes": 4096},
            },
        })
    );
    assert_eq!(j["by_kind"]["os"], 8);
    assert_eq!(j["ops"], 2);
    assert_eq!(j["events"], 10);
    assert_eq!(j["peak_live_bytes"], 100);
    assert_eq!(j["final_live_bytes"], 0);

    let text = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("format       1.2 written by oscalls-test 1"),
        "{text}"
    );
    assert!(
        text.contains("  madvise               3         1  12.00 KiB\n    dontneed            2         1  8.00 KiB\n    free                1         0  4.00 KiB\n"),
        "{text}"
    );
}

#[test]
fn a_trace_without_os_calls_says_none_were_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.zst");
    let mut w = TraceWriter::create(&path, &Header::for_this_process("t 1")).unwrap();
    w.append(0, 1, Event::Malloc { size: 8, ptr: 0x10 })
        .unwrap();
    w.finish(0).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_inspect"))
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("os calls     none recorded (record --os-calls records them)"),
        "{text}"
    );
}
