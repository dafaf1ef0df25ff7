//! The perturbation engine: a declarative artifact catalog (`perturbations/*.toml`) applied
//! deterministically from a seed.
//!
//! # Catalog files
//!
//! One TOML file per artifact. The files shipped in `perturbations/` are embedded in the binary
//! ([`Catalog::builtin`]); [`Catalog::extend_from_dir`] adds or overrides artifacts from a user
//! directory. A file has the string fields `id` (`[a-z0-9_-]+`), `title`, `description`,
//! `source` (citation) and `expected_effect`, and an `[operation]` table whose `kind` is one of
//! `prepend`, `append`, `wrap`, `regex_replace`, `reorder`, `repeat`, `template`, `verbose`,
//! `bullets`, `position`, `context`, `rewrite` (see [`Operation`] for each kind's fields), or instead of the table a
//! top-level `compose = ["a", "b"]` that stacks other artifacts. Optional: `detector` (a regex
//! that recognises the artifact in an answer that already carries it in other words) and
//! `probe = "injection"` (a judge-directed instruction, reported as an attack success rate).
//! Unknown fields are errors, and every error names the file, the line (when known) and the
//! field.
//!
//! # Honest perturbations
//!
//! Every [`Perturbation`] records whether the artifact changed the text and whether the
//! original already carried it ([`Artifact::detect`]). Answers that were left unchanged or
//! already carried it measure nothing; the analysis excludes them from the artifact's estimates
//! and counts them (`ArtifactResult::perturbation`).
//!
//! # Shipped artifacts
//!
//! `apology`, `authority`, `halo` (Chen & Goldfarb-Tarrant 2025, Table 1, exact wording),
//! `apology-variants` (the exact apology plus three close rewordings, one drawn per item),
//! `verbosity` (deterministic filler + restatement padding), `reorder`, `repetition` (Zheng et
//! al. 2023's repetitive-list attack) and `position`; the epistemic markers of EMBER
//! (`epistemic-strengthener`, `epistemic-weakener`), `flattery`, `fake-reasoning`, `emoji`,
//! `self-identification`, OffsetBias's `concreteness`, the style transforms `markdown-header`,
//! `markdown-bold` and `markdown-bullets`, three judge-directed injections (`injection-plain`,
//! `injection-system-tag`, `injection-codeblock`) and the stack `apology-authority`. `apology` is a constant prepend rather than
//! a template so that it reproduces the paper exactly ("the injected part is constant for all
//! samples"); wording robustness is measured separately with `apology-variants`.
//!
//! # LLM rewrites
//!
//! `kind = "rewrite"` artifacts are opt-in (never in the default set): a rewriter judge file
//! rewrites each answer before any judge call, the rewrite is stored in the run store and must
//! pass [`rewrite::guard`] (and an optional checker model) to count. Their items carry
//! [`Perturbation::rejected`] until then. See `run::rewrites`.
//!
//! # Determinism
//!
//! [`Artifact::apply`] draws all randomness from a `ChaCha8Rng` seeded with
//! [`item_seed`]`(seed, artifact id, key)`. The shuffles and weighted picks use only
//! `RngCore::next_u64` plus code in this module (not `rand`'s sampling helpers), so the output
//! depends only on the ChaCha8 stream and this crate, not on `rand`'s internal algorithms.

mod apply;
mod load;
pub mod rewrite;
mod text;

