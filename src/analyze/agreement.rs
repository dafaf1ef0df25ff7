//! Agreement between judges on the baseline verdicts, in answer-identity terms (a wins / b wins /
//! tie): Cohen's κ and Scott's π for every pair of judges, Fleiss' κ and Krippendorff's α
//! (nominal; unparseable and failed verdicts are missing values) for the jury members. Every
//! coefficient is a function of per-pair count totals, so all of them are bootstrapped in one
//! clustered pass (resampling pairs, seeded by the run's seed).
//!
//! Units: every baseline call slot (pair × order × repeat) is one item; judges are raters.

use super::boot::{Boot, Col, Results, Stat};
use super::index::{Index, obs};
use super::judge::{Ctx, Scale};
use super::jury::JuryOptions;
use super::{AnalysisOptions, Estimate, mix_seed};
use crate::design::Order;
use crate::stats::{BootstrapConfig, BootstrapMethod};
use serde::{Deserialize, Serialize};

/// Agreement of two judges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairAgreement {
    /// First judge.
    pub judge_a: String,
    /// Second judge.
    pub judge_b: String,
    /// Items both judged validly.
    pub n: u64,
    /// Share of those items with the same label.
    pub percent: Option<f64>,
    /// Cohen's κ (cluster bootstrap interval by pair).
    pub cohen_kappa: Estimate,
    /// Scott's π.
    pub scott_pi: Estimate,
}

/// A multi-rater coefficient.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RaterAgreement {
    /// Raters.
    pub raters: Vec<String>,
    /// Items used (Fleiss: items every rater judged validly; Krippendorff: items with at least
    /// two valid values).
    pub items: u64,
    /// The coefficient with its interval.
    #[serde(flatten)]
    pub value: Estimate,
}

/// Agreement between the judges of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementResult {
    /// What the labels are.
    pub labels: String,
    /// Judges, in plan order.
    pub judges: Vec<String>,
    /// Every pair of judges.
    pub pairwise: Vec<PairAgreement>,
    /// Fleiss' κ of the jury members over items all of them judged validly.
    pub fleiss_kappa: Option<RaterAgreement>,
    /// Krippendorff's α (nominal) of the jury members; missing values allowed.
    pub krippendorff_alpha: Option<RaterAgreement>,
}

/// Identity label of the baseline verdict in `slot` of pair `i` by judge `j`: 0 a, 1 b, 2 tie.
fn label(index: &Index, j: usize, i: usize, order: Order, repeat: usize) -> Option<usize> {
    let l = &index.layout;
    obs(
        index.judges[j].code(l, i, l.baseline(order, repeat)),
        order == Order::Ab,
    )
    .val()
    .map(|s| match s {
        1 => 0,
        -1 => 1,
        _ => 2,
    })
}

fn method_name(options: &AnalysisOptions) -> String {
    let m = match options.bootstrap_method {
        BootstrapMethod::Percentile => "percentile",
        BootstrapMethod::Bca => "BCa",
    };
    format!("cluster bootstrap ({m}, by pair)")
}

/// A coefficient in [−1, 1] over `pairs` pairs and `n` items, with the small-sample interval
/// rule of every bootstrapped statistic (`judge::boot_estimate`).
fn estimate(
    results: &Results,
    s: Stat,
    (n, pairs): (u64, u64),
    method: &str,
    options: &AnalysisOptions,
) -> Estimate {
    super::judge::boot_estimate(
        results,
        s,
        n,
        method,
        Scale::signed(pairs, n),
        options.confidence,
    )
}

