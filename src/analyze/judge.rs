//! The metrics of one judge (or one jury, which is analysed the same way) from its dense verdict
//! matrix. Every bootstrapped statistic of the judge is registered on one [`Boot`] over the pairs
//! and resampled in a single pass, so all of a judge's intervals come from the same resamples.

use super::boot::{Boot, Col, Outcome, Results, Stat, ratio};
use super::index::{FIRST, INVALID, Layout, NOT_PLANNED, Obs, Verdicts, obs};
use super::{
    ALPHA, AnalysisOptions, ArtifactResult, BOOTSTRAP_MIN_PAIRS, BaselineResult, CallCounts,
    CategoryResult, ConsistencyShares, Estimate, FlipRate, JudgeKind, JudgeResult,
    LengthSensitivity, Mde, Planted, PositionConsistency, RateInterval, SelfConsistency,
    SmallSampleInterval, SoftSummary, StuartMaxwellResult, TieDetection, Trust, TrustVerdict,
    WinrateShift, mix_seed, power,
};
use crate::dataset::{Pair, Preference};
use crate::design::{Order, Side};
use crate::judge::FaultKind;
use crate::stats::{self, BootstrapConfig, BootstrapMethod, Interval};
use std::collections::BTreeMap;

/// What the analysis needs about the run, shared by every judge and jury.
pub(crate) struct Ctx<'a> {
    pub layout: &'a Layout,
    pub pairs: &'a [Pair],
    pub options: &'a AnalysisOptions,
    /// Index of the `position` artifact, if audited.
    pub position: Option<usize>,
    /// chars(a) − chars(b) per pair.
    pub len_diff: Vec<f64>,
    /// Category names, sorted.
    pub categories: Vec<String>,
    /// Category index of each pair.
    pub category_of: Vec<usize>,
    /// `excluded[(artifact · pairs + pair) · 2 + side]`: the artifact left that answer unchanged
    /// or the answer already carried it, so its tie-detection and shift calls measure nothing
    /// and are left out of the artifact's estimates (counted in `ArtifactResult::perturbation`).
    pub excluded: Vec<bool>,
}

/// One judge or jury to analyse.
pub(crate) struct Subject<'a> {
    pub name: String,
    pub kind: JudgeKind,
    pub members: Vec<String>,
    pub rule: Option<String>,
    pub simulated: bool,
    pub verdicts: &'a Verdicts,
    pub faults: BTreeMap<FaultKind, u64>,
    pub stopped: Option<String>,
    pub planted: Option<&'a BTreeMap<String, f64>>,
}

const SIDES: [Side; 2] = [Side::A, Side::B];

/// Outcome category of a score for 3 × 3 tables: wins, tie, loses.
fn outcome_index(score: i8) -> usize {
    match score {
        1 => 0,
        0 => 1,
        _ => 2,
    }
}

/// Identity label of a baseline verdict (0 = a wins, 1 = b wins, 2 = tie) from a's score.
fn identity_label(a_score: i8) -> usize {
    match a_score {
        1 => 0,
        -1 => 1,
        _ => 2,
    }
}

/// Gold label index (0 = a, 1 = b, 2 = tie).
fn gold_label(p: Preference) -> usize {
    match p {
        Preference::A => 0,
        Preference::B => 1,
        Preference::Tie => 2,
    }
}

/// P(the answer in the first slot, or the second, wins) from label probabilities.
fn p_win(p: [f64; 3], ours_first: bool) -> f64 {
    if ours_first { p[0] } else { p[1] }
}

/// A rate with its Wilson interval, plus Clopper–Pearson and Jeffreys.
pub(crate) fn rate_estimate(successes: u64, n: u64, confidence: f64) -> Estimate {
    if n == 0 {
        return Estimate::empty("wilson");
    }
    let w = stats::wilson(successes, n, confidence);
    let cp = stats::clopper_pearson(successes, n, confidence);
    let j = stats::jeffreys(successes, n, confidence);
    Estimate {
        estimate: Some(successes as f64 / n as f64),
        ci_low: Some(w.low),
        ci_high: Some(w.high),
        ci_method: "wilson".into(),
        n,
        ci_exact: Some(RateInterval {
            low: cp.low,
            high: cp.high,
            method: "clopper-pearson".into(),
        }),
        ci_jeffreys: Some(RateInterval {
            low: j.low,
            high: j.high,
            method: "jeffreys".into(),
        }),
        ..Estimate::empty("wilson")
    }
}

/// Name of the bootstrap interval method for `ci_method`.
fn boot_method(options: &AnalysisOptions, paired: bool) -> String {
    let m = match options.bootstrap_method {
        BootstrapMethod::Percentile => "percentile",
        BootstrapMethod::Bca => "BCa",
    };
    let p = if paired { "paired " } else { "" };
    format!("{p}cluster bootstrap ({m}, by pair)")
}

/// The range of a bootstrapped statistic and the data behind it, for its small-sample interval.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scale {
    /// Smallest value the statistic can take.
    pub lo: f64,
    /// Largest value.
    pub hi: f64,
    /// Pairs that carry data for it (the clusters).
    pub pairs: u64,
    /// Observations behind it (the cap on the effective sample size).
    pub max_n: f64,
}

impl Scale {
    /// A statistic in [−1, 1] (T, WR, shifts, κ).
    pub(crate) fn signed(pairs: u64, max_n: u64) -> Scale {
        Scale {
            lo: -1.0,
            hi: 1.0,
            pairs,
            max_n: max_n as f64,
        }
    }

