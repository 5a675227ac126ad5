//! What a bundle stores per weight file: the pretrained backbone with its head, a node's trained group and head
//! snapshot, a SISA checkpoint.

use burn::module::Module;

use super::adapter::GroupAdapter;
use super::vit::{Backbone, Head};

/// The trainable part of a node step: group k's adapters and the head.
#[derive(Module, Debug)]
pub struct NodeParams {
    pub adapter: GroupAdapter,
    pub head: Head,
}

/// The trainable part of a SISA checkpoint: every group's adapters and the head.
#[derive(Module, Debug)]
pub struct SisaParams {
    pub adapters: Vec<GroupAdapter>,
    pub head: Head,
}

/// The backbone and its pretraining head (the backbone-only baseline).
#[derive(Module, Debug)]
pub struct Pretrained {
    pub backbone: Backbone,
    pub head: Head,
}
