//! `report.html`: one self-contained page (no script, no external asset, no network) with the
//! verdicts, inline SVG charts and the flipped examples.
//!
//! The page is a maud template: markup is checked at compile time and every string from a
//! summary (answers, prompts, names, reasons, categories) is spliced as [`Text`], which makes bidi
//! and control characters visible and then applies maud's escaping. The charts are SVG built by
//! `report::charts` with the same escaper and spliced as pre-escaped markup. A
//! Content-Security-Policy forbids scripts in case escaping ever failed.

use super::charts;
use super::format::{
    counted, estimate as est_text, interval as ci_text, opt, rate as pct, signed as spct,
};
use super::text::Text;
use super::view::artifact_ids;
use super::{ReportView, Section, Summary};
use crate::analyze::{Estimate, JudgeResult, Trust};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::ops::Range;

/// Characters of an answer shown before it is truncated.
pub const DISPLAY_LIMIT: usize = 4000;

/// The Content-Security-Policy of the page: no script can run, nothing is fetched.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Escape text for HTML and SVG (see [`super::text::html`], the one escaping place).
pub use super::text::html as escape;

/// `12345` → `12,345` (see [`super::format::count`]).
pub use super::format::count as thousands;

/// Render `text` escaped, with the byte `ranges` wrapped in `<mark>`, showing at most `limit`
/// characters. Ranges that are empty, out of bounds or not on character boundaries are ignored
/// (and said so); overlapping ranges are merged; ranges are clipped at the truncation point so the
/// highlight always matches the text shown.
pub fn highlighted(text: &str, ranges: &[Range<usize>], limit: usize) -> String {
    highlighted_markup(text, ranges, limit).into_string()
}

fn highlighted_markup(text: &str, ranges: &[Range<usize>], limit: usize) -> Markup {
    let mut ignored = 0usize;
    let mut valid: Vec<Range<usize>> = Vec::new();
    for r in ranges {
        if r.start == r.end {
            continue;
        }
        if r.start > r.end
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            ignored += 1;
            continue;
        }
        valid.push(r.clone());
    }
    valid.sort_by_key(|r| (r.start, r.end));
    let mut merged: Vec<Range<usize>> = Vec::new();
    for r in valid {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    let cut = text
        .char_indices()
        .nth(limit)
        .map(|(i, _)| i)
        .unwrap_or(text.len());
    // (text, marked) segments of the part shown.
    let mut segments: Vec<(&str, bool)> = Vec::new();
    let mut pos = 0;
    let mut beyond = 0usize;
    for r in &merged {
        if r.start >= cut {
            beyond += 1;
            continue;
        }
        segments.push((&text[pos..r.start], false));
        let end = r.end.min(cut);
        segments.push((&text[r.start..end], true));
        pos = end;
    }
    if pos < cut {
        segments.push((&text[pos..cut], false));
    }
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    html! {
        @for (part, marked) in &segments {
            @if *marked { mark { (Text(part)) } } @else if !part.is_empty() { (Text(part)) }
        }
        @if cut < text.len() {
            span.note { " … (truncated, " (thousands(text.chars().count() as u64)) " characters in total)" }
        }
        @if beyond > 0 {
            span.note { " (" (beyond) " injected span" (plural(beyond)) " beyond the part shown)" }
        }
        @if ignored > 0 {
            span.note { " (" (ignored) " highlight range" (plural(ignored)) " ignored: outside the text or not on a character boundary)" }
        }
    }
}

/// An estimate: value, then interval and n in muted type.
fn est_html(e: &Estimate, signed: bool) -> Markup {
    html! {
        @match e.estimate {
            Some(v) => { span.v { (super::format::value(v, signed)) } " " span.ci { (ci_text(e, signed)) } }
            None => { span.na { "n/a" } " " span.ci { "n=" (e.n) } }
        }
    }
}

/// Holm significance marker.
fn star(e: &Estimate) -> &'static str {
    if e.significant() { "✱" } else { "" }
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

fn judge_name(name: &str, simulated: bool) -> Markup {
    html! { span.jn { (Text(name)) } @if simulated { " " (sim_tag()) } }
}

/// The page's style sheet, kept as its own file and included at build time (the page stays one
/// self-contained file under the CSP).
const STYLE: &str = include_str!("report.css");

/// Shading of a jury's own row in the jury tables.
const JURY_ROW: &str = "background:#f6f8fa";

/// `report.html`.
pub struct HtmlExporter;

impl super::Exporter for HtmlExporter {
    fn format(&self) -> super::Format {
        super::Format::Html
    }

    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>> {
        Ok(render_view(view).into_bytes())
    }
}

/// Render `report.html` for `summary`.
pub fn render(summary: &Summary) -> String {
    render_view(&ReportView::new(summary))
}

/// A chart module's SVG, spliced as markup (the chart escaped its own text).
fn chart(f: fn(&mut String, &Summary), s: &Summary) -> PreEscaped<String> {
    let mut out = String::new();
    f(&mut out, s);
    PreEscaped(out)
}

