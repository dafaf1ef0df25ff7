//! Records indexed once into dense arrays: one byte per (judge, pair, condition slot).
//!
//! The plan gives every judge the same condition slots per pair, so a judge's verdicts are a
//! `pairs × slots` byte matrix. Building it costs one pass over the plan (to mark planned slots)
//! and one over the records (one hash lookup per record for the pair id); every metric afterwards
//! reads bytes by index, with no string comparison or allocation. A run's calls come either as
//! records or, for `run` and `report`, as [`CallColumns`] read from the store (one byte per call).

use crate::design::{ConditionKind, Order, Plan, Side};
use crate::judge::{LabelProbs, SlotVerdict};
use crate::run::CallRecord;
use crate::run::columns::CallColumns;
use std::collections::HashMap;

/// The slot is not part of the plan.
pub(crate) const NOT_PLANNED: u8 = 0;
/// Planned, but no verdict: the call failed or is missing.
pub(crate) const FAILED: u8 = 1;
/// An unparseable verdict.
pub(crate) const INVALID: u8 = 2;
/// The first slot won.
pub(crate) const FIRST: u8 = 3;
/// The second slot won.
pub(crate) const SECOND: u8 = 4;
/// A tie.
pub(crate) const TIE: u8 = 5;

/// Code of a record's verdict.
pub(crate) fn code_of(verdict: Option<SlotVerdict>) -> u8 {
    match verdict {
        None => FAILED,
        Some(SlotVerdict::Invalid) => INVALID,
        Some(SlotVerdict::First) => FIRST,
        Some(SlotVerdict::Second) => SECOND,
        Some(SlotVerdict::Tie) => TIE,
    }
}

/// One verdict from the point of view of one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Obs {
    /// Not planned.
    NotPlanned,
    /// Planned; the call failed or is missing.
    Failed,
    /// Unparseable.
    Invalid,
    /// +1 the answer wins, 0 tie, -1 it loses.
    Val(i8),
}

impl Obs {
    /// The score, for a valid verdict.
    pub(crate) fn val(self) -> Option<i8> {
        match self {
            Obs::Val(v) => Some(v),
            _ => None,
        }
    }
}

/// The outcome of `code` for the answer in the first slot (`ours_first`) or the second.
pub(crate) fn obs(code: u8, ours_first: bool) -> Obs {
    match code {
        NOT_PLANNED => Obs::NotPlanned,
        FAILED => Obs::Failed,
        INVALID => Obs::Invalid,
        FIRST => Obs::Val(if ours_first { 1 } else { -1 }),
        SECOND => Obs::Val(if ours_first { -1 } else { 1 }),
        _ => Obs::Val(0),
    }
}

/// Where each condition lives in a pair's row of slots. With R repeats and A artifacts:
/// baseline `order·R + repeat` (2R slots), then per artifact a block of 4R tie-detection slots
/// (`side·2R + order·R + repeat`) and 4 shift slots (`side·2 + order`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Baseline repeats per order.
    pub repeats: usize,
    /// Artifact ids in plan order.
    pub artifacts: Vec<String>,
    /// Slots per pair.
    pub slots: usize,
}

