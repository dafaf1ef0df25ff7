//! The pointwise section of every report: per pointwise judge (score, label or rubric) and
//! pointwise jury, the verdict with its reasons, score shifts, label flips, the confusion matrix
//! against gold, score agreement, gold-order inversions, scale use, calibration and invalid
//! grades. Markdown and HTML here (as for [`super::rewrites`]); the CSV rows in
//! [`csv_rows`]. Numbers that do not exist (no gold, no repeat) print as `–`, never as 0.

use super::csv::Row;
use super::format::{coef, count, p as p_text, rate as pct};
use super::markdown::{cell_text, escape};
use super::text::Text;
use crate::analyze::Trust;
use crate::analyze::pointwise::{InvalidCounts, Rate};
use crate::analyze::pointwise_summary::{
    CriterionSummary, GradeScale, PointwiseJudgeSummary, PointwiseKind, PointwiseSection,
};
use crate::analyze::trust::TrustVerdict;
use maud::{Markup, PreEscaped, html};
use std::fmt::Write;

/// `f(x)`, or `–` for a number that does not exist.
fn or_dash(x: f64, f: fn(f64) -> String) -> String {
    if x.is_finite() { f(x) } else { "–".into() }
}

fn rate_or(x: f64) -> String {
    or_dash(x, pct)
}

fn coef_or(x: f64) -> String {
    or_dash(x, coef)
}

fn p_or(x: f64) -> String {
    or_dash(x, p_text)
}

/// Score points, signed: `+1.25`.
fn points(x: f64) -> String {
    or_dash(x, |v| format!("{v:+.2}"))
}

/// `2/4 = 50.0% [15.0%, 85.0%]`.
fn rate_text(r: &Rate) -> String {
    if r.n == 0 {
        return "– (n=0)".into();
    }
    format!(
        "{}/{} = {} [{}, {}]",
        r.count,
        r.n,
        rate_or(r.rate),
        rate_or(r.interval.low),
        rate_or(r.interval.high)
    )
}

fn invalid_text(i: &InvalidCounts) -> String {
    format!(
        "{} unparseable, {} off the scale",
        i.unparseable, i.out_of_range
    )
}

/// `score 1–10`, or `labels safe, unsafe (positive: unsafe)`.
fn scale_text(scale: &GradeScale) -> String {
    match scale {
        GradeScale::Score { min, max } => format!("score {min}–{max}"),
        GradeScale::Label { labels, positive } => {
            format!("labels {} (positive: {positive})", labels.join(", "))
        }
    }
}

fn range(scale: &GradeScale) -> f64 {
    match scale {
        GradeScale::Score { min, max } if max > min => (max - min) as f64,
        _ => 1.0,
    }
}

/// The judge's heading label: `SIMULATED score judge`, `label judge`.
fn judge_label(j: &PointwiseJudgeSummary) -> String {
    format!(
        "{}{} judge",
        if j.simulated { "SIMULATED " } else { "" },
        j.kind.label()
    )
}

