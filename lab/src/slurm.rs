//! `lab slurm`: a manifest's shards as a Slurm job array, and `analyze` after them.
//!
//! Staging: the manifest, its traces (same relative paths, checked by content hash, copied only
//! when missing or different), the libraries of `preload:PATH` allocators (under
//! `lib/<hash>/`, the staged manifest's runs pointing there: [`plan_preloads`]) and the
//! programs (`lab`, `replay`, `libfancy_preload.so`, `analyze`) go into the shared directory,
//! which every node must see at the same path. Then
//! `sbatch --array=0-(N-1)` runs `bin/lab run --manifest manifest.jsonl --shard
//! $SLURM_ARRAY_TASK_ID/N` (one task per shard, `--exclusive` unless asked otherwise: a
//! benchmark shares its node with nothing), and a second job, `--dependency=afterany:<array>`
//! (or `afterok`), prints `lab status` and runs `analyze` over `shards/` into `report/`.
//!
//! The array's time limit is the largest shard's worst case: every run's passes × the
//! per-child timeout, plus 10 % and 5 minutes for preprocessing; `--time` overrides it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use replayer::adapter::AllocSpec;

use crate::error::{LabError, bad};
use crate::shard::{MANIFEST_FILE, Manifest, run_limit, shard_of};
use crate::tools::Tools;

/// `afterok` (analysis only if every shard succeeded) or `afterany` (always).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum After {
    Afterok,
    Afterany,
}

/// What `lab slurm` is asked to do.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    pub manifest: PathBuf,
    /// Seen by every node at the same path.
    pub shared: PathBuf,
    pub shards: usize,
    pub partition: Option<String>,
    pub account: Option<String>,
    pub constraint: Option<String>,
    pub exclusive: bool,
    /// Minutes; default from the runs' timeouts.
    pub time_minutes: Option<u64>,
    pub after: After,
    /// Passed to both sbatch calls as they are.
    pub sbatch_args: Vec<String>,
    /// The `sbatch` program.
    pub sbatch: PathBuf,
    /// Submit the analysis job too.
    pub analyze: bool,
    pub tools: Tools,
}