    /// A proportion in [0, 1].
    pub(crate) fn unit(pairs: u64, max_n: u64) -> Scale {
        Scale {
            lo: 0.0,
            hi: 1.0,
            pairs,
            max_n: max_n as f64,
        }
    }
}

/// Why `out` needs the small-sample interval instead of its bootstrap one, if it does: fewer
/// than [`BOOTSTRAP_MIN_PAIRS`] pairs, or a bootstrap interval of zero width (every resample
/// gave the same value) or none at all. `None` also when no interval was requested.
fn small_sample_reason(out: &Outcome, pairs: u64) -> Option<&'static str> {
    out.jack_ss?;
    if !out.estimate.is_finite() {
        return None;
    }
    if pairs < BOOTSTRAP_MIN_PAIRS {
        return Some("few pairs");
    }
    match out.interval {
        Some(i) if i.width() > 0.0 => None,
        _ => Some("degenerate bootstrap"),
    }
}

/// The effective-sample-size Clopper–Pearson interval (Korn & Graubard 1998) of `out` on its
/// scale, with the jackknife variance over the pairs; returns the interval in the statistic's
/// units and n*.
fn effective_interval(out: &Outcome, sc: Scale, confidence: f64) -> Option<(Interval, f64)> {
    let ss = out.jack_ss?;
    if !out.estimate.is_finite() {
        return None;
    }
    let w = sc.hi - sc.lo;
    let m = sc.pairs as f64;
    let variance = if sc.pairs >= 2 {
        (m - 1.0) / m * ss / (w * w)
    } else {
        0.0
    };
    let p = (out.estimate - sc.lo) / w;
    let e = stats::effective_clopper_pearson(p, variance, sc.pairs, sc.max_n, confidence)?;
    Some((
        Interval::new(sc.lo + w * e.interval.low, sc.lo + w * e.interval.high),
        e.n_eff,
    ))
}

/// Name of the small-sample interval for `ci_method`.
const EFFECTIVE_METHOD: &str = "effective-sample-size Clopper–Pearson (Korn–Graubard, by pair)";

/// Replace the bootstrap interval of `e` by `interval` and record why.
fn use_small_sample(e: &mut Estimate, reason: &str, pairs: u64, n_eff: f64, interval: Interval) {
    e.ci_small_sample = Some(SmallSampleInterval {
        reason: reason.into(),
        pairs,
        n_eff,
        bootstrap_low: e.ci_low,
        bootstrap_high: e.ci_high,
    });
    e.ci_low = Some(interval.low);
    e.ci_high = Some(interval.high);
}

/// An estimate from a bootstrap outcome; no estimate when it is not finite. With few pairs or a
/// degenerate bootstrap the interval is the effective-sample-size Clopper–Pearson one on
/// `scale` (VALIDATION.md, "Small audits and the boundary").
pub(crate) fn boot_estimate(
    results: &Results,
    s: Stat,
    n: u64,
    method: &str,
    scale: Scale,
    confidence: f64,
) -> Estimate {
    let out = results.get(s);
    let mut e = plain_boot_estimate(&out, n, method);
    if let Some(reason) = small_sample_reason(&out, scale.pairs)
        && let Some((interval, n_eff)) = effective_interval(&out, scale, confidence)
    {
        use_small_sample(&mut e, reason, scale.pairs, n_eff, interval);
        e.ci_method = format!("{EFFECTIVE_METHOD}, in place of the {method}");
    }
    e
}

/// The estimate of a difference `d = θ₁ − θ₂` (or |θ₁ − θ₂| with `abs`): with few pairs or a
/// degenerate bootstrap, the MOVER combination of the two parts' effective-sample-size
/// Clopper–Pearson intervals (folded at 0 for the absolute value: the image of an interval
/// under |·| contains |d| whenever the interval contains d).
#[allow(clippy::too_many_arguments)]
fn boot_difference(
    results: &Results,
    d: Stat,
    parts: [(Stat, Scale); 2],
    abs: bool,
    n: u64,
    method: &str,
    confidence: f64,
) -> Estimate {
    let out = results.get(d);
    let mut e = plain_boot_estimate(&out, n, method);
    let pairs = parts[0].1.pairs.min(parts[1].1.pairs);
    let [(s1, sc1), (s2, sc2)] = parts;
    let (o1, o2) = (results.get(s1), results.get(s2));
    if let Some(reason) = small_sample_reason(&out, pairs)
        && let (Some((i1, n1)), Some((i2, n2))) = (
            effective_interval(&o1, sc1, confidence),
            effective_interval(&o2, sc2, confidence),
        )
    {
        let i = stats::mover_difference(o1.estimate, i1, o2.estimate, i2);
        let i = if !abs {
            i
        } else if i.low <= 0.0 && i.high >= 0.0 {
            Interval::new(0.0, i.low.abs().max(i.high.abs()))
        } else {
            Interval::new(i.low.abs().min(i.high.abs()), i.low.abs().max(i.high.abs()))
        };
        use_small_sample(&mut e, reason, pairs, n1.min(n2), i);
        e.ci_method =
            format!("MOVER difference of {EFFECTIVE_METHOD} intervals, in place of the {method}");
    }
    e
}

/// An estimate with the bootstrap interval of `out` as it is.
fn plain_boot_estimate(out: &Outcome, n: u64, method: &str) -> Estimate {
    if !out.estimate.is_finite() {
        let mut e = Estimate::empty(method);
        e.n = n;
        return e;
    }
    Estimate {
        estimate: Some(out.estimate),
        ci_low: out.interval.map(|i| i.low),
        ci_high: out.interval.map(|i| i.high),
        ci_method: method.into(),
        n,
        ..Estimate::empty(method)
    }
}