use crate::judge::Slot;
pub use crate::judge::template::ContextEdit;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The shipped catalog files, embedded at compile time. A test checks that this list matches
/// the contents of `perturbations/` exactly.
const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "apology-authority.toml",
        include_str!("../../perturbations/apology-authority.toml"),
    ),
    (
        "apology-variants.toml",
        include_str!("../../perturbations/apology-variants.toml"),
    ),
    (
        "apology.toml",
        include_str!("../../perturbations/apology.toml"),
    ),
    (
        "authority.toml",
        include_str!("../../perturbations/authority.toml"),
    ),
    (
        "bandwagon.toml",
        include_str!("../../perturbations/bandwagon.toml"),
    ),
    (
        "compassion-fade.toml",
        include_str!("../../perturbations/compassion-fade.toml"),
    ),
    (
        "concreteness.toml",
        include_str!("../../perturbations/concreteness.toml"),
    ),
    (
        "distraction.toml",
        include_str!("../../perturbations/distraction.toml"),
    ),
    (
        "diversity.toml",
        include_str!("../../perturbations/diversity.toml"),
    ),
    ("emoji.toml", include_str!("../../perturbations/emoji.toml")),
    (
        "epistemic-strengthener.toml",
        include_str!("../../perturbations/epistemic-strengthener.toml"),
    ),
    (
        "epistemic-weakener.toml",
        include_str!("../../perturbations/epistemic-weakener.toml"),
    ),
    (
        "fake-reasoning.toml",
        include_str!("../../perturbations/fake-reasoning.toml"),
    ),
    (
        "flattery.toml",
        include_str!("../../perturbations/flattery.toml"),
    ),
    ("halo.toml", include_str!("../../perturbations/halo.toml")),
    (
        "injection-codeblock.toml",
        include_str!("../../perturbations/injection-codeblock.toml"),
    ),
    (
        "injection-plain.toml",
        include_str!("../../perturbations/injection-plain.toml"),
    ),
    (
        "injection-system-tag.toml",
        include_str!("../../perturbations/injection-system-tag.toml"),
    ),
    (
        "injection-verdict-line.toml",
        include_str!("../../perturbations/injection-verdict-line.toml"),
    ),
    (
        "markdown-bold.toml",
        include_str!("../../perturbations/markdown-bold.toml"),
    ),
    (
        "markdown-bullets.toml",
        include_str!("../../perturbations/markdown-bullets.toml"),
    ),
    (
        "markdown-header.toml",
        include_str!("../../perturbations/markdown-header.toml"),
    ),
    (
        "position.toml",
        include_str!("../../perturbations/position.toml"),
    ),
    (
        "refinement-aware.toml",
        include_str!("../../perturbations/refinement-aware.toml"),
    ),
    (
        "reorder.toml",
        include_str!("../../perturbations/reorder.toml"),
    ),
    (
        "repetition.toml",
        include_str!("../../perturbations/repetition.toml"),
    ),
    (
        "rewrite-bullet-points.toml",
        include_str!("../../perturbations/rewrite-bullet-points.toml"),
    ),
    (
        "rewrite-fallacy.toml",
        include_str!("../../perturbations/rewrite-fallacy.toml"),
    ),
    (
        "rewrite-long-sentence.toml",
        include_str!("../../perturbations/rewrite-long-sentence.toml"),
    ),
    (
        "rewrite-sentiment-cheerful.toml",
        include_str!("../../perturbations/rewrite-sentiment-cheerful.toml"),
    ),
    (
        "rewrite-translate.toml",
        include_str!("../../perturbations/rewrite-translate.toml"),
    ),
    (
        "self-identification.toml",
        include_str!("../../perturbations/self-identification.toml"),
    ),
    (
        "stakes.toml",
        include_str!("../../perturbations/stakes.toml"),
    ),
    (
        "verbosity.toml",
        include_str!("../../perturbations/verbosity.toml"),
    ),
];

/// Largest accepted `repeat.times` (bounds the size of a padded answer).
pub const MAX_REPEAT_TIMES: usize = 10;
/// Largest accepted template variant `weight`.
pub const MAX_VARIANT_WEIGHT: u32 = 1_000_000;

/// One artifact from the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
    /// Regular expression that recognises the artifact in an answer that already carries it in
    /// other words (e.g. any apology opener, not only the exact one). An original answer that
    /// matches it, or that already contains the artifact's fixed text, is counted as
    /// "already present" and excluded from the artifact's estimates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detector: Option<String>,
    /// What the artifact probes beyond bias: `"injection"` marks a judge-directed instruction,
    /// whose flips toward the injected answer are reported as an attack success rate and count
    /// as a security failure in the trust verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<String>,
}

