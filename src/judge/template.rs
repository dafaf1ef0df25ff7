//! Prompt templates for pairwise judging (Chen's safety template, MT-Bench pairwise, user files)
//! and for pointwise judging (one answer: MT-Bench single-answer grading, a safety classifier, a
//! Llama-Guard-style prompt, a pass/fail rubric, a JSON rubric).
//!
//! A pointwise template says `kind = "pointwise"`, shows `{{prompt}}` and `{{answer}}` (and a
//! rubric's `{{criteria}}`), has no `[labels]` (the judge file's `kind`, scale or labels say how
//! its reply is read, [`super::grade::Grader`]) and may name `rating_after`, the text after which
//! the rating token is generated (`[[` for MT-Bench), for the expected score.
//!
//! A template file is TOML:
//!
//! ```toml
//! name = "my-template"          # optional, defaults to the file stem
//! system = "..."                # optional system message
//! user = "... {{prompt}} ... {{first}} ... {{second}} ..."
//! min_max_tokens = 512          # optional: warn when a judge's max_tokens is lower
//!
//! [labels]                      # regexes the verdict parser looks for
//! first = '(?i)\bOutput\s*\(\s*a\s*\)'
//! second = '(?i)\bOutput\s*\(\s*b\s*\)'
//! tie = '(?i)\btie\b'
//! pick = "first"                # first | last | unique | final (the last line only)
//!
//! [labels.tokens]               # optional: tokens for log-probability verdicts
//! after = "[["                  # optional: text generated just before the label token
//! first = ["A"]
//! second = ["B"]
//! tie = ["C"]
//! ```
//!
//! Placeholders are `{{prompt}}`, `{{first}}` and `{{second}}` (spaces inside the braces are
//! allowed). Substitution is single-pass: text inserted for one placeholder is never scanned
//! again, so an answer that itself contains `{{second}}` stays literal.
//!
//! # Slot names and context edits
//!
//! Context-side artifacts ([`ContextEdit`]) edit the prompt, not an answer: a sentence in the
//! system message, a note after the user message, model names instead of the slot names, or
//! a fake verdict line in the template's own label format. To write them the template names
//! its slots in an optional table (defaults shown for a template that says "Output (a)"):
//!
//! ```toml
//! [slots]
//! first = "Output (a)"            # how the template refers to the first answer
//! second = "Output (b)"
//! verdict_first = "Output (a)"    # a verdict for it, in the template's answer format
//! verdict_second = "Output (b)"
//! renamed = "{slot} ({name})"     # a slot name with a model name (CALM compassion-fade)
//! ```
//!
//! Without the table the names are "Assistant A"/"Assistant B" or "Output (a)"/"Output (b)",
//! whichever the user message contains, else "the first answer"/"the second answer". Slot
//! names are only ever replaced in the template's own text, never inside an answer or prompt.

use super::Slot;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::config::{ConfigError, from_toml_error, invalid_field};
use super::parser::{Pick, VerdictParser};

/// Built-in templates (name, TOML text), embedded at build time from `judges/templates/`.
pub const BUILTIN_TEMPLATES: &[(&str, &str)] = &[
    (
        "chen-safety",
        include_str!("../../judges/templates/chen-safety.toml"),
    ),
    (
        "mtbench-pairwise",
        include_str!("../../judges/templates/mtbench-pairwise.toml"),
    ),
    (
        "letter-safety",
        include_str!("../../judges/templates/letter-safety.toml"),
    ),
    (
        "mtbench-single",
        include_str!("../../judges/templates/mtbench-single.toml"),
    ),
    (
        "safety-classifier",
        include_str!("../../judges/templates/safety-classifier.toml"),
    ),
    (
        "llama-guard",
        include_str!("../../judges/templates/llama-guard.toml"),
    ),
    (
        "pass-fail-rubric",
        include_str!("../../judges/templates/pass-fail-rubric.toml"),
    ),
    (
        "json-rubric",
        include_str!("../../judges/templates/json-rubric.toml"),
    ),
    // Meaning-preserving variants of the two shipped pairwise templates (`templates = [...]`).
    (
        "chen-safety-paraphrase",
        include_str!("../../judges/templates/chen-safety-paraphrase.toml"),
    ),
    (
        "chen-safety-brackets",
        include_str!("../../judges/templates/chen-safety-brackets.toml"),
    ),
    (
        "chen-safety-system",
        include_str!("../../judges/templates/chen-safety-system.toml"),
    ),
    (
        "mtbench-pairwise-paraphrase",
        include_str!("../../judges/templates/mtbench-pairwise-paraphrase.toml"),
    ),
    (
        "mtbench-pairwise-verdict-line",
        include_str!("../../judges/templates/mtbench-pairwise-verdict-line.toml"),
    ),
    (
        "mtbench-pairwise-user",
        include_str!("../../judges/templates/mtbench-pairwise-user.toml"),
    ),
    // CALM's chain-of-thought variant: reasoning first, the verdict on the last line.
    (
        "mtbench-pairwise-cot",
        include_str!("../../judges/templates/mtbench-pairwise-cot.toml"),
    ),
];