fn sign_counts(net_per_pair: &[f64]) -> (u64, u64) {
    let positive = net_per_pair.iter().filter(|v| **v > 0.0).count() as u64;
    let negative = net_per_pair.iter().filter(|v| **v < 0.0).count() as u64;
    (positive, negative)
}

/// Attach the exact sign test (and its mid-p) on per-pair nets.
fn with_sign_test(mut e: Estimate, nets: &[f64], what: &str) -> Estimate {
    if e.estimate.is_some() {
        let (pos, neg) = sign_counts(nets);
        e.p_value = Some(stats::sign_test(pos, neg));
        e.p_mid = Some(stats::mcnemar_mid_p(pos, neg));
        e.test = Some(format!("exact sign test on per-pair {what}"));
    }
    e
}

/// Per-pair (sum, count) columns of a mean, registered as a ratio statistic.
struct MeanCols {
    sums: Vec<f64>,
    counts: Vec<f64>,
}

impl MeanCols {
    fn new(n: usize) -> MeanCols {
        MeanCols {
            sums: vec![0.0; n],
            counts: vec![0.0; n],
        }
    }

    fn add(&mut self, i: usize, v: f64) {
        self.sums[i] += v;
        self.counts[i] += 1.0;
    }

    fn total_count(&self) -> f64 {
        self.counts.iter().sum()
    }

    /// Pairs with at least one value.
    fn pairs(&self) -> u64 {
        self.counts.iter().filter(|&&c| c > 0.0).count() as u64
    }

    fn register(self, boot: &mut Boot) -> (Col, Col, Vec<f64>) {
        let nets = self.sums.clone();
        let s = boot.column(self.sums);
        let c = boot.column(self.counts);
        (s, c, nets)
    }
}

/// Tie detection before the bootstrap.
struct TieDraft {
    stat: Stat,
    n: u64,
    nets: Vec<f64>,
    pairs_valid: u64,
    counts: [u64; 5],
    soft: Option<(Stat, Scale, Vec<f64>)>,
}

/// One artifact before the bootstrap.
struct ArtifactDraft {
    artifact: String,
    tie: TieDraft,
    wr: Stat,
    wr_n: u64,
    wr_pairs: u64,
    wr_nets: Vec<f64>,
    wr_invalid: u64,
    wr_failed: u64,
    flips: FlipCounts,
    table: [[u64; 3]; 3],
    excess: Stat,
    /// The flip-rate part of the excess and its scale.
    flip_part: (Stat, Scale),
    soft_shift: Option<(Stat, Scale, Vec<f64>)>,
}

impl ArtifactDraft {
    /// Whether the judge returned any verdict for this artifact (false outside its scope, where
    /// nothing was planned, and when every call failed: no p-value enters the family then).
    fn has_calls(&self) -> bool {
        let f = &self.flips;
        self.tie.n > 0
            || self.wr_n > 0
            || self.wr_invalid > 0
            || f.toward + f.away + f.same + f.invalid > 0
    }
}

#[derive(Default)]
struct FlipCounts {
    toward: u64,
    away: u64,
    same: u64,
    invalid: u64,
    failed: u64,
}

impl FlipCounts {
    /// Tally one before/after comparison (failed first, then invalid, as in the report).
    fn add(&mut self, before: Obs, after: Obs, table: &mut [[u64; 3]; 3]) -> Option<bool> {
        match (before, after) {
            (Obs::Failed | Obs::NotPlanned, _) | (_, Obs::Failed | Obs::NotPlanned) => {
                self.failed += 1;
                None
            }
            (Obs::Invalid, _) | (_, Obs::Invalid) => {
                self.invalid += 1;
                None
            }
            (Obs::Val(x), Obs::Val(y)) => {
                table[outcome_index(x)][outcome_index(y)] += 1;
                if y > x {
                    self.toward += 1;
                } else if y < x {
                    self.away += 1;
                } else {
                    self.same += 1;
                }
                Some(x != y)
            }
        }
    }

    fn n(&self) -> u64 {
        self.toward + self.away + self.same
    }
}

/// The two repeats' net preferences behind MSC = |wr − wr′|, each with its scale.
type MscParts = [(Stat, Scale); 2];

/// Baseline before the bootstrap.
struct BaselineDraft {
    consistency: PositionConsistency,
    noise_flips: u64,
    noise_n: u64,
    noise_cols: (Col, Col),
    /// The noise flip rate as a bootstrapped ratio (the second part of every excess flip rate).
    noise_part: (Stat, Scale),
    correct: u64,
    gold_n: u64,
    invalid: u64,
    msc: Option<(Stat, u64, MscParts)>,
    ha: (Stat, u64, u64),
    kappa: Stat,
    scott: Stat,
    kappa_n: u64,
    kappa_pairs: u64,
}

