//! Reading and writing bundle files natively: atomic writes and checksummed reads.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{MANIFEST_FILE, Manifest, WeightFile};
use crate::Error;
use crate::partition::hex;

/// sha256 (hex) of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, fsync, rename, fsync of the
/// directory. A crash leaves either the old or the new content, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> crate::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(Error::io(dir, "create the directory"))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        #[cfg(unix)]
        File::open(dir)?.sync_all()?;
        Ok::<(), std::io::Error>(())
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path, "write")(e)
    })
}

/// Writes a weight file under the bundle and returns its manifest entry.
pub fn write_weights(bundle: &Path, relative: &str, bytes: &[u8]) -> crate::Result<WeightFile> {
    write_atomic(&bundle.join(relative), bytes)?;
    Ok(WeightFile::of(relative, bytes))
}

/// Reads a weight file and checks its size and sha256 against the manifest.
pub fn read_weights(bundle: &Path, file: &WeightFile) -> crate::Result<Vec<u8>> {
    let path = safe_join(bundle, &file.path)?;
    let bytes = fs::read(&path).map_err(Error::io(&path, "read"))?;
    let sha = sha256_hex(&bytes);
    if sha != file.sha256 {
        let message = format!(
            "{}: checksum mismatch: the manifest says sha256 {} but the file has {sha}",
            path.display(),
            file.sha256
        );
        return Err(Error::Checksum {
            file: path.display().to_string(),
            expected: file.sha256.clone(),
            actual: sha,
            message,
        });
    }
    Ok(bytes)
}

/// Joins a manifest path to the bundle directory, refusing absolute paths and `..` (a manifest must not make us
/// read or write outside its bundle).
pub fn safe_join(bundle: &Path, relative: &str) -> crate::Result<PathBuf> {
    let rel = Path::new(relative);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
        return Err(Error::format(bundle.display().to_string(), format!("weight path {relative:?} leaves the bundle")));
    }
    Ok(bundle.join(rel))
}

/// Loads and checks a bundle's manifest.
pub fn read_manifest(bundle: &Path) -> crate::Result<Manifest> {
    let path = bundle.join(MANIFEST_FILE);
    let size = fs::metadata(&path).map_err(Error::io(&path, "read"))?.len();
    if size > super::manifest::MAX_MANIFEST_BYTES as u64 {
        return Err(Error::format(
            path.display().to_string(),
            format!("{size} bytes is larger than a manifest can be"),
        ));
    }
    let text = fs::read_to_string(&path).map_err(Error::io(&path, "read"))?;
    Manifest::from_json(&path.display().to_string(), &text)
}

/// Writes a manifest atomically.
pub fn write_manifest(bundle: &Path, manifest: &Manifest) -> crate::Result<()> {
    write_atomic(&bundle.join(MANIFEST_FILE), manifest.to_json().as_bytes())
}

/// Verifies every weight file's checksum; the first mismatch is the error.
pub fn verify(bundle: &Path, manifest: &Manifest) -> crate::Result<()> {
    for file in manifest.weight_files() {
        read_weights(bundle, file)?;
    }
    Ok(())
}

/// The bundle's lock file: every command that changes a bundle holds it, from before it reads the manifest until
/// its last write, so two writers never act on each other's stale view.
pub const LOCK_FILE: &str = "bundle.lock";

/// An exclusive, blocking advisory lock on a bundle directory (released when dropped or when the process dies).
#[derive(Debug)]
pub struct BundleLock {
    _file: File,
}

impl BundleLock {
    /// Waits until no other process holds the bundle, then holds it. The directory must exist (a typo in a path
    /// must not create one).
    pub fn acquire(bundle: &Path) -> crate::Result<Self> {
        if !bundle.is_dir() {
            return Err(not_a_bundle(bundle));
        }
        lock_file(&bundle.join(LOCK_FILE)).map(|file| Self { _file: file })
    }
}

/// Where the lock of one shard's build lives: beside its progress record.
pub fn shard_lock_path(shard: u16) -> String {
    format!("parts/shard-{shard}.lock")
}

/// An exclusive, blocking lock on one shard's build. Builds of different shards run at once (a cluster's tasks);
/// two builds of one shard (a requeued task and its lingering predecessor) would write the same files. Whoever takes
/// both takes the shard locks first and the bundle lock second, so builders (which hold a shard lock and take the
/// bundle lock for their short reads and writes of shared records) never wait in a circle.
#[derive(Debug)]
pub struct ShardLock {
    _file: File,
}

impl ShardLock {
    /// Waits until no other process builds `shard` of the bundle, then holds it.
    pub fn acquire(bundle: &Path, shard: u16) -> crate::Result<Self> {
        if !bundle.is_dir() {
            return Err(not_a_bundle(bundle));
        }
        let path = bundle.join(shard_lock_path(shard));
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(Error::io(dir, "create"))?;
        }
        lock_file(&path).map(|file| Self { _file: file })
    }

    /// The locks of `shards`, taken in increasing order (one order for every process).
    pub fn acquire_all(bundle: &Path, shards: impl IntoIterator<Item = u16>) -> crate::Result<Vec<Self>> {
        let mut shards: Vec<u16> = shards.into_iter().collect();
        shards.sort_unstable();
        shards.dedup();
        shards.into_iter().map(|s| Self::acquire(bundle, s)).collect()
    }
}

/// A bundle path that is not a directory: a wrong `--bundle`, which must not create one.
fn not_a_bundle(bundle: &Path) -> Error {
    Error::config("bundle", format!("{}: not a bundle directory", bundle.display()))
}

/// Opens (creating) and exclusively locks `path`, waiting for another holder.
fn lock_file(path: &Path) -> crate::Result<File> {
    let file =
        fs::OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(Error::io(path, "open"))?;
    file.lock().map_err(Error::io(path, "lock"))?;
    Ok(file)
}

/// Removes a file the bundle no longer keeps and makes the removal durable; a file already gone is fine.
pub fn remove_durably(path: &Path) -> crate::Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            #[cfg(unix)]
            if let Some(dir) = path.parent() {
                File::open(dir).and_then(|d| d.sync_all()).map_err(Error::io(dir, "fsync"))?;
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(path, "remove")(e)),
    }
}
