//! Plain-language findings per judge or jury, strongest first. Every number quoted comes with its
//! interval and, for tests, the adjusted p-value and its family.

use super::multiplicity::short_family;
use super::{Estimate, JudgeKind, JudgeResult, Trust};

fn pct(x: f64) -> String {
    format!("{:+.1}%", 100.0 * x)
}

fn rate(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

/// A signed estimate (T, WR, excess) with its interval.
fn ci(e: &Estimate) -> String {
    ci_with(e, pct)
}

/// A rate (flip rate, consistency, accuracy) with its interval.
fn ci_rate(e: &Estimate) -> String {
    ci_with(e, rate)
}

/// A coefficient (κ, slope) with its interval.
fn ci_plain(e: &Estimate) -> String {
    ci_with(e, |x| format!("{x:.2}"))
}

fn ci_with(e: &Estimate, f: fn(f64) -> String) -> String {
    match (e.estimate, e.ci_low, e.ci_high) {
        (Some(v), Some(l), Some(h)) => {
            format!("{} (95% CI {} to {}, n = {})", f(v), f(l), f(h), e.n)
        }
        (Some(v), _, _) => format!("{} (n = {})", f(v), e.n),
        _ => format!("not estimable (n = {})", e.n),
    }
}

/// The confirmatory family of the judge's artifact tests, in a few words.
fn grid_family(result: &JudgeResult) -> String {
    let family = result
        .artifacts
        .iter()
        .flat_map(|a| {
            [
                &a.tie_detection.score,
                &a.winrate_shift.shift,
                &a.flip_rate.rate,
            ]
        })
        .find_map(|e| e.p_family.as_deref());
    short_family(family)
}

pub(crate) fn findings(result: &JudgeResult) -> Vec<String> {
    let mut lines = Vec::new();
    // No evidence, no findings: "no artifact test was significant" about a judge that never
    // answered would read as robustness.
    if result.trust.verdict == Trust::CouldNotAudit {
        let c = &result.calls;
        let pending = if c.pending > 0 {
            format!(", {} pending: not sent yet", c.pending)
        } else {
            String::new()
        };
        lines.push(format!(
            "Could not audit: {} of {} planned calls got an answer ({} failed or not sent{pending}, {} unparseable); no finding is drawn from this run.",
            c.completed, c.planned, c.failed, c.invalid
        ));
        return lines;
    }
    if result.calls.pending > 0 {
        lines.push(format!(
            "Provisional: {} of {} planned calls are not sent yet; every number below may change when the run is resumed.",
            result.calls.pending, result.calls.planned
        ));
    }
    // Said first and plainly: a judge whose verdict follows the slot rather than the answer is
    // judging the order, whatever else the tests find.
    let pc = &result.baseline.position_consistency;
    if pc.n > 0
        && pc.rate.ci_high.is_some_and(|upper| upper < 0.5)
        && pc.prefers_first + pc.prefers_second > pc.n / 2
    {
        let (slot, count) = if pc.prefers_first >= pc.prefers_second {
            ("first", pc.prefers_first)
        } else {
            ("second", pc.prefers_second)
        };
        lines.push(format!(
            "Heavily position-biased: in {count} of {} pairs the answer shown {slot} won in both orders, so the verdict followed the slot, not the answer (position consistency {}).",
            pc.n,
            ci_rate(&pc.rate)
        ));
    }
    let mut scored: Vec<(f64, String)> = Vec::new();
    for artifact in &result.artifacts {
        let t = &artifact.tie_detection.score;
        if t.significant() {
            let direction = if t.estimate.unwrap_or(0.0) > 0.0 {
                if artifact.artifact == "position" {
                    "prefers the first slot"
                } else {
                    "prefers the answer with the artifact"
                }
            } else if artifact.artifact == "position" {
                "prefers the second slot"
            } else {
                "disfavours the answer with the artifact"
            };
            scored.push((
                t.estimate.unwrap_or(0.0).abs(),
                format!(
                    "{}: {direction} when the two answers are otherwise identical: T = {}, Holm-adjusted p = {:.2e} over {}.",
                    artifact.artifact,
                    ci(t),
                    t.p_adjusted.unwrap_or(1.0),
                    short_family(t.p_family.as_deref())
                ),
            ));
        }
        let wr = &artifact.winrate_shift.shift;
        if wr.significant() {
            scored.push((
                wr.estimate.unwrap_or(0.0).abs(),
                format!(
                    "{}: shifts the net preference between different answers by WR = {}, Holm-adjusted p = {:.2e} over {}.",
                    artifact.artifact,
                    ci(wr),
                    wr.p_adjusted.unwrap_or(1.0),
                    short_family(wr.p_family.as_deref())
                ),
            ));
        }
        let flip = &artifact.flip_rate;
        if flip.rate.significant() {
            scored.push((
                flip.rate.estimate.unwrap_or(0.0),
                format!(
                    "{}: flips {} of verdicts against the baseline ({} toward, {} away; exact McNemar Holm-adjusted p = {:.2e} over {}); excess over run-to-run noise {}.",
                    artifact.artifact,
                    ci_rate(&flip.rate),
                    flip.toward,
                    flip.away,
                    flip.rate.p_adjusted.unwrap_or(1.0),
                    short_family(flip.rate.p_family.as_deref()),
                    ci(&artifact.excess_flip_rate)
                ),
            ));
        }
    }
    scored.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
    let scored_count = scored.len();
    lines.extend(scored.into_iter().map(|(_, line)| line));
    if scored_count == 0 {
        lines.push(
            format!(
                "No artifact test was significant after Holm correction over {} (see the minimum detectable effects at this n before reading that as robustness).",
                grid_family(result)
            ),
        );
    }
    if pc.n > 0 {
        lines.push(format!(
            "Position consistency: {} of {} pairs got the same winner in both orders ({}); {} favoured the first slot, {} the second.",
            pc.consistent,
            pc.n,
            ci_rate(&pc.rate),
            pc.prefers_first,
            pc.prefers_second
        ));
    }
    let noise = &result.baseline.noise_flip_rate;
    if noise.n > 0 {
        let msc = &result.baseline.self_consistency.msc;
        let msc_text = match msc.estimate {
            Some(_) => format!("; model-level change MSC = |wr − wr′| = {}", ci_rate(msc)),
            None => String::new(),
        };
        lines.push(format!(
            "Run-to-run noise: {} of identical baseline calls changed verdict between repeats (SSC = CALM's CR = {}){msc_text}.",
            ci_rate(noise),
            rate(1.0 - noise.estimate.unwrap_or(0.0))
        ));
    }
    let gold = &result.baseline.gold_accuracy;
    if gold.n > 0 {
        let kappa = &result.baseline.gold_kappa;
        let kappa_text = match kappa.estimate {
            Some(_) => format!("; Cohen's κ {}", ci_plain(kappa)),
            None => String::new(),
        };
        lines.push(format!(
            "Agreement with gold labels: {}{kappa_text}.",
            ci_rate(gold)
        ));
    }
    if let Some(length) = &result.length
        && length.slope.significant()
    {
        let slope = length.slope.estimate.unwrap_or(0.0);
        lines.push(format!(
            "Length: {} answers win more often at baseline (logistic slope on tanh of the standardized length difference {}, Holm-adjusted p = {:.2e} over {}); length-controlled preference for answer a {} vs raw {}. Descriptive: longer answers may also be better; the verbosity artifacts are the causal test.",
            if slope > 0.0 { "longer" } else { "shorter" },
            ci_plain(&length.slope),
            length.slope.p_adjusted.unwrap_or(1.0),
                    short_family(length.slope.p_family.as_deref()),
            rate(length.controlled_preference),
            rate(length.raw_preference)
        ));
    }
    if result.kind == JudgeKind::Jury
        && let Some(rule) = &result.rule
    {
        lines.push(format!(
            "Jury of {} ({rule}); its verdicts are computed from the members' verdicts on the same calls.",
            result.members.join(", ")
        ));
    }
    if result.calls.invalid > 0 || result.calls.failed > 0 {
        lines.push(format!(
            "{} of {} calls gave an unparseable verdict and {} failed; they are counted, not coerced.",
            result.calls.invalid, result.calls.planned, result.calls.failed
        ));
    }
    lines
}
