//! The S3T model (feature `model`): a frozen transformer backbone (the tiny vision transformer this project
//! pretrains, or a pretrained Hugging Face BERT-family encoder, [`hf`]) that carries LoRA adapters on the attention
//! query and value projections, grouped into L layer groups (group 1 = the top blocks).
//!
//! A component of prefix length k uses adapter groups 1..k and the classifier-head snapshot saved at the end of
//! step k; groups k+1..L are absent. Training is top-down: group k is trained while groups 1..k−1 are frozen and
//! groups k+1..L do not exist yet, so switching groups k+1..L off in a full model gives exactly the prefix-k model.

pub mod adapter;
pub mod config;
pub mod device;
pub mod ensemble;
pub mod exported;
pub mod features;
pub mod hf;
pub mod input;
pub mod kernel;
pub mod packing;
pub mod parts;
pub mod predict;
pub mod serve;
pub mod vit;
pub mod weights;

#[cfg(feature = "learn")]
pub mod build;
#[cfg(feature = "learn")]
pub mod level;
#[cfg(feature = "learn")]
pub mod parallel;
#[cfg(feature = "learn")]
pub mod train;

pub use adapter::{BlockAdapter, GroupAdapter};
pub use config::{LoraConfig, ModelConfig, TextConfig, TrainConfig, VitConfig};
pub use parts::{NodeParams, Pretrained, SisaParams};
pub use vit::{Backbone, Component, Head};
