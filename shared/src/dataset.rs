//! Data sets of small grey images with class labels, and their loaders.
//!
//! Formats: IDX (the MNIST family: big-endian magic `0x00000803` images `n × rows × cols` of u8, `0x00000801`
//! labels of u8), optionally gzip-compressed; and CSV with one sample per line, `label,p0,p1,…` with
//! `rows × cols` pixel values in 0..=255 and an optional header line. Every malformed input is an error naming the
//! file and what is wrong; nothing here panics on file contents.
//!
//! A training source has four splits (exactness rule E1/E5): `public` trains the backbone only, `deletable` is
//! sharded and can be deleted from, `validation` (non-deletable) is used for model selection, `test` for
//! evaluation. A sample's id is its index in the deletable split.

use std::io::Read;

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use thiserror::Error;

const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
const IDX_LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// Largest decompressed gzip input accepted (bytes). The data sets here are tens of MB; a stream that inflates to
/// more is damage or a decompression bomb, and must not exhaust memory (the browser has 4 GiB at most).
pub const MAX_DECOMPRESSED_BYTES: u64 = 512 << 20;
/// Largest image accepted (pixels, 4096 × 4096): far above the 28 × 28 images the model reads, and low enough that
/// `count × pixels` of any IDX header fits in u64.
pub const MAX_IMAGE_PIXELS: u64 = 1 << 24;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DataError {
    #[error("{file}: cannot read: {reason}")]
    Io { file: String, reason: String },
    #[error("{file}: not a gzip stream that decompresses: {reason}")]
    Gzip { file: String, reason: String },
    #[error("{file}: decompresses to more than {limit} bytes, the limit for a data file")]
    Decompressed { file: String, limit: u64 },
    #[error(
        "{file}: images of {rows}×{cols} pixels are not supported (each side at least 1, at most {MAX_IMAGE_PIXELS} \
         pixels per image)"
    )]
    ImageShape { file: String, rows: u32, cols: u32 },
    #[error("{file}: the IDX header declares {count} images of {rows}×{cols} pixels, more than this platform can hold")]
    TooLarge { file: String, count: u64, rows: u32, cols: u32 },
    #[error("{file}: bad IDX magic {found:#010x}, expected {expected:#010x} ({kind})")]
    BadMagic { file: String, found: u32, expected: u32, kind: &'static str },
    #[error("{file}: truncated: {what} needs {expected} bytes but the file has {found}")]
    Truncated { file: String, what: &'static str, expected: u64, found: u64 },
    #[error("{file}: {found} trailing bytes after the {count} records the header declares")]
    TrailingBytes { file: String, count: u64, found: u64 },
    #[error("{file}: images are {rows}×{cols}, expected {expected_rows}×{expected_cols}")]
    WrongShape { file: String, rows: u32, cols: u32, expected_rows: u32, expected_cols: u32 },
    #[error("{images} holds {images_count} images but {labels} holds {labels_count} labels")]
    CountMismatch { images: String, images_count: u64, labels: String, labels_count: u64 },
    #[error("{file}: sample {index} has label {label}, outside 0..{classes}")]
    LabelOutOfRange { file: String, index: usize, label: i64, classes: u8 },
    #[error("{file}: line {line}: {reason}")]
    Csv { file: String, line: u64, reason: String },
    #[error("{file}: holds no samples")]
    Empty { file: String },
    #[error("{split} split has images of {rows}×{cols} but the public split has {expected_rows}×{expected_cols}")]
    SplitShape { split: &'static str, rows: u32, cols: u32, expected_rows: u32, expected_cols: u32 },
    /// Any other defect of a data set's, a sample's or a text's content; the message names it.
    #[error("{0}")]
    Invalid(String),
}

/// Images (row-major u8 pixels) and their labels, or texts (`text`: token ids, `rows` 1 and `cols` the tokens per
/// sample, no pixels) and their labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dataset {
    pub rows: u32,
    pub cols: u32,
    pub classes: u8,
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextSamples>,
}

/// How the fields of a text file are named (`trainer build --text-field … --label-field … --id-field …`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextFields {
    pub text: String,
    pub label: String,
    /// The field holding each row's stable id; `None`: the row number (from 0, header excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Text samples, tokenized: every sample's ids cut or padded to the same length (`Dataset::cols`), so a sample's
/// computation never depends on which others share its batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TextSamples {
    /// Row-major [samples, tokens] ids, padded with the tokenizer's pad id.
    pub ids: Vec<u32>,
    /// Real tokens per sample, special tokens included (the rest is padding, masked).
    pub lengths: Vec<u32>,
    /// The texts as read.
    pub texts: Vec<String>,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn pixels_per_image(&self) -> usize {
        // In usize: `rows * cols` in u32 would overflow for shapes the parsers refuse but a caller could build.
        (self.rows as usize).saturating_mul(self.cols as usize)
    }

    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.pixels_per_image();
        &self.pixels[index * n..(index + 1) * n]
    }

    /// The token ids of text sample `index` (all `cols` of them, padding included).
    pub fn token_ids(&self, index: usize) -> &[u32] {
        let n = self.cols as usize;
        self.text.as_ref().map_or(&[][..], |t| &t.ids[index * n..(index + 1) * n])
    }

    /// What identifies sample `index` (its commitment's input, [`crate::bundle::samples`]): its pixels, or its token
    /// ids (little-endian) followed by its text.
    pub fn sample_bytes(&self, index: usize) -> Vec<u8> {
        match &self.text {
            None => self.image(index).to_vec(),
            Some(t) => {
                let mut bytes: Vec<u8> = self.token_ids(index).iter().flat_map(|id| id.to_le_bytes()).collect();
                bytes.extend(t.texts[index].as_bytes());
                bytes
            }
        }
    }

    /// Erases sample `index`: zero pixels (or token ids, length and an empty text) and label 0.
    pub fn erase(&mut self, index: usize) {
        let n = self.cols as usize;
        match &mut self.text {
            None => {
                let n = self.pixels_per_image();
                self.pixels[index * n..(index + 1) * n].fill(0);
            }
            Some(t) => {
                t.ids[index * n..(index + 1) * n].fill(0);
                t.lengths[index] = 0;
                t.texts[index].clear();
            }
        }
        self.labels[index] = 0;
    }

    /// Whether sample `index` holds nothing but zeros ([`Dataset::erase`]).
    pub fn is_erased(&self, index: usize) -> bool {
        let blank = match &self.text {
            None => self.image(index).iter().all(|&p| p == 0),
            Some(t) => {
                self.token_ids(index).iter().all(|&id| id == 0) && t.lengths[index] == 0 && t.texts[index].is_empty()
            }
        };
        self.labels.get(index) == Some(&0) && blank
    }

    /// The samples at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        let text = self.text.as_ref().map(|t| {
            let n = self.cols as usize;
            TextSamples {
                ids: indices.iter().flat_map(|&i| t.ids[i * n..(i + 1) * n].iter().copied()).collect(),
                lengths: indices.iter().map(|&i| t.lengths[i]).collect(),
                texts: indices.iter().map(|&i| t.texts[i].clone()).collect(),
            }
        });
        let mut pixels = Vec::with_capacity(if text.is_some() { 0 } else { indices.len() * self.pixels_per_image() });
        if text.is_none() {
            for &i in indices {
                pixels.extend_from_slice(self.image(i));
            }
        }
        Dataset {
            rows: self.rows,
            cols: self.cols,
            classes: self.classes,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            text,
        }
    }

    /// Bytes that identify the samples and labels (what `DataInfo::deletable_sha256` hashes): pixels, or token ids
    /// (little-endian) and the texts, then the labels.
    pub fn content_bytes(&self) -> Vec<u8> {
        let mut bytes = self.pixels.clone();
        if let Some(t) = &self.text {
            bytes.extend(t.ids.iter().flat_map(|id| id.to_le_bytes()));
            for text in &t.texts {
                bytes.extend((text.len() as u64).to_le_bytes());
                bytes.extend(text.as_bytes());
            }
        }
        bytes.extend_from_slice(&self.labels);
        bytes
    }

    /// The first `n` samples (all when `n` is larger).
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        self.select(&(0..n).collect::<Vec<_>>())
    }
}

