//! What a bundle records of each trained component, burn-free: its weight file with the file's sha256, and its
//! lineage (the digest of each slice it saw, rule E8). The serving guard, the page's retrain check and the page's
//! reducers need these alone; the manifest that holds them also holds the model's configuration (feature
//! `model`).

use serde::{Deserialize, Serialize};

use crate::partition::{Assignment, Cell, SampleId, digest_ids};

/// A weight file, relative to the bundle directory, with its checksum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

impl WeightFile {
    /// The entry of `bytes` stored at `path`.
    pub fn of(path: &str, bytes: &[u8]) -> Self {
        Self { path: path.to_owned(), sha256: crate::partition::hex(&sha256(bytes)), bytes: bytes.len() as u64 }
    }
}

/// Digest of the sorted ids of one slice as a node saw it (exactness rule E8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SliceLineage {
    pub slice: u16,
    pub samples: usize,
    pub sha256: String,
}

/// One trained S3T node: group `prefix.len()` of `shard` and the head snapshot of that step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeEntry {
    pub shard: u16,
    pub id: usize,
    pub prefix: Vec<u16>,
    pub parent: Option<usize>,
    pub seed: u64,
    /// Each slice of the prefix as this node (and its ancestors, for earlier slices) saw it.
    pub lineage: Vec<SliceLineage>,
    pub samples: usize,
    pub validation_accuracy: f64,
    /// How many times this node was retrained after deletions.
    pub generation: u32,
    pub weights: WeightFile,
}

/// One SISA checkpoint k of a shard: every adapter group and the head, trained on slices 0..k.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SisaEntry {
    pub shard: u16,
    pub checkpoint: u16,
    pub seed: u64,
    pub lineage: Vec<SliceLineage>,
    pub samples: usize,
    pub validation_accuracy: f64,
    pub weights: WeightFile,
}

/// SHA-256 of bytes.
pub fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).to_vec()
}

/// Checks bytes against a weight file's recorded size and sha256 (used where files arrive over the network).
pub fn verify_bytes(file: &WeightFile, bytes: &[u8]) -> crate::Result<()> {
    crate::digest::check(&file.path, "the manifest", &file.sha256, file.bytes, bytes, None)
}

/// [`verify_bytes`], hashing a few MB at a time and awaiting `pause` in between (the page checks tens of MB of an
/// encoder on its main thread).
pub async fn verify_bytes_paced(file: &WeightFile, bytes: &[u8], pause: &impl AsyncFn()) -> crate::Result<()> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for chunk in bytes.chunks(4 << 20) {
        hasher.update(chunk);
        pause().await;
    }
    let sha = crate::partition::hex(&hasher.finalize());
    crate::digest::check(&file.path, "the manifest", &file.sha256, file.bytes, bytes, Some(sha))
}

/// The lineage of slices `slices` of a shard, excluding the ids in `deleted`.
pub fn lineage(
    assignment: &Assignment,
    shard: u16,
    slices: &[u16],
    deleted: &dyn Fn(&SampleId) -> bool,
) -> Vec<SliceLineage> {
    slices
        .iter()
        .map(|&slice| {
            let members: Vec<&SampleId> =
                assignment.members(Cell { shard, slice }).iter().filter(|id| !deleted(id)).collect();
            SliceLineage { slice, samples: members.len(), sha256: digest_ids(members.into_iter()) }
        })
        .collect()
}
