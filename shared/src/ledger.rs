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

    /// Verifies ledger bytes that arrived some other way (the browser fetches the bundle's ledger): the intact
    /// records and what [`Ledger::open`] would repair. `name` names the source in errors.
    pub fn parse(name: &str, bytes: &[u8]) -> Result<(Vec<Action>, Recovery), LedgerError> {
        let scan = scan(Path::new(name), bytes)?;
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
mod tests;