/// Render `report.html` for a view.
pub fn render_view(view: &ReportView<'_>) -> String {
    let s = view.summary;
    let composer_result = s
        .jury
        .as_ref()
        .and_then(|j| j.composer.as_ref())
        .filter(|_| view.has(Section::Composer));
    let agreement_result = s
        .agreement
        .as_ref()
        .filter(|_| view.has(Section::Agreement));
    let page = html! {
        (DOCTYPE) "\n"
        html lang="en" {
            "\n"
            head {
                "\n" meta charset="utf-8";
                "\n" meta http-equiv="Content-Security-Policy" content=(CSP);
                "\n" meta name="viewport" content="width=device-width, initial-scale=1";
                "\n" meta name="generator" content={ "judge-audit " (Text(&s.tool.version)) };
                "\n" title { "judge-audit report: " (Text(&s.dataset.name)) }
                "\n" style { (PreEscaped(STYLE)) }
                "\n"
            }
            "\n"
            body {
                (header(view)) "\n"
                main.wrap {
                    @if view.has(Section::Warnings) { (warnings(view.warnings())) "\n" }
                    (verdicts(s)) "\n"
                    @if let Some(q) = s.sequential.as_ref().filter(|_| view.has(Section::Sequential)) { (sequential(q)) "\n" }
                    (chart(charts::heatmaps, s))
                    (chart(charts::forest, s))
                    (chart(charts::position, s))
                    @if view.has(Section::Juries) { (jury(s)) "\n" }
                    @if let Some(p) = s.pointwise.as_ref().filter(|_| view.has(Section::Pointwise)) { (super::pointwise::html(p)) "\n" }
                    @if let Some(a) = agreement_result { (agreement(a)) "\n" }
                    @if let Some(c) = composer_result { (composer(c)) "\n" }
                    @if let Some(m) = s.mitigations.as_ref().filter(|_| view.has(Section::Mitigations)) { (super::mitigation::html(m)) "\n" }
                    @if let Some(t) = &s.templates { (super::templates::html(t)) "\n" }
                    (categories(s)) "\n"
                    (details(s)) "\n"
                    (examples(s)) "\n"
                    @if let Some(rw) = s.rewrites.as_ref().filter(|_| view.has(Section::Rewrites)) { (super::rewrites::html(rw)) "\n" }
                    (metadata(view)) "\n"
                    footer {
                        "Generated by judge-audit " (Text(&s.tool.version)) " from summary.json (schema version "
                        (s.schema_version) "). This page is self-contained: it loads nothing and runs no script."
                    }
                }
            }
        }
        "\n"
    };
    page.into_string()
}

fn header(view: &ReportView<'_>) -> Markup {
    let s = view.summary;
    let judges = s.judges.len() + s.pointwise.as_ref().map_or(0, |p| p.judges.len());
    let artifacts = s.plan.artifacts.len();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let simulated = super::view::simulated_judges(s);
    let one = simulated.len() == 1;
    html! {
        header.top { div.wrap {
            h1 { "judge-audit report" }
            p.meta-line {
                "Dataset " b { (Text(&s.dataset.name)) } " · " (thousands(s.dataset.pairs as u64)) " pairs · "
                (judges) " judge" (plural(judges)) " × " (artifacts) " artifact" (plural(artifacts)) " · "
                (thousands(s.plan.total_calls as u64)) " calls · seed " (s.seed) " · judge-audit " (Text(&s.tool.version))
            }
            @if !simulated.is_empty() {
                p.banner {
                    (sim_tag()) " "
                    @for (k, name) in simulated.iter().enumerate() {
                        @if k > 0 { ", " }
                        b { (Text(name)) }
                    }
                    (if one { " is a" } else { " are" }) " simulated reference judge" (if one { "" } else { "s" })
                    " with planted biases, not language model" (if one { "" } else { "s" })
                    ". Their results show what the audit can detect, not how any real model behaves."
                }
            }
            nav.toc aria-label="Sections" {
                a href="#verdicts" { "Verdicts" }
                a href="#effects" { "Effects" }
                a href="#flips" { "Flip rates" }
                a href="#position" { "Position bias" }
                @if view.has(Section::Juries) { a href="#jury" { "Jury vs jurors" } }
                @if view.has(Section::Pointwise) { a href="#pointwise" { "Pointwise judges" } }
                @if view.has(Section::Agreement) { a href="#agreement" { "Agreement" } }
                @if view.has(Section::Composer) { a href="#composer" { "Jury composer" } }
                @if view.has(Section::Mitigations) { a href="#mitigations" { "Mitigations" } }
                @if s.templates.is_some() { a href="#templates" { "Template sensitivity" } }
                a href="#categories" { "Categories" }
                a href="#details" { "Detailed results" }
                a href="#examples" { "Flipped examples" }
                @if view.has(Section::Rewrites) { a href="#rewrites" { "Rewrites" } }
                a href="#metadata" { "Run metadata" }
            }
        } }
    }
}