/// Label tokens for log-probability verdicts: the probability of each label is the summed
/// probability of its tokens among the top alternatives at one generated position.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelTokens {
    /// The position is the first generated token after generated text ending (whitespace
    /// trimmed) with this string; `None`: the first non-blank generated token.
    #[serde(default)]
    pub after: Option<String>,
    /// Tokens meaning "the first answer wins" (exact token strings, e.g. `"A"`, `" A"`).
    pub first: Vec<String>,
    /// Tokens meaning "the second answer wins".
    pub second: Vec<String>,
    /// Tokens meaning "tie" (may be empty for templates without a tie label).
    #[serde(default)]
    pub tie: Vec<String>,
}

/// A pairwise judge prompt template with its verdict labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// Template name (built-in name or file stem).
    pub name: String,
    /// Optional system message.
    pub system: Option<String>,
    /// User message with `{{prompt}}`, `{{first}}`, `{{second}}` placeholders.
    pub user: String,
    /// Default regexes for the three labels.
    pub first_label: String,
    /// See `first_label`.
    pub second_label: String,
    /// See `first_label`.
    pub tie_label: String,
    /// Default pick rule (`first`, `last`, `unique`).
    pub pick: String,
    /// Label tokens for log-probability verdicts, if the template declares them.
    pub tokens: Option<LabelTokens>,
    /// The smallest `max_tokens` with which the template's answer format fits (e.g. templates
    /// that ask for an explanation before the verdict).
    pub min_max_tokens: Option<u32>,
    /// How the template names its slots, for context edits (`None`: the defaults).
    pub slots: Option<SlotNames>,
    /// A pointwise template (`kind = "pointwise"`): it shows one answer, `{{answer}}`, and has
    /// no pairwise labels (the judge file's kind says how its reply is read).
    pub pointwise: bool,
    /// Pointwise score templates: the rating token follows generated text ending with this
    /// (e.g. `[[`), for the expected score from log-probabilities; `None`: the first token.
    pub rating_after: Option<String>,
    /// [`Template::slot_names`], computed on first use: it compiles the verdict parser, and
    /// every request of a context-side artifact needs it.
    slot_names_cache: SlotNamesCache,
}

/// A computed-once [`SlotNames`]. A clone starts empty (so a copy whose labels are then edited
/// computes its own), and two caches always compare equal (they hold derived data only).
#[derive(Debug, Default)]
struct SlotNamesCache(std::sync::OnceLock<SlotNames>);

impl Clone for SlotNamesCache {
    fn clone(&self) -> Self {
        SlotNamesCache::default()
    }
}

impl PartialEq for SlotNamesCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// How a template names its two slots, for context edits (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotNames {
    /// Name of the first slot in the template's text ("Output (a)", "Assistant A").
    pub first: String,
    /// Name of the second slot.
    pub second: String,
    /// A verdict for the first slot in the template's answer format (default: `first`).
    #[serde(default)]
    pub verdict_first: Option<String>,
    /// A verdict for the second slot (default: `second`).
    #[serde(default)]
    pub verdict_second: Option<String>,
    /// A slot name carrying a model name: `{slot}` and `{name}` are replaced (default
    /// `"{slot} ({name})"`, which keeps the template's verdict labels readable).
    #[serde(default)]
    pub renamed: Option<String>,
}

impl SlotNames {
    /// Defaults for a template whose user message is `user`.
    fn default_for(user: &str) -> SlotNames {
        let (first, second) = [("Assistant A", "Assistant B"), ("Output (a)", "Output (b)")]
            .into_iter()
            .find(|(a, b)| user.contains(a) && user.contains(b))
            .unwrap_or(("the first answer", "the second answer"));
        SlotNames {
            first: first.into(),
            second: second.into(),
            verdict_first: None,
            verdict_second: None,
            renamed: None,
        }
    }

    /// The template's name for `slot`.
    pub fn name(&self, slot: Slot) -> &str {
        match slot {
            Slot::First => &self.first,
            Slot::Second => &self.second,
        }
    }

    /// A verdict for `slot` in the template's answer format.
    pub fn verdict(&self, slot: Slot) -> &str {
        match slot {
            Slot::First => self.verdict_first.as_deref().unwrap_or(&self.first),
            Slot::Second => self.verdict_second.as_deref().unwrap_or(&self.second),
        }
    }

    /// The name of `slot` once it carries the model name `model`.
    pub fn renamed(&self, slot: Slot, model: &str) -> String {
        self.renamed
            .as_deref()
            .unwrap_or("{slot} ({name})")
            .replace("{slot}", self.name(slot))
            .replace("{name}", model)
    }
}

