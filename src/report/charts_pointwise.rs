//! The pointwise charts of `report.html`: the score-shift forest plot (every score criterion of
//! every pointwise judge and jury, shifts on the 0–1 share of the scale so 1–5 and 1–10 scales
//! share an axis) and one reliability diagram per calibrated label criterion. Inline SVG built on
//! [`super::svg`]; every text goes through its escaper.

use super::format::{p as p_text, rate as pct};
use super::svg::{self, Anchor, LinearScale, Svg};
use super::text::html as escape;
use crate::analyze::pointwise::{Calibration, ScoreShift};
use crate::analyze::pointwise_summary::{GradeScale, PointwiseSection};

/// One forest row group: a judge's (or jury's) score criterion and its shifts.
struct Group<'a> {
    name: String,
    simulated: bool,
    range: f64,
    shifts: &'a [ScoreShift],
}

fn groups(p: &PointwiseSection) -> Vec<Group<'_>> {
    let mut out = Vec::new();
    let judges = p
        .judges
        .iter()
        .flat_map(|j| j.criteria.iter().map(move |c| (j, c)))
        .map(|(j, c)| {
            let name = if j.criteria.len() > 1 {
                format!("{} · {}", j.judge, c.name)
            } else {
                j.judge.clone()
            };
            (name, j.simulated, c)
        });
    let juries = p
        .juries
        .iter()
        .map(|j| (format!("jury {}", j.jury), j.simulated, &j.criterion));
    for (name, simulated, c) in judges.chain(juries) {
        if let GradeScale::Score { min, max } = c.scale
            && !c.score_shifts.is_empty()
        {
            out.push(Group {
                name,
                simulated,
                range: ((max - min) as f64).max(1.0),
                shifts: &c.score_shifts,
            });
        }
    }
    out
}

/// The score-shift forest plot, or nothing when no score criterion has an artifact.
pub(super) fn score_forest(p: &PointwiseSection) -> String {
    let groups = groups(p);
    if groups.is_empty() {
        return String::new();
    }
    let (label_w, plot_w, text_w, row_h, top) = (210.0, 480.0, 380.0, 19.0, 34.0);
    let finite = |x: f64| x.is_finite().then_some(x);
    let reach = groups
        .iter()
        .flat_map(|g| {
            g.shifts.iter().flat_map(move |s| {
                [s.interval.low, s.interval.high, s.mean_shift]
                    .into_iter()
                    .filter_map(finite)
                    .map(move |v| (v / g.range).abs())
            })
        })
        .fold(0.0f64, f64::max);
    let half = svg::ceil_to(reach, 0.1).clamp(0.1, 1.0);
    let scale = LinearScale::new((-half, half), (label_w, label_w + plot_w));
    let body: f64 = groups
        .iter()
        .map(|g| 26.0 + row_h * g.shifts.len() as f64 + 10.0)
        .sum();
    let height = top + body + 10.0;
    let mut chart = Svg::new(
        "pw-forest",
        label_w + plot_w + text_w,
        height,
        "Score shift per pointwise judge and artifact, as a share of the scale",
        "Forest plot: for each pointwise score judge a group of rows, one per artifact, with the mean score shift (artifact minus baseline, divided by the scale's range) as a dot and its pair-clustered bootstrap 95% interval as a line. The vertical line is no shift. The text column repeats the shift in points with its interval, n and the Holm-adjusted Wilcoxon p-value.",
    );
    chart.x_axis(
        &scale,
        top - 4.0,
        &scale.ticks(4),
        super::format::signed_tick,
        Some(height - 6.0),
    );
    chart.line(
        scale.map(0.0),
        top,
        scale.map(0.0),
        height - 6.0,
        "stroke=\"#1f2328\" stroke-width=\"1\"",
    );
    chart.text(
        label_w + plot_w + 20.0,
        top - 11.0,
        "shift in points [95% CI] n, Holm p",
        Anchor::Start,
        "class=\"small\"",
    );
    let mut y = top;
    for g in &groups {
        chart.push(&format!(
            "<text x=\"8\" y=\"{}\" class=\"lbl-b\">{}{}",
            svg::num(y + 17.0),
            svg::title(&g.name),
            escape(&svg::clip(&g.name, 40))
        ));
        if g.simulated {
            chart.push("<tspan class=\"simt\" dx=\"8\">SIMULATED</tspan>");
        }
        chart.push("</text>");
        let mut ry = y + 26.0;
        for s in g.shifts {
            let cy = ry + row_h / 2.0;
            chart.text(
                label_w - 12.0,
                cy + 4.0,
                &svg::clip(&s.artifact, 22),
                Anchor::End,
                "class=\"lbl\"",
            );
            let significant = s.p_holm < crate::analyze::ALPHA;
            let colour = if significant { "#8250df" } else { "#57606a" };
            if s.interval.low.is_finite() && s.interval.high.is_finite() {
                chart.line(
                    scale.map(s.interval.low / g.range),
                    cy,
                    scale.map(s.interval.high / g.range),
                    cy,
                    &format!("stroke=\"{colour}\" stroke-width=\"2\" stroke-linecap=\"round\""),
                );
            }
            let text = format!(
                "{:+.2} [{:+.2}, {:+.2}] n={}, Holm p {}{}",
                s.mean_shift,
                s.interval.low,
                s.interval.high,
                s.n,
                p_text(s.p_holm),
                if significant { " ✱" } else { "" }
            );
            if s.mean_shift.is_finite() {
                chart.push(&format!(
                    "<circle cx=\"{}\" cy=\"{}\" r=\"4.5\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1.5\">{}</circle>",
                    svg::num(scale.map(s.mean_shift / g.range)),
                    svg::num(cy),
                    svg::title(&format!("{} · {}: {text}", g.name, s.artifact))
                ));
            }
            chart.text(
                label_w + plot_w + 20.0,
                cy + 4.0,
                &text,
                Anchor::Start,
                "class=\"small\"",
            );
            ry += row_h;
        }
        y = ry + 10.0;
    }
    let mut out = chart.finish();
    // Text alternative for screen readers, as every pairwise chart has.
    out.push_str("<table class=\"sr-only\"><caption>Score shift per pointwise judge and artifact: mean shift in points, 95% interval, n and Holm-adjusted Wilcoxon p</caption><thead><tr><th>judge</th><th>artifact</th><th>shift in points</th><th>95% interval</th><th>n</th><th>Holm p</th></tr></thead><tbody>");
    for g in &groups {
        let judge = format!(
            "{}{}",
            g.name,
            if g.simulated { " (SIMULATED)" } else { "" }
        );
        for s in g.shifts {
            out.push_str(&format!(
                "<tr><th>{}</th><td>{}</td><td>{:+.2}</td><td>[{:+.2}, {:+.2}]</td><td>{}</td><td>{}</td></tr>",
                escape(&judge),
                escape(&s.artifact),
                s.mean_shift,
                s.interval.low,
                s.interval.high,
                s.n,
                p_text(s.p_holm)
            ));
        }
    }
    out.push_str("</tbody></table>");
    out
}

