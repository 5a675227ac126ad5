//! Project tasks behind `cargo xtask`.
//!
//! - `cargo xtask test`: installs what is missing (rustfmt, clippy, the wasm32 target, trunk, wasm-bindgen-cli,
//!   Chromium, npm packages), then runs every check: formatting, clippy (host and wasm32), the Rust test suite, the
//!   web build and the headless-Chromium tests, and that the README and `docs/` name only files, tasks, commands
//!   and flags that exist.
//! - `cargo xtask demo`: builds the default bundle and the reviews bundle (MiniLM on Rotten Tomatoes) if they are
//!   missing, builds the web app and serves both on 127.0.0.1; with `--measure`, times the page on that bundle in headless Chromium instead of serving on.
//! - `cargo xtask fuzz`: the long fuzzing run of every parser of untrusted bytes (`tests/tests/fuzz.rs`).

mod docs;
mod serve;
mod tools;

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("demo") => demo(&args[1..]),
        Some("browser") => browser_tests(),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz(&args[1..]),
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
         test [-- ARGS]   install what is missing, then fmt, clippy (host and wasm32), every Rust test, the web\n                   \
         build and the browser tests; ARGS go to `cargo test` (e.g. `-- --ignored` for the long runs)\n  \
         browser          only the web build and the browser tests\n  \
         demo [--port N]  build the image and review bundles if missing and the web app, serve on 127.0.0.1 (default 8080)\n  \
         demo --measure   the same, then time the page on the demo bundle in headless Chromium (software WebGPU)\n  \
         demo --screenshot  the same, then write the README's screenshot of the page (docs/screenshot.png)\n  \
         bench [ARGS]     run the criterion benchmarks (`cargo bench -p s3t ARGS`)\n  \
         fuzz [FILTER]    fuzz every parser of untrusted bytes: FUZZ_CASES cases each (default 1,000,000), from a\n                   \
         random seed (FUZZ_SEED replays one); FILTER picks parsers (e.g. `manifest`)"
    );
}

/// The workspace root (xtask lives one level below it). `cargo run` sets `CARGO_MANIFEST_DIR` for the checkout it
/// runs in; the compile-time value is only a fallback, because checkouts sharing a `CARGO_TARGET_DIR` share the
/// `xtask` binary too, and it must not act on the checkout that happened to build it.
fn root() -> PathBuf {
    let manifest_dir =
        env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

fn target_dir() -> PathBuf {
    env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root().join("target"))
}

pub fn run(program: &str, args: &[&str]) -> Command {
    let program =
        if program == "cargo" { env::var("CARGO").unwrap_or_else(|_| "cargo".into()) } else { program.into() };
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(root());
    cmd
}

pub fn step(name: &str, mut cmd: Command) -> Result<(), String> {
    println!("xtask: == {name}");
    let status = cmd.status().map_err(|e| format!("{name}: could not start {cmd:?}: {e}"))?;
    if status.success() { Ok(()) } else { Err(format!("{name} failed ({status})")) }
}

fn test(extra: &[String]) -> Result<(), String> {
    tools::rust_components()?;
    step("format", run("cargo", &["fmt", "--all", "--check"]))?;
    // `trainer/gpu-tests` adds the GPU kernel tests to the targets clippy checks (they run in `browser_tests`).
    step(
        "clippy (host)",
        run(
            "cargo",
            &["clippy", "--workspace", "--all-targets", "--features", "trainer/gpu-tests", "--", "-D", "warnings"],
        ),
    )?;
    // Each wasm32 crate with the core and host crates it is built with, and their features as trunk builds it:
    // checked together, cargo would unify the three crates' features and hide what one of them alone gets wrong.
    // The core and host crates are named so that clippy lints them too (it lints only the packages selected).
    for krate in ["s3t-web", "s3t-worker", "s3t-tokenizer"] {
        let mut args = vec!["clippy", "-p", krate, "-p", "s3t", "-p", "s3t-host", "--target", tools::WASM_TARGET];
        args.extend(["--profile", "web", "--", "-D", "warnings"]);
        step(&format!("clippy (wasm32, {krate})"), run("cargo", &args))?;
    }
    let mut args = vec!["test", "--workspace"];
    args.extend(extra.iter().map(String::as_str));
    step("tests", run("cargo", &args))?;
    // The core crate without the model: the page's reducers, the guard and the ledger compile and pass without burn.
    step("tests of the core crate without burn", run("cargo", &["test", "-p", "s3t", "--lib"]))?;
    browser_tests()?;
    println!("xtask: all checks passed");
    Ok(())
}