fn side_index(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn order_index(order: Order) -> usize {
    match order {
        Order::Ab => 0,
        Order::Ba => 1,
    }
}

impl Layout {
    /// The layout of `plan`.
    pub(crate) fn new(plan: &Plan) -> Layout {
        let repeats = plan.options.repeats.max(1) as usize;
        let slots = 2 * repeats + plan.artifacts.len() * (4 * repeats + 4);
        Layout {
            repeats,
            artifacts: plan.artifacts.clone(),
            slots,
        }
    }

    fn block(&self, artifact: usize) -> usize {
        2 * self.repeats + artifact * (4 * self.repeats + 4)
    }

    /// Baseline slot.
    pub(crate) fn baseline(&self, order: Order, repeat: usize) -> usize {
        order_index(order) * self.repeats + repeat
    }

    /// Tie-detection slot.
    pub(crate) fn tie(&self, artifact: usize, side: Side, order: Order, repeat: usize) -> usize {
        self.block(artifact)
            + side_index(side) * 2 * self.repeats
            + order_index(order) * self.repeats
            + repeat
    }

    /// Shift slot.
    pub(crate) fn shift(&self, artifact: usize, side: Side, order: Order) -> usize {
        self.block(artifact) + 4 * self.repeats + side_index(side) * 2 + order_index(order)
    }

    /// The slot of a call, or `None` when it does not fit the layout (an artifact not in the
    /// plan, a repeat beyond the plan's, a shift call with a repeat).
    pub(crate) fn slot(
        &self,
        kind: ConditionKind,
        artifact: Option<usize>,
        side: Option<Side>,
        order: Order,
        repeat: usize,
    ) -> Option<usize> {
        if repeat >= self.repeats {
            return None;
        }
        match kind {
            ConditionKind::Baseline => Some(self.baseline(order, repeat)),
            ConditionKind::TieDetection => Some(self.tie(artifact?, side?, order, repeat)),
            ConditionKind::Shift if repeat == 0 => Some(self.shift(artifact?, side?, order)),
            ConditionKind::Shift => None,
        }
    }

    /// Index of `artifact` in the plan.
    pub(crate) fn artifact_index(&self, artifact: &str) -> Option<usize> {
        self.artifacts.iter().position(|a| a == artifact)
    }
}

/// Call counts gathered while indexing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub planned: u64,
    /// Planned calls with a committed record, answered or failed (the rest are pending).
    pub recorded: u64,
    pub completed: u64,
    pub invalid: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// One judge's verdicts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Verdicts {
    /// `pairs × slots` codes.
    pub codes: Vec<u8>,
    /// Label probabilities `[P(first), P(second), P(tie)]` per cell (NaN when absent); `None`
    /// when no record of the judge carries them.
    pub probs: Option<Vec<[f32; 3]>>,
    /// Call counts.
    pub counts: Counts,
}

impl Verdicts {
    /// Code of `slot` for pair `pair`.
    #[inline]
    pub(crate) fn code(&self, layout: &Layout, pair: usize, slot: usize) -> u8 {
        self.codes[pair * layout.slots + slot]
    }

    /// Label probabilities of a cell, when present.
    pub(crate) fn probs(&self, layout: &Layout, pair: usize, slot: usize) -> Option<[f64; 3]> {
        let p = self.probs.as_ref()?[pair * layout.slots + slot];
        p[0].is_finite()
            .then(|| [f64::from(p[0]), f64::from(p[1]), f64::from(p[2])])
    }
}

/// Every judge of the plan, indexed.
pub(crate) struct Index {
    pub layout: Layout,
    pub judges: Vec<Verdicts>,
}

fn probs_array(p: &LabelProbs) -> [f32; 3] {
    [p.first as f32, p.second as f32, p.tie as f32]
}

impl Index {
    /// Index `records` against `plan` (pairs are matched by id against `pair_ids`). Records of
    /// judges or pairs outside the plan are ignored; a later record for the same call replaces an
    /// earlier one.
    pub(crate) fn build(plan: &Plan, pair_ids: &[String], records: &[CallRecord]) -> Index {
        let layout = Layout::new(plan);
        let n_pairs = pair_ids.len();
        let pair_index: HashMap<&str, usize> = pair_ids
            .iter()
            .enumerate()
            .map(|(i, p)| (p.as_str(), i))
            .collect();
        let mut judges: Vec<Verdicts> = plan
            .judges
            .iter()
            .map(|_| Verdicts {
                codes: vec![NOT_PLANNED; n_pairs * layout.slots],
                probs: None,
                counts: Counts::default(),
            })
            .collect();
        let artifact_of = |name: Option<&str>| name.and_then(|a| layout.artifact_index(a));
        for spec in &plan.calls {
            let Some(judge) = judges.get_mut(spec.judge_index) else {
                continue;
            };
            judge.counts.planned += 1;
            if spec.pair_index >= n_pairs {
                continue;
            }
            if let Some(slot) = layout.slot(
                spec.kind,
                artifact_of(spec.artifact.as_deref()),
                spec.side,
                spec.order,
                spec.repeat as usize,
            ) {
                judge.codes[spec.pair_index * layout.slots + slot] = FAILED;
            }
        }
        let judge_index: HashMap<&str, usize> = plan
            .judges
            .iter()
            .enumerate()
            .map(|(i, j)| (j.as_str(), i))
            .collect();
        for record in records {
            let (Some(&j), Some(&pair)) = (
                judge_index.get(record.judge.as_str()),
                pair_index.get(record.pair_id.as_str()),
            ) else {
                continue;
            };
            let judge = &mut judges[j];
            judge.counts.recorded += 1;
            if let Some(verdict) = record.verdict {
                judge.counts.completed += 1;
                if verdict == SlotVerdict::Invalid {
                    judge.counts.invalid += 1;
                }
            }
            if let Some(usage) = record.usage {
                judge.counts.input_tokens += usage.input_tokens;
                judge.counts.output_tokens += usage.output_tokens;
            }
            let Some(slot) = layout.slot(
                record.kind,
                artifact_of(record.artifact.as_deref()),
                record.side,
                record.order,
                record.repeat as usize,
            ) else {
                continue;
            };
            let cell = pair * layout.slots + slot;
            judge.codes[cell] = code_of(record.verdict);
            if let Some(p) = &record.label_probs {
                let probs = judge
                    .probs
                    .get_or_insert_with(|| vec![[f32::NAN; 3]; n_pairs * layout.slots]);
                probs[cell] = probs_array(p);
            } else if let Some(probs) = judge.probs.as_mut() {
                probs[cell] = [f32::NAN; 3];
            }
        }
        Index { layout, judges }
    }

