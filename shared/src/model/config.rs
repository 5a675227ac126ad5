//! Model hyper-parameters (burn `Config`s with documented defaults).

use crate::Error;
use burn::config::Config;

/// The frozen backbone: a pre-norm vision transformer over square grey images.
#[derive(Config, Debug, PartialEq)]
pub struct VitConfig {
    /// Image side in pixels.
    #[config(default = 28)]
    pub image_size: usize,
    /// Patch side in pixels (must divide `image_size`): 7 gives 16 tokens on 28×28 images.
    #[config(default = 7)]
    pub patch_size: usize,
    /// Token width.
    #[config(default = 64)]
    pub d_model: usize,
    /// Attention heads (must divide `d_model`).
    #[config(default = 4)]
    pub heads: usize,
    /// Number of transformer blocks; at least the number of layer groups.
    #[config(default = 4)]
    pub depth: usize,
    /// Hidden width of the feed-forward layer, as a multiple of `d_model`.
    #[config(default = 2)]
    pub mlp_ratio: usize,
    /// Output classes.
    #[config(default = 10)]
    pub classes: usize,
}

/// LoRA adapters on the attention query and value projections.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank r of the update `A·B` (A: d×r, B: r×d).
    #[config(default = 4)]
    pub rank: usize,
    /// Scale numerator: the update is multiplied by `alpha / rank`.
    #[config(default = 8.0)]
    pub alpha: f64,
}

/// A Hugging Face BERT-family encoder as the frozen backbone of a text bundle ([`super::hf`]): what its
/// `config.json` says beyond the transformer's shape (which [`ModelConfig::vit`] holds), and how text is cut.
#[derive(Config, Debug, PartialEq)]
pub struct TextConfig {
    /// `model_type` of `config.json` (`bert`).
    pub model_type: String,
    /// Rows of the word embedding (`vocab_size`).
    pub vocab_size: usize,
    /// Rows of the position embedding (`max_position_embeddings`).
    pub max_positions: usize,
    /// Rows of the token-type embedding (`type_vocab_size`).
    pub type_vocab_size: usize,
    /// Epsilon of every layer norm (`layer_norm_eps`; BERT's is 1e-12).
    pub layer_norm_eps: f64,
    /// Token id of padding (`pad_token_id`).
    pub pad_token_id: u32,
    /// Tokens per sample, special tokens included: longer texts are truncated, shorter ones padded (and masked) to
    /// this length, so a sample's computation never depends on the others in its batch.
    #[config(default = 64)]
    pub max_tokens: usize,
    /// The arithmetic of training: `Some(true)`, the token-wise layers run on the real tokens only
    /// ([`super::packing`]: the same forward pass bit for bit, about half the work at 64 tokens on Rotten Tomatoes,
    /// but weight gradients summed in another grouping); `None` or `Some(false)`, on every position up to
    /// `max_tokens`, the arithmetic of text bundles built before packing (their records have no such field, hence
    /// the `Option`). New configurations pack ([`super::hf::HfConfig::model_config`]).
    pub packed: Option<bool>,
    /// The precision the frozen encoder is held at: `Some(true)`, every weight of the checkpoint is rounded to f16
    /// once, when it is read, and the model is those values everywhere (pretraining, training, evaluation, the
    /// page), so an export ships the frozen layers at half the size and nothing computes with other values;
    /// `None` or `Some(false)`, the checkpoint's f32 values (every bundle built before the option).
    pub frozen_f16: Option<bool>,
}

/// Backbone, adapters and the number of layer groups L (= slices).
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    /// The transformer's shape. For a text encoder (`text` set): width, heads, layers, feed-forward ratio and
    /// classes; its image fields are 1 and unused.
    #[config(default = "VitConfig::new()")]
    pub vit: VitConfig,
    #[config(default = "LoraConfig::new()")]
    pub lora: LoraConfig,
    /// Layer groups L; equals the number of slices per shard.
    #[config(default = 4)]
    pub groups: usize,
    /// Layers per group, counted from the top: only the top `groups × layers_per_group` layers carry adapters and
    /// the layers below stay frozen (their output is computed once per sample and cached). `None`: every layer
    /// carries an adapter, split into L groups as evenly as possible.
    pub layers_per_group: Option<usize>,
    /// Set for a text bundle: the backbone is a pretrained encoder loaded from a Hugging Face directory.
    pub text: Option<TextConfig>,
}

impl VitConfig {
    pub fn tokens(&self) -> usize {
        let side = self.image_size / self.patch_size;
        side * side
    }

    pub fn patch_dim(&self) -> usize {
        self.patch_size * self.patch_size
    }

