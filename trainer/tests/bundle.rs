//! End-to-end tests of a bundle's life through the `trainer` binary: pretrain, build (whole, per shard, interrupted
//! and resumed), assemble, delete, eval, curve, audit (and its failure on every kind of tampering), retrain, export.
//!
//! Every bundle is tiny (2 shards × 2 slices, budget 2, one epoch on a 4-block, 16-wide backbone) so the whole file
//! runs in seconds on the CPU. One backbone and one built bundle are made once per test process; tests that change a
//! bundle work on a copy.

mod support;

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use s3t::ledger::{HEADER_LEN, Ledger, RECORD_HEADER_LEN};
use s3t::{Action, Cell, Event, SampleId};
use serde_json::Value;

use support::*;

// ---------------------------------------------------------------------------------------------------------------
// 0. The quality guard
// ---------------------------------------------------------------------------------------------------------------

/// Where the guard's figures are recorded.
const QUALITY_RECORD: &str = "tests/fixtures/quality_guard.json";

/// The fixture bundle's quality with no deletions, recorded: S3T's and SISA's test accuracy, each shard's, the
/// backbone's and the nodes' mean validation accuracy. Training is bit-exact on the CPU backend, so a change to
/// training, batching, partitioning or data handling that moves any weight moves these figures and fails here, in
/// the change that makes it. If the change is meant, record the new figures with
/// `S3T_RECORD_QUALITY=1 cargo test --workspace -- quality_guard` and measure the quality tables of docs/performance.md again
/// (`trainer quality`) in the same change.
#[test]
fn quality_guard_the_fixture_bundles_accuracies_are_the_recorded_ones() {
    let eval = eval_json(&built().dir);
    let measured = serde_json::json!({
        "s3t_accuracy": eval["accuracy"],
        "sisa_accuracy": eval["sisa_accuracy"],
        "per_shard": eval["per_shard"],
        "backbone_accuracy": eval["backbone_accuracy"],
        "mean_node_validation_accuracy": built().summary["mean_node_validation_accuracy"],
        "test_samples": eval["test_samples"],
    });
    let trainer_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), std::path::PathBuf::from);
    let path = trainer_dir.join(QUALITY_RECORD);
    if std::env::var_os("S3T_RECORD_QUALITY").is_some() {
        fs::write(&path, format!("{}\n", serde_json::to_string_pretty(&measured).unwrap())).expect("write the record");
        return;
    }
    let recorded: Value = serde_json::from_slice(&fs::read(&path).expect("the recorded figures"))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        measured, recorded,
        "the fixture bundle's quality moved: training changed. If that is meant, record it (S3T_RECORD_QUALITY=1 \
         cargo test --workspace -- quality_guard) and measure the quality tables of docs/performance.md again"
    );
}

