//! Model hyper-parameters (burn `Config`s with documented defaults).

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

/// Backbone, adapters and the number of layer groups L (= slices).
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    #[config(default = "VitConfig::new()")]
    pub vit: VitConfig,
    #[config(default = "LoraConfig::new()")]
    pub lora: LoraConfig,
    /// Layer groups L; equals the number of slices per shard.
    #[config(default = 4)]
    pub groups: usize,
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
    pub fn validate(&self) -> Result<(), String> {
        if self.patch_size == 0 || self.image_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            return Err(format!("patch_size {} must divide image_size {}", self.patch_size, self.image_size));
        }
        if self.heads == 0 || !self.d_model.is_multiple_of(self.heads) {
            return Err(format!("heads {} must divide d_model {}", self.heads, self.d_model));
        }
        if self.depth == 0 || self.classes < 2 || self.mlp_ratio == 0 {
            return Err("depth, mlp_ratio must be ≥ 1 and classes ≥ 2".into());
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
                return Err(format!("{field} {value} is larger than {max}"));
            }
        }
        Ok(())
    }
}

impl ModelConfig {
    pub fn validate(&self) -> Result<(), String> {
        self.vit.validate()?;
        if self.groups == 0 || self.groups > self.vit.depth {
            return Err(format!("groups {} must be between 1 and depth {}", self.groups, self.vit.depth));
        }
        if self.lora.rank == 0 || self.lora.rank > self.vit.d_model {
            return Err(format!("lora.rank {} must be between 1 and d_model {}", self.lora.rank, self.vit.d_model));
        }
        if !self.lora.alpha.is_finite() {
            return Err(format!("lora.alpha {} is not a finite number", self.lora.alpha));
        }
        Ok(())
    }

    /// The layer group (1 = top) of a block (0 = bottom). Blocks are split as evenly as possible, top first.
    pub fn group_of_block(&self, block: usize) -> usize {
        let depth = self.vit.depth;
        1 + (depth - 1 - block) * self.groups / depth
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
    fn every_run_takes_about_the_same_steps() {
        let train = TrainConfig::new().with_epochs(3);
        let epochs: Vec<usize> = (1..=4).map(|k| train.for_slices(k, 4).epochs).collect();
        assert_eq!(epochs, vec![12, 6, 4, 3]);
        assert_eq!(train.for_slices(3, 3), train);
    }
}
