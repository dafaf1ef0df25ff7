//! Paired answers: the unit an audit is built on.
//!
//! Loads pairs from JSONL (native schema, RewardBench-style `{prompt, chosen, rejected}`,
//! JudgeBench-style `{pair_id, question, response_A, response_B, label}`) and CSV with a header row,
//! and ships a built-in sample set for the demo.
//!
//! Every record is validated; errors name the file, the 1-based line the record starts on and the
//! offending field. With [`LoadOptions::skip_invalid`] bad records are collected in
//! [`Dataset::skipped`] instead of failing the load.

mod csv_format;
mod jsonl;
pub mod reference;
pub mod single;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Seed used to place RewardBench `chosen` answers on a or b when [`LoadOptions::placement_seed`]
/// is `None`. The shared data sets were normalised with the same string.
pub const DEFAULT_PLACEMENT_SEED: &str = "judge-audit-pairs-v1";

/// The built-in pairs, stored RewardBench-style (`chosen` = the safer answer) so that the loader's
/// own seeded placement decides a/b: one rule for every source.
const BUILTIN_PAIRS: &str = include_str!("builtin_pairs.jsonl");

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
    /// The file extension is not one the loader understands.
    #[error("{file}: unsupported dataset format (expected a .jsonl, .json or .csv file)")]
    UnsupportedFormat {
        /// File path.
        file: String,
    },
}

impl Preference {
    /// Parse a `preferred` value: `a`, `b` or `tie` (case-insensitive, surrounding whitespace
    /// ignored). An empty value means "no label" and yields `Ok(None)`.
    pub fn parse_optional(value: &str) -> Result<Option<Preference>, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "a" => Ok(Some(Preference::A)),
            "b" => Ok(Some(Preference::B)),
            "tie" => Ok(Some(Preference::Tie)),
            _ => Err(format!("expected `a`, `b` or `tie`, got `{value}`")),
        }
    }
}

/// Whether a RewardBench `chosen` answer goes on `response_b`: bit 0 (the lowest bit of the first
/// byte) of `sha256("<seed>:" + id)`. Depends only on the id, so it does not follow file order.
pub fn chosen_on_b(seed: &str, id: &str) -> bool {
    let digest = Sha256::digest(format!("{seed}:{id}").as_bytes());
    digest[0] & 1 == 1
}

/// sha256 (hex) over the canonical JSON (`serde_json`) of `pairs`, as stored in [`Dataset::hash`].
pub fn hash_pairs(pairs: &[Pair]) -> String {
    let json = serde_json::to_vec(pairs).expect("a Vec<Pair> always serialises");
    hex::encode(Sha256::digest(&json))
}

/// Write `pairs` as JSONL in the native schema (one object per line, absent options omitted).
pub fn write_jsonl(pairs: &[Pair], path: &Path) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for pair in pairs {
        serde_json::to_writer(&mut out, pair)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Load pairs from a JSONL or CSV file (format chosen by extension, schema detected per record).
pub fn load(path: &Path, options: &LoadOptions) -> Result<Dataset, DatasetError> {
    let file = path.display().to_string();
    let extension = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let format = match extension.as_str() {
        "jsonl" | "json" => Format::Jsonl,
        "csv" => Format::Csv,
        _ => return Err(DatasetError::UnsupportedFormat { file }),
    };
    let bytes = std::fs::read(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.clone());
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.clone());
    load_bytes(&bytes, format, &file, &name, &stem, options)
}

/// The built-in sample set (safety prompts in several categories), embedded in the binary.
pub fn builtin() -> Dataset {
    load_bytes(
        BUILTIN_PAIRS.as_bytes(),
        Format::Jsonl,
        "builtin_pairs.jsonl",
        "builtin",
        "builtin",
        &LoadOptions::default(),
    )
    .expect("the embedded built-in pairs are valid (checked by the dataset tests)")
}

/// Input format, chosen from the file extension.
#[derive(Debug, Clone, Copy)]
enum Format {
    Jsonl,
    Csv,
}

/// What is wrong with one record; the caller adds file and line.
#[derive(Debug)]
struct RecordError {
    field: String,
    message: String,
}

impl RecordError {
    fn new(field: &str, message: impl Into<String>) -> Self {
        RecordError {
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Shared bookkeeping for both formats: skip-or-fail, duplicate ids, the final `Empty` check.
struct Collector<'a> {
    file: &'a str,
    skip_invalid: bool,
    pairs: Vec<Pair>,
    skipped: Vec<InvalidRecord>,
    first_line: HashMap<String, usize>,
}

impl<'a> Collector<'a> {
    fn new(file: &'a str, skip_invalid: bool) -> Self {
        Collector {
            file,
            skip_invalid,
            pairs: Vec::new(),
            skipped: Vec::new(),
            first_line: HashMap::new(),
        }
    }

    /// Take one parsed record (or its error) that starts on `line`.
    fn accept(
        &mut self,
        line: usize,
        record: Result<Pair, RecordError>,
    ) -> Result<(), DatasetError> {
        let pair = match record {
            Ok(pair) => pair,
            Err(e) => return self.reject(line, e.field, e.message),
        };
        if let Some(&first_line) = self.first_line.get(&pair.id) {
            if self.skip_invalid {
                let message = format!(
                    "duplicate id `{}` (first seen on line {first_line})",
                    pair.id
                );
                return self.reject(line, "id".to_string(), message);
            }
            return Err(DatasetError::DuplicateId {
                file: self.file.to_string(),
                line,
                id: pair.id,
                first_line,
            });
        }
        self.first_line.insert(pair.id.clone(), line);
        self.pairs.push(pair);
        Ok(())
    }

    /// Record a bad record, or fail the load when skipping is off.
    fn reject(&mut self, line: usize, field: String, message: String) -> Result<(), DatasetError> {
        if !self.skip_invalid {
            return Err(DatasetError::Invalid {
                file: self.file.to_string(),
                line,
                field,
                message,
            });
        }
        self.skipped.push(InvalidRecord {
            file: self.file.to_string(),
            line,
            field,
            message,
        });
        Ok(())
    }

    fn finish(self, name: &str) -> Result<Dataset, DatasetError> {
        if self.pairs.is_empty() {
            return Err(DatasetError::Empty {
                file: self.file.to_string(),
            });
        }
        Ok(Dataset {
            name: name.to_string(),
            hash: hash_pairs(&self.pairs),
            pairs: self.pairs,
            skipped: self.skipped,
        })
    }
}

/// Parse an in-memory file. `file` is used in errors, `name` becomes [`Dataset::name`] and `stem`
/// builds fallback ids for RewardBench records without one.
fn load_bytes(
    bytes: &[u8],
    format: Format,
    file: &str,
    name: &str,
    stem: &str,
    options: &LoadOptions,
) -> Result<Dataset, DatasetError> {
    // A BOM (common in files saved by spreadsheet tools) would otherwise break the first record.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut collector = Collector::new(file, options.skip_invalid);
    match format {
        Format::Jsonl => {
            let seed = options
                .placement_seed
                .as_deref()
                .unwrap_or(DEFAULT_PLACEMENT_SEED);
            jsonl::parse(bytes, stem, seed, &mut collector)?;
        }
        Format::Csv => csv_format::parse(bytes, &mut collector)?,
    }
    collector.finish(name)
}

/// Require a non-blank text value for `field` (blank = empty or only whitespace).
fn require_text(field: &str, value: String) -> Result<String, RecordError> {
    if value.trim().is_empty() {
        return Err(RecordError::new(field, "is empty (only whitespace)"));
    }
    Ok(value)
}

/// An optional free-text value: blank means absent.
fn optional_text(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests;
