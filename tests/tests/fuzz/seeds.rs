//! Valid inputs the fuzzer starts from, one set per format, built with the code that writes them (so they track
//! the formats) and kept small (a few KB) so that 10,000 cases per parser stay fast in the dev profile.

use std::io::{Read, Write};
use std::sync::OnceLock;

use s3t::bundle::{
    BackboneEntry, Backend, BuildSpec, DataInfo, Manifest, NodeEntry, PretrainRecord, ShardPart, SisaEntry,
    SliceLineage, WeightFile,
};
use s3t::dataset::{self, Dataset};
use s3t::model::{LoraConfig, ModelConfig, TrainConfig};
use s3t::partition::{Partition, PartitionMode};
use s3t::{Action, Ledger, Plan, Prior, SampleId, Strategy};

/// The bundle tag the link seeds carry and the link target decodes against.
pub const LINK_TAG: &str = "3f9a0c1d";

/// Two real images of the embedded Fashion-MNIST validation split.
pub fn real_images() -> &'static Dataset {
    static DATA: OnceLock<Dataset> = OnceLock::new();
    DATA.get_or_init(|| {
        let images = include_bytes!("../../../data/fashion-mnist/validation-images-idx3-ubyte.gz");
        let labels = include_bytes!("../../../data/fashion-mnist/validation-labels-idx1-ubyte.gz");
        dataset::from_idx("validation images", images.to_vec(), "validation labels", labels.to_vec(), 10)
            .expect("the embedded data set loads")
            .head(2)
    })
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("writing to a Vec");
    encoder.finish().expect("writing to a Vec")
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes).read_to_end(&mut out).expect("a stream this file wrote");
    out
}

/// A tiny synthetic pair (3 images of 2×2), where a mutation lands in the header more often.
fn tiny_idx() -> (Vec<u8>, Vec<u8>) {
    let mut images: Vec<u8> = [0x803u32, 3, 2, 2].iter().flat_map(|w| w.to_be_bytes()).collect();
    images.extend(0..12u8);
    let mut labels: Vec<u8> = [0x801u32, 3].iter().flat_map(|w| w.to_be_bytes()).collect();
    labels.extend([0, 9, 4]);
    (images, labels)
}

/// IDX image files, uncompressed: the real pair's and the tiny one.
pub fn idx_images() -> Vec<Vec<u8>> {
    let (gz_images, _) = dataset::to_idx_gz(real_images());
    vec![gunzip(&gz_images), tiny_idx().0]
}

/// IDX label files, uncompressed.
pub fn idx_labels() -> Vec<Vec<u8>> {
    let (_, gz_labels) = dataset::to_idx_gz(real_images());
    vec![gunzip(&gz_labels), tiny_idx().1]
}

/// Gzip streams (of IDX files) and, since only the magic decides, raw bytes too.
pub fn gzip_streams() -> Vec<Vec<u8>> {
    let (images, labels) = dataset::to_idx_gz(real_images());
    let (tiny_images, tiny_labels) = tiny_idx();
    vec![images, labels, gzip(&tiny_images), gzip(&tiny_labels), tiny_images]
}

/// CSV text with the image shape it holds: the real images (28×28, with a header line) and a 2×2 one.
pub fn csv() -> Vec<(Vec<u8>, u32, u32)> {
    let data = real_images();
    let per = data.pixels_per_image();
    let mut text = String::from("label");
    for k in 0..per {
        text.push_str(&format!(",p{k}"));
    }
    text.push('\n');
    for (i, label) in data.labels.iter().enumerate() {
        text.push_str(&label.to_string());
        for p in &data.pixels[i * per..(i + 1) * per] {
            text.push_str(&format!(",{p}"));
        }
        text.push('\n');
    }
    let small = b"3,0,1,2,255\n1,4,5,6,7\n\"9\", 8 ,9,10,11\n".to_vec();
    vec![(text.into_bytes(), data.rows, data.cols), (small, 2, 2)]
}

fn weights(path: &str) -> WeightFile {
    WeightFile { path: path.into(), sha256: "ab".repeat(32), bytes: 4096 }
}

fn pretrain_record() -> PretrainRecord {
    PretrainRecord {
        format: s3t::bundle::manifest::FORMAT.into(),
        version: s3t::bundle::manifest::VERSION,
        model: ModelConfig::new(),
        pretrain: TrainConfig::new(),
        data: DataInfo {
            source: "default".into(),
            rows: 28,
            cols: 28,
            classes: 10,
            public: 400,
            deletable: 450,
            validation: 50,
            test: 100,
            deletable_sha256: "cd".repeat(32),
            deletable_digests_sha256: "ef".repeat(32),
            labels: Vec::new(),
            fields: None,
        },
        backbone: BackboneEntry {
            seed: 7,
            validation_accuracy: 0.75,
            test_accuracy: 0.5,
            weights: weights("backbone.safetensors"),
            source: None,
        },
    }
}

