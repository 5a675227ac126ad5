//! Bundles: a directory holding a versioned JSON manifest and the weight files of a trained
//! S3T model (backbone, one file per node, SISA checkpoints), plus the deletion ledger.
//!
//! ```text
//! BUNDLE/
//!   manifest.json            configuration, partition, sequences, per-node lineage, accuracy, sha256 per file
//!   weights/backbone.safetensors
//!   weights/shard-0/node-3.safetensors        group k adapters + head snapshot k
//!   weights/shard-0/sisa-2.safetensors        SISA checkpoint 2
//!   deletions.ledger         the durable deletion journal (see `ledger`)
//! ```
//!
//! Writes are atomic (temporary file, fsync, rename, fsync of the directory). Loading checks the format and
//! version, then every file's sha256, and reports the first mismatch.

//!
//! What a component records ([`entry`]), the serving guard ([`guard`]), the page's retrain messages and their check
//! ([`retrain`]), the per-sample commitments ([`samples`]) and a text bundle's export ([`web`]) need no model; the
//! manifest, which holds the model's configuration, and what reads it whole need feature `model`.

#[cfg(feature = "model")]
pub mod audit;
pub mod entry;
pub mod guard;
#[cfg(feature = "model")]
pub mod manifest;
pub mod retrain;
pub mod samples;
#[cfg(all(feature = "model", not(target_family = "wasm")))]
pub mod store;
pub mod web;

pub use entry::{NodeEntry, SisaEntry, SliceLineage, WeightFile};
#[cfg(feature = "model")]
pub use manifest::{BackboneEntry, Backend, BuildSpec, DataInfo, Manifest, PretrainRecord, ShardPart};