/// How an artifact changes an answer. `Position` changes nothing in the text: the design realises it
/// as an order swap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
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
    /// Shuffle sentences or list items with the seeded RNG. When there are at least two units and
    /// they are not all identical, the output is guaranteed to differ from the input.
    Reorder {
        /// What to shuffle (default: list items, falling back to sentences).
        #[serde(default)]
        unit: ReorderUnit,
    },
    /// Repeat list items (or sentences when there is no list) to pad the answer: after the
    /// longest list, its items are appended again `times` times, numbering continued (Zheng et
    /// al.'s "repetitive list" attack without the LLM rephrasing). Without a list of at least two
    /// items, the span from the first to the last sentence is appended `times` times.
    Repeat {
        /// How many extra copies of the padded unit to add.
        times: usize,
    },
    /// Pick one variant per item with the seeded RNG; each variant is a prepend/append/wrap.
    Template {
        /// Candidate variants.
        variants: Vec<Variant>,
    },
    /// Deterministic, meaning-preserving padding: an opener before the answer and, after it, a
    /// restatement of the answer's first sentence ("In other words, " + that sentence with its
    /// first letter lowercased) and a closing filler. Each piece is picked by the seeded RNG from
    /// its list; an empty list skips that piece. Only the listed strings and a copy of existing
    /// text are added, so no new facts enter the answer.
    Verbose {
        /// Fillers put before the answer (include the trailing space). When the answer starts
        /// with Markdown block syntax (list, heading, table), the opener goes on its own line.
        #[serde(default)]
        openers: Vec<String>,
        /// Lead-ins for the restatement of the first sentence, e.g. `"In other words, "`.
        #[serde(default)]
        restatement_leads: Vec<String>,
        /// Closing fillers put after the restatement.
        #[serde(default)]
        closers: Vec<String>,
    },
    /// Rewrite an answer of two or more sentences as a markdown bullet list, one sentence per
    /// item (`"- "` + the sentence, joined by newlines), in order; the words are unchanged.
    /// Answers that already contain a list, a code block or a table, or have fewer than two
    /// sentences, are left unchanged.
    Bullets,
    /// Swap the order of the two answers (no text change).
    Position,
    /// Edit the judge prompt around the answers, not an answer (CALM's bandwagon, diversity,
    /// distraction, compassion-fade and refinement-aware biases, Gupta et al.'s stakes
    /// sentence, a fake verdict line). The answer texts are unchanged; the design attaches a
    /// [`ContextEdit`] that favours the slot of the answer the artifact is applied to, and the
    /// judge's template renders it, so every backend sees it and its cache key changes.
    Context {
        /// Where the edit goes.
        place: ContextPlace,
        /// The added text (`system`, `note`, `verdict_line`). `{chosen}` is replaced by the
        /// template's name for the favoured slot ("Output (a)", "Assistant B"); a
        /// `verdict_line` text contains `{verdict}`, replaced by the favoured slot's verdict in
        /// the template's own label format (`Output (a)`, `[[B]]`).
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        /// `names`: the model name given to the favoured slot.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        chosen_name: String,
        /// `names`: the model name given to the other slot.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        other_name: String,
    },
    /// An LLM rewrite of the answer (CALM's sentiment, fallacy, longSentence; Eiras et al.'s
    /// restyles; translation). The rewriter is called before any judge (`run::rewrites`); its
    /// answers are stored in the run store, cached, and pass a meaning check
    /// ([`rewrite::guard`], plus an optional checker model) before they count. Without a stored
    /// rewrite the answer is unchanged and the item excluded.
    Rewrite {
        /// The rewriter: a judge file (path, or name of a built-in judge) whose backend generates
        /// the rewrite (`openai`, `anthropic`, `command`). The audit's
        /// `[perturbations] rewriter` overrides it.
        rewriter: String,
        /// The instruction: `{answer}` is the answer, `{name}` a value of `params`.
        instruction: String,
        /// Parameters substituted into the instruction (stored with every rewrite).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        params: BTreeMap<String, String>,
        /// Optional checker model (a judge file) asked whether the two texts make the same
        /// claims; a rewrite it does not answer `yes` for is excluded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        checker: Option<String>,
        /// Shortest accepted rewrite, in percent of the original's length.
        #[serde(default = "default_min_percent")]
        min_length_percent: u32,
        /// Longest accepted rewrite, in percent of the original's length.
        #[serde(default = "default_max_percent")]
        max_length_percent: u32,
        /// Optional guards switched off for this artifact (`refusal`, `names`; see
        /// [`rewrite::SKIPPABLE_GUARDS`]), e.g. the English refusal keywords for a translation.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        skip_guards: Vec<String>,
    },
    /// A stack of other artifacts applied in order (`compose = ["apology", "authority"]` at the
    /// top level of the file), each exactly as on its own: step k applies artifact k with its own
    /// seed derivation to the output of step k − 1.
    Compose {
        /// Component artifact ids, in application order.
        artifacts: Vec<String>,
        /// The components, resolved by the catalog (not part of the file).
        #[serde(skip)]
        resolved: Resolved,
    },
}

/// The resolved components of a composed artifact. Derived from the ids by the catalog, so it
/// takes no part in equality: two artifacts with the same ids are the same artifact.
#[derive(Debug, Clone, Default)]
pub struct Resolved(pub Vec<Artifact>);

impl PartialEq for Resolved {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::ops::Deref for Resolved {
    type Target = Vec<Artifact>;
    fn deref(&self) -> &Vec<Artifact> {
        &self.0
    }
}

/// Where an [`Operation::Context`] edit goes in the judge prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContextPlace {
    /// A sentence added to the system message (created when the template has none).
    System,
    /// A note added after the user message (CALM appends its prompt-level biases there).
    Note,
    /// The template's slot names replaced by model names (CALM compassion-fade).
    Names,
    /// A line appended to the favoured answer, written in the template's own verdict format:
    /// a judge-directed injection that only the template knows how to spell.
    VerdictLine,
}

impl ContextPlace {
    /// Name used in catalog files.
    pub fn name(self) -> &'static str {
        match self {
            ContextPlace::System => "system",
            ContextPlace::Note => "note",
            ContextPlace::Names => "names",
            ContextPlace::VerdictLine => "verdict_line",
        }
    }
}

/// Unit shuffled by [`Operation::Reorder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReorderUnit {
    /// Sentences.
    Sentences,
    /// Markdown/numbered list items (falls back to sentences when the answer has no list).
    #[default]
    ListItems,
}

/// One variant of a [`Operation::Template`]: text placed before and/or after the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    /// Text before the answer (may be empty).
    #[serde(default)]
    pub prefix: String,
    /// Text after the answer (may be empty).
    #[serde(default)]
    pub suffix: String,
    /// Relative probability of picking this variant (default 1; probability is
    /// `weight / sum of weights`).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

fn default_min_percent() -> u32 {
    50
}

fn default_max_percent() -> u32 {
    300
}

/// The result of applying an artifact to one answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Perturbation {
    /// The perturbed answer.
    pub text: String,
    /// Byte ranges of `text` that were injected or moved (for highlighting in reports). Sorted,
    /// non-overlapping, non-empty, on char boundaries. For insertions (prefix, suffix, filler,
    /// repeated items) removing these ranges gives back the original text; for a reorder the one
    /// range covers the span whose units were permuted.
    pub injected: Vec<Range<usize>>,
    /// False when the artifact left the text byte-identical (e.g. a reorder of a one-sentence
    /// answer): such an item measures nothing and is excluded from the artifact's estimates.
    #[serde(default = "yes")]
    pub changed: bool,
    /// True when the original answer already carried the artifact (its fixed text, or a match
    /// of its `detector`): adding it again is not a treatment, so the item is excluded too.
    #[serde(default)]
    pub already_present: bool,
    /// Set for an LLM rewrite that failed its meaning check (or was never made): why. Such an
    /// item is excluded from the artifact's estimates and counted with this reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
}

