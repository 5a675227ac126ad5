//! Crash test of the ledger: a writer process appends deletions and prints each id once `append` returned; it is
//! killed with SIGKILL at random moments. After every kill the ledger must open (a torn tail is allowed and
//! reported), and every id the writer acknowledged must be in it, in order.
//!
//! The 200-kill run is ignored by default: `cargo test -p s3t-tests --test ledger_crash -- --ignored`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::{Action, Ledger, Recovery, SampleId};

#[derive(Debug, Default)]
struct Summary {
    kills: usize,
    acknowledged: usize,
    records: usize,
    torn_tails: usize,
    reinitialised: usize,
}

fn ids(path: &Path, actions: &[Action]) -> Vec<u64> {
    actions
        .iter()
        .map(|a| match a {
            Action::Delete(SampleId::Int(n)) => *n,
            other => panic!("{}: unexpected action {other:?}", path.display()),
        })
        .collect()
}

/// Starts the writer `kills` times, killing it after a random 2–40 ms, and checks the ledger after each kill.
fn kill_loop(kills: usize, seed: u64) -> Summary {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("deletions.s3tl");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut summary = Summary::default();
    // What the ledger held after the previous kill.
    let mut durable: Vec<u64> = Vec::new();
    let started = Instant::now();
    for round in 0..kills {
        let start = durable.last().map_or(0, |n| n + 1);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger-writer"))
            .arg(&path)
            .arg(start.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start ledger-writer");
        let stdout = child.stdout.take().expect("piped stdout");
        let reader = thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map(|line| {
                    let line = line.expect("read the writer's stdout");
                    line.parse::<u64>().unwrap_or_else(|_| panic!("writer printed {line:?}"))
                })
                .collect::<Vec<u64>>()
        });
        thread::sleep(Duration::from_millis(rng.random_range(2..40)));
        child.kill().expect("kill ledger-writer");
        let status = child.wait().expect("wait for ledger-writer");
        // Every id the writer flushed before dying is still in the pipe.
        let acknowledged = reader.join().expect("stdout reader");
        summary.kills += 1;
        summary.acknowledged += acknowledged.len();
        #[cfg(unix)]
        let killed = std::os::unix::process::ExitStatusExt::signal(&status) == Some(9);
        #[cfg(not(unix))]
        let killed = !status.success();
        assert!(killed, "round {round}: the writer stopped on its own: {status}");

        if !path.exists() {
            // Killed before it created the file.
            assert!(acknowledged.is_empty(), "round {round}: acknowledged ids without a ledger file");
            continue;
        }
        let (read, would_repair) = Ledger::read(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let (ledger, recovery) = Ledger::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(recovery, would_repair, "round {round}: read and open disagree");
        assert_eq!(ledger.records(), read, "round {round}");
        match recovery {
            Recovery::Clean => {}
            Recovery::TornTail { .. } => summary.torn_tails += 1,
            Recovery::Reinitialised { .. } => summary.reinitialised += 1,
            Recovery::Created => panic!("round {round}: open reported a creation"),
        }
        drop(ledger);
        assert_eq!(Ledger::read(&path).unwrap_or_else(|e| panic!("round {round}: {e}")).1, Recovery::Clean);

        let ids = ids(&path, &read);
        assert!(ids.starts_with(&durable), "round {round}: records that were durable before this round are gone");
        let new = &ids[durable.len()..];
        assert!(
            new.iter().copied().eq(start..start + new.len() as u64),
            "round {round}: new records are not {start}, {}, …: {new:?}",
            start + 1
        );
        assert!(
            new.starts_with(&acknowledged),
            "round {round}: acknowledged ids {acknowledged:?} are not all in the ledger, which has {new:?}"
        );
        // The writer prints each id before it starts the next append, so at most one record is unacknowledged.
        assert!(
            new.len() <= acknowledged.len() + 1,
            "round {round}: {} records for {} acks",
            new.len(),
            acknowledged.len()
        );
        durable = ids;
    }
    summary.records = durable.len();
    eprintln!(
        "ledger crash (seed {seed:#x}): {} kills, {} acknowledged ids, {} records, {} torn tails, {} re-initialised, {:.1?}",
        summary.kills,
        summary.acknowledged,
        summary.records,
        summary.torn_tails,
        summary.reinitialised,
        started.elapsed()
    );
    summary
}

#[test]
fn acknowledged_deletions_survive_50_kills() {
    let summary = kill_loop(50, 0x5337_1ed9);
    assert!(summary.acknowledged > 0, "the writer never acknowledged a deletion: {summary:?}");
}

#[test]
#[ignore = "200 kills take a while; run with --ignored"]
fn acknowledged_deletions_survive_200_kills() {
    let summary = kill_loop(200, 0x5337_1ed9_0200);
    assert!(summary.acknowledged > 0, "the writer never acknowledged a deletion: {summary:?}");
}