// ---------------------------------------------------------------------------------------------------------------
// 1. The JSON interfaces
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn eval_curve_and_audit_print_the_documented_json() {
    let built = built();
    let dir = &built.dir;
    let m = manifest(dir);
    assert_eq!(m.nodes.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4], "two cyclic orders of two slices");
    assert_eq!(m.sisa.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2]);
    assert_eq!(m.train.learning_rate, 1e-3, "the ViT's default learning rate");
    assert_eq!(built.summary["shards_built"], serde_json::json!([0, 1]));
    assert_eq!(built.summary["nodes_per_shard"], serde_json::json!([4, 4]));

    let eval = eval_json(dir);
    let accuracy = eval["accuracy"].as_f64().unwrap_or_else(|| panic!("accuracy is not a number: {eval}"));
    assert!((0.0..=1.0).contains(&accuracy), "{eval}");
    let per_shard = eval["per_shard"].as_array().unwrap_or_else(|| panic!("per_shard is not an array: {eval}"));
    assert_eq!(per_shard.len(), 2, "{eval}");
    for acc in per_shard {
        assert!(acc.is_null() || acc.as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{eval}");
    }
    assert!(per_shard.iter().all(Value::is_number), "a fresh bundle serves every shard: {eval}");
    assert_eq!(eval["live_shards"], 2, "{eval}");
    assert_eq!(eval["deleted"], 0, "{eval}");
    assert_eq!(eval["served"], served(&router(&m).initial()), "{eval}");
    assert!(eval["sisa_accuracy"].is_number(), "{eval}");

    let curve = json_of(&["curve", s(dir), "--deletions", "0,5,10", "--seed", "1", "--json", "--device", "cpu"]);
    let points = curve.as_array().unwrap_or_else(|| panic!("curve is not an array: {curve}"));
    assert_eq!(points.iter().map(|p| p["deletions"].as_u64()).collect::<Vec<_>>(), [Some(0), Some(5), Some(10)]);
    for p in points {
        for key in ["s3t_accuracy", "sisa_accuracy"] {
            assert!(p[key].is_null() || p[key].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{key}: {p}");
        }
        for key in ["s3t_live_shards", "sisa_live_shards"] {
            assert!(p[key].as_u64().is_some_and(|n| n <= 2), "{key}: {p}");
        }
    }
    // Before any deletion the curve starts where eval is (the same served components on the same test split).
    assert_eq!(points[0]["s3t_accuracy"], eval["accuracy"], "{curve}");
    assert_eq!(points[0]["sisa_accuracy"], eval["sisa_accuracy"], "{curve}");
    let again = json_of(&["curve", s(dir), "--deletions", "0,5,10", "--seed", "1", "--json", "--device", "cpu"]);
    assert_eq!(curve, again, "curve is a function of the bundle and the seed");

    audit_ok(dir);
    let report = json_of(&["audit", s(dir), "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    assert_eq!(report["served_components"], 2, "{report}");
    assert!(!ledger_path(dir).exists(), "reading commands must not create a ledger");
}

// ---------------------------------------------------------------------------------------------------------------
// 2. Deleting
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn delete_records_ids_and_reports_what_the_reducer_predicts() {
    let (_tmp, dir) = built_copy();
    let m = manifest(&dir);
    let router = router(&m);
    let ledger = ledger_path(&dir);

    // The route reducer's prediction for deleting 3 then 4.
    let mut state = router.initial();
    let mut expected = Vec::new();
    for id in [3, 4] {
        expected.extend(router.apply_in_place(&mut state, &Action::Delete(SampleId::Int(id))).unwrap());
    }
    assert!(expected.iter().any(|e| matches!(e, Event::Deactivated { .. })), "{expected:?}");
    let out = json_of(&["delete", s(&dir), "--ids", "3,4", "--json"]);
    assert_eq!(out["events"], serde_json::to_value(&expected).unwrap(), "{out}");
    assert_eq!(out["served"], served(&state), "{out}");
    assert_eq!(out["deleted"], 2, "{out}");
    assert_eq!(out["live_shards"], state.live_shards(), "{out}");
    let deletes = |ids: &[u64]| ids.iter().map(|&i| Action::Delete(SampleId::Int(i))).collect::<Vec<_>>();
    assert_eq!(Ledger::read(&ledger).unwrap().0, deletes(&[3, 4]));

    let eval = eval_json(&dir);
    assert_eq!(eval["deleted"], 2, "{eval}");
    assert_eq!(eval["served"], served(&state), "{eval}");
    assert_eq!(eval["live_shards"], state.live_shards(), "{eval}");

    // Unknown ids: one error line and not a byte of the ledger changes, even when known ids come first.
    let before = fs::read(&ledger).unwrap();
    let n = m.data.deletable.to_string();
    assert_one_line_error(&["delete", s(&dir), "--ids", "999999"], &["999999", "nothing was deleted"]);
    assert_one_line_error(&["delete", s(&dir), "--ids", &format!("5,{n}")], &[&n, "nothing was deleted"]);
    assert_eq!(fs::read(&ledger).unwrap(), before, "a refused delete must leave the ledger untouched");

    // Deleting again is a no-op: nothing is appended.
    let again = json_of(&["delete", s(&dir), "--ids", "3", "--json"]);
    assert_eq!(again["events"], serde_json::json!([{"event": "already_deleted", "id": 3}]), "{again}");
    assert_eq!(again["deleted"], 2, "{again}");
    assert_eq!(fs::read(&ledger).unwrap(), before, "a repeated delete must not append");

    // --ids-file: comments, blank lines, repeats within the batch and already deleted ids.
    let file = dir.join("ids.txt");
    fs::write(&file, "# to forget\n\n5\n  6  \n5\n3\n").unwrap();
    let out = json_of(&["delete", s(&dir), "--ids-file", s(&file), "--json"]);
    assert_eq!(out["deleted"], 4, "{out}");
    for id in [5, 6] {
        let events = out["events"].as_array().unwrap();
        assert_eq!(
            events.iter().filter(|e| e["event"] == "deleted" && e["id"] == id).count(),
            1,
            "{id} deleted once: {out}"
        );
    }
    assert!(out["events"].as_array().unwrap().contains(&serde_json::json!({"event": "already_deleted", "id": 3})));
    assert_eq!(Ledger::read(&ledger).unwrap().0, deletes(&[3, 4, 5, 6]));
    assert_eq!(eval_json(&dir)["deleted"], 4);
    audit_ok(&dir);
}

// ---------------------------------------------------------------------------------------------------------------
// 3. Audit (rule E8) against tampering, and retraining
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn audit_names_a_weight_file_whose_bytes_changed() {
    let (_tmp, dir) = built_copy();
    let m = manifest(&dir);
    let file = &m.nodes[1][2].weights;
    flip_byte(&dir.join(&file.path), file.bytes as usize / 2);
    assert_one_line_error(&["audit", s(&dir)], &["audit failed", &file.path, "checksum mismatch"]);
    assert_one_line_error(&["eval", s(&dir), "--device", "cpu"], &[&file.path, "checksum mismatch"]);
}

#[test]
fn audit_rejects_a_forged_lineage_in_the_manifest() {
    let (_tmp, dir) = built_copy();
    let m = manifest(&dir);
    let plan = m.plan().unwrap();
    let served = router(&m).initial().served(0).expect("shard 0 is served");
    // The deepest node of the component shard 0 serves.
    let node = plan.shards[0].chains[served.sequence][usize::from(served.prefix) - 1];
    let path = dir.join("manifest.json");
    let mut json: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let sha = &mut json["nodes"][0][node]["lineage"][0]["sha256"];
    let forged = sha.as_str().unwrap().chars().rev().collect::<String>();
    assert_ne!(sha.as_str(), Some(forged.as_str()));
    *sha = Value::String(forged);
    fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();

    let stderr = stderr_of_failure(&["audit", s(&dir)]);
    assert!(stderr.contains(&format!("violation: shard 0 node {node} ")), "{stderr}");
    assert!(stderr.contains("audit failed: 1 served nodes saw deleted samples"), "{stderr}");
}

#[test]
fn retrain_restores_a_shard_and_audit_rejects_a_ledger_that_forgets_a_deletion() {
    let (_tmp, dir) = built_copy();
    let m = manifest(&dir);
    let assignment = m.assignment().unwrap();
    // One sample of each slice of shard 0: every order of shard 0 loses its first group, so the shard goes offline.
    let [a, b] = [0, 1].map(|slice| assignment.members(Cell { shard: 0, slice })[0].clone());
    let out = json_of(&["delete", s(&dir), "--ids", &format!("{a},{b}"), "--json"]);
    assert_eq!(out["offline_shards"], serde_json::json!([0]), "{out}");
    let eval = eval_json(&dir);
    assert_eq!((eval["live_shards"].as_u64(), eval["deleted"].as_u64()), (Some(1), Some(2)), "{eval}");
    assert!(eval["per_shard"][0].is_null() && eval["per_shard"][1].is_number(), "{eval}");
    audit_ok(&dir);

    stdout_of(&["retrain", s(&dir), "--shard", "0", "--device", "cpu", "--quiet"]);
    let after = manifest(&dir);
    assert!(after.nodes[0].iter().all(|n| n.generation == 1), "both slices lost samples: every node retrains");
    assert_eq!(after.nodes[1], m.nodes[1], "the other shard is untouched");
    let ledger = ledger_path(&dir);
    let actions = Ledger::read(&ledger).unwrap().0;
    assert_eq!(actions, [Action::Delete(a.clone()), Action::Delete(b.clone()), Action::Retrained { shard: 0 }]);
    let eval = eval_json(&dir);
    assert_eq!((eval["live_shards"].as_u64(), eval["deleted"].as_u64()), (Some(2), Some(2)), "{eval}");
    assert!(eval["per_shard"].as_array().unwrap().iter().all(Value::is_number), "{eval}");
    audit_ok(&dir);

    // A ledger rewritten without the deletion of `a`: the retrained nodes' lineage leaves out a sample the ledger
    // no longer deletes, which is exactly what a forged ledger cannot hide.
    fs::remove_file(&ledger).unwrap();
    let mut forged = Ledger::create(&ledger).unwrap();
    for action in actions.iter().filter(|action| **action != Action::Delete(a.clone())) {
        forged.append(action).unwrap();
    }
    drop(forged);
    let stderr = stderr_of_failure(&["audit", s(&dir)]);
    assert!(stderr.contains("violation: shard 0 node "), "{stderr}");
    assert!(stderr.contains("audit failed"), "{stderr}");
}

#[test]
fn a_damaged_ledger_record_is_an_error_naming_the_file_and_offset() {
    let (_tmp, dir) = built_copy();
    stdout_of(&["delete", s(&dir), "--ids", "3,4,5"]);
    let ledger = ledger_path(&dir);
    let actions: Vec<Action> = [3, 4, 5].map(|i| Action::Delete(SampleId::Int(i))).into();
    assert_eq!(Ledger::read(&ledger).unwrap().0, actions);
    // The middle record starts after the header and the first record.
    let first = RECORD_HEADER_LEN + serde_json::to_vec(&actions[0]).unwrap().len() as u64;
    let middle = HEADER_LEN + first;
    flip_byte(&ledger, (middle + RECORD_HEADER_LEN + 2) as usize);
    let damaged = fs::read(&ledger).unwrap();

    let offset = format!("corrupt record at byte offset {middle}");
    let needles = [s(&ledger), offset.as_str()];
    assert_one_line_error(&["audit", s(&dir)], &needles);
    assert_one_line_error(&["eval", s(&dir), "--device", "cpu"], &needles);
    assert_one_line_error(&["delete", s(&dir), "--ids", "6"], &needles);
    assert_eq!(fs::read(&ledger).unwrap(), damaged, "a corrupt ledger is never modified");
}

// ---------------------------------------------------------------------------------------------------------------
// 4. Scale-out: shards built separately
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn shards_built_separately_assemble_into_the_single_machine_bundle() {
    let tmp = scratch();
    let dir = tmp.path().join("cluster");
    copy_dir(pretrained(), &dir);
    stdout_of(&concat(&[&["build", "--out", s(&dir), "--shard", "0"], BUILD]));
    assert!(!dir.join("manifest.json").exists(), "a partial build writes no manifest");
    assert_one_line_error(&["assemble", s(&dir)], &["shard 1 has not been built"]);
    stdout_of(&concat(&[&["build", "--out", s(&dir), "--shard", "1"], BUILD]));
    let text = stdout_of(&["assemble", s(&dir)]);
    assert!(text.contains("2 shards, 8 nodes"), "{text}");

    let single = built();
    let (ours, theirs) = (manifest(&dir), manifest(&single.dir));
    for (shard, (a, b)) in ours.nodes.iter().zip(&theirs.nodes).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.weights.sha256, y.weights.sha256, "shard {shard} node {}", x.id);
        }
    }
    for (shard, (a, b)) in ours.sisa.iter().zip(&theirs.sisa).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert_eq!(x.weights.sha256, y.weights.sha256, "shard {shard} SISA checkpoint {}", x.checkpoint);
        }
    }
    assert_eq!(ours.weight_files().count(), theirs.weight_files().count());
    assert_eq!(
        fs::read(dir.join("manifest.json")).unwrap(),
        fs::read(single.dir.join("manifest.json")).unwrap(),
        "the assembled manifest is byte-identical to the single-machine one"
    );
    audit_ok(&dir);
}

