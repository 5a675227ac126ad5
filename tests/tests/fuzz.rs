//! Fuzzing of every parser of untrusted bytes: IDX and CSV data files, gzip input, the bundle manifest, the
//! pretraining record, the shard part files, the deletion ledger and the page's saved link state.
//!
//! Inputs are byte-level mutations of valid seeds ([`seeds`], [`mutate`]) and plain random bytes. Every case
//! checks that the parser does not panic, that a rejection is one non-empty line naming the source it was given
//! (the trainer prints it as `error: …`, the page shows it in one line), and that an accepted input is usable
//! (sizes agree, a manifest's plan builds, a link state re-encodes to itself, …).
//!
//! `cargo test --test fuzz` runs 10,000 cases per parser (fixed seed, so CI is reproducible); `cargo xtask fuzz`
//! runs the ignored `long::*` tests: `FUZZ_CASES` cases per parser (default 1,000,000) from a fresh random seed
//! (`FUZZ_SEED` replays one), counting panics and bad messages instead of stopping at the first.

// The crate root is this file, so its modules' folder is named explicitly.
#[path = "fuzz/mutate.rs"]
mod mutate;
#[path = "fuzz/seeds.rs"]
mod seeds;

use std::any::Any;
use std::cell::RefCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};
use s3t::bundle::{Manifest, PretrainRecord, ShardPart};
use s3t::dataset::{self, Splits};
use s3t::{Ledger, Recovery};

use mutate::{Edit, edits, mutated, show};

/// Cases per parser in the ordinary test run.
const CI_CASES: u32 = 10_000;
/// The ordinary run's proptest seed.
const CI_SEED: u64 = 0x5337_f022;

const IMAGES_FILE: &str = "fuzz/images-idx3-ubyte";
const LABELS_FILE: &str = "fuzz/labels-idx1-ubyte";
const CSV_FILE: &str = "fuzz/data.csv";
const MANIFEST_FILE: &str = "fuzz/manifest.json";
const PRETRAIN_FILE: &str = "fuzz/pretrain.json";
const PART_FILE: &str = "fuzz/parts/shard-1.json";
const LEDGER_FILE: &str = "fuzz/deletions.ledger";

// ---------------------------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------------------------

/// How a run is set up: the ordinary run stops at the first failure and shrinks it; the long run counts them all.
struct Mode {
    cases: u32,
    seed: u64,
    stop_at_first: bool,
}

impl Mode {
    fn ci() -> Self {
        Mode { cases: CI_CASES, seed: CI_SEED, stop_at_first: true }
    }

    fn long() -> Self {
        let cases = std::env::var("FUZZ_CASES").ok().and_then(|v| v.trim().replace('_', "").parse().ok());
        let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| v.trim().parse().ok()).unwrap_or_else(|| {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            now.as_nanos() as u64 ^ u64::from(std::process::id())
        });
        Mode { cases: cases.unwrap_or(1_000_000), seed, stop_at_first: false }
    }
}

thread_local! {
    /// Where the last panic on this thread happened, and (for the first one) its stack.
    static LAST_PANIC: RefCell<(String, Option<String>)> = const { RefCell::new((String::new(), None)) };
}

/// Records each panic's location (and the first one's stack) for the report, then prints as usual.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            let location = info.location().map(ToString::to_string).unwrap_or_default();
            LAST_PANIC.with(|last| {
                let mut last = last.borrow_mut();
                last.0 = location;
                if last.1.is_none() {
                    last.1 = Some(std::backtrace::Backtrace::force_capture().to_string());
                }
            });
            default(info);
        }));
    });
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".into());
    let location = LAST_PANIC.with(|last| last.borrow().0.clone());
    format!("panicked at {location}: {message}")
}