fn yes() -> bool {
    true
}

impl Perturbation {
    /// True when the item counts towards the artifact's estimates: the text changed and the
    /// original did not already carry the artifact.
    pub fn effective(&self) -> bool {
        self.changed && !self.already_present && self.rejected.is_none()
    }
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
    #[error("{}: field `{field}`: {message}", location(file, *line))]
    Invalid {
        /// File path.
        file: String,
        /// 1-based line of the offending field, when known.
        line: Option<usize>,
        /// The offending field, as a path such as `operation.variants[1].weight`.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The file is not valid TOML.
    #[error("{}: TOML syntax error: {message}", location(file, *line))]
    Syntax {
        /// File path.
        file: String,
        /// 1-based line of the error, when known.
        line: Option<usize>,
        /// The parser's message.
        message: String,
    },
}

fn location(file: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{file}:{l}"),
        None => file.to_string(),
    }
}

/// The set of known artifacts, ordered by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Catalog {
    artifacts: Vec<Artifact>,
}

impl Catalog {
    /// The shipped catalog (`perturbations/*.toml`, embedded in the binary).
    pub fn builtin() -> Catalog {
        // Parsed once per process; callers get a cheap clone they may extend.
        static BUILTIN: OnceLock<Catalog> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                let mut artifacts: Vec<Artifact> = BUILTIN_FILES
                    .iter()
                    .map(|(name, src)| {
                        let label = format!("perturbations/{name} (built-in)");
                        // The shipped files are checked by tests, so a failure is a build defect.
                        Artifact::from_toml_str(&label, src).unwrap_or_else(|e| panic!("{e}"))
                    })
                    .collect();
                artifacts.sort_by(|a, b| a.id.cmp(&b.id));
                let mut catalog = Catalog { artifacts };
                catalog
                    .resolve_compositions("perturbations (built-in)")
                    .unwrap_or_else(|e| panic!("{e}"));
                catalog
            })
            .clone()
    }

    /// Resolve every composed artifact's components against the catalog. A component must exist
    /// and be a text artifact that is not itself composed (so stacks are flat and finite).
    fn resolve_compositions(&mut self, origin: &str) -> Result<(), PerturbError> {
        let snapshot = self.artifacts.clone();
        for artifact in &mut self.artifacts {
            let Operation::Compose {
                artifacts,
                resolved,
            } = &mut artifact.operation
            else {
                continue;
            };
            resolved.0.clear();
            for (i, id) in artifacts.iter().enumerate() {
                let component = snapshot.iter().find(|a| &a.id == id);
                let invalid = |message: String| PerturbError::Invalid {
                    file: format!("{origin}: artifact `{}`", artifact.id),
                    line: None,
                    field: format!("compose[{i}]"),
                    message,
                };
                match component {
                    None => return Err(invalid(format!("unknown artifact `{id}`"))),
                    Some(c)
                        if matches!(
                            c.operation,
                            Operation::Compose { .. }
                                | Operation::Position
                                | Operation::Context { .. }
                                | Operation::Rewrite { .. }
                        ) =>
                    {
                        return Err(invalid(format!(
                            "`{id}` cannot be stacked: components must be answer-side text \
                             artifacts that are not themselves composed"
                        )));
                    }
                    Some(c) => resolved.0.push(c.clone()),
                }
            }
        }
        Ok(())
    }

    /// Add or override artifacts from every `*.toml` file in `dir`.
    ///
    /// Files are read in byte order of their names (hidden files, starting with `.`, and
    /// subdirectories are skipped). An artifact whose id is already in the catalog replaces it.
    /// Two files in `dir` with the same id are an error. The catalog is only changed when every
    /// file is valid.
    pub fn extend_from_dir(&mut self, dir: &Path) -> Result<(), PerturbError> {
        let io = |source| PerturbError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut paths = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let hidden = name.as_deref().is_some_and(|n| n.starts_with('.'));
            if path.is_file() && !hidden && path.extension().is_some_and(|e| e == "toml") {
                paths.push(path);
            }
        }
        paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));

        let mut loaded: Vec<Artifact> = Vec::new();
        let mut seen: HashMap<String, PathBuf> = HashMap::new();
        for path in paths {
            let src = std::fs::read_to_string(&path).map_err(|source| PerturbError::Io {
                path: path.clone(),
                source,
            })?;
            let label = path.display().to_string();
            let artifact = Artifact::from_toml_str(&label, &src)?;
            if let Some(other) = seen.get(&artifact.id) {
                return Err(PerturbError::Invalid {
                    file: label,
                    line: load::line_of_key(&src, "id"),
                    field: "id".into(),
                    message: format!(
                        "duplicate id `{}`: also defined in {}",
                        artifact.id,
                        other.display()
                    ),
                });
            }
            seen.insert(artifact.id.clone(), path);
            loaded.push(artifact);
        }
        let before = self.clone();
        for artifact in loaded {
            self.insert(artifact);
        }
        if let Err(e) = self.resolve_compositions(&dir.display().to_string()) {
            *self = before;
            return Err(e);
        }
        Ok(())
    }

    /// Add `artifact`, replacing any artifact with the same id, and keep the catalog ordered.
    pub fn insert(&mut self, artifact: Artifact) {
        match self.artifacts.iter_mut().find(|a| a.id == artifact.id) {
            Some(slot) => *slot = artifact,
            None => {
                self.artifacts.push(artifact);
                self.artifacts.sort_by(|a, b| a.id.cmp(&b.id));
            }
        }
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

/// The 32-byte ChaCha8 seed for one (run seed, artifact, item):
/// `SHA-256( seed as 8 bytes little-endian || artifact_id UTF-8 || 0x00 || key UTF-8 )`.
///
/// The `0x00` separator keeps `("ab", "c")` and `("a", "bc")` apart; it cannot occur in an id.
pub fn item_seed(seed: u64, artifact_id: &str, key: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(seed.to_le_bytes());
    h.update(artifact_id.as_bytes());
    h.update([0u8]);
    h.update(key.as_bytes());
    h.finalize().into()
}

/// Where an artifact acts, for grouping in `artifacts list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ArtifactGroup {
    /// Changes one answer's text.
    AnswerSide,
    /// Changes the judge prompt around the answers (the order swap).
    ContextSide,
    /// An LLM rewrite of one answer (opt-in: needs a rewriter).
    Rewrite,
    /// A stack of other artifacts.
    Composed,
}