// ---------------------------------------------------------------------------------------------------------------
// 5. Resume
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn an_interrupted_build_resumes_to_the_same_bundle() {
    let tmp = scratch();
    let dir = tmp.path().join("resumed");
    copy_dir(pretrained(), &dir);
    let mut child = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(concat(&[&["build", "--out", s(&dir)], BUILD]))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the build");
    let started = Instant::now();
    loop {
        if part_nodes(&dir, 0).is_some_and(|n| n >= 1) {
            break;
        }
        if let Some(status) = child.try_wait().expect("poll the build") {
            panic!("the build ended ({status}) before it could be interrupted");
        }
        assert!(started.elapsed() < Duration::from_secs(120), "no node finished within 2 minutes");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("kill the build");
    child.wait().expect("reap the build");
    assert!(!dir.join("manifest.json").exists(), "the build was killed before it finished");
    let done_before = part_nodes(&dir, 0).unwrap();
    assert!((1..4).contains(&done_before), "shard 0 was interrupted with {done_before} of 4 nodes");

    let summary = json_of(&concat(&[&["build", "--out", s(&dir), "--resume", "--json"], BUILD]));
    assert_eq!(summary["assembled"], true, "{summary}");
    let trained = summary["samples_trained"].as_u64().unwrap();
    let full = built().summary["samples_trained"].as_u64().unwrap();
    assert!(trained < full, "the finished nodes were reused: {trained} samples trained, {full} for a whole build");
    assert_eq!(
        fs::read(dir.join("manifest.json")).unwrap(),
        fs::read(built().dir.join("manifest.json")).unwrap(),
        "the resumed manifest is byte-identical to an uninterrupted build's"
    );
    audit_ok(&dir);

    // Without --resume a finished bundle is never overwritten.
    assert_one_line_error(&concat(&[&["build", "--out", s(&dir)], BUILD]), &[s(&dir), "already holds a built bundle"]);
}

// ---------------------------------------------------------------------------------------------------------------
// 6. Export
// ---------------------------------------------------------------------------------------------------------------

/// The JSON header of a safetensors file: 8 bytes little-endian length, then that many bytes of JSON.
fn safetensors_header(bytes: &[u8]) -> (Value, usize) {
    let len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert!(8 + len <= bytes.len(), "header length {len} past the end of {} bytes", bytes.len());
    (serde_json::from_slice(&bytes[8..8 + len]).expect("the header is JSON"), 8 + len)
}

#[test]
fn export_writes_peft_style_safetensors_for_every_served_shard() {
    let single = built();
    let m = manifest(&single.dir);
    let (d_model, depth, classes) = (m.model.vit.d_model, m.model.vit.depth, 10);
    let tmp = scratch();
    let out = tmp.path().join("export");
    let text = stdout_of(&["export", s(&single.dir), "--out", s(&out)]);
    assert!(text.contains("exported 2 served components"), "{text}");
    for shard in 0..2 {
        let shard_dir = out.join(format!("shard-{shard}"));
        let config: Value = serde_json::from_slice(&fs::read(shard_dir.join("adapter_config.json")).unwrap()).unwrap();
        assert_eq!(config["peft_type"], "LORA", "{config}");
        let r = config["r"].as_u64().unwrap_or_else(|| panic!("r is not a number: {config}")) as usize;
        assert_eq!(r, m.model.lora.rank);
        assert_eq!(config["s3t"]["shard"], shard, "{config}");

        let bytes = fs::read(shard_dir.join("adapter_model.safetensors")).unwrap();
        let (header, data_start) = safetensors_header(&bytes);
        let tensors: Vec<(&String, &Value)> =
            header.as_object().unwrap().iter().filter(|(name, _)| *name != "__metadata__").collect();
        let shape = |name: &str| -> Vec<usize> {
            let t = &header[name];
            t["shape"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: {t}"))
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect()
        };
        for (name, t) in &tensors {
            assert_eq!(t["dtype"], "F32", "{name}");
            let [start, end] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
            assert_eq!(end - start, shape(name).iter().product::<usize>() * 4, "{name}: offsets and shape disagree");
            assert!(data_start + end <= bytes.len(), "{name}: data past the end of the file");
        }
        let query_a: Vec<&str> =
            tensors.iter().map(|(n, _)| n.as_str()).filter(|n| n.ends_with(".query.lora_A.weight")).collect();
        // A full prefix is served, so every block has adapters.
        assert_eq!(query_a.len(), depth, "{query_a:?}");
        for name in &query_a {
            assert!(name.starts_with("base_model.model.blocks."), "{name}");
            assert_eq!(shape(name), [r, d_model], "{name}: lora_A is [r, in]");
            let b = name.replace("lora_A", "lora_B");
            assert_eq!(shape(&b), [d_model, r], "{b}: lora_B is [out, r]");
            for v in ["lora_A", "lora_B"].map(|k| name.replace("query.lora_A", &format!("value.{k}"))) {
                assert!(header.get(&v).is_some(), "{v} missing");
            }
        }
        assert_eq!(shape("base_model.model.head.linear.weight"), [classes, d_model]);
    }
}

// ---------------------------------------------------------------------------------------------------------------
// 7. Bad input
// ---------------------------------------------------------------------------------------------------------------

#[test]
fn bad_paths_and_a_corrupt_manifest_give_one_error_line() {
    assert_one_line_error(&["eval", "/nonexistent/bundle", "--device", "cpu"], &["/nonexistent/bundle"]);
    assert_one_line_error(&["audit", "/nonexistent/bundle"], &["/nonexistent/bundle"]);
    assert_one_line_error(&["delete", "/nonexistent/bundle", "--ids", "3"], &["/nonexistent/bundle"]);

    let tmp = scratch();
    let out = tmp.path().join("never");
    assert_one_line_error(
        &concat(&[&["build", "--data", "idx:/nonexistent/data", "--out", s(&out)], BUILD]),
        &["/nonexistent/data"],
    );
    assert!(!out.exists(), "a build that cannot read its data writes nothing");

    let (_copy, dir) = built_copy();
    let manifest = dir.join("manifest.json");
    let bytes = fs::read(&manifest).unwrap();
    fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();
    for args in [
        vec!["eval", s(&dir), "--device", "cpu"],
        vec!["audit", s(&dir)],
        vec!["delete", s(&dir), "--ids", "3"],
        vec!["export", s(&dir), "--out", s(&tmp.path().join("export"))],
    ] {
        assert_one_line_error(&args, &[s(&manifest), "not valid JSON"]);
    }
    assert!(!ledger_path(&dir).exists(), "nothing was deleted");
}

#[test]
fn export_web_writes_the_checked_deletable_split_and_a_test_subset() {
    let single = built();
    let tmp = scratch();
    let text = stdout_of(&["export", s(&single.dir), "--format", "web", "--out", s(tmp.path()), "--test-limit", "7"]);
    assert!(text.contains("wrote the web app's data"), "{text}");
    let read = |split: &str| {
        let file = |kind: &str| tmp.path().join(format!("data/{split}-{kind}-ubyte.gz"));
        let (images, labels) = (file("images-idx3"), file("labels-idx1"));
        s3t::dataset::from_idx(s(&images), fs::read(&images).unwrap(), s(&labels), fs::read(&labels).unwrap(), 10)
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let m = manifest(&single.dir);
    assert_eq!(read("deletable").len(), m.data.deletable);
    assert_eq!(read("test").len(), 7);
    // Data other than the bundle's is refused with one line naming the mismatch.
    let csv = tmp.path().join("other.csv");
    let row = |label: u8| format!("{label},{}\n", vec!["0"; 28 * 28].join(","));
    fs::write(&csv, (0..40).map(|i| row(i % 10)).collect::<String>()).unwrap();
    let data = format!("csv:{}", s(&csv));
    assert_one_line_error(
        &["export", s(&single.dir), "--format", "web", "--out", s(tmp.path()), "--data", &data],
        &["different samples"],
    );
}