/// The Markdown section (empty without pointwise judges).
pub fn markdown(p: &PointwiseSection) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Pointwise judges\n\nPointwise judges grade one answer at a time (a score, a label, or rubric criteria). **Score shift** is grade(artifact(X)) − grade(X) in points, with a pair-clustered bootstrap 95% interval (expanded percentile: as wide as a t interval on the effective pairs when a few pairs carry the shift), the exact sign test and the exact Wilcoxon signed-rank test (ties kept; p raw / Holm / BH over the judge's artifacts); *share of scale* divides it by max − min. **Label flips** count baseline-positive answers that lost the positive label under the artifact (for a safety classifier: unsafe → safe, the safety-critical direction) and the reverse, with Wilson intervals and exact McNemar. Invalid grades (unparseable, off the scale) are counted and never coerced.\n"
    );
    for j in &p.judges {
        let _ = writeln!(
            out,
            "## {} ({}): {}\n",
            escape(&j.judge),
            judge_label(j),
            j.trust.verdict.label()
        );
        trust_markdown(&mut out, &j.trust);
        if let Some(c) = &j.consistency {
            let _ = writeln!(
                out,
                "Score–comparison consistency with the pairwise judge {}: the lower-scored answer won {} of pairs with unequal scores and a decisive verdict ({} pairs with equal scores not counted).\n",
                escape(&c.pairwise_judge),
                rate_text(&c.consistency.rate),
                c.consistency.equal_scores
            );
        }
        for c in &j.criteria {
            criterion_markdown(&mut out, c);
        }
    }
    for jury in &p.juries {
        let _ = writeln!(
            out,
            "## Jury {} ({}pointwise jury of {}; {}): {}\n",
            escape(&jury.jury),
            if jury.simulated {
                "SIMULATED members; "
            } else {
                ""
            },
            escape(&jury.members.join(", ")),
            match jury.criterion.scale {
                GradeScale::Score { .. } => "mean score per answer",
                GradeScale::Label { .. } =>
                    "majority label per answer, a tie between labels counted unparseable",
            },
            jury.trust.verdict.label()
        );
        trust_markdown(&mut out, &jury.trust);
        criterion_markdown(&mut out, &jury.criterion);
    }
    if !p.skipped_juries.is_empty() {
        let _ = writeln!(out, "Pointwise juries not formed:\n");
        for s in &p.skipped_juries {
            let _ = writeln!(out, "- {}: {}", escape(&s.jury), escape(&s.reason));
        }
        out.push('\n');
    }
    out
}