/// The four splits of a training source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Splits {
    pub public: Dataset,
    pub deletable: Dataset,
    pub validation: Dataset,
    pub test: Dataset,
}

impl Splits {
    /// Checks that all splits share one image shape and class count.
    pub fn new(public: Dataset, deletable: Dataset, validation: Dataset, test: Dataset) -> Result<Self, DataError> {
        for (split, d) in [("deletable", &deletable), ("validation", &validation), ("test", &test)] {
            if (d.rows, d.cols) != (public.rows, public.cols) {
                return Err(DataError::SplitShape {
                    split,
                    rows: d.rows,
                    cols: d.cols,
                    expected_rows: public.rows,
                    expected_cols: public.cols,
                });
            }
        }
        Ok(Self { public, deletable, validation, test })
    }

    /// Splits one labelled set by position: the first 40 % public, the next 45 % deletable, 5 % validation and
    /// the last 10 % test. Used for single-file sources (CSV).
    pub fn by_position(all: Dataset) -> Result<Self, DataError> {
        let n = all.len();
        let cut = |fraction: usize| n * fraction / 100;
        let (a, b, c) = (cut(40), cut(85), cut(90));
        let range = |lo: usize, hi: usize| all.select(&(lo..hi).collect::<Vec<_>>());
        Self::new(range(0, a), range(a, b), range(b, c), range(c, n))
    }
}

