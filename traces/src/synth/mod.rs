//! Synthetic workload generators: traces of allocation patterns dialled one at a time (sizes,
//! lifetimes, threads, cross-thread frees), written in the same format as recorded traces so
//! everything downstream treats both alike.
//!
//! How a trace is made:
//! * a [`Workload`] is a generator plus its documentation and defaults; [`Config::new`] checks a
//!   user's [`Params`] against it and resolves every default;
//! * the generator drives simulated threads through a scheduler (`sched.rs`) on one virtual
//!   clock (`out.rs`), so timestamps are unique, increasing per thread, and the global order of
//!   the trace is the order of generation (cross-thread frees come after their allocations);
//! * every address comes from a model of an allocator's address space (`heap.rs`): size
//!   classes with LIFO free lists per thread arena, page-aligned big blocks, reuse after free,
//!   never live twice;
//! * batches of events go to encoder threads and a writer thread while generation goes on.
//!
//! The same seed and parameters give the same bytes: every random choice comes from
//! xoshiro256++ streams seeded from the seed, the workload name and a stream number, and the
//! header holds no time, host or process id. `README.md` in this folder tables every workload.
//!
//! ```no_run
//! use traces::synth::{Config, Params, generate_file};
//! let cfg = Config::new("larson", &Params { threads: Some(8), ..Params::default() })?;
//! let summary = generate_file(&cfg, "larson.trace.zst")?;
//! println!("{} events", summary.events);
//! # Ok::<(), traces::synth::SynthError>(())
//! ```

mod heap;
mod out;
mod sched;
mod sizes;
mod workloads;

use std::io::Write;
use std::path::Path;

use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::error::TraceError;
use crate::header::{Clock, Header};
use crate::writer::TraceWriter;

pub use workloads::WORKLOADS;

/// Most simulated threads a trace may have at once.
pub const MAX_THREADS: u32 = 1024;
/// Largest `--max-size` accepted (1 GiB): keeps the address-space model in range.
pub const MAX_SIZE_LIMIT: u64 = 1 << 30;
/// Largest `--align` accepted (1 MiB).
pub const MAX_ALIGN: u64 = 1 << 20;
/// Largest `--scale` accepted.
pub const MAX_SCALE: f64 = 1e6;

/// One synthetic workload: its generator, defaults and documentation (shown by
/// `synth --list` and in the README table).
pub struct Workload {
    /// The name given on the command line.
    pub name: &'static str,
    /// What it models, and from which seed document.
    pub models: &'static str,
    /// Request sizes.
    pub sizes: &'static str,
    /// How long objects live.
    pub lifetimes: &'static str,
    /// The simulated threads and their roles.
    pub threads: &'static str,
    /// Which frees are cross-thread.
    pub cross_thread: &'static str,
    /// Expected peak live bytes at the defaults.
    pub peak_live: &'static str,
    /// What `--scale` multiplies besides the ops.
    pub scales: &'static str,
    /// Default `--threads`.
    pub default_threads: u32,
    /// Fewest threads the pattern needs.
    pub min_threads: u32,
    /// Default `--ops` (allocator calls of the main phase, all threads together).
    pub default_ops: u64,
    /// Default `--min-size`/`--max-size`, for workloads whose sizes are one range.
    pub size_range: Option<(u64, u64)>,
    /// Default `--align`, for workloads with aligned allocations.
    pub align: Option<u64>,
    pub(crate) run: fn(&Config, &mut out::Ctx),
}

impl std::fmt::Debug for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workload")
            .field("name", &self.name)
            .finish()
    }
}

/// What the user asked for; `None` means the workload's default.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub threads: Option<u32>,
    pub ops: Option<u64>,
    /// Multiplies the ops and the object counts the pattern defines (default 1).
    pub scale: f64,
    pub seed: u64,
    pub min_size: Option<u64>,
    pub max_size: Option<u64>,
    pub align: Option<u64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            threads: None,
            ops: None,
            scale: 1.0,
            seed: 1,
            min_size: None,
            max_size: None,
            align: None,
        }
    }
}