/// κ and π from totals of [agree, n, r_a, r_b, r_tie, c_a, c_b, c_tie].
fn kappa_stats(boot: &mut Boot, cols: [Col; 8]) -> (Stat, Stat) {
    let kappa = boot.stat(move |t| {
        let (agree, n) = (t.get(cols[0]), t.get(cols[1]));
        let chance: f64 = (0..3)
            .map(|k| t.get(cols[2 + k]) * t.get(cols[5 + k]))
            .sum();
        let den = n * n - chance;
        if den > 0.0 {
            (n * agree - chance) / den
        } else {
            f64::NAN
        }
    });
    let pi = boot.stat(move |t| {
        let (agree, n) = (t.get(cols[0]), t.get(cols[1]));
        let pooled: f64 = (0..3)
            .map(|k| (t.get(cols[2 + k]) + t.get(cols[5 + k])).powi(2))
            .sum();
        let den = 4.0 * n * n - pooled;
        if den > 0.0 {
            (4.0 * n * agree - pooled) / den
        } else {
            f64::NAN
        }
    });
    (kappa, pi)
}

/// Agreement between the judges of `index` (two or more judges).
pub(crate) fn analyze(
    ctx: &Ctx<'_>,
    index: &Index,
    names: &[String],
    jury: &JuryOptions,
    options: &AnalysisOptions,
) -> Option<AgreementResult> {
    let m = names.len();
    if m < 2 {
        return None;
    }
    let n = ctx.pairs.len();
    let repeats = index.layout.repeats;
    let mut boot = Boot::new(n);

    // Pairwise Cohen / Scott.
    struct PairDraft {
        a: usize,
        b: usize,
        n: u64,
        pairs: u64,
        agree: u64,
        kappa: Stat,
        pi: Stat,
    }
    let mut drafts = Vec::new();
    for a in 0..m {
        for b in a + 1..m {
            // Per pair: [agree, n, judge a / b / tie, other judge a / b / tie].
            let mut rows = vec![[0.0f64; 8]; n];
            let (mut total, mut agree) = (0u64, 0u64);
            for (i, row) in rows.iter_mut().enumerate() {
                for order in Order::BOTH {
                    for r in 0..repeats {
                        if let (Some(x), Some(y)) =
                            (label(index, a, i, order, r), label(index, b, i, order, r))
                        {
                            total += 1;
                            agree += u64::from(x == y);
                            row[0] += f64::from(u8::from(x == y));
                            row[1] += 1.0;
                            row[2 + x] += 1.0;
                            row[5 + y] += 1.0;
                        }
                    }
                }
            }
            let pairs = rows.iter().filter(|r| r[1] > 0.0).count() as u64;
            let ids: Vec<Col> = (0..8)
                .map(|c| boot.column(rows.iter().map(|r| r[c]).collect()))
                .collect();
            let (kappa, pi) = kappa_stats(&mut boot, ids.try_into().expect("8 columns"));
            drafts.push(PairDraft {
                a,
                b,
                n: total,
                pairs,
                agree,
                kappa,
                pi,
            });
        }
    }

    // Jury members for the multi-rater coefficients (all judges when none are configured).
    let mut raters: Vec<usize> = if jury.enabled && !jury.members.is_empty() {
        jury.members
            .iter()
            .filter_map(|name| names.iter().position(|n| n == name))
            .collect()
    } else {
        (0..m).collect()
    };
    raters.sort_unstable();
    raters.dedup();
    let multi = (raters.len() >= 2).then(|| {
        let r = raters.len() as f64;
        // Fleiss: items every rater judged validly.
        let mut fleiss: [Vec<f64>; 5] = std::array::from_fn(|_| vec![0.0; n]);
        // Krippendorff: n_c per category and the coincidence diagonal.
        let mut kripp: [Vec<f64>; 4] = std::array::from_fn(|_| vec![0.0; n]);
        let (mut fleiss_items, mut kripp_items) = (0u64, 0u64);
        let mut kripp_pair = vec![false; n];
        for i in 0..n {
            for order in Order::BOTH {
                for rep in 0..repeats {
                    let mut counts = [0.0f64; 3];
                    let mut valid = 0.0;
                    for &j in &raters {
                        if let Some(k) = label(index, j, i, order, rep) {
                            counts[k] += 1.0;
                            valid += 1.0;
                        }
                    }
                    if valid == r {
                        fleiss_items += 1;
                        fleiss[0][i] += counts.iter().map(|c| c * c).sum::<f64>() - r;
                        fleiss[1][i] += 1.0;
                        for k in 0..3 {
                            fleiss[2 + k][i] += counts[k];
                        }
                    }
                    if valid >= 2.0 {
                        kripp_items += 1;
                        kripp_pair[i] = true;
                        for k in 0..3 {
                            kripp[k][i] += counts[k];
                            kripp[3][i] += counts[k] * (counts[k] - 1.0) / (valid - 1.0);
                        }
                    }
                }
            }
        }
        let fleiss_pairs = fleiss[1].iter().filter(|&&c| c > 0.0).count() as u64;
        let kripp_pairs = kripp_pair.iter().filter(|&&b| b).count() as u64;
        let f: Vec<Col> = fleiss.into_iter().map(|c| boot.column(c)).collect();
        let fleiss_stat = boot.stat(move |t| {
            let items = t.get(f[1]);
            let nm = items * r;
            let tot: [f64; 3] = std::array::from_fn(|k| t.get(f[2 + k]));
            let sum_sq: f64 = tot.iter().map(|x| x * x).sum();
            if items == 0.0 || r < 2.0 || sum_sq == nm * nm {
                return f64::NAN;
            }
            let p_bar = t.get(f[0]) / (items * r * (r - 1.0));
            let p_e: f64 = tot.iter().map(|x| (x / nm).powi(2)).sum();
            (p_bar - p_e) / (1.0 - p_e)
        });
        let c: Vec<Col> = kripp.into_iter().map(|c| boot.column(c)).collect();
        let kripp_stat = boot.stat(move |t| {
            let nc: [f64; 3] = std::array::from_fn(|k| t.get(c[k]));
            let total: f64 = nc.iter().sum();
            let de = total * total - nc.iter().map(|x| x * x).sum::<f64>();
            if nc.iter().filter(|&&x| x > 0.0).count() < 2 || de <= 0.0 {
                return f64::NAN;
            }
            1.0 - (total - 1.0) * (total - t.get(c[3])) / de
        });
        (
            fleiss_stat,
            (fleiss_items, fleiss_pairs),
            kripp_stat,
            (kripp_items, kripp_pairs),
        )
    });

    let config = BootstrapConfig {
        resamples: options.bootstrap_resamples,
        seed: mix_seed(options.seed, &["agreement"]),
        confidence: options.confidence,
        method: options.bootstrap_method,
    };
    let results = boot.run(&config);
    let method = method_name(options);
    let pairwise = drafts
        .into_iter()
        .map(|d| PairAgreement {
            judge_a: names[d.a].clone(),
            judge_b: names[d.b].clone(),
            n: d.n,
            percent: (d.n > 0).then(|| d.agree as f64 / d.n as f64),
            cohen_kappa: estimate(&results, d.kappa, (d.n, d.pairs), &method, options),
            scott_pi: estimate(&results, d.pi, (d.n, d.pairs), &method, options),
        })
        .collect();
    let rater_names: Vec<String> = raters.iter().map(|&j| names[j].clone()).collect();
    let (fleiss_kappa, krippendorff_alpha) = match multi {
        Some((fs, fi, ks, ki)) => (
            Some(RaterAgreement {
                raters: rater_names.clone(),
                items: fi.0,
                value: estimate(&results, fs, fi, &method, options),
            }),
            Some(RaterAgreement {
                raters: rater_names,
                items: ki.0,
                value: estimate(&results, ks, ki, &method, options),
            }),
        ),
        None => (None, None),
    };
    Some(AgreementResult {
        labels: "baseline verdicts in answer-identity terms: a wins / b wins / tie; each baseline call (pair × order × repeat) is one item; unparseable or failed verdicts are missing".into(),
        judges: names.to_vec(),
        pairwise,
        fleiss_kappa,
        krippendorff_alpha,
    })
}
