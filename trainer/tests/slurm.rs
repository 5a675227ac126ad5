//! Cluster builds on a real Slurm: `trainer slurm --submit` on a private one-node cluster (installed when missing,
//! started in a temporary directory, stopped by its process ids) builds the bundle a single machine builds, through
//! a killed task, a cancelled one, a deletion recorded while the shards train, and a shard that fails for good.

#[path = "slurm/cluster.rs"]
mod cluster;
#[allow(dead_code)] // each test file uses a part of the shared helpers
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use s3t::bundle::manifest::PRETRAIN_FILE;
use s3t::bundle::{BuildSpec, PretrainRecord};
use s3t::partition::{Cell, SampleId};
use serde_json::Value;

use cluster::{Cluster, ONE_AT_A_TIME};
use support::*;

/// How long a tiny cluster build may take on two busy cores.
const LIMIT: Duration = Duration::from_secs(600);

/// Runs `trainer slurm` against `cluster`; it must succeed.
fn slurm(cluster: &Cluster, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .arg("slurm")
        .args(args)
        .env("SLURM_CONF", cluster.conf())
        .output()
        .expect("the trainer binary runs");
    assert!(
        out.status.success(),
        "slurm {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        cluster.logs()
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn slurm_json(cluster: &Cluster, args: &[&str]) -> Value {
    let text = slurm(cluster, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("slurm {args:?} printed invalid JSON ({e}): {text}"))
}

fn complete(dir: &Path, shard: u16) -> bool {
    part(dir, shard).is_some_and(|p| p["complete"] == true)
}

/// Waits until shard `shard` has recorded a trained node but is not complete: the moment to interfere.
fn wait_mid_build(cluster: &Cluster, dir: &Path, shard: u16) {
    let started = Instant::now();
    while part_nodes(dir, shard).unwrap_or(0) == 0 {
        assert!(started.elapsed() < LIMIT, "shard {shard} recorded no node\n{}", cluster.logs());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!complete(dir, shard), "shard {shard} finished before the test could interfere");
}

/// The process ids of `trainer build` runs of `shard` in `dir`.
fn build_pids(dir: &Path, shard: u16) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else { continue };
        let words: Vec<String> = cmdline.split(|&b| b == 0).map(|w| String::from_utf8_lossy(w).into_owned()).collect();
        let has = |pair: [&str; 2]| words.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        let is_trainer = words.first().is_some_and(|w| w.ends_with("/trainer"));
        if is_trainer
            && words.get(1).is_some_and(|w| w == "build")
            && has(["--shard", &shard.to_string()])
            && has(["--out", s(dir)])
        {
            pids.push(pid);
        }
    }
    pids
}

/// Each recorded weight file of a shard and its modification time.
fn file_times(dir: &Path, shard: u16) -> BTreeMap<String, SystemTime> {
    let part = part(dir, shard).expect("a progress record");
    let entries = part["nodes"].as_array().into_iter().flatten().chain(part["sisa"].as_array().into_iter().flatten());
    entries
        .filter_map(|e| e["weights"]["path"].as_str().map(str::to_owned))
        .filter_map(|p| fs::metadata(dir.join(&p)).and_then(|m| m.modified()).ok().map(|t| (p, t)))
        .collect()
}

fn log(dir: &Path, name: &str) -> String {
    let scripts = dir.with_file_name(format!("{}.slurm", dir.file_name().unwrap().to_string_lossy()));
    fs::read_to_string(scripts.join("logs").join(name)).unwrap_or_default()
}

/// Node and SISA checksums by (shard, id): what two builds of one bundle must share, whatever their file names.
fn checksums(dir: &Path) -> BTreeMap<String, String> {
    let m = manifest(dir);
    let nodes = m
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(s, n)| n.iter().map(move |e| (format!("{s}/node {}", e.id), e.weights.sha256.clone())));
    let sisa = m
        .sisa
        .iter()
        .enumerate()
        .flat_map(|(s, n)| n.iter().map(move |e| (format!("{s}/sisa {}", e.checkpoint), e.weights.sha256.clone())));
    nodes.chain(sisa).collect()
}

