//! Crash-test writer: appends `Delete(n)` for n = start, start + 1, … to a ledger forever, printing each id on
//! stdout only after `append` returned, so every printed id is an acknowledged (durable) deletion. The
//! `ledger_crash` test kills it at random moments and checks that every printed id survived.
//!
//! Usage: `ledger-writer JOURNAL START`

use std::io::Write;
use std::process::ExitCode;

use s3t::{Action, Ledger, SampleId};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(start)) = (args.get(1), args.get(2).and_then(|s| s.parse::<u64>().ok())) else {
        eprintln!("usage: ledger-writer JOURNAL START");
        return ExitCode::from(2);
    };
    let mut ledger = match Ledger::open_or_create(path) {
        Ok((ledger, _recovery)) => ledger,
        Err(error) => {
            eprintln!("ledger-writer: {error}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    for n in start.. {
        if let Err(error) = ledger.append(&Action::Delete(SampleId::Int(n))) {
            eprintln!("ledger-writer: {error}");
            return ExitCode::FAILURE;
        }
        // The reader went away: nothing left to acknowledge to.
        if writeln!(stdout, "{n}").and_then(|()| stdout.flush()).is_err() {
            return ExitCode::SUCCESS;
        }
    }
    ExitCode::SUCCESS
}
