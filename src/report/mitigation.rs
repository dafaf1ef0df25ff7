//! The post-hoc mitigations section of every report: per pairwise judge, each mitigation's cost,
//! residual effects against the unmitigated judge's, the paired flip test, the change in gold
//! accuracy, the ranking and the (post-hoc) recommendation. Markdown and HTML here (as for
//! [`super::pointwise`]); the CSV rows in [`csv_rows`]. Every rendering says the mitigations are
//! post hoc and should be confirmed on held-out pairs.

use super::csv::Row;
use super::format::{interval, opt, p as p_text, rate, signed, value};
use super::markdown::{cell_text, escape};
use super::text::Text;
use crate::analyze::Estimate;
use crate::analyze::mitigation::{
    JudgeMitigations, MitigatedArtifact, Mitigation, MitigationSection,
};
use maud::{Markup, html};
use std::fmt::Write;

/// `+57.3% → 0.0% [−14.3%, +14.3%] n=200`, or `– → n/a` when not measured.
fn before_after(before: Option<f64>, after: &Estimate, is_signed: bool) -> String {
    let b = before.map_or("–".to_string(), |x| value(x, is_signed));
    match after.estimate {
        Some(v) => format!(
            "{b} → {} {}",
            value(v, is_signed),
            interval(after, is_signed)
        ),
        None => format!("{b} → not measured"),
    }
}

/// The paired flip test as a short cell: `fewer 3 / more 0, p 0.250`.
fn test_text(a: &MitigatedArtifact) -> String {
    match &a.flip_test {
        Some(t) => format!(
            "fewer {} / more {}, p {}",
            t.fewer,
            t.more,
            p_text(t.p_value)
        ),
        None => "–".into(),
    }
}

fn cost_text(m: &Mitigation) -> String {
    format!(
        "{}× calls, {} tokens",
        m.cost_calls,
        opt(m.cost_tokens, |t| format!("{t:.2}×"))
    )
}

fn gold_text(m: &Mitigation) -> String {
    match m.gold_accuracy.estimate {
        Some(g) => format!(
            "{} ({})",
            value(g, false),
            opt(m.gold_accuracy_change, signed)
        ),
        None => "no gold".into(),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn is_jury(m: &Mitigation) -> bool {
    m.id.starts_with("jury:")
}

/// The section intro, shared by Markdown and HTML (plain text).
fn intro(s: &MitigationSection) -> String {
    format!(
        "Post-hoc mitigations, measured on the calls this audit already made (no new calls): \
         swap-and-confirm, order-averaged label probabilities (when the records carry them), \
         majority over the baseline's repeats, majority over the judge's templates (for a judge \
         with template variants; no strict majority is a tie), and the juries (referenced from \
         their own section). \
         Residual T, WR and flip rate use the unmitigated definitions and the same pair-clustered \
         bootstrap (Wilson for the flip rate); n counts mitigated verdicts. The paired test is the \
         exact sign test on per-pair flip shares (unmitigated − mitigated; McNemar's exact test \
         when a pair has one comparison), raw p. A mitigation is recommended only for a judge with \
         a Holm-significant artifact, when every such artifact's residual T interval covers 0 and \
         gold accuracy drops by at most {:.0} points; the cheapest one wins. {} The juries' \
         residual effects are their own rows in the juries' section.",
        100.0 * s.gold_margin,
        s.cost_rule
    )
}

/// Said when some entries were audited with new calls (`[mitigations]`).
const NEW_CALL_NOTE: &str = "Entries marked (new calls) were audited with calls of their own, \
as derived judges on the full design ([mitigations] in audit.toml): they are not post hoc. A \
stack `<mitigation>+swap-and-confirm` applies swap-and-confirm (post hoc) to those calls.";

fn has_new_call(s: &MitigationSection) -> bool {
    s.judges
        .iter()
        .flat_map(|j| &j.mitigations)
        .any(|m| !m.post_hoc)
}

/// The id as shown in the Markdown tables: new-call mitigations say so.
fn id_text(m: &Mitigation) -> String {
    if m.post_hoc {
        m.id.clone()
    } else {
        format!("{} (new calls)", m.id)
    }
}

/// The Markdown section.
pub fn markdown(s: &MitigationSection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Mitigations (post hoc)\n");
    let _ = writeln!(out, "> **{}**\n", escape(&s.note));
    let _ = writeln!(out, "{}\n", escape(&intro(s)));
    if has_new_call(s) {
        let _ = writeln!(out, "{}\n", escape(NEW_CALL_NOTE));
    }
    for j in &s.judges {
        judge_markdown(&mut out, j);
    }
    out
}

fn judge_markdown(out: &mut String, j: &JudgeMitigations) {
    let _ = writeln!(
        out,
        "## {}{} · mitigations (post hoc)\n",
        escape(&j.judge),
        if j.simulated { " (simulated)" } else { "" }
    );
    let targets = if j.targets.is_empty() {
        "none".to_string()
    } else {
        j.targets.join(", ")
    };
    let _ = writeln!(
        out,
        "Significant artifacts to remove: {}. **Recommended (post hoc):** {}.\n",
        escape(&targets),
        escape(&j.recommendation)
    );
    let _ = writeln!(
        out,
        "| rank | mitigation | cost | mean abs T before → after | bias removed per extra call | gold accuracy (change) | removes targets | keeps gold |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for m in &j.mitigations {
        if !m.available {
            let _ = writeln!(
                out,
                "| – | {} | {} | not available: {} | – | – | – | – |",
                cell_text(&m.id),
                cell_text(&cost_text(m)),
                cell_text(m.note.as_deref().unwrap_or(""))
            );
            continue;
        }
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} → {} | {} | {} | {} | {} |",
            m.rank.map_or("–".into(), |r| r.to_string()),
            cell_text(&id_text(m)),
            cell_text(&cost_text(m)),
            opt(m.unmitigated_bias, rate),
            opt(m.residual_bias, rate),
            opt(m.bias_removed_per_extra_call, signed),
            cell_text(&gold_text(m)),
            yes_no(m.removes_targets),
            yes_no(m.keeps_gold)
        );
    }
    out.push('\n');
    let measured: Vec<&Mitigation> = j
        .mitigations
        .iter()
        .filter(|m| m.available && !is_jury(m))
        .collect();
    if measured.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| mitigation | artifact | T before → after | WR before → after | flip rate before → after | paired flip test |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for m in measured {
        for a in &m.artifacts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell_text(&id_text(m)),
                cell_text(&a.artifact),
                cell_text(&before_after(a.unmitigated_t, &a.t, true)),
                cell_text(&before_after(a.unmitigated_wr, &a.wr, true)),
                cell_text(&before_after(a.unmitigated_flip_rate, &a.flip_rate, false)),
                cell_text(&test_text(a))
            );
        }
    }
    for m in j.mitigations.iter().filter(|m| m.available) {
        if let Some(note) = &m.note {
            let _ = writeln!(out, "\n- {}: {}", escape(&m.id), escape(note));
        }
    }
    out.push('\n');
}