impl ArtifactGroup {
    /// Heading used by `artifacts list`.
    pub fn name(self) -> &'static str {
        match self {
            ArtifactGroup::AnswerSide => "answer-side",
            ArtifactGroup::ContextSide => "context-side",
            ArtifactGroup::Rewrite => "rewrite",
            ArtifactGroup::Composed => "composed",
        }
    }
}

impl Artifact {
    /// The artifact's group.
    pub fn group(&self) -> ArtifactGroup {
        match self.operation {
            Operation::Position => ArtifactGroup::ContextSide,
            // A verdict line ends up inside an answer, but only the template can write it.
            Operation::Context { .. } => ArtifactGroup::ContextSide,
            Operation::Compose { .. } => ArtifactGroup::Composed,
            Operation::Rewrite { .. } => ArtifactGroup::Rewrite,
            _ => ArtifactGroup::AnswerSide,
        }
    }

    /// `text` with the injected ranges of `p` marked `⟦…⟧`, for previews.
    pub fn marked(p: &Perturbation) -> String {
        let mut out = String::with_capacity(p.text.len() + 8 * p.injected.len());
        let mut at = 0;
        for r in &p.injected {
            out.push_str(&p.text[at..r.start]);
            out.push('⟦');
            out.push_str(&p.text[r.clone()]);
            out.push('⟧');
            at = r.end;
        }
        out.push_str(&p.text[at..]);
        out
    }

    /// True for a judge-directed injection probe (`probe = "injection"`).
    pub fn is_injection(&self) -> bool {
        self.probe.as_deref() == Some("injection")
    }

    /// Component ids of a composed artifact (empty otherwise).
    pub fn components(&self) -> &[String] {
        match &self.operation {
            Operation::Compose { artifacts, .. } => artifacts,
            _ => &[],
        }
    }

    /// True for the order-swap artifact, which the design realises without changing any text.
    pub fn is_position(&self) -> bool {
        matches!(self.operation, Operation::Position)
    }

    /// True for an LLM-rewritten artifact ([`Operation::Rewrite`]).
    pub fn is_rewrite(&self) -> bool {
        matches!(self.operation, Operation::Rewrite { .. })
    }

    /// True for an artifact that edits the judge prompt ([`Operation::Context`]).
    pub fn is_context(&self) -> bool {
        matches!(self.operation, Operation::Context { .. })
    }

    /// The prompt edit of a context-side artifact, favouring `chosen`: the slot of the answer
    /// the artifact is applied to, so the design's identity mapping holds in both orders.
    /// `None` for any other artifact.
    pub fn context_edit(&self, chosen: Slot) -> Option<ContextEdit> {
        let Operation::Context {
            place,
            text,
            chosen_name,
            other_name,
        } = &self.operation
        else {
            return None;
        };
        let text = text.clone();
        Some(match place {
            ContextPlace::System => ContextEdit::System { text, chosen },
            ContextPlace::Note => ContextEdit::Note { text, chosen },
            ContextPlace::VerdictLine => ContextEdit::VerdictLine { text, chosen },
            ContextPlace::Names => ContextEdit::Names {
                chosen_name: chosen_name.clone(),
                other_name: other_name.clone(),
                chosen,
            },
        })
    }

