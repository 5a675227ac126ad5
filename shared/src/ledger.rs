//! Ledger: the durable, checksummed, append-only deletion journal.
//!
//! The ledger journals the [`Action`]s applied to a trained model, so the serving state can always be rebuilt with
//! [`Router::replay`](crate::route::Router::replay). [`Ledger::append`] returns only once the record is on disk, so
//! an acknowledged deletion survives a crash.
//!
//! File format (all integers little-endian):
//!
//! - header: the 8 magic bytes `S3TLEDGR` ‖ u32 format version ([`VERSION`]);
//! - then records: u32 payload length ‖ u32 crc32 of the 4 length bytes ‖ u32 crc32 of (length bytes ‖ payload)
//!   ‖ payload, where the payload is the JSON of one [`Action`] and is at most [`MAX_RECORD_LEN`] bytes.
//!
//! The length has its own checksum because a torn write never damages it (appends leave a prefix of the record):
//! without it, a flipped bit in the length of a middle record could point past the end of the file and look like a
//! torn final record, and opening would silently cut acknowledged records.
//!
//! Opening verifies every record:
//!
//! - a torn final record (an incomplete header, a payload shorter than its length, or a record ending exactly at the
//!   end of the file whose checksum fails) is cut off and reported as [`Recovery::TornTail`];
//! - so is a tail of zero bytes, which some file systems leave when a crash lands between growing the file and
//!   writing its data (it cannot hold a record: a zero length does not match its zero checksum);
//! - a file shorter than the header holding a prefix of it (or only zero bytes) was interrupted while being created
//!   and is re-initialised as an empty ledger ([`Recovery::Reinitialised`]);
//! - any other defect is [`LedgerError::Corrupt`] and the file is left untouched, since cutting it would lose
//!   acknowledged records.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::route::Action;

/// The first 8 bytes of every ledger.
pub const MAGIC: [u8; 8] = *b"S3TLEDGR";
/// The format version this build reads and writes.
pub const VERSION: u32 = 1;
/// Length of the file header: magic and version.
pub const HEADER_LEN: u64 = 12;
/// Length of a record header: payload length, its checksum and the record checksum.
pub const RECORD_HEADER_LEN: u64 = 12;
/// Largest payload accepted; an action's JSON is tens of bytes, so a larger length is damage, not data.
pub const MAX_RECORD_LEN: u32 = 1 << 20;

const HEADER: [u8; 12] = {
    let mut header = [0u8; 12];
    let version = VERSION.to_le_bytes();
    let mut i = 0;
    while i < 8 {
        header[i] = MAGIC[i];
        i += 1;
    }
    while i < 12 {
        header[i] = version[i - 8];
        i += 1;
    }
    header
};

#[derive(Debug, Error)]
pub enum LedgerError {
    #[error("ledger {}: cannot {op}: {error}", path.display())]
    Io { path: PathBuf, op: &'static str, error: io::Error },
    #[error("ledger {}: the file already exists", path.display())]
    Exists { path: PathBuf },
    #[error(
        "ledger {}: not an S3T ledger: it starts with {found:02x?}, expected the magic \"S3TLEDGR\" and version {VERSION}",
        path.display()
    )]
    NotALedger { path: PathBuf, found: Vec<u8> },
    #[error("ledger {}: format version {version} is not supported (this build reads version {VERSION})", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("ledger {}: corrupt record at byte offset {offset}: {reason}; the file was not modified", path.display())]
    Corrupt { path: PathBuf, offset: u64, reason: Defect },
    #[error("ledger {}: an action encodes to {len} bytes, more than the maximum record of {MAX_RECORD_LEN}", path.display())]
    RecordTooLarge { path: PathBuf, len: usize },
    #[error("ledger {}: cannot encode the action: {error}", path.display())]
    Encode { path: PathBuf, error: serde_json::Error },
    #[error("ledger {}: an earlier append failed; reopen the ledger to continue from what is on disk", path.display())]
    Poisoned { path: PathBuf },
    #[error("ledger {}: another process has it open for appending", path.display())]
    Locked { path: PathBuf },
}