/// Builds a small bundle (fast to train and to evaluate in a software WebGPU adapter), the web app, and runs the
/// headless-Chromium tests against them.
fn browser_tests() -> Result<(), String> {
    tools::web_tools()?;
    tools::browser_tools(&root())?;
    // `--workspace` and the default targets: cargo resolves dependency features per invocation (the dev-dependencies
    // of the targets it builds included), and another selection (`--test gpu_kernels`, `cargo test -p trainer`)
    // may compile the whole burn stack a second time with another feature set. (`cargo build -p trainer`, what
    // `demo` builds, resolves as the tests do: see `trainer/Cargo.toml`.) The kernel tests are the ones whose names
    // say they match the CPU; `trainer/gpu-tests` only changes the trainer crate.
    let mut kernels = run(
        "cargo",
        &["test", "--workspace", "--features", "trainer/gpu-tests", "--", "match_the_cpu", "matches_the_cpu"],
    );
    tools::software_vulkan(&mut kernels)?;
    step("GPU kernels against the CPU (software Vulkan)", kernels)?;
    // The test build also writes `debug/trainer`, with the dependencies the test run compiled already.
    step("build the trainer", run("cargo", &["test", "--workspace", "--no-run"]))?;
    let trainer = target_dir().join("debug").join("trainer");
    // The documentation names only what exists: files, tasks, and the commands and flags of this very trainer.
    println!("xtask: == documentation names what exists");
    docs::check(&root(), &trainer)?;
    let bundle = target_dir().join("browser-test-bundle");
    test_bundle(&trainer, &bundle, "the test bundle", &["--shards", "3", "--slices", "3", "--budget", "3"])?;
    // The WebGPU retrain runs on a software adapter, where burn's training kernels are slow: a bundle whose shards
    // are small (500 samples) and whose plan is short (L = 2), so a retrain is a few dozen optimiser steps.
    let gpu_bundle = target_dir().join("browser-test-bundle-webgpu");
    test_bundle(
        &trainer,
        &gpu_bundle,
        "the WebGPU retrain's bundle",
        &["--shards", "12", "--slices", "2", "--budget", "2"],
    )?;
    let text_bundle = target_dir().join("browser-test-bundle-text");
    build_text_bundle(&trainer, &text_bundle)?;
    step("build the web app", run("trunk", &["build"]))?;
    let dist = root().join("web/dist");
    let server = serve::start(dist.clone(), vec![("bundle", bundle.clone())], 0)?;
    let gpu_server = serve::start(dist.clone(), vec![("bundle", gpu_bundle.clone())], 0)?;
    // Both models, as the demo serves them: the page opens the reviews at `?data=reviews` and offers the switch.
    let both = vec![("bundle", bundle.clone()), ("reviews", text_bundle.clone())];
    let text_server = serve::start(dist, both, 0)?;
    let mut cmd = run("node", &["run.mjs"]);
    cmd.current_dir(root().join("tests/browser"))
        .env("BASE_URL", format!("http://127.0.0.1:{}/", server.port))
        .env("BUNDLE_DIR", &bundle)
        .env("WEBGPU_BASE_URL", format!("http://127.0.0.1:{}/", gpu_server.port))
        .env("WEBGPU_BUNDLE_DIR", &gpu_bundle)
        .env("TEXT_BASE_URL", format!("http://127.0.0.1:{}/?data=reviews", text_server.port))
        .env("TEXT_BUNDLE_DIR", &text_bundle)
        .env("TRAINER", &trainer)
        .env("CHROMIUM", tools::CHROMIUM)
        .env("ARTIFACTS", root().join("tests/browser/artifacts"));
    step("browser tests (headless Chromium)", cmd)
}

/// Builds a small bundle for the browser tests at `bundle` (a narrow backbone, one pass per run) unless a valid one
/// is there, with `plan` (shards, slices, budget), and writes the web app's data next to it.
fn test_bundle(trainer: &Path, bundle: &Path, what: &str, plan: &[&str]) -> Result<(), String> {
    if !valid_bundle(Command::new(trainer), bundle) {
        let _ = std::fs::remove_dir_all(bundle);
        let out = bundle.to_string_lossy().into_owned();
        let t = trainer.to_string_lossy().into_owned();
        let pretrain =
            ["pretrain", "--out", &out, "--pretrain-epochs", "2", "--d-model", "32", "--device", "cpu", "--quiet"];
        step(&format!("pretrain {what}"), run(&t, &pretrain))?;
        let mut build = vec!["build", "--out", &out];
        build.extend_from_slice(plan);
        build.extend_from_slice(&["--epochs", "1", "--device", "cpu", "--quiet"]);
        step(&format!("build {what}"), run(&t, &build))?;
    }
    web_data(run(&trainer.to_string_lossy(), &[]), bundle)
}