/// What was submitted.
#[derive(Clone, Debug)]
pub struct Submitted {
    pub array_job: String,
    pub analyze_job: Option<String>,
    pub shards: usize,
    pub manifest: PathBuf,
    pub time_minutes: u64,
    /// Seconds staging and submitting took.
    pub seconds: f64,
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> LabError {
    LabError::io(what)
}

/// `'…'` for a shell script.
fn quote(p: &Path) -> String {
    format!("'{}'", p.to_string_lossy().replace('\'', r"'\''"))
}

/// Copies `from` to `to` through a temporary name (a running binary is replaced, never
/// written over).
fn copy_into(from: &Path, to: &Path) -> Result<(), LabError> {
    if let Some(d) = to.parent() {
        std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
    }
    let tmp = to.with_extension("staging");
    std::fs::copy(from, &tmp).map_err(io(format!(
        "copying {} to {}",
        from.display(),
        tmp.display()
    )))?;
    std::fs::rename(&tmp, to).map_err(io(format!("writing {}", to.display())))
}

fn hash_of(p: &Path) -> Result<String, LabError> {
    replayer::sweep::hash_file(p).map_err(io(format!("reading {} to hash it", p.display())))
}

/// Where each `preload:PATH` allocator's library goes in the shared directory,
/// `lib/<XXH64 of the file>/<file name>` (two libraries of one name stay apart; a changed
/// library is a new place, so a resubmission never loads a half-copied file), written into
/// the runs' `staged_lib`. Returns (library, place) to copy. A library that cannot be read is
/// bad input, named.
pub fn plan_preloads(m: &mut Manifest) -> Result<Vec<(PathBuf, String)>, LabError> {
    let mut places: std::collections::BTreeMap<String, Option<String>> = Default::default();
    let mut copies = Vec::new();
    for r in &mut m.runs {
        if !places.contains_key(&r.allocator) {
            let place = match AllocSpec::parse(&r.allocator) {
                Ok(AllocSpec::Preload(lib)) => {
                    let lib = std::path::absolute(&lib).unwrap_or(lib);
                    let hash = replayer::sweep::hash_file(&lib).map_err(|e| {
                        bad(format!(
                            "{}: run {}: allocator {}: cannot read the library to stage it: {e}",
                            m.path.display(),
                            r.id,
                            r.allocator
                        ))
                    })?;
                    let name = lib.file_name().map_or_else(
                        || "lib.so".to_string(),
                        |n| n.to_string_lossy().into_owned(),
                    );
                    let rel = format!("lib/{hash}/{name}");
                    copies.push((lib, rel.clone()));
                    Some(rel)
                }
                // Built-in allocators travel inside `replay`; a bad name is reported by the
                // shard that runs it, as without staging.
                _ => None,
            };
            places.insert(r.allocator.clone(), place);
        }
        r.staged_lib = places[&r.allocator].clone();
    }
    Ok(copies)
}

/// The array's time limit, minutes: the largest shard's worst case (see the module).
pub fn time_limit(m: &Manifest, shards: usize) -> u64 {
    let of = shard_of(&m.runs, shards);
    let mut per = vec![Duration::ZERO; shards.max(1)];
    for (r, &s) in m.runs.iter().zip(&of) {
        per[s] += run_limit(r);
    }
    let worst = per.into_iter().max().unwrap_or_default().as_secs_f64();
    (worst * 1.1 / 60.0).ceil() as u64 + 5
}

/// Stages and submits.
pub fn submit(o: &SlurmOptions) -> Result<Submitted, LabError> {
    let start = Instant::now();
    if o.shards == 0 {
        return Err(bad("--shards must be at least 1"));
    }
    let m = Manifest::read(&o.manifest)?;
    if m.runs.is_empty() {
        return Err(bad(format!("{}: no run to submit", o.manifest.display())));
    }
    let sbatch_ok = Command::new(&o.sbatch).arg("--version").output();
    if !sbatch_ok.is_ok_and(|out| out.status.success()) {
        return Err(LabError::MissingTool {
            tool: "sbatch",
            path: o.sbatch.clone(),
            build: "install Slurm's client (Debian: `apt-get install slurm-client`) or pass \
                    --sbatch PATH"
                .into(),
        });
    }
    let replay = o.tools.replay()?.to_path_buf();
    let analyze = if o.analyze {
        Some(o.tools.analyze()?.to_path_buf())
    } else {
        None
    };
    let shared =
        std::path::absolute(&o.shared).map_err(io(format!("resolving {}", o.shared.display())))?;
    std::fs::create_dir_all(&shared).map_err(io(format!("creating {}", shared.display())))?;

    // 1. The manifest: a shared directory holds one sweep. With `preload:PATH` allocators it
    // is staged with their libraries' places (a node need not have PATH).
    let dest = shared.join(MANIFEST_FILE);
    let mut m = m;
    let libs = plan_preloads(&mut m)?;
    let text = if libs.is_empty() {
        std::fs::read(&o.manifest).map_err(io(format!("reading {}", o.manifest.display())))?
    } else {
        Manifest::text(&m.header, &m.runs).into_bytes()
    };
    match std::fs::read(&dest) {
        Ok(old) if old == text => {}
        Ok(_) => {
            return Err(bad(format!(
                "{} holds another sweep's manifest: give another --shared directory, or delete \
                 it to start over",
                dest.display()
            )));
        }
        Err(_) => {
            let tmp = dest.with_extension("staging");
            std::fs::write(&tmp, &text).map_err(io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, &dest).map_err(io(format!("writing {}", dest.display())))?;
        }
    }
    // 2. The traces, at the manifest's relative paths.
    let mut staged = std::collections::HashSet::new();
    for r in &m.runs {
        if !staged.insert(r.trace.clone()) {
            continue;
        }
        if Path::new(&r.trace).is_absolute() || r.trace.split('/').any(|c| c == "..") {
            return Err(bad(format!(
                "{}: run {}: trace {} is outside the manifest's directory, so it cannot be \
                 staged: plan with `lab --plan-only`, which keeps traces under its --out",
                o.manifest.display(),
                r.id,
                r.trace
            )));
        }
        let to = shared.join(&r.trace);
        let same = to.is_file() && replayer::sweep::hash_file(&to).is_ok_and(|h| h == r.trace_hash);
        if !same {
            copy_into(&m.trace_path(r), &to)?;
        }
    }
    // The preload libraries, under lib/<content hash>/.
    for (from, rel) in &libs {
        let to = shared.join(rel);
        if !(to.is_file() && hash_of(&to)? == hash_of(from)?) {
            copy_into(from, &to)?;
        }
    }
    // 3. The programs.
    let bin = shared.join("bin");
    let lab = std::env::current_exe().map_err(io("finding the lab executable"))?;
    copy_into(&lab, &bin.join("lab"))?;
    copy_into(&replay, &bin.join("replay"))?;
    if o.tools.fancy_lib.is_file() {
        copy_into(&o.tools.fancy_lib, &bin.join("libfancy_preload.so"))?;
    }
    if let Some(a) = &analyze {
        copy_into(a, &bin.join("analyze"))?;
    }
    // 4. The job scripts.
    let sdir = shared.join("slurm");
    let logs = sdir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(format!("creating {}", logs.display())))?;
    let shards = o.shards;
    let manifest = dest;
    let shard_sh = sdir.join("shard.sh");
    write_script(
        &shard_sh,
        &format!(
            "#!/bin/bash\n# Written by `lab slurm`: one task of the array replays its shard of \
             the manifest.\nset -eu\nexec {} run --manifest {} --shard \"${{SLURM_ARRAY_TASK_ID}}/{shards}\"\n",
            quote(&bin.join("lab")),
            quote(&manifest)
        ),
    )?;
    let analyze_sh = sdir.join("analyze.sh");
    write_script(
        &analyze_sh,
        &format!(
            "#!/bin/bash\n# Written by `lab slurm`: after the array, what is done, and the \
             report over every shard.\nset -eu\n{} status --manifest {}\nexec {} {} -o {}\n",
            quote(&bin.join("lab")),
            quote(&manifest),
            quote(&bin.join("analyze")),
            quote(&shared.join("shards")),
            quote(&shared.join("report"))
        ),
    )?;
    // 5. Submission.
    let time = o.time_minutes.unwrap_or_else(|| time_limit(&m, shards));
    let name = format!("alloclab-{}", m.header.lab.profile.name());
    let mut common = Vec::new();
    if let Some(p) = &o.partition {
        common.push(format!("--partition={p}"));
    }
    if let Some(a) = &o.account {
        common.push(format!("--account={a}"));
    }
    common.extend(o.sbatch_args.iter().cloned());
    let mut args = vec![
        "--parsable".to_string(),
        format!("--array=0-{}", shards - 1),
        format!("--job-name={name}"),
        format!("--chdir={}", shared.display()),
        format!("--output={}", logs.join("shard-%A_%a.out").display()),
        format!("--time={time}"),
    ];
    if o.exclusive {
        args.push("--exclusive".into());
    }
    if let Some(c) = &o.constraint {
        args.push(format!("--constraint={c}"));
    }
    args.extend(common.iter().cloned());
    let array_job = sbatch(&o.sbatch, &args, &shard_sh)?;
    let analyze_job = if analyze.is_some() {
        let after = match o.after {
            After::Afterok => "afterok",
            After::Afterany => "afterany",
        };
        let mut args = vec![
            "--parsable".to_string(),
            format!("--dependency={after}:{array_job}"),
            format!("--job-name={name}-analyze"),
            format!("--chdir={}", shared.display()),
            format!("--output={}", logs.join("analyze-%j.out").display()),
            "--time=60".into(),
        ];
        args.extend(common);
        Some(sbatch(&o.sbatch, &args, &analyze_sh)?)
    } else {
        None
    };
    Ok(Submitted {
        array_job,
        analyze_job,
        shards,
        manifest,
        time_minutes: time,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn write_script(path: &Path, text: &str) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(io(format!("making {} executable", path.display())))
}

/// Runs `sbatch --parsable ARGS SCRIPT`; returns the job id.
fn sbatch(exe: &Path, args: &[String], script: &Path) -> Result<String, LabError> {
    let out = Command::new(exe)
        .args(args)
        .arg(script)
        .output()
        .map_err(io(format!("running {}", exe.display())))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = stdout
        .trim()
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    if !out.status.success() || id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        return Err(LabError::Io {
            what: format!(
                "sbatch {} {} failed ({}): {}",
                args.join(" "),
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            source: std::io::Error::other("the job was not submitted"),
        });
    }
    Ok(id)
}
