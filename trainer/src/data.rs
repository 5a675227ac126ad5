//! Data sources: `default` (the embedded Fashion-MNIST subset), `idx:DIR`, `csv:FILE` (images); `text:FILE` and
//! `mr` (the Rotten Tomatoes corpus) for text bundles, tokenized by the backbone's own tokenizer.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use s3t::bundle::DataInfo;
use s3t::bundle::store::sha256_hex;
use s3t::dataset::{self, Dataset, Splits, TextFields};
use s3t::text::{self as text_data, SplitShares, TextTokenizer};

/// Classes of the MNIST family (the label range checked by the loaders).
pub const CLASSES: u8 = 10;
/// Image side of the MNIST family (CSV rows must hold 28×28 pixels).
pub const SIDE: u32 = 28;

const SPLITS: [&str; 4] = ["public", "deletable", "validation", "test"];

macro_rules! embedded {
    ($split:literal) => {
        (
            include_bytes!(concat!("../../data/fashion-mnist/", $split, "-images-idx3-ubyte.gz")).as_slice(),
            include_bytes!(concat!("../../data/fashion-mnist/", $split, "-labels-idx1-ubyte.gz")).as_slice(),
        )
    };
}

/// A parsed `--data` argument.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    Idx(PathBuf),
    Csv(PathBuf),
    /// Labelled texts: `.csv`, `.tsv` or `.jsonl`.
    Text(PathBuf),
    /// The Rotten Tomatoes sentence-polarity corpus (`fresh` / `rotten` review snippets), obtained once and cached.
    Mr,
}

impl Source {
    pub fn parse(text: &str) -> Result<Self> {
        match text.split_once(':') {
            _ if text == "default" => Ok(Source::Default),
            Some(("idx", dir)) if !dir.is_empty() => Ok(Source::Idx(dir.into())),
            Some(("csv", file)) if !file.is_empty() => Ok(Source::Csv(file.into())),
            Some(("text", file)) if !file.is_empty() => Ok(Source::Text(file.into())),
            _ if text == "mr" => Ok(Source::Mr),
            _ => bail!(
                "--data {text:?}: expected `default`, `idx:DIR`, `csv:FILE` (images), `text:FILE` or `mr` (texts)"
            ),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Default => "default (embedded Fashion-MNIST subset)".into(),
            Source::Idx(dir) => format!("idx:{}", dir.display()),
            Source::Csv(file) => format!("csv:{}", file.display()),
            Source::Text(file) => format!("text:{}", file.display()),
            Source::Mr => "mr".into(),
        }
    }

    /// Whether the source holds texts (read with a text backbone's tokenizer, [`Source::load_text`]).
    pub fn is_text(&self) -> bool {
        matches!(self, Source::Text(_) | Source::Mr)
    }

    /// The rows of a text source and the file they came from.
    fn text_rows(&self, fields: &TextFields, quiet: bool) -> Result<(String, Vec<text_data::Row>)> {
        match self {
            Source::Text(file) => {
                let bytes = fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
                let name = file.display().to_string();
                let rows = text_data::read_rows(&name, &bytes, fields)?;
                Ok((name, rows))
            }
            Source::Mr => {
                let file = crate::fetch::obtain(&crate::fetch::MR, quiet)?;
                let bytes = fs::read(&file).with_context(|| format!("{}: cannot read", file.display()))?;
                let name = file.display().to_string();
                Ok((name.clone(), text_data::mr_rows(&name, &bytes)?))
            }
            _ => bail!("{} holds images, not texts", self.describe()),
        }
    }

    /// The fields of `mr`, whatever the flags say (`category` holds its labels).
    pub fn text_fields(&self, given: TextFields) -> TextFields {
        match self {
            Source::Mr => TextFields { text: "text".into(), label: "category".into(), id: None },
            _ => given,
        }
    }

    /// Loads a text source's four splits (by each row's id), tokenized, and the label of each class.
    pub fn load_text(
        &self,
        fields: &TextFields,
        tokenizer: &TextTokenizer,
        quiet: bool,
    ) -> Result<(Splits, Vec<String>)> {
        let (file, rows) = self.text_rows(fields, quiet)?;
        let labels = text_data::label_names(&file, &rows)?;
        let splits = text_data::splits(&file, &rows, &labels, tokenizer, SplitShares::default())?;
        Ok((splits, labels))
    }

