//! The summary's rewrite section, as data: per LLM-rewritten artifact, who rewrote it, how many
//! rewrites passed the meaning check (and why the others failed), and a few originals next to
//! their rewrites with the changed words located. `report::rewrites` renders it.

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
