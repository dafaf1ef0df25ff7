//! Sequential audits: the plan issued in waves of pairs, with a decision per judge × artifact
//! cell after every wave, so decided cells stop drawing calls.
//!
//! The engine here is pure: [`Sequential`] says which plan calls the next wave needs
//! ([`Sequential::next_wave`]) and folds in the records the wave produced
//! ([`Sequential::observe`]). Decisions depend only on the plan, the options (seed included) and
//! the stored records, so replaying the stored records through a fresh engine reproduces every
//! decision and arrives at the same next wave: that is how a resumed run continues without
//! re-sending ([`Sequential::replay`]).
//!
//! Per cell the statistic is the tie-detection score T: each pair contributes the mean of its
//! valid tie-detection verdicts, +1 for the artifact's slot (for `position`, the first slot),
//! −1 for the other, 0 for a tie (unparseable verdicts are counted, not scored). Its anytime-valid
//! interval is a [`ConfidenceSequence`] on [−1, 1] at α / cells per judge (Bonferroni over the
//! judge's artifacts; see [`bonferroni_alpha`]). After each wave a cell is
//! - [`CellDecision::Reject`]: the interval excludes 0 and lies beyond ± the rejection size;
//! - [`CellDecision::Caution`]: the interval excludes 0 and lies inside ± the rejection size,
//!   and the second family can no longer turn it into a REJECT (the WR interval inside ± its
//!   rejection size, the excess-flip upper bound below its size);
//! - [`CellDecision::Robust`]: the interval contains 0 and lies inside ± the rejection size
//!   ("robust at this size": an equivalence decision), and the full plan's fixed-n test would
//!   find the effect significant with probability below [`FUTILITY`] given the data so far
//!   ([`full_plan_significance`]; without this a small real effect, which the full plan reports
//!   as a CAUTION, would stop as robust);
//! - undecided otherwise. A cell still undecided when the plan is exhausted takes the fixed-n
//!   rule of the full-plan audit on all its pairs ([`fixed_n_decision`]), so such a cell reaches
//!   exactly the decision the full-plan audit would.
//!
//! A judge's level is its worst cell: any REJECT cell rejects, any CAUTION cell cautions, else
//! ADOPT. Baseline calls of a pair are issued with the wave while any cell of the judge is open.

use crate::design::{ConditionKind, Order, Plan, slot_contents};
use crate::judge::{Slot, SlotVerdict};
use crate::run::CallRecord;
use crate::stats::{
    ConfidenceSequence, Interval, bonferroni_alpha, normal_cdf, normal_quantile,
    observations_for_half_width,
};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

use super::trust::Trust;

/// Largest wave a configuration may ask for (a bound on a number read from `audit.toml`).
pub const MAX_WAVE_PAIRS: usize = 100_000;

/// Settings of a sequential audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialOptions {
    /// Pairs per wave (clamped to 1..=[`MAX_WAVE_PAIRS`]).
    pub wave_pairs: usize,
    /// Family-wise miscoverage per judge.
    pub alpha: f64,
    /// The rejection size on |T| (`[trust] reject_abs_t`).
    pub reject_size: f64,
    /// The rejection size on |WR| (`[trust] reject_abs_wr`).
    pub reject_wr: f64,
    /// The rejection size on the excess flip rate (`[trust] reject_excess_flip`).
    pub reject_excess_flip: f64,
    /// Seed of the pair order.
    pub seed: u64,
    /// Stop before a wave that would take the calls issued past this many.
    pub max_calls: Option<u64>,
}

impl Default for SequentialOptions {
    fn default() -> Self {
        SequentialOptions {
            wave_pairs: 16,
            alpha: 0.05,
            reject_size: 0.2,
            reject_wr: 0.1,
            reject_excess_flip: 0.1,
            seed: 0,
            max_calls: None,
        }
    }
}

/// What a cell's evidence says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellDecision {
    /// Still drawing calls.
    Undecided,
    /// Effect established at or beyond the rejection size.
    Reject,
    /// Effect established, below the rejection size.
    Caution,
    /// Effect excluded at the rejection size ("robust at this size").
    Robust,
    /// Plan exhausted, fixed-n rule: no significant effect.
    NotSignificant,
}

impl CellDecision {
    /// The verdict this cell alone calls for (undecided counts as ADOPT: no evidence against).
    pub fn level(self) -> Trust {
        match self {
            CellDecision::Reject => Trust::Reject,
            CellDecision::Caution => Trust::Caution,
            _ => Trust::Adopt,
        }
    }

    /// Name used in outputs.
    pub fn name(self) -> &'static str {
        match self {
            CellDecision::Undecided => "undecided",
            CellDecision::Reject => "effect established (rejection size)",
            CellDecision::Caution => "effect established (below rejection size)",
            CellDecision::Robust => "robust at this size",
            CellDecision::NotSignificant => "not significant (plan exhausted)",
        }
    }
}

/// The anytime decision for an interval at rejection size `size`.
pub fn decide(interval: Interval, size: f64) -> CellDecision {
    let excludes_zero = interval.low > 0.0 || interval.high < 0.0;
    let inside = interval.low > -size && interval.high < size;
    let beyond = interval.low >= size || interval.high <= -size;
    match (excludes_zero, inside, beyond) {
        (true, _, true) => CellDecision::Reject,
        (true, true, _) => CellDecision::Caution,
        (false, true, _) => CellDecision::Robust,
        _ => CellDecision::Undecided,
    }
}

