//! Raw data is forgotten too: the bundle's copy of the deletable split (the page's data) is purged of deleted
//! samples, and what remains stays verifiable sample by sample, without keeping anything that could tell a deleted
//! sample apart.
//!
//! Each sample has a *salted commitment*: sha256(`salt` ‖ `label` ‖ pixels) with a random 16-byte salt of its own.
//! The digest file (`data/deletable-digests.bin`, written by `trainer pretrain`) holds, per sample in id order,
//! its salt and its commitment (48 bytes); the manifest records the sha256 of the commitments alone
//! ([`crate::bundle::DataInfo::deletable_digests_sha256`]). Deleting a sample zeroes its pixels, its label and its
//! salt. The commitment stays, so the list still matches the manifest, but without the salt it no longer opens: a
//! plain hash of a deleted image would let anyone holding a candidate image test whether it was trained on.

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::dataset::{DataError, Dataset};
use crate::partition::hex;

/// Where `trainer export --format web` writes the page's data, relative to the bundle.
pub const DATA_DIR: &str = "data";
/// The per-sample salts and commitments of the deletable split, relative to the bundle.
pub const DIGESTS_FILE: &str = "data/deletable-digests.bin";
/// Bytes of one salt.
pub const SALT_LEN: usize = 16;
/// Bytes of one commitment.
pub const COMMITMENT_LEN: usize = 32;
/// Bytes per sample in the digest file: salt, then commitment.
pub const RECORD_LEN: usize = SALT_LEN + COMMITMENT_LEN;

/// The commitment to one sample under its salt.
pub fn commitment(salt: &[u8], image: &[u8], label: u8) -> [u8; COMMITMENT_LEN] {
    let mut hasher = Sha256::new();
    hasher.update(salt);
    hasher.update([label]);
    hasher.update(image);
    hasher.finalize().into()
}

/// The digest file of a split under `salts` (`SALT_LEN` bytes per sample, fresh randomness).
pub fn seal(data: &Dataset, salts: &[u8]) -> crate::Result<Vec<u8>> {
    if salts.len() != data.len() * SALT_LEN {
        return Err(Error::Data(DataError::Invalid(format!(
            "{} bytes of salt for {} samples",
            salts.len(),
            data.len()
        ))));
    }
    let mut out = Vec::with_capacity(data.len() * RECORD_LEN);
    for (i, salt) in salts.chunks_exact(SALT_LEN).enumerate() {
        out.extend_from_slice(salt);
        out.extend_from_slice(&commitment(salt, &data.sample_bytes(i), data.labels[i]));
    }
    Ok(out)
}

/// The sha256 (hex) the manifest records for a digest file: of its commitments only, so zeroing a deleted
/// sample's salt leaves it unchanged.
pub fn digests_sha256(digests: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for record in digests.chunks(RECORD_LEN) {
        hasher.update(record.get(SALT_LEN..).unwrap_or_default());
    }
    hex(&hasher.finalize())
}

/// Zeroes the pixels and label of every deleted sample (ids are indices; out-of-range ones are ignored).
pub fn purge(data: &mut Dataset, deleted: &HashSet<usize>) {
    for &i in deleted {
        if i < data.len() {
            data.erase(i);
        }
    }
}

/// Zeroes the salt of every deleted sample in a digest file.
pub fn purge_salts(digests: &mut [u8], deleted: &HashSet<usize>) {
    for &i in deleted {
        if let Some(salt) = digests.get_mut(i * RECORD_LEN..i * RECORD_LEN + SALT_LEN) {
            salt.fill(0);
        }
    }
}

/// Whether a sample holds nothing but zeros.
pub fn is_purged(data: &Dataset, index: usize) -> bool {
    index < data.len() && data.is_erased(index)
}

