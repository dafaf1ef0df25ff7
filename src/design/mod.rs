//! The plan of judge calls: who is asked what, in which order, how often.
//!
//! Per judge and pair the plan holds
//! - **baseline** calls in both orders, repeated `repeats` times (the judge's own run-to-run noise);
//! - **tie detection** (Chen Eq. 3): answer X against artifact(X), both orders; for `position`, X
//!   against itself, where the only difference is the slot;
//! - **winrate shift** (Chen Eq. 5): the artifact on a (a' vs b) and on b (a vs b'), both orders.
//!
//! Every call has a stable id, so stored responses can be matched to the plan across runs.

use crate::dataset::{Pair, Preference};
use crate::judge::{JudgeRequest, SimContext, Slot};
use crate::perturb::{Artifact, Perturbation};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};

/// One of the two answers of a pair, by identity (not by position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// `response_a`.
    A,
    /// `response_b`.
    B,
}

impl Side {
    /// The other answer.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    /// Lower-case letter used in ids.
    pub fn letter(self) -> &'static str {
        match self {
            Side::A => "a",
            Side::B => "b",
        }
    }
}

/// Presentation order of a call.
///
/// For baseline and shift calls, `Ab` shows answer a (or a') first. For tie-detection calls, `Ab`
/// shows the artifact copy first. Position identity calls always use `Ab`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// a (or the artifact copy) first.
    Ab,
    /// b (or the original copy) first.
    Ba,
}

impl Order {
    /// Both orders.
    pub const BOTH: [Order; 2] = [Order::Ab, Order::Ba];

    /// Lower-case name used in ids.
    pub fn name(self) -> &'static str {
        match self {
            Order::Ab => "ab",
            Order::Ba => "ba",
        }
    }
}

/// Which experimental condition a call belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ConditionKind {
    /// The original pair.
    Baseline,
    /// X against artifact(X) (or X against X in the other slot for `position`).
    TieDetection,
    /// The artifact on one answer of the original pair.
    Shift,
}

impl ConditionKind {
    /// Name used in ids and outputs.
    pub fn name(self) -> &'static str {
        match self {
            ConditionKind::Baseline => "baseline",
            ConditionKind::TieDetection => "tie_detection",
            ConditionKind::Shift => "shift",
        }
    }
}

/// Which answer(s) the tie-detection test duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TieTargets {
    /// The gold-preferred answer (answer a when there is no gold label or it is a tie).
    #[default]
    Preferred,
    /// Both answers.
    Both,
}

/// Settings of the design.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesignOptions {
    /// Baseline repeats per order (>= 1; 2 or more measures run-to-run noise).
    pub repeats: u32,
    /// Which answers the tie-detection test duplicates.
    pub tie_targets: TieTargets,
}

impl Default for DesignOptions {
    fn default() -> Self {
        DesignOptions {
            repeats: 2,
            tie_targets: TieTargets::Preferred,
        }
    }
}

/// One planned judge call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSpec {
    /// Stable id: `judge/pair/condition[/artifact/side]/order/rN`.
    pub id: String,
    /// Judge name.
    pub judge: String,
    /// Index of the judge in the plan's judge list.
    pub judge_index: usize,
    /// Pair id.
    pub pair_id: String,
    /// Index of the pair in the dataset.
    pub pair_index: usize,
    /// Condition.
    pub kind: ConditionKind,
    /// Artifact id (tie detection and shift).
    pub artifact: Option<String>,
    /// Tie detection: the duplicated answer; shift: the perturbed answer.
    pub side: Option<Side>,
    /// Presentation order.
    pub order: Order,
    /// Repeat index.
    pub repeat: u32,
    /// A pointwise judge's grade of one answer (`side`): `Baseline` for the answer as it is
    /// (repeated `repeats` times), `Shift` for artifact(answer) (once). Omitted when false, so
    /// pairwise specs serialize as before.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pointwise: bool,
}

