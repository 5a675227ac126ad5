//! Canaries: deliberately mislabeled samples planted in the deletable split (`trainer build --canaries N`), so that
//! memorisation, and its removal by a deletion, can be measured (`trainer forget-check --canaries`).
//!
//! A model can only fit a wrong label by remembering that very sample, so a canary's loss under a model that trained
//! on it is lower than under one that did not. Each canary has a never-trained twin: a test image given a wrong
//! label the same way, so canaries and twins differ only in whether the model saw them. Everything is a function of
//! the build seed and the data, so `retrain` (which loads the data through [`plant`]) reproduces the build.

use std::collections::HashSet;

use anyhow::{Result, bail, ensure};
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::bundle::manifest::{Canaries, Mislabel};
use s3t::dataset::Dataset;
use sha2::{Digest, Sha256};

/// Chooses `n` canaries of the deletable split and `n` twins of the test split, each with a wrong label drawn
/// uniformly from the other classes, deterministically from the build seed (the source labels come in, so the
/// wrong label is wrong for every seed).
pub fn choose(seed: u64, n: usize, deletable: &Dataset, test: &Dataset) -> Result<Canaries> {
    if n == 0 {
        return Ok(Canaries::default());
    }
    ensure!(
        deletable.classes >= 2,
        "--canaries {n}: a wrong label needs at least 2 classes, the data has {}",
        deletable.classes
    );
    ensure!(n <= deletable.len(), "--canaries {n}: the deletable split has only {} samples", deletable.len());
    ensure!(
        n <= test.len(),
        "--canaries {n}: each canary needs a twin in the test split, which has only {} samples",
        test.len()
    );
    // Its own stream, apart from the node seeds (which derive from the same build seed for other purposes).
    let mut key = Sha256::new();
    key.update(b"s3t canaries v1");
    key.update(seed.to_le_bytes());
    let mut rng = ChaCha8Rng::from_seed(key.finalize().into());
    let mislabel = |data: &Dataset, rng: &mut ChaCha8Rng| -> Vec<Mislabel> {
        let mut chosen = index::sample(rng, data.len(), n).into_vec();
        chosen.sort_unstable();
        chosen
            .into_iter()
            .map(|i| {
                let shift = rng.random_range(1..data.classes);
                Mislabel { index: i, label: (data.labels[i] + shift) % data.classes }
            })
            .collect()
    };
    let planted = mislabel(deletable, &mut rng);
    let twins = mislabel(test, &mut rng);
    Ok(Canaries { planted, twins })
}

/// Gives each planted canary its canary label in the deletable split: every command that trains or evaluates on the
/// bundle's data must see them. `what` names the record in errors (a forged one is refused, not applied).
pub fn plant(canaries: &Canaries, deletable: &mut Dataset, what: &str) -> Result<()> {
    check(&canaries.planted, deletable, &format!("{what}: canaries.planted"), "deletable")?;
    for c in &canaries.planted {
        deletable.labels[c.index] = c.label;
    }
    Ok(())
}

/// The twins: copies of their test images with their wrong labels (the test split itself is left as it is).
pub fn twins(canaries: &Canaries, test: &Dataset, what: &str) -> Result<Dataset> {
    check(&canaries.twins, test, &format!("{what}: canaries.twins"), "test")?;
    let mut twins = test.select(&canaries.twins.iter().map(|c| c.index).collect::<Vec<_>>());
    twins.labels = canaries.twins.iter().map(|c| c.label).collect();
    Ok(twins)
}

/// Every entry names a distinct sample of `data` and a class of it other than the sample's own label.
fn check(entries: &[Mislabel], data: &Dataset, field: &str, split: &str) -> Result<()> {
    let mut seen = HashSet::new();
    for (k, c) in entries.iter().enumerate() {
        if c.index >= data.len() {
            bail!("{field}[{k}].index = {} is not in the {split} split ({} samples)", c.index, data.len());
        }
        if !seen.insert(c.index) {
            bail!("{field}[{k}].index = {} appears twice", c.index);
        }
        if c.label >= data.classes {
            bail!("{field}[{k}].label = {} is not a class (0..{})", c.label, data.classes);
        }
        if c.label == data.labels[c.index] {
            bail!("{field}[{k}].label = {} is the sample's own label, not a wrong one", c.label);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, classes: u8) -> Dataset {
        Dataset {
            rows: 1,
            cols: 1,
            classes,
            pixels: (0..n).map(|i| i as u8).collect(),
            labels: (0..n).map(|i| (i % usize::from(classes)) as u8).collect(),
            text: None,
        }
    }

    #[test]
    fn canaries_are_deterministic_distinct_and_mislabeled() {
        let (deletable, test) = (data(500, 10), data(200, 10));
        let a = choose(7, 50, &deletable, &test).unwrap();
        assert_eq!(a, choose(7, 50, &deletable, &test).unwrap(), "a function of the seed");
        assert_ne!(a, choose(8, 50, &deletable, &test).unwrap(), "another seed, other canaries");
        assert_eq!((a.planted.len(), a.twins.len()), (50, 50));
        let mut planted = deletable.clone();
        plant(&a, &mut planted, "test").unwrap();
        let changed = (0..500).filter(|&i| planted.labels[i] != deletable.labels[i]).count();
        assert_eq!(changed, 50, "every canary's label is wrong, nothing else changes");
        let twins = twins(&a, &test, "test").unwrap();
        for (k, c) in a.twins.iter().enumerate() {
            assert_eq!(twins.image(k), test.image(c.index));
            assert_ne!(twins.labels[k], test.labels[c.index]);
        }
        assert_eq!(choose(7, 0, &deletable, &test).unwrap(), Canaries::default());
    }

    #[test]
    fn impossible_or_forged_canaries_are_refused() {
        let (deletable, test) = (data(20, 10), data(10, 10));
        assert!(choose(0, 21, &deletable, &test).unwrap_err().to_string().contains("only 20"));
        assert!(choose(0, 11, &deletable, &test).unwrap_err().to_string().contains("twin"));
        assert!(choose(0, 1, &data(5, 1), &test).is_err());
        let forged = |index, label| Canaries { planted: vec![Mislabel { index, label }], twins: Vec::new() };
        for (c, needle) in [
            (forged(20, 1), "canaries.planted[0].index = 20"),
            (forged(3, 10), "label = 10 is not a class"),
            (forged(3, 3), "own label"),
        ] {
            let err = plant(&c, &mut deletable.clone(), "manifest.json").unwrap_err().to_string();
            assert!(err.contains(needle) && err.starts_with("manifest.json"), "{err}");
        }
    }
}