#[test]
fn a_job_array_builds_the_single_machine_bundle_and_a_killed_task_resumes() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cluster = Cluster::start();
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    copy_dir(pretrained(), &dir);

    // Written, not submitted: the scripts an HPC user reads first.
    let text = slurm(
        &cluster,
        &concat(&[&[s(&dir), "--partition", "test", "--time", "30:00", "--cpus-per-task", "1", "--"], BUILD]),
    );
    for want in [
        "#SBATCH --array=0,1",
        "#SBATCH --requeue",
        "#SBATCH --partition=test",
        "#SBATCH --time=30:00",
        "--resume",
        "--prepare",
        "assemble",
        "afterok",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    let submitted =
        slurm_json(&cluster, &concat(&[&[s(&dir), "--submit", "--json", "--cpus-per-task", "1", "--"], BUILD]));
    assert_eq!(submitted["shards"], serde_json::json!([0, 1]), "{submitted}");
    for job in ["prepare", "shards", "assemble"] {
        assert!(submitted["jobs"][job].is_string(), "{job} was not submitted: {submitted}");
    }

    // SIGKILL shard 1's build in the middle: the task's script resumes it.
    wait_mid_build(&cluster, &dir, 1);
    let pids = build_pids(&dir, 1);
    assert!(!pids.is_empty(), "no build of shard 1 is running");
    for pid in &pids {
        Command::new("kill").args(["-KILL", &pid.to_string()]).status().expect("kill runs");
    }
    let before = file_times(&dir, 1);
    assert!(!before.is_empty());

    cluster.drain(LIMIT);
    assert!(
        dir.join("manifest.json").exists(),
        "assemble did not run\n{}\n{}",
        log(&dir, "shard-1.log"),
        cluster.logs()
    );
    let shard_log = log(&dir, "shard-1.log");
    assert!(shard_log.contains("killed (exit status 137); resuming"), "{shard_log}");
    assert!(shard_log.contains("s3t: shard 1: complete"), "{shard_log}");
    let after = file_times(&dir, 1);
    for (path, time) in &before {
        assert_eq!(after.get(path), Some(time), "{path}, finished before the kill, was trained again");
    }
    assert_eq!(
        fs::read(dir.join("manifest.json")).unwrap(),
        fs::read(built().dir.join("manifest.json")).unwrap(),
        "the cluster's manifest is byte-identical to the single-machine one"
    );
    let (ours, theirs) = (manifest(&dir), manifest(&built().dir));
    for (a, b) in ours.weight_files().zip(theirs.weight_files()) {
        assert_eq!((&a.path, &a.sha256), (&b.path, &b.sha256));
    }
    audit_ok(&dir);
    let status = slurm(&cluster, &[s(&dir), "--status"]);
    assert!(status.contains("assembled; 2 of 2 shards complete"), "{status}");
    assert!(cluster.finished().lines().all(|l| l.contains("JobState=COMPLETED")), "{}", cluster.finished());
}