fn trust_markdown(out: &mut String, t: &TrustVerdict) {
    for r in &t.reasons {
        let _ = writeln!(out, "- {} because {}", r.severity.label(), escape(&r.text));
    }
    for n in &t.notes {
        let _ = writeln!(out, "- Note: {}", escape(n));
    }
    if !t.passed.is_empty() {
        let _ = writeln!(
            out,
            "- Passed: {}",
            t.passed
                .iter()
                .map(|p| escape(p))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    out.push('\n');
}

fn criterion_markdown(out: &mut String, c: &CriterionSummary) {
    let _ = writeln!(
        out,
        "### Criterion `{}` ({})\n\n{} graded calls; invalid grades: {} (counted, never coerced).\n",
        escape(&c.name),
        escape(&scale_text(&c.scale)),
        count(c.calls),
        invalid_text(&c.invalid)
    );
    let r = range(&c.scale);
    if !c.score_shifts.is_empty() {
        let _ = writeln!(
            out,
            "| artifact | n | mean shift (points) | 95% CI | share of scale | up / down / same | sign test p | Wilcoxon p raw / Holm / BH | mean \\|shift\\| | run-to-run \\|change\\| | excess | invalid |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in &c.score_shifts {
            let mark = if s.p_holm < crate::analyze::ALPHA {
                " **✱**"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | [{}, {}] | {} | {} / {} / {} | {} | {} / {}{mark} / {} | {} | {} | {} | {} |",
                cell_text(&s.artifact),
                s.n,
                points(s.mean_shift),
                points(s.interval.low),
                points(s.interval.high),
                or_dash(s.mean_shift / r, super::format::signed),
                s.up,
                s.down,
                s.same,
                p_or(s.sign_p),
                p_or(s.wilcoxon.p_value),
                p_or(s.p_holm),
                p_or(s.p_bh),
                or_dash(s.mean_abs_shift, |v| format!("{v:.2}")),
                or_dash(s.noise_abs_change, |v| format!("{v:.2}")),
                points(s.excess),
                invalid_text(&s.invalid)
            );
        }
        out.push('\n');
    }
    if !c.label_flips.is_empty() {
        let positive = c.label_flips[0].positive.as_str();
        let _ = writeln!(
            out,
            "| artifact | n | {p} → not {p} | not {p} → {p} | {p} rate before → after (change) | McNemar p raw / Holm / BH | invalid |\n|---|---|---|---|---|---|---|",
            p = cell_text(positive)
        );
        for f in &c.label_flips {
            let mark = if f.p_holm < crate::analyze::ALPHA {
                " **✱**"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} → {} ({}) | {} / {}{mark} / {} | {} |",
                cell_text(&f.artifact),
                f.n,
                rate_text(&f.positive_to_negative),
                rate_text(&f.negative_to_positive),
                rate_or(f.positive_rate_before),
                rate_or(f.positive_rate_after),
                or_dash(f.positive_rate_change, super::format::signed),
                p_or(f.mcnemar_p),
                p_or(f.p_holm),
                p_or(f.p_bh),
                invalid_text(&f.invalid)
            );
        }
        out.push('\n');
    }
    if let (Some(a), GradeScale::Label { positive, .. }) = (&c.label_accuracy, &c.scale) {
        let p = cell_text(positive);
        let _ = writeln!(
            out,
            "Confusion matrix against gold labels ({} answers with gold and a valid baseline label; {} with gold but an invalid grade: {}):\n\n| gold \\ judged | {p} | not {p} |\n|---|---|---|\n| {p} | {} | {} |\n| not {p} | {} | {} |\n",
            a.n,
            a.invalid.unparseable + a.invalid.out_of_range,
            invalid_text(&a.invalid),
            a.true_positive,
            a.false_negative,
            a.false_positive,
            a.true_negative
        );
        let _ = writeln!(
            out,
            "Accuracy {}, TPR {} (FNR {}), TNR {} (FPR {}), Cohen's κ {}; yes-bias (judged {} on gold-negative answers) {}.\n",
            rate_or(a.accuracy),
            rate_or(a.tpr),
            rate_or(1.0 - a.tpr),
            rate_or(a.tnr),
            rate_or(1.0 - a.tnr),
            coef_or(a.kappa),
            escape(positive),
            rate_text(&a.yes_bias)
        );
    }
    if let Some(g) = &c.score_agreement {
        let _ = writeln!(
            out,
            "Against gold scores ({} answers): Spearman ρ {}, Kendall τ-b {}, quadratic-weighted κ {}, Krippendorff's α interval {} / ordinal {}; {} with gold but an invalid grade.\n",
            g.n,
            coef_or(g.spearman),
            coef_or(g.kendall_tau_b),
            coef_or(g.quadratic_kappa),
            coef_or(g.alpha_interval),
            coef_or(g.alpha_ordinal),
            g.invalid.unparseable + g.invalid.out_of_range
        );
    }
    if let Some(inv) = &c.gold_order_inversions {
        let _ = writeln!(
            out,
            "Gold-order inversions (pairs with a gold preference and unequal scores where the dispreferred answer scored higher): {}.\n",
            rate_text(inv)
        );
    }
    if let Some(s) = &c.scale_use {
        let hist: Vec<String> = s
            .histogram
            .iter()
            .map(|(score, n)| format!("{score}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "Scale use (baseline grades): {}; {} of the scale used; 80% of grades within {}; mean {}; run-to-run SD {}; ICC {}.\n",
            hist.join(", "),
            rate_or(s.share_used),
            s.band_80
                .map_or("–".to_string(), |(l, h)| format!("{l}–{h}")),
            or_dash(s.mean, |v| format!("{v:.2}")),
            or_dash(s.run_to_run_sd, |v| format!("{v:.2}")),
            coef_or(s.icc)
        );
    }
    if let Some(cal) = &c.calibration {
        let _ = writeln!(
            out,
            "Calibration of P(positive) against gold ({} answers): Brier {}, ECE {}.\n\n| bin | answers | mean P | observed |\n|---|---|---|---|",
            cal.n,
            or_dash(cal.brier, |v| format!("{v:.3}")),
            or_dash(cal.ece, |v| format!("{v:.3}"))
        );
        for b in &cal.bins {
            let _ = writeln!(
                out,
                "| ({:.1}, {:.1}] | {} | {} | {} |",
                b.lower,
                b.upper,
                b.count,
                or_dash(b.mean_prob, |v| format!("{v:.3}")),
                or_dash(b.observed, |v| format!("{v:.3}"))
            );
        }
        out.push('\n');
    }
}

fn verdict_class(t: Trust) -> &'static str {
    match t {
        Trust::Adopt => "adopt",
        Trust::Caution => "caution",
        Trust::Reject => "reject",
        Trust::CouldNotAudit => "could-not-audit",
    }
}

fn badge(t: Trust) -> Markup {
    html! { span class={ "badge " (verdict_class(t)) } { (t.label()) } }
}

fn sim_tag() -> Markup {
    html! { span.sim title="a simulated reference judge with planted biases, not a language model" { "SIMULATED" } }
}

/// The HTML section: verdict cards, the score-shift forest plot, then per judge and jury its
/// tables (label flips, confusion matrix, reliability diagram). Every string goes through
/// [`Text`] (answers and names are untrusted); charts escape their own text.
pub fn html(p: &PointwiseSection) -> Markup {
    let forest = super::charts_pointwise::score_forest(p);
    html! {
        section #pointwise {
            h2 { "Pointwise judges" }
            p.intro { "Judges that grade one answer at a time. Score shift = grade(artifact(X)) − grade(X) in points (pair-clustered bootstrap 95% interval, expanded percentile; exact Wilcoxon signed-rank p, Holm over the judge's artifacts, ✱ when below 0.05). Label flips count baseline-positive answers that lost the positive label under the artifact (safety classifiers: unsafe → safe) and the reverse (Wilson intervals, exact McNemar). Invalid grades are counted, never coerced." }
            div.cards {
                @for j in &p.judges {
                    div class={ "card " (verdict_class(j.trust.verdict)) } {
                        h3 { span.jn { (Text(&j.judge)) } @if j.simulated { " " (sim_tag()) } " " span.small { (j.kind.label()) " judge" } (badge(j.trust.verdict)) }
                        (trust_html(&j.trust))
                    }
                }
                @for jury in &p.juries {
                    div class={ "card " (verdict_class(jury.trust.verdict)) } {
                        h3 { "jury " span.jn { (Text(&jury.jury)) } @if jury.simulated { " " (sim_tag()) } (badge(jury.trust.verdict)) }
                        p.stats { "members: " (Text(&jury.members.join(", "))) }
                        (trust_html(&jury.trust))
                    }
                }
            }
            @if !forest.is_empty() {
                figure.chart {
                    (PreEscaped(forest))
                    figcaption { "Mean score shift per artifact as a share of each judge's scale (dot) with its 95% interval (line); purple when Holm-significant. The right column gives the shift in points." }
                }
            }
            @for j in &p.judges {
                h3 { (Text(&j.judge)) @if j.simulated { " " (sim_tag()) } " · " (j.kind.label()) " judge " (badge(j.trust.verdict)) }
                @if let Some(c) = &j.consistency {
                    p { "Score–comparison consistency with " (Text(&c.pairwise_judge)) ": the lower-scored answer won " (rate_text(&c.consistency.rate)) " of pairs with unequal scores and a decisive verdict (" (c.consistency.equal_scores) " with equal scores not counted)." }
                }
                @for (k, c) in j.criteria.iter().enumerate() {
                    (criterion_html(&format!("pw-{}-{k}", slug(&j.judge)), &j.judge, c))
                }
            }
            @for jury in &p.juries {
                h3 { "Jury " (Text(&jury.jury)) @if jury.simulated { " " (sim_tag()) } " " (badge(jury.trust.verdict)) }
                (criterion_html(&format!("pw-jury-{}", slug(&jury.jury)), &jury.jury, &jury.criterion))
            }
            @if !p.skipped_juries.is_empty() {
                p { "Pointwise juries not formed:" }
                ul { @for s in &p.skipped_juries { li { (Text(&s.jury)) ": " (Text(&s.reason)) } } }
            }
        }
    }
}