/// What is wrong with a record.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Defect {
    #[error("only {available} of the {RECORD_HEADER_LEN} record header bytes are present")]
    IncompleteHeader { available: u64 },
    #[error("the length field does not match its checksum (stored {stored:#010x}, computed {computed:#010x})")]
    LengthChecksum { stored: u32, computed: u32 },
    #[error("the record length {len} exceeds the maximum of {MAX_RECORD_LEN}")]
    TooLong { len: u32 },
    #[error("the payload should be {len} bytes but only {available} are present")]
    IncompletePayload { len: u32, available: u64 },
    #[error("checksum mismatch over the {len}-byte payload (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { len: u32, stored: u32, computed: u32 },
    #[error("the checksum matches but the payload is not an action: {message}")]
    Payload { message: String },
    #[error("{len} zero bytes: space the file system allocated but the crash kept from being written")]
    ZeroFilled { len: u64 },
}

/// What opening a ledger found and repaired. [`Ledger::read`] reports what opening would repair, without doing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Every record verified; nothing to repair.
    Clean,
    /// [`Ledger::open_or_create`] created a new, empty ledger.
    Created,
    /// The file held `found` bytes of an interrupted creation and was re-initialised as an empty ledger.
    Reinitialised { found: u64 },
    /// A torn final record starting at byte `offset` was cut off, dropping `dropped` bytes.
    TornTail { offset: u64, dropped: u64, defect: Defect },
}

impl Recovery {
    /// Whether the file needed (or, from [`Ledger::read`], needs) a repair.
    pub fn repaired(&self) -> bool {
        matches!(self, Recovery::Reinitialised { .. } | Recovery::TornTail { .. })
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recovery::Clean => f.write_str("every record verified"),
            Recovery::Created => f.write_str("created a new, empty ledger"),
            Recovery::Reinitialised { found } => {
                write!(f, "found {found} bytes of an interrupted creation; re-initialised as an empty ledger")
            }
            Recovery::TornTail { offset, dropped, defect } => {
                write!(f, "dropped a torn final record at byte offset {offset} ({dropped} bytes): {defect}")
            }
        }
    }
}

/// An open ledger: the verified records in memory and the file, positioned for appends.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: File,
    records: Vec<Action>,
    /// End of the last acknowledged record: where the next one is written.
    end: u64,
    /// Set when an append failed: the file's tail is unknown until the ledger is reopened and verified.
    poisoned: bool,
}

