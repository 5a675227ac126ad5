//! Byte-level mutation of seed inputs: bit flips, byte and word overwrites, inserted, duplicated and deleted
//! ranges, truncation, splices with another seed, and (for text formats) numbers replaced by boundary values.
//! Edits are proptest values, so a failing input shrinks to the fewest edits that still fail.

use proptest::prelude::*;
use proptest::sample::Index;

/// Where an edit lands: anywhere, or (half the time) in the first 32 bytes, where the headers that decide how the
/// rest is read live (IDX dimensions, ledger magic and first record header, a JSON document's first fields).
#[derive(Clone, Debug)]
pub struct Pos {
    head: bool,
    index: Index,
}

impl Pos {
    /// A position in `0..len` (`None` for empty input).
    fn within(&self, len: usize) -> Option<usize> {
        let span = if self.head { len.min(32) } else { len };
        (span > 0).then(|| self.index.index(span))
    }

    /// A position in `0..=len`, for insertions and cuts.
    fn between(&self, len: usize) -> usize {
        let span = if self.head { len.min(32) } else { len };
        self.index.index(span + 1)
    }
}

#[derive(Clone, Debug)]
pub enum Edit {
    Flip {
        at: Pos,
        bit: u8,
    },
    Set {
        at: Pos,
        byte: u8,
    },
    /// A boundary value as a 4-byte word (IDX is big-endian, the ledger little-endian).
    Word {
        at: Pos,
        value: u32,
        big_endian: bool,
    },
    Insert {
        at: Pos,
        bytes: Vec<u8>,
    },
    Duplicate {
        from: Pos,
        len: usize,
        at: Pos,
    },
    Delete {
        at: Pos,
        len: usize,
    },
    Truncate {
        at: Pos,
    },
    /// This input up to `at`, then another seed from `from` on.
    Splice {
        at: Pos,
        seed: Index,
        from: Pos,
    },
    /// The number (or word) at or after `at` replaced by a boundary value.
    Number {
        at: Pos,
        text: &'static str,
    },
}

const WORDS: &[u32] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    28,
    0x7f,
    0x80,
    0xff,
    0x100,
    784,
    0x801,
    0x803,
    4096,
    4097,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x100_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "-1",
    "-0",
    "0.5",
    "1e308",
    "1e999",
    "-1e999",
    "64",
    "65",
    "255",
    "256",
    "4095",
    "4096",
    "4097",
    "65535",
    "65536",
    "4294967295",
    "4294967296",
    "9223372036854775807",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775809",
    "null",
    "true",
    "\"\"",
    "[]",
    "{}",
    "[0]",
    "\"%\"",
    ",",
    "&",
    "%zz",
    "%ff",
];

/// Bytes that matter to some format: JSON, CSV and link punctuation, gzip and IDX magic, line breaks.
const BYTES: &[u8] = b"\0\x01\x03\x08\x1f\x7f\x80\x8b\xff\n\r\t \",:;[]{}%&=#-.0159eE";

fn pos() -> impl Strategy<Value = Pos> {
    (any::<bool>(), any::<Index>()).prop_map(|(head, index)| Pos { head, index })
}

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![any::<u8>(), proptest::sample::select(BYTES)]
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (pos(), 0u8..8).prop_map(|(at, bit)| Edit::Flip { at, bit }),
        3 => (pos(), byte()).prop_map(|(at, byte)| Edit::Set { at, byte }),
        2 => (pos(), proptest::sample::select(WORDS), any::<bool>())
            .prop_map(|(at, value, big_endian)| Edit::Word { at, value, big_endian }),
        2 => (pos(), prop::collection::vec(byte(), 1..16)).prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (pos(), 1usize..256, pos()).prop_map(|(from, len, at)| Edit::Duplicate { from, len, at }),
        2 => (pos(), 1usize..64).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => pos().prop_map(|at| Edit::Truncate { at }),
        1 => (pos(), any::<Index>(), pos()).prop_map(|(at, seed, from)| Edit::Splice { at, seed, from }),
        3 => (pos(), proptest::sample::select(NUMBERS)).prop_map(|(at, text)| Edit::Number { at, text }),
    ]
}