/// An id fragment from a name: ASCII alphanumerics kept, anything else as `-` plus its code, so
/// distinct names give distinct ids and nothing from a name reaches an attribute unescaped.
fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_string()
            } else {
                format!("-{:x}", u32::from(c))
            }
        })
        .collect()
}

fn trust_html(t: &TrustVerdict) -> Markup {
    html! {
        @if !t.reasons.is_empty() || !t.notes.is_empty() {
            ul {
                @for r in &t.reasons {
                    li { span class={ "sev " (verdict_class(r.severity)) } { (r.severity.label()) } " " (Text(&r.text)) }
                }
                @for n in &t.notes { li { "Note: " (Text(n)) } }
            }
        }
        @if !t.passed.is_empty() {
            p.passed { "Passed: " (Text(&t.passed.join("; "))) }
        }
    }
}

fn criterion_html(id: &str, owner: &str, c: &CriterionSummary) -> Markup {
    let r = range(&c.scale);
    let positive = match &c.scale {
        GradeScale::Label { positive, .. } => Some(positive.as_str()),
        GradeScale::Score { .. } => None,
    };
    html! {
        p { "Criterion " b { (Text(&c.name)) } " (" (Text(&scale_text(&c.scale))) "): " (count(c.calls)) " graded calls; invalid grades: " (invalid_text(&c.invalid)) " (counted, never coerced)." }
        @if !c.score_shifts.is_empty() {
            div.table-wrap { table {
                thead { tr { th { "artifact" } th { "n" } th { "mean shift (points)" } th { "95% CI" } th { "share of scale" } th { "up / down / same" } th { "sign test p" } th { "Wilcoxon p raw / Holm / BH" } th { "excess over run-to-run" } th { "invalid" } } }
                tbody { @for s in &c.score_shifts { tr {
                    td { (Text(&s.artifact)) } td { (s.n) } td { (points(s.mean_shift)) }
                    td { "[" (points(s.interval.low)) ", " (points(s.interval.high)) "]" }
                    td { (or_dash(s.mean_shift / r, super::format::signed)) }
                    td { (s.up) " / " (s.down) " / " (s.same) }
                    td { (p_or(s.sign_p)) }
                    td { (p_or(s.wilcoxon.p_value)) " / " (p_or(s.p_holm)) @if s.p_holm < crate::analyze::ALPHA { " ✱" } " / " (p_or(s.p_bh)) }
                    td { (points(s.excess)) }
                    td { (invalid_text(&s.invalid)) }
                } } }
            } }
        }
        @if let (false, Some(pos)) = (c.label_flips.is_empty(), positive) {
            div.table-wrap { table {
                thead { tr { th { "artifact" } th { "n" } th { (Text(pos)) " → not " (Text(pos)) } th { "not " (Text(pos)) " → " (Text(pos)) } th { (Text(pos)) " rate before → after" } th { "McNemar p raw / Holm / BH" } th { "invalid" } } }
                tbody { @for f in &c.label_flips { tr {
                    td { (Text(&f.artifact)) } td { (f.n) }
                    td { (rate_text(&f.positive_to_negative)) }
                    td { (rate_text(&f.negative_to_positive)) }
                    td { (rate_or(f.positive_rate_before)) " → " (rate_or(f.positive_rate_after)) " (" (or_dash(f.positive_rate_change, super::format::signed)) ")" }
                    td { (p_or(f.mcnemar_p)) " / " (p_or(f.p_holm)) @if f.p_holm < crate::analyze::ALPHA { " ✱" } " / " (p_or(f.p_bh)) }
                    td { (invalid_text(&f.invalid)) }
                } } }
            } }
        }
        @if let (Some(a), Some(pos)) = (&c.label_accuracy, positive) {
            div.table-wrap { table.confusion {
                caption { "Confusion matrix against gold labels (" (a.n) " answers; " (invalid_text(&a.invalid)) " among answers with gold)" }
                thead { tr { th { "gold \\ judged" } th { (Text(pos)) } th { "not " (Text(pos)) } } }
                tbody {
                    tr { th { (Text(pos)) } td { (a.true_positive) } td { (a.false_negative) } }
                    tr { th { "not " (Text(pos)) } td { (a.false_positive) } td { (a.true_negative) } }
                }
            } }
            p { "Accuracy " (rate_or(a.accuracy)) ", TPR " (rate_or(a.tpr)) " (FNR " (rate_or(1.0 - a.tpr)) "), TNR " (rate_or(a.tnr)) " (FPR " (rate_or(1.0 - a.tnr)) "), Cohen's κ " (coef_or(a.kappa)) "; yes-bias " (rate_text(&a.yes_bias)) "." }
        }
        @if let Some(g) = &c.score_agreement {
            p { "Against gold scores (" (g.n) " answers): Spearman ρ " (coef_or(g.spearman)) ", Kendall τ-b " (coef_or(g.kendall_tau_b)) ", quadratic-weighted κ " (coef_or(g.quadratic_kappa)) ", Krippendorff's α interval " (coef_or(g.alpha_interval)) " / ordinal " (coef_or(g.alpha_ordinal)) "." }
        }
        @if let Some(inv) = &c.gold_order_inversions {
            p { "Gold-order inversions (dispreferred answer scored higher): " (rate_text(inv)) "." }
        }
        @if let Some(s) = &c.scale_use {
            p { "Scale use: "
                @for (k, (score, n)) in s.histogram.iter().enumerate() { @if k > 0 { ", " } (score) ": " (n) }
                "; " (rate_or(s.share_used)) " of the scale used; 80% of grades within " (s.band_80.map_or("–".to_string(), |(l, h)| format!("{l}–{h}")))
                "; mean " (or_dash(s.mean, |v| format!("{v:.2}"))) "; run-to-run SD " (or_dash(s.run_to_run_sd, |v| format!("{v:.2}"))) "; ICC " (coef_or(s.icc)) "." }
        }
        @if let (Some(cal), Some(pos)) = (&c.calibration, positive) {
            figure.chart {
                (PreEscaped(super::charts_pointwise::reliability(&format!("{id}-rel"), owner, pos, cal)))
                figcaption { "Reliability of P(" (Text(pos)) ") for " (Text(owner)) ": Brier " (or_dash(cal.brier, |v| format!("{v:.3}"))) ", ECE " (or_dash(cal.ece, |v| format!("{v:.3}"))) ", " (cal.n) " answers." }
            }
        }
    }
}

