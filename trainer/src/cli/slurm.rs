//! `trainer slurm`: a cluster build as Slurm jobs. One `prepare` job pretrains (when the bundle has no backbone) and
//! records the build's settings; a job array builds one shard per task, each resuming what an earlier attempt
//! finished and trying again when it was killed; an `assemble` job runs once every task has succeeded
//! (`afterok`). `--status` tells, per shard, what the bundle holds and why a task failed.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use s3t::bundle::manifest::{BUILD_FILE, MANIFEST_FILE};
use s3t::bundle::store::shard_lock_path;
use s3t::model::build::part_path;

use crate::cli::build;
use crate::data::Source;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory, on a file system every node of the cluster sees.
    pub bundle: PathBuf,
    /// Where the job scripts and the tasks' logs go [default: BUNDLE.slurm beside the bundle: files in the bundle
    /// itself would be files no lineage vouches for].
    #[arg(long, value_name = "DIR")]
    pub scripts: Option<PathBuf>,
    /// Slurm partition (`sbatch --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Account to charge (`sbatch --account`).
    #[arg(long)]
    pub account: Option<String>,
    /// Time limit of each job (`sbatch --time`, e.g. 2:00:00).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task: the build's threads.
    #[arg(long, value_name = "N")]
    pub cpus_per_task: Option<u32>,
    /// GPUs per task of the prepare and shard jobs (`sbatch --gpus-per-task`).
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<u32>,
    /// Memory per node of the prepare and shard jobs (`sbatch --mem`, e.g. 8G).
    #[arg(long)]
    pub mem: Option<String>,
    /// Further `sbatch` options for every job, each as one argument (e.g. `--sbatch=--qos=long`).
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch: Vec<String>,
    /// Attempts of one shard's build within its task: a build killed by a signal (out of memory, a node's
    /// OOM killer, a stray `kill`) resumes from its finished nodes; a build that fails with an error does not.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub attempts: u32,
    /// The `trainer` the jobs run [default: this executable].
    #[arg(long, value_name = "PATH")]
    pub trainer: Option<PathBuf>,
    /// Submit the jobs with `sbatch` and print their ids; otherwise write the scripts and print how to submit them.
    /// Shards already complete are not submitted again, so after a failure this submits what is left.
    #[arg(long)]
    pub submit: bool,
    /// Report what the bundle holds per shard and why a shard's task failed, instead of writing jobs.
    #[arg(long, conflicts_with = "submit")]
    pub status: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// `trainer build` options of the build (as after `trainer build`, without `--out`, `--shard`, `--resume`):
    /// e.g. `-- --shards 8 --data mr --backbone minilm`.
    #[arg(last = true, value_name = "BUILD OPTIONS")]
    pub build: Vec<String>,
}

/// The build options parsed as `trainer build` parses them, so a mistake is refused here, not in every task.
#[derive(Debug, Parser)]
#[command(name = "trainer build")]
struct BuildLine {
    #[command(flatten)]
    args: build::Args,
}