/// Builds the browser tests' text bundle at `bundle` unless a valid one is there: the test-sized BERT of
/// `tests/fixtures/hf/tiny-bert` on the 600 reviews of `tests/fixtures/text/reviews.csv`, one layer per group so
/// that frozen layers lie below the adapters (the export ships only the layers above them).
fn build_text_bundle(trainer: &Path, bundle: &Path) -> Result<(), String> {
    if !valid_bundle(Command::new(trainer), bundle) {
        let _ = std::fs::remove_dir_all(bundle);
        let backbone = format!("hf:{}", root().join("tests/fixtures/hf/tiny-bert").display());
        let data = format!("text:{}", root().join("tests/fixtures/text/reviews.csv").display());
        let out = bundle.to_string_lossy().into_owned();
        let mut build = vec!["build", "--backbone", &backbone, "--data", &data, "--out", &out];
        build.extend_from_slice(&["--text-field", "review", "--label-field", "sentiment", "--id-field", "id"]);
        build.extend_from_slice(&["--max-tokens", "16", "--shards", "2", "--slices", "2", "--layers-per-group", "1"]);
        build.extend_from_slice(&["--epochs", "1", "--pretrain-epochs", "2", "--device", "cpu", "--quiet"]);
        step("build the text test bundle", run(&trainer.to_string_lossy(), &build))?;
    }
    web_data(run(&trainer.to_string_lossy(), &[]), bundle)
}

