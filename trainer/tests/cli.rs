//! End-to-end tests of the `trainer` binary: outputs scripts rely on, and one-line errors for bad arguments.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn trainer(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trainer")).args(args).output().expect("the trainer binary runs")
}

/// Runs a command that must succeed and returns its standard output.
fn stdout_of(args: &[&str]) -> String {
    let out = trainer(args);
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

fn json_of(args: &[&str]) -> Value {
    serde_json::from_str(&stdout_of(args)).expect("valid JSON")
}

/// Runs a command that must fail with exactly one `error:` line naming `needle`, and no panic.
fn assert_one_line_error(args: &[&str], needle: &str) {
    let out = trainer(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{args:?} should print one line, got {stderr:?}");
    assert!(lines[0].starts_with("error: "), "{args:?}: {stderr:?}");
    assert!(lines[0].contains(needle), "{args:?}: {:?} does not mention {needle:?}", lines[0]);
    assert!(out.stdout.is_empty(), "{args:?} printed a result despite the error");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    fs::write(&path, text).expect("write test file");
    path.to_str().expect("UTF-8 temp path").to_owned()
}

fn f64_of(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap_or_else(|| panic!("{key} is not a number in {v}"))
}

#[test]
fn simulate_json_matches_the_paper_closed_form() {
    let rows = json_of(&[
        "simulate",
        "--shards",
        "5",
        "--slices",
        "6",
        "--budgets",
        "1..6",
        "--runs",
        "2000",
        "--seed",
        "0",
        "--json",
    ]);
    let rows = rows.as_array().expect("one JSON array");
    let expected = [68.5, 87.9, 99.5, 107.9, 114.5, 119.8];
    assert_eq!(rows.len(), expected.len());
    for ((row, want), budget) in rows.iter().zip(expected).zip(1..) {
        assert_eq!(row["budget"], budget);
        assert_eq!((row["shards"].as_u64(), row["slices"].as_u64()), (Some(5), Some(6)));
        assert_eq!(
            (row["strategy"].as_str(), row["runs"].as_u64(), row["seed"].as_u64()),
            (Some("cyclic"), Some(2000), Some(0))
        );
        let closed = f64_of(row, "closed_form");
        assert!((closed - want).abs() < 0.05, "B={budget}: closed form {closed} vs {want}");
        let mc = f64_of(row, "mean_deletions_until_all_offline");
        assert!((mc - closed).abs() / closed < 0.05, "B={budget}: Monte Carlo {mc} vs closed form {closed}");
        assert!(f64_of(row, "std_deletions_until_all_offline") > 0.0);
        assert!(f64_of(row, "mean_deletions_until_first_offline") <= mc);
        assert!(f64_of(row, "std_deletions_until_first_offline") >= 0.0);
        let curve = row["served_prefix"].as_array().expect("served_prefix curve");
        assert!(curve.len() > 10);
        assert_eq!(curve[0]["deletions"], 0);
        assert_eq!(curve[0]["mean_served_prefix"], 6.0);
    }
}

#[test]
fn simulate_table_lists_every_budget() {
    let text = stdout_of(&["simulate", "--budgets", "1..3,6", "--runs", "300"]);
    assert!(text.contains("closed form"), "{text}");
    let rows: Vec<&str> = text.lines().filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit())).collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows[0].trim_start().starts_with("1 ") && rows[0].contains("68.5"), "{text}");
    assert!(rows[3].trim_start().starts_with("6 ") && rows[3].contains("119.8"), "{text}");
}

#[test]
fn simulate_with_a_skewed_prior_has_no_closed_form() {
    let dir = tempfile::tempdir().expect("temp dir");
    let prior = write(dir.path(), "prior.json", "[0.4, 0.25, 0.15, 0.1, 0.06, 0.04]");
    for strategy in ["bms", "cyclic", "random"] {
        let rows = json_of(&[
            "simulate",
            "--strategy",
            strategy,
            "--prior",
            &prior,
            "--budgets",
            "1,3",
            "--runs",
            "300",
            "--json",
        ]);
        for row in rows.as_array().expect("array") {
            assert!(row["closed_form"].is_null(), "{strategy}: {row}");
            assert!(f64_of(row, "mean_deletions_until_all_offline") > 0.0);
            assert_eq!(row["prior"].as_array().map(Vec::len), Some(6));
        }
    }
}