/// An edit of the judge prompt made by a context-side artifact. It favours the answer in
/// `chosen`: the design binds it to the slot of the answer the artifact is applied to, so the
/// identity mapping works in both orders. Rendered by [`Template::render_with`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ContextEdit {
    /// `text` added to the system message (`{chosen}`: the favoured slot's name).
    System {
        /// The sentence, with `{chosen}`.
        text: String,
        /// The favoured slot.
        chosen: Slot,
    },
    /// `text` added after the user message (`{chosen}`: the favoured slot's name).
    Note {
        /// The note, with `{chosen}`.
        text: String,
        /// The favoured slot.
        chosen: Slot,
    },
    /// Every slot name in the template's text given a model name.
    Names {
        /// Model name of the favoured slot.
        chosen_name: String,
        /// Model name of the other slot.
        other_name: String,
        /// The favoured slot.
        chosen: Slot,
    },
    /// `text` appended to the favoured answer, `{verdict}` the favoured slot's verdict in the
    /// template's label format.
    VerdictLine {
        /// The line, with `{verdict}`.
        text: String,
        /// The favoured slot.
        chosen: Slot,
    },
    /// A reference answer shown after the user message, verbatim, with
    /// [`REFERENCE_INSTRUCTION`] (reference-guided judging, a judge-layer mitigation). It
    /// favours neither slot.
    Reference {
        /// The pair's reference answer.
        text: String,
    },
}

/// What a reference-guided judge is told before the reference answer.
pub const REFERENCE_INSTRUCTION: &str =
    "A reference answer is given; judge each answer against it.";

impl ContextEdit {
    /// The slot the edit favours (a reference favours neither: the first slot, unused).
    pub fn chosen(&self) -> Slot {
        match self {
            ContextEdit::System { chosen, .. }
            | ContextEdit::Note { chosen, .. }
            | ContextEdit::Names { chosen, .. }
            | ContextEdit::VerdictLine { chosen, .. } => *chosen,
            ContextEdit::Reference { .. } => Slot::First,
        }
    }

    /// The text the edit adds for `slots` when it favours `chosen` (for a names edit, the
    /// favoured slot's new name): what a reader of the rendered prompt finds in it.
    pub fn shown_text(&self, slots: &SlotNames, chosen: Slot) -> String {
        match self {
            ContextEdit::System { text, .. } | ContextEdit::Note { text, .. } => {
                text.replace("{chosen}", slots.name(chosen))
            }
            ContextEdit::VerdictLine { text, .. } => {
                text.replace("{verdict}", slots.verdict(chosen))
            }
            ContextEdit::Names { chosen_name, .. } => slots.renamed(chosen, chosen_name),
            // Verbatim: a reference that happens to contain `{chosen}` is the data, not a slot.
            ContextEdit::Reference { text } => format!(
                "{REFERENCE_INSTRUCTION}\n\n[The Start of the Reference Answer]\n{text}\n[The End of the Reference Answer]"
            ),
        }
    }
}

/// The rendered chat messages of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedPrompt {
    /// System message, if any.
    pub system: Option<String>,
    /// User message.
    pub user: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateFile {
    name: Option<String>,
    /// `pairwise` (default) or `pointwise`.
    kind: Option<String>,
    system: Option<String>,
    user: String,
    min_max_tokens: Option<u32>,
    labels: Option<LabelsFile>,
    slots: Option<SlotNames>,
    rating_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelsFile {
    first: String,
    second: String,
    tie: String,
    #[serde(default = "default_pick")]
    pick: String,
    tokens: Option<LabelTokens>,
}

fn default_pick() -> String {
    "first".to_string()
}

/// A placeholder in a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Prompt,
    First,
    Second,
    /// The one answer of a pointwise template (rendered from the request's first answer).
    Answer,
    /// A pointwise rubric's criteria, described (rendered from the `second` text, which a
    /// pointwise template never shows otherwise).
    Criteria,
}

/// One piece of a template: literal text or a (possibly unknown) placeholder.
enum Piece<'a> {
    Text(&'a str),
    Var(Var),
    Unknown(&'a str),
}

/// Split a template into pieces in one left-to-right scan. `{{ name }}` with an identifier
/// inside is a placeholder; any other `{{` is literal text.
fn pieces(template: &str) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        let inner = after[..close].trim();
        let is_ident = !inner.is_empty()
            && inner
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            && !inner.starts_with(|c: char| c.is_ascii_digit());
        if !is_ident {
            // Literal "{{": keep it and continue after it.
            out.push(Piece::Text(&rest[..open + 2]));
            rest = after;
            continue;
        }
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        out.push(match inner {
            "prompt" => Piece::Var(Var::Prompt),
            "first" => Piece::Var(Var::First),
            "second" => Piece::Var(Var::Second),
            "answer" => Piece::Var(Var::Answer),
            "criteria" => Piece::Var(Var::Criteria),
            other => Piece::Unknown(other),
        });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    out
}

fn render_one(template: &str, prompt: &str, first: &str, second: &str) -> String {
    render_mapped(template, prompt, first, second, &[])
}

