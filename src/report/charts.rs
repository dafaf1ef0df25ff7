//! The charts of `report.html`, each an inline SVG in a `<figure>` with a text alternative:
//! artifact-effect heatmaps, the flip-rate forest plot and the position-consistency bars. Built
//! on the primitives of [`super::svg`]; text goes through the one escaping place.

use super::Summary;
use super::format::{
    estimate as est_text, interval as ci_text, p as p_text, rate as pct, signed as spct,
};
use super::svg::{self, Anchor, LinearScale, Svg};
use super::text::html as escape;
use super::view::artifact_ids;
use crate::analyze::{Estimate, JudgeResult, Trust};
use std::fmt::Write;

/// Which effect a heatmap shows.
#[derive(Clone, Copy)]
enum Effect {
    T,
    Wr,
}

impl Effect {
    fn pick(self, a: &crate::analyze::ArtifactResult) -> &Estimate {
        match self {
            Effect::T => &a.tie_detection.score,
            Effect::Wr => &a.winrate_shift.shift,
        }
    }
    fn short(self) -> &'static str {
        match self {
            Effect::T => "T",
            Effect::Wr => "WR",
        }
    }
}

/// The "Artifact effects" section: T and WR heatmaps with their text alternatives.
pub(super) fn heatmaps(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"effects\">\n<h2>Artifact effects</h2>\n");
    out.push_str("<p class=\"intro\"><b>T</b> (tie detection, Chen &amp; Goldfarb-Tarrant Eq. 3) compares an answer with the same answer plus the artifact: +100% means the judge always prefers the copy with the artifact, −100% always the original; for <i>position</i>, +100% means it always prefers the first slot. <b>WR</b> (winrate shift, Eq. 5) is the change in net preference between different answers when the artifact is added to one of them. Each cell shows the estimate, its 95% interval and n; <span class=\"star\">✱</span> marks a Holm-adjusted p &lt; 0.05 within the judge's family (its own tests by default; the families are listed under the detailed results).</p>\n");
    out.push_str("<h3>T: tie detection</h3>\n");
    heatmap(out, s, Effect::T, "heat-t");
    out.push_str("<h3>WR: winrate shift</h3>\n");
    heatmap(out, s, Effect::Wr, "heat-wr");
    out.push_str("</section>\n");
}

fn verdict_colour(t: Trust) -> &'static str {
    match t {
        Trust::Adopt => "#1a7f37",
        Trust::Caution => "#9a6700",
        Trust::Reject => "#d1242f",
        Trust::CouldNotAudit => "#57606a",
    }
}

/// A judge's name (clipped, full name in a tooltip) over a small line with SIMULATED and the
/// verdict in its colour.
fn row_label(svg: &mut Svg, x: f64, y: f64, j: &JudgeResult, max_chars: usize) {
    let name = svg::clip(&j.name, max_chars);
    svg.push(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"lbl-b\">{}{}</text>",
        svg::num(x),
        svg::num(y),
        svg::title(&j.name),
        escape(&name)
    ));
    let verdict = format!(
        "<tspan fill=\"{}\">{}</tspan>",
        verdict_colour(j.trust.verdict),
        j.trust.verdict.label()
    );
    let sub = if j.simulated {
        format!("SIMULATED · {verdict}")
    } else {
        verdict
    };
    svg.push(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" class=\"simt\">{sub}</text>",
        svg::num(x),
        svg::num(y + 14.0)
    ));
}