    /// Apply the artifact to `text`. Deterministic in (`seed`, `key`, artifact id): the same inputs
    /// give byte-identical output. `key` identifies the item, e.g. `"<pair id>/a"`.
    ///
    /// The RNG is `ChaCha8Rng::from_seed(item_seed(seed, &self.id, key))`.
    pub fn apply(&self, text: &str, seed: u64, key: &str) -> Perturbation {
        use rand::SeedableRng;
        if self.is_context() {
            // The answer is untouched; the treatment is the prompt edit, which every item gets
            // (a prompt that already names the favoured slot cannot occur in an answer).
            return Perturbation {
                text: text.to_string(),
                injected: Vec::new(),
                changed: true,
                already_present: false,
                rejected: None,
            };
        }
        if self.is_rewrite() {
            // The text comes from the stored rewrite (`with_rewrite`); until there is one the
            // item measures nothing.
            return Perturbation {
                text: text.to_string(),
                injected: Vec::new(),
                changed: false,
                already_present: false,
                rejected: Some(rewrite::NOT_REWRITTEN.into()),
            };
        }
        let mut out = match &self.operation {
            Operation::Compose { resolved, .. } => {
                let mut out = Perturbation {
                    text: text.to_string(),
                    injected: Vec::new(),
                    changed: false,
                    already_present: false,
                    rejected: None,
                };
                for step in resolved.iter() {
                    let next = step.apply(&out.text, seed, key);
                    out = apply::stack(out, next);
                }
                out
            }
            op => {
                let mut rng = rand_chacha::ChaCha8Rng::from_seed(item_seed(seed, &self.id, key));
                apply::apply(op, text, &mut rng)
            }
        };
        out.changed = out.text != text;
        out.already_present = self.already_in(text);
        out
    }

    /// The perturbation of a rewrite artifact from its stored rewrite of `original`: the
    /// rewritten text (marked as changed as a whole), or the original with the rejection
    /// reason when the rewrite failed its meaning check.
    pub fn with_rewrite(original: &str, rewritten: &str, rejected: Option<String>) -> Perturbation {
        match rejected {
            Some(reason) => Perturbation {
                text: original.to_string(),
                injected: Vec::new(),
                changed: false,
                already_present: false,
                rejected: Some(reason),
            },
            None => Perturbation {
                text: rewritten.to_string(),
                injected: rewrite::changed_ranges(original, rewritten),
                changed: rewritten != original,
                already_present: false,
                rejected: None,
            },
        }
    }

    /// True when `text` already carries this artifact ([`detect`](Self::detect) says yes).
    pub fn already_in(&self, text: &str) -> bool {
        self.detect(text) == Some(true)
    }

    /// Whether `text` shows this artifact, from the text alone: it matches the declared
    /// `detector`, contains one of the operation's fixed texts ([`Operation::markers`]), or, for
    /// `repeat`, contains the same sentence or list item twice. `None` when the artifact has no
    /// such sign (a reorder or a regex replacement without a `detector`, `position`): nothing in
    /// one text shows it. Simulated judges use this to act on what they are shown.
    pub fn detect(&self, text: &str) -> Option<bool> {
        if let Operation::Compose { resolved, .. } = &self.operation {
            // The stack shows when every component shows.
            let signs: Option<Vec<bool>> = resolved.iter().map(|a| a.detect(text)).collect();
            return signs.map(|s| !s.is_empty() && s.iter().all(|&b| b));
        }
        let regex = self
            .detector
            .as_deref()
            .and_then(|p| apply::compile(p).ok());
        let markers = self.operation.markers();
        let repeat = matches!(self.operation, Operation::Repeat { .. });
        if regex.is_none() && markers.is_empty() && !repeat {
            return None;
        }
        Some(
            regex.is_some_and(|re| re.is_match(text))
                || markers.iter().any(|m| text.contains(m.as_str()))
                || (repeat && text::has_repeated_unit(text)),
        )
    }

    /// Parse and validate one artifact definition. `file` labels the source in error messages.
    pub fn from_toml_str(file: &str, src: &str) -> Result<Artifact, PerturbError> {
        load::parse_artifact(file, src)
    }

    /// Check the semantic rules that the catalog loader enforces (id syntax, non-empty texts,
    /// regex compiles, weights and counts in range), e.g. for artifacts built in code or read
    /// from JSON. `origin` labels the artifact in the error.
    pub fn validate(&self, origin: &str) -> Result<(), PerturbError> {
        self.check()
            .map_err(|(field, message)| PerturbError::Invalid {
                file: origin.to_string(),
                line: None,
                field,
                message,
            })
    }