impl Ctx<'_> {
    /// Context for `pairs` under `layout`.
    pub(crate) fn new<'a>(
        layout: &'a Layout,
        pairs: &'a [Pair],
        options: &'a AnalysisOptions,
    ) -> Ctx<'a> {
        let name = |p: &Pair| p.category.clone().unwrap_or_else(|| "(none)".into());
        let mut categories: Vec<String> = pairs.iter().map(name).collect();
        categories.sort();
        categories.dedup();
        let category_of = pairs
            .iter()
            .map(|p| categories.binary_search(&name(p)).expect("listed"))
            .collect();
        Ctx {
            layout,
            pairs,
            options,
            position: layout.artifact_index("position"),
            len_diff: pairs
                .iter()
                .map(|p| p.response_a.chars().count() as f64 - p.response_b.chars().count() as f64)
                .collect(),
            categories,
            category_of,
            excluded: Vec::new(),
        }
    }

    /// True when (artifact `a`, pair `i`, `side`) is excluded from the estimates.
    fn is_excluded(&self, a: usize, i: usize, side: Side) -> bool {
        let k = (a * self.pairs.len() + i) * 2 + usize::from(side == Side::B);
        self.excluded.get(k).copied().unwrap_or(false)
    }

    fn n(&self) -> usize {
        self.pairs.len()
    }

    /// Every metric of one judge or jury. `family_size` is the size of the confirmatory family
    /// it will be tested in (for the family-wise minimum detectable effect).
    pub(crate) fn analyze(&self, subject: Subject<'_>, family_size: u64) -> JudgeResult {
        let v = subject.verdicts;
        let options = self.options;
        let mut boot = Boot::new(self.n());
        let base = self.baseline_draft(v, &mut boot);
        let drafts: Vec<ArtifactDraft> = (0..self.layout.artifacts.len())
            .map(|a| self.artifact_draft(v, a, base.noise_cols, &mut boot))
            .collect();
        let config = BootstrapConfig {
            resamples: options.bootstrap_resamples,
            seed: mix_seed(options.seed, &[&subject.name]),
            confidence: options.confidence,
            method: options.bootstrap_method,
        };
        let results = boot.run(&config);
        // With one family per judge, the family is this judge's own tests: artifacts outside a
        // scoped judge's `audit_artifacts` have no calls and no p-values, so they are not in it.
        let family_size = match options.multiplicity {
            super::Multiplicity::Judge => {
                let in_scope = drafts.iter().filter(|d| d.has_calls()).count();
                super::Multiplicity::Judge.grid_family_size(1, in_scope.max(1))
            }
            super::Multiplicity::Run => family_size,
        };
        let noise_rate = (base.noise_n > 0).then(|| base.noise_flips as f64 / base.noise_n as f64);
        let noise_part = base.noise_part;
        let baseline = self.finish_baseline(base, &results);
        let artifacts = drafts
            .into_iter()
            .map(|d| {
                let mut r = self.finish_artifact(d, &results, noise_rate, noise_part, family_size);
                if let Some(planted) = subject.planted {
                    let value = planted.get(&r.artifact).copied().unwrap_or(0.0);
                    r.planted = Some(Planted {
                        value,
                        recovered: r.tie_detection.score.covers(value),
                    });
                }
                r
            })
            .collect();
        let c = &v.counts;
        JudgeResult {
            name: subject.name,
            simulated: subject.simulated,
            calls: CallCounts {
                planned: c.planned,
                completed: c.completed,
                // Missing records (a stopped or unfinished run) count as failed calls.
                failed: c.planned.saturating_sub(c.completed),
                invalid: c.invalid,
                input_tokens: c.input_tokens,
                output_tokens: c.output_tokens,
            },
            faults: subject.faults,
            stopped: subject.stopped,
            baseline,
            artifacts,
            categories: self.categories(v),
            trust: TrustVerdict {
                verdict: Trust::Adopt,
                reasons: Vec::new(),
                passed: Vec::new(),
                notes: Vec::new(),
            },
            findings: Vec::new(),
            kind: subject.kind,
            members: subject.members,
            rule: subject.rule,
            length: self.length(v),
            soft: self.soft_summary(v),
            small_audit: None,
        }
    }

    fn baseline_draft(&self, v: &Verdicts, boot: &mut Boot) -> BaselineDraft {
        let (l, n, r) = (self.layout, self.n(), self.layout.repeats);
        let mut consistency = PositionConsistency {
            n: 0,
            consistent: 0,
            prefers_first: 0,
            prefers_second: 0,
            other: 0,
            error: 0,
            rate: Estimate::empty("wilson"),
            shares: ConsistencyShares::default(),
        };
        let (mut noise_flips, mut noise_n) = (0u64, 0u64);
        let mut noise_pair = (vec![0.0; n], vec![0.0; n]);
        let (mut correct, mut gold_n, mut invalid) = (0u64, 0u64, 0u64);
        let mut repeat_wr = [MeanCols::new(n), MeanCols::new(n)];
        let mut ha = MeanCols::new(n);
        // κ table per pair: agreements, n, judge label counts (3), gold label counts (3).
        let mut kappa: [Vec<f64>; 8] = std::array::from_fn(|_| vec![0.0; n]);
        for (i, pair) in self.pairs.iter().enumerate() {
            let ab = v.code(l, i, l.baseline(Order::Ab, 0));
            let ba = v.code(l, i, l.baseline(Order::Ba, 0));
            match (obs(ab, true), obs(ba, false)) {
                (Obs::Val(x), Obs::Val(y)) => {
                    consistency.n += 1;
                    if x == y {
                        consistency.consistent += 1;
                    } else if x == 1 && y == -1 {
                        consistency.prefers_first += 1;
                    } else if x == -1 && y == 1 {
                        consistency.prefers_second += 1;
                    } else {
                        consistency.other += 1;
                    }
                }
                // A pair outside this judge's scope (`audit_max_pairs`) is not part of its audit.
                (Obs::NotPlanned, _) | (_, Obs::NotPlanned) => {}
                _ => consistency.error += 1,
            }
            for order in Order::BOTH {
                let a_first = order == Order::Ab;
                for repeat in 0..r {
                    let code = v.code(l, i, l.baseline(order, repeat));
                    if code == INVALID {
                        invalid += 1;
                    }
                    let Obs::Val(score) = obs(code, a_first) else {
                        continue;
                    };
                    if let Some(cols) = repeat_wr.get_mut(repeat) {
                        cols.add(i, f64::from(score));
                    }
                    if let Some(gold) = pair.preferred {
                        let (label, g) = (identity_label(score), gold_label(gold));
                        if gold != Preference::Tie {
                            gold_n += 1;
                            correct += u64::from(label == g);
                        }
                        kappa[0][i] += f64::from(u8::from(label == g));
                        kappa[1][i] += 1.0;
                        kappa[2 + label][i] += 1.0;
                        kappa[5 + g][i] += 1.0;
                        if repeat == 0 {
                            ha.add(i, f64::from(u8::from(label == g)));
                        }
                    }
                }
                if r >= 2 {
                    let (x, y) = (
                        v.code(l, i, l.baseline(order, 0)),
                        v.code(l, i, l.baseline(order, 1)),
                    );
                    if x >= FIRST && y >= FIRST {
                        noise_n += 1;
                        noise_flips += u64::from(x != y);
                        noise_pair.0[i] += f64::from(u8::from(x != y));
                        noise_pair.1[i] += 1.0;
                    }
                }
            }
        }
        let noise_pairs = noise_pair.1.iter().filter(|&&c| c > 0.0).count() as u64;
        let noise_cols = (boot.column(noise_pair.0), boot.column(noise_pair.1));
        let noise_part = (
            boot.ratio(noise_cols.0, noise_cols.1),
            Scale::unit(noise_pairs, noise_n),
        );
        let msc = (r >= 2).then(|| {
            let [r0, r1] = repeat_wr;
            let n_calls = (r0.total_count() + r1.total_count()) as u64;
            let scales = [
                Scale::signed(r0.pairs(), r0.total_count() as u64),
                Scale::signed(r1.pairs(), r1.total_count() as u64),
            ];
            let (s0, c0, _) = r0.register(boot);
            let (s1, c1, _) = r1.register(boot);
            let stat = boot
                .stat(move |t| (ratio(t.get(s0), t.get(c0)) - ratio(t.get(s1), t.get(c1))).abs());
            let parts = [
                (boot.ratio(s0, c0), scales[0]),
                (boot.ratio(s1, c1), scales[1]),
            ];
            (stat, n_calls, parts)
        });
        let ha_n = ha.total_count() as u64;
        let ha_pairs = ha.pairs();
        let (hs, hc, _) = ha.register(boot);
        let ha_stat = boot.ratio(hs, hc);
        let kappa_n = kappa[1].iter().sum::<f64>() as u64;
        let kappa_pairs = kappa[1].iter().filter(|&&c| c > 0.0).count() as u64;
        let cols: Vec<Col> = kappa.into_iter().map(|c| boot.column(c)).collect();
        let cols: [Col; 8] = cols.try_into().expect("8 columns");
        let kappa_stat = boot.stat(move |t| {
            let (agree, total) = (t.get(cols[0]), t.get(cols[1]));
            let chance: f64 = (0..3)
                .map(|k| t.get(cols[2 + k]) * t.get(cols[5 + k]))
                .sum();
            let den = total * total - chance;
            if den > 0.0 {
                (total * agree - chance) / den
            } else {
                f64::NAN
            }
        });
        let scott_stat = boot.stat(move |t| {
            let (agree, total) = (t.get(cols[0]), t.get(cols[1]));
            let pooled: f64 = (0..3)
                .map(|k| (t.get(cols[2 + k]) + t.get(cols[5 + k])).powi(2))
                .sum();
            let den = 4.0 * total * total - pooled;
            if den > 0.0 {
                (4.0 * total * agree - pooled) / den
            } else {
                f64::NAN
            }
        });
        BaselineDraft {
            consistency,
            noise_flips,
            noise_n,
            noise_cols,
            noise_part,
            correct,
            gold_n,
            invalid,
            msc,
            ha: (ha_stat, ha_n, ha_pairs),
            kappa: kappa_stat,
            scott: scott_stat,
            kappa_n,
            kappa_pairs,
        }
    }

    fn finish_baseline(&self, d: BaselineDraft, results: &Results) -> BaselineResult {
        let conf = self.options.confidence;
        let method = boot_method(self.options, false);
        let mut consistency = d.consistency;
        consistency.rate = rate_estimate(consistency.consistent, consistency.n, conf);
        let all = (consistency.n + consistency.error) as f64;
        if all > 0.0 {
            consistency.shares = ConsistencyShares {
                consistent: consistency.consistent as f64 / all,
                prefers_first: consistency.prefers_first as f64 / all,
                prefers_second: consistency.prefers_second as f64 / all,
                other: consistency.other as f64 / all,
                error: consistency.error as f64 / all,
            };
        }
        let noise = rate_estimate(d.noise_flips, d.noise_n, conf);
        let ssc = noise.estimate.map(|f| 1.0 - f);
        let msc = match d.msc {
            Some((stat, n, parts)) => {
                let mut e = boot_difference(results, stat, parts, true, n, &method, conf);
                e.ci_method = format!("{}, of |wr − wr′|", e.ci_method);
                e
            }
            None => Estimate::empty("requires repeats >= 2"),
        };
        BaselineResult {
            position_consistency: consistency,
            noise_flip_rate: noise,
            gold_accuracy: rate_estimate(d.correct, d.gold_n, conf),
            invalid: d.invalid,
            self_consistency: SelfConsistency {
                ssc,
                consistency_rate: ssc,
                msc,
            },
            gold_agreement: boot_estimate(
                results,
                d.ha.0,
                d.ha.1,
                &method,
                Scale::unit(d.ha.2, d.ha.1),
                conf,
            ),
            gold_kappa: boot_estimate(
                results,
                d.kappa,
                d.kappa_n,
                &method,
                Scale::signed(d.kappa_pairs, d.kappa_n),
                conf,
            ),
            gold_scott_pi: boot_estimate(
                results,
                d.scott,
                d.kappa_n,
                &method,
                Scale::signed(d.kappa_pairs, d.kappa_n),
                conf,
            ),
        }
    }

    fn tie_draft(&self, v: &Verdicts, a: usize, boot: &mut Boot) -> TieDraft {
        let (l, n) = (self.layout, self.n());
        let is_position = self.position == Some(a);
        let mut t = MeanCols::new(n);
        let mut soft = MeanCols::new(n);
        let mut counts = [0u64; 5];
        for i in 0..n {
            for side in SIDES {
                if self.is_excluded(a, i, side) {
                    continue;
                }
                for order in Order::BOTH {
                    for repeat in 0..l.repeats {
                        let slot = l.tie(a, side, order, repeat);
                        let code = v.code(l, i, slot);
                        if code == NOT_PLANNED {
                            continue;
                        }
                        let artifact_first = is_position || order == Order::Ab;
                        match obs(code, artifact_first) {
                            Obs::Val(x) => {
                                t.add(i, f64::from(x));
                                counts[outcome_index(x)] += 1;
                                if let Some(p) = v.probs(l, i, slot) {
                                    soft.add(
                                        i,
                                        p_win(p, artifact_first) - p_win(p, !artifact_first),
                                    );
                                }
                            }
                            Obs::Invalid => counts[3] += 1,
                            _ => counts[4] += 1,
                        }
                    }
                }
            }
        }
        let n_obs = t.total_count() as u64;
        let pairs_valid = t.counts.iter().filter(|&&c| c > 0.0).count() as u64;
        let soft = (soft.total_count() > 0.0).then(|| {
            let scale = Scale::signed(soft.pairs(), soft.total_count() as u64);
            let (s, c, nets) = soft.register(boot);
            (boot.ratio(s, c), scale, nets)
        });
        let (s, c, nets) = t.register(boot);
        TieDraft {
            stat: boot.ratio(s, c),
            n: n_obs,
            nets,
            pairs_valid,
            counts,
            soft,
        }
    }

    fn artifact_draft(
        &self,
        v: &Verdicts,
        a: usize,
        noise: (Col, Col),
        boot: &mut Boot,
    ) -> ArtifactDraft {
        let (l, n) = (self.layout, self.n());
        let tie = self.tie_draft(v, a, boot);
        let is_position = self.position == Some(a);
        let mut side_wr = [MeanCols::new(n), MeanCols::new(n)];
        let mut flips = FlipCounts::default();
        let mut table = [[0u64; 3]; 3];
        let mut pair_flips = MeanCols::new(n);
        let mut soft = MeanCols::new(n);
        let (mut wr_invalid, mut wr_failed) = (0u64, 0u64);
        for i in 0..n {
            if is_position {
                // WR from the baseline: the first slot's score in ab (answer a) and in ba (b).
                for repeat in 0..l.repeats {
                    for (s, order) in Order::BOTH.into_iter().enumerate() {
                        match obs(v.code(l, i, l.baseline(order, repeat)), true) {
                            Obs::Val(x) => side_wr[s].add(i, f64::from(x)),
                            Obs::Invalid => wr_invalid += 1,
                            _ => wr_failed += 1,
                        }
                    }
                }
                // Conflict: answer a moved from the second slot (ba) to the first (ab); an
                // increase of its score is a move toward the first slot.
                let (ab_slot, ba_slot) = (l.baseline(Order::Ab, 0), l.baseline(Order::Ba, 0));
                let after = obs(v.code(l, i, ab_slot), true);
                let before = obs(v.code(l, i, ba_slot), false);
                if let Some(flipped) = flips.add(before, after, &mut table) {
                    pair_flips.add(i, f64::from(u8::from(flipped)));
                }
                if let (Some(pb), Some(pa)) = (v.probs(l, i, ba_slot), v.probs(l, i, ab_slot)) {
                    soft.add(i, p_win(pa, true) - p_win(pb, false));
                }
                continue;
            }
            for (s, side) in SIDES.into_iter().enumerate() {
                if self.is_excluded(a, i, side) {
                    continue;
                }
                for order in Order::BOTH {
                    let side_first = (order == Order::Ab) == (side == Side::A);
                    let shift_slot = l.shift(a, side, order);
                    let base_slot = l.baseline(order, 0);
                    let after = obs(v.code(l, i, shift_slot), side_first);
                    let before = obs(v.code(l, i, base_slot), side_first);
                    match after {
                        Obs::Val(x) => side_wr[s].add(i, f64::from(x)),
                        Obs::Invalid => wr_invalid += 1,
                        _ => wr_failed += 1,
                    }
                    if let Some(flipped) = flips.add(before, after, &mut table) {
                        pair_flips.add(i, f64::from(u8::from(flipped)));
                    }
                    if let (Some(pb), Some(pa)) =
                        (v.probs(l, i, base_slot), v.probs(l, i, shift_slot))
                    {
                        soft.add(i, p_win(pa, side_first) - p_win(pb, side_first));
                    }
                }
            }
        }
        let [wa, wb] = side_wr;
        let wr_n = (wa.total_count() + wb.total_count()) as u64;
        let wr_pairs = (0..n)
            .filter(|&i| wa.counts[i] + wb.counts[i] > 0.0)
            .count() as u64;
        let wr_nets: Vec<f64> = (0..n).map(|i| wa.sums[i] + wb.sums[i]).collect();
        let (sa, ca, _) = wa.register(boot);
        let (sb, cb, _) = wb.register(boot);
        let wr = boot.stat(move |t| {
            let (x, y) = (ratio(t.get(sa), t.get(ca)), ratio(t.get(sb), t.get(cb)));
            0.5 * (x + y)
        });
        let flip_scale = Scale::unit(pair_flips.pairs(), pair_flips.total_count() as u64);
        let (fs, fc, _) = pair_flips.register(boot);
        let excess = boot.ratio_diff(fs, fc, noise.0, noise.1);
        let flip_part = (boot.ratio(fs, fc), flip_scale);
        let soft_shift = (soft.total_count() > 0.0).then(|| {
            let scale = Scale::signed(soft.pairs(), soft.total_count() as u64);
            let (s, c, nets) = soft.register(boot);
            (boot.ratio(s, c), scale, nets)
        });
        ArtifactDraft {
            artifact: l.artifacts[a].clone(),
            tie,
            wr,
            wr_n,
            wr_pairs,
            wr_nets,
            wr_invalid,
            wr_failed,
            flips,
            table,
            excess,
            flip_part,
            soft_shift,
        }
    }

    fn finish_artifact(
        &self,
        d: ArtifactDraft,
        results: &Results,
        noise_rate: Option<f64>,
        noise_part: (Stat, Scale),
        family_size: u64,
    ) -> ArtifactResult {
        let options = self.options;
        let conf = options.confidence;
        let method = boot_method(options, false);
        let tie = d.tie;
        let score = with_sign_test(
            boot_estimate(
                results,
                tie.stat,
                tie.n,
                &method,
                Scale::signed(tie.pairs_valid, tie.n),
                conf,
            ),
            &tie.nets,
            "net preference",
        );
        let score = if tie.n == 0 {
            Estimate::empty(&method)
        } else {
            score
        };
        let soft = tie.soft.map(|(s, scale, nets)| {
            with_sign_test(
                boot_estimate(results, s, scale.max_n as u64, &method, scale, conf),
                &nets,
                "mean of P(artifact copy wins) − P(original wins)",
            )
        });
        let tie_detection = TieDetection {
            score,
            prefers_artifact: tie.counts[0],
            prefers_original: tie.counts[2],
            ties: tie.counts[1],
            invalid: tie.counts[3],
            failed: tie.counts[4],
            soft,
        };
        let shift = with_sign_test(
            boot_estimate(
                results,
                d.wr,
                d.wr_n,
                &method,
                Scale::signed(d.wr_pairs, d.wr_n),
                conf,
            ),
            &d.wr_nets,
            "net shift",
        );
        let winrate_shift = WinrateShift {
            shift,
            pairs: d.wr_pairs,
            invalid: d.wr_invalid,
            failed: d.wr_failed,
        };
        let f = &d.flips;
        let mut rate = rate_estimate(f.toward + f.away, f.n(), options.confidence);
        if f.n() > 0 {
            rate.p_value = Some(stats::mcnemar_exact(f.toward, f.away));
            rate.p_mid = Some(stats::mcnemar_mid_p(f.toward, f.away));
            rate.test = Some("exact McNemar on flips toward vs away".into());
        }
        let flip_rate = FlipRate {
            rate,
            toward: f.toward,
            away: f.away,
            invalid_comparisons: f.invalid,
            failed_comparisons: f.failed,
        };
        let mut excess_flip_rate = boot_difference(
            results,
            d.excess,
            [d.flip_part, noise_part],
            false,
            f.n(),
            &boot_method(options, true),
            conf,
        );
        if excess_flip_rate.estimate.is_none() {
            excess_flip_rate = Estimate::empty(&boot_method(options, true));
        }
        let stuart_maxwell = (f.n() > 0).then(|| {
            let sm = stats::stuart_maxwell(&d.table).expect("a 3 x 3 table is square");
            StuartMaxwellResult {
                table: d.table,
                statistic: sm.statistic,
                df: sm.df as u64,
                p_value: sm.p_value,
                p_adjusted: None,
                p_family: None,
                q_value: None,
                q_family: None,
            }
        });
        let soft_shift = d.soft_shift.map(|(s, scale, nets)| {
            with_sign_test(
                boot_estimate(results, s, scale.max_n as u64, &method, scale, conf),
                &nets,
                "mean change in P(perturbed answer wins)",
            )
        });
        let family = family_size.max(1);
        let mde = Mde {
            t: power::mde_t(tie.pairs_valid, ALPHA, options.power),
            t_family: power::mde_t(tie.pairs_valid, ALPHA / family as f64, options.power),
            excess_flip: power::mde_excess_flip(
                f.n(),
                noise_rate.unwrap_or(0.0),
                ALPHA,
                options.power,
            ),
            pairs: tie.pairs_valid,
            comparisons: f.n(),
            alpha: ALPHA,
            family_size: family,
            power: options.power,
        };
        ArtifactResult {
            artifact: d.artifact,
            robustness_rate: flip_rate.rate.estimate.map(|x| 1.0 - x),
            tie_detection,
            winrate_shift,
            flip_rate,
            excess_flip_rate,
            significant: false,
            planted: None,
            screening_significant: false,
            stuart_maxwell,
            soft_shift,
            mde,
            perturbation: None,
            interaction: None,
            attack_success_rate: None,
        }
    }

    fn categories(&self, v: &Verdicts) -> Vec<CategoryResult> {
        #[derive(Default)]
        struct Tally {
            pairs: u64,
            correct: u64,
            gold_n: u64,
            flips: FlipCounts,
            agree: u64,
            agree_n: u64,
        }
        let l = self.layout;
        let mut tallies: Vec<Tally> = self.categories.iter().map(|_| Tally::default()).collect();
        let mut table = [[0u64; 3]; 3];
        for (i, pair) in self.pairs.iter().enumerate() {
            let tally = &mut tallies[self.category_of[i]];
            if v.code(l, i, l.baseline(Order::Ab, 0)) == NOT_PLANNED {
                // Outside this judge's scope: the category counts only the pairs it judged.
                continue;
            }
            tally.pairs += 1;
            for order in Order::BOTH {
                let a_first = order == Order::Ab;
                if let Some(gold) = pair.preferred {
                    for repeat in 0..l.repeats {
                        if let Obs::Val(score) =
                            obs(v.code(l, i, l.baseline(order, repeat)), a_first)
                        {
                            let label = identity_label(score);
                            if gold != Preference::Tie {
                                tally.gold_n += 1;
                                tally.correct += u64::from(label == gold_label(gold));
                            }
                            if repeat == 0 {
                                tally.agree_n += 1;
                                tally.agree += u64::from(label == gold_label(gold));
                            }
                        }
                    }
                }
                let base = v.code(l, i, l.baseline(order, 0));
                for a in (0..l.artifacts.len()).filter(|&a| Some(a) != self.position) {
                    for side in SIDES {
                        if self.is_excluded(a, i, side) {
                            continue;
                        }
                        let side_first = (order == Order::Ab) == (side == Side::A);
                        let after = v.code(l, i, l.shift(a, side, order));
                        // Only comparisons with two verdicts enter the pooled rate.
                        if base >= FIRST && after >= FIRST {
                            tally.flips.add(
                                obs(base, side_first),
                                obs(after, side_first),
                                &mut table,
                            );
                        }
                    }
                }
            }
        }
        let conf = self.options.confidence;
        self.categories
            .iter()
            .zip(tallies)
            .map(|(category, t)| {
                let mut flip_rate = rate_estimate(t.flips.toward + t.flips.away, t.flips.n(), conf);
                if t.flips.n() > 0 {
                    flip_rate.p_value = Some(stats::mcnemar_exact(t.flips.toward, t.flips.away));
                    flip_rate.p_mid = Some(stats::mcnemar_mid_p(t.flips.toward, t.flips.away));
                    flip_rate.test = Some(
                        "exact McNemar on flips toward vs away, pooled over text artifacts".into(),
                    );
                }
                CategoryResult {
                    category: category.clone(),
                    pairs: t.pairs,
                    gold_accuracy: rate_estimate(t.correct, t.gold_n, conf),
                    flip_rate,
                    flip_toward: t.flips.toward,
                    flip_away: t.flips.away,
                    gold_agreement: rate_estimate(t.agree, t.agree_n, conf),
                }
            })
            .collect()
    }

    /// Length sensitivity of the baseline verdicts (one soft label per pair: the mean over its
    /// valid baseline calls of 1 / ½ / 0 for a wins / tie / b wins).
    fn length(&self, v: &Verdicts) -> Option<LengthSensitivity> {
        let l = self.layout;
        let (mut pref, mut diff) = (Vec::new(), Vec::new());
        for i in 0..self.n() {
            let (mut s, mut c) = (0.0, 0.0);
            for order in Order::BOTH {
                for repeat in 0..l.repeats {
                    if let Obs::Val(x) =
                        obs(v.code(l, i, l.baseline(order, repeat)), order == Order::Ab)
                    {
                        s += (f64::from(x) + 1.0) / 2.0;
                        c += 1.0;
                    }
                }
            }
            if c > 0.0 {
                pref.push(s / c);
                diff.push(self.len_diff[i]);
            }
        }
        if pref.is_empty() {
            return None;
        }
        let fit = stats::length_controlled_preference(&pref, &diff).ok()?;
        let mut slope = Estimate::empty("wald");
        slope.n = pref.len() as u64;
        if fit.slope.is_finite() && fit.slope_se.is_finite() {
            let z = stats::normal_quantile(1.0 - (1.0 - self.options.confidence) / 2.0);
            slope.estimate = Some(fit.slope);
            slope.ci_low = Some(fit.slope - z * fit.slope_se);
            slope.ci_high = Some(fit.slope + z * fit.slope_se);
            slope.p_value = Some(fit.p_value);
            slope.test = Some("Wald z test of the length slope (logistic regression)".into());
        }
        Some(LengthSensitivity {
            pairs: pref.len() as u64,
            raw_preference: fit.raw,
            controlled_preference: fit.controlled,
            slope,
            converged: fit.converged,
        })
    }

    fn soft_summary(&self, v: &Verdicts) -> Option<SoftSummary> {
        v.probs.as_ref()?;
        let l = self.layout;
        let (mut sums, mut n) = ([0.0f64; 3], 0u64);
        for i in 0..self.n() {
            for order in Order::BOTH {
                for repeat in 0..l.repeats {
                    if let Some(p) = v.probs(l, i, l.baseline(order, repeat)) {
                        let a_first = order == Order::Ab;
                        sums[0] += p_win(p, a_first);
                        sums[1] += p_win(p, !a_first);
                        sums[2] += p[2];
                        n += 1;
                    }
                }
            }
        }
        (n > 0).then(|| SoftSummary {
            calls: n,
            mean_p_a: sums[0] / n as f64,
            mean_p_b: sums[1] / n as f64,
            mean_p_tie: sums[2] / n as f64,
        })
    }
}