/// Runs `check` on `mode.cases` inputs of `strategy`; fails the test with the (shrunk, in the ordinary run) input
/// of the first panic or bad result.
fn fuzz<S: Strategy>(
    name: &str,
    mode: Mode,
    strategy: S,
    describe: impl Fn(&S::Value) -> String,
    check: impl Fn(&S::Value) -> Outcome,
) {
    install_panic_hook();
    let started = Instant::now();
    let (cases, accepted) = (AtomicU64::new(0), AtomicU64::new(0));
    let (panics, bad) = (AtomicU64::new(0), AtomicU64::new(0));
    let first: Mutex<Option<String>> = Mutex::new(None);
    let config = Config {
        cases: mode.cases,
        rng_seed: RngSeed::Fixed(mode.seed),
        failure_persistence: None,
        // Shrinking a failure stops after this many steps: enough for a few edits of a few KB.
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let result = TestRunner::new(config).run(&strategy, |input| {
        cases.fetch_add(1, Ordering::Relaxed);
        let failure = match panic::catch_unwind(AssertUnwindSafe(|| check(&input))) {
            Ok(Ok(ok)) => {
                accepted.fetch_add(u64::from(ok), Ordering::Relaxed);
                return Ok(());
            }
            Ok(Err(message)) => {
                bad.fetch_add(1, Ordering::Relaxed);
                message
            }
            Err(payload) => {
                panics.fetch_add(1, Ordering::Relaxed);
                panic_text(payload.as_ref())
            }
        };
        let failure = format!("{failure}\n  input: {}", describe(&input));
        if mode.stop_at_first {
            return Err(TestCaseError::fail(failure));
        }
        let mut first = first.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(failure);
        Ok(())
    });
    let (cases, accepted, panics, bad) =
        (cases.into_inner(), accepted.into_inner(), panics.into_inner(), bad.into_inner());
    println!(
        "fuzz {name}: {cases} cases ({accepted} accepted), {panics} panics, {bad} bad results, seed {}, {:.1} s",
        mode.seed,
        started.elapsed().as_secs_f64()
    );
    let stack = LAST_PANIC.with(|last| last.borrow().1.clone()).unwrap_or_default();
    match result {
        Err(TestError::Fail(reason, _)) => panic!("fuzz {name}: seed {}: {reason}\n{stack}", mode.seed),
        Err(TestError::Abort(reason)) => panic!("fuzz {name}: aborted: {reason}"),
        Ok(()) => {}
    }
    if let Some(failure) = first.into_inner().unwrap_or_else(|e| e.into_inner()) {
        panic!(
            "fuzz {name}: {panics} panics and {bad} bad results in {cases} cases (seed {}); the first: {failure}\n{stack}",
            mode.seed
        );
    }
}

/// `Ok(true)`: accepted and usable; `Ok(false)`: rejected as it should be; `Err`: what is wrong.
type Outcome = Result<bool, String>;

/// A rejection must be one non-empty line that names the source.
fn rejection(message: &str, sources: &[&str]) -> Outcome {
    if message.trim().is_empty() || message.contains(['\n', '\r']) {
        return Err(format!("the error is not one non-empty line: {message:?}"));
    }
    if !sources.is_empty() && !sources.iter().any(|s| message.contains(s)) {
        return Err(format!("the error does not name {sources:?}: {message:?}"));
    }
    Ok(false)
}

/// An accepted input passes when `condition` holds.
fn ensure(condition: bool, what: impl FnOnce() -> String) -> Outcome {
    if condition { Ok(true) } else { Err(what()) }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------------------------------
// Data files: IDX, gzip, CSV
// ---------------------------------------------------------------------------------------------------------------

fn idx_images_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::idx_images())
}

fn check_idx_images(bytes: &[u8]) -> Outcome {
    match dataset::parse_idx_images(IMAGES_FILE, bytes) {
        Ok((count, rows, cols, pixels)) => ensure(
            u128::from(count) * u128::from(rows) * u128::from(cols) == pixels.len() as u128 && rows > 0 && cols > 0,
            || format!("accepted {count} images of {rows}×{cols} with {} pixels", pixels.len()),
        ),
        Err(e) => rejection(&e.to_string(), &[IMAGES_FILE]),
    }
}

fn idx_labels_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::idx_labels())
}

fn check_idx_labels(bytes: &[u8]) -> Outcome {
    match dataset::parse_idx_labels(LABELS_FILE, bytes) {
        Ok(labels) => {
            ensure(labels.len() + 8 == bytes.len(), || format!("{} labels from {} bytes", labels.len(), bytes.len()))
        }
        Err(e) => rejection(&e.to_string(), &[LABELS_FILE]),
    }
}

fn gzip_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::gzip_streams())
}