/// Bad input: an unknown workload or a parameter out of range. The message names the argument
/// and what is valid.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("unknown workload '{name}'; valid: all, {valid}")]
    UnknownWorkload { name: String, valid: String },
    #[error("{arg} {value}: {valid}")]
    BadParam {
        arg: &'static str,
        value: String,
        valid: String,
    },
    #[error(transparent)]
    Trace(#[from] TraceError),
}

fn bad(arg: &'static str, value: impl ToString, valid: impl Into<String>) -> SynthError {
    SynthError::BadParam {
        arg,
        value: value.to_string(),
        valid: valid.into(),
    }
}

/// The workload called `name` (`_` and `-` are interchangeable, case is ignored).
pub fn find(name: &str) -> Result<&'static Workload, SynthError> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('_', "-");
    let n = norm(name);
    WORKLOADS
        .iter()
        .find(|w| norm(w.name) == n)
        .ok_or_else(|| SynthError::UnknownWorkload {
            name: name.to_string(),
            valid: WORKLOADS
                .iter()
                .map(|w| w.name)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// A workload with every parameter resolved and checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub workload: &'static Workload,
    pub threads: u32,
    /// `--ops` as given (before `--scale`).
    pub ops: u64,
    pub scale: f64,
    pub seed: u64,
    /// The size range, for workloads that take `--min-size`/`--max-size`.
    pub size_range: Option<(u64, u64)>,
    /// The alignment, for workloads that take `--align`.
    pub align: Option<u64>,
}

impl Config {
    /// Resolves `params` for the workload `name`, or says which argument is wrong.
    pub fn new(name: &str, params: &Params) -> Result<Config, SynthError> {
        let w = find(name)?;
        let threads = params.threads.unwrap_or(w.default_threads);
        if threads < w.min_threads || threads > MAX_THREADS {
            return Err(bad(
                "--threads",
                threads,
                format!("{} needs {}..={MAX_THREADS} threads", w.name, w.min_threads),
            ));
        }
        let ops = params.ops.unwrap_or(w.default_ops);
        if ops == 0 {
            return Err(bad("--ops", 0, "must be at least 1"));
        }
        let scale = params.scale;
        if !(scale.is_finite() && scale > 0.0 && scale <= MAX_SCALE) {
            return Err(bad(
                "--scale",
                scale,
                format!("must be a number above 0 and at most {MAX_SCALE}"),
            ));
        }
        let takes_sizes = || {
            WORKLOADS
                .iter()
                .filter(|w| w.size_range.is_some())
                .map(|w| w.name)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let size_range = match w.size_range {
            Some((lo, hi)) => {
                let (lo, hi) = (params.min_size.unwrap_or(lo), params.max_size.unwrap_or(hi));
                if lo == 0 {
                    return Err(bad("--min-size", 0, "must be at least 1 byte"));
                }
                if hi > MAX_SIZE_LIMIT {
                    return Err(bad(
                        "--max-size",
                        hi,
                        format!("must be at most {MAX_SIZE_LIMIT} bytes (1 GiB)"),
                    ));
                }
                if lo > hi {
                    return Err(bad(
                        "--min-size",
                        lo,
                        format!("is above --max-size {hi}: need min ≤ max"),
                    ));
                }
                Some((lo, hi))
            }
            None => {
                if let Some(v) = params.min_size {
                    return Err(bad(
                        "--min-size",
                        v,
                        format!(
                            "{} has no single size range; --min-size/--max-size apply to: {}",
                            w.name,
                            takes_sizes()
                        ),
                    ));
                }
                if let Some(v) = params.max_size {
                    return Err(bad(
                        "--max-size",
                        v,
                        format!(
                            "{} has no single size range; --min-size/--max-size apply to: {}",
                            w.name,
                            takes_sizes()
                        ),
                    ));
                }
                None
            }
        };
        let align = match (w.align, params.align) {
            (Some(_), Some(a)) if !a.is_power_of_two() || !(8..=MAX_ALIGN).contains(&a) => {
                return Err(bad(
                    "--align",
                    a,
                    format!("must be a power of two from 8 to {MAX_ALIGN}"),
                ));
            }
            (Some(d), a) => Some(a.unwrap_or(d)),
            (None, Some(a)) => {
                let takes: Vec<_> = WORKLOADS
                    .iter()
                    .filter(|w| w.align.is_some())
                    .map(|w| w.name)
                    .collect();
                return Err(bad(
                    "--align",
                    a,
                    format!(
                        "{} makes no aligned allocations; --align applies to: {}",
                        w.name,
                        takes.join(", ")
                    ),
                ));
            }
            (None, None) => None,
        };
        Ok(Config {
            workload: w,
            threads,
            ops,
            scale,
            seed: params.seed,
            size_range,
            align,
        })
    }

    /// The ops of the main phase: `--ops` × `--scale`, at least 1.
    pub fn total_ops(&self) -> u64 {
        self.scaled(self.ops)
    }

    /// `n` × `--scale`, rounded, at least 1.
    pub fn scaled(&self, n: u64) -> u64 {
        ((n as f64 * self.scale).round() as u64).max(1)
    }

    /// The invocation that makes this trace again (without the output path).
    pub fn command_line(&self) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "synth".into(),
            self.workload.name.into(),
            "--threads".into(),
            self.threads.to_string(),
            "--ops".into(),
            self.ops.to_string(),
            "--scale".into(),
            self.scale.to_string(),
            "--seed".into(),
            self.seed.to_string(),
        ];
        if let Some((lo, hi)) = self.size_range {
            v.extend([
                "--min-size".into(),
                lo.to_string(),
                "--max-size".into(),
                hi.to_string(),
            ]);
        }
        if let Some(a) = self.align {
            v.extend(["--align".into(), a.to_string()]);
        }
        v
    }

    /// The trace header: deterministic (no time, host or process id), the invocation as the
    /// command line, and the parameters under `synth.*` keys in `extra`.
    pub fn header(&self) -> Header {
        let mut extra = vec![
            ("synth.workload".to_string(), self.workload.name.to_string()),
            ("synth.seed".into(), self.seed.to_string()),
            ("synth.threads".into(), self.threads.to_string()),
            ("synth.ops".into(), self.ops.to_string()),
            ("synth.scale".into(), self.scale.to_string()),
            ("synth.total_ops".into(), self.total_ops().to_string()),
        ];
        if let Some((lo, hi)) = self.size_range {
            extra.push(("synth.min_size".into(), lo.to_string()));
            extra.push(("synth.max_size".into(), hi.to_string()));
        }
        if let Some(a) = self.align {
            extra.push(("synth.align".into(), a.to_string()));
        }
        Header {
            writer: format!("alloclab-synth {}", env!("CARGO_PKG_VERSION")),
            command_line: self.command_line(),
            pid: 0,
            parent_pid: 0,
            start_unix_ns: 0,
            clock: Clock::Synthetic,
            page_size: heap::PAGE as u32,
            host: String::new(),
            extra,
        }
    }

    /// An independent random stream of this trace, numbered `stream` (one per simulated
    /// thread or role).
    pub(crate) fn rng(&self, stream: u64) -> Xoshiro256PlusPlus {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.workload.name.bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        Xoshiro256PlusPlus::seed_from_u64(
            self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)
                ^ h
                ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03),
        )
    }

    /// The seed of the clock and scheduler streams.
    fn clock_seed(&self) -> u64 {
        self.seed ^ 0x243f_6a88_85a3_08d3
    }
}