/// Which part of the design one judge is audited on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeScope {
    /// Judge name.
    pub name: String,
    /// Only the first this many pairs (all when `None`).
    pub max_pairs: Option<usize>,
    /// Only these artifact ids (all when `None`).
    pub artifacts: Option<Vec<String>>,
    /// A pointwise judge: it grades each answer alone ([`CallSpec::pointwise`] calls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pointwise: bool,
    /// The pairs are single answers (both slots the same text): a pointwise judge grades only
    /// answer a.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub single: bool,
}

impl JudgeScope {
    /// The whole design.
    pub fn all(name: &str) -> JudgeScope {
        JudgeScope {
            name: name.to_string(),
            max_pairs: None,
            artifacts: None,
            pointwise: false,
            single: false,
        }
    }
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Judge names, in configuration order.
    pub judges: Vec<String>,
    /// Artifact ids, in catalog order.
    pub artifacts: Vec<String>,
    /// Design settings.
    pub options: DesignOptions,
    /// Every call, grouped by judge then pair.
    pub calls: Vec<CallSpec>,
}

/// Number of calls per judge and condition label (`baseline`, `tie_detection/apology`, ...).
pub type PlanCounts = BTreeMap<String, BTreeMap<String, usize>>;

impl Plan {
    /// Build the plan for `judges` × `pairs` × `artifacts`.
    pub fn build(
        judges: &[String],
        pairs: &[Pair],
        artifacts: &[&Artifact],
        options: &DesignOptions,
    ) -> Plan {
        let scopes: Vec<JudgeScope> = judges.iter().map(|j| JudgeScope::all(j)).collect();
        Plan::build_scoped(&scopes, pairs, artifacts, options)
    }

    /// Build the plan, auditing each judge on its own scope (a slow local judge may take only
    /// the first pairs and a few artifacts).
    pub fn build_scoped(
        judges: &[JudgeScope],
        pairs: &[Pair],
        artifacts: &[&Artifact],
        options: &DesignOptions,
    ) -> Plan {
        let repeats = options.repeats.max(1);
        let mut calls = Vec::new();
        for (judge_index, scope) in judges.iter().enumerate() {
            let judge = &scope.name;
            let judge_artifacts: Vec<&Artifact> = artifacts
                .iter()
                .copied()
                .filter(|a| {
                    scope
                        .artifacts
                        .as_ref()
                        .is_none_or(|only| only.contains(&a.id))
                })
                .collect();
            let limit = scope.max_pairs.unwrap_or(pairs.len()).min(pairs.len());
            for (pair_index, pair) in pairs[..limit].iter().enumerate() {
                let mut push = |kind: ConditionKind,
                                artifact: Option<&str>,
                                side: Option<Side>,
                                order: Order,
                                repeat: u32| {
                    // Pointwise calls are named `grade` whatever their condition.
                    let condition = if scope.pointwise {
                        "grade"
                    } else {
                        kind.name()
                    };
                    let mut id = format!(
                        "{}/{}/{condition}",
                        escape_id_part(judge),
                        escape_id_part(&pair.id),
                    );
                    if let Some(artifact) = artifact {
                        id.push('/');
                        id.push_str(&escape_id_part(artifact));
                    }
                    if let Some(side) = side {
                        id.push('/');
                        id.push_str(side.letter());
                    }
                    id.push_str(&format!("/{}/r{repeat}", order.name()));
                    calls.push(CallSpec {
                        id,
                        judge: judge.clone(),
                        judge_index,
                        pair_id: pair.id.clone(),
                        pair_index,
                        kind,
                        artifact: artifact.map(str::to_string),
                        side,
                        order,
                        repeat,
                        pointwise: scope.pointwise,
                    });
                };
                if scope.pointwise {
                    // Each answer alone: its baseline grade `repeats` times (run-to-run noise),
                    // then once per answer-side artifact. Position and context-side artifacts
                    // need two answers in one prompt and are not planned.
                    let sides: &[Side] = if scope.single {
                        &[Side::A]
                    } else {
                        &[Side::A, Side::B]
                    };
                    for &side in sides {
                        for repeat in 0..repeats {
                            push(ConditionKind::Baseline, None, Some(side), Order::Ab, repeat);
                        }
                        for artifact in judge_artifacts.iter().filter(|a| grades_one_answer(a)) {
                            push(
                                ConditionKind::Shift,
                                Some(&artifact.id),
                                Some(side),
                                Order::Ab,
                                0,
                            );
                        }
                    }
                    continue;
                }
                for order in Order::BOTH {
                    for repeat in 0..repeats {
                        push(ConditionKind::Baseline, None, None, order, repeat);
                    }
                }
                let targets = tie_targets(pair, options.tie_targets);
                for artifact in &judge_artifacts {
                    let id = artifact.id.as_str();
                    for &target in &targets {
                        if artifact.is_position() {
                            // Identical texts in both slots: the "order" cannot differ, so the
                            // repeats are what gives the test its size.
                            for repeat in 0..repeats {
                                push(
                                    ConditionKind::TieDetection,
                                    Some(id),
                                    Some(target),
                                    Order::Ab,
                                    repeat,
                                );
                            }
                        } else {
                            for order in Order::BOTH {
                                push(
                                    ConditionKind::TieDetection,
                                    Some(id),
                                    Some(target),
                                    order,
                                    0,
                                );
                            }
                        }
                    }
                    // The position artifact's winrate shift is read off the baseline's two orders.
                    if !artifact.is_position() {
                        for side in [Side::A, Side::B] {
                            for order in Order::BOTH {
                                push(ConditionKind::Shift, Some(id), Some(side), order, 0);
                            }
                        }
                    }
                }
            }
        }
        // The plan lives as long as the run; drop the growth slack.
        calls.shrink_to_fit();
        Plan {
            judges: judges.iter().map(|j| j.name.clone()).collect(),
            artifacts: artifacts.iter().map(|a| a.id.clone()).collect(),
            options: options.clone(),
            calls,
        }
    }

