//! `lab slurm` against a real one-node Slurm cluster the test starts itself from Debian's
//! packages (`slurm-wlm`, `munge`; scripts/install-deps installs them): munged with a key it
//! makes, slurmctld and slurmd in the foreground as the test's own children, every state file
//! in a temporary directory, stopped at the end. Needs root (slurmd runs jobs as their user:
//! `SlurmdUser=root`); elsewhere the test says it is skipped and why. Needs `replay` beside
//! `lab` and `analyze` (as tests/lab.rs: `cargo build --locked --profile analysis -p analysis`,
//! or ALLOCLAB_ANALYZE).

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{analyze_bin, plan, result_keys, run_files, sweep_args};

/// A free TCP port on this host.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// munged, slurmctld and slurmd, the test's children, killed when dropped.
struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    fn start() -> Cluster {
        use std::os::unix::fs::PermissionsExt as _;
        for p in [
            "/usr/sbin/munged",
            "/usr/sbin/slurmctld",
            "/usr/sbin/slurmd",
        ] {
            assert!(
                Path::new(p).is_file(),
                "{p} is missing: install Debian's slurm-wlm and munge (scripts/install-deps does, \
                 from lab/ci-deps.txt)"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_path_buf();
        // munged wants every directory on its socket's path searchable by all.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let munge = d.join("munge");
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::set_permissions(&munge, std::fs::Permissions::from_mode(0o755)).unwrap();
        let key = munge.join("munge.key");
        let mut k = vec![0u8; 1024];
        use std::io::Read as _;
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut k)
            .unwrap();
        std::fs::write(&key, &k).unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o400)).unwrap();
        let sock = munge.join("sock");
        let mut c = Cluster {
            conf: d.join("slurm.conf"),
            dir,
            daemons: Vec::new(),
        };
        let log = |n: &str| std::fs::File::create(d.join("log").join(n)).unwrap();
        let munged = Command::new("/usr/sbin/munged")
            .arg("-F")
            .arg(format!("--socket={}", sock.display()))
            .arg(format!("--key-file={}", key.display()))
            .arg(format!("--pid-file={}", munge.join("pid").display()))
            .arg(format!("--log-file={}", munge.join("log").display()))
            .arg(format!("--seed-file={}", munge.join("seed").display()))
            .stdout(Stdio::null())
            .stderr(log("munged.err"))
            .spawn()
            .unwrap();
        c.daemons.push(("munged", munged));
        c.wait_for("munged's socket", |_| sock.exists());
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_string();
        let cpus = std::thread::available_parallelism().unwrap().get();
        let conf = format!(
            "ClusterName=alloclabtest\nSlurmctldHost={host}\nSlurmUser=root\nSlurmdUser=root\n\
             SlurmctldPort={}\nSlurmdPort={}\nAuthType=auth/munge\nCredType=cred/munge\n\
             AuthInfo=socket={sock}\nStateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_Core\n\
             JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
             JobCompType=jobcomp/none\nMpiDefault=none\nMailProg=/bin/true\nReturnToService=2\n\
             NodeName={host} CPUs={cpus} State=UNKNOWN\n\
             PartitionName=lab Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            free_port(),
            free_port(),
            sock = sock.display(),
            d = d.display(),
        );
        std::fs::write(&c.conf, conf).unwrap();
        for (name, exe) in [
            ("slurmctld", "/usr/sbin/slurmctld"),
            ("slurmd", "/usr/sbin/slurmd"),
        ] {
            let child = Command::new(exe)
                .arg("-D")
                .arg("-f")
                .arg(&c.conf)
                .env("SLURM_CONF", &c.conf)
                .stdout(log(&format!("{name}.out")))
                .stderr(log(&format!("{name}.err")))
                .spawn()
                .unwrap();
            c.daemons.push((name, child));
        }
        c.wait_for("the node to be idle (sinfo)", |c| {
            c.slurm("sinfo", &["-h", "-o", "%t"]).trim() == "idle"
        });
        c
    }

    /// Runs a Slurm client command with this cluster's configuration; its stdout.
    fn slurm(&self, cmd: &str, args: &[&str]) -> String {
        let o = Command::new(cmd)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn logs(&self) -> String {
        let mut s = String::new();
        for n in ["slurmctld.log", "slurmd.log", "munged.err"] {
            let t =
                std::fs::read_to_string(self.dir.path().join("log").join(n)).unwrap_or_default();
            let tail: Vec<&str> = t.lines().rev().take(15).collect();
            s += &format!(
                "--- {n}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        s
    }

    fn wait_for(&mut self, what: &str, ok: impl Fn(&Cluster) -> bool) {
        let start = Instant::now();
        while !ok(self) {
            let mut dead = None;
            for (name, child) in &mut self.daemons {
                if let Some(st) = child.try_wait().unwrap() {
                    dead = Some(format!("{name} exited ({st})"));
                }
            }
            if let Some(d) = dead {
                panic!("{d} while waiting for {what}:\n{}", self.logs());
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what} after 60 s:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until none of `jobs` is queued or running.
    fn wait_jobs(&mut self, jobs: &[String], limit: Duration) {
        let list = jobs.join(",");
        let start = Instant::now();
        loop {
            let q = self.slurm("squeue", &["-h", "-j", &list, "-o", "%i %t"]);
            if q.trim().is_empty() {
                return;
            }
            assert!(
                start.elapsed() < limit,
                "jobs {list} still queued after {limit:?}: {q}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `lab ARGS` with this cluster's configuration.
    fn lab(&self, args: &[&str]) -> std::process::Output {
        common::check_bins();
        Command::new(env!("CARGO_BIN_EXE_lab"))
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // slurmd and slurmctld before munged, each by its own handle.
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `lab slurm …`; returns the array and analysis job ids.
fn submit(c: &Cluster, manifest: &Path, shared: &Path, shards: &str) -> (String, String) {
    let o = c.lab(&[
        "slurm",
        "--manifest",
        manifest.to_str().unwrap(),
        "--shared",
        shared.to_str().unwrap(),
        "--shards",
        shards,
        "--partition",
        "lab",
        "--analyze",
        analyze_bin().to_str().unwrap(),
    ]);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    // The staging and submission time (`-- --nocapture` shows it).
    eprint!("{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        o.status.success(),
        "{out}{}\n{}",
        String::from_utf8_lossy(&o.stderr),
        c.logs()
    );
    let id = |prefix: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no `{prefix}` in {out}"))
            .to_string()
    };
    let (array, analysis) = (id("array job: "), id("analysis job: "));
    assert!(
        out.contains(&format!("follow: squeue -j {array},{analysis}")),
        "{out}"
    );
    (array, analysis)
}

fn status(c: &Cluster, manifest: &Path) -> String {
    let o = c.lab(&["status", "--manifest", manifest.to_str().unwrap()]);
    assert!(o.status.success());
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_sweep_through_slurm_makes_the_local_labs_runs() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "SKIPPED a_sweep_through_slurm_makes_the_local_labs_runs: a one-node Slurm runs \
             slurmd as root (SlurmdUser=root), and this test is not root"
        );
        return;
    }
    let analyze = analyze_bin();
    let mut c = Cluster::start();
    let d = tempfile::tempdir().unwrap();

    // 1. The tiny sweep planned, submitted as 3 array tasks, and run locally: same runs.
    let extra = ["-w", "small,larson", "-r", "2"];
    let m = plan(&d.path().join("plan"), &extra);
    let shared = d.path().join("shared");
    let (array, analysis) = submit(&c, &m, &shared, "3");
    let mut args = sweep_args(&extra);
    let local = d.path().join("local");
    args.extend([
        "-o",
        local.to_str().unwrap(),
        "--analyze",
        analyze.to_str().unwrap(),
    ]);
    let o = common::lab(&args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.wait_jobs(&[array.clone(), analysis.clone()], Duration::from_secs(600));
    let logs = shared.join("slurm/logs");
    let shard_logs = std::fs::read_dir(&logs)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(&format!("shard-{array}_"))
        })
        .count();
    assert_eq!(
        shard_logs,
        3,
        "one log per array task in {}",
        logs.display()
    );
    let mut local_keys = result_keys(&run_files(&local.join("runs")));
    let mut slurm_keys = result_keys(&run_files(&shared.join("shards")));
    assert_eq!(local_keys.len(), 16);
    // The run ids, op counts, peak live bytes and trace hashes are the same; each run's
    // measurements (time, RSS) are its own.
    local_keys.sort();
    slurm_keys.sort();
    assert_eq!(slurm_keys, local_keys);
    assert!(
        status(&c, &shared.join("manifest.jsonl"))
            .starts_with("16 runs: 16 done (16 ok, 0 not ok), 0 pending"),
    );
    let report = shared.join("report/report.html");
    assert!(
        report.is_file(),
        "the analysis job made no report: {}",
        std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("analyze-"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect::<String>()
    );

    // 2. An array task cancelled mid-run, then the sweep submitted again into the same shared
    // directory: the cancelled shard's finished runs are kept, the rest made, none twice.
    let m2 = plan(
        &d.path().join("plan2"),
        &["-w", "kv-store,small", "-r", "3", "--scale", "0.01"],
    );
    let rows = std::fs::read_to_string(&m2).unwrap().lines().count() - 1;
    let shared2 = d.path().join("shared2");
    let (array, analysis) = submit(&c, &m2, &shared2, "3");
    // Task 0 runs first (one node, --exclusive): cancel it once a run of it is in place.
    let shard0 = shared2.join("shards/0-of-3");
    let start = Instant::now();
    while run_files(&shard0).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "task 0 made no run"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    c.slurm("scancel", &[&format!("{array}_0")]);
    c.wait_jobs(&[array.clone(), analysis.clone()], Duration::from_secs(600));
    let after_cancel = status(&c, &shared2.join("manifest.jsonl"));
    let pending: usize = after_cancel
        .split(" pending")
        .next()
        .and_then(|p| p.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{after_cancel}"));
    assert!(
        pending > 0,
        "the cancelled task finished first: {after_cancel}"
    );
    let (array, analysis) = submit(&c, &m2, &shared2, "3");
    c.wait_jobs(&[array, analysis], Duration::from_secs(600));
    assert!(
        status(&c, &shared2.join("manifest.jsonl")).starts_with(&format!(
            "{rows} runs: {rows} done ({rows} ok, 0 not ok), 0 pending"
        )),
    );
    let keys = result_keys(&run_files(&shared2.join("shards")));
    assert_eq!(keys.len(), rows);
    let ids: std::collections::BTreeSet<_> = keys.iter().map(|k| k.id.clone()).collect();
    assert_eq!(ids.len(), rows, "a run twice");
}