/// Decompresses gzip input (recognised by its magic bytes) of at most [`MAX_DECOMPRESSED_BYTES`]; other input is
/// returned as is.
pub fn maybe_gunzip(file: &str, bytes: Vec<u8>) -> Result<Vec<u8>, DataError> {
    gunzip_limited(file, bytes, MAX_DECOMPRESSED_BYTES)
}

fn gunzip_limited(file: &str, bytes: Vec<u8>, limit: u64) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&GZIP_MAGIC) {
        return Ok(bytes);
    }
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it" without inflating the rest.
    GzDecoder::new(&bytes[..])
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| DataError::Gzip { file: file.to_owned(), reason: one_line(&e.to_string()) })?;
    if out.len() as u64 > limit {
        return Err(DataError::Decompressed { file: file.to_owned(), limit });
    }
    Ok(out)
}

/// Error messages are one line (the trainer prints `error: …`, the page shows one line): a library's message with
/// line breaks is joined.
fn one_line(text: &str) -> String {
    text.split(['\n', '\r']).filter(|part| !part.trim().is_empty()).collect::<Vec<_>>().join("; ")
}

/// Pixels per image of a `rows × cols` shape, if it is one the loaders accept.
fn image_pixels(file: &str, rows: u32, cols: u32) -> Result<u64, DataError> {
    let pixels = u64::from(rows) * u64::from(cols);
    if pixels == 0 || pixels > MAX_IMAGE_PIXELS {
        return Err(DataError::ImageShape { file: file.to_owned(), rows, cols });
    }
    Ok(pixels)
}

fn be_u32(file: &str, bytes: &[u8], at: usize, what: &'static str) -> Result<u32, DataError> {
    let word: Option<[u8; 4]> = bytes.get(at..at.saturating_add(4)).and_then(|s| s.try_into().ok());
    let word = word.ok_or_else(|| DataError::Truncated {
        file: file.to_owned(),
        what,
        expected: at as u64 + 4,
        found: bytes.len() as u64,
    })?;
    Ok(u32::from_be_bytes(word))
}

/// Parses IDX images (already decompressed): `(count, rows, cols, pixels)`.
pub fn parse_idx_images(file: &str, bytes: &[u8]) -> Result<(u64, u32, u32, Vec<u8>), DataError> {
    let magic = be_u32(file, bytes, 0, "the IDX header")?;
    if magic != IDX_IMAGES_MAGIC {
        return Err(DataError::BadMagic {
            file: file.to_owned(),
            found: magic,
            expected: IDX_IMAGES_MAGIC,
            kind: "u8 images, 3 dimensions",
        });
    }
    let count = u64::from(be_u32(file, bytes, 4, "the IDX header")?);
    let rows = be_u32(file, bytes, 8, "the IDX header")?;
    let cols = be_u32(file, bytes, 12, "the IDX header")?;
    let pixels = image_pixels(file, rows, cols)?;
    // Both factors are bounded (count < 2³², pixels ≤ 2²⁴), but checked anyway: a header is untrusted input.
    let expected = count
        .checked_mul(pixels)
        .and_then(|n| n.checked_add(16))
        .filter(|&n| usize::try_from(n).is_ok())
        .ok_or_else(|| DataError::TooLarge { file: file.to_owned(), count, rows, cols })?;
    check_size(file, bytes.len() as u64, expected, count, "the images the header declares")?;
    Ok((count, rows, cols, bytes.get(16..).unwrap_or_default().to_vec()))
}

