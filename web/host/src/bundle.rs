//! A bundle's files as the page and the retraining worker fetch them (feature `bundle`): each checked as it
//! arrives against what the manifest commits to, so neither side serves or trains on bytes the trainer did not
//! write, nor on a copy of a deleted sample.

use std::collections::HashSet;

use s3t::bundle::manifest::{MANIFEST_FILE, verify_bytes};
use s3t::bundle::samples::{self, DATA_DIR, DIGESTS_FILE};
use s3t::bundle::web::{self, TEXT_INDEX_FILE, TextExport};
use s3t::bundle::{Manifest, WeightFile};
use s3t::dataset::{self, Dataset};

use crate::fetch;

/// The manifest of the bundle at `base`, and its address (errors about it name that).
pub async fn manifest(base: &str) -> Result<(Manifest, String), String> {
    let url = format!("{base}/{MANIFEST_FILE}");
    let text = String::from_utf8(fetch::bytes(&url).await?).map_err(|e| format!("{url}: {e}"))?;
    let manifest = Manifest::from_json(&url, &text).map_err(|e| e.to_string())?;
    Ok((manifest, url))
}

/// A text bundle's export index ([`web`]), which names and checks the export's files.
pub async fn text_index(base: &str) -> Result<TextExport, String> {
    let url = format!("{base}/{TEXT_INDEX_FILE}");
    let text = String::from_utf8(fetch::bytes(&url).await?).map_err(|e| format!("{url}: {e}"))?;
    TextExport::from_json(&url, &text).map_err(|e| e.to_string())
}

/// A weight file of the bundle at `base`, checked against its manifest entry.
pub async fn weights(base: &str, file: &WeightFile) -> Result<Vec<u8>, String> {
    let bytes = fetch::bytes(&format!("{base}/{}", file.path)).await?;
    verify_bytes(file, &bytes).map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// A split the bundle's web export wrote (`data/NAME-{images-idx3,labels-idx1}-ubyte.gz`, or a text export's
/// split); images must have the shape the model reads. `pause` runs between the long steps (the page yields to
/// render there).
pub async fn split(base: &str, name: &str, manifest: &Manifest, pause: impl AsyncFn()) -> Result<Dataset, String> {
    if let Some(text) = &manifest.model.text {
        let url = format!("{base}/{}", web::split_file(name));
        let bytes = fetch::bytes(&url).await?;
        pause().await;
        return web::parse_split(&url, bytes, text.max_tokens, manifest.data.classes).map_err(|e| e.to_string());
    }
    let images_url = format!("{base}/{DATA_DIR}/{name}-images-idx3-ubyte.gz");
    let labels_url = format!("{base}/{DATA_DIR}/{name}-labels-idx1-ubyte.gz");
    let (images, labels) = (fetch::bytes(&images_url).await?, fetch::bytes(&labels_url).await?);
    // Decompressing a split is the longest piece of loading: a task of its own.
    pause().await;
    let classes = u8::try_from(manifest.model.vit.classes).unwrap_or(u8::MAX);
    let data = dataset::from_idx(&images_url, images, &labels_url, labels, classes).map_err(|e| e.to_string());
    pause().await;
    let data = data?;
    let side = manifest.model.vit.image_size;
    if data.rows as usize != side || data.cols as usize != side {
        return Err(format!("{images_url}: {}×{} images, but the model reads {side}×{side}", data.rows, data.cols));
    }
    Ok(data)
}

/// The bundle's deletable split, checked ([`verify_deletable`]).
pub async fn deletable(
    base: &str,
    manifest: &Manifest,
    purged: &HashSet<usize>,
    pause: impl AsyncFn(),
) -> Result<Dataset, String> {
    let data = split(base, "deletable", manifest, &pause).await?;
    verify_deletable(base, manifest, &data, purged).await?;
    pause().await;
    Ok(data)
}

/// Checks a copy of the deletable split against the bundle's per-sample commitments: each kept sample must be the
/// one the bundle was trained on, and each of `purged` (the ledger's deletions) must be gone from the copy.
pub async fn verify_deletable(
    base: &str,
    manifest: &Manifest,
    data: &Dataset,
    purged: &HashSet<usize>,
) -> Result<(), String> {
    let digests = fetch::bytes(&format!("{base}/{DIGESTS_FILE}")).await?;
    let file = format!("{base}/{DATA_DIR}/deletable");
    samples::verify(&file, data, &digests, &manifest.data.deletable_digests_sha256, purged).map_err(|e| e.to_string())
}
