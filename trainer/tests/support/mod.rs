//! What the bundle tests share: running the `trainer` binary, and the fixtures (one pretrained backbone and one
//! built bundle per test process, in the target's temporary folder).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use s3t::bundle::Manifest;
use s3t::bundle::store::read_manifest;
use s3t::{Router, State};
use serde_json::Value;
use tempfile::TempDir;

/// The smallest backbone the tests train: `--depth` must be at least the number of slices.
pub const PRETRAIN: &[&str] =
    &["--pretrain-epochs", "1", "--depth", "4", "--d-model", "16", "--device", "cpu", "--quiet"];
/// The S3T configuration of every build: 2 shards of 2 slices, both cyclic orders, one epoch.
pub const BUILD: &[&str] =
    &["--shards", "2", "--slices", "2", "--budget", "2", "--epochs", "1", "--seed", "0", "--device", "cpu", "--quiet"];

// ---------------------------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------------------------

pub fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().expect("the trainer binary runs")
}

/// Runs a command that must succeed and returns its standard output.
pub fn stdout_of(args: &[&str]) -> String {
    let out = trainer(args);
    assert!(out.status.success(), "{args:?} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

pub fn json_of(args: &[&str]) -> Value {
    let text = stdout_of(args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?} printed invalid JSON ({e}): {text}"))
}

/// Runs a command that must fail with exactly one `error:` line on standard error mentioning every needle, and no
/// result on standard output.
pub fn assert_one_line_error(args: &[&str], needles: &[&str]) {
    let out = trainer(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stderr {stderr:?}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?} should print one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
    for needle in needles {
        assert!(lines[0].contains(needle), "{args:?}: {:?} does not mention {needle:?}", lines[0]);
    }
    assert!(out.stdout.is_empty(), "{args:?} printed a result despite the error");
}

/// Runs a command that must fail (possibly after notes such as audit violations); returns its standard error.
pub fn stderr_of_failure(args: &[&str]) -> String {
    let out = trainer(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{args:?} should fail; stdout {:?}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let last = stderr.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default();
    assert!(last.starts_with("error: "), "{args:?}: the last line should be the error: {stderr:?}");
    stderr
}

pub fn s(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temporary path")
}

pub fn concat<'a>(parts: &[&[&'a str]]) -> Vec<&'a str> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

// ---------------------------------------------------------------------------------------------------------------
// Fixtures: one backbone, one built bundle
// ---------------------------------------------------------------------------------------------------------------

/// The shipped data set. Read from the environment `cargo test` runs the tests in, not from the compile-time
/// value: a test binary compiled in another checkout sharing the target directory is reused as it is.
#[allow(dead_code, reason = "the bundle tests do not read the shipped data")]
pub fn shipped_data() -> PathBuf {
    let trainer =
        std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    trainer.join("../data/fashion-mnist")
}

/// A fresh directory under the target's temporary folder, removed when dropped.
pub fn scratch() -> TempDir {
    tempfile::Builder::new().prefix("bundle-test-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a temporary dir")
}

/// The directory holding the shared fixtures of this test process. It lives as long as the process (statics are
/// never dropped), so leftovers of earlier runs older than an hour are removed when it is made.
pub fn fixture_root() -> &'static Path {
    static ROOT: OnceLock<TempDir> = OnceLock::new();
    ROOT.get_or_init(|| {
        let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
            let stale = entry.metadata().and_then(|m| m.modified()).is_ok_and(|t| t < hour_ago);
            if stale && entry.file_name().to_string_lossy().starts_with("bundle-fixtures-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        tempfile::Builder::new().prefix("bundle-fixtures-").tempdir_in(parent).expect("a temporary dir")
    })
    .path()
}

/// A directory holding only a pretrained backbone (`pretrain.json` and `weights/backbone.safetensors`).
pub fn pretrained() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fixture_root().join("pretrained");
        stdout_of(&concat(&[&["pretrain", "--out", s(&dir)], PRETRAIN]));
        dir
    })
}

/// A bundle built from a copy of [`pretrained`], and the JSON summary of its build. Never modified: copy it first.
pub struct Built {
    pub dir: PathBuf,
    pub summary: Value,
}

pub fn built() -> &'static Built {
    static BUILT: OnceLock<Built> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = fixture_root().join("built");
        copy_dir(pretrained(), &dir);
        let summary = json_of(&concat(&[&["build", "--out", s(&dir), "--json"], BUILD]));
        assert_eq!(summary["assembled"], true, "{summary}");
        Built { dir, summary }
    })
}

/// A private copy of the built bundle.
pub fn built_copy() -> (TempDir, PathBuf) {
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    copy_dir(&built().dir, &dir);
    (tmp, dir)
}

pub fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create the copy");
    for entry in fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

pub fn manifest(dir: &Path) -> Manifest {
    read_manifest(dir).expect("a valid manifest")
}

pub fn router(manifest: &Manifest) -> Router {
    manifest.router(manifest.assignment().expect("partition"), &manifest.plan().expect("plan")).expect("router")
}

pub fn ledger_path(dir: &Path) -> PathBuf {
    dir.join("deletions.ledger")
}

pub fn eval_json(dir: &Path) -> Value {
    json_of(&["eval", s(dir), "--json", "--device", "cpu"])
}

pub fn audit_ok(dir: &Path) {
    let text = stdout_of(&["audit", s(dir)]);
    assert!(text.contains("audit holds"), "{text}");
}

/// Flips the bits of one byte of a file.
pub fn flip_byte(path: &Path, offset: usize) {
    let mut bytes = fs::read(path).expect("read the file");
    bytes[offset] ^= 0xFF;
    fs::write(path, bytes).expect("write the file");
}

/// A shard's progress record, once it exists and parses.
pub fn part(dir: &Path, shard: u16) -> Option<Value> {
    let bytes = fs::read(dir.join(format!("parts/shard-{shard}.json"))).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Number of nodes a shard's progress record lists, once it exists and parses.
pub fn part_nodes(dir: &Path, shard: u16) -> Option<usize> {
    Some(part(dir, shard)?["nodes"].as_array()?.len())
}

pub fn served(state: &State) -> Value {
    serde_json::to_value((0..state.shards()).map(|s| state.served(s)).collect::<Vec<_>>()).unwrap()
}
