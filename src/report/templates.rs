//! The judge-prompt sensitivity section of every report ([`crate::analyze::templates`]): per judge
//! with template variants, each template's valid / invalid / failed baseline calls, gold accuracy
//! and trust verdict, the agreement across templates (Fleiss' κ, Krippendorff's α, the template
//! share of verdict variance), every template pair's flip rate with the noise floor, the spread
//! of each artifact's T, and the finding. Markdown and HTML here; the CSV rows in [`csv_rows`].

use super::csv::Row;
use super::format::{interval, opt, rate, signed, value};
use super::markdown::{cell_text, escape};
use super::text::Text;
use crate::analyze::Estimate;
use crate::analyze::templates::{JudgeTemplates, TemplateSection};
use maud::{Markup, html};
use std::fmt::Write;

fn num(v: Option<f64>) -> String {
    opt(v, |x| format!("{x:.3}"))
}

fn rate_ci(e: &Estimate) -> String {
    match e.estimate {
        Some(v) => format!("{} {}", value(v, false), interval(e, false)),
        None => "not measured".into(),
    }
}

fn summary_line(j: &JudgeTemplates) -> String {
    let a = &j.agreement;
    format!(
        "{} items (baseline calls on identical inputs), {} rated validly by every template; \
         Fleiss' κ {}, Krippendorff's α {}, template share of verdict variance {}; noise floor \
         (primary template, repeat to repeat) {}; gold accuracy range across templates {}; \
         trust verdict changes with the template: {}.",
        a.items,
        a.complete_items,
        num(a.fleiss_kappa),
        num(a.krippendorff_alpha),
        opt(a.template_variance_share, rate),
        j.noise_floor
            .as_ref()
            .map_or("n/a (one repeat)".into(), rate_ci),
        opt(j.gold_accuracy_range, rate),
        match j.trust_changes {
            Some(true) => "yes",
            Some(false) => "no",
            None => "not compared (the variants made the baseline calls only)",
        }
    )
}

fn flip_cell(p: &crate::analyze::templates::TemplatePairFlip) -> String {
    format!(
        "{} of {} ({} pairs): {}",
        p.flips,
        p.comparisons,
        p.pairs,
        rate_ci(&p.rate)
    )
}

/// The Markdown section.
pub fn markdown(s: &TemplateSection) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# Template sensitivity\n");
    let _ = writeln!(
        out,
        "Template variants audited with `design.templates = \"{}\"`. {}\n",
        escape(&s.design),
        escape(&s.note)
    );
    for j in &s.judges {
        let _ = writeln!(
            out,
            "## {}{} · template sensitivity\n",
            escape(&j.judge),
            if j.simulated { " (simulated)" } else { "" }
        );
        if let Some(f) = &j.finding {
            let _ = writeln!(out, "**{}**\n", escape(f));
        } else {
            let _ = writeln!(
                out,
                "No template dependence beyond the noise floor was found.\n"
            );
        }
        let _ = writeln!(out, "{}\n", escape(&summary_line(j)));
        let _ = writeln!(
            out,
            "| template | judge | valid | invalid | failed | gold accuracy | trust | artifacts measured |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
        for t in &j.templates {
            let _ = writeln!(
                out,
                "| {}{} | {} | {} | {} | {} | {} | {} | {} |",
                cell_text(&t.template),
                if t.primary { " (primary)" } else { "" },
                cell_text(&t.judge),
                t.valid,
                t.invalid,
                t.failed,
                cell_text(&rate_ci(&t.gold_accuracy)),
                t.trust,
                t.artifacts_measured
            );
        }
        out.push('\n');
        let _ = writeln!(out, "| template pair | flips on identical inputs |");
        let _ = writeln!(out, "|---|---|");
        for (i, p) in j.agreement.pairs.iter().enumerate() {
            let worst = if j.agreement.worst_pair == Some(i) {
                " (worst)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {} vs {}{} | {} |",
                cell_text(&p.a),
                cell_text(&p.b),
                worst,
                cell_text(&flip_cell(p))
            );
        }
        out.push('\n');
        if !j.artifacts.is_empty() {
            let names: Vec<&str> = j.templates.iter().map(|t| t.template.as_str()).collect();
            let _ = writeln!(
                out,
                "| artifact | {} | range |",
                names
                    .iter()
                    .map(|n| format!("T {}", cell_text(n)))
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            let _ = writeln!(out, "|---|{}---|", "---|".repeat(names.len()));
            for a in &j.artifacts {
                let _ = writeln!(
                    out,
                    "| {} | {} | {} |",
                    cell_text(&a.artifact),
                    a.t.iter()
                        .map(|t| opt(*t, signed))
                        .collect::<Vec<_>>()
                        .join(" | "),
                    rate(a.range)
                );
            }
            out.push('\n');
        }
    }
    out
}

fn sim_tag() -> Markup {
    html! { span.sim title="a simulated reference judge with planted biases, not a language model" { "SIMULATED" } }
}

/// The HTML section (every cell's text is escaped).
pub fn html(s: &TemplateSection) -> Markup {
    html! {
        section #templates {
            h2 { "Template sensitivity" }
            p.intro { "Template variants audited with design.templates = \"" (Text(&s.design)) "\". " (Text(&s.note)) }
            @for j in &s.judges {
                h3 { span.jn { (Text(&j.judge)) } @if j.simulated { " " (sim_tag()) } " · template sensitivity" }
                @if let Some(f) = &j.finding { p { b { (Text(f)) } } }
                @else { p { "No template dependence beyond the noise floor was found." } }
                p { (Text(&summary_line(j))) }
                div.table-wrap { table.templates {
                    caption { "Templates of " (Text(&j.judge)) ": baseline calls and verdicts per template" }
                    thead { tr {
                        th scope="col" { "template" } th scope="col" { "judge" } th scope="col" { "valid" }
                        th scope="col" { "invalid" } th scope="col" { "failed" } th scope="col" { "gold accuracy" }
                        th scope="col" { "trust" } th scope="col" { "artifacts measured" }
                    } }
                    tbody {
                        @for t in &j.templates {
                            tr {
                                th scope="row" { (Text(&t.template)) @if t.primary { " (primary)" } }
                                td { (Text(&t.judge)) } td { (t.valid) } td { (t.invalid) } td { (t.failed) }
                                td { (Text(&rate_ci(&t.gold_accuracy))) } td { (Text(&t.trust)) } td { (t.artifacts_measured) }
                            }
                        }
                    }
                } }
                div.table-wrap { table.templates {
                    caption { "Flips between templates on identical inputs (95% pair-clustered intervals)" }
                    thead { tr { th scope="col" { "template pair" } th scope="col" { "flips" } } }
                    tbody {
                        @for (i, p) in j.agreement.pairs.iter().enumerate() {
                            tr {
                                th scope="row" { (Text(&p.a)) " vs " (Text(&p.b)) @if j.agreement.worst_pair == Some(i) { " (worst)" } }
                                td { (Text(&flip_cell(p))) }
                            }
                        }
                    }
                } }
                @if !j.artifacts.is_empty() {
                    div.table-wrap { table.templates {
                        caption { "T per template and its range" }
                        thead { tr {
                            th scope="col" { "artifact" }
                            @for t in &j.templates { th scope="col" { "T " (Text(&t.template)) } }
                            th scope="col" { "range" }
                        } }
                        tbody {
                            @for a in &j.artifacts {
                                tr {
                                    th scope="row" { (Text(&a.artifact)) }
                                    @for t in &a.t { td { (opt(*t, signed)) } }
                                    td { (rate(a.range)) }
                                }
                            }
                        }
                    } }
                }
            }
        }
    }
}