/// The full-plan audit's rule on one cell: a two-sided normal interval at level 1 − `alpha` on the
/// per-pair values; significant and |mean| ≥ `size` is REJECT, significant below it CAUTION,
/// otherwise not significant. Fewer than two values are not significant.
pub fn fixed_n_decision(values: &[f64], alpha: f64, size: f64) -> CellDecision {
    let n = values.len();
    if n < 2 {
        return CellDecision::NotSignificant;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    let half = normal_quantile(1.0 - alpha / 2.0) * (var / n as f64).sqrt();
    if mean.abs() > half {
        if mean.abs() >= size {
            CellDecision::Reject
        } else {
            CellDecision::Caution
        }
    } else {
        CellDecision::NotSignificant
    }
}

/// A robust-at-this-size cell stops only when the full plan's fixed-n test would be significant
/// with probability below this (stochastic curtailment, Lan, Simon & Halperin 1982).
pub const FUTILITY: f64 = 0.05;

/// Conditional probability that [`fixed_n_decision`] on all `total` pairs finds a significant
/// effect, given the per-pair `values` so far and assuming the rest have their mean and spread:
/// the final z is normal with mean m̂·√N/ŝ and variance (N − n)/N. 1 with fewer than two values
/// (nothing known yet), 0 when the plan has no pairs left beyond them and the test is not
/// significant now.
pub fn full_plan_significance(values: &[f64], total: usize, alpha: f64) -> f64 {
    let n = values.len();
    if n < 2 {
        return 1.0;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // A zero spread (every pair alike) is floored so the projection stays finite.
    let sd = var.sqrt().max(1e-3);
    let total = total.max(n) as f64;
    let crit = normal_quantile(1.0 - alpha / 2.0);
    let drift = mean * total.sqrt() / sd;
    let rest = ((total - n as f64) / total).sqrt();
    if rest == 0.0 {
        return if drift.abs() > crit { 1.0 } else { 0.0 };
    }
    let up = 1.0 - normal_cdf((crit - drift) / rest);
    let down = normal_cdf((-crit - drift) / rest);
    up + down
}

/// The seeded random order in which pairs are issued (a permutation of `0..n`).
pub fn pair_order(n: usize, seed: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    order
}

/// One judge × artifact cell's state and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Judge name.
    pub judge: String,
    /// Artifact id.
    pub artifact: String,
    /// Current decision.
    pub decision: CellDecision,
    /// The wave (1-based) after which it was decided, if it was.
    pub decided_after_wave: Option<usize>,
    /// Per-pair values observed, in issue order.
    pub values: Vec<f64>,
    /// Unparseable tie-detection verdicts seen.
    pub invalid: u64,
    /// Anytime-valid interval on T at the stopping time (or now).
    pub interval: Interval,
    /// The cell's miscoverage (the judge's α split over its cells).
    pub alpha: f64,
    /// Calls this cell's conditions used.
    pub calls_used: u64,
    /// Calls this cell's conditions had in the plan.
    pub calls_planned: u64,
    /// For a cell left undecided by a budget: the further calls it would need (projected from the
    /// current estimate and spread), `None` when the plan cannot decide it.
    pub calls_needed: Option<u64>,
    /// The statistic that decided the cell: `T`, `WR`, `excess flip rate`, or at plan end the
    /// fixed-n rule that decided it (`None` while undecided).
    pub decided_on: Option<String>,
    /// Anytime-valid interval on the win-rate shift WR (second family, see `secondary_alpha`).
    pub wr_interval: Interval,
    /// Pairs with a valid WR observation.
    pub wr_pairs: u64,
    /// Anytime-valid interval on the artifact's flip rate (second family).
    pub flip_interval: Interval,
    /// Pairs with a valid flip comparison.
    pub flip_pairs: u64,
    /// Anytime-valid interval on the excess flip rate (flip rate − the judge's run-to-run flip
    /// rate): the flip interval minus the judge's noise interval, both anytime-valid.
    pub excess_flip_interval: Interval,
    /// Miscoverage of each WR, flip and noise interval of the judge: its α split (Bonferroni)
    /// over 2 × its cells + 1.
    pub secondary_alpha: f64,
    #[serde(skip)]
    cs: Option<ConfidenceSequence>,
    #[serde(skip)]
    wr_cs: Option<ConfidenceSequence>,
    #[serde(skip)]
    flip_cs: Option<ConfidenceSequence>,
    #[serde(skip)]
    wr_values: Vec<f64>,
    #[serde(skip)]
    flip_values: Vec<f64>,
}

impl Cell {
    /// Mean of the per-pair values (the estimate of T), `NaN` with none.
    pub fn estimate(&self) -> f64 {
        if self.values.is_empty() {
            f64::NAN
        } else {
            self.values.iter().sum::<f64>() / self.values.len() as f64
        }
    }

    /// Per-pair WR values observed, in issue order (not serialised: the summary has the
    /// interval and the count).
    pub fn wr_values(&self) -> &[f64] {
        &self.wr_values
    }

    /// Per-pair flip values (share of the pair's comparisons that flipped), in issue order.
    pub fn flip_values(&self) -> &[f64] {
        &self.flip_values
    }

    /// True while the cell draws calls.
    pub fn open(&self) -> bool {
        self.decision == CellDecision::Undecided
    }
}

/// The summary of a sequential audit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialSummary {
    /// Stopping rule in words.
    pub stopping_rule: String,
    /// Pairs per wave.
    pub wave_pairs: usize,
    /// Seed of the pair order.
    pub order_seed: u64,
    /// Waves the plan has.
    pub waves_planned: usize,
    /// Waves issued.
    pub waves_run: usize,
    /// Calls issued.
    pub calls_used: u64,
    /// Calls in the full plan.
    pub calls_planned: u64,
    /// Calls issued per judge.
    pub calls_by_judge: BTreeMap<String, u64>,
    /// True when the audit ended before every cell was decided: the call budget (`--max-calls`),
    /// or a run that stopped early (cost budget, failures, an interruption).
    pub budget_exhausted: bool,
    /// Per cell.
    pub cells: Vec<Cell>,
    /// Per judge: its level from its cells.
    pub judges: BTreeMap<String, Trust>,
    /// Per judge: the anytime-valid interval on its run-to-run flip rate (the noise the excess
    /// flip rate is net of).
    pub noise_flip: BTreeMap<String, NoiseFlip>,
    /// Per jury: decided once every member's cells are (see [`SequentialSummary::add_juries`]).
    pub juries: Vec<JuryDecision>,
    /// Which intervals are anytime-valid.
    pub anytime_valid: String,
}

/// A judge's anytime-valid run-to-run flip-rate interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseFlip {
    /// The interval on the share of baseline repeats whose verdict differs from the first.
    pub interval: Interval,
    /// Pairs with a repeat comparison.
    pub pairs: u64,
    /// Its miscoverage (second family).
    pub alpha: f64,
}