fn check_gunzip(bytes: &[u8]) -> Outcome {
    match dataset::maybe_gunzip(IMAGES_FILE, bytes.to_vec()) {
        Ok(out) if !bytes.starts_with(&[0x1f, 0x8b]) => ensure(out == bytes, || "plain input was changed".into()),
        Ok(out) => ensure(out.len() as u64 <= dataset::MAX_DECOMPRESSED_BYTES, || "over the limit".into()),
        Err(e) => rejection(&e.to_string(), &[IMAGES_FILE]),
    }
}

/// How one file of an IDX pair reaches the parser.
#[derive(Clone, Copy, Debug)]
enum Packing {
    /// Mutated, uncompressed.
    Raw,
    /// Compressed, then mutated: mostly failed gzip checksums.
    MutatedGzip,
    /// Mutated, then compressed: the IDX parser behind gzip sees the damage.
    GzipOfMutated,
}

fn packing() -> impl Strategy<Value = Packing> {
    prop_oneof![Just(Packing::Raw), Just(Packing::MutatedGzip), Just(Packing::GzipOfMutated)]
}

fn pack(seed: &[u8], edits: &[Edit], packing: Packing, splices: &[Vec<u8>]) -> Vec<u8> {
    match packing {
        Packing::Raw => mutate::apply(seed, edits, splices),
        Packing::MutatedGzip => mutate::apply(&seeds::gzip(seed), edits, splices),
        Packing::GzipOfMutated => seeds::gzip(&mutate::apply(seed, edits, splices)),
    }
}

/// A matching image and label file (the real pair or the tiny one), one or both mutated, each packed its own way.
fn idx_pair_input() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = seeds::idx_images().into_iter().zip(seeds::idx_labels()).collect();
    let splices = [seeds::idx_images(), seeds::idx_labels()].concat();
    let no_edits = || Just(Vec::new()).boxed();
    let edit_sides = prop_oneof![(edits(), edits()), (edits(), no_edits()), (no_edits(), edits()),];
    (any::<Index>(), edit_sides, packing(), packing()).prop_map(move |(pair, (image_edits, label_edits), pi, pl)| {
        let (images, labels) = &pairs[pair.index(pairs.len())];
        (pack(images, &image_edits, pi, &splices), pack(labels, &label_edits, pl, &splices))
    })
}

fn describe_pair(input: &(Vec<u8>, Vec<u8>)) -> String {
    format!("images {} labels {}", show(&input.0), show(&input.1))
}

fn check_from_idx(input: &(Vec<u8>, Vec<u8>)) -> Outcome {
    match dataset::from_idx(IMAGES_FILE, input.0.clone(), LABELS_FILE, input.1.clone(), 10) {
        Ok(d) => {
            ensure(
                !d.is_empty()
                    && d.pixels.len() == d.len() * d.pixels_per_image()
                    && d.pixels_per_image() > 0
                    && d.labels.iter().all(|&l| l < d.classes),
                || format!("accepted {} images of {}×{} with {} pixels", d.len(), d.rows, d.cols, d.pixels.len()),
            )?;
            let _ = d.image(d.len() - 1);
            Splits::by_position(d).map(|_| true).map_err(|e| format!("accepted data does not split: {e}"))
        }
        Err(e) => rejection(&e.to_string(), &[IMAGES_FILE, LABELS_FILE]),
    }
}

/// CSV text with the image shape the caller expects: mostly the seed's own, sometimes one the loader refuses.
fn csv_input() -> impl Strategy<Value = (Vec<u8>, u32, u32)> {
    let seeds = seeds::csv();
    let all: Vec<Vec<u8>> = seeds.iter().map(|s| s.0.clone()).collect();
    let odd_shapes = [(0, 28), (28, 0), (65536, 65536), (u32::MAX, u32::MAX), (1, 1), (4096, 4097)];
    (
        any::<Index>(),
        edits(),
        any::<bool>(),
        prop_oneof![9 => Just(None), 1 => proptest::sample::select(odd_shapes.to_vec()).prop_map(Some)],
    )
        .prop_map(move |(seed, edits, gzip, shape)| {
            let (base, rows, cols) = &seeds[seed.index(seeds.len())];
            let bytes = mutate::apply(base, &edits, &all);
            let (rows, cols) = shape.unwrap_or((*rows, *cols));
            (if gzip { seeds::gzip(&bytes) } else { bytes }, rows, cols)
        })
}

