//! Ledger tests: round trips, torn tails at every offset, corruption, locking, failed appends.

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