    /// Checks the divisibility constraints; the message names the field.
    pub fn validate(&self) -> crate::Result<()> {
        if self.patch_size == 0 || self.image_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(Error::config(
                "patch_size",
                format!("patch_size {} must divide image_size {}", self.patch_size, self.image_size),
            ));
        }
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return Err(Error::config("heads", format!("heads {} must divide d_model {}", self.heads, self.d_model)));
        }
        if self.depth == 0 || self.classes < 2 || self.mlp_ratio == 0 {
            return Err(Error::config("depth", "depth, mlp_ratio must be ≥ 1 and classes ≥ 2"));
        }
        // Bounds far above any model this project trains: a record from a file must not make a reader allocate
        // without limit.
        for (field, value, max) in [
            ("image_size", self.image_size, 1024),
            ("d_model", self.d_model, 8192),
            ("depth", self.depth, 256),
            ("mlp_ratio", self.mlp_ratio, 16),
            ("classes", self.classes, 256),
        ] {
            if value > max {
                return Err(Error::config(field, format!("{field} {value} is larger than {max}")));
            }
        }
        Ok(())
    }
}

impl TextConfig {
    /// Whether training runs on packed tokens ([`TextConfig::packed`]).
    pub fn packs(&self) -> bool {
        self.packed == Some(true)
    }

    /// Whether the frozen encoder's weights are rounded to f16 ([`TextConfig::frozen_f16`]).
    pub fn frozen_half(&self) -> bool {
        self.frozen_f16 == Some(true)
    }

    /// Checks the bounds a reader relies on before shaping tensors from a record; the message names the field.
    pub fn validate(&self) -> crate::Result<()> {
        if self.model_type != "bert" {
            return Err(Error::config(
                "model_type",
                format!("model_type {:?} is not supported (supported: \"bert\")", self.model_type),
            ));
        }
        for (field, value, max) in [
            ("vocab_size", self.vocab_size, 1 << 20),
            ("max_position_embeddings", self.max_positions, 1 << 16),
            ("type_vocab_size", self.type_vocab_size, 1 << 10),
            ("max_tokens", self.max_tokens, 1 << 16),
        ] {
            if value == 0 || value > max {
                return Err(Error::config(field, format!("{field} {value} must be between 1 and {max}")));
            }
        }
        if self.max_tokens < 2 || self.max_tokens > self.max_positions {
            return Err(Error::config(
                "max_tokens",
                format!(
                    "max_tokens {} must be between 2 (the special tokens) and max_position_embeddings {}",
                    self.max_tokens, self.max_positions
                ),
            ));
        }
        if self.pad_token_id as usize >= self.vocab_size {
            return Err(Error::config(
                "pad_token_id",
                format!("pad_token_id {} is outside the vocabulary of {}", self.pad_token_id, self.vocab_size),
            ));
        }
        if !(self.layer_norm_eps.is_finite() && self.layer_norm_eps > 0.0) {
            return Err(Error::config(
                "layer_norm_eps",
                format!("layer_norm_eps {} must be a positive number", self.layer_norm_eps),
            ));
        }
        Ok(())
    }
}

impl ModelConfig {
    /// Tokens per sample: image patches, or a text's `max_tokens`.
    pub fn tokens(&self) -> usize {
        match &self.text {
            Some(text) => text.max_tokens,
            None => self.vit.tokens(),
        }
    }

    /// The epsilon of the backbone's layer norms.
    pub fn layer_norm_eps(&self) -> f64 {
        self.text.as_ref().map_or(super::kernel::LAYER_NORM_EPSILON as f64, |t| t.layer_norm_eps)
    }

    pub fn validate(&self) -> crate::Result<()> {
        self.vit.validate()?;
        if let Some(text) = &self.text {
            text.validate()?;
        }
        if self.groups == 0 || self.groups > self.vit.depth {
            return Err(Error::config(
                "groups",
                format!("groups {} must be between 1 and depth {}", self.groups, self.vit.depth),
            ));
        }
        if let Some(per) = self.layers_per_group
            && (per == 0 || per.saturating_mul(self.groups) > self.vit.depth)
        {
            return Err(Error::config(
                "layers_per_group",
                format!(
                    "layers_per_group {per}: {} groups of it must fit in the {} layers (and it must be at least 1)",
                    self.groups, self.vit.depth
                ),
            ));
        }
        if self.lora.rank == 0 || self.lora.rank > self.vit.d_model {
            return Err(Error::config(
                "lora.rank",
                format!("lora.rank {} must be between 1 and d_model {}", self.lora.rank, self.vit.d_model),
            ));
        }
        if !self.lora.alpha.is_finite() {
            return Err(Error::config("lora.alpha", format!("lora.alpha {} is not a finite number", self.lora.alpha)));
        }
        Ok(())
    }

    /// The layer group (1 = top) of a block (0 = bottom), or `groups + 1` for a frozen block below every group.
    /// Without `layers_per_group`, blocks are split as evenly as possible, top first.
    pub fn group_of_block(&self, block: usize) -> usize {
        let depth = self.vit.depth;
        match self.layers_per_group {
            Some(per) if per > 0 => (1 + (depth - 1 - block) / per).min(self.groups + 1),
            _ => 1 + (depth - 1 - block) * self.groups / depth,
        }
    }

