//! Paired answers: the unit an audit is built on.
//!
//! Loads pairs from JSONL (native schema, RewardBench-style `{prompt, chosen, rejected}`,
//! JudgeBench-style `{pair_id, question, response_A, response_B, label}`) and CSV with a header row,
//! and ships a built-in sample set for the demo.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which answer of a pair is the gold (safer or better) one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Preference {
    /// `response_a` is preferred.
    A,
    /// `response_b` is preferred.
    B,
    /// Neither is preferred.
    Tie,
}

/// One prompt with two candidate answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pair {
    /// Unique, stable identifier.
    pub id: String,
    /// The user turn both answers respond to.
    pub prompt: String,
    /// First candidate answer (identity "a").
    pub response_a: String,
    /// Second candidate answer (identity "b").
    pub response_b: String,
    /// Gold label, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<Preference>,
    /// Free-form category (harm type, subset, bias type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// What the gold label means, e.g. `safety` or `helpfulness`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label_kind: Option<String>,
}

/// A record that was skipped under `--skip-invalid`, kept so the report can count it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvalidRecord {
    /// File the record came from.
    pub file: String,
    /// 1-based line number (CSV: the record's line).
    pub line: usize,
    /// The offending field.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// A loaded, validated set of pairs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dataset {
    /// Human-readable name (file name or `builtin`).
    pub name: String,
    /// Pairs in file order; ids are unique.
    pub pairs: Vec<Pair>,
    /// Records skipped because they were invalid (only with `skip_invalid`).
    pub skipped: Vec<InvalidRecord>,
    /// sha256 (hex) over the canonical JSON of `pairs`, so two runs can prove they saw the same data.
    pub hash: String,
}

/// How to load a dataset file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Skip invalid records (and count them) instead of refusing the whole file.
    pub skip_invalid: bool,
    /// Seed string for placing RewardBench `chosen` on a or b; `None` uses `judge-audit-pairs-v1`.
    pub placement_seed: Option<String>,
}

/// Why a dataset could not be loaded. Every variant names the file; record errors name line and field.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// A record is malformed.
    #[error("{file}:{line}: field `{field}`: {message}")]
    Invalid {
        /// File path.
        file: String,
        /// 1-based line.
        line: usize,
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// Two records share an id.
    #[error("{file}:{line}: field `id`: duplicate id `{id}` (first seen on line {first_line})")]
    DuplicateId {
        /// File path.
        file: String,
        /// Line of the second occurrence.
        line: usize,
        /// The repeated id.
        id: String,
        /// Line of the first occurrence.
        first_line: usize,
    },
    /// The file held no usable pair.
    #[error("{file}: no valid pairs")]
    Empty {
        /// File path.
        file: String,
    },
}

/// Load pairs from a JSONL or CSV file (format chosen by extension, schema detected per record).
pub fn load(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let _ = (path, options);
    todo!("dataset helper")
}

/// The built-in sample set (safety prompts in several categories), embedded in the binary.
pub fn builtin() -> Dataset {
    todo!("dataset helper")
}