fn describe_csv(input: &(Vec<u8>, u32, u32)) -> String {
    format!("{}×{} {}", input.1, input.2, show(&input.0))
}

fn check_csv(input: &(Vec<u8>, u32, u32)) -> Outcome {
    let (bytes, rows, cols) = input;
    match dataset::from_csv(CSV_FILE, bytes, *rows, *cols, 10) {
        Ok(d) => ensure(
            !d.is_empty()
                && (d.rows, d.cols) == (*rows, *cols)
                && d.pixels.len() == d.len() * d.pixels_per_image()
                && d.labels.iter().all(|&l| l < 10),
            || format!("accepted {} images of {}×{} with {} pixels", d.len(), d.rows, d.cols, d.pixels.len()),
        ),
        Err(e) => rejection(&e.to_string(), &[CSV_FILE]),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Bundle files: manifest, pretraining record, shard parts, ledger
// ---------------------------------------------------------------------------------------------------------------

fn manifest_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::manifests())
}

fn check_manifest(bytes: &[u8]) -> Outcome {
    let m = match Manifest::from_json(MANIFEST_FILE, &text(bytes)) {
        Ok(m) => m,
        Err(e) => return rejection(&e.to_string(), &[MANIFEST_FILE]),
    };
    let plan = m.plan().map_err(|e| format!("an accepted manifest has no plan: {e}"))?;
    let _ = m.sisa_plan();
    let files = m.weight_files().count();
    let expected = 1 + m.nodes.iter().map(Vec::len).sum::<usize>() + m.sisa.iter().map(Vec::len).sum::<usize>();
    ensure(files == expected, || format!("{files} weight files, expected {expected}"))?;
    // Routing needs the partition of the deletable split; bounded here to keep each case fast.
    if m.data.deletable <= 10_000
        && let Ok(assignment) = m.assignment()
    {
        let _ = m.router(assignment, &plan);
    }
    Manifest::from_json(MANIFEST_FILE, &m.to_json()).map(|_| true).map_err(|e| format!("does not read back: {e}"))
}

fn pretrain_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::pretrain_records())
}

fn check_pretrain(bytes: &[u8]) -> Outcome {
    let record = match PretrainRecord::from_json(PRETRAIN_FILE, &text(bytes)) {
        Ok(r) => r,
        Err(e) => return rejection(&e.to_string(), &[PRETRAIN_FILE]),
    };
    let model = &record.model;
    model.validate().map_err(|e| format!("accepted an invalid model: {e}"))?;
    ensure(model.vit.tokens() > 0 && model.vit.patch_dim() > 0, || format!("a model without tokens: {model:?}"))?;
    ensure((1..=model.groups).all(|g| !model.blocks_of_group(g).is_empty()), || format!("an empty group: {model:?}"))?;
    let json = serde_json::to_string(&record).map_err(|e| format!("does not serialise: {e}"))?;
    PretrainRecord::from_json(PRETRAIN_FILE, &json).map(|_| true).map_err(|e| format!("does not read back: {e}"))
}

fn part_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::shard_parts())
}

fn check_part(bytes: &[u8]) -> Outcome {
    let part = match ShardPart::from_json(PART_FILE, &text(bytes)) {
        Ok(p) => p,
        Err(e) => return rejection(&e.to_string(), &[PART_FILE]),
    };
    ensure(
        part.nodes.iter().all(|n| n.shard == part.shard) && part.sisa.iter().all(|s| s.shard == part.shard),
        || "entries of another shard".into(),
    )?;
    let json = serde_json::to_string(&part).map_err(|e| format!("does not serialise: {e}"))?;
    ShardPart::from_json(PART_FILE, &json).map(|_| true).map_err(|e| format!("does not read back: {e}"))
}

/// A ledger of records whose (mutated) payloads carry correct checksums, so the payload parser is reached.
fn rechecksummed_ledger() -> impl Strategy<Value = Vec<u8>> {
    let payloads = seeds::ledger_payloads();
    let header = seeds::ledgers().swap_remove(0);
    prop::collection::vec((any::<Index>(), edits()), 0..6).prop_map(move |records| {
        let mut file = header.clone();
        for (payload, edits) in records {
            let payload = mutate::apply(&payloads[payload.index(payloads.len())], &edits, &payloads);
            let len = (payload.len() as u32).to_le_bytes();
            let mut checksum = crc32fast::Hasher::new();
            checksum.update(&len);
            checksum.update(&payload);
            file.extend_from_slice(&len);
            file.extend_from_slice(&crc32fast::hash(&len).to_le_bytes());
            file.extend_from_slice(&checksum.finalize().to_le_bytes());
            file.extend_from_slice(&payload);
        }
        file
    })
}

