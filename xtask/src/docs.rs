//! The documentation check: `README.md` and `docs/*.md` name only repository files that exist, `cargo xtask` tasks
//! that exist, and `trainer` subcommands and flags that the built trainer accepts (from its own `--help`).
//!
//! It reads code: inline code spans and the lines of fenced code blocks. A span is a path when its first segment
//! is a top-level directory of the repository; paths under generated directories (the web build, the demo bundles,
//! the browser tests' artifacts) and patterns (`{a,b}`, `*`, placeholders in capitals) are left alone.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

/// Top-level directories whose paths the documentation may name.
const TREE: [&str; 11] =
    [".ci", "data", "docs", "gelu", "scripts", "shared", "tests", "trainer", "web", "xtask", ".cargo"];
/// Generated on a run, absent from a clean clone.
const GENERATED: [&str; 5] =
    ["web/dist", "web/demo", "tests/browser/artifacts", "tests/browser/node_modules", "target"];
/// The tasks of `cargo xtask`.
const TASKS: [&str; 6] = ["test", "demo", "browser", "bench", "fuzz", "help"];

/// Checks every page; the error lists every problem as `page:line: problem`.
pub fn check(root: &Path, trainer: &Path) -> Result<(), String> {
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<_> = std::fs::read_dir(root.join("docs"))
        .map_err(|e| format!("docs/: {e}"))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let mut helps = Help { trainer, cache: HashMap::new() };
    let mut problems = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).map_err(|e| format!("{}: {e}", page.display()))?;
        let name = page.strip_prefix(root).unwrap_or(page).display().to_string();
        for (line, code) in code(&text) {
            for problem in check_code(root, &code, &mut helps)? {
                problems.push(format!("{name}:{line}: `{code}`: {problem}"));
            }
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(format!("the documentation names what does not exist:\n  {}", problems.join("\n  ")))
}

/// The inline code spans and fenced code lines of a Markdown text, with their line numbers (1-based).
fn code(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            out.push((i + 1, line.trim().to_owned()));
            continue;
        }
        // Inline spans: between pairs of backticks (a span never crosses a line here).
        let parts: Vec<&str> = line.split('`').collect();
        out.extend(parts.iter().skip(1).step_by(2).map(|span| (i + 1, span.trim().to_owned())));
    }
    out
}

/// The trainer's `--help` texts, asked once each.
struct Help<'a> {
    trainer: &'a Path,
    cache: HashMap<Vec<String>, String>,
}

impl Help<'_> {
    fn of(&mut self, words: &[String]) -> Result<&str, String> {
        if !self.cache.contains_key(words) {
            let output = Command::new(self.trainer)
                .args(words)
                .arg("--help")
                .output()
                .map_err(|e| format!("{}: {e}", self.trainer.display()))?;
            let text = String::from_utf8_lossy(&output.stdout).into_owned();
            self.cache.insert(words.to_vec(), text);
        }
        Ok(&self.cache[words])
    }
}

/// The subcommands a `--help` text lists under "Commands:".
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn check_code(root: &Path, code: &str, helps: &mut Help<'_>) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let words: Vec<&str> = code.split_whitespace().collect();
    if words.len() == 1
        && let Some(problem) = check_path(root, words[0])
    {
        problems.push(problem);
    }
    for (i, word) in words.iter().enumerate() {
        let next = words.get(i + 1).copied();
        if *word == "xtask"
            && words.get(i.wrapping_sub(1)) == Some(&"cargo")
            && let Some(task) = next.filter(|t| !t.starts_with('-'))
            && !TASKS.contains(&task)
        {
            problems.push(format!("`cargo xtask` has no task {task}"));
        }
        let is_trainer = (*word == "trainer" && words.get(i.wrapping_sub(1)) != Some(&"-p")) || *word == "$T";
        let after_p = *word == "trainer" && words.get(i.wrapping_sub(1)) == Some(&"-p") && next == Some("--");
        if is_trainer || after_p {
            let rest = &words[i + 1 + usize::from(after_p)..];
            problems.extend(check_trainer(rest, helps)?);
            break;
        }
    }
    Ok(problems)
}

/// A `trainer` command line (its words after `trainer`): its subcommands and flags must exist.
fn check_trainer(rest: &[&str], helps: &mut Help<'_>) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut words = rest.iter().copied().take_while(|w| !["|", "&&", ";", "#", ">", "2>&1"].contains(w));
    let Some(first) = words.next() else { return Ok(problems) };
    if !first.chars().all(|c| c.is_ascii_lowercase() || c == '-') || first.starts_with('-') {
        return Ok(problems);
    }
    let top = subcommands(helps.of(&[])?);
    if top.is_empty() {
        return Err("`trainer --help` lists no subcommands".into());
    }
    if !top.iter().any(|s| s == first) {
        problems.push(format!("trainer has no subcommand {first}"));
        return Ok(problems);
    }
    path.push(first.to_owned());
    for word in words {
        let nested = subcommands(helps.of(&path)?);
        if path.len() == 1 && nested.iter().any(|s| s == word) {
            path.push(word.to_owned());
            continue;
        }
        if let Some(flag) = word.strip_prefix("--") {
            let flag: String = flag.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
            if flag.is_empty() {
                continue;
            }
            let help = helps.of(&path)?;
            let known = help.match_indices(&format!("--{flag}")).any(|(at, _)| {
                !help[at + 2 + flag.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '-')
            });
            if !known {
                problems.push(format!("trainer {} has no flag --{flag}", path.join(" ")));
            }
        }
    }
    Ok(problems)
}

/// A repository path named in the documentation that does not exist (`None`: it exists, or it is not a path).
fn check_path(root: &Path, span: &str) -> Option<String> {
    let path = span.trim_end_matches([',', '.', ':', ')']);
    let first = path.split('/').next()?;
    if !path.contains('/') || !TREE.contains(&first) {
        return None;
    }
    let pattern = |c: char| "{}*<>$…|".contains(c) || c.is_whitespace();
    let placeholder =
        path.split('/').any(|seg| seg.len() > 1 && seg.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
    if path.contains(pattern) || placeholder || GENERATED.iter().any(|g| path.starts_with(g)) {
        return None;
    }
    // `file.rs:123`, `file.rs::name`: the file is what must exist.
    let file = path.split("::").next().unwrap_or(path);
    let file = file.split(':').next().unwrap_or(file);
    (!root.join(file).exists()).then(|| format!("{file} does not exist"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_spans_and_fenced_lines_are_read_with_their_lines() {
        let text = "see `shared/src/plan.rs` and `x`\n```sh\ntrainer plan --json\n```\n";
        assert_eq!(
            code(text),
            vec![(1, "shared/src/plan.rs".into()), (1, "x".into()), (3, "trainer plan --json".into())]
        );
    }

    #[test]
    fn paths_are_checked_and_patterns_left_alone() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
        assert_eq!(check_path(root, "shared/src/plan.rs"), None);
        assert_eq!(check_path(root, "shared/src/plan.rs:12"), None);
        assert!(check_path(root, "shared/src/nothing.rs").is_some_and(|p| p.contains("does not exist")));
        assert_eq!(check_path(root, "data/{deletable,test}-texts.json.gz"), None);
        assert_eq!(check_path(root, "web/dist/index.html"), None);
        assert_eq!(check_path(root, "BUNDLE/data/"), None);
        assert_eq!(check_path(root, "tests/BUNDLE/x"), None);
    }
}
