//! Helpers shared by the workspace-level integration tests.

use std::path::PathBuf;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use s3t::dataset::Dataset;
use s3t::text::TextTokenizer;

/// The test-sized random BERT in Hugging Face's layout (`tests/fixtures/hf/tiny-bert`).
pub fn tiny_bert_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf/tiny-bert")
}

/// Seeded texts of 1 to `max_words` words of the test-sized BERT's vocabulary (the longer ones cut at the tokenizer's
/// `max_tokens`) with two random labels.
pub fn synthetic_texts(tokenizer: &TextTokenizer, n: usize, max_words: usize, seed: u64) -> Dataset {
    const WORDS: [&str; 12] =
        ["the", "film", "is", "good", "bad", "very", "dull", "fun", "plot", "and", "not", "acting"];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let texts: Vec<String> = (0..n)
        .map(|_| {
            let len = rng.random_range(1..=max_words);
            (0..len).map(|_| WORDS[rng.random_range(0..WORDS.len())]).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let labels = (0..n).map(|_| rng.random_range(0..2u8)).collect();
    tokenizer.dataset(texts, labels, 2).expect("the texts tokenize")
}