/// A jury's sequential state: its verdicts aggregate its members' calls, so it has every input
/// it needs once each member's cells are decided (a member's stopped cell draws no more calls).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JuryDecision {
    /// Jury name (`jury-<rule>`).
    pub name: String,
    /// Member judges.
    pub members: Vec<String>,
    /// True once every member's cells are decided.
    pub decided: bool,
    /// The wave after which the last member cell was decided, if all are.
    pub decided_after_wave: Option<usize>,
    /// The worst level among the members' sequential decisions.
    pub members_level: Trust,
}

impl SequentialSummary {
    /// Says in the stopping rule that `waves` of the waves went through provider batches
    /// (`run --batch`: one batch round per wave, decided once its batches ended). Nothing is
    /// added for 0, so a run without batches reads as before.
    pub fn note_batch_waves(&mut self, waves: usize) {
        if waves == 0 {
            return;
        }
        let noun = if waves == 1 { "wave" } else { "waves" };
        self.stopping_rule.push_str(&format!(
            ". {waves} {noun} went through provider batches (run --batch: each wave's calls \
             submitted as batches, and the wave decided once they ended; the decisions are \
             those of the synchronous run)"
        ));
    }

    /// Adds the sequential state of each jury `(name, members)`; members not among the audit's
    /// judges are ignored, and a jury with fewer than two known members is left out.
    pub fn add_juries(&mut self, juries: &[(String, Vec<String>)]) {
        for (name, members) in juries {
            let members: Vec<String> = members
                .iter()
                .filter(|m| self.judges.contains_key(*m))
                .cloned()
                .collect();
            if members.len() < 2 {
                continue;
            }
            let cells: Vec<&Cell> = self
                .cells
                .iter()
                .filter(|c| members.contains(&c.judge))
                .collect();
            let decided = cells.iter().all(|c| !c.open());
            self.juries.push(JuryDecision {
                name: name.clone(),
                decided,
                decided_after_wave: if decided {
                    cells.iter().filter_map(|c| c.decided_after_wave).max()
                } else {
                    None
                },
                members_level: members
                    .iter()
                    .map(|m| self.judges[m])
                    .max()
                    .unwrap_or(Trust::Adopt),
                members,
            });
        }
    }
}

/// The sequential engine over one plan.
#[derive(Debug, Clone)]
pub struct Sequential {
    options: SequentialOptions,
    order: Vec<usize>,
    /// Plan call indices by (judge index, pair index).
    by_pair: HashMap<(usize, usize), Vec<usize>>,
    /// Cell index by (judge index, artifact).
    cell_index: HashMap<(usize, String), usize>,
    cells: Vec<Cell>,
    judges: Vec<String>,
    waves_planned: usize,
    waves_run: usize,
    calls_used: u64,
    calls_planned: u64,
    calls_by_judge: BTreeMap<String, u64>,
    budget_exhausted: bool,
    issued: Vec<usize>,
    /// Where each observed wave ends in `issued` (one entry per [`Sequential::observe`]).
    wave_ends: Vec<usize>,
    /// Per judge: the anytime-valid sequence on its run-to-run flip rate (baseline repeats).
    noise: Vec<ConfidenceSequence>,
}

/// The second family's per-interval miscoverage for a judge with `cells` artifacts: WR and flip
/// interval per cell plus the judge's noise interval, Bonferroni over 2 × cells + 1 at `alpha`.
pub fn secondary_alpha(alpha: f64, cells: usize) -> f64 {
    bonferroni_alpha(alpha, 2 * cells + 1)
}

/// A verdict as a score for the answer in `slot`: +1 it wins, −1 it loses, 0 a tie, `None` for
/// an unparseable or missing verdict.
fn score_for(verdict: Option<SlotVerdict>, slot: Slot) -> Option<f64> {
    match (verdict?, slot) {
        (SlotVerdict::First, Slot::First) | (SlotVerdict::Second, Slot::Second) => Some(1.0),
        (SlotVerdict::First, Slot::Second) | (SlotVerdict::Second, Slot::First) => Some(-1.0),
        (SlotVerdict::Tie, _) => Some(0.0),
        (SlotVerdict::Invalid, _) => None,
    }
}

/// The interval on a difference of two means from intervals on each (both hold at once with
/// the two miscoverages' sum), clipped to [−1, 1].
fn difference(a: Interval, b: Interval) -> Interval {
    Interval::new((a.low - b.high).max(-1.0), (a.high - b.low).min(1.0))
}

impl Sequential {
    /// An engine for `plan` before its first wave.
    pub fn new(plan: &Plan, options: &SequentialOptions) -> Sequential {
        let mut options = options.clone();
        options.wave_pairs = options.wave_pairs.clamp(1, MAX_WAVE_PAIRS);
        let pairs = plan
            .calls
            .iter()
            .map(|c| c.pair_index + 1)
            .max()
            .unwrap_or(0);
        let mut by_pair: HashMap<(usize, usize), Vec<usize>> = HashMap::new();
        let mut cell_index = HashMap::new();
        let mut cells: Vec<Cell> = Vec::new();
        let mut per_judge: BTreeMap<usize, usize> = BTreeMap::new();
        for (i, spec) in plan.calls.iter().enumerate() {
            by_pair
                .entry((spec.judge_index, spec.pair_index))
                .or_default()
                .push(i);
            if let Some(artifact) = &spec.artifact {
                let key = (spec.judge_index, artifact.clone());
                let index = *cell_index.entry(key).or_insert_with(|| {
                    *per_judge.entry(spec.judge_index).or_default() += 1;
                    cells.push(Cell {
                        judge: spec.judge.clone(),
                        artifact: artifact.clone(),
                        decision: CellDecision::Undecided,
                        decided_after_wave: None,
                        values: Vec::new(),
                        invalid: 0,
                        interval: Interval::new(-1.0, 1.0),
                        alpha: options.alpha,
                        calls_used: 0,
                        calls_planned: 0,
                        calls_needed: None,
                        decided_on: None,
                        wr_interval: Interval::new(-1.0, 1.0),
                        wr_pairs: 0,
                        flip_interval: Interval::new(0.0, 1.0),
                        flip_pairs: 0,
                        excess_flip_interval: Interval::new(-1.0, 1.0),
                        secondary_alpha: options.alpha,
                        cs: None,
                        wr_cs: None,
                        flip_cs: None,
                        wr_values: Vec::new(),
                        flip_values: Vec::new(),
                    });
                    cells.len() - 1
                });
                cells[index].calls_planned += 1;
            }
        }
        for ((judge_index, _), &index) in &cell_index {
            let alpha = bonferroni_alpha(options.alpha, per_judge[judge_index]);
            let secondary = secondary_alpha(options.alpha, per_judge[judge_index]);
            let c = &mut cells[index];
            c.alpha = alpha;
            c.cs = Some(ConfidenceSequence::new(alpha, -1.0, 1.0));
            c.secondary_alpha = secondary;
            c.wr_cs = Some(ConfidenceSequence::new(secondary, -1.0, 1.0));
            c.flip_cs = Some(ConfidenceSequence::new(secondary, 0.0, 1.0));
        }
        let noise = (0..plan.judges.len())
            .map(|j| {
                let k = per_judge.get(&j).copied().unwrap_or(0);
                ConfidenceSequence::new(secondary_alpha(options.alpha, k), 0.0, 1.0)
            })
            .collect();
        Sequential {
            order: pair_order(pairs, options.seed),
            waves_planned: pairs.div_ceil(options.wave_pairs),
            options,
            by_pair,
            cell_index,
            cells,
            judges: plan.judges.clone(),
            waves_run: 0,
            calls_used: 0,
            calls_planned: plan.calls.len() as u64,
            calls_by_judge: plan.judges.iter().map(|j| (j.clone(), 0)).collect(),
            budget_exhausted: false,
            issued: Vec::new(),
            wave_ends: Vec::new(),
            noise,
        }
    }