    /// Index the committed calls `columns` (one entry per position of `plan`) against `plan`
    /// with `n_pairs` pairs: the same index as [`Index::build`] over the records the columns
    /// were read from, without a record or a string per call. Each call's judge, pair and slot
    /// come from its plan position.
    pub(crate) fn from_columns(plan: &Plan, n_pairs: usize, columns: &CallColumns) -> Index {
        let layout = Layout::new(plan);
        let mut judges: Vec<Verdicts> = plan
            .judges
            .iter()
            .map(|_| Verdicts {
                codes: vec![NOT_PLANNED; n_pairs * layout.slots],
                probs: None,
                counts: Counts::default(),
            })
            .collect();
        for (position, spec) in plan.calls.iter().enumerate() {
            let Some(judge) = judges.get_mut(spec.judge_index) else {
                continue;
            };
            judge.counts.planned += 1;
            if spec.pair_index >= n_pairs {
                continue;
            }
            let code = columns.code(position);
            if let Some(code) = code {
                judge.counts.recorded += 1;
                if code != FAILED {
                    judge.counts.completed += 1;
                }
                if code == INVALID {
                    judge.counts.invalid += 1;
                }
                if let Some(usage) = columns.usage(position) {
                    judge.counts.input_tokens += usage.input_tokens;
                    judge.counts.output_tokens += usage.output_tokens;
                }
            }
            let artifact = spec
                .artifact
                .as_deref()
                .and_then(|a| layout.artifact_index(a));
            let Some(slot) = layout.slot(
                spec.kind,
                artifact,
                spec.side,
                spec.order,
                spec.repeat as usize,
            ) else {
                continue;
            };
            let cell = spec.pair_index * layout.slots + slot;
            judge.codes[cell] = code.unwrap_or(FAILED);
            if let Some(p) = columns.probs(position) {
                judge
                    .probs
                    .get_or_insert_with(|| vec![[f32::NAN; 3]; n_pairs * layout.slots])[cell] = p;
            }
        }
        Index { layout, judges }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_distinct_and_dense() {
        let layout = Layout {
            repeats: 3,
            artifacts: vec!["x".into(), "position".into()],
            slots: 2 * 3 + 2 * (4 * 3 + 4),
        };
        let mut seen = vec![false; layout.slots];
        let mut mark = |s: usize| {
            assert!(!seen[s], "slot {s} used twice");
            seen[s] = true;
        };
        for order in Order::BOTH {
            for r in 0..3 {
                mark(layout.baseline(order, r));
            }
        }
        for a in 0..2 {
            for side in [Side::A, Side::B] {
                for order in Order::BOTH {
                    for r in 0..3 {
                        mark(layout.tie(a, side, order, r));
                    }
                    mark(layout.shift(a, side, order));
                }
            }
        }
        assert!(seen.iter().all(|&s| s), "every slot is used");
        assert_eq!(
            layout.slot(ConditionKind::Shift, Some(0), Some(Side::A), Order::Ab, 1),
            None
        );
        assert_eq!(
            layout.slot(ConditionKind::Baseline, None, None, Order::Ab, 3),
            None
        );
    }

    #[test]
    fn obs_maps_slots_to_identity() {
        assert_eq!(obs(FIRST, true), Obs::Val(1));
        assert_eq!(obs(FIRST, false), Obs::Val(-1));
        assert_eq!(obs(SECOND, false), Obs::Val(1));
        assert_eq!(obs(TIE, true), Obs::Val(0));
        assert_eq!(obs(INVALID, true), Obs::Invalid);
        assert_eq!(obs(FAILED, true), Obs::Failed);
        assert_eq!(obs(NOT_PLANNED, true), Obs::NotPlanned);
    }
}
