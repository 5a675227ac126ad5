//! Project tasks behind `cargo xtask`: the one test command, benchmarks, and (later) the demo.
//!
//! `cargo xtask test` installs what the checks need when it is missing (the wasm32 target, rustfmt, clippy) and
//! then runs every check: formatting, clippy for the host and for wasm32, and the whole test suite.

use std::env;
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("help" | "--help" | "-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => Err(format!("unknown task `{other}` (try `cargo xtask help`)")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_help() {
    println!(
        "cargo xtask <task>\n\n\
         tasks:\n  \
         test [-- ARGS]   install what is missing, then fmt, clippy (host and wasm32) and every test;\n                   \
         ARGS go to `cargo test` (e.g. `-- --ignored` for the long crash run)\n  \
         bench [ARGS]     run the criterion benchmarks (`cargo bench -p s3t ARGS`)"
    );
}

fn test(extra: &[String]) -> Result<(), String> {
    ensure_components()?;
    ensure_target(WASM_TARGET)?;
    step("format", cargo(&["fmt", "--all", "--check"]))?;
    step("clippy (host)", cargo(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"]))?;
    step("clippy (wasm32)", cargo(&["clippy", "-p", "s3t", "--target", WASM_TARGET, "--", "-D", "warnings"]))?;
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    step("tests", cargo(&args))?;
    println!("xtask: all checks passed");
    Ok(())
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench", "-p", "s3t"];
    args.extend(extra.iter().map(String::as_str));
    step("benchmarks", cargo(&args))
}

fn cargo(args: &[&str]) -> Command {
    let mut cmd = Command::new(env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args);
    cmd
}

fn step(name: &str, mut cmd: Command) -> Result<(), String> {
    println!("xtask: == {name}");
    let status = cmd.status().map_err(|e| format!("{name}: could not start {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{name} failed ({status})")) }
}

fn rustup_output(args: &[&str]) -> Result<String, String> {
    let out = Command::new("rustup").args(args).output().map_err(|e| format!("rustup is needed: {e}"))?;
    if !out.status.success() {
        return Err(format!("rustup {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_target(target: &str) -> Result<(), String> {
    let installed = rustup_output(&["target", "list", "--installed"])?;
    if installed.lines().any(|l| l.trim() == target) {
        return Ok(());
    }
    step(&format!("install target {target}"), {
        let mut cmd = Command::new("rustup");
        cmd.args(["target", "add", target]);
        cmd
    })
}

fn ensure_components() -> Result<(), String> {
    let installed = rustup_output(&["component", "list", "--installed"])?;
    for component in ["rustfmt", "clippy"] {
        if !installed.lines().any(|l| l.starts_with(component)) {
            step(&format!("install {component}"), {
                let mut cmd = Command::new("rustup");
                cmd.args(["component", "add", component]);
                cmd
            })?;
        }
    }
    Ok(())
}