fn sim_tag() -> Markup {
    html! { span.sim title="a simulated reference judge with planted biases, not a language model" { "SIMULATED" } }
}

/// The HTML section (tables only; every cell's text is escaped).
pub fn html(s: &MitigationSection) -> Markup {
    html! {
        section #mitigations {
            h2 { "Mitigations (post hoc)" }
            p.note { b { (Text(&s.note)) } }
            p.intro { (Text(&intro(s))) }
            @if has_new_call(s) { p.note { (Text(NEW_CALL_NOTE)) } }
            @for j in &s.judges {
                h3 { span.jn { (Text(&j.judge)) } @if j.simulated { " " (sim_tag()) } " · mitigations (post hoc)" }
                p {
                    "Significant artifacts to remove: "
                    @if j.targets.is_empty() { "none" } @else { (Text(&j.targets.join(", "))) }
                    ". " b { "Recommended (post hoc): " } (Text(&j.recommendation)) "."
                }
                div.table-wrap { table.mitigations {
                    caption { "Mitigations of " (Text(&j.judge)) ", ranked by bias removed per extra call (post hoc)" }
                    thead { tr {
                        th scope="col" { "rank" } th scope="col" { "mitigation" } th scope="col" { "cost" }
                        th scope="col" { "mean |T| before → after" } th scope="col" { "bias removed per extra call" }
                        th scope="col" { "gold accuracy (change)" } th scope="col" { "removes targets" } th scope="col" { "keeps gold" }
                    } }
                    tbody {
                        @for m in &j.mitigations {
                            tr {
                                td { (m.rank.map_or("–".into(), |r| r.to_string())) }
                                th scope="row" { (Text(&m.label)) }
                                td { (Text(&cost_text(m))) }
                                @if m.available {
                                    td { (opt(m.unmitigated_bias, rate)) " → " (opt(m.residual_bias, rate)) }
                                    td { (opt(m.bias_removed_per_extra_call, signed)) }
                                    td { (Text(&gold_text(m))) }
                                    td { (yes_no(m.removes_targets)) }
                                    td { (yes_no(m.keeps_gold)) }
                                } @else {
                                    td colspan="5" class="note" { "not available: " (Text(m.note.as_deref().unwrap_or(""))) }
                                }
                            }
                        }
                    }
                } }
                div.table-wrap { table.mitigations {
                    caption { "Residual effects of " (Text(&j.judge)) " per mitigation and artifact (95% intervals, n = mitigated verdicts)" }
                    thead { tr {
                        th scope="col" { "mitigation" } th scope="col" { "artifact" } th scope="col" { "T before → after" }
                        th scope="col" { "WR before → after" } th scope="col" { "flip rate before → after" } th scope="col" { "paired flip test" }
                    } }
                    tbody {
                        @for m in j.mitigations.iter().filter(|m| m.available && !is_jury(m)) {
                            @for a in &m.artifacts {
                                tr {
                                    th scope="row" { (Text(&m.id)) }
                                    td { (Text(&a.artifact)) }
                                    td { (Text(&before_after(a.unmitigated_t, &a.t, true))) }
                                    td { (Text(&before_after(a.unmitigated_wr, &a.wr, true))) }
                                    td { (Text(&before_after(a.unmitigated_flip_rate, &a.flip_rate, false))) }
                                    td { (Text(&test_text(a))) }
                                }
                            }
                        }
                    }
                } }
                @let notes: Vec<&Mitigation> = j.mitigations.iter().filter(|m| m.available && m.note.is_some()).collect();
                @if !notes.is_empty() {
                    ul { @for m in notes { li { (Text(&m.id)) ": " (Text(m.note.as_deref().unwrap_or(""))) } } }
                }
            }
        }
    }
}

