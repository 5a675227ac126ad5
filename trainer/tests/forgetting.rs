//! Forgetting end to end, through the `trainer` binary: after `delete` returns, no file the bundle serves or keeps
//! was computed from a deleted sample, and no command serves one — whatever happens next (a resumed build, a lost
//! file, concurrent writers, an export into an old folder, a retrain on another backend).

#[allow(dead_code)] // each test file uses a part of the shared helpers
mod support;

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::process::Command;

use s3t::bundle::samples;
use s3t::ledger::Ledger;
use s3t::{Action, Cell, SampleId};
use serde_json::Value;

use support::*;

/// One sample of each slice of a shard: deleting them takes every order of the shard offline.
fn offline_ids(dir: &Path, shard: u16) -> Vec<SampleId> {
    let m = manifest(dir);
    let assignment = m.assignment().unwrap();
    (0..m.partition.slices).map(|slice| assignment.members(Cell { shard, slice })[0].clone()).collect()
}

fn join(ids: &[SampleId]) -> String {
    ids.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn strict_audit_ok(dir: &Path) {
    let text = stdout_of(&["audit", s(dir), "--strict"]);
    assert!(text.contains("audit holds: no file of the bundle was computed from a deleted sample"), "{text}");
}

/// Every file under `dir`, relative.
fn files(dir: &Path) -> HashSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut HashSet<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.insert(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = HashSet::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn delete_removes_every_weight_file_computed_from_a_deleted_sample_and_retrain_the_superseded_ones() {
    let (_tmp, dir) = built_copy();
    let before = manifest(&dir);
    let ids = offline_ids(&dir, 0);
    let out = json_of(&["delete", s(&dir), "--ids", &join(&ids), "--json"]);
    let removed: HashSet<String> =
        out["removed_files"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
    // Every node of shard 0 saw a deleted sample (both slices lost one); the SISA checkpoints of shard 0 too.
    let expected: HashSet<String> = before.nodes[0]
        .iter()
        .map(|n| n.weights.path.clone())
        .chain(before.sisa[0].iter().map(|c| c.weights.path.clone()))
        .collect();
    assert_eq!(removed, expected, "{out}");
    let present = files(&dir);
    for path in &expected {
        assert!(!present.contains(path), "{path} is still in the bundle");
    }
    for n in &before.nodes[1] {
        assert!(present.contains(&n.weights.path), "shard 1's clean node {} was removed", n.id);
    }
    strict_audit_ok(&dir);
    let eval = eval_json(&dir);
    assert_eq!(eval["live_shards"], 1, "{eval}");

    // Retrain: new generation files; the superseded ones named nowhere are gone; the strict audit holds.
    let retrained = json_of(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--json"]);
    assert_eq!(retrained["nodes_retrained"], 4, "{retrained}");
    let after = manifest(&dir);
    let present = files(&dir);
    for n in &after.nodes[0] {
        assert!(n.weights.path.contains(".g1."), "{}", n.weights.path);
        assert!(present.contains(&n.weights.path));
    }
    assert!(present.iter().all(|p| !p.contains("shard-0/node-") || p.contains(".g1.")), "{present:?}");
    strict_audit_ok(&dir);

    // A stray weight file (e.g. a superseded generation restored from a backup) fails the strict audit only.
    let stray = dir.join("weights/shard-0/node-0.g0.safetensors");
    fs::copy(dir.join(&after.nodes[0][0].weights.path), &stray).unwrap();
    audit_ok(&dir);
    let stderr = stderr_of_failure(&["audit", s(&dir), "--strict"]);
    assert!(stderr.contains("weights/shard-0/node-0.g0.safetensors: no lineage names this file"), "{stderr}");
}

#[test]
fn a_resumed_build_after_a_delete_and_a_retrain_trains_without_the_deleted_samples() {
    let (_tmp, dir) = built_copy();
    let ids = offline_ids(&dir, 0);
    stdout_of(&["delete", s(&dir), "--ids", &join(&ids)]);
    stdout_of(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--quiet"]);
    let retrained = manifest(&dir);
    // One node file lost (any reason), then the recovery `assemble` recommends.
    let lost = retrained.nodes[0].last().unwrap().clone();
    fs::remove_file(dir.join(&lost.weights.path)).unwrap();
    assert_one_line_error(&["eval", s(&dir), "--device", "cpu"], &[&lost.weights.path]);
    stdout_of(&concat(&[&["build", "--out", s(&dir), "--resume"], BUILD]));
    let resumed = manifest(&dir);
    let node = &resumed.nodes[0][lost.id];
    // Trained again without the deleted samples: the same entry and, on the same backend, the same bytes.
    assert_eq!(node.samples, lost.samples, "the resumed node trained on another sample count");
    assert_eq!(node.lineage, lost.lineage);
    assert_eq!(node.weights.sha256, lost.weights.sha256, "the resumed node is not the retrained node bit for bit");
    let eval = eval_json(&dir);
    assert_eq!(eval["live_shards"], 2, "{eval}");
    strict_audit_ok(&dir);
}

#[test]
fn every_serving_command_refuses_a_served_node_whose_lineage_meets_the_ledger() {
    let (_tmp, dir) = built_copy();
    let original = fs::read(dir.join("manifest.json")).unwrap();
    let ids = offline_ids(&dir, 0);
    // Keep the original node files aside, as a careless backup would.
    let keep = scratch();
    copy_dir(&dir.join("weights"), &keep.path().join("weights"));
    stdout_of(&["delete", s(&dir), "--ids", &join(&ids)]);
    stdout_of(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--quiet"]);
    // Restore the pre-deletion manifest and its files: the ledger says shard 0 was retrained, so the router serves
    // full prefixes again, but the restored nodes saw the deleted samples.
    fs::write(dir.join("manifest.json"), &original).unwrap();
    copy_dir(&keep.path().join("weights"), &dir.join("weights"));
    let out = tempfile::tempdir().unwrap();
    let export_dir = out.path().join("peft");
    for args in [
        vec!["eval", s(&dir), "--device", "cpu"],
        vec!["curve", s(&dir), "--deletions", "0,1", "--device", "cpu"],
        vec!["export", s(&dir), "--format", "safetensors", "--out", s(&export_dir)],
        vec!["export", s(&dir), "--format", "web", "--out", s(&export_dir)],
    ] {
        assert_one_line_error(&args, &["refusing to serve shard 0", "node", "slice", "retrain --shard 0"]);
    }
    assert!(!export_dir.exists(), "a refused export wrote something");
    let stderr = stderr_of_failure(&["audit", s(&dir)]);
    assert!(stderr.contains("violation: shard 0 node"), "{stderr}");
}

#[test]
fn export_replaces_the_old_folder_so_offline_shards_leave_no_adapters() {
    let (_tmp, dir) = built_copy();
    let out = scratch();
    let peft = out.path().join("peft");
    stdout_of(&["export", s(&dir), "--format", "safetensors", "--out", s(&peft)]);
    assert!(peft.join("shard-0/adapter_model.safetensors").exists());
    fs::write(peft.join("unrelated.txt"), "left by someone").unwrap();
    stdout_of(&["delete", s(&dir), "--ids", &join(&offline_ids(&dir, 0))]);
    let text =
        String::from_utf8(trainer(&["export", s(&dir), "--format", "safetensors", "--out", s(&peft)]).stdout).unwrap();
    assert!(text.contains("exported 1 served components"), "{text}");
    assert!(!peft.join("shard-0").exists(), "the offline shard's adapters are still exported");
    assert!(peft.join("shard-1/adapter_model.safetensors").exists());
    assert!(!peft.join("unrelated.txt").exists(), "the export folder is replaced as a whole");
    let leftovers: Vec<_> = fs::read_dir(out.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "temporary folders left: {leftovers:?}");
}

#[test]
fn an_export_inside_the_bundle_is_removed_with_its_nodes_and_audited_by_its_lineage() {
    let (_tmp, dir) = built_copy();
    stdout_of(&["export", s(&dir), "--format", "safetensors", "--out", s(&dir.join("peft"))]);
    strict_audit_ok(&dir);
    let keep = scratch();
    copy_dir(&dir.join("peft"), keep.path());
    stdout_of(&["delete", s(&dir), "--ids", &join(&offline_ids(&dir, 0))]);
    assert!(!dir.join("peft/shard-0").exists(), "the export of a component that saw a deleted sample is kept");
    assert!(dir.join("peft/shard-1/adapter_model.safetensors").exists());
    strict_audit_ok(&dir);
    // The old export put back is caught by its lineage.
    copy_dir(keep.path(), &dir.join("peft"));
    let stderr = stderr_of_failure(&["audit", s(&dir), "--strict"]);
    assert!(stderr.contains("peft/shard-0/adapter_config.json: exported shard 0 node"), "{stderr}");
}

#[test]
fn delete_purges_the_pages_copy_of_the_deleted_samples_and_the_rest_stays_verifiable() {
    let (_tmp, dir) = built_copy();
    stdout_of(&["export", s(&dir), "--format", "web", "--out", s(&dir), "--test-limit", "5"]);
    strict_audit_ok(&dir);
    let read = || {
        let (images, labels) =
            (dir.join("data/deletable-images-idx3-ubyte.gz"), dir.join("data/deletable-labels-idx1-ubyte.gz"));
        s3t::dataset::from_idx(s(&images), fs::read(&images).unwrap(), s(&labels), fs::read(&labels).unwrap(), 10)
            .unwrap()
    };
    let original = read();
    let gone = [3usize, 1000];
    stdout_of(&["delete", s(&dir), "--ids", "3,1000"]);
    let purged = read();
    for i in gone {
        assert!(purged.image(i).iter().all(|&p| p == 0) && purged.labels[i] == 0, "sample {i} is still stored");
        assert!(original.image(i).iter().any(|&p| p != 0), "sample {i} was blank to begin with");
    }
    for i in [0usize, 4, 999, 1001] {
        assert_eq!((purged.image(i), purged.labels[i]), (original.image(i), original.labels[i]), "sample {i}");
    }
    let digests = fs::read(dir.join(samples::DIGESTS_FILE)).unwrap();
    let m = manifest(&dir);
    samples::verify("d", &purged, &digests, &m.data.deletable_digests_sha256, &gone.into()).unwrap();
    strict_audit_ok(&dir);
    // The unpurged copy put back is caught.
    let (images, labels) = s3t::dataset::to_idx_gz(&original);
    fs::write(dir.join("data/deletable-images-idx3-ubyte.gz"), images).unwrap();
    fs::write(dir.join("data/deletable-labels-idx1-ubyte.gz"), labels).unwrap();
    let stderr = stderr_of_failure(&["audit", s(&dir), "--strict"]);
    assert!(stderr.contains("sample 3 was deleted but its pixels or label are still stored"), "{stderr}");
}

#[test]
fn the_manifest_records_the_backend_and_a_retrain_elsewhere_must_be_asked_for() {
    let (_tmp, dir) = built_copy();
    let m = manifest(&dir);
    assert_eq!(m.backend.kind, "cpu-flex");
    stdout_of(&["delete", s(&dir), "--ids", &join(&offline_ids(&dir, 0))]);
    // The same bundle as if built on a GPU.
    let path = dir.join("manifest.json");
    let mut json: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    json["backend"]["kind"] = Value::String("wgpu".into());
    fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    assert_one_line_error(
        &["retrain", s(&dir), "--shard", "0", "--device", "cpu"],
        &["built on wgpu", "cpu-flex", "--allow-backend-change"],
    );
    assert_eq!(manifest(&dir).nodes, m.nodes, "a refused retrain changed nothing");
    stdout_of(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--allow-backend-change", "--quiet"]);
    assert_eq!(manifest(&dir).backend.kind, "cpu-flex");
    strict_audit_ok(&dir);
}

#[test]
fn concurrent_retrains_and_a_delete_lose_nothing_acknowledged_and_keep_the_audit() {
    let (_tmp, dir) = built_copy();
    let zero = offline_ids(&dir, 0);
    let one = offline_ids(&dir, 1);
    stdout_of(&["delete", s(&dir), "--ids", &join(&[zero.clone(), one.clone()].concat())]);
    let spawn = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output();
    let (a, b, c) = std::thread::scope(|scope| {
        let a = scope.spawn(|| spawn(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--quiet"]));
        let b = scope.spawn(|| spawn(&["retrain", s(&dir), "--shard", "1", "--device", "cpu", "--quiet"]));
        let c = scope.spawn(|| spawn(&["delete", s(&dir), "--ids", "7,8,9"]));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap(), c.join().unwrap().unwrap())
    });
    for (name, out) in [("retrain 0", &a), ("retrain 1", &b), ("delete", &c)] {
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let actions = Ledger::read(ledger_path(&dir)).unwrap().0;
    for id in zero.iter().chain(&one).cloned().chain([7, 8, 9].map(SampleId::Int)) {
        assert!(actions.contains(&Action::Delete(id.clone())), "the acknowledged deletion of {id} was lost");
    }
    for shard in [0, 1] {
        assert!(actions.contains(&Action::Retrained { shard }), "the retrain of shard {shard} was lost");
    }
    // Both retrains' nodes are in the manifest: neither wrote back the other's stale view.
    let m = manifest(&dir);
    assert!(m.nodes.iter().all(|shard| shard.iter().any(|n| n.generation == 1)), "a retrain was overwritten");
    strict_audit_ok(&dir);
    let eval = eval_json(&dir);
    assert!(eval["accuracy"].is_number(), "{eval}");
}

/// E1 through the pretraining command itself: the same public split with another deletable split (every deletable
/// image inverted, every label moved) gives the same backbone, bit for bit.
#[test]
fn e1_pretraining_never_reads_the_deletable_split() {
    let tmp = scratch();
    let data = support::shipped_data();
    let (plain, changed) = (tmp.path().join("plain"), tmp.path().join("changed"));
    copy_dir(&data, &plain);
    copy_dir(&data, &changed);
    let file = |dir: &Path, kind: &str| dir.join(format!("deletable-{kind}-ubyte.gz"));
    let (images, labels) = (file(&changed, "images-idx3"), file(&changed, "labels-idx1"));
    let mut deletable =
        s3t::dataset::from_idx(s(&images), fs::read(&images).unwrap(), s(&labels), fs::read(&labels).unwrap(), 10)
            .unwrap();
    deletable.pixels.iter_mut().for_each(|p| *p = 255 - *p);
    deletable.labels.iter_mut().for_each(|l| *l = (*l + 1) % 10);
    let (i, l) = s3t::dataset::to_idx_gz(&deletable);
    fs::write(&images, i).unwrap();
    fs::write(&labels, l).unwrap();
    let backbone = |data: &Path, out: &Path| {
        let source = format!("idx:{}", s(data));
        stdout_of(&concat(&[&["pretrain", "--data", &source, "--out", s(out)], PRETRAIN]));
        let record: Value = serde_json::from_slice(&fs::read(out.join("pretrain.json")).unwrap()).unwrap();
        (
            record["backbone"]["weights"]["sha256"].as_str().unwrap().to_owned(),
            record["data"]["deletable_sha256"].clone(),
        )
    };
    let (a, a_data) = backbone(&plain, &tmp.path().join("a"));
    let (b, b_data) = backbone(&changed, &tmp.path().join("b"));
    assert_ne!(a_data, b_data, "the two sources must differ in their deletable split");
    assert_eq!(a, b, "the backbone depends on the deletable split");
}