/// A reliability diagram: mean predicted P(positive) against the observed positive share per
/// bin, the diagonal being perfect calibration; dot area grows with the bin's count.
pub(super) fn reliability(id: &str, name: &str, positive: &str, c: &Calibration) -> String {
    let (left, top, side) = (46.0, 14.0, 220.0);
    let x = LinearScale::new((0.0, 1.0), (left, left + side));
    let y = LinearScale::new((0.0, 1.0), (top + side, top));
    let mut chart = Svg::new(
        id,
        left + side + 150.0,
        top + side + 40.0,
        &format!("Reliability diagram of {name}"),
        &format!(
            "Each dot is a bin of baseline answers: its mean predicted P({positive}) across, the observed share of gold-{positive} answers up. The diagonal is perfect calibration. ECE {:.3}, Brier {:.3}, n={}.",
            c.ece, c.brier, c.n
        ),
    );
    chart.rect(
        left,
        top,
        side,
        side,
        "fill=\"none\" stroke=\"#d0d7de\"",
        None,
    );
    chart.line(
        x.map(0.0),
        y.map(0.0),
        x.map(1.0),
        y.map(1.0),
        "stroke=\"#8c959f\" stroke-dasharray=\"4 3\"",
    );
    for t in [0.0, 0.5, 1.0] {
        chart.text(
            x.map(t),
            top + side + 14.0,
            &pct(t),
            Anchor::Middle,
            "class=\"tick\"",
        );
        chart.text(
            left - 6.0,
            y.map(t) + 4.0,
            &pct(t),
            Anchor::End,
            "class=\"tick\"",
        );
    }
    chart.text(
        left + side / 2.0,
        top + side + 30.0,
        &format!("predicted P({positive})"),
        Anchor::Middle,
        "class=\"small\"",
    );
    let most = c.bins.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    for b in &c.bins {
        if !(b.mean_prob.is_finite() && b.observed.is_finite()) {
            continue;
        }
        let r = 3.0 + 6.0 * (b.count as f64 / most).sqrt();
        chart.push(&format!(
            "<circle cx=\"{}\" cy=\"{}\" r=\"{}\" fill=\"#0969da\" fill-opacity=\"0.7\">{}</circle>",
            svg::num(x.map(b.mean_prob)),
            svg::num(y.map(b.observed)),
            svg::num(r),
            svg::title(&format!(
                "({:.1}, {:.1}]: {} answers, mean P {:.3}, observed {:.3}",
                b.lower, b.upper, b.count, b.mean_prob, b.observed
            ))
        ));
    }
    chart.text(
        left + side + 14.0,
        top + 14.0,
        &format!("ECE {:.3}", c.ece),
        Anchor::Start,
        "class=\"small\"",
    );
    chart.text(
        left + side + 14.0,
        top + 30.0,
        &format!("Brier {:.3}", c.brier),
        Anchor::Start,
        "class=\"small\"",
    );
    chart.text(
        left + side + 14.0,
        top + 46.0,
        &format!("n={}", c.n),
        Anchor::Start,
        "class=\"small\"",
    );
    chart.finish()
}