fn heatmap(out: &mut String, s: &Summary, effect: Effect, id: &str) {
    let ids = artifact_ids(s);
    let label_w = 210.0;
    let cell_w = ((1100.0 - label_w) / ids.len().max(1) as f64).clamp(92.0, 132.0);
    let cell_h = 48.0;
    let top = 30.0;
    let width = label_w + cell_w * ids.len() as f64 + 4.0;
    let legend_h = 46.0;
    let height = top + cell_h * s.judges.len() as f64 + legend_h;
    let max_abs = s
        .judges
        .iter()
        .flat_map(|j| j.artifacts.iter())
        .filter_map(|a| effect.pick(a).estimate)
        .fold(0.0f64, |m, v| m.max(v.abs()));
    let domain = svg::ceil_to(max_abs, 0.2).clamp(0.2, 1.0);
    let name = match effect {
        Effect::T => "Tie-detection score T",
        Effect::Wr => "Winrate shift WR",
    };
    let mut svg = Svg::new(
        id,
        width,
        height,
        &format!("{name} by judge and artifact"),
        &format!(
            "Heatmap with one row per judge and one column per artifact. Colour encodes {} from −{} (blue) to +{} (red); a star marks Holm-adjusted p < 0.05. The table after the chart lists every value.",
            effect.short(),
            pct(domain),
            pct(domain)
        ),
    );
    for (c, artifact) in ids.iter().enumerate() {
        let x = label_w + cell_w * (c as f64 + 0.5);
        svg.text(
            x,
            top - 10.0,
            &svg::clip(artifact, 16),
            Anchor::Middle,
            "class=\"lbl-b\"",
        );
    }
    for (r, j) in s.judges.iter().enumerate() {
        let y = top + cell_h * r as f64;
        row_label(&mut svg, label_w - 12.0, y + 21.0, j, 26);
        for (c, artifact) in ids.iter().enumerate() {
            let x = label_w + cell_w * c as f64;
            let found = j.artifacts.iter().find(|a| &a.artifact == artifact);
            let e = found.map(|a| effect.pick(a));
            match e.and_then(|e| e.estimate.map(|v| (e, v))) {
                Some((e, v)) => {
                    let fill = svg::diverging(v, domain);
                    let ink = svg::text_on(fill);
                    let tooltip = format!(
                        "{} · {} · {} = {}{}",
                        j.name,
                        artifact,
                        effect.short(),
                        est_text(e, true),
                        p_suffix(e)
                    );
                    let stroke = if e.significant() {
                        " stroke=\"#1f2328\" stroke-width=\"1.5\""
                    } else {
                        " stroke=\"#ffffff\" stroke-width=\"2\""
                    };
                    svg.rect(
                        x + 1.0,
                        y + 1.0,
                        cell_w - 2.0,
                        cell_h - 2.0,
                        &format!("fill=\"{}\" rx=\"3\"{stroke}", fill.hex()),
                        Some(&tooltip),
                    );
                    let cx = x + cell_w / 2.0;
                    svg.text(
                        cx,
                        y + 21.0,
                        &format!("{}{}", spct(v), if e.significant() { " ✱" } else { "" }),
                        Anchor::Middle,
                        &format!("class=\"cellv\" fill=\"{ink}\""),
                    );
                    svg.text(
                        cx,
                        y + 36.0,
                        &super::format::interval_points(e, true),
                        Anchor::Middle,
                        &format!("class=\"cellc\" fill=\"{ink}\""),
                    );
                }
                None => {
                    svg.rect(
                        x + 1.0,
                        y + 1.0,
                        cell_w - 2.0,
                        cell_h - 2.0,
                        "fill=\"#f6f8fa\" rx=\"3\" stroke=\"#ffffff\" stroke-width=\"2\"",
                        Some(&format!("{} · {}: no estimate", j.name, artifact)),
                    );
                    svg.text(
                        x + cell_w / 2.0,
                        y + 28.0,
                        &format!("n/a (n={})", e.map(|e| e.n).unwrap_or(0)),
                        Anchor::Middle,
                        "class=\"small\"",
                    );
                }
            }
        }
    }
    // Legend: a gradient bar with ticks.
    let ly = top + cell_h * s.judges.len() as f64 + 16.0;
    let lx = label_w;
    let lw = 260.0;
    let steps = 52;
    for i in 0..steps {
        let t = i as f64 / steps as f64;
        let v = -domain + 2.0 * domain * (t + 0.5 / steps as f64);
        svg.rect(
            lx + lw * t,
            ly,
            lw / steps as f64 + 0.3,
            10.0,
            &format!("fill=\"{}\"", svg::diverging(v, domain).hex()),
            None,
        );
    }
    let scale = LinearScale::new((-domain, domain), (lx, lx + lw));
    for t in [-domain, 0.0, domain] {
        svg.text(
            scale.map(t),
            ly + 24.0,
            &super::format::signed_tick(t),
            Anchor::Middle,
            "class=\"tick\"",
        );
    }
    svg.text(
        lx - 12.0,
        ly + 9.0,
        &format!("{} colour scale", effect.short()),
        Anchor::End,
        "class=\"small\"",
    );
    svg.text(
        lx + lw + 16.0,
        ly + 9.0,
        "✱ Holm-adjusted p < 0.05 (outlined cell)",
        Anchor::Start,
        "class=\"small\"",
    );
    let significant = s
        .judges
        .iter()
        .flat_map(|j| j.artifacts.iter())
        .filter(|a| effect.pick(a).significant())
        .count();
    let cells = s.judges.iter().map(|j| j.artifacts.len()).sum::<usize>();
    let _ = write!(
        out,
        "<figure><div class=\"chart\">{}</div><figcaption>{name}: {significant} of {cells} judge × artifact cells significant after Holm correction. Hover a cell for the raw and adjusted p-values; the exact numbers are in the detailed results.</figcaption>",
        svg.finish()
    );
    // Text alternative for screen readers.
    let _ = write!(
        out,
        "<table class=\"sr-only\"><caption>{name}: estimate, 95% interval, n and Holm-adjusted p per judge and artifact</caption><thead><tr><th>judge</th>"
    );
    for a in &ids {
        let _ = write!(out, "<th>{}</th>", escape(a));
    }
    out.push_str("</tr></thead><tbody>");
    for j in &s.judges {
        let _ = write!(
            out,
            "<tr><th>{}{}</th>",
            escape(&j.name),
            if j.simulated { " (SIMULATED)" } else { "" }
        );
        for a in &ids {
            let cell = j
                .artifacts
                .iter()
                .find(|x| &x.artifact == a)
                .map(|x| {
                    let e = effect.pick(x);
                    format!("{}{}", est_text(e, true), p_suffix(e))
                })
                .unwrap_or_else(|| "not audited".into());
            let _ = write!(out, "<td>{}</td>", escape(&cell));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></figure>\n");
}

/// `, p 0.012, Holm 0.036 ✱` for tooltips and text alternatives.
fn p_suffix(e: &Estimate) -> String {
    let mut s: String = super::format::p_values(e)
        .iter()
        .map(|p| format!(", {p}"))
        .collect();
    if e.significant() {
        s.push_str(" ✱");
    }
    s
}

/// The "Flip rates" section: the forest plot with noise bands.
pub(super) fn forest(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"flips\">\n<h2>Flip rates</h2>\n");
    out.push_str("<p class=\"intro\">Share of verdicts that changed when the artifact was added, against the judge's own baseline verdict for the same pair and order (Wilson 95% interval). The shaded band is the judge's run-to-run flip rate: the 95% interval of how often an identical baseline call changed verdict between repeats. A flip rate inside the band is indistinguishable from the judge's own noise. <span class=\"star\">✱</span> marks a Holm-significant direction of the flips (exact McNemar, toward vs away).</p>\n");
    let label_w = 210.0;
    let plot_w = 560.0;
    let text_w = 320.0;
    let row_h = 19.0;
    let group_gap = 14.0;
    let top = 34.0;
    let max_high = s
        .judges
        .iter()
        .flat_map(|j| {
            j.artifacts
                .iter()
                .filter_map(|a| a.flip_rate.rate.ci_high.or(a.flip_rate.rate.estimate))
                .chain(j.baseline.noise_flip_rate.ci_high)
        })
        .fold(0.0f64, f64::max);
    let domain = svg::ceil_to(max_high, 0.1).clamp(0.1, 1.0);
    let scale = LinearScale::new((0.0, domain), (label_w, label_w + plot_w));
    let group_h = |j: &JudgeResult| 26.0 + row_h * j.artifacts.len() as f64;
    let body_h: f64 = s.judges.iter().map(group_h).sum::<f64>() + group_gap * s.judges.len() as f64;
    let height = top + body_h + 10.0;
    let width = label_w + plot_w + text_w;
    let mut svg = Svg::new(
        "forest",
        width,
        height,
        "Flip rate against the baseline per judge and artifact",
        "Forest plot: for each judge a group of rows, one per artifact, with the flip rate as a dot and its 95% interval as a line. A shaded band shows the judge's run-to-run flip rate interval, a dashed line its estimate. The text column repeats each value with its interval and n.",
    );
    let ticks = scale.ticks(5);
    svg.x_axis(&scale, top - 4.0, &ticks, pct_tick, Some(height - 6.0));
    svg.text(
        label_w + plot_w + 30.0,
        top - 11.0,
        "flip rate [95% CI] n",
        Anchor::Start,
        "class=\"small\"",
    );
    let mut y = top;
    for j in &s.judges {
        let gh = group_h(j);
        let noise = &j.baseline.noise_flip_rate;
        if let (Some(l), Some(h)) = (noise.ci_low, noise.ci_high) {
            svg.rect(
                scale.map(l),
                y + 4.0,
                scale.map(h) - scale.map(l),
                gh - 6.0,
                "fill=\"#8c959f\" fill-opacity=\"0.16\"",
                Some(&format!(
                    "{}: run-to-run flip rate {}",
                    j.name,
                    est_text(noise, false)
                )),
            );
        }
        if let Some(v) = noise.estimate {
            svg.line(
                scale.map(v),
                y + 4.0,
                scale.map(v),
                y + gh - 2.0,
                "stroke=\"#6e7781\" stroke-width=\"1\" stroke-dasharray=\"3 3\"",
            );
        }
        // Group heading: judge name (and SIMULATED), noise summary on the right.
        let name = svg::clip(&j.name, 40);
        svg.push(&format!(
            "<text x=\"{}\" y=\"{}\" class=\"lbl-b\">{}{}",
            svg::num(8.0),
            svg::num(y + 17.0),
            svg::title(&j.name),
            escape(&name)
        ));
        if j.simulated {
            svg.push("<tspan class=\"simt\" dx=\"8\">SIMULATED</tspan>");
        }
        svg.push("</text>");
        svg.text(
            label_w + plot_w + 30.0,
            y + 17.0,
            &format!("noise {}", est_text(noise, false)),
            Anchor::Start,
            "class=\"small\"",
        );
        let mut ry = y + 26.0;
        for a in &j.artifacts {
            let e = &a.flip_rate.rate;
            let cy = ry + row_h / 2.0;
            svg.text(
                label_w - 12.0,
                cy + 4.0,
                &svg::clip(&a.artifact, 22),
                Anchor::End,
                "class=\"lbl\"",
            );
            let colour = if e.significant() {
                "#8250df"
            } else {
                "#57606a"
            };
            if let (Some(l), Some(h)) = (e.ci_low, e.ci_high) {
                svg.line(
                    scale.map(l),
                    cy,
                    scale.map(h),
                    cy,
                    &format!("stroke=\"{colour}\" stroke-width=\"2\" stroke-linecap=\"round\""),
                );
            }
            let tooltip = format!(
                "{} · {}: flip rate {} ({} toward, {} away){}",
                j.name,
                a.artifact,
                est_text(e, false),
                a.flip_rate.toward,
                a.flip_rate.away,
                p_suffix(e)
            );
            match e.estimate {
                Some(v) => {
                    svg.push(&format!(
                        "<circle cx=\"{}\" cy=\"{}\" r=\"4.5\" fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1.5\">{}</circle>",
                        svg::num(scale.map(v)),
                        svg::num(cy),
                        svg::title(&tooltip)
                    ));
                    svg.text(
                        label_w + plot_w + 30.0,
                        cy + 4.0,
                        &format!("{} {}{}", pct(v), ci_text(e, false), {
                            if e.significant() { " ✱" } else { "" }
                        }),
                        Anchor::Start,
                        if e.significant() {
                            "class=\"lbl-b\""
                        } else {
                            "class=\"lbl\""
                        },
                    );
                }
                None => svg.text(
                    label_w + plot_w + 30.0,
                    cy + 4.0,
                    &format!("n/a (n={})", e.n),
                    Anchor::Start,
                    "class=\"small\"",
                ),
            }
            ry += row_h;
        }
        y += gh + group_gap;
    }
    let above: usize = s
        .judges
        .iter()
        .map(|j| {
            j.artifacts
                .iter()
                .filter(|a| {
                    matches!(
                        (a.flip_rate.rate.ci_low, j.baseline.noise_flip_rate.ci_high),
                        (Some(l), Some(h)) if l > h
                    )
                })
                .count()
        })
        .sum();
    let _ = write!(
        out,
        "<figure><div class=\"chart\">{}</div><figcaption>Flip rates of {} judges on {} artifacts; in {above} judge × artifact cells the whole flip-rate interval lies above the judge's run-to-run noise interval. Grey band: run-to-run flip rate (95% CI); dashed line: its estimate.</figcaption>",
        svg.finish(),
        s.judges.len(),
        s.plan.artifacts.len()
    );
    out.push_str("<table class=\"sr-only\"><caption>Flip rate per judge and artifact with 95% interval, n, flips toward and away, and Holm-adjusted p; run-to-run noise per judge</caption><thead><tr><th>judge</th><th>artifact</th><th>flip rate</th><th>toward</th><th>away</th><th>Holm p</th></tr></thead><tbody>");
    for j in &s.judges {
        let _ = write!(
            out,
            "<tr><th>{}{}</th><td>run-to-run noise</td><td>{}</td><td></td><td></td><td></td></tr>",
            escape(&j.name),
            if j.simulated { " (SIMULATED)" } else { "" },
            escape(&est_text(&j.baseline.noise_flip_rate, false))
        );
        for a in &j.artifacts {
            let e = &a.flip_rate.rate;
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&j.name),
                escape(&a.artifact),
                escape(&est_text(e, false)),
                a.flip_rate.toward,
                a.flip_rate.away,
                e.p_adjusted.map(p_text).unwrap_or_default()
            );
        }
    }
    out.push_str("</tbody></table></figure>\n</section>\n");
}