fn verdicts(s: &Summary) -> Markup {
    html! {
        section #verdicts {
            h2 { "Verdicts" }
            p.intro { "ADOPT: no threshold failed. CAUTION: an artifact effect is significant after Holm correction, or a soft threshold failed. REJECT: a hard threshold failed. The reasons list the numbers behind each verdict; the thresholds are set in " code { "audit.toml" } " under " code { "[trust]" } "." }
            div.cards {
                @for j in &s.judges {
                    article class={ "card " (verdict_class(j.trust.verdict)) } {
                        h3 { (judge_name(&j.name, j.simulated)) (badge(j.trust.verdict)) }
                        @if let Some(reason) = &j.stopped { p.note { "Stopped: " (Text(reason)) } }
                        ul {
                            @if j.trust.reasons.is_empty() { li { "Every check passed." } }
                            @for r in &j.trust.reasons {
                                li { span class={ "sev " (verdict_class(r.severity)) } { (r.severity.label()) } " " (Text(&r.text)) }
                            }
                        }
                        @if !j.trust.passed.is_empty() {
                            div.passed {
                                "Passed: "
                                @for (k, p) in j.trust.passed.iter().enumerate() { @if k > 0 { "; " } (Text(p)) }
                                "."
                            }
                        }
                        div.stats {
                            "Position consistency " (est_text(&j.baseline.position_consistency.rate, false))
                            " · run-to-run flips " (est_text(&j.baseline.noise_flip_rate, false))
                            " · gold accuracy " (est_text(&j.baseline.gold_accuracy, false))
                        }
                    }
                }
            }
        }
    }
}