impl Ledger {
    /// Creates an empty ledger; fails with [`LedgerError::Exists`] if the file exists. The header and the directory
    /// entry are on disk when this returns.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, LedgerError> {
        let path = path.as_ref();
        let mut file = OpenOptions::new().read(true).write(true).create_new(true).open(path).map_err(|error| {
            if error.kind() == io::ErrorKind::AlreadyExists {
                LedgerError::Exists { path: path.to_owned() }
            } else {
                io_error(path, "create the file", error)
            }
        })?;
        lock(path, &file)?;
        write_header(path, &mut file)?;
        Ok(Self { path: path.to_owned(), file, records: Vec::new(), end: HEADER_LEN, poisoned: false })
    }

    /// Opens an existing ledger for appending, verifying every record and repairing a torn tail or an interrupted
    /// creation (reported in the [`Recovery`]). Any other damage is an error and leaves the file untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<(Self, Recovery), LedgerError> {
        let path = path.as_ref();
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| io_error(path, "open", e))?;
        Self::load(path, file)
    }

    /// Opens the ledger, creating it ([`Recovery::Created`]) if the file does not exist.
    pub fn open_or_create(path: impl AsRef<Path>) -> Result<(Self, Recovery), LedgerError> {
        let path = path.as_ref();
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(file) => Self::load(path, file),
            Err(error) if error.kind() == io::ErrorKind::NotFound => match Self::create(path) {
                Ok(ledger) => Ok((ledger, Recovery::Created)),
                // Another process created it between the two calls.
                Err(LedgerError::Exists { .. }) => Self::open(path),
                Err(error) => Err(error),
            },
            Err(error) => Err(io_error(path, "open", error)),
        }
    }

    /// Verifies a ledger without modifying it: the intact records and what [`Ledger::open`] would repair.
    pub fn read(path: impl AsRef<Path>) -> Result<(Vec<Action>, Recovery), LedgerError> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| io_error(path, "open", e))?;
        let data = read_file(path, &mut file)?;
        let scan = scan(path, &data)?;
        Ok((scan.records, scan.recovery))
    }

    fn load(path: &Path, mut file: File) -> Result<(Self, Recovery), LedgerError> {
        lock(path, &file)?;
        let data = read_file(path, &mut file)?;
        let scan = scan(path, &data)?;
        match scan.recovery {
            Recovery::Clean | Recovery::Created => {}
            Recovery::Reinitialised { .. } => write_header(path, &mut file)?,
            Recovery::TornTail { offset, .. } => {
                file.set_len(offset).map_err(|e| io_error(path, "cut the torn final record off", e))?;
                file.sync_all().map_err(|e| io_error(path, "fsync", e))?;
            }
        }
        let ledger = Self { path: path.to_owned(), file, records: scan.records, end: scan.end, poisoned: false };
        Ok((ledger, scan.recovery))
    }

    /// Appends an action and returns its record index once it is on disk (written and fsynced). On failure the
    /// in-memory records are unchanged, the partial record is cut off if possible, and further appends fail with
    /// [`LedgerError::Poisoned`] until the ledger is reopened.
    pub fn append(&mut self, action: &Action) -> Result<u64, LedgerError> {
        self.append_with(action, |file, record| {
            // One write call, so an interrupted append leaves a prefix of the record.
            file.write_all(record)?;
            file.sync_data()
        })
    }

    fn append_with(
        &mut self,
        action: &Action,
        write: impl FnOnce(&mut File, &[u8]) -> io::Result<()>,
    ) -> Result<u64, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned { path: self.path.clone() });
        }
        let payload =
            serde_json::to_vec(action).map_err(|error| LedgerError::Encode { path: self.path.clone(), error })?;
        let record = encode_record(&payload)
            .ok_or_else(|| LedgerError::RecordTooLarge { path: self.path.clone(), len: payload.len() })?;
        let written = self.file.seek(SeekFrom::Start(self.end)).and_then(|_| write(&mut self.file, &record));
        if let Err(error) = written {
            self.poisoned = true;
            // Best effort: the error below is what matters, and reopening cuts a torn tail anyway.
            let _ = self.file.set_len(self.end).and_then(|()| self.file.sync_all());
            return Err(io_error(&self.path, "append a record", error));
        }
        self.end += record.len() as u64;
        self.records.push(action.clone());
        Ok(self.records.len() as u64 - 1)
    }

    /// The acknowledged actions, oldest first.
    pub fn records(&self) -> &[Action] {
        &self.records
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Size of the file in bytes: the end of the last acknowledged record.
    pub fn byte_len(&self) -> u64 {
        self.end
    }
}

/// One appender per file: two writers would interleave records and each would trust a stale view of the end.
/// The advisory lock is released when the file is closed (also when the process dies).
fn lock(path: &Path, file: &File) -> Result<(), LedgerError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(std::fs::TryLockError::WouldBlock) => Err(LedgerError::Locked { path: path.to_owned() }),
        Err(std::fs::TryLockError::Error(error)) => Err(io_error(path, "lock", error)),
    }
}

fn io_error(path: &Path, op: &'static str, error: io::Error) -> LedgerError {
    LedgerError::Io { path: path.to_owned(), op, error }
}

