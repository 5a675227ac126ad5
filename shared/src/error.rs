//! The crate's one error type, [`Error`]: what went wrong, as a variant a caller can match, with the message the
//! command line and the page show.
//!
//! The module errors ([`LedgerError`], [`PartitionError`], [`DataError`], …) stay the errors of their modules and
//! convert into [`Error`] with `?`. Where a variant carries a `message`, that is the whole text shown; its other
//! fields name what a caller may want to act on (the setting, the file, the digests).

use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::bundle::guard::{Component, Stale};
use crate::dataset::DataError;
use crate::ledger::LedgerError;
use crate::link::LinkError;
use crate::partition::PartitionError;
use crate::plan::PlanError;
use crate::prior::PriorError;
use crate::route::RouteError;
use crate::route::Served;
use crate::sequence::SequenceError;
use crate::simulate::SimulateError;

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum Error {
    /// A setting or configuration value out of its range, or settings that do not fit together: `name` is the
    /// field or flag, `message` says which value and why.
    #[error("{message}")]
    Config { name: String, message: String },
    /// A file's sha256 (or size) is not the one its manifest or index records.
    #[error("{message}")]
    Checksum { file: String, expected: String, actual: String, message: String },
    /// The guard refuses a component whose recorded lineage meets the deletions; `served` is what its shard
    /// serves, when the refusal is to serve it.
    #[error("{}", refusal(stale, served.as_ref()))]
    Stale { stale: Stale, served: Option<Served> },
    /// A manifest, shard part, node, weight file or record that does not belong here: its lineage, plan, shard or
    /// model is not the one this build, bundle or backbone expects.
    #[error("{message}")]
    Mismatch { message: String },
    /// Bad data: a data set's, a sample's or a text's content.
    #[error(transparent)]
    Data(#[from] DataError),
    /// I/O on `path` failed; `op` is what was attempted ("read", "write", "create", …). The OS error is part of
    /// the message, not a `source()`: a caller that prints the chain (`{:#}`) would show it twice.
    #[error("{}: cannot {op}: {error}", path.display())]
    Io { path: PathBuf, op: &'static str, error: io::Error },
    /// A file whose contents are malformed or of an unsupported format (JSON, safetensors, tokenizer, gzip).
    #[error("{file}: {message}")]
    Format { file: String, message: String },
    /// The model or its device failed: a tensor read back, a GPU adapter, weights that cannot be serialised.
    #[error("{0}")]
    Model(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A saved state of the page (a link, local storage) that cannot be used.
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Partition(#[from] PartitionError),
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Route(#[from] RouteError),
    #[error(transparent)]
    Simulate(#[from] SimulateError),
    #[error(transparent)]
    Prior(#[from] PriorError),
}

impl Error {
    pub fn config(name: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Config { name: name.into(), message: message.into() }
    }

    pub fn mismatch(message: impl Into<String>) -> Self {
        Self::Mismatch { message: message.into() }
    }

    pub fn format(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Format { file: file.into(), message: message.into() }
    }

    pub fn model(message: impl Into<String>) -> Self {
        Self::Model(message.into())
    }

    /// For `map_err`: an I/O error of `op` on `path`.
    pub fn io(path: impl Into<PathBuf>, op: &'static str) -> impl FnOnce(io::Error) -> Self {
        let path = path.into();
        move |error| Self::Io { path, op, error }
    }
}

/// The guard's refusal, with what to do about it.
fn refusal(stale: &Stale, served: Option<&Served>) -> String {
    match (served, stale.component) {
        (None, _) => stale.to_string(),
        (Some(served), Component::Node { shard, .. }) => format!(
            "refusing to serve shard {shard} (sequence {}, prefix {}): {stale}; run `trainer retrain --shard {shard}`",
            served.sequence, served.prefix
        ),
        (Some(_), Component::Sisa { .. }) => format!("refusing to serve SISA: {stale}"),
    }
}

impl From<Stale> for Error {
    fn from(stale: Stale) -> Self {
        Self::Stale { stale, served: None }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_bytes_are_a_checksum_error_naming_the_file() {
        let err = crate::digest::check("a.bin", "the index", "00", 1, b"x", None).unwrap_err();
        assert!(matches!(&err, Error::Checksum { file, expected, .. } if file == "a.bin" && expected == "00"), "{err}");
        assert!(err.to_string().starts_with("a.bin: checksum mismatch: the index says sha256 00 (1 bytes)"), "{err}");
    }

    #[test]
    fn a_module_error_converts_with_its_text() {
        let convert = || -> Result<crate::Partition> { Ok(crate::Partition::new(0, 1, crate::PartitionMode::Hash)?) };
        let err = convert().unwrap_err();
        assert!(matches!(err, Error::Partition(crate::partition::PartitionError::ZeroShards)), "{err}");
        assert_eq!(err.to_string(), crate::partition::PartitionError::ZeroShards.to_string());
    }

    #[test]
    fn another_bundles_link_is_a_link_error() {
        let link = crate::link::encode("abc", &[crate::SampleId::Int(3)]);
        let err: Error = crate::link::decode(&link, "def").unwrap_err().into();
        assert!(matches!(err, Error::Link(_)), "{err}");
        assert!(err.to_string().contains("another model bundle"), "{err}");
    }

    #[test]
    fn a_stale_node_is_a_guard_refusal_naming_its_component_and_slice() {
        use crate::bundle::guard::{Component, Guard};
        use crate::partition::{Cell, Partition, PartitionMode};
        let assignment =
            Partition::new(1, 2, PartitionMode::Balanced).and_then(|p| p.assign((0..8u64).map(crate::SampleId::Int)));
        let assignment = assignment.expect("assignment");
        let nothing = |_: &crate::SampleId| false;
        let lineage = crate::bundle::entry::lineage(&assignment, 0, &[1, 0], &nothing);
        let weights = crate::bundle::WeightFile { path: String::new(), sha256: String::new(), bytes: 0 };
        let node = crate::bundle::NodeEntry {
            shard: 0,
            id: 4,
            prefix: vec![1, 0],
            parent: Some(1),
            seed: 0,
            lineage,
            samples: 8,
            validation_accuracy: 0.0,
            generation: 0,
            weights,
        };
        let gone = assignment.members(Cell { shard: 0, slice: 0 })[0].clone();
        let guard = Guard::new(&assignment, [gone]);
        let err: Error = guard.check_node(&node).unwrap_err().into();
        let Error::Stale { stale, served: None } = &err else { panic!("not a guard refusal: {err}") };
        assert_eq!((stale.component, stale.slice), (Component::Node { shard: 0, id: 4 }, 0), "{err}");
    }

    #[cfg(feature = "model")]
    mod model {
        use super::super::*;
        use crate::bundle::guard::Guard;
        use crate::bundle::manifest::{
            BackboneEntry, Backend, BuildSpec, DataInfo, FORMAT, Manifest, NodeEntry, PretrainRecord, ShardPart,
            VERSION, WeightFile, lineage, verify_bytes,
        };
        use crate::model::{LoraConfig, ModelConfig, TrainConfig};
        use crate::partition::{Assignment, PartitionMode};
        use crate::sequence::Strategy;
        use crate::{Partition, Plan, Router, SampleId};

        fn weights(path: &str) -> WeightFile {
            WeightFile { path: path.into(), sha256: String::new(), bytes: 0 }
        }

        /// A one-shard, two-slice bundle over samples 0..8, every node's lineage clean.
        fn bundle() -> (Manifest, Plan, Assignment) {
            let partition = Partition::new(1, 2, PartitionMode::Hash).expect("partition");
            let assignment = partition.assign((0..8).map(SampleId::Int)).expect("assignment");
            let plan = Plan::new(1, 2, 1, &Strategy::Cyclic).expect("plan");
            let nodes = plan.shards[0]
                .nodes
                .iter()
                .map(|n| NodeEntry {
                    shard: 0,
                    id: n.id,
                    prefix: n.prefix.clone(),
                    parent: n.parent,
                    seed: 0,
                    lineage: lineage(&assignment, 0, &n.prefix, &|_| false),
                    samples: 0,
                    validation_accuracy: 0.0,
                    generation: 0,
                    weights: weights(&format!("node-{}", n.id)),
                })
                .collect();
            let data = DataInfo {
                source: "default".into(),
                rows: 28,
                cols: 28,
                classes: 10,
                public: 1,
                deletable: 8,
                validation: 1,
                test: 1,
                deletable_sha256: String::new(),
                deletable_digests_sha256: String::new(),
                labels: Vec::new(),
                fields: None,
            };
            let backbone = BackboneEntry {
                seed: 0,
                validation_accuracy: 0.0,
                test_accuracy: 0.0,
                weights: weights("backbone"),
                source: None,
            };
            let pretrain = PretrainRecord::new(ModelConfig::new(), TrainConfig::new(), data, backbone);
            let spec = BuildSpec {
                format: FORMAT.into(),
                version: VERSION,
                train: TrainConfig::new(),
                lora: LoraConfig::new(),
                layers_per_group: None,
                seed: 0,
                partition,
                strategy: Strategy::Cyclic,
                budget: 1,
                sisa: false,
                backbone_sha256: String::new(),
                backend: Backend::new(false, "cpu"),
                canaries: Default::default(),
            };
            let part = ShardPart { shard: 0, complete: true, nodes, sisa: Vec::new() };
            (Manifest::assemble(pretrain, spec, vec![part]).expect("a manifest"), plan, assignment)
        }

        #[test]
        fn a_served_node_that_saw_a_deleted_sample_is_a_stale_refusal() {
            let (manifest, plan, assignment) = bundle();
            let state = Router::new(assignment.clone(), &plan).expect("router").initial();
            Guard::new(&assignment, []).check_served(&manifest, &plan, &state, None).expect("nothing deleted");
            let err = Guard::new(&assignment, [SampleId::Int(0)])
                .check_served(&manifest, &plan, &state, None)
                .expect_err("node saw sample 0");
            assert!(matches!(err, Error::Stale { served: Some(_), .. }), "{err}");
            assert!(
                err.to_string().starts_with("refusing to serve shard 0 (sequence 0, prefix 2): shard 0 node"),
                "{err}"
            );
        }

        #[test]
        fn changed_weights_are_a_checksum_error() {
            let file = WeightFile::of("node-0", b"weights");
            verify_bytes(&file, b"weights").expect("the recorded bytes");
            let err = verify_bytes(&file, b"weightz").unwrap_err();
            assert!(matches!(&err, Error::Checksum { file, .. } if file == "node-0"), "{err}");
        }

        #[test]
        fn an_out_of_range_setting_is_a_config_error_naming_the_field() {
            let err = ModelConfig::new().with_groups(0).validate().unwrap_err();
            assert!(matches!(&err, Error::Config { name, .. } if name == "groups"), "{err}");
            assert!(err.to_string().starts_with("groups 0 must be between 1 and depth"), "{err}");
        }

        #[test]
        fn a_missing_file_is_an_io_error_naming_its_path() {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let err = crate::bundle::store::read_manifest(dir.path()).unwrap_err();
            let Error::Io { path, op, error } = &err else { panic!("not an I/O error: {err}") };
            assert_eq!((path.as_path(), *op), (dir.path().join("manifest.json").as_path(), "read"));
            assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
            // The OS error is said once, also where a caller prints the chain (as the trainer does, `{:#}`).
            assert!(std::error::Error::source(&err).is_none(), "{err}");
            assert!(err.to_string().starts_with(&format!("{}: cannot read: ", path.display())), "{err}");
        }

        #[test]
        fn a_malformed_file_is_a_format_error_naming_the_file() {
            let err = Manifest::from_json("bundle/manifest.json", "{ not JSON").unwrap_err();
            assert!(matches!(&err, Error::Format { file, .. } if file == "bundle/manifest.json"), "{err}");
            assert!(err.to_string().starts_with("bundle/manifest.json: not valid JSON: "), "{err}");
        }
    }
}
