//! A private one-node Slurm cluster for the tests: munge, slurmctld and slurmd started in a temporary directory on
//! free loopback ports, without cgroups or accounting (the per-job record is jobcomp/filetxt), and stopped by the
//! process ids it started when dropped, also when a test fails.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The Debian packages of the cluster (Slurm 22.05 on bookworm).
const PACKAGES: &[&str] = &["slurmctld", "slurmd", "slurm-client", "munge"];

pub struct Cluster {
    dir: TempDir,
    daemons: Vec<(&'static str, Child)>,
}

impl Cluster {
    /// Installs Slurm when it is missing, then starts a cluster and waits until its node accepts jobs.
    pub fn start() -> Cluster {
        install();
        let dir = tempfile::Builder::new().prefix("s3t-slurm-").tempdir().expect("a temporary directory");
        let root = dir.path().to_owned();
        let root = root.as_path();
        for sub in ["state", "spool", "log", "munge"] {
            fs::create_dir_all(root.join(sub)).expect("create the cluster's directories");
        }
        // munged refuses a socket directory that others cannot traverse, and a key others can read.
        set_mode(&root.join("munge"), 0o755);
        set_mode(root, 0o755);
        let key = root.join("munge/munge.key");
        let mut bytes = [0u8; 1024];
        fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).expect("random bytes for the key");
        fs::write(&key, bytes).expect("write the munge key");
        set_mode(&key, 0o400);
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        fs::write(root.join("slurm.conf"), config(root, free_port(), free_port(), cpus)).expect("write slurm.conf");

        let mut cluster = Cluster { dir, daemons: Vec::new() };
        let r = |p: &str| root.join(p).display().to_string();
        cluster.spawn(
            "munged",
            &[
                "-F",
                "--socket",
                &r("munge/munge.socket"),
                "--key-file",
                &r("munge/munge.key"),
                "--pid-file",
                &r("munge/munged.pid"),
                "--log-file",
                &r("log/munged.log"),
                "--seed-file",
                &r("munge/seed"),
            ],
        );
        cluster.wait_for(|c| c.root().join("munge/munge.socket").exists(), "munged's socket");
        cluster.spawn("slurmctld", &["-D", "-f", &r("slurm.conf")]);
        cluster.spawn("slurmd", &["-D", "-f", &r("slurm.conf"), "-N", "localhost"]);
        cluster.wait_for(
            |c| {
                c.command("sinfo", &["-h", "-o", "%t"])
                    .is_some_and(|o| String::from_utf8_lossy(&o.stdout).contains("idle"))
            },
            "the node to be idle",
        );
        cluster
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn conf(&self) -> PathBuf {
        self.root().join("slurm.conf")
    }

    /// A client command pointed at this cluster; `None` when it cannot run.
    pub fn command(&self, program: &str, args: &[&str]) -> Option<Output> {
        Command::new(program).args(args).env("SLURM_CONF", self.conf()).output().ok()
    }