pub fn run(args: &Args) -> Result<()> {
    let bundle = absolute(&args.bundle)?;
    let scripts = match &args.scripts {
        Some(dir) => absolute(dir)?,
        None => {
            let name = bundle.file_name().ok_or_else(|| anyhow!("{}: not a bundle directory", bundle.display()))?;
            bundle.with_file_name(format!("{}.slurm", name.to_string_lossy()))
        }
    };
    if args.status {
        return status(&bundle, &scripts, args.json);
    }
    for flag in ["--out", "--shard", "--resume", "--prepare"] {
        if args.build.iter().any(|a| a == flag || a.starts_with(&format!("{flag}="))) {
            bail!("build option {flag}: `trainer slurm` sets it for each job; leave it out");
        }
    }
    let line = std::iter::once("trainer build".to_owned())
        .chain(["--out".to_owned(), bundle.display().to_string()])
        .chain(args.build.iter().cloned());
    let parsed = BuildLine::try_parse_from(line).map_err(|e| {
        anyhow!("build options {:?}: {}", args.build.join(" "), e.to_string().lines().next().unwrap_or_default())
    })?;
    let shards = shard_count(&bundle, &parsed.args)?;
    if bundle.join(MANIFEST_FILE).exists() {
        bail!("{} is already assembled: nothing to build", bundle.display());
    }
    let todo: Vec<u16> = (0..shards).filter(|&s| !shard_complete(&bundle, s)).collect();
    let prepared = bundle.join(BUILD_FILE).exists();
    let trainer = match &args.trainer {
        Some(path) => absolute(path)?,
        None => std::env::current_exe().context("cannot find this executable")?,
    };
    let jobs = Jobs { args, bundle: &bundle, scripts: &scripts, trainer: &trainer };
    std::fs::create_dir_all(scripts.join("logs")).with_context(|| format!("{}: cannot create", scripts.display()))?;
    let mut written = Vec::new();
    if !prepared {
        written.push(jobs.write("prepare.sbatch", &jobs.prepare())?);
    }
    if !todo.is_empty() {
        written.push(jobs.write("shards.sbatch", &jobs.shards(&todo))?);
    }
    written.push(jobs.write("assemble.sbatch", &jobs.assemble())?);
    if !args.submit {
        let submit = jobs.write("submit.sh", &submit_script(prepared, !todo.is_empty()))?;
        written.push(submit.clone());
        if args.json {
            let json = serde_json::json!({ "scripts": written, "submit": submit, "shards": todo });
            return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
        }
        let mut text = String::new();
        for path in &written {
            let body = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read", path.display()))?;
            let _ = writeln!(text, "# {}\n{body}", path.display());
        }
        let _ = writeln!(text, "submit them in order with `sh {}` (or `trainer slurm … --submit`)", submit.display());
        return output::print(&text);
    }
    let mut ids = serde_json::Map::new();
    let mut after: Option<String> = None;
    for (name, path) in [("prepare", !prepared), ("shards", !todo.is_empty()), ("assemble", true)]
        .into_iter()
        .filter(|(_, wanted)| *wanted)
        .map(|(name, _)| (name, scripts.join(format!("{name}.sbatch"))))
    {
        let id = sbatch(&path, after.as_deref())?;
        ids.insert(name.to_owned(), id.clone().into());
        after = Some(id);
    }
    if args.json {
        let json = serde_json::json!({ "jobs": ids, "shards": todo, "logs": scripts.join("logs") });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    let mut text = String::new();
    for (name, id) in &ids {
        let _ = writeln!(text, "submitted {name}: job {}", id.as_str().unwrap_or_default());
    }
    let _ = writeln!(
        text,
        "shards {todo:?} of {shards}; logs in {}; `trainer slurm {} --status` tells how they fare",
        scripts.join("logs").display(),
        bundle.display()
    );
    output::print(&text)
}

/// The number of shards: the recorded build's, which the options must not contradict, or the options'.
fn shard_count(bundle: &Path, args: &build::Args) -> Result<u16> {
    let source = Source::parse(&args.data)?;
    let asked = args.shape(source.is_text()).shards;
    if !bundle.join(BUILD_FILE).exists() {
        return Ok(asked);
    }
    let recorded = build::recorded_shards(bundle)?;
    if args.shards.is_some_and(|s| s != recorded) {
        bail!("--shards {asked}: {} records a build of {recorded} shards", bundle.join(BUILD_FILE).display());
    }
    Ok(recorded)
}

/// Whether a shard's record says it is complete (a damaged or missing record: not).
fn shard_complete(bundle: &Path, shard: u16) -> bool {
    let path = bundle.join(part_path(shard));
    path.exists() && build::read_part(&path).is_ok_and(|p| p.complete)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("{}: cannot resolve", path.display()))
}

/// The job scripts of one cluster build.
struct Jobs<'a> {
    args: &'a Args,
    bundle: &'a Path,
    scripts: &'a Path,
    trainer: &'a Path,
}

