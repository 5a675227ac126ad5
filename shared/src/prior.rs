//! Per-slice deletion prior: the probability that a deletion request falls into each slice.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Tolerance on the sum of a prior read from a file (text round-trips of decimals are not exact).
pub const SUM_TOLERANCE: f64 = 1e-6;

#[derive(Debug, Error, PartialEq)]
pub enum PriorError {
    #[error("prior is empty: it needs one probability per slice")]
    Empty,
    #[error("prior has {found} entries but there are {expected} slices")]
    WrongLength { expected: usize, found: usize },
    #[error("prior entry {index} is {value}: every entry must be a finite number ≥ 0")]
    InvalidEntry { index: usize, value: f64 },
    #[error("prior sums to {sum}, not 1 (tolerance {SUM_TOLERANCE})")]
    BadSum { sum: f64 },
    #[error("prior is not a JSON array of numbers: {0}")]
    Json(String),
}

/// Validated per-slice deletion probabilities (length L, non-negative, summing to 1).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Prior(Vec<f64>);

impl Prior {
    pub fn new(values: Vec<f64>) -> Result<Self, PriorError> {
        if values.is_empty() {
            return Err(PriorError::Empty);
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite() || **v < 0.0) {
            return Err(PriorError::InvalidEntry { index, value });
        }
        let sum: f64 = values.iter().sum();
        if (sum - 1.0).abs() > SUM_TOLERANCE {
            return Err(PriorError::BadSum { sum });
        }
        Ok(Self(values))
    }

    /// The uniform prior over `slices` slices.
    pub fn uniform(slices: u16) -> Self {
        Self(vec![1.0 / f64::from(slices.max(1)); usize::from(slices.max(1))])
    }

    /// Parses a JSON array of numbers and checks it has one entry per slice.
    pub fn from_json(text: &str, slices: u16) -> Result<Self, PriorError> {
        let values: Vec<f64> = serde_json::from_str(text).map_err(|e| PriorError::Json(e.to_string()))?;
        if values.len() != usize::from(slices) {
            return Err(PriorError::WrongLength { expected: usize::from(slices), found: values.len() });
        }
        Self::new(values)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn values(&self) -> &[f64] {
        &self.0
    }

    /// True when all entries are equal (within rounding).
    pub fn is_uniform(&self) -> bool {
        self.0.windows(2).all(|w| (w[0] - w[1]).abs() <= 1e-12)
    }
}

impl<'de> Deserialize<'de> for Prior {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let values = Vec::<f64>::deserialize(deserializer)?;
        Prior::new(values).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_entries_and_sum() {
        assert!(Prior::new(vec![0.5, 0.5]).is_ok());
        assert_eq!(Prior::new(vec![]), Err(PriorError::Empty));
        assert_eq!(Prior::new(vec![1.5, -0.5]), Err(PriorError::InvalidEntry { index: 1, value: -0.5 }));
        assert!(matches!(Prior::new(vec![0.2, 0.2]), Err(PriorError::BadSum { .. })));
        assert!(matches!(Prior::new(vec![f64::NAN, 1.0]), Err(PriorError::InvalidEntry { index: 0, .. })));
        assert_eq!(Prior::from_json("[0.5, 0.5]", 3), Err(PriorError::WrongLength { expected: 3, found: 2 }));
        assert!(matches!(Prior::from_json("{\"a\": 1}", 1), Err(PriorError::Json(_))));
        assert!(Prior::uniform(6).is_uniform());
    }
}
