//! The sha256 check of a file whose digest and size a record names (a manifest's weight files, an export's index),
//! burn-free so that every part of the page shares it.

use sha2::{Digest, Sha256};

/// Checks `bytes` (named `path` in the error) against the sha256 and size that `source` records for them;
/// `actual` is their sha256 when the caller hashed them already (in pieces), else they are hashed here.
pub fn check(
    path: &str,
    source: &str,
    sha256: &str,
    size: u64,
    bytes: &[u8],
    actual: Option<String>,
) -> crate::Result<()> {
    let sha = actual.unwrap_or_else(|| crate::partition::hex(&Sha256::digest(bytes)));
    if sha != sha256 || bytes.len() as u64 != size {
        let message = format!(
            "{path}: checksum mismatch: {source} says sha256 {sha256} ({size} bytes) but the file has {sha} ({} bytes)",
            bytes.len()
        );
        return Err(crate::Error::Checksum {
            file: path.to_owned(),
            expected: sha256.to_owned(),
            actual: sha,
            message,
        });
    }
    Ok(())
}