impl Jobs<'_> {
    /// The `#SBATCH` lines every job shares, and those of the jobs that train (`compute`).
    fn header(&self, name: &str, log: &str, compute: bool, array: Option<&str>) -> String {
        let a = self.args;
        let mut h = String::from("#!/bin/bash\n");
        let mut opt = |o: String| {
            let _ = writeln!(h, "#SBATCH {o}");
        };
        opt(format!("--job-name=s3t-{name}"));
        array.iter().for_each(|a| opt(format!("--array={a}")));
        opt(format!("--output={}", self.scripts.join("logs").join(log).display()));
        // Attempts and requeues of one task write one log, in order.
        opt("--open-mode=append".into());
        // Requeued when its node fails or it is preempted: the build resumes from the finished nodes.
        opt("--requeue".into());
        a.partition.iter().for_each(|p| opt(format!("--partition={p}")));
        a.account.iter().for_each(|p| opt(format!("--account={p}")));
        a.time.iter().for_each(|p| opt(format!("--time={p}")));
        if compute {
            a.cpus_per_task.iter().for_each(|n| opt(format!("--cpus-per-task={n}")));
            a.gpus_per_task.iter().for_each(|n| opt(format!("--gpus-per-task={n}")));
            a.mem.iter().for_each(|m| opt(format!("--mem={m}")));
        }
        a.sbatch.iter().for_each(|o| opt(o.clone()));
        h.push_str("set -u\n");
        h
    }

    fn build_line(&self, extra: &[&str]) -> String {
        let mut words = vec![self.trainer.display().to_string(), "build".into(), "--out".into()];
        words.push(self.bundle.display().to_string());
        words.extend(extra.iter().map(|s| (*s).to_owned()));
        words.extend(self.args.build.iter().cloned());
        let mut line = words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ");
        if self.args.cpus_per_task.is_some() && !self.args.build.iter().any(|a| a.starts_with("--threads")) {
            // One training run per CPU Slurm gave the task, not per CPU of the node.
            line.push_str(" --threads \"$SLURM_CPUS_PER_TASK\"");
        }
        line
    }

    fn threads(&self) -> &'static str {
        // Thread pools inside the numeric kernels, too, stay within the task's CPUs.
        if self.args.cpus_per_task.is_some() { "export RAYON_NUM_THREADS=\"$SLURM_CPUS_PER_TASK\"\n" } else { "" }
    }

    fn prepare(&self) -> String {
        format!(
            "{}{}exec {}\n",
            self.header("prepare", "prepare.log", true, None),
            self.threads(),
            self.build_line(&["--prepare"])
        )
    }

    fn shards(&self, todo: &[u16]) -> String {
        let array = todo.iter().map(u16::to_string).collect::<Vec<_>>().join(",");
        let mut s = self.header("shards", "shard-%a.log", true, Some(&array));
        s.push_str(self.threads());
        let attempts = self.args.attempts;
        let build = self.build_line(&["--shard", "$shard", "--resume"]).replace("'$shard'", "\"$shard\"");
        let _ = write!(
            s,
            r#"shard="$SLURM_ARRAY_TASK_ID"
attempt=1
while :; do
  echo "s3t: shard $shard: attempt $attempt of {attempts} (job ${{SLURM_ARRAY_JOB_ID:-?}}_$shard on $(hostname))"
  {build} && {{ echo "s3t: shard $shard: complete"; exit 0; }}
  code=$?
  # Killed by a signal (exit status above 128): resume from the finished nodes. An error is final.
  if [ "$code" -le 128 ] || [ "$attempt" -ge {attempts} ]; then
    echo "s3t: shard $shard: failed with exit status $code after $attempt attempt(s)"
    exit "$code"
  fi
  echo "s3t: shard $shard: killed (exit status $code); resuming"
  attempt=$((attempt + 1))
done
"#
        );
        s
    }

    fn assemble(&self) -> String {
        let line = [self.trainer.display().to_string(), "assemble".into(), self.bundle.display().to_string()]
            .iter()
            .map(|w| quote(w))
            .collect::<Vec<_>>()
            .join(" ");
        format!("{}exec {line}\n", self.header("assemble", "assemble.log", false, None))
    }

    fn write(&self, name: &str, text: &str) -> Result<PathBuf> {
        let path = self.scripts.join(name);
        std::fs::write(&path, text).with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(path)
    }
}

/// The jobs in order, each after the one before succeeded (an array job succeeds when every task did).
fn submit_script(prepared: bool, shards: bool) -> String {
    let mut s = String::from(
        "#!/bin/sh\n# The cluster build's jobs, each waiting for the previous one to succeed.\nset -eu\ncd \"$(dirname \"$0\")\"\n",
    );
    let mut after = String::new();
    for (name, wanted) in [("prepare", !prepared), ("shards", shards), ("assemble", true)] {
        if wanted {
            let _ = writeln!(s, "{name}=$(sbatch --parsable {after}{name}.sbatch)");
            let _ = writeln!(s, "echo \"{name}: job ${name}\"");
            after = format!("--dependency=afterok:${name} ");
        }
    }
    s
}

/// Runs `sbatch --parsable` and returns the job id.
fn sbatch(script: &Path, after: Option<&str>) -> Result<String> {
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(id) = after {
        // The array's id stands for all its tasks; `afterok` waits for every one to succeed.
        cmd.arg(format!("--dependency=afterok:{id}"));
    }
    cmd.arg(script);
    let out = cmd.output().with_context(|| format!("cannot run sbatch {} (is Slurm installed?)", script.display()))?;
    if !out.status.success() {
        bail!("sbatch {}: {}", script.display(), String::from_utf8_lossy(&out.stderr).trim().replace('\n', " "));
    }
    // `--parsable` prints `id` or `id;cluster`.
    let text = String::from_utf8_lossy(&out.stdout);
    let id = text.trim().split(';').next().unwrap_or_default().to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch {}: unexpected answer {:?}", script.display(), text.trim());
    }
    Ok(id)
}

/// A word for the shell: bare when it is plainly safe, else single-quoted.
fn quote(word: &str) -> String {
    let safe = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if safe { word.to_owned() } else { format!("'{}'", word.replace('\'', r"'\''")) }
}