    /// Number of calls per judge and condition label.
    pub fn counts(&self) -> PlanCounts {
        let mut counts: PlanCounts = BTreeMap::new();
        for call in &self.calls {
            let kind = if call.pointwise {
                "grade"
            } else {
                call.kind.name()
            };
            let label = match &call.artifact {
                Some(artifact) => format!("{kind}/{artifact}"),
                None => kind.to_string(),
            };
            *counts
                .entry(call.judge.clone())
                .or_default()
                .entry(label)
                .or_default() += 1;
        }
        counts
    }
}

/// One component of a call id (judge name, pair id, artifact id) with `%`, `/` and control
/// characters written as `%XX`. Ids are `/`-separated, travel in an HTTP header and are one
/// line of logs, so a judge named `a/b` or a pair id with a newline must neither collide with
/// another call's id nor break the request. Ordinary names are returned unchanged, so the ids
/// of existing runs stay the same.
pub fn escape_id_part(part: &str) -> Cow<'_, str> {
    let special = |c: char| c == '%' || c == '/' || c.is_control();
    if !part.contains(special) {
        return Cow::Borrowed(part);
    }
    let mut out = String::with_capacity(part.len() + 8);
    for c in part.chars() {
        if special(c) {
            let mut bytes = [0u8; 4];
            for byte in c.encode_utf8(&mut bytes).bytes() {
                out.push_str(&format!("%{byte:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The memory a plan may use, from which the size limits are derived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes the plan, its records and its bootstrap may take together.
    pub memory_bytes: u64,
}

/// Bytes one planned call costs over a run: its spec and id, the stored record and its JSON,
/// the analysis tables. Rounded up (measured records are about 1 KiB), so the bound errs safe.
const BYTES_PER_CALL: u128 = 4096;
/// Bootstrap statistics per judge: a fixed set plus a set per artifact (an over-estimate).
const STATS_PER_JUDGE: u128 = 32;
const STATS_PER_ARTIFACT: u128 = 16;

impl Limits {
    /// Half of the memory available now (`MemAvailable` in `/proc/meminfo`; 8 GiB when it
    /// cannot be read): the rest is left to the system and the judges.
    pub fn from_system() -> Limits {
        let available = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|line| line.strip_prefix("MemAvailable:"))
                    .and_then(|rest| {
                        rest.trim()
                            .trim_end_matches("kB")
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
            })
            .map_or(8 << 30, |kib| kib.saturating_mul(1024));
        Limits {
            memory_bytes: available / 2,
        }
    }
}

/// How many calls [`Plan::build_scoped`] would plan, counted without building anything (and
/// without overflow, whatever the sizes).
pub fn planned_calls(
    judges: &[JudgeScope],
    pairs: &[Pair],
    artifacts: &[&Artifact],
    options: &DesignOptions,
) -> u128 {
    let repeats = u128::from(options.repeats.max(1));
    let mut total = 0u128;
    for scope in judges {
        let limit = scope.max_pairs.unwrap_or(pairs.len()).min(pairs.len());
        let chosen: Vec<&&Artifact> = artifacts
            .iter()
            .filter(|a| {
                scope
                    .artifacts
                    .as_ref()
                    .is_none_or(|only| only.contains(&a.id))
            })
            .collect();
        if scope.pointwise {
            let graded = chosen.iter().filter(|a| grades_one_answer(a)).count() as u128;
            let sides = if scope.single { 1 } else { 2 };
            total += limit as u128 * sides * (repeats + graded);
            continue;
        }
        for pair in &pairs[..limit] {
            let targets = tie_targets(pair, options.tie_targets).len() as u128;
            total += 2 * repeats;
            for artifact in &chosen {
                total += if artifact.is_position() {
                    targets * repeats
                } else {
                    targets * 2 + 4
                };
            }
        }
    }
    total
}

/// Check a design before its plan is built and before any call: artifact ids are unique, and
/// the plan (`repeats` × pairs × artifacts × judges) and the bootstrap (`bootstrap_resamples`)
/// fit in `limits`. Errors name the field and the largest value that fits.
pub fn check(
    judges: &[JudgeScope],
    pairs: &[Pair],
    artifacts: &[&Artifact],
    options: &DesignOptions,
    bootstrap_resamples: usize,
    limits: &Limits,
) -> Result<(), String> {
    let mut seen = HashSet::new();
    if let Some(twice) = artifacts.iter().find(|a| !seen.insert(a.id.as_str())) {
        return Err(format!(
            "design.artifacts: `{}` is listed twice (each artifact is tested once)",
            twice.id
        ));
    }
    let gib = |bytes: u128| bytes as f64 / f64::from(1u32 << 30);
    let memory = u128::from(limits.memory_bytes);
    let calls = planned_calls(judges, pairs, artifacts, options);
    if calls * BYTES_PER_CALL > memory {
        return Err(format!(
            "design.repeats = {}: the plan would hold {calls} calls ({} judges, {} pairs, {} artifacts), about {:.1} GiB over a run; this machine allows about {:.1} GiB ({} calls); lower design.repeats, the pairs or the artifacts",
            options.repeats,
            judges.len(),
            pairs.len(),
            artifacts.len(),
            gib(calls * BYTES_PER_CALL),
            gib(memory),
            memory / BYTES_PER_CALL
        ));
    }
    // Each resample keeps one value per statistic (8 bytes) in its own vector (24 bytes).
    let per_resample = judges.len() as u128
        * (24 + 8 * (STATS_PER_JUDGE + STATS_PER_ARTIFACT * artifacts.len() as u128));
    let bootstrap = bootstrap_resamples as u128 * per_resample;
    if bootstrap > memory {
        return Err(format!(
            "design.bootstrap_resamples = {bootstrap_resamples}: the bootstrap would need about {:.1} GiB; this machine allows about {:.1} GiB (at most {} resamples; 2000 is the default)",
            gib(bootstrap),
            gib(memory),
            memory / per_resample.max(1)
        ));
    }
    Ok(())
}

fn tie_targets(pair: &Pair, targets: TieTargets) -> Vec<Side> {
    match targets {
        TieTargets::Both => vec![Side::A, Side::B],
        TieTargets::Preferred => match pair.preferred {
            Some(Preference::B) => vec![Side::B],
            _ => vec![Side::A],
        },
    }
}

/// Perturbed answers, computed once per (artifact, pair, side) before any call is made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PerturbedAnswers {
    /// Per artifact id, per (pair index, side). Nested so that a lookup borrows the artifact id
    /// instead of building a `String` key: `get` runs for every request and every analysed cell.
    by_key: HashMap<String, HashMap<(usize, Side), Perturbation>>,
    /// Component ids per composed artifact (for the interaction).
    pub components: HashMap<String, Vec<String>>,
    /// Ids of injection probes (for the attack success rate).
    pub injections: Vec<String>,
    /// Context-side artifacts by id: their calls carry the artifact's prompt edit, bound to
    /// the slot of the answer it is applied to.
    pub contexts: HashMap<String, Artifact>,
}

impl PerturbedAnswers {
    /// Apply every text artifact to both answers of every pair. The key given to the engine is
    /// `"<pair id>/<side>"`, so the text depends only on (seed, artifact, pair, side).
    pub fn compute(pairs: &[Pair], artifacts: &[&Artifact], seed: u64) -> PerturbedAnswers {
        use rayon::prelude::*;
        let jobs: Vec<(&Artifact, usize, Side)> = artifacts
            .iter()
            // Rewrites come from the run store (`run::rewrites::fill`), for the items the plan uses.
            .filter(|a| !a.is_position() && !a.is_rewrite())
            .flat_map(|a| (0..pairs.len()).flat_map(move |i| [(*a, i, Side::A), (*a, i, Side::B)]))
            .collect();
        let computed: Vec<Perturbation> = jobs
            .par_iter()
            .map(|&(artifact, index, side)| {
                let pair = &pairs[index];
                let text = answer(pair, side);
                let key = format!("{}/{}", pair.id, side.letter());
                artifact.apply(text, seed, &key)
            })
            .collect();
        let mut by_key: HashMap<String, HashMap<(usize, Side), Perturbation>> = HashMap::new();
        for (&(artifact, index, side), p) in jobs.iter().zip(computed) {
            by_key
                .entry(artifact.id.clone())
                .or_default()
                .insert((index, side), p);
        }
        PerturbedAnswers {
            by_key,
            components: artifacts
                .iter()
                .filter(|a| !a.components().is_empty())
                .map(|a| (a.id.clone(), a.components().to_vec()))
                .collect(),
            injections: artifacts
                .iter()
                .filter(|a| a.is_injection())
                .map(|a| a.id.clone())
                .collect(),
            contexts: artifacts
                .iter()
                .filter(|a| a.is_context())
                .map(|a| (a.id.clone(), (*a).clone()))
                .collect(),
        }
    }

    /// Set the perturbed answer of one item (rewrite artifacts, filled from the run store).
    pub fn set(&mut self, artifact: &str, pair_index: usize, side: Side, p: Perturbation) {
        self.by_key
            .entry(artifact.to_string())
            .or_default()
            .insert((pair_index, side), p);
    }

    /// The perturbed answer, if the artifact changes text.
    pub fn get(&self, artifact: &str, pair_index: usize, side: Side) -> Option<&Perturbation> {
        self.by_key.get(artifact)?.get(&(pair_index, side))
    }
}

/// The text of one answer.
pub fn answer(pair: &Pair, side: Side) -> &str {
    match side {
        Side::A => &pair.response_a,
        Side::B => &pair.response_b,
    }
}

/// True for an artifact a pointwise judge can be audited on: one that changes a single answer
/// (not `position`, which needs two slots, nor a context-side artifact, which edits a pairwise
/// prompt).
pub fn grades_one_answer(artifact: &Artifact) -> bool {
    !artifact.is_position() && !artifact.is_context()
}

/// What sits in each slot of a call, by identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotContents {
    /// Answer identity in the first slot.
    pub first: Side,
    /// Answer identity in the second slot.
    pub second: Side,
    /// Which slot (if any) carries the artifact.
    pub artifact_slot: Option<Slot>,
}

/// Where each answer goes for `spec`.
pub fn slot_contents(spec: &CallSpec) -> SlotContents {
    if spec.pointwise {
        // One answer, shown in the first (only) slot.
        let side = spec.side.unwrap_or(Side::A);
        return SlotContents {
            first: side,
            second: side,
            artifact_slot: spec.artifact.as_ref().map(|_| Slot::First),
        };
    }
    match spec.kind {
        ConditionKind::Baseline => match spec.order {
            Order::Ab => SlotContents {
                first: Side::A,
                second: Side::B,
                artifact_slot: None,
            },
            Order::Ba => SlotContents {
                first: Side::B,
                second: Side::A,
                artifact_slot: None,
            },
        },
        ConditionKind::TieDetection => {
            let target = spec.side.unwrap_or(Side::A);
            let is_position = spec.artifact.as_deref() == Some("position");
            SlotContents {
                first: target,
                second: target,
                artifact_slot: if is_position {
                    None
                } else if spec.order == Order::Ab {
                    Some(Slot::First)
                } else {
                    Some(Slot::Second)
                },
            }
        }
        ConditionKind::Shift => {
            let perturbed = spec.side.unwrap_or(Side::A);
            let (first, second) = match spec.order {
                Order::Ab => (Side::A, Side::B),
                Order::Ba => (Side::B, Side::A),
            };
            SlotContents {
                first,
                second,
                artifact_slot: Some(if first == perturbed {
                    Slot::First
                } else {
                    Slot::Second
                }),
            }
        }
    }
}

/// True when [`request`] can build `spec`: its pair exists, and so does every perturbed answer
/// it shows. Checks a whole plan before a run without copying any answer.
pub fn buildable(spec: &CallSpec, pairs: &[Pair], perturbed: &PerturbedAnswers) -> bool {
    if spec.pair_index >= pairs.len() {
        return false;
    }
    let slots = slot_contents(spec);
    [(Slot::First, slots.first), (Slot::Second, slots.second)]
        .into_iter()
        .all(|(slot, side)| {
            slots.artifact_slot != Some(slot)
                || spec
                    .artifact
                    .as_deref()
                    .is_some_and(|a| perturbed.get(a, spec.pair_index, side).is_some())
        })
}

/// Build the judge request for `spec`. Returns `None` when a perturbation is missing (a plan and
/// perturbation set built from different inputs).
pub fn request(
    spec: &CallSpec,
    pairs: &[Pair],
    perturbed: &PerturbedAnswers,
) -> Option<JudgeRequest> {
    let pair = pairs.get(spec.pair_index)?;
    let slots = slot_contents(spec);
    if spec.pointwise {
        let side = slots.first;
        let first = match spec.artifact.as_deref() {
            Some(artifact) => perturbed.get(artifact, spec.pair_index, side)?.text.clone(),
            None => answer(pair, side).to_string(),
        };
        return Some(JudgeRequest {
            pair_id: pair.id.clone(),
            call_id: spec.id.clone(),
            prompt: pair.prompt.clone(),
            first,
            // A pointwise prompt shows one answer.
            second: String::new(),
            repeat: spec.repeat,
            sim: SimContext {
                artifact: spec.artifact.clone(),
                artifact_slot: slots.artifact_slot,
                gold_slot: None,
                same_answer: false,
                substance_key: format!("{}/{}", pair.id, side.letter()),
                artifact_key: format!(
                    "{}/{}/{}",
                    pair.id,
                    spec.artifact.as_deref().unwrap_or("-"),
                    side.letter()
                ),
            },
            context: Vec::new(),
        });
    }
    let text_for = |slot: Slot, side: Side| -> Option<String> {
        if slots.artifact_slot == Some(slot) {
            let artifact = spec.artifact.as_deref()?;
            Some(perturbed.get(artifact, spec.pair_index, side)?.text.clone())
        } else {
            Some(answer(pair, side).to_string())
        }
    };
    let first = text_for(Slot::First, slots.first)?;
    let second = text_for(Slot::Second, slots.second)?;
    let same_answer = slots.first == slots.second;
    let gold_slot = if same_answer {
        None
    } else {
        match pair.preferred {
            Some(Preference::A) => Some(if slots.first == Side::A {
                Slot::First
            } else {
                Slot::Second
            }),
            Some(Preference::B) => Some(if slots.first == Side::B {
                Slot::First
            } else {
                Slot::Second
            }),
            _ => None,
        }
    };
    // Order-free: a judge's view of which answer is better should not depend on where it is shown.
    let substance_key = if same_answer {
        format!("{}/same/{}", pair.id, slots.first.letter())
    } else {
        format!("{}/pair", pair.id)
    };
    let artifact_key = format!(
        "{}/{}/{}",
        pair.id,
        spec.artifact.as_deref().unwrap_or("-"),
        spec.side.map(Side::letter).unwrap_or("-")
    );
    // A context-side artifact favours the slot of the answer it is applied to.
    let context = match (spec.artifact.as_deref(), slots.artifact_slot) {
        (Some(id), Some(slot)) => perturbed
            .contexts
            .get(id)
            .and_then(|a| a.context_edit(slot))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    Some(JudgeRequest {
        pair_id: pair.id.clone(),
        call_id: spec.id.clone(),
        prompt: pair.prompt.clone(),
        first,
        second,
        repeat: spec.repeat,
        sim: SimContext {
            artifact: spec.artifact.clone(),
            artifact_slot: slots.artifact_slot,
            gold_slot,
            same_answer,
            substance_key,
            artifact_key,
        },
        context,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::perturb::Catalog;

    #[test]
    fn buildable_agrees_with_request() {
        let pairs = crate::dataset::builtin().pairs;
        let catalog = Catalog::builtin();
        let artifacts: Vec<&Artifact> = catalog.artifacts().iter().collect();
        let plan = Plan::build(
            &["j".to_string()],
            &pairs,
            &artifacts,
            &DesignOptions::default(),
        );
        let full = PerturbedAnswers::compute(&pairs, &artifacts, 7);
        // Perturbations of the first artifact only: every other artifact's calls are unbuildable.
        let partial = PerturbedAnswers::compute(&pairs, &artifacts[..1], 7);
        let (mut unbuildable, mut checked) = (0, 0);
        for spec in &plan.calls {
            for (perturbed, shown_pairs) in [
                (&full, &pairs[..]),
                (&partial, &pairs[..]),
                (&full, &pairs[..3]),
            ] {
                let expected = request(spec, shown_pairs, perturbed).is_some();
                assert_eq!(
                    buildable(spec, shown_pairs, perturbed),
                    expected,
                    "{}",
                    spec.id
                );
                unbuildable += usize::from(!expected);
                checked += 1;
            }
        }
        // Both outcomes occur, so the agreement is not vacuous.
        assert!(unbuildable > 0 && unbuildable < checked);
    }

    #[test]
    fn planned_calls_counts_exactly_what_the_plan_builds() {
        let pairs = crate::dataset::builtin().pairs;
        let catalog = Catalog::builtin();
        let artifacts: Vec<&Artifact> = catalog.artifacts().iter().collect();
        let scopes = [
            JudgeScope::all("a"),
            JudgeScope {
                name: "b".into(),
                max_pairs: Some(3),
                artifacts: Some(vec![artifacts[0].id.clone(), "position".into()]),
                pointwise: false,
                single: false,
            },
            JudgeScope {
                name: "g".into(),
                max_pairs: Some(4),
                artifacts: None,
                pointwise: true,
                single: false,
            },
            JudgeScope {
                name: "s".into(),
                max_pairs: None,
                artifacts: None,
                pointwise: true,
                single: true,
            },
        ];
        for (repeats, tie_targets) in [
            (1, TieTargets::Preferred),
            (3, TieTargets::Both),
            (2, TieTargets::Preferred),
        ] {
            let options = DesignOptions {
                repeats,
                tie_targets,
            };
            let plan = Plan::build_scoped(&scopes, &pairs, &artifacts, &options);
            assert_eq!(
                planned_calls(&scopes, &pairs, &artifacts, &options),
                plan.calls.len() as u128
            );
        }
    }

    #[test]
    fn a_pointwise_judge_grades_each_answer_alone() {
        let pairs = crate::dataset::builtin().pairs;
        let catalog = Catalog::builtin();
        let ids = ["apology", "position", "verbosity"];
        let artifacts: Vec<&Artifact> = ids.iter().map(|id| catalog.get(id).unwrap()).collect();
        let scope = JudgeScope {
            pointwise: true,
            max_pairs: Some(2),
            ..JudgeScope::all("g")
        };
        let options = DesignOptions {
            repeats: 3,
            tie_targets: TieTargets::Preferred,
        };
        let plan = Plan::build_scoped(&[scope], &pairs, &artifacts, &options);
        // Per answer: 3 baseline grades + apology + verbosity (position needs two answers).
        assert_eq!(plan.calls.len(), 2 * 2 * (3 + 2));
        assert!(plan.calls.iter().all(|c| c.pointwise && c.side.is_some()));
        assert!(
            plan.calls
                .iter()
                .all(|c| (c.kind == ConditionKind::Baseline) == c.artifact.is_none())
        );
        assert!(
            plan.calls
                .iter()
                .all(|c| c.artifact.as_deref() != Some("position"))
        );
        let first = &plan.calls[0];
        assert_eq!(first.id, format!("g/{}/grade/a/ab/r0", pairs[0].id));
        let perturbed = PerturbedAnswers::compute(&pairs, &artifacts, 7);
        let base = request(first, &pairs, &perturbed).unwrap();
        assert_eq!(base.first, pairs[0].response_a);
        assert!(base.second.is_empty());
        let shifted = plan
            .calls
            .iter()
            .find(|c| c.artifact.as_deref() == Some("apology") && c.side == Some(Side::B))
            .unwrap();
        let r = request(shifted, &pairs, &perturbed).unwrap();
        assert_eq!(r.first, perturbed.get("apology", 0, Side::B).unwrap().text);
        assert_ne!(r.first, pairs[0].response_b);
    }

    #[test]
    fn sizes_beyond_the_memory_limit_are_refused_naming_the_field() {
        let pairs = crate::dataset::builtin().pairs;
        let catalog = Catalog::builtin();
        let artifacts: Vec<&Artifact> = catalog.artifacts().iter().take(2).collect();
        let scopes = [JudgeScope::all("a")];
        let limits = Limits {
            memory_bytes: 64 << 20,
        };
        let fits = DesignOptions::default();
        check(&scopes, &pairs, &artifacts, &fits, 2000, &limits).unwrap();
        let huge = DesignOptions {
            repeats: u32::MAX,
            ..DesignOptions::default()
        };
        let error = check(&scopes, &pairs, &artifacts, &huge, 2000, &limits).unwrap_err();
        assert!(error.starts_with("design.repeats = 4294967295"), "{error}");
        let error = check(&scopes, &pairs, &artifacts, &fits, 1_000_000_000, &limits).unwrap_err();
        assert!(
            error.starts_with("design.bootstrap_resamples = 1000000000"),
            "{error}"
        );
        let twice = [artifacts[0], artifacts[0]];
        let error = check(&scopes, &pairs, &twice, &fits, 2000, &limits).unwrap_err();
        assert!(error.contains("listed twice"), "{error}");
    }

    #[test]
    fn call_ids_of_names_with_slashes_and_newlines_never_collide() {
        let mut pairs = crate::dataset::builtin().pairs[..2].to_vec();
        pairs[0].id = "x/y".into();
        pairs[1].id = "y\n%2F".into();
        let catalog = Catalog::builtin();
        let artifacts: Vec<&Artifact> = catalog.artifacts().iter().take(2).collect();
        let judges = ["j".to_string(), "j/x".to_string()];
        let plan = Plan::build(&judges, &pairs, &artifacts, &DesignOptions::default());
        let ids: std::collections::HashSet<&str> =
            plan.calls.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids.len(), plan.calls.len(), "duplicate call ids");
        assert!(plan.calls.iter().all(|c| !c.id.contains('\n')));
        assert_eq!(escape_id_part("plain-id_1.2"), "plain-id_1.2");
        assert_eq!(escape_id_part("a/b%\n"), "a%2Fb%25%0A");
        // The escaped form of one name is never another name's raw form.
        assert_ne!(escape_id_part("y\n%2F"), escape_id_part("y\n/"));
    }
}