use super::format::tick as pct_tick;

/// Segments of the position-consistency bar: label and colour.
const POSITION_SEGMENTS: [(&str, &str); 5] = [
    ("consistent", "#2da44e"),
    ("prefers first slot", "#e16f24"),
    ("prefers second slot", "#218bff"),
    ("other (win vs tie)", "#afb8c1"),
    ("error (invalid or failed)", "#57606a"),
];

fn position_counts(pc: &crate::analyze::PositionConsistency) -> [u64; 5] {
    [
        pc.consistent,
        pc.prefers_first,
        pc.prefers_second,
        pc.other,
        pc.error,
    ]
}

/// The "Position bias" section: stacked bars of the position outcomes.
pub(super) fn position(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"position\">\n<h2>Position bias</h2>\n");
    out.push_str("<p class=\"intro\">Each pair was judged in both orders (MT-Bench position consistency, first baseline repeat). <i>Consistent</i>: the same winner, or a tie, in both orders. <i>Prefers first/second slot</i>: whichever answer sat in that slot won both times. <i>Other</i>: a win in one order and a tie in the other. <i>Error</i>: an invalid or failed verdict in either order.</p>\n");
    let label_w = 210.0;
    let bar_w = 600.0;
    let text_w = 290.0;
    let row_h = 36.0;
    let top = 8.0;
    let legend_h = 30.0;
    let width = label_w + bar_w + text_w;
    let height = top + row_h * s.judges.len() as f64 + legend_h;
    let mut svg = Svg::new(
        "position-chart",
        width,
        height,
        "Position consistency per judge",
        "Stacked horizontal bars, one per judge, splitting the pairs into consistent, prefers first slot, prefers second slot, other and error. The text column gives the consistency rate with its 95% interval and n.",
    );
    for (r, j) in s.judges.iter().enumerate() {
        let y = top + row_h * r as f64;
        row_label(&mut svg, label_w - 12.0, y + 13.0, j, 26);
        let pc = &j.baseline.position_consistency;
        let counts = position_counts(pc);
        let total: u64 = counts.iter().sum();
        let mut x = label_w;
        if total == 0 {
            svg.rect(
                x,
                y + 2.0,
                bar_w,
                20.0,
                "fill=\"#f6f8fa\" stroke=\"#d0d7de\"",
                None,
            );
        }
        for ((label, colour), count) in POSITION_SEGMENTS.into_iter().zip(counts) {
            if count == 0 || total == 0 {
                continue;
            }
            let w = bar_w * count as f64 / total as f64;
            svg.rect(
                x,
                y + 2.0,
                w,
                20.0,
                &format!("fill=\"{colour}\" stroke=\"#ffffff\" stroke-width=\"1\""),
                Some(&format!(
                    "{}: {label} {count} of {total} pairs ({})",
                    j.name,
                    pct(count as f64 / total as f64)
                )),
            );
            if w >= 34.0 {
                let ink = svg::text_on(svg::Rgb::from_hex(colour).unwrap_or(svg::Rgb(0, 0, 0)));
                svg.text(
                    x + w / 2.0,
                    y + 16.0,
                    &count.to_string(),
                    Anchor::Middle,
                    &format!("class=\"cellc\" fill=\"{ink}\""),
                );
            }
            x += w;
        }
        svg.text(
            label_w + bar_w + 12.0,
            y + 16.0,
            &format!("consistent {}", est_text(&pc.rate, false)),
            Anchor::Start,
            "class=\"lbl\"",
        );
    }
    let ly = top + row_h * s.judges.len() as f64 + 6.0;
    let mut lx = label_w;
    for (label, colour) in POSITION_SEGMENTS {
        svg.rect(
            lx,
            ly,
            11.0,
            11.0,
            &format!("fill=\"{colour}\" rx=\"2\""),
            None,
        );
        svg.text(
            lx + 16.0,
            ly + 10.0,
            label,
            Anchor::Start,
            "class=\"small\"",
        );
        lx += 30.0 + 6.2 * label.chars().count() as f64;
    }
    let _ = write!(
        out,
        "<figure><div class=\"chart\">{}</div><figcaption>Position consistency of {} judges; segment labels are pair counts. {}</figcaption>",
        svg.finish(),
        s.judges.len(),
        s.judges
            .iter()
            .map(|j| format!(
                "{}{}: {}",
                escape(&j.name),
                if j.simulated { " (SIMULATED)" } else { "" },
                escape(&est_text(&j.baseline.position_consistency.rate, false))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    );
    out.push_str("<table class=\"sr-only\"><caption>Position consistency counts per judge</caption><thead><tr><th>judge</th><th>consistent</th><th>prefers first</th><th>prefers second</th><th>other</th><th>error</th><th>consistency rate</th></tr></thead><tbody>");
    for j in &s.judges {
        let pc = &j.baseline.position_consistency;
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&j.name),
            pc.consistent,
            pc.prefers_first,
            pc.prefers_second,
            pc.other,
            pc.error,
            escape(&est_text(&pc.rate, false))
        );
    }
    out.push_str("</tbody></table></figure>\n</section>\n");
}