fn ledger_input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => mutated(seeds::ledgers()), 1 => rechecksummed_ledger()]
}

fn check_ledger(bytes: &[u8]) -> Outcome {
    let (actions, recovery) = match Ledger::parse(LEDGER_FILE, bytes) {
        Ok(r) => r,
        Err(e) => return rejection(&e.to_string(), &[LEDGER_FILE]),
    };
    let len = bytes.len() as u64;
    match recovery {
        Recovery::TornTail { offset, dropped, .. } => {
            ensure(offset + dropped == len, || format!("torn tail at {offset} + {dropped} in {len} bytes"))
        }
        Recovery::Reinitialised { found } => {
            ensure(found == len && actions.is_empty(), || format!("reinitialised {found} of {len} bytes"))
        }
        Recovery::Clean | Recovery::Created => Ok(true),
    }?;
    for action in &actions {
        serde_json::to_vec(action).map_err(|e| format!("an accepted action does not serialise: {e}"))?;
    }
    Ok(true)
}

// ---------------------------------------------------------------------------------------------------------------
// The page's saved state
// ---------------------------------------------------------------------------------------------------------------

fn link_input() -> impl Strategy<Value = Vec<u8>> {
    mutated(seeds::links())
}

fn check_link(bytes: &[u8]) -> Outcome {
    match s3t::link::decode_saved(&text(bytes), seeds::LINK_TAG) {
        Ok(None) => Ok(true),
        Ok(Some(saved)) => {
            let ids = &saved.deleted;
            let unique: std::collections::HashSet<_> = ids.iter().collect();
            ensure(unique.len() == ids.len(), || "an id twice".into())?;
            ensure(saved.retrained.iter().all(|r| r.after <= ids.len()), || {
                "a retrain after the last deletion".into()
            })?;
            ensure(saved.retrained.windows(2).all(|w| w[0].after <= w[1].after), || "retrains out of order".into())?;
            let again = s3t::link::decode_saved(&s3t::link::encode_saved(seeds::LINK_TAG, &saved), seeds::LINK_TAG);
            ensure(again.as_ref() == Ok(&Some(saved.clone())), || format!("{saved:?} re-encodes to {again:?}"))
        }
        // `decode` is given no source name: the page prefixes its own.
        Err(e) => rejection(&e.0, &[]),
    }
}

// ---------------------------------------------------------------------------------------------------------------
// The tests: `ci::*` in every run, `long::*` on demand (`cargo xtask fuzz`)
// ---------------------------------------------------------------------------------------------------------------

macro_rules! targets {
    ($($name:ident: $input:expr, $describe:expr, $check:expr;)*) => {
        mod ci {
            use super::*;
            $(
                #[test]
                fn $name() {
                    fuzz(stringify!($name), Mode::ci(), $input, $describe, $check);
                }
            )*
        }

        mod long {
            use super::*;
            $(
                #[test]
                #[ignore = "a million cases: `cargo xtask fuzz`"]
                fn $name() {
                    fuzz(stringify!($name), Mode::long(), $input, $describe, $check);
                }
            )*
        }
    };
}

targets! {
    idx_images: idx_images_input(), |b| show(b), |b| check_idx_images(b);
    idx_labels: idx_labels_input(), |b| show(b), |b| check_idx_labels(b);
    gunzip: gzip_input(), |b| show(b), |b| check_gunzip(b);
    from_idx: idx_pair_input(), describe_pair, check_from_idx;
    csv: csv_input(), describe_csv, check_csv;
    manifest: manifest_input(), |b| show(b), |b| check_manifest(b);
    pretrain_record: pretrain_input(), |b| show(b), |b| check_pretrain(b);
    shard_part: part_input(), |b| show(b), |b| check_part(b);
    ledger: ledger_input(), |b| show(b), |b| check_ledger(b);
    link: link_input(), |b| show(b), |b| check_link(b);
}