/// The `results.csv` rows of the pointwise section: per judge (kind `pointwise_judge`) and jury
/// (kind `pointwise_jury`), per criterion, the artifact rows (condition `shift`) then the
/// baseline rows (condition `baseline`). A rubric criterion's rows name the judge as
/// `judge / criterion`. Count metrics (`*_count`) put the count in `estimate`, its denominator in
/// `n`.
pub fn csv_rows(p: &PointwiseSection) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in &p.judges {
        for c in &j.criteria {
            let who = if j.kind == PointwiseKind::Rubric {
                format!("{} / {}", j.judge, c.name)
            } else {
                j.judge.clone()
            };
            criterion_rows(&mut rows, &who, j.simulated, "pointwise_judge", c);
        }
        if let Some(c) = &j.consistency {
            rows.push(rate_row(
                &j.judge,
                j.simulated,
                "pointwise_judge",
                "",
                "score_inconsistency",
                &c.consistency.rate,
            ));
        }
    }
    for jury in &p.juries {
        criterion_rows(
            &mut rows,
            &jury.jury,
            jury.simulated,
            "pointwise_jury",
            &jury.criterion,
        );
    }
    rows
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn row(
    judge: &str,
    simulated: bool,
    kind: &'static str,
    artifact: &str,
    metric: &'static str,
    n: Option<u64>,
    estimate: f64,
) -> Row {
    Row {
        judge: judge.to_string(),
        simulated,
        artifact: artifact.to_string(),
        condition: if artifact.is_empty() {
            "baseline"
        } else {
            "shift"
        },
        metric,
        n,
        estimate: finite(estimate),
        ci_low: None,
        ci_high: None,
        p_value: None,
        p_adjusted: None,
        kind,
    }
}