    /// Loads the four splits.
    pub fn load(&self) -> Result<Splits> {
        match self {
            Source::Default => {
                let files = [embedded!("public"), embedded!("deletable"), embedded!("validation"), embedded!("test")];
                let mut sets = Vec::new();
                for (name, (images, labels)) in SPLITS.iter().zip(files) {
                    let what = format!("embedded {name} split");
                    sets.push(dataset::from_idx(&what, images.to_vec(), &what, labels.to_vec(), CLASSES)?);
                }
                into_splits(sets)
            }
            Source::Idx(dir) => load_idx_dir(dir),
            Source::Text(_) | Source::Mr => {
                bail!("--data {}: texts need a text backbone (--backbone hf:DIR) to be tokenized", self.describe())
            }
            Source::Csv(file) => {
                let bytes = fs::read(file).with_context(|| format!("{}: cannot read", file.display()))?;
                let all = dataset::from_csv(&file.display().to_string(), &bytes, SIDE, SIDE, CLASSES)?;
                Ok(Splits::by_position(all)?)
            }
        }
    }

    /// What a bundle records about its data.
    pub fn info(&self, splits: &Splits) -> DataInfo {
        let d = &splits.deletable;
        let bytes = d.content_bytes();
        DataInfo {
            source: match self {
                Source::Default => "default".into(),
                other => other.describe(),
            },
            rows: d.rows,
            cols: d.cols,
            classes: d.classes,
            public: splits.public.len(),
            deletable: d.len(),
            validation: splits.validation.len(),
            test: splits.test.len(),
            deletable_sha256: sha256_hex(&bytes),
            // Set by `pretrain`, which salts the commitments (see `s3t::bundle::samples`).
            deletable_digests_sha256: String::new(),
            labels: Vec::new(),
            fields: None,
        }
    }

    /// [`Source::info`] of a text source: with its labels and fields.
    pub fn text_info(&self, splits: &Splits, labels: &[String], fields: &TextFields) -> DataInfo {
        DataInfo { labels: labels.to_vec(), fields: Some(fields.clone()), ..self.info(splits) }
    }
}

fn into_splits(mut sets: Vec<Dataset>) -> Result<Splits> {
    let test = sets.pop().context("test split")?;
    let validation = sets.pop().context("validation split")?;
    let deletable = sets.pop().context("deletable split")?;
    let public = sets.pop().context("public split")?;
    Ok(Splits::new(public, deletable, validation, test)?)
}

/// Finds `stem` or `stem.gz` in `dir`.
fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [dir.join(stem), dir.join(format!("{stem}.gz"))].into_iter().find(|p| p.is_file())
}

fn read_pair(images: &Path, labels: &Path) -> Result<Dataset> {
    let read = |p: &Path| fs::read(p).with_context(|| format!("{}: cannot read", p.display()));
    Ok(dataset::from_idx(
        &images.display().to_string(),
        read(images)?,
        &labels.display().to_string(),
        read(labels)?,
        CLASSES,
    )?)
}

/// An IDX directory holds either the four splits (`public-images-idx3-ubyte[.gz]`, …) or the standard MNIST
/// layout (`train-…`, `t10k-…`); the latter's training set is split by position: 40 % public, 50 % deletable,
/// 10 % validation.
fn load_idx_dir(dir: &Path) -> Result<Splits> {
    if !dir.is_dir() {
        bail!("{}: not a directory", dir.display());
    }
    let pair = |split: &str| {
        let images = find(dir, &format!("{split}-images-idx3-ubyte"));
        let labels = find(dir, &format!("{split}-labels-idx1-ubyte"));
        images.zip(labels)
    };
    if SPLITS.iter().all(|s| pair(s).is_some()) {
        let mut sets = Vec::new();
        for split in SPLITS {
            let (images, labels) = pair(split).context("split files")?;
            sets.push(read_pair(&images, &labels)?);
        }
        return into_splits(sets);
    }
    match (pair("train"), pair("t10k")) {
        (Some((ti, tl)), Some((vi, vl))) => {
            let train = read_pair(&ti, &tl)?;
            let test = read_pair(&vi, &vl)?;
            let n = train.len();
            let range = |a: usize, b: usize| train.select(&(a..b).collect::<Vec<_>>());
            let (p, d) = (n * 4 / 10, n * 9 / 10);
            Ok(Splits::new(range(0, p), range(p, d), range(d, n), test)?)
        }
        _ => bail!(
            "{}: expected public/deletable/validation/test-{{images-idx3,labels-idx1}}-ubyte[.gz] or the MNIST \
             train-/t10k- files",
            dir.display()
        ),
    }
}