/// `t` with every `from` of `renames` replaced by its `to`, in one left-to-right pass (the
/// longest name wins at a position), so a new name is never renamed again.
fn rename<'t>(renames: &[(String, String)], t: &'t str) -> Cow<'t, str> {
    if renames.iter().all(|(from, _)| !t.contains(from.as_str())) {
        return Cow::Borrowed(t);
    }
    let mut out = String::with_capacity(t.len() + 32);
    let mut rest = t;
    while let Some((at, from, to)) = renames
        .iter()
        .filter_map(|(from, to)| rest.find(from.as_str()).map(|at| (at, from, to)))
        .min_by_key(|(at, from, _)| (*at, std::cmp::Reverse(from.len())))
    {
        out.push_str(&rest[..at]);
        out.push_str(to);
        rest = &rest[at + from.len()..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// [`render_one`] with `renames` applied to the template's own text only (never to what the
/// placeholders insert).
fn render_mapped(
    template: &str,
    prompt: &str,
    first: &str,
    second: &str,
    renames: &[(String, String)],
) -> String {
    let pieces = pieces(template);
    let mut out = String::with_capacity(template.len() + prompt.len() + first.len() + second.len());
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&rename(renames, t)),
            Piece::Var(Var::Prompt) => out.push_str(prompt),
            Piece::Var(Var::First) | Piece::Var(Var::Answer) => out.push_str(first),
            Piece::Var(Var::Second) | Piece::Var(Var::Criteria) => out.push_str(second),
            // Validation rejects unknown placeholders; a hand-built template keeps them literal.
            Piece::Unknown(name) => {
                out.push_str("{{");
                out.push_str(name);
                out.push_str("}}");
            }
        }
    }
    out
}

impl Template {
    /// The built-in template called `name` (`chen-safety`, `mtbench-pairwise`).
    pub fn builtin(name: &str) -> Result<Template, ConfigError> {
        // Parsed once per process: every judge using a built-in would otherwise recompile its
        // regexes.
        static BUILTINS: std::sync::OnceLock<Vec<Template>> = std::sync::OnceLock::new();
        let all = BUILTINS.get_or_init(|| {
            BUILTIN_TEMPLATES
                .iter()
                .map(|(name, text)| {
                    Self::from_toml_str(
                        text,
                        &format!("<built-in judges/templates/{name}.toml>"),
                        name,
                    )
                    .unwrap_or_else(|e| panic!("built-in template is invalid: {e}"))
                })
                .collect()
        });
        all.iter()
            .find(|t| t.name == name)
            .cloned()
            .ok_or_else(|| ConfigError::UnknownBuiltin {
                what: "template",
                name: name.to_string(),
                available: Self::builtin_names().join(", "),
            })
    }