/// Parses IDX labels (already decompressed).
pub fn parse_idx_labels(file: &str, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let magic = be_u32(file, bytes, 0, "the IDX header")?;
    if magic != IDX_LABELS_MAGIC {
        return Err(DataError::BadMagic {
            file: file.to_owned(),
            found: magic,
            expected: IDX_LABELS_MAGIC,
            kind: "u8 labels, 1 dimension",
        });
    }
    let count = u64::from(be_u32(file, bytes, 4, "the IDX header")?);
    check_size(file, bytes.len() as u64, 8 + count, count, "the labels the header declares")?;
    Ok(bytes.get(8..).unwrap_or_default().to_vec())
}

fn check_size(file: &str, found: u64, expected: u64, count: u64, what: &'static str) -> Result<(), DataError> {
    if found < expected {
        return Err(DataError::Truncated { file: file.to_owned(), what, expected, found });
    }
    if found > expected {
        return Err(DataError::TrailingBytes { file: file.to_owned(), count, found: found - expected });
    }
    Ok(())
}

/// Builds a data set from an IDX image file and an IDX label file (contents, gzip or raw).
pub fn from_idx(
    images_file: &str,
    images: Vec<u8>,
    labels_file: &str,
    labels: Vec<u8>,
    classes: u8,
) -> Result<Dataset, DataError> {
    let images = maybe_gunzip(images_file, images)?;
    let labels = maybe_gunzip(labels_file, labels)?;
    let (count, rows, cols, pixels) = parse_idx_images(images_file, &images)?;
    let labels = parse_idx_labels(labels_file, &labels)?;
    if count != labels.len() as u64 {
        return Err(DataError::CountMismatch {
            images: images_file.to_owned(),
            images_count: count,
            labels: labels_file.to_owned(),
            labels_count: labels.len() as u64,
        });
    }
    if count == 0 {
        return Err(DataError::Empty { file: images_file.to_owned() });
    }
    check_labels(labels_file, &labels, classes)?;
    Ok(Dataset { rows, cols, classes, pixels, labels, text: None })
}

/// A data set as gzip-compressed IDX files (images, labels): what [`from_idx`] reads back.
pub fn to_idx_gz(data: &Dataset) -> (Vec<u8>, Vec<u8>) {
    use std::io::Write;
    let n = data.len() as u32;
    let mut images = vec![0, 0, 0x08, 3];
    for dim in [n, data.rows, data.cols] {
        images.extend_from_slice(&dim.to_be_bytes());
    }
    images.extend_from_slice(&data.pixels);
    let mut labels = vec![0, 0, 0x08, 1];
    labels.extend_from_slice(&n.to_be_bytes());
    labels.extend_from_slice(&data.labels);
    let gzip = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing to a Vec cannot fail.
        e.write_all(bytes).and_then(|()| e.finish()).unwrap_or_default()
    };
    (gzip(&images), gzip(&labels))
}

fn check_labels(file: &str, labels: &[u8], classes: u8) -> Result<(), DataError> {
    match labels.iter().position(|&l| l >= classes) {
        Some(index) => {
            Err(DataError::LabelOutOfRange { file: file.to_owned(), index, label: i64::from(labels[index]), classes })
        }
        None => Ok(()),
    }
}

