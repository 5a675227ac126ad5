//! Core of S3T (Sequence-aware Sharded Sliced Training) exact unlearning.
//!
//! Chowdhury et al., *Towards Scalable Exact Machine Unlearning Using Parameter-Efficient Fine-Tuning*,
//! ICLR 2025. The modules follow the paper's concepts:
//!
//! - [`dataset`]: image and tokenized text data sets (IDX and CSV loaders, the public / deletable / validation /
//!   test splits).
//! - `text` (feature `text`): labelled text files and the Rotten Tomatoes corpus, tokenized.
//! - `tokenizer` (feature `tokenizer`): a Hugging Face `tokenizer.json`, natively and in the browser.
//! - [`partition`]: sample id → (shard, slice), stable across runs and platforms.
//! - [`sequence`]: slice sequences (permutations) a shard trains: cyclic, full, random, BMS.
//! - [`plan`]: the per-shard prefix trie of training nodes and their training order.
//! - [`route`]: the pure deletion/routing state machine shared by the trainer and the browser.
//! - [`ledger`]: the durable, checksummed, append-only deletion journal.
//! - [`link`]: the web page's saved deletions (shareable link, local storage), parsed without trusting them.
//! - [`page`]: the web page's pure reducers (its session, its retraining queue, its base state).
//! - [`sentence`]: a visitor's own sentence: the page's messages to its tokenizer worker.
//! - [`simulate`]: closed form and Monte Carlo estimates of how many deletions a configuration survives.
//! - [`error`]: [`Error`], the crate's error: variants a caller can match, the modules' own errors among them.
//!
//! This crate has no heavy dependencies and compiles for `wasm32-unknown-unknown`.

pub mod assignment;
pub mod bundle;
pub mod dataset;
pub mod digest;
pub mod error;
pub mod ledger;
pub mod link;
#[cfg(feature = "model")]
pub mod model;
pub mod page;
pub mod partition;
pub mod plan;
pub mod prior;
pub mod route;
pub mod sentence;
pub mod sequence;
pub mod simulate;
#[cfg(feature = "text")]
pub mod text;
#[cfg(feature = "tokenizer")]
pub mod tokenizer;

pub use error::{Error, Result};
pub use ledger::{Ledger, LedgerError, Recovery};
pub use partition::{Cell, Partition, PartitionMode, SampleId};
pub use plan::{Node, NodeId, Plan, ShardPlan};
pub use prior::Prior;
pub use route::{Action, Event, Router, Served, State};
pub use sequence::{Sequence, SequenceError, Strategy};