/// Every shard's part of a build of `plan`, as `trainer build` records them.
fn parts(plan: &Plan, sisa: bool) -> Vec<ShardPart> {
    let lineage = |prefix: &[u16]| -> Vec<SliceLineage> {
        prefix.iter().map(|&slice| SliceLineage { slice, samples: 11, sha256: "01".repeat(32) }).collect()
    };
    plan.shards
        .iter()
        .map(|shard| ShardPart {
            shard: shard.shard,
            complete: true,
            nodes: shard
                .nodes
                .iter()
                .map(|node| NodeEntry {
                    shard: shard.shard,
                    id: node.id,
                    prefix: node.prefix.clone(),
                    parent: node.parent,
                    seed: 100 + node.id as u64,
                    lineage: lineage(&node.prefix),
                    samples: 11 * node.prefix.len(),
                    validation_accuracy: 0.5,
                    generation: 0,
                    weights: weights(&format!("nodes/{}-{}.safetensors", shard.shard, node.id)),
                })
                .collect(),
            sisa: if sisa {
                (1..=plan.slices)
                    .map(|k| SisaEntry {
                        shard: shard.shard,
                        checkpoint: k,
                        seed: 200 + u64::from(k),
                        lineage: lineage(&(0..k).collect::<Vec<_>>()),
                        samples: 11 * usize::from(k),
                        validation_accuracy: 0.25,
                        weights: weights(&format!("sisa/{}-{k}.safetensors", shard.shard)),
                    })
                    .collect()
            } else {
                Vec::new()
            },
        })
        .collect()
}

fn manifest(shards: u16, slices: u16, budget: usize, strategy: Strategy, sisa: bool) -> Manifest {
    let plan = Plan::new(shards, slices, budget, &strategy).expect("a valid plan");
    let partition = Partition::new(shards, slices, PartitionMode::Hash).expect("a valid partition");
    // Through JSON, as `trainer build` reads it back: fields with defaults may be left out, and the canaries (one
    // manifest plants some) are read by the same code as a manifest's.
    let canaries = if sisa {
        serde_json::json!({ "planted": [{ "index": 3, "label": 1 }], "twins": [{ "index": 0, "label": 2 }] })
    } else {
        serde_json::json!({ "planted": [], "twins": [] })
    };
    let spec: BuildSpec = serde_json::from_value(serde_json::json!({
        "format": s3t::bundle::manifest::FORMAT,
        "version": s3t::bundle::manifest::VERSION,
        "train": TrainConfig::new(),
        "lora": LoraConfig::new(),
        "seed": 1,
        "partition": partition,
        "strategy": strategy,
        "budget": budget,
        "sisa": sisa,
        "backbone_sha256": "ab".repeat(32),
        "backend": Backend::new(false, "cpu (flex)"),
        "canaries": canaries,
    }))
    .expect("a build specification");
    Manifest::assemble(pretrain_record(), spec, parts(&plan, sisa)).expect("the seed manifest assembles")
}

/// Two manifests: 2 shards × 2 slices, cyclic, with SISA; 2 × 3, bipartite matching for a skewed prior.
pub fn manifests() -> Vec<Vec<u8>> {
    let prior = Prior::new(vec![0.6, 0.3, 0.1]).expect("a valid prior");
    [manifest(2, 2, 2, Strategy::Cyclic, true), manifest(2, 3, 2, Strategy::Bms { prior }, false)]
        .iter()
        .map(|m| m.to_json().into_bytes())
        .collect()
}

pub fn pretrain_records() -> Vec<Vec<u8>> {
    vec![serde_json::to_vec_pretty(&pretrain_record()).expect("serialises")]
}

pub fn shard_parts() -> Vec<Vec<u8>> {
    let plan = Plan::new(2, 2, 2, &Strategy::Cyclic).expect("a valid plan");
    parts(&plan, true).iter().map(|part| serde_json::to_vec_pretty(part).expect("serialises")).collect()
}

/// The actions the ledger seeds journal.
fn actions() -> Vec<Action> {
    vec![
        Action::Delete(SampleId::Int(3)),
        Action::Delete(SampleId::Str("a,b".into())),
        Action::Retrained { shard: 1 },
        Action::Delete(SampleId::Int(4_000_000_000)),
    ]
}

/// Ledger files as [`Ledger::append`] writes them: empty (the header only) and with four records.
pub fn ledgers() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("seed.ledger");
    let mut ledger = Ledger::create(&path).expect("a new ledger");
    let empty = std::fs::read(&path).expect("the ledger reads");
    for action in actions() {
        ledger.append(&action).expect("append");
    }
    drop(ledger);
    vec![empty, std::fs::read(&path).expect("the ledger reads")]
}

/// The JSON payloads of the ledger records, for mutations that keep the checksums right.
pub fn ledger_payloads() -> Vec<Vec<u8>> {
    actions().iter().map(|a| serde_json::to_vec(a).expect("serialises")).collect()
}

/// Saved page states: with a `#`, with escaped string ids, empty.
pub fn links() -> Vec<Vec<u8>> {
    let ids = [SampleId::Int(7), SampleId::Int(0), SampleId::Int(449), SampleId::Str("a,b&c%d é".into())];
    vec![
        format!("#{}", s3t::link::encode(LINK_TAG, &ids)).into_bytes(),
        s3t::link::encode(LINK_TAG, &ids[..2]).into_bytes(),
        s3t::link::encode(LINK_TAG, &[]).into_bytes(),
        s3t::link::encode_saved(
            LINK_TAG,
            &s3t::link::Saved {
                deleted: ids.to_vec(),
                retrained: vec![s3t::link::Retrain { shard: 1, after: 2 }, s3t::link::Retrain { shard: 0, after: 4 }],
            },
        )
        .into_bytes(),
    ]
}