/// Checks a digest file alone: it is the one the manifest names, and every deleted sample's salt is gone.
pub fn verify_digests(
    file: &str,
    digests: &[u8],
    expected_sha256: &str,
    deleted: &HashSet<usize>,
) -> crate::Result<()> {
    let actual = digests_sha256(digests);
    if !digests.len().is_multiple_of(RECORD_LEN) || actual != expected_sha256 {
        let message = format!("{file}: the sample digests are not the ones the bundle was trained with");
        return Err(Error::Checksum { file: file.to_owned(), expected: expected_sha256.to_owned(), actual, message });
    }
    for &i in deleted {
        if digests.get(i * RECORD_LEN..i * RECORD_LEN + SALT_LEN).is_some_and(|s| s.iter().any(|&b| b != 0)) {
            return Err(Error::Data(DataError::Invalid(format!(
                "{file}: sample {i} was deleted but its salt is still stored"
            ))));
        }
    }
    Ok(())
}

/// Checks a (possibly purged) copy of the deletable split: the digest file must be the one the manifest names,
/// each kept sample must open its commitment, and each deleted sample must be purged, salt included (no copy of a
/// deleted sample may be kept). `file` names the data in errors.
pub fn verify(
    file: &str,
    data: &Dataset,
    digests: &[u8],
    expected_sha256: &str,
    deleted: &HashSet<usize>,
) -> crate::Result<()> {
    verify_digests(file, digests, expected_sha256, deleted)?;
    if digests.len() != data.len() * RECORD_LEN {
        return Err(Error::mismatch(format!(
            "{file}: {} samples but {} bytes of digests ({} expected)",
            data.len(),
            digests.len(),
            data.len() * RECORD_LEN
        )));
    }
    for (i, record) in digests.chunks_exact(RECORD_LEN).enumerate() {
        if deleted.contains(&i) {
            if !is_purged(data, i) {
                return Err(Error::Data(DataError::Invalid(format!(
                    "{file}: sample {i} was deleted but its pixels or label are still stored"
                ))));
            }
            continue;
        }
        let (salt, committed) = record.split_at(SALT_LEN);
        if commitment(salt, &data.sample_bytes(i), data.labels[i]) != committed {
            return Err(Error::mismatch(format!("{file}: sample {i} is not the sample the bundle was trained on")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data() -> Dataset {
        Dataset { rows: 2, cols: 2, classes: 10, pixels: (1..=12).collect(), labels: vec![3, 4, 5], text: None }
    }

    #[test]
    fn a_purged_copy_verifies_and_keeps_nothing_that_opens_the_deleted_sample() {
        let original = data();
        let salts: Vec<u8> = (0..3 * SALT_LEN as u8).map(|b| b.wrapping_mul(37).wrapping_add(1)).collect();
        let sealed = seal(&original, &salts).unwrap();
        let sha = digests_sha256(&sealed);
        let deleted: HashSet<usize> = [1].into();
        let mut purged = original.clone();
        purge(&mut purged, &deleted);
        let mut digests = sealed.clone();
        purge_salts(&mut digests, &deleted);
        assert_eq!(digests_sha256(&digests), sha, "purging salts keeps the manifest's digest");
        assert_eq!(purged.image(1), &[0, 0, 0, 0]);
        assert_eq!(purged.labels[1], 0);
        assert_eq!(purged.image(0), original.image(0));
        verify("d", &purged, &digests, &sha, &deleted).unwrap();
        // Nothing stored opens the deleted sample's commitment any more.
        let committed = &digests[RECORD_LEN + SALT_LEN..2 * RECORD_LEN];
        assert_ne!(commitment(&[0; SALT_LEN], original.image(1), original.labels[1]), committed);
        // The unpurged data or salt is refused once the sample is deleted.
        let err = verify("d", &original, &digests, &sha, &deleted).unwrap_err();
        assert!(matches!(err, Error::Data(DataError::Invalid(_))), "{err}");
        assert!(err.to_string().contains("sample 1 was deleted"), "{err}");
        assert!(verify("d", &purged, &sealed, &sha, &deleted).unwrap_err().to_string().contains("salt"));
        // A changed kept sample is refused.
        let mut forged = purged.clone();
        forged.pixels[0] ^= 1;
        assert!(verify("d", &forged, &digests, &sha, &deleted).unwrap_err().to_string().contains("sample 0"));
        // A sample purged without a deletion is refused (it is not the trained sample).
        let mut lost = original.clone();
        purge(&mut lost, &[2].into());
        assert!(verify("d", &lost, &sealed, &sha, &HashSet::new()).is_err());
        assert!(verify("d", &purged, &digests, "00", &deleted).is_err());
    }
}
