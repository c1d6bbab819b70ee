//! The replay child: one measured pass of one allocator, in a process of its own (docs/DESIGN.md
//! contract 6), so its RSS, page faults and allocator state belong to that run alone.
//!
//! The parent starts `replay` again (`/proc/self/exe`) with the hidden `--child` flag, passes a
//! [`ChildRequest`] as one JSON document on stdin, and reads one [`ChildReply`] from stdout.
//! The plan is not sent: the child maps the parent's memfd (inherited, read-only, prefaulted),
//! so preprocessing never runs in the measured process and every child of a sweep replays the
//! very same arrays. Progress goes through a second, one-page memfd the parent polls for its
//! progress bar: the child's sampler stores the ops done there (no system call, no allocation).

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::adapter::{AdapterContext, AllocSpec, Allocator, WithAdapter};
use crate::addrmap::{Capture, Snapshots};
use crate::engine::{self, PassOptions, PassResult};
use crate::error::ReplayError;
use crate::mem::Mapping;
use crate::plan::{MappedPlan, PlanMeta};

/// What the parent asks a child to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChildRequest {
    /// The allocator.
    pub spec: AllocSpec,
    /// The plan's layout and counts; the arrays are in `plan_fd`.
    pub meta: PlanMeta,
    /// The plan memfd (inherited).
    pub plan_fd: i32,
    /// The progress memfd (inherited), if the parent shows progress.
    pub progress_fd: Option<i32>,
    /// The pass.
    pub pass: PassOptions,
}

/// What a child answers.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ChildReply {
    /// The pass ran.
    Done(Box<PassResult>),
    /// It could not run; `bad_input` when the request (or the allocator's availability) is at
    /// fault rather than the machine.
    Failed { bad_input: bool, message: String },
}

struct Pass<'a> {
    plan: &'a MappedPlan,
    opts: &'a PassOptions,
    progress: Option<&'a std::sync::atomic::AtomicU64>,
}

impl WithAdapter for Pass<'_> {
    type Output = Result<PassResult, ReplayError>;
    fn call<A: Allocator>(self, a: &A, _: &AllocSpec) -> Self::Output {
        let Some(hm) = &self.opts.heap_map else {
            return engine::run(a, &self.plan.view(), self.opts, self.progress);
        };
        // The heap-map pass: the logs and snapshots are made (and their buffers prefaulted)
        // before the barrier; the files are written after the pass, when nothing is measured.
        let mut capture = Capture {
            logs: Vec::new(),
            snapshots: Snapshots::new()?,
        };
        let r = engine::run_capture(
            a,
            &self.plan.view(),
            self.opts,
            self.progress,
            Some(&mut capture),
        )?;
        capture.write(hm)?;
        Ok(r)
    }
}

/// Checks that `malloc` in this process resolves into `lib` (the library `LD_PRELOAD` should
/// have put first): otherwise a `preload:` replay would measure glibc under `lib`'s name.
pub fn check_preload_serves_malloc(lib: &std::path::Path) -> Result<(), ReplayError> {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: dlsym with the default handle and a NUL-terminated name only looks the symbol
    // up.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"malloc".as_ptr()) };
    // SAFETY: an all-zero Dl_info is a valid value to be filled in.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the address and fills `info`, whose strings point into the
    // loader's data (valid while the object stays loaded; read at once below).
    let found = !sym.is_null() && unsafe { libc::dladdr(sym, &mut info) } != 0;
    let object = if found && !info.dli_fname.is_null() {
        // SAFETY: a NUL-terminated string from the loader (see above).
        unsafe { std::ffi::CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned()
    } else {
        String::new()
    };
    let id = |p: &std::path::Path| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    if !object.is_empty()
        && id(std::path::Path::new(&object)).is_some()
        && id(std::path::Path::new(&object)) == id(lib)
    {
        return Ok(());
    }
    Err(ReplayError::BadInput(format!(
        "preload:{} does not replace malloc (under LD_PRELOAD, malloc resolves to {}): give a malloc replacement, as preload:/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
        lib.display(),
        if object.is_empty() {
            "no shared object"
        } else {
            &object
        }
    )))
}

/// Runs the pass `req` describes.
pub fn run_request(req: &ChildRequest) -> Result<PassResult, ReplayError> {
    if let AllocSpec::Preload(lib) = &req.spec {
        check_preload_serves_malloc(lib)?;
    }
    // Before the allocator maps anything: MADV_HUGEPAGE is ignored from here on.
    let thp_disabled = req.pass.thp == crate::engine::Thp::Never;
    if thp_disabled && !crate::sys::disable_thp() {
        return Err(ReplayError::io(
            "turning transparent huge pages off (--thp never: prctl PR_SET_THP_DISABLE)",
            std::io::Error::last_os_error(),
        ));
    }
    let plan = MappedPlan::open(req.plan_fd, req.meta.clone())
        .map_err(|e| ReplayError::io("mapping the replay plan", e))?;
    let progress = match req.progress_fd {
        Some(fd) => Some(
            Mapping::file_rw(fd, 4096)
                .map_err(|e| ReplayError::io("mapping the progress page", e))?,
        ),
        None => None,
    };
    let ctx = AdapterContext {
        max_request: req.meta.max_request,
        threads: req.meta.threads.len() as u32,
    };
    // Before the adapter and the engine start any thread, so every thread inherits them.
    crate::inside::prepare();
    let mut r = req.spec.with(
        &ctx,
        Pass {
            plan: &plan,
            opts: &req.pass,
            progress: progress.as_ref().map(|m| m.counter()),
        },
    )??;
    r.thp_disabled = thp_disabled;
    (r.counters, r.os_calls) = crate::inside::take();
    Ok(r)
}

/// The child's `main`: request on stdin, reply on stdout. Returns the exit code (0 when the
/// pass ran, 2 for a request at fault, 1 otherwise).
pub fn main() -> i32 {
    let mut text = String::new();
    let reply = match std::io::stdin().read_to_string(&mut text) {
        Err(e) => ChildReply::Failed {
            bad_input: false,
            message: format!("reading the request on stdin: {e}"),
        },
        Ok(_) => match serde_json::from_str::<ChildRequest>(&text) {
            Err(e) => ChildReply::Failed {
                bad_input: true,
                message: format!(
                    "the request on stdin is not valid: {e} (--child is for replay's own use)"
                ),
            },
            Ok(req) => match run_request(&req) {
                Ok(r) => ChildReply::Done(Box::new(r)),
                Err(e) => ChildReply::Failed {
                    bad_input: e.is_bad_input(),
                    message: e.to_string(),
                },
            },
        },
    };
    let code = match &reply {
        ChildReply::Done(_) => 0,
        ChildReply::Failed {
            bad_input: true, ..
        } => 2,
        ChildReply::Failed { .. } => 1,
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &reply).is_ok() && out.flush().is_ok();
    if !written {
        return 1;
    }
    code
}