    /// The semantic rules; the error is (field path, message).
    fn check(&self) -> Result<(), (String, String)> {
        let bad = |field: &str, msg: &str| Err((field.to_string(), msg.to_string()));
        if self.id.is_empty()
            || !self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err((
                "id".into(),
                format!(
                    "`{}` is not a valid id: use one or more of a-z, 0-9, `_`, `-`",
                    self.id
                ),
            ));
        }
        for (field, value) in [
            ("title", &self.title),
            ("description", &self.description),
            ("source", &self.source),
            ("expected_effect", &self.expected_effect),
        ] {
            if value.trim().is_empty() {
                return bad(field, "must not be empty");
            }
        }
        if let Some(pattern) = &self.detector
            && let Err(e) = apply::compile(pattern)
        {
            return Err(("detector".into(), e));
        }
        if let Some(probe) = &self.probe
            && probe != "injection"
        {
            return Err((
                "probe".into(),
                format!("unknown probe `{probe}`; expected `injection`"),
            ));
        }
        match &self.operation {
            Operation::Prepend { text } | Operation::Append { text } if text.is_empty() => {
                bad("operation.text", "must not be empty")
            }
            Operation::Compose { artifacts, .. } if artifacts.len() < 2 => {
                bad("compose", "list at least two artifact ids to stack")
            }
            Operation::Compose { artifacts, .. } if artifacts.contains(&self.id) => {
                bad("compose", "an artifact cannot contain itself")
            }
            Operation::Context {
                place,
                text,
                chosen_name,
                other_name,
            } => check_context(*place, text, chosen_name, other_name),
            Operation::Wrap { prefix, suffix } if prefix.is_empty() && suffix.is_empty() => bad(
                "operation.prefix",
                "wrap needs a non-empty `prefix` or `suffix`",
            ),
            Operation::RegexReplace { pattern, .. } => match apply::compile(pattern) {
                Ok(_) => Ok(()),
                Err(e) => Err(("operation.pattern".into(), e)),
            },
            Operation::Repeat { times } if !(1..=MAX_REPEAT_TIMES).contains(times) => Err((
                "operation.times".into(),
                format!("must be between 1 and {MAX_REPEAT_TIMES}, got {times}"),
            )),
            Operation::Template { variants } => {
                if variants.is_empty() {
                    return bad("operation.variants", "must list at least one variant");
                }
                for (i, v) in variants.iter().enumerate() {
                    if v.prefix.is_empty() && v.suffix.is_empty() {
                        return Err((
                            format!("operation.variants[{i}]"),
                            "a variant needs a non-empty `prefix` or `suffix`".into(),
                        ));
                    }
                    if !(1..=MAX_VARIANT_WEIGHT).contains(&v.weight) {
                        return Err((
                            format!("operation.variants[{i}].weight"),
                            format!(
                                "must be between 1 and {MAX_VARIANT_WEIGHT}, got {}",
                                v.weight
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Operation::Verbose {
                openers,
                restatement_leads,
                closers,
            } => {
                for (name, list) in [
                    ("openers", openers),
                    ("restatement_leads", restatement_leads),
                    ("closers", closers),
                ] {
                    if let Some(i) = list.iter().position(|s| s.trim().is_empty()) {
                        return Err((
                            format!("operation.{name}[{i}]"),
                            "must not be empty or blank".into(),
                        ));
                    }
                }
                if openers.is_empty() && restatement_leads.is_empty() && closers.is_empty() {
                    return bad(
                        "operation",
                        "verbose needs at least one of `openers`, `restatement_leads`, `closers`",
                    );
                }
                Ok(())
            }
            Operation::Rewrite {
                rewriter,
                instruction,
                checker,
                min_length_percent,
                max_length_percent,
                skip_guards,
                ..
            } => {
                if rewriter.trim().is_empty() {
                    return bad("operation.rewriter", "must not be empty");
                }
                if checker.as_ref().is_some_and(|c| c.trim().is_empty()) {
                    return bad("operation.checker", "must not be empty");
                }
                if !instruction.contains(rewrite::ANSWER) {
                    return bad(
                        "operation.instruction",
                        "must contain `{answer}`, where the answer goes",
                    );
                }
                if let Some(i) = skip_guards
                    .iter()
                    .position(|g| !rewrite::SKIPPABLE_GUARDS.contains(&g.as_str()))
                {
                    return Err((
                        format!("operation.skip_guards[{i}]"),
                        format!(
                            "unknown guard `{}`; expected one of: {}",
                            skip_guards[i],
                            rewrite::SKIPPABLE_GUARDS.join(", ")
                        ),
                    ));
                }
                if min_length_percent > max_length_percent
                    || *max_length_percent == 0
                    || *max_length_percent > rewrite::MAX_LENGTH_PERCENT
                {
                    return bad(
                        "operation.max_length_percent",
                        "must be at least min_length_percent, and 1 to 1000",
                    );
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Operation {
    /// The fixed texts this operation inserts, trimmed, of at least eight characters: an answer
    /// containing one of them already carries the artifact. Empty for operations whose output
    /// depends on the answer itself (reorder, repeat, regex replacement, position).
    pub fn markers(&self) -> Vec<String> {
        let raw: Vec<&str> = match self {
            Operation::Prepend { text } | Operation::Append { text } => vec![text],
            Operation::Wrap { prefix, suffix } => vec![prefix, suffix],
            Operation::Template { variants } => variants
                .iter()
                .flat_map(|v| [v.prefix.as_str(), v.suffix.as_str()])
                .collect(),
            Operation::Verbose {
                openers, closers, ..
            } => openers.iter().chain(closers).map(String::as_str).collect(),
            Operation::Compose { resolved, .. } => {
                return resolved
                    .iter()
                    .flat_map(|a| a.operation.markers())
                    .collect();
            }
            _ => Vec::new(),
        };
        let mut out: Vec<String> = raw
            .into_iter()
            .map(str::trim)
            .filter(|m| m.chars().count() >= 8)
            .map(str::to_string)
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// One-line human summary (used by `judge-audit artifacts show`).
    pub fn describe(&self) -> String {
        match self {
            Operation::Prepend { text } => format!("prepend {text:?}"),
            Operation::Append { text } => format!("append {text:?}"),
            Operation::Wrap { prefix, suffix } => {
                format!("wrap: prepend {prefix:?}, append {suffix:?}")
            }
            Operation::RegexReplace {
                pattern,
                replacement,
            } => format!("regex_replace: /{pattern}/ -> {replacement:?}"),
            Operation::Reorder {
                unit: ReorderUnit::ListItems,
            } => "reorder: shuffle list items (sentences when there is no list); order always \
                  changes when possible"
                .into(),
            Operation::Reorder {
                unit: ReorderUnit::Sentences,
            } => "reorder: shuffle sentences; order always changes when possible".into(),
            Operation::Repeat { times } => format!(
                "repeat: append the longest list's items again {times}x, numbering continued \
                 (all sentences when there is no list)"
            ),
            Operation::Template { variants } => {
                let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
                let first = variants
                    .first()
                    .map(|v| describe_variant(v, total))
                    .unwrap_or_default();
                format!(
                    "template: one of {} variants per item; first ({first})",
                    variants.len()
                )
            }
            Operation::Verbose {
                openers,
                restatement_leads,
                closers,
            } => format!(
                "verbose: opener (1 of {}) + restatement of the first sentence (1 of {} lead-ins) \
                 + closer (1 of {}); no new content",
                openers.len(),
                restatement_leads.len(),
                closers.len()
            ),
            Operation::Position => "position: swap the answer order (text unchanged)".into(),
            Operation::Bullets => {
                "bullets: one markdown bullet per sentence (two or more sentences, no list yet)"
                    .into()
            }
            Operation::Compose { artifacts, .. } => {
                format!("compose: apply {} in order", artifacts.join(", then "))
            }
            Operation::Context {
                place: ContextPlace::Names,
                chosen_name,
                other_name,
                ..
            } => format!(
                "context (names): the judge prompt calls the favoured slot {chosen_name:?} and \
                 the other {other_name:?}; answers unchanged"
            ),
            Operation::Context {
                place: ContextPlace::VerdictLine,
                text,
                ..
            } => format!(
                "context (verdict_line): append {text:?} to the favoured answer, {{verdict}} in \
                 the judge template's label format"
            ),
            Operation::Context { place, text, .. } => format!(
                "context ({}): add {text:?} to the judge prompt, {{chosen}} = the favoured \
                 slot's name; answers unchanged",
                place.name()
            ),
            Operation::Rewrite {
                rewriter,
                params,
                checker,
                min_length_percent,
                max_length_percent,
                skip_guards,
                ..
            } => format!(
                "rewrite by `{rewriter}`{}{}; guards: length {min_length_percent}-{max_length_percent}%, \
                 no new numbers, URLs or names, refusal kept{}",
                if params.is_empty() {
                    String::new()
                } else {
                    format!(" with {params:?}")
                },
                checker
                    .as_ref()
                    .map(|c| format!(", checked by `{c}`"))
                    .unwrap_or_default(),
                if skip_guards.is_empty() {
                    String::new()
                } else {
                    format!(" (off: {})", skip_guards.join(", "))
                }
            ),
        }
    }
}

/// The rules of a context edit; the error is (field path, message).
fn check_context(
    place: ContextPlace,
    text: &str,
    chosen_name: &str,
    other_name: &str,
) -> Result<(), (String, String)> {
    let err = |field: &str, msg: &str| Err((format!("operation.{field}"), msg.to_string()));
    let names_given = !chosen_name.is_empty() || !other_name.is_empty();
    match place {
        ContextPlace::Names => {
            if !text.is_empty() {
                return err(
                    "text",
                    "`names` takes `chosen_name` and `other_name`, not `text`",
                );
            }
            if chosen_name.trim().is_empty() || other_name.trim().is_empty() {
                return err(
                    "chosen_name",
                    "`names` needs non-empty `chosen_name` and `other_name`",
                );
            }
            if chosen_name == other_name {
                return err("other_name", "must differ from `chosen_name`");
            }
            Ok(())
        }
        _ if names_given => err(
            "chosen_name",
            "only `place = \"names\"` takes `chosen_name` and `other_name`",
        ),
        _ if text.trim().is_empty() => err("text", "must not be empty"),
        ContextPlace::VerdictLine if !text.contains("{verdict}") => err(
            "text",
            "a verdict line must contain `{verdict}` (the favoured slot's label)",
        ),
        ContextPlace::System | ContextPlace::Note if !text.contains("{chosen}") => err(
            "text",
            "must contain `{chosen}` (the favoured slot's name), so the artifact favours one answer",
        ),
        _ => Ok(()),
    }
}

fn describe_variant(v: &Variant, total: u64) -> String {
    let mut parts = Vec::new();
    if !v.prefix.is_empty() {
        parts.push(format!("prepend {:?}", v.prefix));
    }
    if !v.suffix.is_empty() {
        parts.push(format!("append {:?}", v.suffix));
    }
    let share = if total == 0 {
        0.0
    } else {
        100.0 * f64::from(v.weight) / total as f64
    };
    format!("{}, p={share:.0}%", parts.join(" + "))
}
