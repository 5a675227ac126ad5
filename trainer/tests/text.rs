//! Text bundles end to end on the test-sized BERT (`tests/fixtures/hf/tiny-bert`): `build --backbone hf:DIR --data
//! text:FILE`, then every command that opens a bundle, with the forgetting invariant at its boundaries and the
//! backbone's files checked at every load.

#[allow(dead_code)] // each test file uses a part of the shared helpers
mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use support::{assert_one_line_error, json_of, s, stderr_of_failure, stdout_of};

fn tiny_bert() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf/tiny-bert")
}

/// 600 short reviews whose label follows their words (so a model can learn it), in CSV with an id column and a quoted
/// field with a comma (`tests/fixtures/text/reviews.csv`, which the browser tests' text bundle is built from too).
fn write_reviews(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/text/reviews.csv");
    let path = dir.join("reviews.csv");
    fs::copy(&fixture, &path).expect("copy the reviews");
    path
}

struct Built {
    _tmp: tempfile::TempDir,
    bundle: PathBuf,
    data: String,
    model: PathBuf,
}

/// The flags of every text build here (after `--backbone`, `--data` and `--out`).
const TEXT_BUILD: &[&str] = &[
    "--text-field",
    "review",
    "--label-field",
    "sentiment",
    "--id-field",
    "id",
    "--max-tokens",
    "16",
    "--shards",
    "2",
    "--slices",
    "2",
    // One layer per group (not the default, every layer): the tests cover the frozen layers' cached output.
    "--layers-per-group",
    "1",
    "--epochs",
    "1",
    "--pretrain-epochs",
    "2",
    "--device",
    "cpu",
    "--quiet",
];

fn build() -> Built {
    build_with(&[])
}

/// [`build`] with `extra` flags.
fn build_with(extra: &[&str]) -> Built {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    // A copy of the model directory: a test below changes a file of it.
    let model = tmp.path().join("model");
    fs::create_dir_all(&model).expect("mkdir");
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        fs::copy(tiny_bert().join(name), model.join(name)).expect("copy the fixture");
    }
    let data = format!("text:{}", s(&write_reviews(tmp.path())));
    let bundle = tmp.path().join("bundle");
    let backbone = format!("hf:{}", s(&model));
    let mut args = vec!["build", "--backbone", &backbone, "--data", &data, "--out", s(&bundle), "--json"];
    args.extend(TEXT_BUILD);
    args.extend(extra);
    let summary = json_of(&args);
    assert_eq!(summary["assembled"], Value::Bool(true), "{summary}");
    Built { _tmp: tmp, bundle, data, model }
}

