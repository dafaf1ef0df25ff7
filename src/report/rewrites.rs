//! The report's rewrite section: per LLM-rewritten artifact, who rewrote it, how many rewrites
//! passed the meaning check (and why the others failed), and a few originals next to their
//! rewrites with the changed words marked, so a reader can judge the rewriter.

use crate::dataset::Pair;
use crate::design::{self, PerturbedAnswers, Side};
use crate::perturb::{Artifact, Operation};
use crate::run::rewrites::{RewriteUsage, RewriterSet};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ops::Range;

/// Originals shown next to their rewrites, per artifact.
pub const EXAMPLES_PER_ARTIFACT: usize = 3;
/// Rejected items listed by pair, per artifact.
pub const REJECTED_LISTED: usize = 20;

/// Every rewrite artifact of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RewriteSection {
    /// Rewriter calls and their cost over the whole run (all sessions).
    pub usage: RewriteUsage,
    /// One entry per rewrite artifact, in plan order.
    pub artifacts: Vec<RewriteArtifact>,
}

/// One rewrite artifact.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriteArtifact {
    /// Artifact id.
    pub id: String,
    /// Rewriter judge name.
    pub rewriter: String,
    /// Its model.
    pub model: String,
    /// Checker judge name, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker: Option<String>,
    /// SHA-256 of the instruction template.
    pub instruction_sha256: String,
    /// Instruction parameters.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub params: BTreeMap<String, String>,
    /// Answers the plan rewrites.
    pub items: u64,
    /// Rewrites that failed the meaning check (or were never made).
    pub rejected: u64,
    /// `rejected / items`.
    pub rejected_share: f64,
    /// Rejections by reason.
    pub reasons: BTreeMap<String, u64>,
    /// The first rejected items (pair id, side, reason), in dataset order.
    pub rejected_items: Vec<RejectedItem>,
    /// A few passing rewrites next to their originals.
    pub examples: Vec<RewriteExample>,
}

/// One rejected rewrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedItem {
    /// Pair id.
    pub pair_id: String,
    /// `a` or `b`.
    pub side: String,
    /// Why.
    pub reason: String,
}

/// An original answer and its rewrite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RewriteExample {
    /// Pair id.
    pub pair_id: String,
    /// `a` or `b`.
    pub side: String,
    /// The original answer (untrusted text).
    pub original: String,
    /// The rewrite (untrusted text).
    pub rewritten: String,
    /// Byte ranges of `rewritten` whose words are not in the original.
    pub changed: Vec<Range<usize>>,
}

impl RewriteSection {
    /// The section of a run, from the perturbed answers its analysis used. `None` without
    /// rewrite artifacts.
    pub fn build(
        artifacts: &[Artifact],
        pairs: &[Pair],
        perturbed: &PerturbedAnswers,
        sets: &BTreeMap<String, RewriterSet>,
        usage: Option<&RewriteUsage>,
    ) -> Option<RewriteSection> {
        let mut out = Vec::new();
        for a in artifacts.iter().filter(|a| a.is_rewrite()) {
            let Operation::Rewrite {
                instruction,
                params,
                ..
            } = &a.operation
            else {
                continue;
            };
            let set = sets.get(&a.id);
            let mut entry = RewriteArtifact {
                id: a.id.clone(),
                rewriter: set.map(|s| s.rewriter.name.clone()).unwrap_or_default(),
                model: set.map(|s| s.rewriter.model.clone()).unwrap_or_default(),
                checker: set.and_then(|s| s.checker.as_ref().map(|c| c.name.clone())),
                instruction_sha256: crate::perturb::rewrite::instruction_hash(instruction),
                params: params.clone(),
                items: 0,
                rejected: 0,
                rejected_share: 0.0,
                reasons: BTreeMap::new(),
                rejected_items: Vec::new(),
                examples: Vec::new(),
            };
            for (i, pair) in pairs.iter().enumerate() {
                for side in [Side::A, Side::B] {
                    let Some(p) = perturbed.get(&a.id, i, side) else {
                        continue;
                    };
                    entry.items += 1;
                    if let Some(reason) = &p.rejected {
                        entry.rejected += 1;
                        *entry.reasons.entry(reason.clone()).or_insert(0) += 1;
                        if entry.rejected_items.len() < REJECTED_LISTED {
                            entry.rejected_items.push(RejectedItem {
                                pair_id: pair.id.clone(),
                                side: side.letter().into(),
                                reason: reason.clone(),
                            });
                        }
                    } else if entry.examples.len() < EXAMPLES_PER_ARTIFACT {
                        entry.examples.push(RewriteExample {
                            pair_id: pair.id.clone(),
                            side: side.letter().into(),
                            original: design::answer(pair, side).to_string(),
                            rewritten: p.text.clone(),
                            changed: p.injected.clone(),
                        });
                    }
                }
            }
            if entry.items > 0 {
                entry.rejected_share = entry.rejected as f64 / entry.items as f64;
            }
            out.push(entry);
        }
        (!out.is_empty()).then(|| RewriteSection {
            usage: usage.cloned().unwrap_or_default(),
            artifacts: out,
        })
    }
}