    /// The blocks of a group, bottom to top.
    pub fn blocks_of_group(&self, group: usize) -> Vec<usize> {
        (0..self.vit.depth).filter(|&b| self.group_of_block(b) == group).collect()
    }

    /// The lowest block of a group: where the computation of a prefix-`group` component starts to differ from
    /// the plain backbone.
    pub fn first_block_of_group(&self, group: usize) -> usize {
        self.blocks_of_group(group).first().copied().unwrap_or(0)
    }

    /// Blocks below every group (frozen, no adapter): the activations entering group L are theirs.
    pub fn frozen_base(&self) -> usize {
        self.first_block_of_group(self.groups)
    }
}

/// Optimisation settings of one training run (a pretraining run, a node step or a SISA checkpoint).
#[derive(Config, Debug, PartialEq)]
pub struct TrainConfig {
    /// Passes over the run's data; for node steps and SISA checkpoints, passes over a whole shard's worth of data
    /// (see [`TrainConfig::for_slices`]).
    #[config(default = 4)]
    pub epochs: usize,
    /// Samples per optimiser step.
    #[config(default = 64)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[config(default = 3e-3)]
    pub learning_rate: f64,
}

impl TrainConfig {
    /// The settings of a run on `k` of a shard's `slices` slices: ⌈epochs · slices / k⌉ passes, so that every node
    /// step and every SISA checkpoint takes about the same number of optimiser steps. Otherwise the one-slice runs
    /// get a quarter of the steps at L = 4, and S3T's top group, which only its one-slice run trains, stays
    /// under-trained (SISA's top layers keep training at every checkpoint).
    pub fn for_slices(&self, k: usize, slices: usize) -> Self {
        let mut run = self.clone();
        run.epochs = (self.epochs * slices).div_ceil(k.max(1));
        run
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_blocks_top_first() {
        let cfg = ModelConfig::new().with_vit(VitConfig::new().with_depth(6)).with_groups(4);
        let groups: Vec<usize> = (0..6).map(|b| cfg.group_of_block(b)).collect();
        assert_eq!(groups, vec![4, 3, 3, 2, 1, 1]);
        for g in 1..=4 {
            assert!(!cfg.blocks_of_group(g).is_empty());
        }
        let cfg = ModelConfig::new();
        assert_eq!((0..4).map(|b| cfg.group_of_block(b)).collect::<Vec<_>>(), vec![4, 3, 2, 1]);
        assert!(ModelConfig::new().with_groups(5).validate().is_err());
    }

    #[test]
    fn layers_per_group_leaves_the_bottom_frozen() {
        let cfg =
            ModelConfig::new().with_vit(VitConfig::new().with_depth(6)).with_groups(2).with_layers_per_group(Some(2));
        let groups: Vec<usize> = (0..6).map(|b| cfg.group_of_block(b)).collect();
        assert_eq!(groups, vec![3, 3, 2, 2, 1, 1], "blocks 0 and 1 belong to no group");
        assert_eq!(cfg.frozen_base(), 2);
        assert_eq!(cfg.blocks_of_group(1), vec![4, 5]);
        assert!(cfg.clone().with_layers_per_group(Some(4)).validate().is_err(), "2 × 4 layers do not fit in 6");
        assert_eq!(ModelConfig::new().frozen_base(), 0);
    }

    /// Text bundles recorded before packing have no `packed` field: they keep the padded arithmetic they were
    /// trained with, so their nodes retrain bit for bit.
    #[test]
    fn a_text_record_without_packed_keeps_the_padded_arithmetic() {
        let json = r#"{"model_type": "bert", "vocab_size": 30, "max_positions": 16, "type_vocab_size": 2,
            "layer_norm_eps": 1e-12, "pad_token_id": 0, "max_tokens": 8}"#;
        let text: TextConfig = serde_json::from_str(json).expect("an older record parses");
        assert!(!text.packs());
        let text: TextConfig = serde_json::from_str(&json.replace("}", r#", "packed": true}"#)).expect("parses");
        assert!(text.packs());
        // Nor does it hold its encoder at f16.
        assert!(!text.frozen_half());
        let text: TextConfig = serde_json::from_str(&json.replace("}", r#", "frozen_f16": true}"#)).expect("parses");
        assert!(text.frozen_half());
    }

    #[test]
    fn every_run_takes_about_the_same_steps() {
        let train = TrainConfig::new().with_epochs(3);
        let epochs: Vec<usize> = (1..=4).map(|k| train.for_slices(k, 4).epochs).collect();
        assert_eq!(epochs, vec![12, 6, 4, 3]);
        assert_eq!(train.for_slices(3, 3), train);
    }
}