#[test]
fn a_text_bundle_builds_serves_forgets_and_retrains() {
    let b = build();
    let dir = s(&b.bundle);
    let manifest: Value =
        serde_json::from_slice(&fs::read(b.bundle.join("manifest.json")).expect("manifest")).expect("JSON manifest");
    // The manifest records the encoder's files by sha256, the labels, the fields and how text is cut.
    let files = manifest["backbone"]["source"]["files"].as_array().expect("backbone files");
    assert_eq!(files.len(), 3);
    assert!(files.iter().all(|f| f["sha256"].as_str().is_some_and(|h| h.len() == 64)));
    assert_eq!(manifest["data"]["labels"], serde_json::json!(["negative", "positive"]));
    assert_eq!(manifest["data"]["fields"]["id"], "id");
    assert_eq!(manifest["model"]["text"]["max_tokens"], 16);
    assert_eq!(manifest["model"]["layers_per_group"], 1);
    // The arithmetic: the token-wise layers train on the real tokens only (older bundles: padded, no field).
    assert_eq!(manifest["model"]["text"]["packed"], true);
    // A text encoder's default learning rate (the ViT's is 1e-3).
    assert_eq!(manifest["train"]["learning_rate"], 3e-3);

    let eval = json_of(&["eval", dir, "--device", "cpu", "--json"]);
    // A random test-sized encoder learns little in one pass: the figure only has to be one (quality is measured on
    // the real MiniLM, see `docs/text.md`).
    let accuracy = eval["accuracy"].as_f64().unwrap_or_else(|| panic!("an accuracy in {eval}"));
    assert!((0.0..=1.0).contains(&accuracy), "{eval}");
    assert_eq!(eval["live_shards"], 2, "{eval}");
    // The data given explicitly is the same.
    let again = json_of(&["eval", dir, "--data", &b.data, "--device", "cpu", "--json"]);
    assert_eq!(again["accuracy"], eval["accuracy"]);

    let report = json_of(&["audit", dir, "--strict", "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");

    let deleted = json_of(&["delete", dir, "--ids", "3,4", "--json"]);
    assert!(deleted.is_object(), "{deleted}");
    let report = json_of(&["audit", dir, "--strict", "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "after deletions: {report}");
    stdout_of(&["retrain", dir, "--shard", "0", "--device", "cpu", "--quiet"]);
    stdout_of(&["retrain", dir, "--shard", "1", "--device", "cpu", "--quiet"]);
    let report = json_of(&["audit", dir, "--strict", "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "after retraining: {report}");
    assert_eq!(report["strict"], Value::Bool(true));
    json_of(&["eval", dir, "--device", "cpu", "--json"]);

    // A sentence of the user's: every live shard votes, the ensemble answers with one of the labels.
    let predicted = json_of(&["predict", dir, "--text", "a great and fun film", "--device", "cpu", "--json"]);
    let row = &predicted["predictions"][0];
    assert!(["negative", "positive"].contains(&row["label"].as_str().unwrap_or("")), "{predicted}");
    assert_eq!(row["shards"].as_array().map(Vec::len), Some(2), "{predicted}");

    // Image data against a text bundle is refused, naming what it reads.
    assert_one_line_error(&["eval", dir, "--data", "csv:x.csv", "--device", "cpu", "--json"], &["reads texts"]);
}

#[test]
fn a_changed_backbone_file_is_refused_at_every_load() {
    let b = build();
    let dir = s(&b.bundle);
    let path = b.model.join("tokenizer.json");
    let mut tokenizer = fs::read_to_string(&path).expect("tokenizer");
    tokenizer.push(' ');
    fs::write(&path, tokenizer).expect("write");
    assert_one_line_error(&["eval", dir, "--device", "cpu"], &["tokenizer.json", "sha256"]);
    assert_one_line_error(&["retrain", dir, "--shard", "0", "--device", "cpu", "--quiet"], &["tokenizer.json"]);
}

#[test]
fn text_input_errors_name_the_file_and_the_field() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let backbone = format!("hf:{}", s(&tiny_bert()));
    let bad = tmp.path().join("bad.csv");
    fs::write(&bad, "review,sentiment\ngood film,positive\n,negative\n").expect("write");
    let out = tmp.path().join("out");
    let data = format!("text:{}", s(&bad));
    let common = ["--text-field", "review", "--label-field", "sentiment", "--device", "cpu", "--quiet"];
    let mut args = vec!["build", "--backbone", &backbone, "--data", &data, "--out", s(&out)];
    args.extend(common);
    assert_one_line_error(&args, &["bad.csv", "line 3", "empty"]);
    let mut args = vec!["build", "--backbone", &backbone, "--data", &data, "--out", s(&out), "--label-field", "stars"];
    args.extend(["--text-field", "review", "--device", "cpu", "--quiet"]);
    assert_one_line_error(&args, &["bad.csv", "stars"]);
    assert_one_line_error(&["build", "--data", &data, "--out", s(&out), "--device", "cpu"], &["--backbone"]);
}

/// Shards built separately (as a cluster's tasks would) and assembled give the one-machine bundle, every weight file's
/// sha256 included; a resumed build reuses every node; `curve` runs on the text bundle.
#[test]
fn a_text_bundle_built_shard_by_shard_equals_the_one_machine_build() {
    let b = build();
    let backbone = format!("hf:{}", s(&b.model));
    let parts = b.bundle.with_file_name("parts");
    let mut first = vec!["build", "--backbone", &backbone, "--data", &b.data, "--out", s(&parts), "--shard", "0"];
    first.extend(TEXT_BUILD);
    stdout_of(&first);
    let mut second = vec!["build", "--backbone", &backbone, "--data", &b.data, "--out", s(&parts), "--shard", "1"];
    second.extend(TEXT_BUILD);
    stdout_of(&second);
    stdout_of(&["assemble", s(&parts)]);
    let weights = |dir: &Path| -> Vec<String> {
        let m: Value = serde_json::from_slice(&fs::read(dir.join("manifest.json")).expect("manifest")).expect("JSON");
        m["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .flat_map(|shard| shard.as_array().expect("a shard's nodes").iter())
            .map(|n| n["weights"]["sha256"].as_str().expect("sha256").to_owned())
            .collect()
    };
    assert_eq!(weights(&parts), weights(&b.bundle), "the assembled bundle differs from the one-machine build");
    let mut resume = vec!["build", "--backbone", &backbone, "--data", &b.data, "--out", s(&b.bundle), "--resume"];
    resume.extend(TEXT_BUILD);
    stdout_of(&resume);
    assert_eq!(weights(&b.bundle), weights(&parts), "a resumed build retrained a finished node");
    // Resuming without `--layers-per-group 1` asks for the default (every layer): refused, naming the setting, and
    // the bundle is untouched (how a bundle started by a trainer with another default meets a newer one).
    let mut other_layout = resume.clone();
    let at = other_layout.iter().position(|a| *a == "--layers-per-group").expect("the flag");
    other_layout.drain(at..at + 2);
    let out = Command::new(env!("CARGO_BIN_EXE_trainer")).args(&other_layout).output().expect("the trainer runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("layers_per_group: 1 recorded, 2 now"), "{stderr}");
    assert_eq!(weights(&b.bundle), weights(&parts), "a refused resume changed the bundle");
    let curve = json_of(&["curve", s(&b.bundle), "--deletions", "0,20", "--seed", "1", "--json", "--device", "cpu"]);
    assert!(curve.to_string().contains("s3t"), "{curve}");
}

/// `quality` over two build seeds and several deletion streams, `forget-check` of canaries (mislabeled training
/// sentences against never-trained twins), and `bench` on the text encoder.
#[test]
fn quality_forget_check_and_bench_run_on_text() {
    let b = build();
    let backbone = format!("hf:{}", s(&b.model));
    // A second build seed of the same data and layout, with canaries planted.
    let other = b.bundle.with_file_name("seed1");
    let mut args =
        vec!["build", "--backbone", &backbone, "--data", &b.data, "--out", s(&other), "--seed", "1", "--canaries", "8"];
    args.extend(TEXT_BUILD);
    stdout_of(&args);

    let bundles = [s(&b.bundle), s(&other)];
    let mut args = vec!["quality", bundles[0], bundles[1], "--deletions", "0,10,60", "--seeds", "0..2"];
    args.extend(["--json", "--device", "cpu"]);
    let q = json_of(&args);
    assert_eq!((q["build_seeds"].as_u64(), q["streams"].as_u64()), (Some(2), Some(3)), "{q}");
    for row in ["backbone_accuracy", "finetune_accuracy", "s3t_accuracy", "sisa_accuracy"] {
        assert_eq!(q[row]["n"], 2, "{row}: one figure per build seed: {q}");
        assert!(q[row]["mean"].as_f64().is_some_and(|a| (0.0..=1.0).contains(&a)), "{row}: {q}");
    }
    let curve = q["curve"].as_array().expect("a curve");
    assert_eq!(curve.len(), 3);
    // Before any deletion every shard serves, on every (bundle, stream) pair.
    assert_eq!(curve[0]["s3t_live_shards"]["mean"], 2.0, "{q}");
    assert_eq!(curve[0]["s3t_accuracy"]["n"], 6, "{q}");
    // Deletions only ever shorten prefixes: the live shards never come back along the curve.
    let live: Vec<f64> = curve.iter().map(|p| p["s3t_live_shards"]["mean"].as_f64().unwrap_or(0.0)).collect();
    assert!(live.windows(2).all(|w| w[1] <= w[0]), "{live:?}");
    assert!(q["s3t_live_shards_at_least_sisa_everywhere"].is_boolean(), "{q}");
    // One bundle, one stream: the table.
    let text = stdout_of(&["quality", bundles[0], "--deletions", "0", "--seeds", "0", "--device", "cpu"]);
    assert!(text.contains("single LoRA fine-tune"), "{text}");

    let report = json_of(&["forget-check", s(&other), "--canaries", "--json", "--device", "cpu"]);
    assert_eq!(report["members"], "canaries", "{report}");
    assert_eq!(report["after"]["deleted"], 8, "{report}");
    assert_eq!(report["after"]["live_shards"], 2, "every offline shard is retrained: {report}");

    let mut args = vec!["bench", "--backbone", &backbone, "--data", &b.data, "--text-field", "review"];
    args.extend(["--label-field", "sentiment", "--max-tokens", "16", "--samples", "64", "--device", "cpu", "--json"]);
    let bench = json_of(&args);
    assert_eq!(bench["text"], true, "{bench}");
    assert_eq!(bench["batch_size"], 32, "the peer's batch: {bench}");
    // The default bundle's layout: as many layers per group as fit evenly, here every one of the 4 in 2 groups.
    assert_eq!(bench["layers_per_group"], 2, "{bench}");
    assert_eq!(bench["packed"], true, "{bench}");
    assert!(bench["real_token_share"].as_f64().is_some_and(|s| s > 0.0 && s < 1.0), "{bench}");
    for key in ["train_samples_per_s", "node_train_samples_per_s", "sisa_retrain_s", "s3t_delete_to_serve_s"] {
        assert!(bench[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {bench}");
    }
}

/// Exports `b` for the page (`limit` test reviews) and opens the export as the page does
/// ([`s3t::model::exported::open`]): every node's probabilities equal the whole encoder's bit for bit, and the
/// page's accuracy is `trainer eval`'s on the same subset. Returns the index.
fn assert_page_serves_as_eval(b: &Built, limit: usize) -> s3t::bundle::web::TextExport {
    use burn::tensor::Device;
    use s3t::bundle::Manifest;
    use s3t::bundle::web::{self, TextExport};
    use s3t::model::exported::{self, ExportFiles};
    use s3t::model::hf::HfDir;
    use s3t::model::predict::predict;
    use s3t::model::serve::{Evaluator, Model};

    let dir = s(&b.bundle);
    let limit = limit.to_string();
    stdout_of(&["export", dir, "--format", "web", "--out", dir, "--test-limit", &limit]);
    let read = |rel: &str| fs::read(b.bundle.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let manifest =
        Manifest::from_json("manifest", &String::from_utf8(read("manifest.json")).expect("UTF-8")).expect("a manifest");
    let index = TextExport::from_json("index", &String::from_utf8(read(web::TEXT_INDEX_FILE)).expect("UTF-8"))
        .expect("an index");
    let config = &manifest.model;
    assert_eq!(index.from_layer, config.frozen_base());
    assert!(index.from_layer > 0, "the test layout leaves frozen layers below the adapters");
    let files = ExportFiles {
        encoder: read(&index.encoder.path),
        activations: read(&index.activations.path),
        test: read(&index.test_texts.path),
    };
    let device = Device::flex();
    let page = exported::open(config, manifest.data.classes, &index, files, &device).expect("the export opens");
    assert_eq!(page.test.len().to_string(), limit);
    assert_eq!(page.encoder.first_block, index.from_layer);
    assert!(page.encoder.text.is_none(), "no embedding is shipped");

    let source = manifest.backbone.source.as_ref().expect("a recorded encoder");
    let whole = HfDir::open_recorded(source).and_then(|hf| hf.backbone(config, &device)).expect("the encoder");
    let weights = |f: &s3t::bundle::WeightFile| Ok(read(&f.path));
    let reference = Model::load_with(manifest.clone(), Some(whole), &device, |_, _| true, weights).expect("model");
    let served = Model::load_with(manifest.clone(), Some(page.encoder), &device, |_, _| true, weights).expect("model");
    let mut expected = Evaluator::new(&reference, &page.test);
    let mut got = Evaluator::from_features(&served, page.features, page.test.labels.clone());
    let mut compared = 0;
    let bits = |p: &[f32]| p.iter().map(|v| v.to_bits()).collect::<Vec<u32>>();
    for (shard, plan) in reference.plan.shards.iter().enumerate() {
        for (sequence, chain) in plan.chains.iter().enumerate() {
            for prefix in 1..=chain.len() {
                let at = s3t::Served { sequence, prefix: prefix as u16 };
                let shard = shard as u16;
                let want = bits(expected.served_probabilities(&reference, shard, at).expect("probabilities"));
                let have = bits(got.served_probabilities(&served, shard, at).expect("probabilities"));
                assert_eq!(want, have, "shard {shard} sequence {sequence} prefix {prefix}");
                compared += 1;
            }
        }
    }
    assert!(compared >= 4, "every node compared");
    let state = reference.manifest.router(manifest.assignment().expect("a"), &reference.plan).expect("r").initial();
    let page_accuracy = got.evaluate(&served, &state).expect("evaluated").accuracy.expect("served");
    // The rest of the encoder, which the page loads for a visitor's own sentence or a retrain: joined with the
    // layers above the boundary it is the whole encoder, and the page's answer is `trainer predict`'s, bit for bit.
    let below = read(&index.below.path);
    let joined = exported::whole_encoder(config, &index, &below, &read(&index.encoder.path), &device).expect("joined");
    let tokenizer = exported::tokenizer(config, &index, &read(&index.tokenizer.path)).expect("the tokenizer");
    let sentences = ["a great and fun film", "dull , slow and far too long"];
    let texts: Vec<String> = sentences.iter().map(|t| t.to_string()).collect();
    let data = tokenizer.dataset(texts, vec![0; 2], manifest.data.classes).expect("tokenized");
    let pause = async || {};
    let page_answer = pollster::block_on(predict(&served, &joined, &state, &data, &device, &pause)).expect("answer");
    let cli = json_of(
        &[&["predict", dir, "--device", "cpu", "--json"][..], &sentences.map(|t| ["--text", t]).concat()].concat(),
    );
    let probabilities = page_answer.probabilities.as_ref().expect("live shards");
    for (i, row) in cli["predictions"].as_array().expect("rows").iter().enumerate() {
        let want: Vec<u32> = row["probabilities"]
            .as_array()
            .expect("p")
            .iter()
            .map(|v| (v.as_f64().expect("f") as f32).to_bits())
            .collect();
        assert_eq!(want, bits(&probabilities[i * 2..i * 2 + 2]), "sentence {i}: {cli}");
    }
    assert_eq!(page_answer.votes.len(), 2, "both shards vote");
    let mut swapped = index.clone();
    swapped.below = index.encoder.clone();
    let err =
        exported::whole_encoder(config, &swapped, &read(&index.encoder.path), &read(&index.encoder.path), &device)
            .expect_err("refused")
            .to_string();
    assert!(err.contains("does not belong"), "{err}");
    let validation = exported::validation(config, manifest.data.classes, &index, read(&index.validation_texts.path));
    assert_eq!(validation.expect("the validation split").len(), manifest.data.validation);
    let eval = json_of(&["eval", dir, "--test-limit", &limit, "--device", "cpu", "--json"]);
    assert_eq!(eval["accuracy"].as_f64(), Some(page_accuracy), "{eval}");
    let report = json_of(&["audit", dir, "--strict", "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    index
}

/// `export --format web` on a text bundle ships the encoder's layers from the frozen base up and the test reviews'
/// activations at that boundary: the page's model (opened through the same function the page uses) gives every
/// node's probabilities bit for bit as the whole encoder does, and the export's texts are forgotten with the rest.
#[test]
fn the_page_export_of_a_text_bundle_serves_bit_for_bit_as_the_whole_encoder() {
    use burn::tensor::Device;
    use s3t::bundle::web;
    use s3t::model::exported::{self, ExportFiles};

    let b = build();
    let dir = s(&b.bundle);
    let index = assert_page_serves_as_eval(&b, 40);
    let read = |rel: &str| fs::read(b.bundle.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    // The encoder's layers are the checkpoint's own bytes (an f32 model).
    let layers = read(&index.encoder.path);
    let tensors = safetensors::SafeTensors::deserialize(&layers).expect("safetensors").tensors();
    assert!(tensors.iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F32));

    // A deletion purges the exported texts, as it does images; the audit checks the copy.
    let file = web::split_file("deletable");
    let before = web::parse_split("d", read(&file), 16, 2).expect("texts");
    assert!(!before.text.as_ref().expect("texts").texts[3].is_empty());
    json_of(&["delete", dir, "--ids", "3", "--json"]);
    let after = web::parse_split("d", read(&file), 16, 2).expect("texts");
    assert!(after.is_erased(3), "the deleted review's text is gone from the page's copy");
    assert_eq!(after.text.as_ref().expect("texts").texts[4], before.text.as_ref().expect("texts").texts[4]);
    let report = json_of(&["audit", dir, "--strict", "--json"]);
    assert_eq!(report["violations"], serde_json::json!([]), "after a deletion: {report}");
    // A stale copy (the deleted review put back) is a violation.
    fs::write(b.bundle.join(&file), web::split_bytes(&before).expect("bytes")).expect("write");
    let stderr = stderr_of_failure(&["audit", dir, "--strict"]);
    assert!(stderr.contains("sample 3 was deleted"), "{stderr}");
    // A changed activations file is refused by the audit (its index) and by the page (`exported::open`).
    fs::write(b.bundle.join(web::split_file("deletable")), web::split_bytes(&after).expect("bytes")).expect("write");
    let mut bad = read(&index.activations.path);
    bad[0] ^= 1;
    fs::write(b.bundle.join(&index.activations.path), &bad).expect("write");
    let stderr = stderr_of_failure(&["audit", dir, "--strict"]);
    assert!(stderr.contains("test-activations.f32") && stderr.contains("checksum"), "{stderr}");
    let files =
        ExportFiles { encoder: read(&index.encoder.path), activations: bad, test: read(&index.test_texts.path) };
    let manifest = s3t::bundle::Manifest::from_json("m", &String::from_utf8(read("manifest.json")).expect("UTF-8"))
        .expect("a manifest");
    let err = exported::open(&manifest.model, 2, &index, files, &Device::flex()).err().expect("refused");
    assert!(matches!(err, s3t::Error::Checksum { .. }), "{err}");
    let err = err.to_string();
    assert!(err.contains("test-activations.f32") && err.contains("checksum"), "{err}");
}

/// A bundle pretrained with `--frozen-f16` holds its encoder at f16 everywhere: the export ships the layers as F16
/// tensors (half the bytes) and the page still computes `trainer eval`'s probabilities bit for bit.
#[test]
fn a_bundle_that_holds_its_encoder_at_f16_exports_half_the_bytes_and_serves_bit_for_bit() {
    let full = build();
    let half = build_with(&["--frozen-f16"]);
    let manifest: Value =
        serde_json::from_slice(&fs::read(half.bundle.join("manifest.json")).expect("manifest")).expect("JSON");
    assert_eq!(manifest["model"]["text"]["frozen_f16"], true);
    let full_index = assert_page_serves_as_eval(&full, 20);
    let half_index = assert_page_serves_as_eval(&half, 20);
    let layers = fs::read(half.bundle.join(&half_index.encoder.path)).expect("layers");
    let tensors = safetensors::SafeTensors::deserialize(&layers).expect("safetensors").tensors();
    assert!(tensors.iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F16));
    assert!(half_index.encoder.bytes * 10 < full_index.encoder.bytes * 6, "{half_index:?} vs {full_index:?}");
    // The option is chosen when pretraining: a build on an f32 backbone refuses it rather than ignore it.
    let backbone = format!("hf:{}", s(&full.model));
    let mut args = vec!["build", "--backbone", &backbone, "--data", &full.data, "--out", s(&full.bundle)];
    args.extend(TEXT_BUILD);
    args.extend(["--resume", "--frozen-f16"]);
    assert_one_line_error(&args, &["--frozen-f16", "pretrained"]);
}

/// The page's retrain of a text shard, on the same arithmetic: what the worker reads (the export's two encoder
/// parts, its purged copy of the reviews, the validation split; the shard's rows alone; an in-memory store holding
/// the reused nodes) gives `trainer retrain`'s nodes bit for bit.
#[test]
fn the_page_retrain_of_a_text_shard_from_its_export_is_trainer_retrain_bit_for_bit() {
    use burn::tensor::Device;
    use s3t::bundle::guard::Guard;
    use s3t::bundle::manifest::Manifest;
    use s3t::bundle::samples::{self, DIGESTS_FILE};
    use s3t::bundle::web::{self, TextExport};
    use s3t::dataset::Splits;
    use s3t::model::build::{BuildContext, MemoryStore, ShardJob, build_shard, shard_rows};
    use s3t::model::exported::{RetrainFiles, retrain_inputs};
    use s3t::model::features::Features;
    use s3t::model::parallel::Batching;
    use s3t::{Cell, SampleId};

    let b = build();
    let dir = s(&b.bundle);
    let read = |rel: &str| fs::read(b.bundle.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let manifest = Manifest::from_json("m", &String::from_utf8(read("manifest.json")).expect("UTF-8")).expect("m");
    let assignment = manifest.assignment().expect("an assignment");
    // One review of shard 0's first slice, deleted in the bundle's ledger; the export purges it.
    let gone = match assignment.members(Cell { shard: 0, slice: 0 })[0] {
        SampleId::Int(i) => i,
        ref other => panic!("unexpected id {other}"),
    };
    stdout_of(&["delete", dir, "--ids", &gone.to_string(), "--json"]);
    stdout_of(&["export", dir, "--format", "web", "--out", dir, "--test-limit", "8"]);
    let index = TextExport::from_json("i", &String::from_utf8(read(web::TEXT_INDEX_FILE)).expect("UTF-8")).expect("i");
    let device = Device::flex();
    let files = RetrainFiles {
        head: read(&manifest.backbone.weights.path),
        below: read(&index.below.path),
        above: read(&index.encoder.path),
        deletable: read(&web::split_file("deletable")),
        validation: read(&index.validation_texts.path),
    };
    let (pretrained, deletable, validation) = retrain_inputs(&manifest, &index, files, &device).expect("inputs");
    let purged = [gone as usize].into_iter().collect();
    let commitments = &manifest.data.deletable_digests_sha256;
    samples::verify("d", &deletable, &read(DIGESTS_FILE), commitments, &purged).expect("the purged copy verifies");
    assert!(deletable.text.as_ref().expect("texts").texts[gone as usize].is_empty(), "the review is purged");

    let plan = manifest.plan().expect("a plan");
    let guard = Guard::new(&assignment, [SampleId::Int(gone)]);
    let entries = &manifest.nodes[0];
    let reuse = guard.reusable(entries);
    assert!(reuse.iter().any(Option::is_some) && reuse.iter().any(Option::is_none), "some nodes are reused");
    let store = MemoryStore::default();
    for entry in reuse.iter().flatten() {
        store.insert(&entry.weights.path, read(&entry.weights.path));
    }
    let (order, rows) = shard_rows(&assignment, plan.slices, 0, deletable.len());
    let data = Splits {
        public: validation.head(0),
        deletable: deletable.select(&order),
        validation: validation.clone(),
        test: validation.head(0),
    };
    let config = &manifest.model;
    let features = Features::new(config, &pretrained.backbone, &data.deletable, &device);
    let validation_features = Features::new(config, &pretrained.backbone, &data.validation, &device);
    let ctx = BuildContext {
        bundle: &store,
        config,
        train: &manifest.train,
        seed: manifest.seed,
        data: &data,
        pretrained: &pretrained,
        assignment: &assignment,
        plan: &plan,
        device: &device,
        features: &features,
        validation: &validation_features,
        batching: Batching::stacked(1),
        rows: Some(&rows),
    };
    let generation = entries.iter().map(|e| e.generation).max().unwrap_or(0) + 1;
    let is_deleted = |id: &SampleId| guard.is_deleted(id);
    let job = ShardJob { shard: 0, reuse, reuse_sisa: Vec::new(), generation, only: None };
    let page = build_shard(&ctx, job, false, &is_deleted, &mut |_| {}).expect("the page's build");

    stdout_of(&["retrain", dir, "--shard", "0", "--device", "cpu", "--quiet"]);
    let trainer = Manifest::from_json("m", &String::from_utf8(read("manifest.json")).expect("UTF-8")).expect("m");
    assert_eq!(page.nodes, trainer.nodes[0], "entries (lineage, seeds, weight checksums) differ from trainer retrain");
    for entry in page.nodes.iter().filter(|e| e.generation == generation) {
        let bytes = store.take(&entry.weights.path).expect("trained weights");
        assert_eq!(bytes, read(&entry.weights.path), "node {}", entry.id);
    }
}