/// `text` with the `changed` ranges marked `**…**`, Markdown-escaped (answers are untrusted).
fn marked_markdown(text: &str, changed: &[Range<usize>]) -> String {
    use super::markdown::escape;
    let mut out = String::new();
    let mut at = 0;
    for r in changed {
        if r.start < at
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            continue;
        }
        out.push_str(&escape(&text[at..r.start]));
        out.push_str("**");
        out.push_str(&escape(&text[r.clone()]));
        out.push_str("**");
        at = r.end;
    }
    out.push_str(&escape(&text[at..]));
    out
}

/// The Markdown section.
pub fn markdown(section: &RewriteSection) -> String {
    use super::markdown::escape;
    use std::fmt::Write;
    let mut out = String::new();
    let u = &section.usage;
    let _ = writeln!(
        out,
        "## LLM-rewritten artifacts\n\n{} rewrites and {} meaning checks stored ({} input / {} output tokens, ${:.4}). A rewrite that fails the meaning check (length bounds, no new numbers, URLs or names, refusal kept, and the checker model when configured) is excluded from its artifact's estimates.\n",
        u.rewrites, u.checks, u.input_tokens, u.output_tokens, u.cost_usd
    );
    for a in &section.artifacts {
        let _ = writeln!(
            out,
            "### {}\n\nRewriter `{}` (model `{}`{}), instruction sha256 `{}`{}. **Failed the meaning check: {} of {} ({:.1}%)**{}.\n",
            escape(&a.id),
            escape(&a.rewriter),
            escape(&a.model),
            a.checker
                .as_ref()
                .map(|c| format!(", checker `{}`", escape(c)))
                .unwrap_or_default(),
            &a.instruction_sha256[..16.min(a.instruction_sha256.len())],
            if a.params.is_empty() {
                String::new()
            } else {
                format!(
                    ", parameters {}",
                    a.params
                        .iter()
                        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            a.rejected,
            a.items,
            100.0 * a.rejected_share,
            if a.reasons.is_empty() {
                String::new()
            } else {
                format!(
                    " — {}",
                    a.reasons
                        .iter()
                        .map(|(r, n)| format!("{}: {n}", escape(r)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
        if !a.rejected_items.is_empty() {
            let listed: Vec<String> = a
                .rejected_items
                .iter()
                .map(|r| {
                    format!(
                        "`{}`/{} ({})",
                        escape(&r.pair_id),
                        r.side,
                        escape(&r.reason)
                    )
                })
                .collect();
            let _ = writeln!(out, "Rejected: {}.\n", listed.join(", "));
        }
        for ex in &a.examples {
            let _ = writeln!(
                out,
                "- pair `{}`, answer {}:\n  - original: {}\n  - rewrite (changes in bold): {}",
                escape(&ex.pair_id),
                ex.side,
                escape(&ex.original).replace('\n', " "),
                marked_markdown(&ex.rewritten, &ex.changed).replace('\n', " ")
            );
        }
        out.push('\n');
    }
    out
}

/// The HTML section (every text escaped by maud; changes in `<mark>`).
pub fn html(section: &RewriteSection) -> maud::Markup {
    use super::text::Text;
    use maud::html;
    let u = &section.usage;
    html! {
        section #rewrites {
            h2 { "LLM-rewritten artifacts" }
            p.intro {
                (u.rewrites) " rewrites and " (u.checks) " meaning checks stored (" (u.input_tokens) " input / "
                (u.output_tokens) " output tokens, $" (format!("{:.4}", u.cost_usd)) "). A rewrite that fails the meaning check is excluded from its artifact's estimates. Words of a rewrite that are not in the original are "
                mark { "highlighted" } "."
            }
            @for a in &section.artifacts {
                h3 { (Text(&a.id)) }
                p {
                    "Rewriter " span.mono { (Text(&a.rewriter)) } " (model " span.mono { (Text(&a.model)) } ")"
                    @if let Some(c) = &a.checker { ", checker " span.mono { (Text(c)) } }
                    ". " b { "Failed the meaning check: " (a.rejected) " of " (a.items) " (" (format!("{:.1}", 100.0 * a.rejected_share)) "%)" }
                    @for (r, n) in &a.reasons { " · " (Text(r)) ": " (n) }
                }
                @if !a.params.is_empty() {
                    p { "Parameters: " @for (k, v) in &a.params { span.mono { (Text(k)) " = " (Text(v)) } " " } }
                }
                @if !a.rejected_items.is_empty() {
                    p.note {
                        "Rejected: "
                        @for (k, r) in a.rejected_items.iter().enumerate() {
                            @if k > 0 { ", " }
                            span.mono { (Text(&r.pair_id)) "/" (r.side) } " (" (Text(&r.reason)) ")"
                        }
                    }
                }
                @for ex in &a.examples {
                    article.example {
                        div.head { span { "pair " span.mono { (Text(&ex.pair_id)) } } span { "answer " (ex.side) } }
                        div.cols {
                            div.col { h4 { "Original" } div.answer { (maud::PreEscaped(super::html::highlighted(&ex.original, &[], super::html::DISPLAY_LIMIT))) } }
                            div.col { h4 { "Rewrite" } div.answer { (maud::PreEscaped(super::html::highlighted(&ex.rewritten, &ex.changed, super::html::DISPLAY_LIMIT))) } }
                        }
                    }
                }
            }
        }
    }
}