/// A row of the section: `judge` is `judge / mitigation`, condition `post_hoc_mitigation`,
/// kind `mitigation`.
fn row(
    j: &JudgeMitigations,
    m: &Mitigation,
    artifact: &str,
    metric: &'static str,
    n: Option<u64>,
    e: &Estimate,
) -> Row {
    Row {
        judge: format!("{} / {}", j.judge, m.id),
        simulated: j.simulated,
        artifact: artifact.to_string(),
        condition: if m.post_hoc {
            "post_hoc_mitigation"
        } else {
            "new_call_mitigation"
        },
        metric,
        n,
        estimate: e.estimate,
        ci_low: e.ci_low,
        ci_high: e.ci_high,
        p_value: e.p_value,
        p_adjusted: None,
        kind: "mitigation",
    }
}

fn bare(v: Option<f64>) -> Estimate {
    Estimate {
        estimate: v,
        ..Estimate::default()
    }
}

/// Metrics written per available mitigation (judge / mitigation, empty artifact), in order.
pub const MITIGATION_METRICS: [&str; 8] = [
    "cost_calls",
    "cost_tokens",
    "gold_accuracy",
    "gold_accuracy_change",
    "residual_bias",
    "bias_removed_per_extra_call",
    "rank",
    "recommended",
];

/// Metrics written per artifact of the judge's own mitigations (a jury's are its own rows).
pub const MITIGATED_ARTIFACT_METRICS: [&str; 4] = ["T", "WR", "flip_rate", "flip_test"];

/// The section's rows of `results.csv`: per judge and available mitigation the
/// [`MITIGATION_METRICS`] (`recommended`: 1 for the recommended one, else 0), then, for the
/// judge's own mitigations (not the referenced juries, whose effects are their rows of kind
/// `jury`), the [`MITIGATED_ARTIFACT_METRICS`] per artifact (`flip_test`: n = pairs, estimate =
/// mean per-pair reduction of the flip share, p_value = the exact sign test's raw p). Values
/// that do not exist are empty cells.
pub fn csv_rows(s: &MitigationSection) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in &s.judges {
        for m in j.mitigations.iter().filter(|m| m.available) {
            let recommended = j.recommended.as_deref() == Some(m.id.as_str());
            let values = [
                bare(Some(m.cost_calls)),
                bare(m.cost_tokens),
                m.gold_accuracy.clone(),
                bare(m.gold_accuracy_change),
                bare(m.residual_bias),
                bare(m.bias_removed_per_extra_call),
                bare(m.rank.map(f64::from)),
                bare(Some(if recommended { 1.0 } else { 0.0 })),
            ];
            for (metric, e) in MITIGATION_METRICS.into_iter().zip(&values) {
                let n = (metric == "gold_accuracy").then_some(e.n);
                rows.push(row(j, m, "", metric, n, e));
            }
            if is_jury(m) {
                continue;
            }
            for a in &m.artifacts {
                let id = a.artifact.as_str();
                rows.push(row(j, m, id, "T", Some(a.t.n), &a.t));
                rows.push(row(j, m, id, "WR", Some(a.wr.n), &a.wr));
                rows.push(row(
                    j,
                    m,
                    id,
                    "flip_rate",
                    Some(a.flip_rate.n),
                    &a.flip_rate,
                ));
                let test = a.flip_test.as_ref();
                let e = Estimate {
                    estimate: test.and_then(|t| t.mean_reduction),
                    p_value: test.map(|t| t.p_value),
                    ..Estimate::default()
                };
                rows.push(row(j, m, id, "flip_test", test.map(|t| t.pairs), &e));
            }
        }
    }
    rows
}