fn row(
    judge: String,
    simulated: bool,
    artifact: &str,
    metric: &'static str,
    n: Option<u64>,
    e: &Estimate,
) -> Row {
    Row {
        judge,
        simulated,
        artifact: artifact.to_string(),
        condition: "template_sensitivity",
        metric,
        n,
        estimate: e.estimate,
        ci_low: e.ci_low,
        ci_high: e.ci_high,
        p_value: None,
        p_adjusted: None,
        kind: "template",
    }
}

fn bare(v: Option<f64>) -> Estimate {
    Estimate {
        estimate: v,
        ..Estimate::default()
    }
}

/// The section's rows of `results.csv` (kind `template`, condition `template_sensitivity`): per
/// judge (`judge` cell = the judge) `fleiss_kappa`, `krippendorff_alpha` (n = complete items /
/// items), `template_variance_share`, `noise_floor`, `gold_accuracy_range`,
/// `depends_on_template` (1 or 0); per template (`judge / template`) `invalid_count` and
/// `failed_count` (n = items); per template pair (`judge / a vs b`) `flip_rate` (n =
/// comparisons); per artifact `T_range`. Values that do not exist are empty cells.
pub fn csv_rows(s: &TemplateSection) -> Vec<Row> {
    let mut rows = Vec::new();
    for j in &s.judges {
        let a = &j.agreement;
        let sim = j.simulated;
        let name = || j.judge.clone();
        rows.push(row(
            name(),
            sim,
            "",
            "fleiss_kappa",
            Some(a.complete_items),
            &bare(a.fleiss_kappa),
        ));
        rows.push(row(
            name(),
            sim,
            "",
            "krippendorff_alpha",
            Some(a.items),
            &bare(a.krippendorff_alpha),
        ));
        rows.push(row(
            name(),
            sim,
            "",
            "template_variance_share",
            Some(a.complete_items),
            &bare(a.template_variance_share),
        ));
        if let Some(n) = &j.noise_floor {
            rows.push(row(name(), sim, "", "noise_floor", Some(n.n), n));
        }
        rows.push(row(
            name(),
            sim,
            "",
            "gold_accuracy_range",
            None,
            &bare(j.gold_accuracy_range),
        ));
        rows.push(row(
            name(),
            sim,
            "",
            "depends_on_template",
            None,
            &bare(Some(if j.depends_on_template { 1.0 } else { 0.0 })),
        ));
        for t in &j.templates {
            let who = format!("{} / {}", j.judge, t.template);
            rows.push(row(
                who.clone(),
                sim,
                "",
                "invalid_count",
                Some(a.items),
                &bare(Some(t.invalid as f64)),
            ));
            rows.push(row(
                who,
                sim,
                "",
                "failed_count",
                Some(a.items),
                &bare(Some(t.failed as f64)),
            ));
        }
        for p in &a.pairs {
            let who = format!("{} / {} vs {}", j.judge, p.a, p.b);
            rows.push(row(who, sim, "", "flip_rate", Some(p.comparisons), &p.rate));
        }
        for art in &j.artifacts {
            rows.push(row(
                name(),
                sim,
                &art.artifact,
                "T_range",
                None,
                &bare(Some(art.range)),
            ));
        }
    }
    rows
}