#[test]
fn a_deletion_during_the_cluster_build_is_honoured_and_a_cancelled_task_is_resubmitted() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    // Three passes: time to delete while a shard trains.
    let build = [
        "--shards", "2", "--slices", "2", "--budget", "2", "--epochs", "3", "--seed", "0", "--device", "cpu", "--quiet",
    ];
    let cluster = Cluster::start();
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    copy_dir(pretrained(), &dir);
    let submitted = slurm_json(&cluster, &concat(&[&[s(&dir), "--submit", "--json", "--"], &build]));
    let array = submitted["jobs"]["shards"].as_str().expect("the array's id").to_owned();

    // A sample of shard 0's first slice, deleted while shard 0 trains.
    wait_mid_build(&cluster, &dir, 0);
    let spec: BuildSpec = serde_json::from_slice(&fs::read(dir.join("build.json")).unwrap()).unwrap();
    let record =
        PretrainRecord::from_json(PRETRAIN_FILE, &fs::read_to_string(dir.join(PRETRAIN_FILE)).unwrap()).unwrap();
    let assignment = spec.partition.assign((0..record.data.deletable as u64).map(SampleId::Int)).unwrap();
    let victim = assignment.members(Cell { shard: 0, slice: 0 })[0].to_string();
    let deleted = json_of(&["delete", s(&dir), "--ids", &victim, "--json"]);
    assert_eq!(deleted["building"], true, "{deleted}");
    // And shard 1's task is cancelled: the assemble job must then never run.
    assert!(cluster.command("scancel", &[&format!("{array}_1")]).is_some_and(|o| o.status.success()));

    cluster.drain(LIMIT);
    assert!(!dir.join("manifest.json").exists(), "assemble ran although shard 1 was cancelled");
    let shard_log = log(&dir, "shard-0.log");
    assert!(complete(&dir, 0), "{shard_log}");
    assert!(
        shard_log.contains("1 more deleted samples in the ledger since this build started"),
        "the deletion came mid-build: {shard_log}"
    );
    let status = slurm_json(&cluster, &[s(&dir), "--status", "--json"]);
    assert_eq!(status["shards"][0]["state"], "complete", "{status}");
    assert_ne!(status["shards"][1]["state"], "complete", "{status}");

    // Submitting again sends what is left: shard 1, then assemble.
    let again = slurm_json(&cluster, &concat(&[&[s(&dir), "--submit", "--json", "--"], &build]));
    assert_eq!(again["shards"], serde_json::json!([1]), "{again}");
    assert!(again["jobs"]["prepare"].is_null(), "{again}");
    cluster.drain(LIMIT);
    assert!(dir.join("manifest.json").exists(), "{}\n{}", log(&dir, "assemble.log"), cluster.logs());
    audit_ok(&dir);
    let strict = stdout_of(&["audit", s(&dir), "--strict"]);
    assert!(strict.contains("audit holds"), "{strict}");

    // The same bundle as one machine's build made after the deletion.
    let reference = tmp.path().join("reference");
    copy_dir(pretrained(), &reference);
    stdout_of(&concat(&[&["build", "--out", s(&reference), "--prepare"], &build]));
    stdout_of(&["delete", s(&reference), "--ids", &victim]);
    stdout_of(&concat(&[&["build", "--out", s(&reference)], &build]));
    assert_eq!(checksums(&dir), checksums(&reference), "every node and checkpoint equals the one-machine build's");
    let eval = eval_json(&dir);
    assert_eq!(eval, eval_json(&reference));
    assert_eq!(eval["live_shards"], 2, "no prefix was lost: the nodes that saw the sample were trained again");
}

#[test]
fn a_shard_that_fails_for_good_stops_assemble_and_says_why() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let cluster = Cluster::start();
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    // A damaged progress record: shard 1's build refuses it, an error no retry cures.
    fs::create_dir_all(dir.join("parts")).unwrap();
    fs::write(dir.join("parts/shard-1.json"), "{ damaged").unwrap();
    // No backbone yet: the prepare job pretrains it.
    let pretrain: Vec<&str> =
        PRETRAIN.iter().copied().filter(|a| !["--device", "cpu", "--quiet"].contains(a)).collect();
    let options = concat(&[&pretrain, BUILD]);
    let submitted = slurm_json(&cluster, &concat(&[&[s(&dir), "--submit", "--json", "--"], &options]));
    assert!(submitted["jobs"]["prepare"].is_string(), "{submitted}");
    cluster.drain(LIMIT);

    assert!(dir.join(PRETRAIN_FILE).exists(), "the prepare job pretrained: {}", log(&dir, "prepare.log"));
    assert!(complete(&dir, 0), "{}", log(&dir, "shard-0.log"));
    assert!(!dir.join("manifest.json").exists(), "assemble ran although shard 1 failed");
    assert!(log(&dir, "assemble.log").is_empty(), "the assemble job started");
    let shard_log = log(&dir, "shard-1.log");
    assert!(shard_log.contains("failed with exit status 1 after 1 attempt(s)"), "an error is not retried: {shard_log}");

    let status = slurm_json(&cluster, &[s(&dir), "--status", "--json"]);
    assert_eq!(status["shards"][1]["state"], "failed", "{status}");
    let why = status["shards"][1]["error"].as_str().unwrap_or_default();
    assert!(why.contains("parts/shard-1.json"), "the error names the file: {status}");
    let text = slurm(&cluster, &[s(&dir), "--status"]);
    assert!(text.contains("shard 1: failed") && text.contains("shard-1.json"), "{text}");

    // Fixed, submitted again: the rest of the build.
    fs::remove_file(dir.join("parts/shard-1.json")).unwrap();
    let again = slurm_json(&cluster, &concat(&[&[s(&dir), "--submit", "--json", "--"], &options]));
    assert_eq!(again["shards"], serde_json::json!([1]), "{again}");
    cluster.drain(LIMIT);
    assert!(dir.join("manifest.json").exists(), "{}", log(&dir, "assemble.log"));
    audit_ok(&dir);
}