    /// The seeded pair order.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// Plan call indices of every wave folded in so far, in issue order.
    pub fn issued(&self) -> &[usize] {
        &self.issued
    }

    /// The plan call indices of each wave folded in so far, one slice per wave, in issue order.
    pub fn issued_waves(&self) -> impl Iterator<Item = &[usize]> + '_ {
        let starts = std::iter::once(0).chain(self.wave_ends.iter().copied());
        starts
            .zip(self.wave_ends.iter().copied())
            .map(|(start, end)| &self.issued[start..end])
    }

    /// Waves issued so far.
    pub fn waves_run(&self) -> usize {
        self.waves_run
    }

    /// True while some cell is open, the plan has waves left and the budget allows the next one.
    pub fn finished(&self) -> bool {
        self.budget_exhausted
            || self.waves_run >= self.waves_planned
            || self.cells.iter().all(|c| !c.open())
    }

    fn wave_calls(&self, plan: &Plan, wave: usize) -> Vec<usize> {
        let start = wave * self.options.wave_pairs;
        let end = (start + self.options.wave_pairs).min(self.order.len());
        let mut calls = Vec::new();
        for &pair in self.order.get(start..end).unwrap_or(&[]) {
            for judge in 0..self.judges.len() {
                let Some(indices) = self.by_pair.get(&(judge, pair)) else {
                    continue;
                };
                let judge_open = self
                    .cells
                    .iter()
                    .any(|c| c.open() && c.judge == self.judges[judge]);
                for &i in indices {
                    let spec = &plan.calls[i];
                    let wanted = match &spec.artifact {
                        None => judge_open,
                        Some(a) => self.cells[self.cell_index[&(judge, a.clone())]].open(),
                    };
                    if wanted {
                        calls.push(i);
                    }
                }
            }
        }
        calls
    }

    /// The plan call indices of the next wave (all conditions of its pairs for every open cell,
    /// and their baselines), or `None` when the audit is finished. Marks the budget exhausted
    /// when the wave would not fit in `max_calls`.
    pub fn next_wave(&mut self, plan: &Plan) -> Option<Vec<usize>> {
        while !self.finished() {
            let calls = self.wave_calls(plan, self.waves_run);
            if let Some(max) = self.options.max_calls
                && self.calls_used + calls.len() as u64 > max
            {
                self.budget_exhausted = true;
                self.project_needs(plan);
                return None;
            }
            if calls.is_empty() {
                // A wave of pairs outside every open judge's scope: nothing to send.
                self.waves_run += 1;
                continue;
            }
            return Some(calls);
        }
        None
    }

    /// Folds in the records of the wave [`Sequential::next_wave`] returned (`calls`, looked up in
    /// `records` by call id; a call without a record counts as issued and unanswered) and
    /// updates every open cell's decision.
    pub fn observe(&mut self, plan: &Plan, calls: &[usize], records: &HashMap<&str, &CallRecord>) {
        self.waves_run += 1;
        self.calls_used += calls.len() as u64;
        self.issued.extend_from_slice(calls);
        self.wave_ends.push(self.issued.len());
        // Per (cell, pair): the sum and count of valid scores, in the wave's pair order.
        let mut per_pair: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
        let position: HashMap<usize, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(k, &p)| (p, k))
            .collect();
        for &i in calls {
            let spec = &plan.calls[i];
            *self.calls_by_judge.entry(spec.judge.clone()).or_default() += 1;
            let Some(artifact) = &spec.artifact else {
                continue;
            };
            let cell = self.cell_index[&(spec.judge_index, artifact.clone())];
            self.cells[cell].calls_used += 1;
            if spec.kind != ConditionKind::TieDetection {
                continue;
            }
            let verdict = records.get(spec.id.as_str()).and_then(|r| r.verdict);
            let artifact_slot = slot_contents(spec).artifact_slot.unwrap_or(Slot::First);
            let score = match (verdict, artifact_slot) {
                (Some(SlotVerdict::First), Slot::First)
                | (Some(SlotVerdict::Second), Slot::Second) => 1.0,
                (Some(SlotVerdict::First), Slot::Second)
                | (Some(SlotVerdict::Second), Slot::First) => -1.0,
                (Some(SlotVerdict::Tie), _) => 0.0,
                (Some(SlotVerdict::Invalid), _) => {
                    self.cells[cell].invalid += 1;
                    continue;
                }
                (None, _) => continue,
            };
            let entry = per_pair
                .entry((cell, position[&spec.pair_index]))
                .or_default();
            entry.0 += score;
            entry.1 += 1;
        }
        for ((cell, _), (sum, count)) in per_pair {
            let value = sum / count as f64;
            let c = &mut self.cells[cell];
            c.values.push(value);
            if let Some(cs) = c.cs.as_mut() {
                cs.push(value);
            }
        }
        self.observe_secondary(plan, calls, records, &position);
        let exhausted = self.waves_run >= self.waves_planned;
        let size = self.options.reject_size;
        let (wr_size, flip_size) = (self.options.reject_wr, self.options.reject_excess_flip);
        let pairs_total = self.order.len();
        for c in self.cells.iter_mut().filter(|c| c.open()) {
            if let Some(cs) = &c.cs {
                c.interval = cs.interval();
            }
            c.decision = decide(c.interval, size);
            c.decided_on = Some("T".into());
            // Robust at this size settles REJECT but not CAUTION (a small, real effect): stop
            // only when the full plan is also unlikely to find the effect significant.
            if c.decision == CellDecision::Robust
                && full_plan_significance(&c.values, pairs_total, c.alpha) >= FUTILITY
            {
                c.decision = CellDecision::Undecided;
            }
            // The trust rules also reject a significant artifact on |WR| or on the excess flip
            // rate: with T established (its interval excludes 0), an anytime-valid WR interval
            // beyond ± its rejection size, or an excess-flip lower bound at or above its size,
            // rejects the cell now.
            let t_significant = c.interval.low > 0.0 || c.interval.high < 0.0;
            if t_significant && c.decision != CellDecision::Reject {
                let wr = c.wr_interval;
                let wr_beyond =
                    (wr.low > 0.0 && wr.low >= wr_size) || (wr.high < 0.0 && wr.high <= -wr_size);
                if wr_beyond {
                    c.decision = CellDecision::Reject;
                    c.decided_on = Some("WR".into());
                } else if c.excess_flip_interval.low >= flip_size {
                    c.decision = CellDecision::Reject;
                    c.decided_on = Some("excess flip rate".into());
                }
            }
            // CAUTION is a stop only once the second family cannot turn it into a REJECT: the
            // WR interval inside ± its rejection size and the excess-flip upper bound below
            // its size. Otherwise the cell keeps drawing: the full plan's WR rule may still
            // reject a small T effect whose WR is near its size.
            if c.decision == CellDecision::Caution {
                let wr = c.wr_interval;
                let wr_settled = wr.low > -wr_size && wr.high < wr_size;
                let flip_settled = c.excess_flip_interval.high < flip_size;
                if !(wr_settled && flip_settled) {
                    c.decision = CellDecision::Undecided;
                }
            }
            if c.open() && exhausted {
                c.decision = fixed_n_decision(&c.values, c.alpha, size);
                c.decided_on = Some("T (fixed-n, plan exhausted)".into());
                // The full plan's second rule: with T significant, a significant |WR| at or
                // beyond its size rejects.
                if c.decision == CellDecision::Caution
                    && fixed_n_decision(&c.wr_values, c.secondary_alpha, wr_size)
                        == CellDecision::Reject
                {
                    c.decision = CellDecision::Reject;
                    c.decided_on = Some("WR (fixed-n, plan exhausted)".into());
                }
            }
            if c.open() {
                c.decided_on = None;
            } else {
                c.decided_after_wave = Some(self.waves_run);
            }
        }
    }

    /// Folds a wave's shift and baseline verdicts into the second family: per open cell one WR
    /// value and one flip value per pair (the means of its valid comparisons), per judge one
    /// run-to-run flip value per pair, then refreshes each open cell's WR, flip and excess-flip
    /// intervals. Per pair, as in the fixed-n analysis: WR scores the shifted answer (+1 it wins,
    /// −1 it loses, 0 tie) in each shift call; a flip compares a shift call's verdict with the
    /// first baseline of the same order; noise compares each baseline repeat with the first of
    /// its order. For `position`, WR scores the first slot in every baseline and a flip is answer
    /// a's outcome changing between the two orders.
    fn observe_secondary(
        &mut self,
        plan: &Plan,
        calls: &[usize],
        records: &HashMap<&str, &CallRecord>,
        position: &HashMap<usize, usize>,
    ) {
        let verdict = |i: usize| {
            records
                .get(plan.calls[i].id.as_str())
                .and_then(|r| r.verdict)
        };
        // First baseline of each (judge, pair, order) in this wave.
        let mut first_baseline: HashMap<(usize, usize, bool), Option<SlotVerdict>> = HashMap::new();
        for &i in calls {
            let spec = &plan.calls[i];
            if spec.kind == ConditionKind::Baseline && spec.repeat == 0 {
                first_baseline.insert(
                    (spec.judge_index, spec.pair_index, spec.order == Order::Ab),
                    verdict(i),
                );
            }
        }
        let valid = |v: Option<SlotVerdict>| v.filter(|v| *v != SlotVerdict::Invalid);
        let mut wr: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
        let mut flip: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
        let mut noise: BTreeMap<(usize, usize), (f64, u32)> = BTreeMap::new();
        let add = |map: &mut BTreeMap<(usize, usize), (f64, u32)>, key, x: f64| {
            let e = map.entry(key).or_insert((0.0, 0));
            e.0 += x;
            e.1 += 1;
        };
        for &i in calls {
            let spec = &plan.calls[i];
            let (j, pos) = (spec.judge_index, position[&spec.pair_index]);
            let ab = spec.order == Order::Ab;
            let base = first_baseline
                .get(&(j, spec.pair_index, ab))
                .copied()
                .flatten();
            match spec.kind {
                ConditionKind::Baseline => {
                    if spec.repeat > 0
                        && let (Some(now), Some(first)) = (valid(verdict(i)), valid(base))
                    {
                        add(&mut noise, (j, pos), f64::from(u8::from(now != first)));
                    }
                    let Some(&cell) = self.cell_index.get(&(j, "position".to_string())) else {
                        continue;
                    };
                    if !self.cells[cell].open() {
                        continue;
                    }
                    if let Some(x) = score_for(verdict(i), Slot::First) {
                        add(&mut wr, (cell, pos), x);
                    }
                    // One position comparison per pair: answer a in ab (first slot) against
                    // answer a in ba (second slot), first repeats.
                    if spec.repeat == 0 && ab {
                        let ba = first_baseline
                            .get(&(j, spec.pair_index, false))
                            .copied()
                            .flatten();
                        if let (Some(x), Some(y)) = (
                            score_for(verdict(i), Slot::First),
                            score_for(ba, Slot::Second),
                        ) {
                            add(&mut flip, (cell, pos), f64::from(u8::from(x != y)));
                        }
                    }
                }
                ConditionKind::Shift => {
                    let Some(artifact) = &spec.artifact else {
                        continue;
                    };
                    let Some(&cell) = self.cell_index.get(&(j, artifact.clone())) else {
                        continue;
                    };
                    let Some(slot) = slot_contents(spec).artifact_slot else {
                        continue;
                    };
                    let after = score_for(verdict(i), slot);
                    if let Some(x) = after {
                        add(&mut wr, (cell, pos), x);
                    }
                    if let (Some(x), Some(y)) = (after, score_for(base, slot)) {
                        add(&mut flip, (cell, pos), f64::from(u8::from(x != y)));
                    }
                }
                ConditionKind::TieDetection => {}
            }
        }
        for ((cell, _), (sum, count)) in wr {
            let c = &mut self.cells[cell];
            c.wr_pairs += 1;
            c.wr_values.push(sum / f64::from(count));
            if let Some(cs) = c.wr_cs.as_mut() {
                cs.push(sum / f64::from(count));
            }
        }
        for ((cell, _), (sum, count)) in flip {
            let c = &mut self.cells[cell];
            c.flip_pairs += 1;
            c.flip_values.push(sum / f64::from(count));
            if let Some(cs) = c.flip_cs.as_mut() {
                cs.push(sum / f64::from(count));
            }
        }
        for ((j, _), (sum, count)) in noise {
            self.noise[j].push(sum / f64::from(count));
        }
        let judges: HashMap<&str, usize> = self
            .judges
            .iter()
            .enumerate()
            .map(|(k, n)| (n.as_str(), k))
            .collect();
        for c in self.cells.iter_mut().filter(|c| c.open()) {
            if let Some(cs) = &c.wr_cs {
                c.wr_interval = cs.interval();
            }
            if let Some(cs) = &c.flip_cs {
                c.flip_interval = cs.interval();
            }
            let noise = self.noise[judges[c.judge.as_str()]].interval();
            c.excess_flip_interval = difference(c.flip_interval, noise);
        }
    }

    /// Per judge: the anytime-valid interval on its run-to-run flip rate and the pairs behind
    /// it (`[0, 1]` without baseline repeats).
    pub fn noise_flip(&self) -> BTreeMap<String, NoiseFlip> {
        self.judges
            .iter()
            .zip(&self.noise)
            .map(|(name, cs)| {
                (
                    name.clone(),
                    NoiseFlip {
                        interval: cs.interval(),
                        pairs: cs.len(),
                        alpha: cs.alpha(),
                    },
                )
            })
            .collect()
    }

    /// Marks the audit as ended before every cell was decided (the run stopped: a budget,
    /// failures, an interruption) and projects the calls each open cell would still need.
    pub fn end_early(&mut self, plan: &Plan) {
        self.budget_exhausted = true;
        self.project_needs(plan);
    }

    fn project_needs(&mut self, plan: &Plan) {
        let size = self.options.reject_size;
        let pairs_total = self.order.len() as u64;
        let _ = plan;
        for c in self.cells.iter_mut().filter(|c| c.open()) {
            let n = c.values.len() as u64;
            let mean = c.estimate();
            let sd = if n >= 2 {
                let var = c.values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
                var.sqrt()
            } else {
                // No spread yet: the worst case for values in [−1, 1].
                1.0
            };
            // The interval decides once its half-width is below the distance from the estimate to
            // the nearest decision boundary (± the rejection size; 0 is passed on the way).
            let distance = if mean.is_finite() {
                (mean.abs() - size).abs()
            } else {
                size
            };
            let per_pair = c.calls_planned as f64 / pairs_total.max(1) as f64;
            c.calls_needed = observations_for_half_width(distance, sd, 2.0, c.alpha, pairs_total)
                .filter(|&needed| needed > n)
                .map(|needed| ((needed - n) as f64 * per_pair).ceil() as u64);
        }
    }

    /// Runs the whole audit against stored `records`: every wave whose calls are all stored is
    /// folded in; returns the calls of the first wave with a call not stored (what a resumed run
    /// must send next), or `None` when the audit is finished.
    pub fn replay(
        &mut self,
        plan: &Plan,
        records: &HashMap<&str, &CallRecord>,
    ) -> Option<Vec<usize>> {
        while let Some(calls) = self.next_wave(plan) {
            if !calls
                .iter()
                .all(|&i| records.contains_key(plan.calls[i].id.as_str()))
            {
                return Some(calls);
            }
            self.observe(plan, &calls, records);
        }
        None
    }

    /// The summary at this point.
    pub fn summary(&self) -> SequentialSummary {
        let mut judges: BTreeMap<String, Trust> = self
            .judges
            .iter()
            .map(|j| (j.clone(), Trust::Adopt))
            .collect();
        for c in &self.cells {
            let level = judges.entry(c.judge.clone()).or_insert(Trust::Adopt);
            *level = (*level).max(c.decision.level());
        }
        SequentialSummary {
            stopping_rule: format!(
                "after each wave, per judge × artifact: stop when the anytime-valid interval on T \
                 excludes 0 and lies beyond ±{s} (effect established at the rejection size: \
                 REJECT) or inside it with the WR interval inside ±{w} and the excess-flip \
                 upper bound below {x} (established below it: CAUTION), or contains 0, lies \
                 inside ±{s} and the full plan would find the effect significant with \
                 probability below {f} (robust at this size); a cell undecided at plan end takes \
                 the fixed-n rules on all its pairs (T, then WR). A cell whose T interval excludes 0 is also \
                 rejected (REJECT) when its anytime-valid WR interval lies beyond ±{w} or its \
                 excess-flip interval lies at or above {x}",
                s = self.options.reject_size,
                f = FUTILITY,
                w = self.options.reject_wr,
                x = self.options.reject_excess_flip,
            ),
            wave_pairs: self.options.wave_pairs,
            order_seed: self.options.seed,
            waves_planned: self.waves_planned,
            waves_run: self.waves_run,
            calls_used: self.calls_used,
            calls_planned: self.calls_planned,
            calls_by_judge: self.calls_by_judge.clone(),
            budget_exhausted: self.budget_exhausted,
            cells: self.cells.clone(),
            judges,
            noise_flip: self.noise_flip(),
            juries: Vec::new(),
            anytime_valid: format!(
                "anytime-valid (empirical-Bernstein confidence sequences): the sequential \
                 intervals on T (family-wise {p:.0}% per judge, Bonferroni over its artifacts) and, \
                 as a second family at family-wise {p:.0}% per judge (Bonferroni over 2 × its \
                 artifacts + 1), on WR, the flip rate, the run-to-run flip rate and hence the \
                 excess flip rate; every other interval in the report is fixed-n",
                p = 100.0 * (1.0 - self.options.alpha)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_interval() {
        let s = 0.2;
        assert_eq!(decide(Interval::new(0.25, 0.6), s), CellDecision::Reject);
        assert_eq!(decide(Interval::new(-0.6, -0.2), s), CellDecision::Reject);
        assert_eq!(decide(Interval::new(0.05, 0.15), s), CellDecision::Caution);
        assert_eq!(decide(Interval::new(-0.1, 0.15), s), CellDecision::Robust);
        assert_eq!(decide(Interval::new(0.1, 0.3), s), CellDecision::Undecided);
        assert_eq!(decide(Interval::new(-0.3, 0.1), s), CellDecision::Undecided);
        assert_eq!(decide(Interval::new(-1.0, 1.0), s), CellDecision::Undecided);
    }

    #[test]
    fn fixed_n_rule() {
        let strong: Vec<f64> = (0..100)
            .map(|i| if i % 10 < 7 { 1.0 } else { -1.0 })
            .collect();
        assert_eq!(fixed_n_decision(&strong, 0.05, 0.2), CellDecision::Reject);
        let weak: Vec<f64> = (0..400)
            .map(|i| if i % 20 < 11 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(fixed_n_decision(&weak, 0.05, 0.2), CellDecision::Reject);
        let small: Vec<f64> = (0..1000)
            .map(|i| if i % 10 < 1 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(fixed_n_decision(&small, 0.05, 0.2), CellDecision::Caution);
        let none: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        assert_eq!(
            fixed_n_decision(&none, 0.05, 0.2),
            CellDecision::NotSignificant
        );
        assert_eq!(
            fixed_n_decision(&[1.0], 0.05, 0.2),
            CellDecision::NotSignificant
        );
    }

    #[test]
    fn full_plan_significance_projects_the_final_test() {
        // 100 of 1,000 pairs with mean 0 and sd 1: the final z is N(0, 0.9); P(|z| > 1.96)
        // = 2·(1 − Φ(1.96/√0.9)) = 2·(1 − Φ(2.066)) = 0.0388.
        let zero: Vec<f64> = (0..100)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let p = full_plan_significance(&zero, 1000, 0.05);
        assert!((p - 0.0388).abs() < 1e-3, "{p}");
        // Mean 0.1 with sd ≈ 1 over 1,000 pairs: drift 0.1·√1000 = 3.16 > 1.96, likely.
        let small: Vec<f64> = (0..100)
            .map(|i| if i % 20 < 11 { 1.0 } else { -1.0 })
            .collect();
        assert!(full_plan_significance(&small, 1000, 0.05) > 0.8);
        // Plan exhausted: the fixed-n answer itself.
        assert_eq!(full_plan_significance(&zero, 100, 0.05), 0.0);
        assert_eq!(full_plan_significance(&[1.0], 100, 0.05), 1.0);
    }

    #[test]
    fn pair_order_is_a_seeded_permutation() {
        let a = pair_order(50, 7);
        assert_eq!(a, pair_order(50, 7));
        assert_ne!(a, pair_order(50, 8));
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }
}

#[cfg(test)]
mod secondary_tests {
    use super::*;
    use crate::analyze::simulate::{SimulatedDesign, synthetic_pairs};
    use crate::design::{DesignOptions, Side};
    use crate::judge::JudgeConfig;
    use crate::judge::config::{Backend, SimParams};
    use crate::judge::sim::SimJudge;
    use crate::perturb::Catalog;

    fn sim(name: &str, seed: u64) -> SimJudge {
        let mut config = JudgeConfig::new(name, Backend::Sim);
        config.seed = seed;
        config.sim = Some(SimParams {
            accuracy: 0.8,
            position_bias: 0.1,
            noise: 0.2,
            tie_rate: 0.1,
            invalid_rate: 0.05,
            artifact_preference: [("apology".to_string(), 0.3)].into_iter().collect(),
        });
        SimJudge::new(&config).expect("valid simulated judge")
    }

    fn slot_score(v: Option<SlotVerdict>, first: bool) -> Option<f64> {
        match v? {
            SlotVerdict::First => Some(if first { 1.0 } else { -1.0 }),
            SlotVerdict::Second => Some(if first { -1.0 } else { 1.0 }),
            SlotVerdict::Tie => Some(0.0),
            SlotVerdict::Invalid => None,
        }
    }

    /// The engine's WR, flip and noise sequences equal sequences fed with per-pair values
    /// recomputed here straight from the records (a separate transcription of the definitions
    /// in `observe_secondary`'s docs), in the engine's pair order; and a jury is decided only
    /// when all its members' cells are.
    /// `issued_waves` cuts `issued` at each observed wave, and the batch note is added to the
    /// stopping rule only when some wave went through batches (non-batch text unchanged).
    #[test]
    fn issued_waves_and_the_batch_note() {
        let catalog = Catalog::builtin();
        let artifacts: Vec<&crate::perturb::Artifact> =
            vec![catalog.get("apology").expect("built-in")];
        let pairs = synthetic_pairs(30, 3);
        let names = vec!["a".to_string()];
        let design = SimulatedDesign::new(&pairs, &artifacts, &names, &DesignOptions::default(), 3);
        let records = design.records(&[sim("a", 1)], false);
        let by_id: HashMap<&str, &CallRecord> =
            records.iter().map(|r| (r.call_id.as_str(), r)).collect();
        let options = SequentialOptions {
            wave_pairs: 7,
            ..SequentialOptions::default()
        };
        let mut engine = Sequential::new(&design.plan, &options);
        assert!(engine.replay(&design.plan, &by_id).is_none());
        let waves: Vec<&[usize]> = engine.issued_waves().collect();
        assert!(!waves.is_empty());
        assert_eq!(waves.concat(), engine.issued());
        let plain = engine.summary();
        let mut noted = plain.clone();
        noted.note_batch_waves(0);
        assert_eq!(noted, plain);
        noted.note_batch_waves(2);
        assert!(noted.stopping_rule.starts_with(&plain.stopping_rule));
        assert!(
            noted
                .stopping_rule
                .ends_with("2 waves went through provider batches (run --batch: each wave's calls submitted as batches, and the wave decided once they ended; the decisions are those of the synchronous run)"),
            "{}",
            noted.stopping_rule
        );
    }

    #[test]
    fn second_family_matches_a_direct_transcription() {
        let catalog = Catalog::builtin();
        let artifacts: Vec<&crate::perturb::Artifact> = ["apology", "position"]
            .iter()
            .map(|id| catalog.get(id).expect("built-in"))
            .collect();
        let pairs = synthetic_pairs(60, 5);
        let names = vec!["a".to_string(), "b".to_string()];
        let options = DesignOptions {
            repeats: 2,
            ..DesignOptions::default()
        };
        let design = SimulatedDesign::new(&pairs, &artifacts, &names, &options, 5);
        let records = design.records(&[sim("a", 1), sim("b", 2)], false);
        let by_id: HashMap<&str, &CallRecord> =
            records.iter().map(|r| (r.call_id.as_str(), r)).collect();
        let seq_options = SequentialOptions {
            wave_pairs: 60,
            ..SequentialOptions::default()
        };
        let mut engine = Sequential::new(&design.plan, &seq_options);
        assert!(engine.replay(&design.plan, &by_id).is_none());
        let order = engine.order().to_vec();
        let verdict =
            |spec: &crate::design::CallSpec| by_id.get(spec.id.as_str()).and_then(|r| r.verdict);
        let find = |j: usize,
                    p: usize,
                    kind: ConditionKind,
                    artifact: Option<&str>,
                    side: Option<Side>,
                    order: Order,
                    repeat: u32| {
            design.plan.calls.iter().find(|c| {
                c.judge_index == j
                    && c.pair_index == p
                    && c.kind == kind
                    && c.artifact.as_deref() == artifact
                    && c.side == side
                    && c.order == order
                    && c.repeat == repeat
            })
        };
        let alpha2 = secondary_alpha(0.05, 2);
        let summary = engine.summary();
        for (j, name) in names.iter().enumerate() {
            let (mut wr, mut flip, mut noise) = (
                ConfidenceSequence::new(alpha2, -1.0, 1.0),
                ConfidenceSequence::new(alpha2, 0.0, 1.0),
                ConfidenceSequence::new(alpha2, 0.0, 1.0),
            );
            for &p in &order {
                // Noise: repeat 1 against repeat 0, per order.
                let mut n = Vec::new();
                for o in [Order::Ab, Order::Ba] {
                    let first =
                        find(j, p, ConditionKind::Baseline, None, None, o, 0).and_then(verdict);
                    let again =
                        find(j, p, ConditionKind::Baseline, None, None, o, 1).and_then(verdict);
                    if let (Some(x), Some(y)) = (first, again)
                        && x != SlotVerdict::Invalid
                        && y != SlotVerdict::Invalid
                    {
                        n.push(f64::from(u8::from(x != y)));
                    }
                }
                if !n.is_empty() {
                    noise.push(n.iter().sum::<f64>() / n.len() as f64);
                }
                // Apology: the shifted side's score; flips against the first baseline.
                let (mut w, mut f) = (Vec::new(), Vec::new());
                for side in [Side::A, Side::B] {
                    for o in [Order::Ab, Order::Ba] {
                        let first = (side == Side::A) == (o == Order::Ab);
                        let Some(shift) = find(
                            j,
                            p,
                            ConditionKind::Shift,
                            Some("apology"),
                            Some(side),
                            o,
                            0,
                        ) else {
                            continue;
                        };
                        let after = slot_score(verdict(shift), first);
                        let before = find(j, p, ConditionKind::Baseline, None, None, o, 0)
                            .and_then(|b| slot_score(verdict(b), first));
                        if let Some(x) = after {
                            w.push(x);
                        }
                        if let (Some(x), Some(y)) = (after, before) {
                            f.push(f64::from(u8::from(x != y)));
                        }
                    }
                }
                if !w.is_empty() {
                    wr.push(w.iter().sum::<f64>() / w.len() as f64);
                }
                if !f.is_empty() {
                    flip.push(f.iter().sum::<f64>() / f.len() as f64);
                }
            }
            let cell = summary
                .cells
                .iter()
                .find(|c| c.judge == *name && c.artifact == "apology")
                .unwrap();
            // The engine's interval is the one at the cell's stopping time; the cell ran the one
            // wave there is, so both saw every pair.
            assert_eq!(cell.wr_pairs, wr.len());
            assert_eq!(cell.flip_pairs, flip.len());
            assert_eq!(cell.wr_interval, wr.interval());
            assert_eq!(cell.flip_interval, flip.interval());
            let n = &summary.noise_flip[name];
            assert_eq!(n.pairs, noise.len());
            assert!(n.pairs > 50, "{}", n.pairs);
            assert_eq!(n.interval, noise.interval());
            let excess = cell.excess_flip_interval;
            assert!(
                (excess.low - (flip.interval().low - noise.interval().high).max(-1.0)).abs()
                    < 1e-12
            );
            assert!((excess.high - (flip.interval().high - noise.interval().low)).abs() < 1e-12);
            assert_eq!(cell.secondary_alpha, alpha2);
        }
        // Juries: decided exactly when every member's cells are.
        let mut s = summary.clone();
        s.add_juries(&[
            ("jury-majority".into(), names.clone()),
            ("solo".into(), vec!["a".into(), "nobody".into()]),
        ]);
        assert_eq!(s.juries.len(), 1, "a jury needs two known members");
        let all_decided = s.cells.iter().all(|c| !c.open());
        assert_eq!(s.juries[0].decided, all_decided);
        let mut open = summary.clone();
        open.cells[0].decision = CellDecision::Undecided;
        open.add_juries(&[("jury-majority".into(), names.clone())]);
        assert!(!open.juries[0].decided);
        assert_eq!(open.juries[0].decided_after_wave, None);
    }
}