/// What a generation wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub bytes: u64,
}

/// Writes the trace of `cfg` to `out` (`name` is used in error messages), encoding on as many
/// threads as the machine has cores.
pub fn generate<W: Write + Send>(
    cfg: &Config,
    out: W,
    name: &str,
) -> Result<(Summary, W), SynthError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    generate_with_encoders(cfg, out, name, cores.min(8))
}

/// [`generate`] with `encoders` encoder threads (at least 1). The bytes do not depend on it.
pub fn generate_with_encoders<W: Write + Send>(
    cfg: &Config,
    out: W,
    name: &str,
    encoders: usize,
) -> Result<(Summary, W), SynthError> {
    let writer = TraceWriter::new(
        CountingWriter {
            inner: out,
            bytes: 0,
        },
        name,
        &cfg.header(),
    )?;
    let (events, w) = out::run_to_writer(cfg.clock_seed(), writer, encoders, |ctx| {
        (cfg.workload.run)(cfg, ctx)
    })?;
    Ok((
        Summary {
            events,
            bytes: w.bytes,
        },
        w.inner,
    ))
}

/// Writes the trace of `cfg` to the file at `path`.
pub fn generate_file(cfg: &Config, path: impl AsRef<Path>) -> Result<Summary, SynthError> {
    let p = path.as_ref();
    let name = p.display().to_string();
    let f = std::fs::File::create(p)
        .map_err(|e| TraceError::new(&name, 0, crate::error::ErrorKind::Io(e)))?;
    let (s, mut w) = generate(cfg, std::io::BufWriter::with_capacity(1 << 20, f), &name)?;
    w.flush()
        .map_err(|e| TraceError::new(&name, s.bytes, crate::error::ErrorKind::Io(e)))?;
    Ok(s)
}