/// Writes the header at the start of the file and makes it and the directory entry durable.
fn write_header(path: &Path, file: &mut File) -> Result<(), LedgerError> {
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.write_all(&HEADER))
        .and_then(|()| file.set_len(HEADER_LEN))
        .map_err(|e| io_error(path, "write the header", e))?;
    file.sync_all().map_err(|e| io_error(path, "fsync", e))?;
    sync_parent(path).map_err(|e| io_error(path, "fsync the parent directory", e))
}

/// A new file is durable only once its directory entry is.
#[cfg(unix)]
fn sync_parent(path: &Path) -> io::Result<()> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(parent)?.sync_all()
}

/// Directories cannot be opened and fsynced portably outside unix.
#[cfg(not(unix))]
fn sync_parent(_path: &Path) -> io::Result<()> {
    Ok(())
}

fn read_file(path: &Path, file: &mut File) -> Result<Vec<u8>, LedgerError> {
    let mut data = Vec::new();
    // The header first, so a large file that is not a ledger is rejected without reading it all.
    Read::take(&mut *file, HEADER_LEN).read_to_end(&mut data).map_err(|e| io_error(path, "read", e))?;
    check_header(path, &data)?;
    file.read_to_end(&mut data).map_err(|e| io_error(path, "read", e))?;
    Ok(data)
}

/// Whether the header is complete (`true`) or an interrupted creation (`false`); any other header is an error.
fn check_header(path: &Path, data: &[u8]) -> Result<bool, LedgerError> {
    let head = &data[..data.len().min(HEADER.len())];
    if head.len() < HEADER.len() && (HEADER.starts_with(head) || head.iter().all(|&b| b == 0)) {
        return Ok(false);
    }
    if head.len() == HEADER.len() && head.iter().all(|&b| b == 0) && data.len() == HEADER.len() {
        return Ok(false);
    }
    if head.len() < HEADER.len() || head[..8] != MAGIC {
        return Err(LedgerError::NotALedger { path: path.to_owned(), found: head.to_vec() });
    }
    let version = u32::from_le_bytes([head[8], head[9], head[10], head[11]]);
    if version != VERSION {
        return Err(LedgerError::UnsupportedVersion { path: path.to_owned(), version });
    }
    Ok(true)
}

/// The record bytes for a payload, or `None` if it is too long.
fn encode_record(payload: &[u8]) -> Option<Vec<u8>> {
    let len = u32::try_from(payload.len()).ok().filter(|&len| len <= MAX_RECORD_LEN)?;
    let len_bytes = len.to_le_bytes();
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN as usize + payload.len());
    record.extend_from_slice(&len_bytes);
    record.extend_from_slice(&crc32fast::hash(&len_bytes).to_le_bytes());
    record.extend_from_slice(&record_checksum(len_bytes, payload).to_le_bytes());
    record.extend_from_slice(payload);
    Some(record)
}

fn record_checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Parses the record at the start of `rest`: the action and the record's length in bytes.
fn parse_record(rest: &[u8]) -> Result<(Action, usize), Defect> {
    let header_len = RECORD_HEADER_LEN as usize;
    let Some(header) = rest.get(..header_len) else {
        return Err(Defect::IncompleteHeader { available: rest.len() as u64 });
    };
    let field = |i: usize| [header[i], header[i + 1], header[i + 2], header[i + 3]];
    let len_bytes = field(0);
    let len = u32::from_le_bytes(len_bytes);
    let (len_check, stored) = (u32::from_le_bytes(field(4)), u32::from_le_bytes(field(8)));
    let computed = crc32fast::hash(&len_bytes);
    if len_check != computed {
        return Err(Defect::LengthChecksum { stored: len_check, computed });
    }
    if len > MAX_RECORD_LEN {
        return Err(Defect::TooLong { len });
    }
    let record_len = header_len + len as usize;
    let Some(payload) = rest.get(header_len..record_len) else {
        return Err(Defect::IncompletePayload { len, available: (rest.len() - header_len) as u64 });
    };
    let computed = record_checksum(len_bytes, payload);
    if stored != computed {
        return Err(Defect::Checksum { len, stored, computed });
    }
    let action = serde_json::from_slice(payload).map_err(|e| Defect::Payload { message: e.to_string() })?;
    Ok((action, record_len))
}