#[test]
fn simulate_is_reproducible_for_a_seed() {
    let args = ["simulate", "--strategy", "random", "--budgets", "2,3", "--runs", "200", "--seed", "7", "--json"];
    assert_eq!(stdout_of(&args), stdout_of(&args));
}

#[test]
fn simulate_writes_an_svg_atomically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("survival.svg");
    let path_str = path.to_str().expect("UTF-8 temp path");
    let out = trainer(&["simulate", "--budgets", "1..4", "--runs", "500", "--svg", path_str]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("wrote {path_str}")));
    let svg = fs::read_to_string(&path).expect("the SVG exists");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.contains("SISA") && svg.contains("budget B"), "labels and legend are drawn");
    assert!(!dir.path().join("survival.svg.tmp").exists(), "the temporary file is renamed away");
}

#[test]
fn plan_full_l4_trains_64_nodes_per_shard() {
    let plan = json_of(&["plan", "--shards", "3", "--slices", "4", "--budget", "24", "--strategy", "full", "--json"]);
    assert_eq!(plan["nodes_per_shard"], serde_json::json!([64, 64, 64]));
    assert_eq!(plan["total_nodes"], 192);
    assert_eq!(
        (plan["shards"].as_u64(), plan["slices"].as_u64(), plan["budget"].as_u64()),
        (Some(3), Some(4), Some(24))
    );
    assert_eq!(plan["strategy"], "full");
    let sequences = plan["sequences"].as_array().expect("sequences per shard");
    assert_eq!(sequences.len(), 3);
    assert!(sequences.iter().all(|s| s.as_array().map(Vec::len) == Some(24)));
    for order in plan["training_order"].as_array().expect("training order per shard") {
        let nodes = order.as_array().expect("nodes");
        assert_eq!(nodes.len(), 64);
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(node["id"], i);
            let prefix = node["prefix"].as_array().expect("prefix");
            assert_eq!(node["group"].as_u64(), Some(prefix.len() as u64));
            match node["parent"].as_u64() {
                None => assert_eq!(prefix.len(), 1),
                Some(p) => {
                    let parent = &nodes[p as usize];
                    assert!(p < i as u64, "parents are trained first");
                    assert_eq!(parent["prefix"].as_array().expect("prefix")[..], prefix[..prefix.len() - 1]);
                }
            }
        }
    }
}

#[test]
fn plan_human_output_shows_sequences_and_training_order() {
    let text = stdout_of(&["plan", "--shards", "2", "--slices", "3", "--budget", "3", "--strategy", "cyclic"]);
    for want in ["all shards", "(0 1 2)", "(1 2 0)", "(2 0 1)", "node  group  parent  prefix", "total: 18"] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
}

#[test]
fn plan_random_differs_between_shards_and_follows_the_seed() {
    let args = ["plan", "--shards", "3", "--slices", "5", "--budget", "4", "--strategy", "random", "--seed", "3"];
    let plan = json_of(&[&args[..], &["--json"]].concat());
    let sequences = plan["sequences"].as_array().expect("sequences");
    assert!(sequences.windows(2).any(|w| w[0] != w[1]), "shards derive their own seeds");
    assert_eq!(plan["seed"], 3);
    assert_eq!(stdout_of(&args), stdout_of(&args));
    assert!(stdout_of(&args).contains("shard 2"));
}