/// The sequential audit: how it stopped, per judge × artifact.
fn sequential(q: &crate::analyze::sequential::SequentialSummary) -> Markup {
    let saved = 100.0 * (1.0 - q.calls_used as f64 / q.calls_planned.max(1) as f64);
    html! {
        section #sequential {
            h2 { "Sequential audit" }
            p.intro {
                "Stopping rule: " (Text(&q.stopping_rule)) ". Waves of " (q.wave_pairs)
                " pairs in a seeded random order (seed " (q.order_seed) "); " (q.waves_run) " of "
                (q.waves_planned) " waves run; " (q.calls_used) " of " (q.calls_planned)
                " planned calls used (" (format!("{saved:.1}")) "% saved). Anytime-valid: "
                (Text(&q.anytime_valid)) "."
            }
            @if q.budget_exhausted {
                p.note { "The call budget ended the audit: the undecided cells are provisional." }
            }
            table {
                thead { tr {
                    th { "judge" } th { "artifact" } th { "decision" } th { "decided on" }
                    th { "after wave" } th { "pairs" } th { "T" } th { "T anytime-valid" }
                    th { "WR anytime-valid" } th { "flip rate anytime-valid" }
                    th { "excess flip anytime-valid" }
                    th { "calls used / planned" } th { "calls still needed" }
                } }
                tbody {
                    @for c in &q.cells {
                        tr {
                            td { (Text(&c.judge)) } td { (Text(&c.artifact)) } td { (c.decision.name()) }
                            td { @if let Some(r) = &c.decided_on { (Text(r)) } @else { "–" } }
                            td { @if let Some(w) = c.decided_after_wave { (w) } @else { "–" } }
                            td { (c.values.len()) }
                            td { (format!("{:+.3}", c.estimate())) }
                            td { (format!("[{:+.3}, {:+.3}]", c.interval.low, c.interval.high)) }
                            td { (format!("[{:+.3}, {:+.3}]", c.wr_interval.low, c.wr_interval.high)) }
                            td { (format!("[{:.3}, {:.3}]", c.flip_interval.low, c.flip_interval.high)) }
                            td { (format!("[{:+.3}, {:+.3}]", c.excess_flip_interval.low, c.excess_flip_interval.high)) }
                            td { (c.calls_used) " / " (c.calls_planned) }
                            td {
                                @if !c.open() { "–" }
                                @else if let Some(n) = c.calls_needed { (n) }
                                @else { "more than the plan has" }
                            }
                        }
                    }
                }
            }
            @if !q.noise_flip.is_empty() {
                p.meta-line {
                    "Run-to-run flip rate, anytime-valid (the noise the excess flip rate is net of): "
                    @for (k, (judge, n)) in q.noise_flip.iter().enumerate() {
                        @if k > 0 { "; " }
                        (Text(judge)) " " (format!("[{:.3}, {:.3}]", n.interval.low, n.interval.high))
                        " (" (n.pairs) " pairs)"
                    }
                    "."
                }
            }
            @if !q.juries.is_empty() {
                table.sequential-juries {
                    thead { tr {
                        th { "jury" } th { "members" } th { "decided" } th { "after wave" }
                        th { "members' worst level" }
                    } }
                    tbody {
                        @for j in &q.juries {
                            tr {
                                td { (Text(&j.name)) }
                                td { (Text(&j.members.join(", "))) }
                                td { @if j.decided { "yes (every member's cells decided)" } @else { "no" } }
                                td { @if let Some(w) = j.decided_after_wave { (w) } @else { "–" } }
                                td { (j.members_level.label()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn jury(s: &Summary) -> Markup {
    let ids = artifact_ids(s);
    html! {
        section #jury {
            h2 { "Jury vs jurors" }
            p.intro { "A jury aggregates its members' verdicts. If aggregation helps, the jury's artifact effects are smaller and its gold accuracy and position consistency higher than its members'. Every value carries its 95% interval and n; " span.star { "✱" } " marks Holm-adjusted p < 0.05." }
            @for jury in &s.juries {
                @let rows: Vec<(&str, &str, Option<&JudgeResult>)> = std::iter::once((jury.name.as_str(), "jury", Some(jury)))
                    .chain(jury.members.iter().map(|m| (m.as_str(), "juror", s.judges.iter().find(|j| &j.name == m))))
                    .collect();
                h3 { (Text(&jury.name)) }
                @if let Some(rule) = &jury.rule { p.meta-line { "Rule: " (Text(rule)) "." } }
                div.table-wrap { table.jury {
                    thead { tr { th { "judge" } th { "role" } th { "verdict" } th { "gold accuracy" } th { "position consistency" } th { "run-to-run flips" } } }
                    tbody {
                        @for (member, role, j) in &rows {
                            tr style=[(*role == "jury").then_some(JURY_ROW)] {
                                th { (member_name(member, *j)) }
                                td { (role) }
                                @match j {
                                    Some(j) => {
                                        td { (badge(j.trust.verdict)) }
                                        td { (est_html(&j.baseline.gold_accuracy, false)) }
                                        td { (est_html(&j.baseline.position_consistency.rate, false)) }
                                        td { (est_html(&j.baseline.noise_flip_rate, false)) }
                                    }
                                    None => { td colspan="4" class="note" { "not in this summary" } }
                                }
                            }
                        }
                    }
                } }
                "\n"
                div.table-wrap { table class="jury jury-t" {
                    thead {
                        tr { th rowspan="2" { "judge" } th colspan=(ids.len()) { "T (tie detection) per artifact" } }
                        tr { @for a in &ids { th { (Text(a)) } } }
                    }
                    tbody {
                        @for (member, role, j) in &rows {
                            tr style=[(*role == "jury").then_some(JURY_ROW)] {
                                th { (member_name(member, *j)) }
                                @match j {
                                    None => { td colspan=(ids.len()) class="note" { "not in this summary" } }
                                    Some(j) => {
                                        @for a in &ids {
                                            @match j.artifacts.iter().find(|x| &x.artifact == a) {
                                                Some(x) => { (tie_cell(&x.tie_detection.score)) }
                                                None => { td.na { "–" } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                } }
                "\n"
            }
        }
    }
}

fn member_name(member: &str, j: Option<&JudgeResult>) -> Markup {
    match j {
        Some(j) => judge_name(&j.name, j.simulated),
        None => html! { (Text(member)) },
    }
}

/// One T cell of the jury table, lightly tinted so the text stays dark on every value.
fn tie_cell(e: &Estimate) -> Markup {
    let tint = e
        .estimate
        .map(|v| super::svg::diverging(v, 2.0).hex())
        .unwrap_or_else(|| "#ffffff".into());
    html! {
        td style={ "background:" (tint) } {
            @match e.estimate { Some(v) => { span.v { (spct(v)) } } None => { span.na { "n/a" } } }
            span.star { (star(e)) }
            span.ci { (ci_text(e, true)) }
        }
    }
}

fn bar(class: &str, v: Option<f64>) -> Markup {
    let w = v
        .map(|v| (v.clamp(0.0, 1.0) * 100.0).round())
        .unwrap_or(0.0);
    html! { div class={ "bar " (class) } { span style={ "width:" (w) "%" } {} } }
}

fn categories(s: &Summary) -> Markup {
    let mut names: Vec<String> = s.dataset.categories.keys().cloned().collect();
    for j in &s.judges {
        for c in &j.categories {
            if !names.contains(&c.category) {
                names.push(c.category.clone());
            }
        }
    }
    html! {
        section #categories {
            h2 { "By category" }
            p.intro { "Gold accuracy over baseline verdicts (ties count as wrong; green bar) and the flip rate pooled over every text artifact (purple bar), per category of pairs, with 95% intervals and n. Small categories have wide intervals: compare intervals, not point estimates." }
            @if names.is_empty() {
                p.note { "No category information in this summary." }
            } @else {
                (category_table(s, &names, "Gold accuracy", "acc", |c| &c.gold_accuracy)) "\n"
                (category_table(s, &names, "Flip rate (all text artifacts pooled)", "flip", |c| &c.flip_rate)) "\n"
            }
        }
    }
}

fn category_table(
    s: &Summary,
    names: &[String],
    title: &str,
    bar_class: &str,
    pick: fn(&crate::analyze::CategoryResult) -> &Estimate,
) -> Markup {
    let pairs = |name: &String| {
        s.dataset
            .categories
            .get(name)
            .map(|n| *n as u64)
            .or_else(|| {
                s.judges
                    .iter()
                    .find_map(|j| j.categories.iter().find(|c| &c.category == name))
                    .map(|c| c.pairs)
            })
            .unwrap_or(0)
    };
    html! {
        h3 { (title) }
        div.table-wrap { table.cats {
            caption.sr-only { (title) " per category and judge, with 95% intervals and n" }
            thead { tr { th { "category" } th.num { "pairs" } @for j in &s.judges { th { (judge_name(&j.name, j.simulated)) } } } }
            tbody {
                @for name in names {
                    tr {
                        th { (Text(name)) }
                        td.num { (pairs(name)) }
                        @for j in &s.judges {
                            @match j.categories.iter().find(|c| &c.category == name).map(pick) {
                                Some(e) => {
                                    td {
                                        @match e.estimate { Some(v) => { span.v { (pct(v)) } } None => { span.na { "n/a" } } }
                                        " " span.ci { (ci_text(e, false)) }
                                        (bar(bar_class, e.estimate))
                                    }
                                }
                                None => { td.na { "–" } }
                            }
                        }
                    }
                }
            }
        } }
    }
}

fn p_html(e: &Estimate) -> Markup {
    let parts = super::format::p_values(e);
    html! {
        @if !parts.is_empty() {
            div.p { (parts.join(" · ")) @if e.significant() { " " span.star { "✱" } } }
        }
    }
}

/// The minimum detectable effects of one artifact, each in its own unit: effects as
/// percentages, sample sizes as counts, the family as "126 tests", α and power as percentages.
fn mde_html(m: &crate::analyze::Mde) -> Markup {
    html! {
        span.k { "|T|" } " " (opt(m.t, pct)) br;
        span.k { "|T| in family" } " " (opt(m.t_family, pct)) br;
        span.k { "excess flip" } " " (opt(m.excess_flip, pct))
        div.p {
            (counted(m.pairs, "pair")) " · " (counted(m.comparisons, "comparison")) " · family of "
            (counted(m.family_size, "test")) " · α " (pct(m.alpha)) " · power " (pct(m.power))
        }
    }
}

/// Warnings about the run, first on the page.
fn warnings(warnings: &[super::Warning]) -> Markup {
    html! {
        section #warnings {
            h2 { "Warnings" }
            ul.findings {
                @for w in warnings {
                    li { @if let Some(j) = &w.judge { span.jn { (Text(j)) } ": " } (Text(&w.message)) }
                }
            }
        }
    }
}

/// Agreement between judges: pairwise table, then Fleiss' κ and Krippendorff's α.
fn agreement(a: &crate::analyze::AgreementResult) -> Markup {
    use super::format::coef_estimate;
    html! {
        section #agreement {
            h2 { "Agreement between judges" }
            p.intro { "How often the judges give the same verdict on the same call, and the chance-corrected coefficients (κ, π, α: 1 = perfect agreement, 0 = chance). Labels: " (Text(&a.labels)) "." }
            div.table-wrap { table.agreement {
                thead { tr { th { "judge" } th { "judge" } th.num { "items" } th.num { "agreement" } th { "Cohen's κ" } th { "Scott's π" } } }
                tbody {
                    @for p in &a.pairwise {
                        tr {
                            td { span.jn { (Text(&p.judge_a)) } }
                            td { span.jn { (Text(&p.judge_b)) } }
                            td.num { (thousands(p.n)) }
                            td.num { (opt(p.percent, pct)) }
                            td.nw { (coef_estimate(&p.cohen_kappa)) }
                            td.nw { (coef_estimate(&p.scott_pi)) }
                        }
                    }
                }
            } }
            @if let Some(f) = &a.fleiss_kappa {
                p.meta-line { "Fleiss' κ of " (Text(&f.raters.join(", "))) " over " (counted(f.items, "item")) " every rater judged validly: " b { (coef_estimate(&f.value)) } "." }
            }
            @if let Some(k) = &a.krippendorff_alpha {
                p.meta-line { "Krippendorff's α (nominal, missing values allowed) over " (counted(k.items, "item")) ": " b { (coef_estimate(&k.value)) } "." }
            }
        }
    }
}

/// The jury composer's suggestion: the subset of judges whose jury has the smallest artifact
/// effects, with the members' own T beside the jury's.
fn composer(c: &crate::analyze::ComposerResult) -> Markup {
    let sg = &c.suggestion;
    html! {
        section #composer {
            h2 { "Jury composer" }
            p.intro {
                "Suggested jury of " (counted(c.size as u64, "judge")) " (" (counted(c.evaluated as u64, "subset"))
                " evaluated; objective: " (Text(&c.objective)) "): " b { (Text(&sg.members.join(", "))) }
                ", with max |T| " (pct(sg.max_abs_t)) " and max |WR| " (pct(sg.max_abs_wr)) ". " (Text(&c.note))
            }
            div.table-wrap { table.composer {
                thead { tr { th { "artifact" } th { "jury T" } th { "jury WR" } @for m in &sg.members { th { "T of " span.jn { (Text(m)) } } } } }
                tbody {
                    @for (k, artifact) in c.artifacts.iter().enumerate() {
                        tr {
                            th { (Text(artifact)) }
                            td { (opt(sg.t.get(k).copied().flatten(), spct)) }
                            td { (opt(sg.wr.get(k).copied().flatten(), spct)) }
                            @for m in &sg.members {
                                td { (opt(c.member_t.get(m).and_then(|v| v.get(k).copied().flatten()), spct)) }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn details(s: &Summary) -> Markup {
    html! {
        section #details {
            h2 { "Detailed results" }
            p.intro { "Every estimate with its 95% interval and the number of observations n. Under each estimate: the raw p-value · Holm-adjusted within its family (by default each judge's artifact × {T, WR, flip} tests; " code { "[design] multiplicity = \"run\"" } " pools the run) (and the BH q-value where the analysis provides one). " i { "Excess" } " is the artifact's flip rate minus the judge's run-to-run flip rate (paired cluster bootstrap)." }
            @for (index, j) in s.judges.iter().enumerate() {
                // Ids are positional: data never reaches an attribute.
                h3 id={ "judge-" (index) } { (judge_name(&j.name, j.simulated)) " " (badge(j.trust.verdict)) }
                @if !j.findings.is_empty() {
                    ul.findings { @for f in &j.findings { li { (Text(f)) } } }
                }
                div.table-wrap { table.results {
                    thead { tr {
                        th { "artifact" } th { "T (tie detection)" } th { "WR (winrate shift)" } th { "flip rate" }
                        th { "excess over noise" } th { "minimum detectable effect" }
                        @if j.simulated { th { "planted T" } }
                    } }
                    tbody {
                        @for a in &j.artifacts {
                            tr {
                                th { (Text(&a.artifact)) }
                                td { (est_html(&a.tie_detection.score, true)) (p_html(&a.tie_detection.score)) }
                                td { (est_html(&a.winrate_shift.shift, true)) (p_html(&a.winrate_shift.shift)) }
                                td {
                                    (est_html(&a.flip_rate.rate, false))
                                    div.p { (a.flip_rate.toward) " toward · " (a.flip_rate.away) " away" }
                                    (p_html(&a.flip_rate.rate))
                                }
                                td { (est_html(&a.excess_flip_rate, true)) }
                                td.mde { (mde_html(&a.mde)) }
                                @if j.simulated {
                                    @match &a.planted {
                                        Some(p) => { td.nw { (spct(p.value)) div.p { (if p.recovered { "inside T's CI" } else { "OUTSIDE T's CI" }) } } }
                                        None => { td.na { "–" } }
                                    }
                                }
                            }
                        }
                    }
                } }
                (baseline_line(j)) "\n"
            }
        }
    }
}

fn baseline_line(j: &JudgeResult) -> Markup {
    let b = &j.baseline;
    let pc = &b.position_consistency;
    let c = &j.calls;
    html! {
        p.meta-line {
            "Baseline: position consistency " (est_text(&pc.rate, false)) " (first slot both times " (pc.prefers_first)
            ", second " (pc.prefers_second) ", win/tie mix " (pc.other) ", error " (pc.error) "); run-to-run flip rate "
            (est_text(&b.noise_flip_rate, false)) "; gold accuracy " (est_text(&b.gold_accuracy, false)) "; "
            (b.invalid) " unparseable baseline verdicts. Calls: " (thousands(c.planned)) " planned, " (thousands(c.completed))
            " completed, " (thousands(c.failed)) " failed, " (thousands(c.invalid)) " unparseable (counted, never coerced)."
        }
    }
}

fn examples(s: &Summary) -> Markup {
    let simulated = |name: &str| {
        s.judges
            .iter()
            .find(|j| j.name == name)
            .map(|j| j.simulated)
            .or_else(|| {
                s.judge_configs
                    .iter()
                    .find(|j| j.name == name)
                    .map(|j| j.simulated)
            })
            .unwrap_or(false)
    };
    // A judge heading before each judge's first example.
    let heads: Vec<bool> = s
        .examples
        .iter()
        .enumerate()
        .map(|(k, ex)| k == 0 || s.examples[k - 1].judge != ex.judge)
        .collect();
    html! {
        section #examples {
            h2 { "Flipped examples" }
            p.intro { "Verdicts that changed when the artifact was added (up to a few per judge and artifact, in plan order). The injected or moved text is " mark { "highlighted" } ". " i { "Before" } " and " i { "after" } " are the outcome for the perturbed answer in the same presentation order." }
            @if s.examples.is_empty() { p.note { "No verdict flipped." } }
            @for (ex, head) in s.examples.iter().zip(&heads) {
                @if *head { h3 { (judge_name(&ex.judge, simulated(&ex.judge))) } }
                article.example {
                    div.head {
                        span { b { (Text(&ex.artifact)) } }
                        span { "pair " span.mono { (Text(&ex.pair_id)) } }
                        span { "answer " (ex.side.letter()) " perturbed, order " (ex.order.name()) }
                        span { "before: " b { (Text(&ex.before)) } " → after: " b { (Text(&ex.after)) } }
                        @match ex.direction.as_str() {
                            "toward" => { span.dir-toward { "toward the perturbed answer" } }
                            "away" => { span.dir-away { "away from the perturbed answer" } }
                            other => { span.dir-away { (Text(other)) } }
                        }
                    }
                    div.prompt { b { "Prompt:" } " " (highlighted_markup(&ex.prompt, &[], DISPLAY_LIMIT)) }
                    div.cols {
                        div.col { h4 { "Original answer " (ex.side.letter()) } div.answer { (highlighted_markup(&ex.original, &[], DISPLAY_LIMIT)) } }
                        div.col { h4 { "With the artifact" } div.answer { (highlighted_markup(&ex.perturbed, &ex.injected, DISPLAY_LIMIT)) } }
                    }
                    div.other {
                        div.col { h4 { "The other answer " (ex.side.other().letter()) " (unchanged)" } div.answer { (highlighted_markup(&ex.other, &[], DISPLAY_LIMIT)) } }
                    }
                }
                "\n"
            }
        }
    }
}

fn metadata(view: &ReportView<'_>) -> Markup {
    let s = view.summary;
    let mut names: Vec<&str> = s.judge_configs.iter().map(|j| j.name.as_str()).collect();
    for j in &s.judges {
        if !names.contains(&j.name.as_str()) {
            names.push(&j.name);
        }
    }
    html! {
        section #metadata {
            h2 { "Run metadata" }
            div.table-wrap { table.kv { tbody {
                tr { th { "tool" } td { (Text(&s.tool.name)) " " (Text(&s.tool.version)) } }
                tr { th { "summary schema version" } td { (s.schema_version) } }
                tr { th { "seed" } td { (s.seed) } }
                tr { th { "dataset" } td { (Text(&s.dataset.name)) } }
                tr { th { "dataset sha256" } td { span.mono { (Text(&s.dataset.hash)) } } }
                tr { th { "pairs" } td { (s.dataset.pairs) " used, " (s.dataset.skipped) " skipped as invalid" } }
                tr { th { "categories" } td {
                    @if s.dataset.categories.is_empty() { "–" }
                    @for (k, (name, n)) in s.dataset.categories.iter().enumerate() { @if k > 0 { ", " } (Text(name)) " (" (n) ")" }
                } }
                tr { th { "design" } td {
                    (s.plan.repeats) " baseline repeats per order; tie detection on " (Text(&s.plan.tie_targets))
                    " answers; " (thousands(s.plan.total_calls as u64)) " calls planned"
                } }
                tr { th { "artifacts" } td { @for (k, a) in s.plan.artifacts.iter().enumerate() { @if k > 0 { ", " } (Text(a)) } } }
            } } }
            "\n"
            h3 { "Judges" }
            div.table-wrap { table.judges {
                thead { tr { th { "judge" } th { "backend · model" } th { "template · sha256" } th { "calls" } th { "tokens" } th { "faults (every failed attempt)" } th { "cost" } } }
                tbody { @for name in names { (judge_row(s, name, view.prices.get(name))) } }
            } }
            "\n"
            h3 { "Artifacts" }
            div.table-wrap { table {
                thead { tr { th { "id" } th { "title" } th { "operation" } th { "source" } th { "expected effect" } } }
                tbody {
                    @for a in &s.artifacts {
                        tr { th { (Text(&a.id)) } td { (Text(&a.title)) } td { (Text(&a.operation)) } td { (Text(&a.source)) } td { (Text(&a.expected_effect)) } }
                    }
                }
            } }
        }
    }
}

/// One row of the judges table: configuration, calls, tokens, faults and cost.
fn judge_row(s: &Summary, name: &str, prices: Option<&crate::judge::config::Pricing>) -> Markup {
    let config = s.judge_configs.iter().find(|c| c.name == name);
    let result = s.judges.iter().find(|j| j.name == name);
    let simulated = config
        .map(|c| c.simulated)
        .or(result.map(|r| r.simulated))
        .unwrap_or(false);
    html! {
        tr {
            th { (judge_name(name, simulated)) }
            @match config {
                Some(c) => {
                    td { (Text(&c.backend)) " · " (Text(&c.model)) }
                    td { (Text(&c.template)) div class="mono sha" { (Text(&c.template_sha256)) } }
                }
                None => { td { "–" } td { "–" } }
            }
            @match result {
                Some(r) => {
                    td.nw {
                        (thousands(r.calls.planned)) " planned"
                        div.p { (thousands(r.calls.completed)) " completed · " (thousands(r.calls.failed)) " failed · " (thousands(r.calls.invalid)) " unparseable" }
                    }
                    td.nw { (thousands(r.calls.input_tokens)) " in" div.p { (thousands(r.calls.output_tokens)) " out" } }
                    td {
                        @if r.faults.is_empty() { "none" }
                        @for (k, (kind, n)) in r.faults.iter().enumerate() { @if k > 0 { ", " } (super::view::fault_name(*kind)) " " (n) }
                        @if let Some(why) = &r.stopped { div.note { "stopped: " (Text(why)) } }
                    }
                    td.nw { (cost(r, prices)) }
                }
                None => { td colspan="4" class="note" { "no results" } }
            }
        }
    }
}

/// An estimate from the judge's configured prices, else a dash.
fn cost(result: &JudgeResult, prices: Option<&crate::judge::config::Pricing>) -> Markup {
    html! {
        @match prices {
            Some(p) => {
                "≈ " (super::format::usd(result.calls.input_tokens as f64 / 1e6 * p.input_per_mtok
                    + result.calls.output_tokens as f64 / 1e6 * p.output_per_mtok))
                " " span.ci { "(configured prices)" }
            }
            None => { "–" }
        }
    }
}

#[cfg(test)]
#[allow(clippy::single_range_in_vec_init)] // One-range lists are the point of several cases.
mod tests {
    use super::*;

    #[test]
    fn escape_handles_every_special_character() {
        assert_eq!(
            escape("<script>alert(1)</script>"),
            "&lt;script&gt;alert(1)&lt;/script&gt;"
        );
        assert_eq!(escape("a & b"), "a &amp; b");
        assert_eq!(
            escape("\" onmouseover=\"alert(1)"),
            "&quot; onmouseover=&quot;alert(1)"
        );
        assert_eq!(escape("it's"), "it&#39;s");
        assert_eq!(escape("</style><script>"), "&lt;/style&gt;&lt;script&gt;");
        assert_eq!(
            escape("<img src=x onerror=alert(1)>"),
            "&lt;img src=x onerror=alert(1)&gt;"
        );
        // Already-escaped input is escaped again (no double-decoding surprises).
        assert_eq!(escape("&lt;"), "&amp;lt;");
        // Text without specials is unchanged, including non-ASCII and newlines.
        assert_eq!(escape("héllo\nwörld\t✓"), "héllo\nwörld\t✓");
    }

    #[test]
    fn escape_makes_bidi_and_control_characters_visible() {
        assert_eq!(escape("abc\u{202E}def"), "abc\\u{202E}def");
        for c in [
            '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{2066}', '\u{2067}', '\u{2068}',
            '\u{2069}',
        ] {
            let out = escape(&c.to_string());
            assert_eq!(out, format!("\\u{{{:04X}}}", c as u32));
            assert!(!out.contains(c));
        }
        assert_eq!(escape("a\u{0}b\u{7}"), "a\\u{0000}b\\u{0007}");
        assert_eq!(escape("\u{85}"), "\\u{0085}");
    }

    #[test]
    fn highlight_marks_byte_ranges() {
        let text = "Sorry. The answer is 42.";
        assert_eq!(
            highlighted(text, &[0..6], 100),
            "<mark>Sorry.</mark> The answer is 42."
        );
        // Overlapping and adjacent ranges merge; order does not matter.
        assert_eq!(
            highlighted(text, &[4..10, 0..6, 10..11], 100),
            "<mark>Sorry. The </mark>answer is 42."
        );
        // Escaping applies inside and outside marks.
        assert_eq!(
            highlighted("<b>x</b>", &[3..4], 100),
            "&lt;b&gt;<mark>x</mark>&lt;/b&gt;"
        );
    }

    #[test]
    fn highlight_ignores_invalid_ranges_without_panicking() {
        let text = "héllo"; // 'é' is bytes 1..3
        let out = highlighted(text, &[2..4, 0..99], 100);
        assert!(out.starts_with("héllo<span class=\"note\">"), "{out}");
        assert!(out.contains("2 highlight ranges ignored"), "{out}");
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = [4..1];
        assert!(highlighted(text, &reversed, 100).contains("1 highlight range ignored"));
        assert_eq!(highlighted(text, &[1..3], 100), "h<mark>é</mark>llo");
        assert_eq!(highlighted(text, &[3..3], 100), "héllo");
    }

    #[test]
    fn truncation_keeps_highlights_consistent() {
        // 10 characters shown of 20 'é' (2 bytes each): the cut falls at byte 20.
        let text = "é".repeat(20);
        let out = highlighted(&text, &[16..24, 30..34], 10);
        assert_eq!(
            out,
            format!(
                "{}<mark>{}</mark><span class=\"note\"> … (truncated, 20 characters in total)</span><span class=\"note\"> (1 injected span beyond the part shown)</span>",
                "é".repeat(8),
                "é".repeat(2)
            )
        );
        let big = "x".repeat(1_000_000);
        let out = highlighted(&big, &[999_990..1_000_000], DISPLAY_LIMIT);
        assert!(out.len() < DISPLAY_LIMIT + 300);
        assert!(out.contains("truncated, 1,000,000 characters in total"));
        assert!(!out.contains("<mark>"));
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(10_080), "10,080");
        assert_eq!(thousands(1_000_000), "1,000,000");
    }
}