    /// Jobs (and array tasks) still pending or running.
    pub fn queue(&self) -> Vec<String> {
        let out = self.command("squeue", &["-h", "-o", "%i %T"]).expect("squeue runs");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Waits until the queue is empty.
    pub fn drain(&self, limit: Duration) {
        let started = Instant::now();
        while !self.queue().is_empty() {
            assert!(
                started.elapsed() < limit,
                "jobs still queued after {limit:?}: {:?}\n{}",
                self.queue(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Each finished job's record: `JobId=… JobState=… ExitCode=…` (jobcomp/filetxt).
    pub fn finished(&self) -> String {
        fs::read_to_string(self.root().join("log/jobcomp.txt")).unwrap_or_default()
    }

    /// The daemons' logs, for a failure's message.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["slurmctld.log", "slurmd.log", "jobcomp.txt"] {
            let body = fs::read_to_string(self.root().join("log").join(name)).unwrap_or_default();
            let tail: Vec<&str> = body.lines().rev().take(20).collect();
            text.push_str(&format!("--- {name}\n{}\n", tail.into_iter().rev().collect::<Vec<_>>().join("\n")));
        }
        text
    }

    fn spawn(&mut self, program: &'static str, args: &[&str]) {
        let log = fs::File::create(self.root().join(format!("log/{program}.out"))).expect("create a daemon log");
        let child = Command::new(program)
            .args(args)
            .env("SLURM_CONF", self.conf())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone a file handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
        self.daemons.push((program, child));
    }

    fn wait_for(&mut self, ready: impl Fn(&Cluster) -> bool, what: &str) {
        let started = Instant::now();
        while !ready(self) {
            let mut exited = None;
            for (name, child) in &mut self.daemons {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some((*name, status));
                }
            }
            if let Some((name, status)) = exited {
                panic!("{name} exited ({status}) while waiting for {what}\n{}", self.logs_of(name));
            }
            assert!(started.elapsed() < Duration::from_secs(30), "no {what} after 30 s\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs_of(&self, name: &str) -> String {
        fs::read_to_string(self.root().join(format!("log/{name}.out"))).unwrap_or_default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Jobs first (their processes are not the daemons' children), then the daemons, newest first.
        let _ = self.command("scancel", &["--full", "--user", "root"]);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10)
            && self.command("squeue", &["-h"]).is_some_and(|o| !o.stdout.is_empty())
        {
            std::thread::sleep(Duration::from_millis(100));
        }
        for (_, child) in self.daemons.iter_mut().rev() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One cluster at a time in this process: the tests share two cores.
pub static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn install() {
    static INSTALLED: Mutex<bool> = Mutex::new(false);
    let mut done = INSTALLED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if *done || PACKAGES.iter().all(|p| on_path(&daemon_name(p))) {
        *done = true;
        return;
    }
    let apt = |args: &[&str]| {
        Command::new("apt-get").args(args).env("DEBIAN_FRONTEND", "noninteractive").stdout(Stdio::null()).status()
    };
    let mut install: Vec<&str> = vec!["install", "-y", "--no-install-recommends"];
    install.extend(PACKAGES);
    let ok = apt(&install).is_ok_and(|s| s.success())
        || (apt(&["update"]).is_ok_and(|s| s.success()) && apt(&install).is_ok_and(|s| s.success()));
    assert!(ok, "Slurm is not installed and `apt-get install {}` failed (it needs root)", PACKAGES.join(" "));
    *done = true;
}

/// The program each package provides.
fn daemon_name(package: &str) -> String {
    match package {
        "slurm-client" => "sbatch".into(),
        "munge" => "munged".into(),
        other => other.into(),
    }
}

fn on_path(program: &str) -> bool {
    let dirs = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&dirs).chain([PathBuf::from("/usr/sbin")]).any(|d| d.join(program).is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a free port").port()
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("set permissions");
}

fn config(root: &Path, ctld: u16, slurmd: u16, cpus: usize) -> String {
    let r = |p: &str| root.join(p).display().to_string();
    format!(
        "ClusterName=s3t-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld}
SlurmdPort={slurmd}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={socket}
CredType=cred/munge
StateSaveLocation={state}
SlurmdSpoolDir={spool}
SlurmctldPidFile={ctld_pid}
SlurmdPidFile={d_pid}
SlurmctldLogFile={ctld_log}
SlurmdLogFile={d_log}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={jobcomp}
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=1
DependencyParameters=kill_invalid_depend
ReturnToService=2
MpiDefault=none
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=localhost Default=YES MaxTime=INFINITE State=UP
",
        socket = r("munge/munge.socket"),
        state = r("state"),
        spool = r("spool"),
        ctld_pid = r("slurmctld.pid"),
        d_pid = r("slurmd.pid"),
        ctld_log = r("log/slurmctld.log"),
        d_log = r("log/slurmd.log"),
        jobcomp = r("log/jobcomp.txt"),
    )
}