#[test]
fn invalid_arguments_give_one_error_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let bad_sum = write(dir.path(), "bad_sum.json", "[0.5, 0.2, 0.2]");
    let short = write(dir.path(), "short.json", "[0.5, 0.5]");
    let not_json = write(dir.path(), "not_json.json", "{\"a\": 1}");
    let zero_lead = write(dir.path(), "zero_lead.json", "[0, 0.5, 0.5]");
    let missing = dir.path().join("missing.json").to_str().expect("UTF-8 temp path").to_owned();
    let bundle = dir.path().join("bundle").to_str().expect("UTF-8 temp path").to_owned();
    fn sim<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["simulate", "--runs", "50"][..], extra].concat()
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (sim(&["--budgets", "0"]), "--budgets 0"),
        (sim(&["--slices", "3", "--budgets", "1..7"]), "B = 7"),
        (sim(&["--budgets", "3..1"]), "3..1"),
        (sim(&["--budgets", "1,,2"]), "--budgets"),
        (sim(&["--budgets", "two"]), "two"),
        (sim(&["--budgets", "1..2..3"]), "--budgets"),
        (sim(&["--budgets", "1..100000000"]), "--budgets"),
        (sim(&["--slices", "0"]), "--slices"),
        (sim(&["--shards", "0"]), "--shards"),
        (vec!["simulate", "--runs", "0"], "--runs"),
        (sim(&["--slices", "65", "--budgets", "1"]), "65"),
        (sim(&["--slices", "3", "--strategy", "full", "--budgets", "5"]), "L! = 6"),
        (sim(&["--slices", "9", "--strategy", "full"]), "L ≤ 8"),
        (sim(&["--slices", "3", "--prior", &bad_sum]), "bad_sum.json"),
        (sim(&["--slices", "3", "--prior", &short]), "short.json"),
        (sim(&["--slices", "3", "--prior", &not_json]), "not_json.json"),
        (sim(&["--slices", "3", "--prior", &missing]), "missing.json"),
        (sim(&["--slices", "3", "--prior", &zero_lead]), "probability 0"),
        (sim(&["--slices", "3", "--prior", &zero_lead, "--strategy", "bms"]), "zero_lead.json"),
        (vec!["plan", "--slices", "3", "--budget", "0"], "--budget 0"),
        (vec!["plan", "--slices", "3", "--budget", "7"], "B = 7"),
        (vec!["plan", "--slices", "0"], "--slices"),
        (vec!["plan", "--shards", "0"], "--shards"),
        (vec!["plan", "--slices", "4", "--strategy", "full", "--budget", "3"], "L! = 24"),
        (vec!["plan", "--slices", "3", "--strategy", "bms", "--prior", &bad_sum], "bad_sum.json"),
        (vec!["plan", "--slices", "3", "--strategy", "bms", "--prior", &missing], "missing.json"),
        (vec!["plan", "--slices", "3", "--prior", &short], "--prior"),
        (vec!["pretrain", "--out", &bundle, "--threads", "0", "--device", "cpu"], "--threads 0"),
        (vec!["build", "--out", &bundle, "--learning-rate", "0", "--device", "cpu"], "--learning-rate 0"),
        (vec!["build", "--out", &bundle, "--learning-rate", "NaN", "--device", "cpu"], "--learning-rate NaN"),
        (vec!["bench", "--layers-per-group", "2", "--device", "cpu"], "--layers-per-group 2"),
    ];
    for (args, needle) in &cases {
        assert_one_line_error(args, needle);
    }
    assert!(!dir.path().join("bundle").exists(), "a refused pretrain wrote nothing");
}

#[test]
fn bench_json_reports_throughput_and_the_deletion_cost_of_both_methods() {
    let v = json_of(&["bench", "--samples", "128", "--device", "cpu", "--json"]);
    assert!(v["device"].as_str().is_some_and(|d| d.starts_with("cpu")), "{v}");
    for key in ["train_samples_per_s", "node_train_samples_per_s", "s3t_delete_to_serve_s", "sisa_retrain_s"] {
        assert!(f64_of(&v, key) > 0.0, "{key} in {v}");
    }
    // Both times come from the same run, and the ratio is theirs.
    let expected = f64_of(&v, "sisa_retrain_s") / f64_of(&v, "s3t_delete_to_serve_s");
    assert!((f64_of(&v, "sisa_over_s3t") - expected).abs() <= 1e-9 * expected, "{v}");
}