/// Runs the generator of `cfg` without encoding or writing anything; returns the number of
/// events (to measure generation alone).
pub fn generate_discarding(cfg: &Config) -> u64 {
    out::run_discarding(cfg.clock_seed(), |ctx| (cfg.workload.run)(cfg, ctx))
}

struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The workload table as Markdown (the README's table).
pub fn markdown_table() -> String {
    let mut s = String::from(
        "| workload | what it models (seed) | sizes | lifetimes | threads (default) | \
         cross-thread frees | peak live bytes (defaults) | --scale also multiplies |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for w in WORKLOADS {
        s.push_str(&format!(
            "| `{}` | {} | {} | {} | {} ({}) | {} | {} | {} |\n",
            w.name,
            w.models,
            w.sizes,
            w.lifetimes,
            w.threads,
            w.default_threads,
            w.cross_thread,
            w.peak_live,
            w.scales
        ));
    }
    s
}

/// The workload list as plain text (`synth --list`).
pub fn list_text() -> String {
    let mut s = String::new();
    for w in WORKLOADS {
        s.push_str(&format!("{}\n", w.name));
        s.push_str(&format!("    models:     {}\n", w.models));
        s.push_str(&format!("    sizes:      {}\n", w.sizes));
        s.push_str(&format!("    lifetimes:  {}\n", w.lifetimes));
        s.push_str(&format!("    threads:    {}\n", w.threads));
        s.push_str(&format!("    cross-thread frees: {}\n", w.cross_thread));
        s.push_str(&format!("    peak live:  {}\n", w.peak_live));
        let mut p = format!(
            "    defaults:   --threads {} (min {}) --ops {}",
            w.default_threads, w.min_threads, w.default_ops
        );
        if let Some((lo, hi)) = w.size_range {
            p.push_str(&format!(" --min-size {lo} --max-size {hi}"));
        }
        if let Some(a) = w.align {
            p.push_str(&format!(" --align {a}"));
        }
        s.push_str(&p);
        s.push('\n');
        s.push_str(&format!("    --scale multiplies: ops, {}\n\n", w.scales));
    }
    s
}