struct Scan {
    records: Vec<Action>,
    /// End of the last intact record.
    end: u64,
    recovery: Recovery,
}

/// Verifies a whole ledger file's bytes.
fn scan(path: &Path, data: &[u8]) -> Result<Scan, LedgerError> {
    if !check_header(path, data)? {
        let recovery = Recovery::Reinitialised { found: data.len() as u64 };
        return Ok(Scan { records: Vec::new(), end: HEADER_LEN, recovery });
    }
    let mut records = Vec::new();
    let mut pos = HEADER.len();
    while pos < data.len() {
        let rest = &data[pos..];
        let defect = match parse_record(rest) {
            Ok((action, len)) => {
                records.push(action);
                pos += len;
                continue;
            }
            Err(defect) => defect,
        };
        let (defect, torn) = if rest.iter().all(|&b| b == 0) {
            (Defect::ZeroFilled { len: rest.len() as u64 }, true)
        } else {
            let torn = match defect {
                Defect::IncompleteHeader { .. } | Defect::IncompletePayload { .. } => true,
                Defect::Checksum { len, .. } => RECORD_HEADER_LEN as usize + len as usize == rest.len(),
                Defect::LengthChecksum { .. } | Defect::TooLong { .. } | Defect::Payload { .. } => false,
                Defect::ZeroFilled { .. } => true,
            };
            (defect, torn)
        };
        let offset = pos as u64;
        if !torn {
            return Err(LedgerError::Corrupt { path: path.to_owned(), offset, reason: defect });
        }
        let recovery = Recovery::TornTail { offset, dropped: rest.len() as u64, defect };
        return Ok(Scan { records, end: offset, recovery });
    }
    Ok(Scan { records, end: pos as u64, recovery: Recovery::Clean })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::SampleId;
    use proptest::prelude::*;
    use std::fs;

    fn actions() -> Vec<Action> {
        vec![
            Action::Delete(SampleId::Int(7)),
            Action::Delete(SampleId::Str("cat-0042.jpg".into())),
            Action::Retrained { shard: 3 },
            Action::Delete(SampleId::Int(u64::MAX)),
        ]
    }

    fn record_len(action: &Action) -> u64 {
        RECORD_HEADER_LEN + serde_json::to_vec(action).unwrap().len() as u64
    }

    /// Byte offset where each record starts.
    fn offsets(actions: &[Action]) -> Vec<u64> {
        actions
            .iter()
            .scan(HEADER_LEN, |pos, a| {
                let start = *pos;
                *pos += record_len(a);
                Some(start)
            })
            .collect()
    }

    fn write_ledger(path: &Path, actions: &[Action]) -> Vec<u8> {
        let mut ledger = Ledger::create(path).unwrap();
        for (i, action) in actions.iter().enumerate() {
            assert_eq!(ledger.append(action).unwrap(), i as u64);
        }
        fs::read(path).unwrap()
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let bytes = write_ledger(&path, &actions());
        assert_eq!(&bytes[..8], b"S3TLEDGR");
        assert_eq!(bytes.len() as u64, HEADER_LEN + actions().iter().map(record_len).sum::<u64>());

        let (ledger, recovery) = Ledger::open(&path).unwrap();
        assert_eq!(recovery, Recovery::Clean);
        assert_eq!(ledger.records(), actions());
        assert_eq!(ledger.byte_len(), bytes.len() as u64);
        assert_eq!(Ledger::read(&path).unwrap(), (actions(), Recovery::Clean));
    }

    #[test]
    fn reopen_and_continue_appending() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let (mut ledger, recovery) = Ledger::open_or_create(&path).unwrap();
        assert_eq!(recovery, Recovery::Created);
        assert_eq!(ledger.append(&all[0]).unwrap(), 0);
        assert_eq!(ledger.append(&all[1]).unwrap(), 1);
        drop(ledger);
        let (mut ledger, recovery) = Ledger::open_or_create(&path).unwrap();
        assert_eq!(recovery, Recovery::Clean);
        assert_eq!(ledger.append(&all[2]).unwrap(), 2);
        assert_eq!(ledger.append(&all[3]).unwrap(), 3);
        drop(ledger);
        let (ledger, _) = Ledger::open(&path).unwrap();
        assert_eq!(ledger.records(), all);
        assert_eq!(ledger.len(), 4);
    }

    #[test]
    fn a_second_appender_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("locked.ledger");
        let first = Ledger::create(&path).unwrap();
        assert!(matches!(Ledger::open(&path), Err(LedgerError::Locked { .. })));
        assert!(Ledger::read(&path).is_ok(), "read-only verification does not need the lock");
        drop(first);
        assert!(Ledger::open(&path).is_ok());
    }

    #[test]
    fn create_refuses_an_existing_file_and_open_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let err = Ledger::open(&path).unwrap_err();
        assert!(matches!(&err, LedgerError::Io { error, .. } if error.kind() == io::ErrorKind::NotFound));
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
        let ledger = Ledger::create(&path).unwrap();
        assert!(ledger.is_empty());
        let err = Ledger::create(&path).unwrap_err();
        assert!(matches!(err, LedgerError::Exists { .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_torn_last_record_is_cut_at_every_offset() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let full = write_ledger(&path, &all);
        let last = *offsets(&all).last().unwrap();
        for cut in last..full.len() as u64 {
            fs::write(&path, &full[..cut as usize]).unwrap();
            let dropped = cut - last;
            let (records, recovery) = Ledger::read(&path).unwrap();
            assert_eq!(records, all[..3]);
            assert_eq!(fs::read(&path).unwrap(), full[..cut as usize], "read must not modify the file");
            if dropped == 0 {
                assert_eq!(recovery, Recovery::Clean);
                continue;
            }
            let Recovery::TornTail { offset, dropped: reported, defect } = &recovery else {
                panic!("cut at {cut}: expected a torn tail, got {recovery:?}");
            };
            assert_eq!((*offset, *reported), (last, dropped), "cut at {cut}");
            let expected_defect = if dropped < RECORD_HEADER_LEN {
                Defect::IncompleteHeader { available: dropped }
            } else {
                Defect::IncompletePayload {
                    len: (record_len(&all[3]) - RECORD_HEADER_LEN) as u32,
                    available: dropped - RECORD_HEADER_LEN,
                }
            };
            assert_eq!(*defect, expected_defect, "cut at {cut}");

            let (mut ledger, opened) = Ledger::open(&path).unwrap();
            assert_eq!(opened, recovery);
            assert_eq!(ledger.records(), &all[..3]);
            assert_eq!(fs::read(&path).unwrap(), full[..last as usize], "the torn record is cut off");
            ledger.append(&all[3]).unwrap();
            drop(ledger);
            assert_eq!(fs::read(&path).unwrap(), full, "appending after the repair rewrites the same bytes");
            assert_eq!(Ledger::open(&path).unwrap().1, Recovery::Clean);
        }
    }

    #[test]
    fn a_bad_checksum_in_the_last_record_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let full = write_ledger(&path, &all);
        let last = *offsets(&all).last().unwrap() as usize;
        // The record checksum and every payload byte; a damaged length is corruption (tested below).
        for i in last + 8..full.len() {
            let mut bytes = full.clone();
            bytes[i] ^= 0x20;
            fs::write(&path, &bytes).unwrap();
            let (ledger, recovery) = Ledger::open(&path).unwrap();
            assert!(
                matches!(recovery, Recovery::TornTail { offset, defect: Defect::Checksum { .. }, .. } if offset == last as u64),
                "byte {i}: {recovery:?}"
            );
            assert_eq!(ledger.records(), &all[..3]);
            assert_eq!(fs::read(&path).unwrap(), full[..last]);
        }
    }

    #[test]
    fn a_flipped_byte_before_the_last_record_is_corruption_and_the_file_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let full = write_ledger(&path, &all);
        let starts = offsets(&all);
        // Every byte of the records before the last one, plus the length fields of the last one.
        let last = *starts.last().unwrap() as usize;
        for i in (HEADER_LEN as usize..last).chain(last..last + 8) {
            let mut bytes = full.clone();
            bytes[i] ^= 0x01;
            fs::write(&path, &bytes).unwrap();
            let record = starts.iter().rposition(|&s| s as usize <= i).unwrap();
            for result in [Ledger::open(&path).map(|(l, r)| (l.records().to_vec(), r)), Ledger::read(&path)] {
                let err = result.unwrap_err();
                let LedgerError::Corrupt { offset, .. } = &err else { panic!("byte {i}: {err}") };
                assert_eq!(*offset, starts[record], "byte {i}");
                let message = err.to_string();
                assert!(message.contains(&path.display().to_string()), "{message}");
                assert!(message.contains(&format!("offset {}", starts[record])), "{message}");
                assert_eq!(fs::read(&path).unwrap(), bytes, "byte {i}: the file must not be modified");
            }
        }
    }

    #[test]
    fn a_checksummed_payload_that_is_not_an_action_is_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let mut bytes = write_ledger(&path, &actions()[..1]);
        bytes.extend(encode_record(br#"{"forget":1}"#).unwrap());
        fs::write(&path, &bytes).unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(matches!(err, LedgerError::Corrupt { reason: Defect::Payload { .. }, .. }), "{err}");
        assert_eq!(fs::read(&path).unwrap(), bytes);
    }

    #[test]
    fn an_oversized_length_is_corruption() {
        let path = Path::new("deletions.s3tl");
        let mut bytes = HEADER.to_vec();
        let len = (MAX_RECORD_LEN + 1).to_le_bytes();
        bytes.extend(len);
        bytes.extend(crc32fast::hash(&len).to_le_bytes());
        bytes.extend([0xAB; 4]);
        let err = scan(path, &bytes).err().unwrap();
        assert!(matches!(err, LedgerError::Corrupt { offset: 12, reason: Defect::TooLong { .. }, .. }), "{err}");
    }

    #[test]
    fn a_zero_filled_tail_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let mut bytes = write_ledger(&path, &all);
        let end = bytes.len() as u64;
        bytes.extend([0u8; 100]);
        fs::write(&path, &bytes).unwrap();
        let (ledger, recovery) = Ledger::open(&path).unwrap();
        assert_eq!(recovery, Recovery::TornTail { offset: end, dropped: 100, defect: Defect::ZeroFilled { len: 100 } });
        assert_eq!(ledger.records(), all);
        assert_eq!(fs::metadata(&path).unwrap().len(), end);
    }

    #[test]
    fn an_interrupted_creation_is_reinitialised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let prefixes = (0..HEADER.len()).map(|n| HEADER[..n].to_vec());
        for partial in prefixes.chain([vec![0u8; 5], vec![0u8; 12]]) {
            fs::write(&path, &partial).unwrap();
            let expected = Recovery::Reinitialised { found: partial.len() as u64 };
            assert_eq!(Ledger::read(&path).unwrap(), (vec![], expected.clone()));
            assert_eq!(fs::read(&path).unwrap(), partial);
            let (mut ledger, recovery) = Ledger::open_or_create(&path).unwrap();
            assert_eq!(recovery, expected);
            assert_eq!(fs::read(&path).unwrap(), HEADER);
            ledger.append(&actions()[0]).unwrap();
            drop(ledger);
            assert_eq!(Ledger::read(&path).unwrap(), (actions()[..1].to_vec(), Recovery::Clean));
        }
    }

    #[test]
    fn wrong_magic_or_version_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        for contents in [&b"{\"deletions\": [1, 2, 3]}"[..], b"S3TLEDGX\x01\0\0\0", b"hello", b"S3TLEDGR\x01\0\x01"] {
            fs::write(&path, contents).unwrap();
            let err = Ledger::open(&path).unwrap_err();
            assert!(matches!(err, LedgerError::NotALedger { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()), "{err}");
            assert_eq!(fs::read(&path).unwrap(), contents);
        }
        let mut contents = HEADER.to_vec();
        contents[8] = 2;
        fs::write(&path, &contents).unwrap();
        let err = Ledger::open(&path).unwrap_err();
        assert!(matches!(err, LedgerError::UnsupportedVersion { version: 2, .. }), "{err}");
        assert!(err.to_string().contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_failed_append_is_not_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deletions.s3tl");
        let all = actions();
        let mut ledger = Ledger::create(&path).unwrap();
        ledger.append(&all[0]).unwrap();
        let before = fs::read(&path).unwrap();

        let huge = Action::Delete(SampleId::Str("x".repeat(MAX_RECORD_LEN as usize)));
        let err = ledger.append(&huge).unwrap_err();
        assert!(matches!(err, LedgerError::RecordTooLarge { .. }), "{err}");
        assert_eq!(ledger.records(), &all[..1]);
        assert_eq!(fs::read(&path).unwrap(), before);

        // A write that fails halfway, as on a full disk.
        let err = ledger
            .append_with(&all[1], |file, record| {
                file.write_all(&record[..record.len() / 2])?;
                Err(io::Error::other("injected failure"))
            })
            .unwrap_err();
        assert!(err.to_string().contains("injected failure"), "{err}");
        assert_eq!(ledger.records(), &all[..1]);
        assert_eq!(fs::read(&path).unwrap(), before, "the partial record is cut off");
        let err = ledger.append(&all[1]).unwrap_err();
        assert!(matches!(err, LedgerError::Poisoned { .. }), "{err}");
        assert_eq!(ledger.records(), &all[..1]);
        drop(ledger);

        let (mut ledger, recovery) = Ledger::open(&path).unwrap();
        assert_eq!(recovery, Recovery::Clean);
        ledger.append(&all[1]).unwrap();
        assert_eq!(Ledger::read(&path).unwrap().0, &all[..2]);
    }

    fn sample_id() -> impl Strategy<Value = SampleId> {
        prop_oneof![any::<u64>().prop_map(SampleId::Int), any::<String>().prop_map(SampleId::Str)]
    }

    fn action() -> impl Strategy<Value = Action> {
        prop_oneof![sample_id().prop_map(Action::Delete), any::<u16>().prop_map(|shard| Action::Retrained { shard })]
    }

    fn encode_all(actions: &[Action]) -> Vec<u8> {
        let mut bytes = HEADER.to_vec();
        for a in actions {
            bytes.extend(encode_record(&serde_json::to_vec(a).unwrap()).unwrap());
        }
        bytes
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn random_actions_round_trip_through_a_file(actions in prop::collection::vec(action(), 0..12)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("deletions.s3tl");
            let bytes = write_ledger(&path, &actions);
            prop_assert_eq!(&bytes, &encode_all(&actions));
            let (ledger, recovery) = Ledger::open(&path).unwrap();
            prop_assert_eq!(recovery, Recovery::Clean);
            prop_assert_eq!(ledger.records(), &actions[..]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]
        #[test]
        fn any_cut_keeps_the_records_before_it(actions in prop::collection::vec(action(), 1..8), cut in any::<prop::sample::Index>()) {
            let bytes = encode_all(&actions);
            let cut = HEADER.len() + cut.index(bytes.len() - HEADER.len() + 1);
            let scan = scan(Path::new("deletions.s3tl"), &bytes[..cut]).unwrap();
            let kept = offsets(&actions).iter().zip(&actions).filter(|(s, a)| *s + record_len(a) <= cut as u64).count();
            prop_assert_eq!(&scan.records, &actions[..kept]);
            prop_assert_eq!(scan.recovery.repaired(), scan.end != cut as u64);
        }
    }
}