/// A few edits mostly (so that much of the input stays valid and the checks behind the first one are reached),
/// sometimes many.
pub fn edits() -> BoxedStrategy<Vec<Edit>> {
    prop_oneof![
        3 => prop::collection::vec(edit(), 1..3),
        1 => prop::collection::vec(edit(), 3..10),
    ]
    .boxed()
}

/// Applies the edits in order. Every edit is total: on input too short for it, it does what it can.
pub fn apply(seed: &[u8], edits: &[Edit], seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for edit in edits {
        let len = out.len();
        match edit {
            Edit::Flip { at, bit } => {
                if let Some(i) = at.within(len) {
                    out[i] ^= 1 << bit;
                }
            }
            Edit::Set { at, byte } => {
                if let Some(i) = at.within(len) {
                    out[i] = *byte;
                }
            }
            Edit::Word { at, value, big_endian } => {
                let word = if *big_endian { value.to_be_bytes() } else { value.to_le_bytes() };
                let i = at.between(len.saturating_sub(4));
                let end = (i + 4).min(len);
                out.splice(i..end, word);
            }
            Edit::Insert { at, bytes } => {
                let i = at.between(len);
                out.splice(i..i, bytes.iter().copied());
            }
            Edit::Duplicate { from, len: n, at } => {
                if let Some(i) = from.within(len) {
                    let piece = out[i..(i + n).min(len)].to_vec();
                    let j = at.between(len);
                    out.splice(j..j, piece);
                }
            }
            Edit::Delete { at, len: n } => {
                if let Some(i) = at.within(len) {
                    out.drain(i..(i + n).min(len));
                }
            }
            Edit::Truncate { at } => out.truncate(at.between(len)),
            Edit::Splice { at, seed, from } => {
                if !seeds.is_empty() {
                    let other = &seeds[seed.index(seeds.len())];
                    let i = at.between(len);
                    let j = from.between(other.len());
                    out.truncate(i);
                    out.extend_from_slice(&other[j..]);
                }
            }
            Edit::Number { at, text } => {
                let i = at.between(len);
                let start = out[i..].iter().position(|b| b.is_ascii_digit()).map_or(len, |k| i + k);
                let end = out[start..]
                    .iter()
                    .position(|b| !(b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E')))
                    .map_or(len, |k| start + k);
                out.splice(start..end, text.bytes());
            }
        }
    }
    out
}

/// Mutations of the seeds ([`edits`] of one seed), and now and then bytes with no seed at all.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    assert!(!seeds.is_empty(), "a fuzz target needs at least one seed");
    let seeds = std::sync::Arc::new(seeds);
    let from_seed = (any::<Index>(), edits()).prop_map(move |(seed, edits)| {
        let base = &seeds[seed.index(seeds.len())];
        apply(base, &edits, &seeds)
    });
    prop_oneof![
        12 => from_seed,
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Bytes as a short escaped literal, for a report.
pub fn show(bytes: &[u8]) -> String {
    let text: String = bytes.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
    let cut: String = text.chars().take(4000).collect();
    if cut.len() < text.len() { format!("b\"{cut}\"… ({} bytes)", bytes.len()) } else { format!("b\"{cut}\"") }
}

#[test]
fn edits_stay_in_bounds() {
    // Every edit on empty and one-byte input: total functions, no panics.
    let seeds = vec![Vec::new(), vec![1]];
    let runner_config = ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() };
    proptest::test_runner::TestRunner::new(runner_config)
        .run(&(prop::collection::vec(edit(), 0..8), 0usize..2), |(edits, s)| {
            let _ = apply(&seeds[s], &edits, &seeds);
            Ok(())
        })
        .expect("edits are total");
}
