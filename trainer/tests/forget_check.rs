//! Canaries (`trainer build --canaries N`) and `trainer forget-check`, through the binary: the canaries are planted
//! and recorded, and forget-check measures the bundle before and after a real deletion and retrain on a copy,
//! leaving the bundle byte for byte as it was.

// Each test file uses its own part of the shared helpers.
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

use support::*;

const CANARIES: usize = 8;

/// A bundle built like [`built`] with a handful of canaries. Never modified: copy it first.
fn canary_bundle() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = fixture_root().join("canaries");
        copy_dir(pretrained(), &dir);
        let n = CANARIES.to_string();
        stdout_of(&concat(&[&["build", "--out", s(&dir), "--canaries", &n], BUILD]));
        dir
    })
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.insert(e.path().strip_prefix(root).unwrap().to_owned(), fs::read(e.path()).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The labels of a split of the shipped data set.
fn source_labels(split: &str) -> Vec<u8> {
    let path = support::shipped_data().join(format!("{split}-labels-idx1-ubyte.gz")).display().to_string();
    let bytes = s3t::dataset::maybe_gunzip(&path, fs::read(&path).unwrap()).unwrap();
    s3t::dataset::parse_idx_labels(&path, &bytes).unwrap()
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// An estimate: a point in `range` inside its interval.
fn assert_estimate(e: &Value, range: std::ops::RangeInclusive<f64>) {
    let (value, low, high) = (number(&e["value"]), number(&e["low"]), number(&e["high"]));
    assert!(range.contains(&value) && range.contains(&low) && range.contains(&high), "{e}");
    assert!(low <= value && value <= high, "the interval does not contain its estimate: {e}");
}

/// One state of the report: figures for both groups and the AUC.
fn assert_state(state: &Value, members: usize, non_members: usize) {
    assert_eq!(state["members"]["samples"], members, "{state}");
    assert_eq!(state["non_members"]["samples"], non_members, "{state}");
    for group in ["members", "non_members"] {
        assert_estimate(&state[group]["mean_loss"], 0.0..=f64::from(f32::MAX));
        assert_estimate(&state[group]["mean_confidence"], 0.0..=1.0);
    }
    assert_estimate(&state["mia_auc"], 0.0..=1.0);
}

#[test]
fn build_plants_the_canaries_deterministically_and_records_them() {
    let m = manifest(canary_bundle());
    let c = &m.canaries;
    assert_eq!((c.planted.len(), c.twins.len()), (CANARIES, CANARIES));
    let (deletable, test) = (source_labels("deletable"), source_labels("test"));
    for p in &c.planted {
        assert_ne!(p.label, deletable[p.index], "canary {} keeps its own label", p.index);
    }
    for t in &c.twins {
        assert_ne!(t.label, test[t.index], "twin {} keeps its own label", t.index);
    }
    let spec: Value = serde_json::from_str(&fs::read_to_string(canary_bundle().join("build.json")).unwrap()).unwrap();
    assert_eq!(spec["canaries"], serde_json::to_value(c).unwrap(), "build.json records the same canaries");
    // The same flags plant the same canaries (the resumed build agrees with build.json); other flags are refused.
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    copy_dir(canary_bundle(), &dir);
    let n = CANARIES.to_string();
    stdout_of(&concat(&[&["build", "--out", s(&dir), "--resume", "--canaries", &n], BUILD]));
    assert_eq!(manifest(&dir).canaries, *c);
    assert_one_line_error(&concat(&[&["build", "--out", s(&dir), "--resume"], BUILD]), &["other settings"]);
}

#[test]
fn forget_check_reports_both_states_and_leaves_the_bundle_unchanged() {
    let dir = canary_bundle();
    let before = contents(dir);
    let report = json_of(&["forget-check", s(dir), "--canaries", "--json", "--device", "cpu"]);
    assert_eq!(contents(dir), before, "forget-check changed the bundle");
    assert!(!ledger_path(dir).exists(), "forget-check wrote a ledger into the bundle");

    assert_eq!(report["members"], "canaries", "{report}");
    assert_eq!(report["non_members"], "canary twins", "{report}");
    assert!(report["resamples"].as_u64().is_some_and(|r| r >= 1000), "{report}");
    assert!(report["before_unavailable"].is_null(), "{report}");
    assert_state(&report["before"], CANARIES, CANARIES);
    assert_state(&report["after"], CANARIES, CANARIES);
    assert_eq!(report["before"]["deleted"], 0, "{report}");
    assert_eq!(report["after"]["deleted"], CANARIES, "{report}");
    assert_eq!(report["after"]["live_shards"], 2, "every offline shard is retrained: {report}");
    assert!(!report["retrained_shards"].as_array().unwrap().is_empty(), "8 canaries take a shard offline: {report}");

    let again = json_of(&["forget-check", s(dir), "--canaries", "--json", "--device", "cpu"]);
    assert_eq!(again, report, "forget-check is a function of the bundle and the seed");
    let text = stdout_of(&["forget-check", s(dir), "--canaries", "--device", "cpu", "--quiet"]);
    assert!(text.contains("membership-inference AUC") && text.contains("before deletion"), "{text}");
}

#[test]
fn forget_check_of_deleted_samples_reports_after_only_and_ids_use_the_test_split() {
    let tmp = scratch();
    let dir = tmp.path().join("bundle");
    copy_dir(canary_bundle(), &dir);
    let m = manifest(&dir);
    let ids: Vec<String> = m.canaries.planted.iter().take(2).map(|c| c.index.to_string()).collect();
    stdout_of(&["delete", s(&dir), "--ids", &ids.join(",")]);
    let before = contents(&dir);
    let report = json_of(&["forget-check", s(&dir), "--canaries", "--json", "--device", "cpu"]);
    assert_eq!(contents(&dir), before, "forget-check changed the bundle");
    assert!(report["before"].is_null(), "{report}");
    let why = report["before_unavailable"].as_str().unwrap_or_else(|| panic!("no reason given: {report}"));
    assert!(why.contains("2 of the 8 samples are already deleted"), "{why}");
    assert_state(&report["after"], CANARIES, CANARIES);

    // Other samples, against the test split.
    let report =
        json_of(&["forget-check", s(&dir), "--ids", "3,4,5", "--json", "--device", "cpu", "--resamples", "1000"]);
    assert_eq!(report["non_members"], "test split", "{report}");
    assert_state(&report["before"], 3, m.data.test);
    assert_state(&report["after"], 3, m.data.test);

    let bad = m.data.deletable.to_string();
    assert_one_line_error(&["forget-check", s(&dir), "--ids", &bad, "--device", "cpu"], &["sample id", &bad]);
    assert_one_line_error(&["forget-check", s(&dir), "--ids", "1", "--canaries", "--device", "cpu"], &["--canaries"]);
    assert_one_line_error(&["forget-check", s(&dir), "--device", "cpu"], &["--ids"]);
}