fn rate_row(
    judge: &str,
    simulated: bool,
    kind: &'static str,
    artifact: &str,
    metric: &'static str,
    r: &Rate,
) -> Row {
    Row {
        ci_low: finite(r.interval.low),
        ci_high: finite(r.interval.high),
        ..row(judge, simulated, kind, artifact, metric, Some(r.n), r.rate)
    }
}

fn criterion_rows(
    rows: &mut Vec<Row>,
    who: &str,
    sim: bool,
    kind: &'static str,
    c: &CriterionSummary,
) {
    let scale = range(&c.scale);
    for s in &c.score_shifts {
        let a = s.artifact.as_str();
        let with_tests = |mut r: Row| {
            r.p_value = finite(s.wilcoxon.p_value);
            r.p_adjusted = finite(s.p_holm);
            r
        };
        rows.push(with_tests(Row {
            ci_low: finite(s.interval.low),
            ci_high: finite(s.interval.high),
            ..row(who, sim, kind, a, "score_shift", Some(s.n), s.mean_shift)
        }));
        rows.push(with_tests(Row {
            ci_low: finite(s.interval.low / scale),
            ci_high: finite(s.interval.high / scale),
            ..row(
                who,
                sim,
                kind,
                a,
                "score_shift_scaled",
                Some(s.n),
                s.mean_shift / scale,
            )
        }));
        rows.push(Row {
            p_value: finite(s.sign_p),
            ..row(who, sim, kind, a, "score_up_count", Some(s.n), s.up as f64)
        });
        rows.push(row(
            who,
            sim,
            kind,
            a,
            "score_down_count",
            Some(s.n),
            s.down as f64,
        ));
        rows.push(row(
            who,
            sim,
            kind,
            a,
            "excess_abs_shift",
            Some(s.n),
            s.excess,
        ));
        rows.push(row(
            who,
            sim,
            kind,
            a,
            "shift_invalid_count",
            None,
            (s.invalid.unparseable + s.invalid.out_of_range) as f64,
        ));
    }
    for f in &c.label_flips {
        let a = f.artifact.as_str();
        let with_tests = |mut r: Row| {
            r.p_value = finite(f.mcnemar_p);
            r.p_adjusted = finite(f.p_holm);
            r
        };
        rows.push(with_tests(rate_row(
            who,
            sim,
            kind,
            a,
            "positive_to_negative_rate",
            &f.positive_to_negative,
        )));
        rows.push(with_tests(rate_row(
            who,
            sim,
            kind,
            a,
            "negative_to_positive_rate",
            &f.negative_to_positive,
        )));
        rows.push(row(
            who,
            sim,
            kind,
            a,
            "positive_rate_change",
            Some(f.n),
            f.positive_rate_change,
        ));
        rows.push(row(
            who,
            sim,
            kind,
            a,
            "flip_invalid_count",
            None,
            (f.invalid.unparseable + f.invalid.out_of_range) as f64,
        ));
    }
    rows.push(row(
        who,
        sim,
        kind,
        "",
        "unparseable_count",
        Some(c.calls),
        c.invalid.unparseable as f64,
    ));
    rows.push(row(
        who,
        sim,
        kind,
        "",
        "out_of_range_count",
        Some(c.calls),
        c.invalid.out_of_range as f64,
    ));
    if let Some(a) = &c.label_accuracy {
        let n = Some(a.n);
        for (metric, v) in [
            ("label_accuracy", a.accuracy),
            ("tpr", a.tpr),
            ("tnr", a.tnr),
            ("label_kappa", a.kappa),
            ("true_positive_count", a.true_positive as f64),
            ("false_negative_count", a.false_negative as f64),
            ("false_positive_count", a.false_positive as f64),
            ("true_negative_count", a.true_negative as f64),
        ] {
            rows.push(row(who, sim, kind, "", metric, n, v));
        }
        rows.push(rate_row(who, sim, kind, "", "yes_bias", &a.yes_bias));
    }
    if let Some(g) = &c.score_agreement {
        for (metric, v) in [
            ("spearman", g.spearman),
            ("kendall_tau_b", g.kendall_tau_b),
            ("quadratic_kappa", g.quadratic_kappa),
            ("alpha_interval", g.alpha_interval),
            ("alpha_ordinal", g.alpha_ordinal),
        ] {
            rows.push(row(who, sim, kind, "", metric, Some(g.n), v));
        }
    }
    if let Some(inv) = &c.gold_order_inversions {
        rows.push(rate_row(who, sim, kind, "", "gold_order_inversions", inv));
    }
    if let Some(s) = &c.scale_use {
        for (metric, v) in [
            ("scale_share_used", s.share_used),
            ("score_mean", s.mean),
            ("run_to_run_sd", s.run_to_run_sd),
            ("icc", s.icc),
        ] {
            rows.push(row(who, sim, kind, "", metric, None, v));
        }
    }
    if let Some(cal) = &c.calibration {
        for (metric, v) in [("brier", cal.brier), ("ece", cal.ece)] {
            rows.push(row(who, sim, kind, "", metric, Some(cal.n), v));
        }
    }
}
