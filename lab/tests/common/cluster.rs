//! A real one-node Slurm cluster from Debian's packages (`slurm-wlm`, `munge`; scripts/install-deps
//! installs them): munged with a key it makes, slurmctld and slurmd in the foreground as this
//! process's children, every state file in a temporary directory, stopped when dropped. Needs
//! root (slurmd runs jobs as their user: `SlurmdUser=root`). Used by tests/slurm.rs and
//! benches/slurm_overhead.rs.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on this host.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// munged, slurmctld and slurmd, the test's children, killed when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    conf: PathBuf,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    pub fn start() -> Cluster {
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
    pub fn slurm(&self, cmd: &str, args: &[&str]) -> String {
        let o = Command::new(cmd)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
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

    pub fn wait_for(&mut self, what: &str, ok: impl Fn(&Cluster) -> bool) {
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
    pub fn wait_jobs(&mut self, jobs: &[String], limit: Duration) {
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
    pub fn lab(&self, args: &[&str]) -> std::process::Output {
        super::check_bins();
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