/// Whether `bundle` holds a complete bundle this version reads and verifies (`trainer audit`).
fn valid_bundle(mut trainer: Command, bundle: &Path) -> bool {
    bundle.join("manifest.json").exists()
        && trainer
            .arg("audit")
            .arg(bundle)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The web app shows the deletable samples and evaluates on a test subset: `trainer export --format web` writes
/// them next to the bundle (checked against it).
fn web_data(mut trainer: Command, bundle: &Path) -> Result<(), String> {
    trainer.arg("export").arg(bundle).args(["--format", "web", "--out"]).arg(bundle);
    step("write the web app's data", trainer)
}

/// Test reviews the reviews demo evaluates. The page evaluates them through the top two MiniLM layers on every
/// first use of a node, about 18 ms a review and layer on the CPU backend in wasm (2 cores): 48 keep the first
/// accuracy (two nodes of two layers per shard) under 5 s and a deletion's new node under 1 s. Size allows more:
/// at 37 KB a review (about 25 real tokens of 384 f32 values) 200 still fit the 20 MB first load.
const REVIEWS_TEST_REVIEWS: &str = "48";

/// The README's picture of the page, taken by `demo --screenshot`.
const SCREENSHOT: &str = "docs/screenshot.png";

/// What `demo` does once the page is served.
#[derive(PartialEq)]
enum After {
    /// Serve until stopped.
    Serve,
    /// Time the page in headless Chromium, then stop.
    Measure,
    /// Take the README's screenshot, then stop.
    Screenshot,
}

fn demo(args: &[String]) -> Result<(), String> {
    let (port, after) = match args {
        [] => (8080, After::Serve),
        [flag] if flag == "--measure" => (0, After::Measure),
        [flag] if flag == "--screenshot" => (0, After::Screenshot),
        [flag, value] if flag == "--port" => {
            (value.parse().map_err(|_| format!("--port {value:?} is not a port"))?, After::Serve)
        }
        _ => return Err("usage: cargo xtask demo [--port N | --measure | --screenshot]".into()),
    };
    tools::rust_components()?;
    tools::web_tools()?;
    // Only the trainer: its features resolve as the test build's do (see `trainer/Cargo.toml`), so a later
    // `cargo xtask test` reuses every dependency compiled here.
    step("build the trainer", run("cargo", &["build", "-p", "trainer"]))?;
    let trainer = target_dir().join("debug").join("trainer").to_string_lossy().into_owned();
    let bundle = root().join("web/demo/bundle");
    if !valid_bundle(Command::new(&trainer), &bundle) {
        // An older format or a broken build: start again rather than resume it.
        let _ = std::fs::remove_dir_all(&bundle);
        let out = bundle.to_string_lossy().into_owned();
        step(
            "build the default bundle (first time only, a few minutes)",
            run(&trainer, &["build", "--data", "default", "--out", &out, "--resume"]),
        )?;
    }
    web_data(run(&trainer, &[]), &bundle)?;
    let reviews = root().join("web/demo/reviews");
    if !valid_bundle(Command::new(&trainer), &reviews) {
        let _ = std::fs::remove_dir_all(&reviews);
        let out = reviews.to_string_lossy().into_owned();
        let mut build = vec!["build", "--backbone", "minilm", "--data", "mr", "--out", &out, "--resume"];
        // One layer per group: the four layers below the two adapter groups are frozen in every node, so the page
        // downloads the test reviews' activations above them and the top two layers only, held at f16 (the model
        // is defined with those values everywhere, so the page still computes `trainer eval`'s numbers).
        build.extend_from_slice(&["--layers-per-group", "1", "--frozen-f16"]);
        step(
            "build the reviews bundle: all-MiniLM-L6-v2 on Rotten Tomatoes (first time only, fetches both)",
            run(&trainer, &build),
        )?;
    }
    let mut export = run(&trainer, &["export"]);
    export.arg(&reviews).args(["--format", "web", "--test-limit", REVIEWS_TEST_REVIEWS, "--out"]).arg(&reviews);
    step("write the web app's data for the reviews", export)?;
    step("build the web app", run("trunk", &["build"]))?;
    let server = serve::start(root().join("web/dist"), vec![("bundle", bundle), ("reviews", reviews)], port)?;
    if after == After::Screenshot {
        tools::browser_tools(&root())?;
        let mut cmd = run("node", &["screenshot.mjs"]);
        cmd.current_dir(root().join("tests/browser"))
            .env("BASE_URL", format!("http://127.0.0.1:{}/", server.port))
            .env("CHROMIUM", tools::CHROMIUM)
            .env("OUT", root().join(SCREENSHOT));
        return step("take the README's screenshot (headless Chromium)", cmd);
    }
    if after == After::Measure {
        // The page's speed on the software WebGPU adapter, as the browser tests measure it, on the demo bundle.
        tools::browser_tools(&root())?;
        let mut cmd = run("node", &["speed.mjs"]);
        cmd.current_dir(root().join("tests/browser"))
            .env("BASE_URL", format!("http://127.0.0.1:{}/", server.port))
            .env("CHROMIUM", tools::CHROMIUM)
            .env("OUT", root().join("tests/browser/artifacts/demo-speed.json"));
        step("measure the demo (headless Chromium, software WebGPU)", cmd)?;
        let mut cmd = run("node", &["speed-text.mjs"]);
        cmd.current_dir(root().join("tests/browser"))
            .env("BASE_URL", format!("http://127.0.0.1:{}/?data=reviews", server.port))
            .env("CHROMIUM", tools::CHROMIUM)
            .env("OUT", root().join("tests/browser/artifacts/demo-speed-reviews.json"));
        return step("measure the reviews demo (headless Chromium, CPU backend)", cmd);
    }
    println!(
        "xtask: serving the S3T demo at http://127.0.0.1:{0}/ (images) and http://127.0.0.1:{0}/?data=reviews (reviews) \
         (Ctrl-C to stop)",
        server.port
    );
    loop {
        std::thread::park();
    }
}

/// The ignored `long::*` fuzz tests. The dev profile (dependencies optimised, the parsers with their overflow
/// checks) so that an arithmetic overflow is found as a panic rather than wrapping silently as in release.
fn fuzz(extra: &[String]) -> Result<(), String> {
    let filter = match extra {
        [] => "long::".to_owned(),
        [name] if !name.starts_with('-') => format!("long::{name}"),
        _ => return Err("usage: cargo xtask fuzz [PARSER]".into()),
    };
    let args = ["test", "--workspace", "--test", "fuzz", "--", "--ignored", "--nocapture", &filter];
    step("fuzz every parser of untrusted bytes", run("cargo", &args))
}

fn bench(extra: &[String]) -> Result<(), String> {
    let mut args = vec!["bench", "-p", "s3t", "--bench", "*"];
    args.extend(extra.iter().map(String::as_str));
    step("benchmarks", run("cargo", &args))
}