/// Parses CSV text: `label,p0,…,p{rows·cols−1}` per line, an optional header line (its first field not a number).
pub fn from_csv(file: &str, text: &[u8], rows: u32, cols: u32, classes: u8) -> Result<Dataset, DataError> {
    let text = maybe_gunzip(file, text.to_vec())?;
    let per_image = usize::try_from(image_pixels(file, rows, cols)?).map_err(|_| DataError::ImageShape {
        file: file.to_owned(),
        rows,
        cols,
    })?;
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(&text[..]);
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| DataError::Csv {
            file: file.to_owned(),
            line: i as u64 + 1,
            reason: one_line(&e.to_string()),
        })?;
        let line = record.position().map_or(i as u64 + 1, |p| p.line());
        let csv_error = |reason: String| DataError::Csv { file: file.to_owned(), line, reason };
        let first = record.get(0).unwrap_or("").trim();
        if i == 0 && first.parse::<f64>().is_err() {
            continue; // header line
        }
        if record.len() != per_image + 1 {
            return Err(csv_error(format!(
                "{} fields, expected 1 label + {per_image} pixels ({rows}×{cols})",
                record.len()
            )));
        }
        let label: i64 = first.parse().map_err(|_| csv_error(format!("label {first:?} is not an integer")))?;
        if label < 0 || label >= i64::from(classes) {
            return Err(DataError::LabelOutOfRange { file: file.to_owned(), index: labels.len(), label, classes });
        }
        labels.push(label as u8);
        for (k, field) in record.iter().skip(1).enumerate() {
            let value: f64 =
                field.trim().parse().map_err(|_| csv_error(format!("pixel {k} = {field:?} is not a number")))?;
            if !(0.0..=255.0).contains(&value) || value.fract() != 0.0 {
                // Debug-quoted: a quoted CSV field may hold a line break, and an error message is one line.
                return Err(csv_error(format!("pixel {k} = {field:?} is not an integer in 0..=255")));
            }
            pixels.push(value as u8);
        }
    }
    if labels.is_empty() {
        return Err(DataError::Empty { file: file.to_owned() });
    }
    Ok(Dataset { rows, cols, classes, pixels, labels, text: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn idx_images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [IDX_IMAGES_MAGIC, n, rows, cols] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        v.extend((0..n * rows * cols).map(|i| (i % 256) as u8));
        v
    }

    fn idx_labels(labels: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&IDX_LABELS_MAGIC.to_be_bytes());
        v.extend_from_slice(&(labels.len() as u32).to_be_bytes());
        v.extend_from_slice(labels);
        v
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn written_idx_reads_back() {
        let data = from_idx("i", idx_images(3, 2, 2), "l", idx_labels(&[0, 9, 4]), 10).unwrap();
        let (images, labels) = to_idx_gz(&data);
        assert_eq!(from_idx("i", images, "l", labels, 10).unwrap(), data);
    }

    #[test]
    fn idx_round_trip_raw_and_gzip() {
        let d = from_idx("i", idx_images(3, 2, 2), "l", idx_labels(&[0, 9, 4]), 10).unwrap();
        assert_eq!((d.len(), d.rows, d.cols), (3, 2, 2));
        assert_eq!(d.image(1), &[4, 5, 6, 7]);
        let g = from_idx("i", gzip(&idx_images(3, 2, 2)), "l", gzip(&idx_labels(&[0, 9, 4])), 10).unwrap();
        assert_eq!(d, g);
    }

    #[test]
    fn malformed_idx_files_name_the_file_and_the_problem() {
        let err = |images: Vec<u8>, labels: Vec<u8>| from_idx("img.idx", images, "lab.idx", labels, 10).unwrap_err();
        let mut bad = idx_images(3, 2, 2);
        bad[3] = 0x01;
        assert!(matches!(err(bad, idx_labels(&[0, 1, 2])), DataError::BadMagic { ref file, .. } if file == "img.idx"));
        assert!(
            matches!(err(idx_images(3, 2, 2), idx_images(3, 2, 2)), DataError::BadMagic { ref file, .. } if file == "lab.idx")
        );
        let mut short = idx_images(3, 2, 2);
        short.truncate(20);
        assert_eq!(
            err(short, idx_labels(&[0, 1, 2])),
            DataError::Truncated {
                file: "img.idx".into(),
                what: "the images the header declares",
                expected: 28,
                found: 20
            }
        );
        assert!(matches!(err(idx_images(3, 2, 2)[..10].to_vec(), idx_labels(&[0])), DataError::Truncated { .. }));
        let mut long = idx_labels(&[0, 1, 2]);
        long.push(7);
        assert!(matches!(err(idx_images(3, 2, 2), long), DataError::TrailingBytes { .. }));
        assert!(matches!(err(idx_images(3, 2, 2), idx_labels(&[0, 1])), DataError::CountMismatch { .. }));
        assert_eq!(
            err(idx_images(3, 2, 2), idx_labels(&[0, 12, 1])),
            DataError::LabelOutOfRange { file: "lab.idx".into(), index: 1, label: 12, classes: 10 }
        );
        assert!(matches!(err(vec![0x1f, 0x8b, 1, 2, 3], idx_labels(&[0])), DataError::Gzip { .. }));
        assert!(matches!(err(idx_images(0, 2, 2), idx_labels(&[])), DataError::Empty { .. }));
        let message = err(idx_images(3, 2, 2), idx_labels(&[0, 1])).to_string();
        assert!(message.contains("img.idx") && message.contains("lab.idx"), "{message}");
    }

    #[test]
    fn csv_with_and_without_header() {
        let text = b"label,a,b,c,d\n3,0,1,2,255\n1,4,5,6,7\n";
        let d = from_csv("x.csv", text, 2, 2, 10).unwrap();
        assert_eq!(d.labels, vec![3, 1]);
        assert_eq!(d.image(0), &[0, 1, 2, 255]);
        let d2 = from_csv("x.csv", b"3,0,1,2,255\n1,4,5,6,7\n", 2, 2, 10).unwrap();
        assert_eq!(d, d2);
    }

    #[test]
    fn malformed_csv_names_file_and_line() {
        let e = from_csv("x.csv", b"3,0,1,2\n", 2, 2, 10).unwrap_err();
        assert_eq!(
            e,
            DataError::Csv {
                file: "x.csv".into(),
                line: 1,
                reason: "4 fields, expected 1 label + 4 pixels (2×2)".into()
            }
        );
        let e = from_csv("x.csv", b"3,0,1,2,3\n1,0,1,2,300\n", 2, 2, 10).unwrap_err();
        assert!(matches!(e, DataError::Csv { line: 2, .. }), "{e}");
        let e = from_csv("x.csv", b"3,0,1,2,3\n10,0,1,2,3\n", 2, 2, 10).unwrap_err();
        assert_eq!(e, DataError::LabelOutOfRange { file: "x.csv".into(), index: 1, label: 10, classes: 10 });
        let e = from_csv("x.csv", b"3,0,1,x,3\n", 2, 2, 10).unwrap_err();
        assert!(e.to_string().contains("pixel 2"), "{e}");
        assert!(matches!(from_csv("x.csv", b"", 2, 2, 10), Err(DataError::Empty { .. })));
    }

    /// Every error of a loader is one line naming the file.
    fn assert_one_line(e: &DataError, file: &str) {
        let message = e.to_string();
        assert!(!message.contains('\n') && message.contains(file), "{message:?}");
    }

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        std::iter::once(magic).chain(dims.iter().copied()).flat_map(u32::to_be_bytes).collect()
    }

    #[test]
    fn idx_headers_whose_sizes_overflow_are_errors() {
        // n·rows·cols overflows u64 (and u32 per image): refused on the image shape, before any multiplication.
        let e = parse_idx_images("big.idx", &header(IDX_IMAGES_MAGIC, &[u32::MAX; 3])).unwrap_err();
        assert_eq!(e, DataError::ImageShape { file: "big.idx".into(), rows: u32::MAX, cols: u32::MAX });
        assert_one_line(&e, "big.idx");
        // The largest accepted shape with the largest count: a size that fits u64, so the file is merely short.
        let e = parse_idx_images("big.idx", &header(IDX_IMAGES_MAGIC, &[u32::MAX, 4096, 4096])).unwrap_err();
        assert!(matches!(e, DataError::Truncated { found: 16, .. } | DataError::TooLarge { .. }), "{e}");
        assert_one_line(&e, "big.idx");
        for (rows, cols) in [(0, 5), (5, 0), (0, 0), (4097, 4096)] {
            let e = parse_idx_images("z.idx", &header(IDX_IMAGES_MAGIC, &[1, rows, cols])).unwrap_err();
            assert_eq!(e, DataError::ImageShape { file: "z.idx".into(), rows, cols });
        }
        // Through from_idx too, with a huge label count.
        let e = from_idx(
            "i.idx",
            header(IDX_IMAGES_MAGIC, &[u32::MAX, 1, 1]),
            "l.idx",
            header(IDX_LABELS_MAGIC, &[u32::MAX]),
            10,
        )
        .unwrap_err();
        assert_one_line(&e, "i.idx");
    }

    #[test]
    fn idx_headers_shorter_than_a_word_are_truncated() {
        for len in 0..16 {
            let bytes = &idx_images(1, 1, 1)[..len];
            let e = parse_idx_images("s.idx", bytes).unwrap_err();
            assert!(matches!(e, DataError::Truncated { .. } | DataError::BadMagic { .. }), "{len}: {e}");
            assert_one_line(&e, "s.idx");
        }
        for len in 0..8 {
            let e = parse_idx_labels("s.idx", &idx_labels(&[1])[..len]).unwrap_err();
            assert_one_line(&e, "s.idx");
        }
    }

    #[test]
    fn gzip_input_is_capped() {
        let zeros = gzip(&[0; 1000]);
        assert_eq!(gunzip_limited("z.gz", zeros.clone(), 1000).unwrap().len(), 1000);
        let e = gunzip_limited("z.gz", zeros, 999).unwrap_err();
        assert_eq!(e, DataError::Decompressed { file: "z.gz".into(), limit: 999 });
        assert_one_line(&e, "z.gz");
        // A real bomb is cut at the limit rather than inflated: 64 MiB of zeros compress to about 64 KB.
        let bomb = gzip(&vec![0; 64 << 20]);
        assert!(matches!(gunzip_limited("bomb.gz", bomb, 1 << 20), Err(DataError::Decompressed { .. })));
        assert_eq!(MAX_DECOMPRESSED_BYTES, 512 << 20);
    }

    #[test]
    fn damaged_gzip_is_a_one_line_error() {
        let good = gzip(&idx_labels(&[1, 2, 3]));
        for cut in [2, 5, 10, good.len() - 1] {
            let e = maybe_gunzip("d.gz", good[..cut].to_vec()).unwrap_err();
            assert!(matches!(e, DataError::Gzip { .. }), "{cut}: {e}");
            assert_one_line(&e, "d.gz");
        }
        // Only the magic decides: one byte is returned as it is.
        assert_eq!(maybe_gunzip("d.gz", vec![0x1f]).unwrap(), vec![0x1f]);
    }

    #[test]
    fn csv_shapes_that_overflow_are_errors() {
        for (rows, cols) in [(65536, 65536), (u32::MAX, u32::MAX), (0, 28), (28, 0)] {
            let e = from_csv("x.csv", b"1,2\n", rows, cols, 10).unwrap_err();
            assert_eq!(e, DataError::ImageShape { file: "x.csv".into(), rows, cols });
            assert_one_line(&e, "x.csv");
        }
    }

    #[test]
    fn csv_errors_are_one_line() {
        // A quoted field may hold a line break; the message quotes it.
        let e = from_csv("x.csv", b"3,0,1,2,\"300\n\"\n", 2, 2, 10).unwrap_err();
        assert_one_line(&e, "x.csv");
        let e = from_csv("x.csv", b"3,0,1,2,\"x\ny\"\n", 2, 2, 10).unwrap_err();
        assert_one_line(&e, "x.csv");
        let e = from_csv("x.csv", b"3,0,1,2,\xff\n", 2, 2, 10).unwrap_err();
        assert!(matches!(e, DataError::Csv { line: 1, .. }), "{e}");
        assert_one_line(&e, "x.csv");
        let e = from_csv("x.csv", &gzip(b"3,0,1,2,3\n")[..12], 2, 2, 10).unwrap_err();
        assert_one_line(&e, "x.csv");
        assert_eq!(one_line("a\n\nb\r\nc"), "a; b; c");
    }

    #[test]
    fn positional_splits_cover_everything_once() {
        let n = 200u32;
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let all = from_idx("i", idx_images(n, 1, 1), "l", idx_labels(&labels), 10).unwrap();
        let s = Splits::by_position(all).unwrap();
        assert_eq!([s.public.len(), s.deletable.len(), s.validation.len(), s.test.len()], [80, 90, 10, 20]);
    }
}