/// What one shard's build has come to.
#[derive(Debug, serde::Serialize)]
struct ShardStatus {
    shard: u16,
    /// `complete`, `building` (a process holds its lock now), `failed`, `partial` or `not started`.
    state: &'static str,
    nodes: usize,
    /// The task's last error and its last word, from its log.
    error: Option<String>,
    log: Option<PathBuf>,
}

fn status(bundle: &Path, scripts: &Path, json: bool) -> Result<()> {
    if !bundle.join(BUILD_FILE).exists() {
        let log = scripts.join("logs").join("prepare.log");
        let why = last_error(&log).map(|e| format!(": {e}")).unwrap_or_default();
        bail!("{} is not prepared yet (no {BUILD_FILE}){why}", bundle.display());
    }
    let shards = build::recorded_shards(bundle)?;
    let mut rows = Vec::new();
    for shard in 0..shards {
        let path = bundle.join(part_path(shard));
        // A damaged record is what its build will say in its log; here it counts as no progress.
        let part = if path.exists() { build::read_part(&path).ok() } else { None };
        let part = part.as_ref();
        let log = scripts.join("logs").join(format!("shard-{shard}.log"));
        let log = log.exists().then_some(log);
        let (last, error) = match &log {
            Some(path) => (last_word(path), last_error(path)),
            None => (None, None),
        };
        let failed = last.as_deref().is_some_and(|l| l.contains(": failed with exit status"));
        let state = match part {
            Some(p) if p.complete => "complete",
            _ if building(bundle, shard) => "building",
            _ if failed => "failed",
            Some(_) => "partial",
            None => "not started",
        };
        let error = match (state, error, last) {
            ("failed", Some(e), Some(l)) => Some(format!("{e} ({l})")),
            ("failed", None, l) => l,
            _ => None,
        };
        rows.push(ShardStatus { shard, state, nodes: part.map_or(0, |p| p.nodes.len()), error, log });
    }
    let assembled = bundle.join(MANIFEST_FILE).exists();
    let complete = rows.iter().filter(|r| r.state == "complete").count();
    if json {
        let json = serde_json::json!({ "bundle": bundle, "assembled": assembled, "shards": rows });
        return output::print(&format!("{}\n", serde_json::to_string_pretty(&json)?));
    }
    let mut text = format!(
        "{}: {}; {complete} of {shards} shards complete\n",
        bundle.display(),
        if assembled { "assembled" } else { "not assembled" }
    );
    for r in &rows {
        let _ = write!(text, "  shard {}: {} ({} nodes)", r.shard, r.state, r.nodes);
        if let Some(e) = &r.error {
            let _ = write!(text, ": {e}");
        }
        if let (Some(log), "failed") = (&r.log, r.state) {
            let _ = write!(text, " [log {}]", log.display());
        }
        text.push('\n');
    }
    if rows.iter().any(|r| r.state == "failed") {
        text.push_str(
            "fix the cause, then `trainer slurm ... --submit` again: it submits the shards left and assemble\n",
        );
    }
    output::print(&text)
}

/// Whether a process builds `shard` now (holds its lock).
fn building(bundle: &Path, shard: u16) -> bool {
    let Ok(file) = File::open(bundle.join(shard_lock_path(shard))) else { return false };
    match file.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(std::fs::TryLockError::Error(_)) => false,
    }
}

/// The last line a task's script wrote about the shard (`s3t: shard …`).
fn last_word(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| l.starts_with("s3t: shard ")).map(str::to_owned)
}

/// The last `error:` line `trainer` wrote into a log.
fn last_error(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines().rev().find(|l| l.starts_with("error: ")).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::{quote, submit_script};

    #[test]
    fn words_reach_the_shell_unchanged() {
        assert_eq!(quote("/shared/bundle"), "/shared/bundle");
        assert_eq!(quote("--data=text:reviews.csv"), "--data=text:reviews.csv");
        assert_eq!(quote("my data/it's.csv"), r"'my data/it'\''s.csv'");
        assert_eq!(quote("$HOME"), "'$HOME'");
        assert_eq!(quote(""), "''");
    }

    #[test]
    fn each_job_waits_for_the_one_before() {
        let all = submit_script(false, true);
        assert!(all.contains("prepare=$(sbatch --parsable prepare.sbatch)"), "{all}");
        assert!(all.contains("shards=$(sbatch --parsable --dependency=afterok:$prepare shards.sbatch)"), "{all}");
        assert!(all.contains("assemble=$(sbatch --parsable --dependency=afterok:$shards assemble.sbatch)"), "{all}");
        let left = submit_script(true, false);
        assert!(left.contains("assemble=$(sbatch --parsable assemble.sbatch)") && !left.contains("shards"), "{left}");
    }
}