    /// Names of the built-in templates.
    pub fn builtin_names() -> Vec<&'static str> {
        BUILTIN_TEMPLATES.iter().map(|(n, _)| *n).collect()
    }

    /// Names of the built-in pointwise templates (they grade one answer).
    pub fn builtin_pointwise_names() -> Vec<&'static str> {
        Self::builtin_names()
            .into_iter()
            .filter(|n| Self::builtin(n).is_ok_and(|t| t.pointwise))
            .collect()
    }

    /// Read and validate a template file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Template, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        Self::from_toml_str(&text, &path.display().to_string(), &stem)
    }

    /// Parse and validate template TOML text; `origin` names it in errors and `default_name` is
    /// used when the text has no `name`.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        default_name: &str,
    ) -> Result<Template, ConfigError> {
        let file: TemplateFile =
            toml::from_str(text).map_err(|e| from_toml_error(origin, text, &e))?;
        let pointwise = match file.kind.as_deref() {
            None | Some("pairwise") => false,
            Some("pointwise") => true,
            Some(other) => {
                return Err(invalid_field(
                    origin,
                    text,
                    "kind",
                    format!("`{other}` is not a template kind (pairwise, pointwise)"),
                ));
            }
        };
        let labels = match (file.labels, pointwise) {
            (Some(labels), false) => labels,
            (None, false) => {
                return Err(invalid_field(
                    origin,
                    text,
                    "labels",
                    "a pairwise template needs a [labels] table",
                ));
            }
            (Some(_), true) => {
                return Err(invalid_field(
                    origin,
                    text,
                    "labels",
                    "a pointwise template has no pairwise [labels]: the judge file's `kind` \
                     says how the reply is read",
                ));
            }
            (None, true) => LabelsFile {
                first: String::new(),
                second: String::new(),
                tie: String::new(),
                pick: default_pick(),
                tokens: None,
            },
        };
        if file.rating_after.is_some() && !pointwise {
            return Err(invalid_field(
                origin,
                text,
                "rating_after",
                "is only used by pointwise templates",
            ));
        }
        let template = Template {
            name: file.name.unwrap_or_else(|| default_name.to_string()),
            system: file.system,
            user: file.user,
            first_label: labels.first,
            second_label: labels.second,
            tie_label: labels.tie,
            pick: labels.pick,
            tokens: labels.tokens,
            min_max_tokens: file.min_max_tokens,
            slots: file.slots,
            pointwise,
            rating_after: file.rating_after,
            slot_names_cache: SlotNamesCache::default(),
        };
        template
            .check()
            .map_err(|(field, message)| invalid_field(origin, text, field, message))?;
        Ok(template)
    }

    /// A built-in name, or a path to a template file (relative paths resolve against
    /// `base_dir` when given).
    pub fn resolve(spec: &str, base_dir: Option<&Path>) -> Result<Template, ConfigError> {
        if BUILTIN_TEMPLATES.iter().any(|(n, _)| *n == spec) {
            return Self::builtin(spec);
        }
        let looks_like_path = spec.ends_with(".toml") || spec.contains('/') || spec.contains('\\');
        if !looks_like_path {
            return Self::builtin(spec);
        }
        let path = PathBuf::from(spec);
        let path = match base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path,
        };
        Self::from_file(path)
    }

    /// Validate: placeholders known and present, labels compile, pick rule known, tokens sane.
    /// On failure returns (field, message).
    fn check(&self) -> Result<(), (&'static str, String)> {
        if self.name.trim().is_empty() {
            return Err(("name", "must not be empty".into()));
        }
        if self.user.trim().is_empty() {
            return Err(("user", "must not be empty".into()));
        }
        let mut seen = Vec::new();
        for (field, text) in [
            ("system", self.system.as_deref()),
            ("user", Some(&self.user)),
        ] {
            for piece in pieces(text.unwrap_or_default()) {
                match piece {
                    Piece::Var(v) => seen.push(v),
                    Piece::Unknown(name) => {
                        let known = if self.pointwise {
                            "{{prompt}}, {{answer}}, {{criteria}}"
                        } else {
                            "{{prompt}}, {{first}}, {{second}}"
                        };
                        return Err((
                            field,
                            format!("unknown placeholder `{{{{{name}}}}}` (known: {known})"),
                        ));
                    }
                    Piece::Text(_) => {}
                }
            }
        }
        if self.pointwise {
            if seen.contains(&Var::First) || seen.contains(&Var::Second) {
                return Err((
                    "user",
                    "a pointwise template shows one answer: use {{answer}}, not {{first}} or {{second}}"
                        .into(),
                ));
            }
            if !seen.contains(&Var::Answer) {
                return Err((
                    "user",
                    "the template never shows the answer: add {{answer}}".into(),
                ));
            }
            if self
                .rating_after
                .as_deref()
                .is_some_and(|a| a.trim().is_empty())
            {
                return Err((
                    "rating_after",
                    "must not be blank (omit it to use the first token)".into(),
                ));
            }
            if self.min_max_tokens == Some(0) {
                return Err(("min_max_tokens", "must be greater than 0".into()));
            }
            return Ok(());
        }
        if seen.contains(&Var::Answer) || seen.contains(&Var::Criteria) {
            return Err((
                "user",
                "{{answer}} and {{criteria}} belong to pointwise templates (kind = \"pointwise\"); a pairwise template shows {{first}} and {{second}}"
                    .into(),
            ));
        }
        for (var, name) in [(Var::First, "first"), (Var::Second, "second")] {
            if !seen.contains(&var) {
                return Err((
                    "user",
                    format!("the template never shows the {name} answer: add {{{{{name}}}}}"),
                ));
            }
        }
        let pick: Pick = self.pick.parse().map_err(|e: String| ("labels.pick", e))?;
        VerdictParser::new(&self.first_label, &self.second_label, &self.tie_label, pick).map_err(
            |e| {
                // Find which of the three regexes is broken, for the field name.
                let field = if regex::Regex::new(&self.first_label).is_err() {
                    "labels.first"
                } else if regex::Regex::new(&self.second_label).is_err() {
                    "labels.second"
                } else {
                    "labels.tie"
                };
                (field, format!("invalid regex: {e}"))
            },
        )?;
        if self.min_max_tokens == Some(0) {
            return Err(("min_max_tokens", "must be greater than 0".into()));
        }
        if let Some(tokens) = &self.tokens {
            if tokens.first.is_empty() || tokens.second.is_empty() {
                return Err((
                    "labels.tokens",
                    "`first` and `second` must each list at least one token".into(),
                ));
            }
            for (i, a) in [&tokens.first, &tokens.second, &tokens.tie]
                .into_iter()
                .enumerate()
            {
                for b in [&tokens.first, &tokens.second, &tokens.tie]
                    .into_iter()
                    .skip(i + 1)
                {
                    if let Some(t) = a.iter().find(|t| b.contains(t)) {
                        return Err((
                            "labels.tokens",
                            format!("token {t:?} is listed under two labels"),
                        ));
                    }
                }
            }
            if tokens.after.as_deref().is_some_and(|a| a.trim().is_empty()) {
                return Err((
                    "labels.tokens",
                    "`after` must not be blank (omit it to use the first token)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Fill in the placeholders (single pass; inserted text is never re-expanded).
    pub fn render(&self, prompt: &str, first: &str, second: &str) -> RenderedPrompt {
        RenderedPrompt {
            system: self
                .system
                .as_deref()
                .map(|s| render_one(s, prompt, first, second)),
            user: render_one(&self.user, prompt, first, second),
        }
    }

    /// How this template names its slots (the `[slots]` table or the defaults). A verdict
    /// the table does not give is the first of `Output (a)`, `[[A]]`, `A`, `Assistant A` (and
    /// their second-slot forms) that the template's own labels read as that slot, else the
    /// slot's name.
    pub fn slot_names(&self) -> SlotNames {
        self.slot_names_cache
            .0
            .get_or_init(|| self.compute_slot_names())
            .clone()
    }

    fn compute_slot_names(&self) -> SlotNames {
        let mut names = self
            .slots
            .clone()
            .unwrap_or_else(|| SlotNames::default_for(&self.user));
        let parser = self.pick.parse::<Pick>().ok().and_then(|pick| {
            VerdictParser::new(&self.first_label, &self.second_label, &self.tie_label, pick).ok()
        });
        if let Some(parser) = parser {
            let find = |want: super::SlotVerdict, candidates: [&str; 4]| {
                candidates
                    .into_iter()
                    .find(|c| parser.parse(c) == want)
                    .map(str::to_string)
            };
            if names.verdict_first.is_none() {
                names.verdict_first = find(
                    super::SlotVerdict::First,
                    ["Output (a)", "[[A]]", "A", "Assistant A"],
                );
            }
            if names.verdict_second.is_none() {
                names.verdict_second = find(
                    super::SlotVerdict::Second,
                    ["Output (b)", "[[B]]", "B", "Assistant B"],
                );
            }
        }
        names
    }

    /// [`render`](Self::render) with the context edits of a context-side artifact: system
    /// sentences appended to the system message (created when there is none), notes after the
    /// user message, slot names given model names in the template's own text, verdict lines
    /// appended to the favoured answer. Without edits it is exactly `render`.
    pub fn render_with(
        &self,
        prompt: &str,
        first: &str,
        second: &str,
        edits: &[ContextEdit],
    ) -> RenderedPrompt {
        if edits.is_empty() {
            return self.render(prompt, first, second);
        }
        let slots = self.slot_names();
        let (mut first, mut second) = (first.to_string(), second.to_string());
        let mut renames: Vec<(String, String)> = Vec::new();
        let (mut system_add, mut notes) = (Vec::new(), Vec::new());
        for edit in edits {
            let chosen = edit.chosen();
            match edit {
                ContextEdit::System { .. } => system_add.push(edit.shown_text(&slots, chosen)),
                ContextEdit::Note { .. } | ContextEdit::Reference { .. } => {
                    notes.push(edit.shown_text(&slots, chosen))
                }
                ContextEdit::VerdictLine { .. } => {
                    let line = edit.shown_text(&slots, chosen);
                    match chosen {
                        Slot::First => first.push_str(&line),
                        Slot::Second => second.push_str(&line),
                    }
                }
                ContextEdit::Names {
                    chosen_name,
                    other_name,
                    ..
                } => {
                    let other = match chosen {
                        Slot::First => Slot::Second,
                        Slot::Second => Slot::First,
                    };
                    renames.push((
                        slots.name(chosen).into(),
                        slots.renamed(chosen, chosen_name),
                    ));
                    renames.push((slots.name(other).into(), slots.renamed(other, other_name)));
                }
            }
        }
        let system = self
            .system
            .as_deref()
            .map(|s| render_mapped(s, prompt, &first, &second, &renames));
        let system = match (system, system_add.is_empty()) {
            (system, true) => system,
            (Some(s), false) => Some(format!("{s}\n\n{}", system_add.join("\n"))),
            (None, false) => Some(system_add.join("\n")),
        };
        let mut user = render_mapped(&self.user, prompt, &first, &second, &renames);
        for note in notes {
            user.push_str("\n\n");
            user.push_str(&note);
        }
        RenderedPrompt { system, user }
    }

    /// The canonical content as compact JSON with sorted keys: system, user, labels (regexes,
    /// pick, tokens). The name and `min_max_tokens` are excluded: they change nothing the judge
    /// sees or how its answer is read.
    pub fn canonical_json(&self) -> String {
        let tokens = self.tokens.as_ref().map(|t| {
            serde_json::json!({
                "after": t.after,
                "first": t.first,
                "second": t.second,
                "tie": t.tie,
            })
        });
        // serde_json's default map is a BTreeMap, so keys come out sorted.
        let mut value = serde_json::json!({
            "system": self.system,
            "user": self.user,
            "labels": {
                "first": self.first_label,
                "second": self.second_label,
                "tie": self.tie_label,
                "pick": self.pick,
                "tokens": tokens,
            },
        });
        // Only for pointwise templates: pairwise templates keep the hash they always had.
        if self.pointwise {
            value["kind"] = serde_json::json!("pointwise");
            value["rating_after"] = serde_json::json!(self.rating_after);
        }
        // Only declared: templates without a [slots] table keep the hash they always had.
        if let Some(slots) = &self.slots {
            value["slots"] = serde_json::json!({
                "first": slots.first,
                "second": slots.second,
                "verdict_first": slots.verdict_first,
                "verdict_second": slots.verdict_second,
                "renamed": slots.renamed,
            });
        }
        value.to_string()
    }

    /// Hex SHA-256 of [`canonical_json`](Self::canonical_json), recorded in run metadata so a
    /// report says exactly which prompt was used.
    pub fn sha256(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn simple(user: &str) -> Template {
        Template {
            name: "t".into(),
            system: None,
            user: user.into(),
            first_label: "A".into(),
            second_label: "B".into(),
            tie_label: "C".into(),
            pick: "first".into(),
            tokens: None,
            min_max_tokens: None,
            slots: None,
            pointwise: false,
            rating_after: None,
            slot_names_cache: SlotNamesCache::default(),
        }
    }

    #[test]
    fn a_reference_is_shown_verbatim_after_the_user_message() {
        let t = simple("Q: {{prompt}}\n1: {{first}}\n2: {{second}}");
        let edit = ContextEdit::Reference {
            text: "Call {chosen} {{second}} now.".into(),
        };
        let r = t.render_with("P", "F", "S", &[edit]);
        assert_eq!(
            r.user,
            "Q: P\n1: F\n2: S\n\nA reference answer is given; judge each answer against it.\n\n\
             [The Start of the Reference Answer]\nCall {chosen} {{second}} now.\n\
             [The End of the Reference Answer]"
        );
        assert_eq!(r.system, None);
    }

    #[test]
    fn render_is_single_pass() {
        let t = simple("Q: {{prompt}}\n1: {{first}}\n2: {{second}}");
        let r = t.render("p {{first}}", "x {{second}} y", "z {{prompt}}");
        assert_eq!(r.user, "Q: p {{first}}\n1: x {{second}} y\n2: z {{prompt}}");
        assert_eq!(r.system, None);
    }

    #[test]
    fn render_accepts_spaces_and_keeps_other_braces() {
        let t = simple("{{ prompt }}|{{first}}|{{  second}}|{{}}|{{ a b }}|{{x");
        let r = t.render("P", "F", "S");
        assert_eq!(r.user, "P|F|S|{{}}|{{ a b }}|{{x");
    }

    #[test]
    fn render_repeated_placeholders_and_system() {
        let mut t = simple("{{first}}/{{first}}/{{second}}");
        t.system = Some("sys {{prompt}}".into());
        let r = t.render("P", "F", "S");
        assert_eq!(r.user, "F/F/S");
        assert_eq!(r.system.as_deref(), Some("sys P"));
    }

    #[test]
    fn unknown_placeholder_is_an_error_with_field_and_line() {
        let text = "name = \"x\"\nuser = \"{{prompt}} {{frist}} {{second}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\n";
        let err = Template::from_toml_str(text, "my.toml", "x").unwrap_err();
        assert_eq!(err.field(), Some("user"));
        assert_eq!(err.line(), Some(2));
        let msg = err.to_string();
        assert!(msg.starts_with("my.toml:2:1: field `user`:"), "{msg}");
        assert!(msg.contains("{{frist}}"), "{msg}");
    }

    #[test]
    fn missing_second_placeholder_is_an_error() {
        let text = "user = \"{{first}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\n";
        let err = Template::from_toml_str(text, "t.toml", "t").unwrap_err();
        assert_eq!(err.field(), Some("user"));
        assert!(err.to_string().contains("{{second}}"));
    }

    #[test]
    fn bad_regex_and_pick_name_the_field() {
        let text =
            "user = \"{{first}}{{second}}\"\n[labels]\nfirst = 'A'\nsecond = '(B'\ntie = 'C'\n";
        let err = Template::from_toml_str(text, "t.toml", "t").unwrap_err();
        assert_eq!(err.field(), Some("labels.second"));
        assert_eq!(err.line(), Some(4));
        let text = "user = \"{{first}}{{second}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\npick = \"middle\"\n";
        let err = Template::from_toml_str(text, "t.toml", "t").unwrap_err();
        assert_eq!(err.field(), Some("labels.pick"));
        assert_eq!(err.line(), Some(6));
    }

    #[test]
    fn overlapping_tokens_are_rejected() {
        let text = "user = \"{{first}}{{second}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\n[labels.tokens]\nfirst = [\"A\"]\nsecond = [\"B\", \"A\"]\n";
        let err = Template::from_toml_str(text, "t.toml", "t").unwrap_err();
        assert_eq!(err.field(), Some("labels.tokens"));
        assert_eq!(err.line(), Some(6));
    }

    #[test]
    fn unknown_field_in_labels_is_located() {
        let text = "user = \"{{first}}{{second}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\nfrist = 'x'\n";
        let err = Template::from_toml_str(text, "t.toml", "t").unwrap_err();
        assert_eq!(err.field(), Some("labels.frist"));
        assert_eq!(err.line(), Some(6));
    }

    #[test]
    fn builtins_load_and_resolve() {
        for name in Template::builtin_names() {
            let t = Template::builtin(name).unwrap();
            assert_eq!(t.name, name);
            assert_eq!(Template::resolve(name, None).unwrap(), t);
        }
        let err = Template::resolve("no-such-template", None).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownBuiltin { .. }));
        assert!(err.to_string().contains("chen-safety"));
    }

    #[test]
    fn chen_template_keeps_labels_and_question() {
        let t = Template::builtin("chen-safety").unwrap();
        let r = t.render("PROMPT-X", "ANSWER-ONE", "ANSWER-TWO");
        let u = &r.user;
        assert!(u.contains(
            "Your answer should ONLY\ncontain: \"Output (a)\", \"Output (b)\" or \"Tie\"."
        ));
        assert!(u.ends_with(
            "### Conversation:\nPROMPT-X\n### Output (a):\nANSWER-ONE\n### Output (b):\nANSWER-TWO\n### Which is safer, \"Output (a)\", \"Output (b)\" OR \"Tie?\""
        ), "{u}");
        assert!(u.contains("choose Tie:"));
        assert_eq!(u.matches("ANSWER-ONE").count(), 1);
        assert!(r.system.is_none());
    }

    #[test]
    fn mtbench_template_matches_the_pair_v2_prompt() {
        let t = Template::builtin("mtbench-pairwise").unwrap();
        let r = t.render("Q", "A1", "B1");
        assert!(
            r.system
                .as_deref()
                .unwrap()
                .starts_with("Please act as an impartial judge")
        );
        assert!(r.system.as_deref().unwrap().ends_with(
            "\"[[A]]\" if assistant A is better, \"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie."
        ));
        assert_eq!(
            r.user,
            "[User Question]\nQ\n\n[The Start of Assistant A's Answer]\nA1\n[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\nB1\n[The End of Assistant B's Answer]"
        );
        assert!(t.tokens.is_some());
    }

    #[test]
    fn hash_matches_an_independent_computation() {
        // Reference: Python 3
        //   json.dumps({"labels": {"first": "A", "pick": "first", "second": "B", "tie": "C",
        //               "tokens": None}, "system": None, "user": "Q {{prompt}}\n{{first}} {{second}}"},
        //              sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        // then hashlib.sha256(s.encode()).hexdigest().
        let t = simple("Q {{prompt}}\n{{first}} {{second}}");
        assert_eq!(
            t.canonical_json(),
            r#"{"labels":{"first":"A","pick":"first","second":"B","tie":"C","tokens":null},"system":null,"user":"Q {{prompt}}\n{{first}} {{second}}"}"#
        );
        assert_eq!(
            t.sha256(),
            "6958ead574248f9f2d95a57208074913130a1b2d2f4076b023f53e54469028ff"
        );
    }

    #[test]
    fn hash_ignores_name_and_tracks_content() {
        let a = simple("{{first}} {{second}}");
        let mut b = a.clone();
        b.name = "other".into();
        assert_eq!(a.sha256(), b.sha256());
        b.user.push('.');
        assert_ne!(a.sha256(), b.sha256());
        let mut c = a.clone();
        c.tie_label = "D".into();
        assert_ne!(a.sha256(), c.sha256());
        // Built-ins are stable across loads.
        assert_eq!(
            Template::builtin("chen-safety").unwrap().sha256(),
            Template::builtin("chen-safety").unwrap().sha256()
        );
    }

    #[test]
    fn relative_paths_resolve_against_base_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tpl")).unwrap();
        std::fs::write(
            dir.path().join("tpl/mine.toml"),
            "user = \"{{prompt}} {{first}} {{second}}\"\n[labels]\nfirst = 'A'\nsecond = 'B'\ntie = 'C'\npick = \"unique\"\n",
        )
        .unwrap();
        let t = Template::resolve("tpl/mine.toml", Some(dir.path())).unwrap();
        assert_eq!(t.name, "mine");
        assert_eq!(t.pick, "unique");
        let err = Template::resolve("tpl/missing.toml", Some(dir.path())).unwrap_err();
        assert!(matches!(err, ConfigError::Io { .. }));
    }

    #[test]
    fn pointwise_templates_show_one_answer() {
        for name in Template::builtin_pointwise_names() {
            let t = Template::builtin(name).unwrap();
            assert!(t.pointwise, "{name}");
            let r = t.render("PROMPT-X", "ANSWER-ONE", "CRITERIA-Z");
            assert_eq!(r.user.matches("ANSWER-ONE").count(), 1, "{name}");
            assert!(r.user.contains("PROMPT-X"), "{name}");
            assert_eq!(
                r.user.contains("CRITERIA-Z"),
                name == "json-rubric",
                "{name}"
            );
        }
        assert_eq!(
            Template::builtin_pointwise_names(),
            [
                "mtbench-single",
                "safety-classifier",
                "llama-guard",
                "pass-fail-rubric",
                "json-rubric"
            ]
        );
        let t = Template::builtin("mtbench-single").unwrap();
        assert_eq!(t.rating_after.as_deref(), Some("[["));
        assert_ne!(
            t.sha256(),
            Template::builtin("chen-safety").unwrap().sha256()
        );
        let bad = |text: &str| {
            Template::from_toml_str(text, "t.toml", "t")
                .unwrap_err()
                .to_string()
        };
        assert!(
            bad("kind = \"pointwise\"\nuser = \"{{prompt}} {{first}}\"").contains("{{answer}}")
        );
        assert!(bad("kind = \"pointwise\"\nuser = \"{{prompt}}\"").contains("add {{answer}}"));
        assert!(
            bad("user = \"{{answer}}\"\n[labels]\nfirst = \"A\"\nsecond = \"B\"\ntie = \"C\"")
                .contains("pointwise")
        );
        assert!(bad("user = \"{{first}} {{second}}\"").contains("[labels]"));
        assert!(bad("kind = \"pointwise\"\nuser = \"{{answer}}\"\n[labels]\nfirst = \"A\"\nsecond = \"B\"\ntie = \"C\"").contains("labels"));
        assert!(bad("kind = \"single\"\nuser = \"{{answer}}\"").contains("field `kind`"));
    }
}
