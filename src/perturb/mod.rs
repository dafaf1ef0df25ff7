//! The perturbation engine: a declarative artifact catalog (`perturbations/*.toml`) applied
//! deterministically from a seed.

use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One artifact from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Stable identifier, e.g. `apology`.
    pub id: String,
    /// Short human title.
    pub title: String,
    /// What the artifact does.
    pub description: String,
    /// Citation of where the artifact comes from.
    pub source: String,
    /// What the literature expects a judge to do with it.
    pub expected_effect: String,
    /// How the artifact is injected.
    pub operation: Operation,
}

/// How an artifact changes an answer. `Position` changes nothing in the text: the design realises it
/// as an order swap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    /// Put `text` before the answer.
    Prepend {
        /// Injected text (include any separating space).
        text: String,
    },
    /// Put `text` after the answer.
    Append {
        /// Injected text (include any separating space).
        text: String,
    },
    /// Put `prefix` before and `suffix` after the answer.
    Wrap {
        /// Text before the answer.
        prefix: String,
        /// Text after the answer.
        suffix: String,
    },
    /// Replace every match of `pattern` with `replacement` (regex syntax, `$1` groups).
    RegexReplace {
        /// Regular expression.
        pattern: String,
        /// Replacement string.
        replacement: String,
    },
    /// Shuffle sentences or list items with the seeded RNG.
    Reorder {
        /// What to shuffle.
        unit: ReorderUnit,
    },
    /// Repeat list items (or sentences when there is no list) to pad the answer.
    Repeat {
        /// How many extra copies of the padded unit to add.
        times: usize,
    },
    /// Pick one variant per item with the seeded RNG; each variant is a prepend/append/wrap.
    Template {
        /// Candidate variants.
        variants: Vec<Variant>,
    },
    /// Swap the order of the two answers (no text change).
    Position,
}

/// Unit shuffled by [`Operation::Reorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReorderUnit {
    /// Sentences.
    Sentences,
    /// Markdown/numbered list items (falls back to sentences when the answer has no list).
    ListItems,
}

/// One variant of a [`Operation::Template`]: text placed before and/or after the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Text before the answer (may be empty).
    #[serde(default)]
    pub prefix: String,
    /// Text after the answer (may be empty).
    #[serde(default)]
    pub suffix: String,
}

/// The result of applying an artifact to one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perturbation {
    /// The perturbed answer.
    pub text: String,
    /// Byte ranges of `text` that were injected or moved (for highlighting in reports).
    pub injected: Vec<Range<usize>>,
}

/// Why a catalog file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum PerturbError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File path.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The file is not a valid artifact definition.
    #[error("{file}: field `{field}`: {message}")]
    Invalid {
        /// File path.
        file: String,
        /// The offending field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// The set of known artifacts, ordered by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    artifacts: Vec<Artifact>,
}

impl Catalog {
    /// The shipped catalog (`perturbations/*.toml`, embedded in the binary).
    pub fn builtin() -> Catalog {
        todo!("perturb helper")
    }

    /// Add or override artifacts from every `*.toml` file in `dir`.
    pub fn extend_from_dir(&mut self, dir: &Path) -> Result<(), PerturbError> {
        let _ = dir;
        todo!("perturb helper")
    }

    /// Look an artifact up by id.
    pub fn get(&self, id: &str) -> Option<&Artifact> {
        self.artifacts.iter().find(|a| a.id == id)
    }

    /// All artifacts, ordered by id.
    pub fn artifacts(&self) -> &[Artifact] {
        &self.artifacts
    }
}

impl Artifact {
    /// True for the order-swap artifact, which the design realises without changing any text.
    pub fn is_position(&self) -> bool {
        matches!(self.operation, Operation::Position)
    }

    /// Apply the artifact to `text`. Deterministic in (`seed`, `key`, artifact id): the same inputs
    /// give byte-identical output. `key` identifies the item, e.g. `"<pair id>/a"`.
    pub fn apply(&self, text: &str, seed: u64, key: &str) -> Perturbation {
        let _ = (text, seed, key);
        todo!("perturb helper")
    }
}
