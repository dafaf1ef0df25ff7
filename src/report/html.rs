//! `report.html`: one self-contained page (no script, no external asset, no network) with the
//! verdicts, inline SVG charts and the flipped examples.
//!
//! Every string that comes from a summary (answers, prompts, names, reasons, categories) is
//! untrusted: it goes through [`escape`], which also makes bidi controls visible so they cannot
//! reorder the page. A Content-Security-Policy forbids scripts in case escaping ever failed.

use super::Summary;
use super::charts;
use super::format::p as p_text;
use super::svg;
use crate::analyze::{Estimate, JudgeResult, Trust};
use std::fmt::Write;
use std::ops::Range;

/// Characters of an answer shown before it is truncated.
pub const DISPLAY_LIMIT: usize = 4000;

/// The Content-Security-Policy of the page: no script can run, nothing is fetched.
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:";

/// Escape text for HTML and SVG (see [`super::text::html`], the one escaping place).
pub use super::text::html as escape;

/// Render `text` escaped, with the byte `ranges` wrapped in `<mark>`, showing at most `limit`
/// characters. Ranges that are empty, out of bounds or not on character boundaries are ignored
/// (and said so); overlapping ranges are merged; ranges are clipped at the truncation point so the
/// highlight always matches the text shown.
pub fn highlighted(text: &str, ranges: &[Range<usize>], limit: usize) -> String {
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
    let mut out = String::new();
    let mut pos = 0;
    let mut beyond = 0usize;
    for r in &merged {
        if r.start >= cut {
            beyond += 1;
            continue;
        }
        out.push_str(&escape(&text[pos..r.start]));
        let end = r.end.min(cut);
        out.push_str("<mark>");
        out.push_str(&escape(&text[r.start..end]));
        out.push_str("</mark>");
        pos = end;
    }
    if pos < cut {
        out.push_str(&escape(&text[pos..cut]));
    }
    if cut < text.len() {
        let _ = write!(
            out,
            "<span class=\"note\"> … (truncated, {} characters in total)</span>",
            thousands(text.chars().count() as u64)
        );
    }
    if beyond > 0 {
        let _ = write!(
            out,
            "<span class=\"note\"> ({beyond} injected span{} beyond the part shown)</span>",
            if beyond == 1 { "" } else { "s" }
        );
    }
    if ignored > 0 {
        let _ = write!(
            out,
            "<span class=\"note\"> ({ignored} highlight range{} ignored: outside the text or not on a character boundary)</span>",
            if ignored == 1 { "" } else { "s" }
        );
    }
    out
}

/// `12345` → `12,345` (see [`super::format::count`]).
pub use super::format::count as thousands;
use super::format::{estimate as est_text, interval as ci_text, rate as pct, signed as spct};

/// HTML of an estimate: value, then interval and n in muted type.
fn est_html(e: &Estimate, signed: bool) -> String {
    match e.estimate {
        Some(v) => format!(
            "<span class=\"v\">{}</span> <span class=\"ci\">{}</span>",
            super::format::value(v, signed),
            ci_text(e, signed)
        ),
        None => format!(
            "<span class=\"na\">n/a</span> <span class=\"ci\">n={}</span>",
            e.n
        ),
    }
}

/// Holm significance marker.
const STAR: &str = "✱";

fn star(e: &Estimate) -> &'static str {
    if e.significant() { STAR } else { "" }
}

fn verdict_class(t: Trust) -> &'static str {
    match t {
        Trust::Adopt => "adopt",
        Trust::Caution => "caution",
        Trust::Reject => "reject",
        Trust::CouldNotAudit => "could-not-audit",
    }
}

fn badge(t: Trust) -> String {
    format!(
        "<span class=\"badge {}\">{}</span>",
        verdict_class(t),
        t.label()
    )
}

const SIM_TAG: &str = "<span class=\"sim\" title=\"a simulated reference judge with planted biases, not a language model\">SIMULATED</span>";

fn judge_name_html(name: &str, simulated: bool) -> String {
    if simulated {
        format!("<span class=\"jn\">{}</span> {SIM_TAG}", escape(name))
    } else {
        format!("<span class=\"jn\">{}</span>", escape(name))
    }
}

/// The page's style sheet, kept as its own file and included at build time (the page stays one
/// self-contained file under the CSP).
const STYLE: &str = include_str!("report.css");

/// `report.html`.
pub struct HtmlExporter;

impl super::Exporter for HtmlExporter {
    fn format(&self) -> super::Format {
        super::Format::Html
    }

    fn file_name(&self) -> &'static str {
        "report.html"
    }

    fn render(&self, view: &super::ReportView<'_>) -> std::io::Result<Vec<u8>> {
        Ok(render_view(view).into_bytes())
    }
}

/// Render `report.html` for `summary`.
pub fn render(summary: &Summary) -> String {
    render_view(&super::ReportView::new(summary))
}

/// Render `report.html` for a view.
pub fn render_view(view: &super::ReportView<'_>) -> String {
    use super::Section;
    let summary = view.summary;
    let mut out = String::with_capacity(256 * 1024);
    let dataset = escape(&summary.dataset.name);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta name=\"generator\" content=\"judge-audit {}\">\n<title>judge-audit report: {dataset}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        escape(&summary.tool.version)
    );
    header(&mut out, summary);
    out.push_str("<main class=\"wrap\">\n");
    if view.has(Section::Warnings) {
        warnings(&mut out, view.warnings());
    }
    verdicts(&mut out, summary);
    charts::heatmaps(&mut out, summary);
    charts::forest(&mut out, summary);
    charts::position(&mut out, summary);
    if view.has(Section::Juries) {
        jury(&mut out, summary);
    }
    if let Some(a) = summary
        .agreement
        .as_ref()
        .filter(|_| view.has(Section::Agreement))
    {
        agreement(&mut out, a);
    }
    if let Some(c) = summary.jury.as_ref().and_then(|j| j.composer.as_ref()) {
        composer(&mut out, c);
    }
    categories(&mut out, summary);
    details(&mut out, summary);
    examples(&mut out, summary);
    metadata(&mut out, summary);
    let _ = write!(
        out,
        "<footer>Generated by judge-audit {} from summary.json (schema version {}). This page is self-contained: it loads nothing and runs no script.</footer>\n</main>\n</body>\n</html>\n",
        escape(&summary.tool.version),
        summary.schema_version
    );
    out
}

fn header(out: &mut String, s: &Summary) {
    out.push_str("<header class=\"top\"><div class=\"wrap\">\n<h1>judge-audit report</h1>\n");
    let judges = s.judges.len();
    let _ = writeln!(
        out,
        "<p class=\"meta-line\">Dataset <b>{}</b> · {} pairs · {} judge{} × {} artifact{} · {} calls · seed {} · judge-audit {}</p>",
        escape(&s.dataset.name),
        thousands(s.dataset.pairs as u64),
        judges,
        if judges == 1 { "" } else { "s" },
        s.plan.artifacts.len(),
        if s.plan.artifacts.len() == 1 { "" } else { "s" },
        thousands(s.plan.total_calls as u64),
        s.seed,
        escape(&s.tool.version)
    );
    let simulated: Vec<String> = s
        .judges
        .iter()
        .filter(|j| j.simulated)
        .map(|j| format!("<b>{}</b>", escape(&j.name)))
        .collect();
    if !simulated.is_empty() {
        let _ = writeln!(
            out,
            "<p class=\"banner\">{SIM_TAG} {} {} simulated reference judge{} with planted biases, not language model{}. Their results show what the audit can detect, not how any real model behaves.</p>",
            simulated.join(", "),
            if simulated.len() == 1 { "is a" } else { "are" },
            if simulated.len() == 1 { "" } else { "s" },
            if simulated.len() == 1 { "" } else { "s" },
        );
    }
    out.push_str("<nav class=\"toc\" aria-label=\"Sections\"><a href=\"#verdicts\">Verdicts</a><a href=\"#effects\">Effects</a><a href=\"#flips\">Flip rates</a><a href=\"#position\">Position bias</a>");
    if !s.juries.is_empty() {
        out.push_str("<a href=\"#jury\">Jury vs jurors</a>");
    }
    if s.agreement.is_some() {
        out.push_str("<a href=\"#agreement\">Agreement</a>");
    }
    if s.jury.as_ref().is_some_and(|j| j.composer.is_some()) {
        out.push_str("<a href=\"#composer\">Jury composer</a>");
    }
    out.push_str("<a href=\"#categories\">Categories</a><a href=\"#details\">Detailed results</a><a href=\"#examples\">Flipped examples</a><a href=\"#metadata\">Run metadata</a></nav>\n</div></header>\n");
}

fn verdicts(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"verdicts\">\n<h2>Verdicts</h2>\n");
    out.push_str("<p class=\"intro\">ADOPT: no threshold failed. CAUTION: an artifact effect is significant after Holm correction, or a soft threshold failed. REJECT: a hard threshold failed. The reasons list the numbers behind each verdict; the thresholds are set in <code>audit.toml</code> under <code>[trust]</code>.</p>\n<div class=\"cards\">\n");
    for j in &s.judges {
        let class = verdict_class(j.trust.verdict);
        let _ = write!(
            out,
            "<article class=\"card {class}\"><h3>{}{}</h3>",
            judge_name_html(&j.name, j.simulated),
            badge(j.trust.verdict)
        );
        if let Some(reason) = &j.stopped {
            let _ = write!(out, "<p class=\"note\">Stopped: {}</p>", escape(reason));
        }
        if j.trust.reasons.is_empty() {
            out.push_str("<ul><li>Every check passed.</li></ul>");
        } else {
            out.push_str("<ul>");
            for r in &j.trust.reasons {
                let _ = write!(
                    out,
                    "<li><span class=\"sev {}\">{}</span> {}</li>",
                    verdict_class(r.severity),
                    r.severity.label(),
                    escape(&r.text)
                );
            }
            out.push_str("</ul>");
        }
        if !j.trust.passed.is_empty() {
            let passed: Vec<String> = j.trust.passed.iter().map(|p| escape(p)).collect();
            let _ = write!(
                out,
                "<div class=\"passed\">Passed: {}.</div>",
                passed.join("; ")
            );
        }
        let b = &j.baseline;
        let _ = write!(
            out,
            "<div class=\"stats\">Position consistency {} · run-to-run flips {} · gold accuracy {}</div>",
            est_text(&b.position_consistency.rate, false),
            est_text(&b.noise_flip_rate, false),
            est_text(&b.gold_accuracy, false)
        );
        out.push_str("</article>\n");
    }
    out.push_str("</div>\n</section>\n");
}

/// Artifact ids in plan order, then any id a judge reports that the plan does not list.
pub(super) fn artifact_ids(s: &Summary) -> Vec<String> {
    let mut ids: Vec<String> = s.plan.artifacts.clone();
    for j in &s.judges {
        for a in &j.artifacts {
            if !ids.contains(&a.artifact) {
                ids.push(a.artifact.clone());
            }
        }
    }
    ids
}

fn jury(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"jury\">\n<h2>Jury vs jurors</h2>\n");
    out.push_str("<p class=\"intro\">A jury aggregates its members' verdicts. If aggregation helps, the jury's artifact effects are smaller and its gold accuracy and position consistency higher than its members'. Every value carries its 95% interval and n; <span class=\"star\">✱</span> marks Holm-adjusted p &lt; 0.05.</p>\n");
    let ids = artifact_ids(s);
    for jury in &s.juries {
        let name = &jury.name;
        let rows: Vec<(&String, &str, Option<&JudgeResult>)> =
            std::iter::once((name, "jury", Some(jury)))
                .chain(
                    jury.members
                        .iter()
                        .map(|m| (m, "juror", s.judges.iter().find(|j| &j.name == m))),
                )
                .collect();
        let head = |out: &mut String, member: &str, role: &str, j: Option<&JudgeResult>| {
            let shade = if role == "jury" {
                " style=\"background:#f6f8fa\""
            } else {
                ""
            };
            let name = match j {
                Some(j) => judge_name_html(&j.name, j.simulated),
                None => escape(member),
            };
            let _ = write!(out, "<tr{shade}><th>{name}</th><td>{role}</td>");
        };
        let _ = write!(
            out,
            "<h3>{}</h3>{}<div class=\"table-wrap\"><table class=\"jury\"><thead><tr><th>judge</th><th>role</th><th>verdict</th><th>gold accuracy</th><th>position consistency</th><th>run-to-run flips</th></tr></thead><tbody>",
            escape(name),
            jury.rule
                .as_deref()
                .map(|r| format!("<p class=\"meta-line\">Rule: {}.</p>", escape(r)))
                .unwrap_or_default()
        );
        for (member, role, j) in &rows {
            head(out, member, role, *j);
            match j {
                Some(j) => {
                    let _ = write!(
                        out,
                        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        badge(j.trust.verdict),
                        est_html(&j.baseline.gold_accuracy, false),
                        est_html(&j.baseline.position_consistency.rate, false),
                        est_html(&j.baseline.noise_flip_rate, false)
                    );
                }
                None => {
                    out.push_str("<td colspan=\"4\" class=\"note\">not in this summary</td></tr>")
                }
            }
        }
        out.push_str("</tbody></table></div>\n");
        let _ = write!(
            out,
            "<div class=\"table-wrap\"><table class=\"jury jury-t\"><thead><tr><th rowspan=\"2\">judge</th><th colspan=\"{}\">T (tie detection) per artifact</th></tr><tr>",
            ids.len()
        );
        for a in &ids {
            let _ = write!(out, "<th>{}</th>", escape(a));
        }
        out.push_str("</tr></thead><tbody>");
        for (member, role, j) in &rows {
            let shade = if *role == "jury" {
                " style=\"background:#f6f8fa\""
            } else {
                ""
            };
            let label = match j {
                Some(j) => judge_name_html(&j.name, j.simulated),
                None => escape(member),
            };
            let _ = write!(out, "<tr{shade}><th>{label}</th>");
            let Some(j) = j else {
                let _ = write!(
                    out,
                    "<td colspan=\"{}\" class=\"note\">not in this summary</td></tr>",
                    ids.len()
                );
                continue;
            };
            for a in &ids {
                match j.artifacts.iter().find(|x| &x.artifact == a) {
                    Some(x) => {
                        let e = &x.tie_detection.score;
                        // A light tint: the cell text stays dark on every value.
                        let tint = e
                            .estimate
                            .map(|v| svg::diverging(v, 2.0).hex())
                            .unwrap_or_else(|| "#ffffff".into());
                        let value = match e.estimate {
                            Some(v) => format!("<span class=\"v\">{}</span>", spct(v)),
                            None => "<span class=\"na\">n/a</span>".into(),
                        };
                        let _ = write!(
                            out,
                            "<td style=\"background:{tint}\">{value}<span class=\"star\">{}</span><span class=\"ci\">{}</span></td>",
                            star(e),
                            ci_text(e, true)
                        );
                    }
                    None => out.push_str("<td class=\"na\">–</td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>\n");
    }
    out.push_str("</section>\n");
}

fn bar(class: &str, v: Option<f64>) -> String {
    let w = v
        .map(|v| (v.clamp(0.0, 1.0) * 100.0).round())
        .unwrap_or(0.0);
    format!("<div class=\"bar {class}\"><span style=\"width:{w}%\"></span></div>")
}

fn categories(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"categories\">\n<h2>By category</h2>\n");
    out.push_str("<p class=\"intro\">Gold accuracy over baseline verdicts (ties count as wrong; green bar) and the flip rate pooled over every text artifact (purple bar), per category of pairs, with 95% intervals and n. Small categories have wide intervals: compare intervals, not point estimates.</p>\n");
    let mut names: Vec<String> = s.dataset.categories.keys().cloned().collect();
    for j in &s.judges {
        for c in &j.categories {
            if !names.contains(&c.category) {
                names.push(c.category.clone());
            }
        }
    }
    if names.is_empty() {
        out.push_str(
            "<p class=\"note\">No category information in this summary.</p>\n</section>\n",
        );
        return;
    }
    category_table(out, s, &names, "Gold accuracy", "acc", |c| &c.gold_accuracy);
    category_table(
        out,
        s,
        &names,
        "Flip rate (all text artifacts pooled)",
        "flip",
        |c| &c.flip_rate,
    );
    out.push_str("</section>\n");
}

fn category_table(
    out: &mut String,
    s: &Summary,
    names: &[String],
    title: &str,
    bar_class: &str,
    pick: fn(&crate::analyze::CategoryResult) -> &Estimate,
) {
    let _ = write!(
        out,
        "<h3>{title}</h3><div class=\"table-wrap\"><table class=\"cats\"><caption class=\"sr-only\">{title} per category and judge, with 95% intervals and n</caption><thead><tr><th>category</th><th class=\"num\">pairs</th>"
    );
    for j in &s.judges {
        let _ = write!(out, "<th>{}</th>", judge_name_html(&j.name, j.simulated));
    }
    out.push_str("</tr></thead><tbody>");
    for name in names {
        let pairs = s
            .dataset
            .categories
            .get(name)
            .map(|n| *n as u64)
            .or_else(|| {
                s.judges
                    .iter()
                    .find_map(|j| j.categories.iter().find(|c| &c.category == name))
                    .map(|c| c.pairs)
            })
            .unwrap_or(0);
        let _ = write!(
            out,
            "<tr><th>{}</th><td class=\"num\">{pairs}</td>",
            escape(name)
        );
        for j in &s.judges {
            match j.categories.iter().find(|c| &c.category == name) {
                Some(c) => {
                    let e = pick(c);
                    let value = match e.estimate {
                        Some(v) => format!("<span class=\"v\">{}</span>", pct(v)),
                        None => "<span class=\"na\">n/a</span>".into(),
                    };
                    let _ = write!(
                        out,
                        "<td>{value} <span class=\"ci\">{}</span>{}</td>",
                        ci_text(e, false),
                        bar(bar_class, e.estimate)
                    );
                }
                None => out.push_str("<td class=\"na\">–</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n");
}

fn p_html(e: &Estimate) -> String {
    let mut parts = Vec::new();
    if let Some(p) = e.p_value {
        parts.push(format!("p {}", p_text(p)));
    }
    if let Some(h) = e.p_adjusted {
        parts.push(format!("Holm {}", p_text(h)));
    }
    if let Some(q) = e.q_value {
        parts.push(format!("BH q {}", p_text(q)));
    }
    if parts.is_empty() {
        return String::new();
    }
    format!(
        "<div class=\"p\">{}{}</div>",
        parts.join(" · "),
        if e.significant() {
            " <span class=\"star\">✱</span>"
        } else {
            ""
        }
    )
}

/// The minimum detectable effects of one artifact, each in its own unit: effects as
/// percentages, sample sizes as counts, the family as "126 tests", α and power as percentages.
fn mde_html(m: &crate::analyze::Mde) -> String {
    use super::format::{counted, opt};
    format!(
        "<span class=\"k\">|T|</span> {}<br><span class=\"k\">|T| in family</span> {}<br><span class=\"k\">excess flip</span> {}<div class=\"p\">{} · {} · family of {} · α {} · power {}</div>",
        opt(m.t, pct),
        opt(m.t_family, pct),
        opt(m.excess_flip, pct),
        counted(m.pairs, "pair"),
        counted(m.comparisons, "comparison"),
        counted(m.family_size, "test"),
        pct(m.alpha),
        pct(m.power)
    )
}

/// Warnings about the run, first on the page.
fn warnings(out: &mut String, warnings: &[super::Warning]) {
    out.push_str("<section id=\"warnings\">\n<h2>Warnings</h2>\n<ul class=\"findings\">");
    for w in warnings {
        let who = w
            .judge
            .as_deref()
            .map(|j| format!("<span class=\"jn\">{}</span>: ", escape(j)))
            .unwrap_or_default();
        let _ = write!(out, "<li>{who}{}</li>", escape(&w.message));
    }
    out.push_str("</ul>\n</section>\n");
}

/// Agreement between judges: pairwise table, then Fleiss' κ and Krippendorff's α.
fn agreement(out: &mut String, a: &crate::analyze::AgreementResult) {
    use super::format::{coef_estimate, opt};
    out.push_str("<section id=\"agreement\">\n<h2>Agreement between judges</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"intro\">How often the judges give the same verdict on the same call, and the chance-corrected coefficients (κ, π, α: 1 = perfect agreement, 0 = chance). Labels: {}.</p>",
        escape(&a.labels)
    );
    out.push_str("<div class=\"table-wrap\"><table class=\"agreement\"><thead><tr><th>judge</th><th>judge</th><th class=\"num\">items</th><th class=\"num\">agreement</th><th>Cohen's κ</th><th>Scott's π</th></tr></thead><tbody>");
    for p in &a.pairwise {
        let _ = write!(
            out,
            "<tr><td><span class=\"jn\">{}</span></td><td><span class=\"jn\">{}</span></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"nw\">{}</td><td class=\"nw\">{}</td></tr>",
            escape(&p.judge_a),
            escape(&p.judge_b),
            thousands(p.n),
            opt(p.percent, pct),
            coef_estimate(&p.cohen_kappa),
            coef_estimate(&p.scott_pi)
        );
    }
    out.push_str("</tbody></table></div>\n");
    if let Some(f) = &a.fleiss_kappa {
        let _ = writeln!(
            out,
            "<p class=\"meta-line\">Fleiss' κ of {} over {} every rater judged validly: <b>{}</b>.</p>",
            escape(&f.raters.join(", ")),
            super::format::counted(f.items, "item"),
            coef_estimate(&f.value)
        );
    }
    if let Some(k) = &a.krippendorff_alpha {
        let _ = writeln!(
            out,
            "<p class=\"meta-line\">Krippendorff's α (nominal, missing values allowed) over {}: <b>{}</b>.</p>",
            super::format::counted(k.items, "item"),
            coef_estimate(&k.value)
        );
    }
    out.push_str("</section>\n");
}

/// The jury composer's suggestion: the subset of judges whose jury has the smallest artifact
/// effects, with the members' own T beside the jury's.
fn composer(out: &mut String, c: &crate::analyze::ComposerResult) {
    use super::format::opt;
    let sg = &c.suggestion;
    out.push_str("<section id=\"composer\">\n<h2>Jury composer</h2>\n");
    let _ = writeln!(
        out,
        "<p class=\"intro\">Suggested jury of {} ({} evaluated; objective: {}): <b>{}</b>, with max |T| {} and max |WR| {}. {}</p>",
        super::format::counted(c.size as u64, "judge"),
        super::format::counted(c.evaluated as u64, "subset"),
        escape(&c.objective),
        escape(&sg.members.join(", ")),
        pct(sg.max_abs_t),
        pct(sg.max_abs_wr),
        escape(&c.note)
    );
    out.push_str("<div class=\"table-wrap\"><table class=\"composer\"><thead><tr><th>artifact</th><th>jury T</th><th>jury WR</th>");
    for m in &sg.members {
        let _ = write!(out, "<th>T of <span class=\"jn\">{}</span></th>", escape(m));
    }
    out.push_str("</tr></thead><tbody>");
    for (k, artifact) in c.artifacts.iter().enumerate() {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td>",
            escape(artifact),
            opt(sg.t.get(k).copied().flatten(), spct),
            opt(sg.wr.get(k).copied().flatten(), spct)
        );
        for m in &sg.members {
            let t = c.member_t.get(m).and_then(|v| v.get(k).copied().flatten());
            let _ = write!(out, "<td>{}</td>", opt(t, spct));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

fn details(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"details\">\n<h2>Detailed results</h2>\n");
    out.push_str("<p class=\"intro\">Every estimate with its 95% interval and the number of observations n. Under each estimate: the raw p-value · Holm-adjusted within its family (by default each judge's artifact × {T, WR, flip} tests; <code>[design] multiplicity = &quot;run&quot;</code> pools the run) (and the BH q-value where the analysis provides one). <i>Excess</i> is the artifact's flip rate minus the judge's run-to-run flip rate (paired cluster bootstrap).</p>\n");
    for (index, j) in s.judges.iter().enumerate() {
        // Ids are positional: data never reaches an attribute.
        let _ = write!(
            out,
            "<h3 id=\"judge-{index}\">{} {}</h3>",
            judge_name_html(&j.name, j.simulated),
            badge(j.trust.verdict)
        );
        if !j.findings.is_empty() {
            out.push_str("<ul class=\"findings\">");
            for f in &j.findings {
                let _ = write!(out, "<li>{}</li>", escape(f));
            }
            out.push_str("</ul>");
        }
        let _ = write!(
            out,
            "<div class=\"table-wrap\"><table class=\"results\"><thead><tr><th>artifact</th><th>T (tie detection)</th><th>WR (winrate shift)</th><th>flip rate</th><th>excess over noise</th><th>minimum detectable effect</th>{}</tr></thead><tbody>",
            if j.simulated {
                "<th>planted T</th>"
            } else {
                ""
            }
        );
        for a in &j.artifacts {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}{}</td><td>{}{}</td><td>{}<div class=\"p\">{} toward · {} away</div>{}</td><td>{}</td>",
                escape(&a.artifact),
                est_html(&a.tie_detection.score, true),
                p_html(&a.tie_detection.score),
                est_html(&a.winrate_shift.shift, true),
                p_html(&a.winrate_shift.shift),
                est_html(&a.flip_rate.rate, false),
                a.flip_rate.toward,
                a.flip_rate.away,
                p_html(&a.flip_rate.rate),
                est_html(&a.excess_flip_rate, true)
            );
            let _ = write!(out, "<td class=\"mde\">{}</td>", mde_html(&a.mde));
            if j.simulated {
                match &a.planted {
                    Some(p) => {
                        let _ = write!(
                            out,
                            "<td class=\"nw\">{}<div class=\"p\">{}</div></td>",
                            spct(p.value),
                            if p.recovered {
                                "inside T's CI"
                            } else {
                                "OUTSIDE T's CI"
                            }
                        );
                    }
                    None => out.push_str("<td class=\"na\">–</td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</tbody></table></div>");
        let b = &j.baseline;
        let pc = &b.position_consistency;
        let c = &j.calls;
        let _ = writeln!(
            out,
            "<p class=\"meta-line\">Baseline: position consistency {} (first slot both times {}, second {}, win/tie mix {}, error {}); run-to-run flip rate {}; gold accuracy {}; {} unparseable baseline verdicts. Calls: {} planned, {} completed, {} failed, {} unparseable (counted, never coerced).</p>",
            est_text(&pc.rate, false),
            pc.prefers_first,
            pc.prefers_second,
            pc.other,
            pc.error,
            est_text(&b.noise_flip_rate, false),
            est_text(&b.gold_accuracy, false),
            b.invalid,
            thousands(c.planned),
            thousands(c.completed),
            thousands(c.failed),
            thousands(c.invalid)
        );
    }
    out.push_str("</section>\n");
}

fn examples(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"examples\">\n<h2>Flipped examples</h2>\n");
    out.push_str("<p class=\"intro\">Verdicts that changed when the artifact was added (up to a few per judge and artifact, in plan order). The injected or moved text is <mark>highlighted</mark>. <i>Before</i> and <i>after</i> are the outcome for the perturbed answer in the same presentation order.</p>\n");
    if s.examples.is_empty() {
        out.push_str("<p class=\"note\">No verdict flipped.</p>\n</section>\n");
        return;
    }
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
    let mut current: Option<&str> = None;
    for ex in &s.examples {
        if current != Some(ex.judge.as_str()) {
            current = Some(ex.judge.as_str());
            let _ = write!(
                out,
                "<h3>{}</h3>",
                judge_name_html(&ex.judge, simulated(&ex.judge))
            );
        }
        let dir_class = if ex.direction == "toward" {
            "dir-toward"
        } else {
            "dir-away"
        };
        let _ = write!(
            out,
            "<article class=\"example\"><div class=\"head\"><span><b>{}</b></span><span>pair <span class=\"mono\">{}</span></span><span>answer {} perturbed, order {}</span><span>before: <b>{}</b> → after: <b>{}</b></span><span class=\"{dir_class}\">{}</span></div>",
            escape(&ex.artifact),
            escape(&ex.pair_id),
            ex.side.letter(),
            ex.order.name(),
            escape(&ex.before),
            escape(&ex.after),
            if ex.direction == "toward" {
                "toward the perturbed answer".to_string()
            } else if ex.direction == "away" {
                "away from the perturbed answer".to_string()
            } else {
                escape(&ex.direction)
            }
        );
        let _ = writeln!(
            out,
            "<div class=\"prompt\"><b>Prompt:</b> {}</div><div class=\"cols\"><div class=\"col\"><h4>Original answer {}</h4><div class=\"answer\">{}</div></div><div class=\"col\"><h4>With the artifact</h4><div class=\"answer\">{}</div></div></div><div class=\"other\"><div class=\"col\"><h4>The other answer {} (unchanged)</h4><div class=\"answer\">{}</div></div></div></article>",
            highlighted(&ex.prompt, &[], DISPLAY_LIMIT),
            ex.side.letter(),
            highlighted(&ex.original, &[], DISPLAY_LIMIT),
            highlighted(&ex.perturbed, &ex.injected, DISPLAY_LIMIT),
            ex.side.other().letter(),
            highlighted(&ex.other, &[], DISPLAY_LIMIT)
        );
    }
    out.push_str("</section>\n");
}

fn metadata(out: &mut String, s: &Summary) {
    out.push_str("<section id=\"metadata\">\n<h2>Run metadata</h2>\n<div class=\"table-wrap\"><table class=\"kv\"><tbody>");
    let categories = s
        .dataset
        .categories
        .iter()
        .map(|(k, v)| format!("{} ({v})", escape(k)))
        .collect::<Vec<_>>()
        .join(", ");
    let rows: Vec<(&str, String)> = vec![
        (
            "tool",
            format!("{} {}", escape(&s.tool.name), escape(&s.tool.version)),
        ),
        ("summary schema version", s.schema_version.to_string()),
        ("seed", s.seed.to_string()),
        ("dataset", escape(&s.dataset.name)),
        (
            "dataset sha256",
            format!("<span class=\"mono\">{}</span>", escape(&s.dataset.hash)),
        ),
        (
            "pairs",
            format!(
                "{} used, {} skipped as invalid",
                s.dataset.pairs, s.dataset.skipped
            ),
        ),
        (
            "categories",
            if categories.is_empty() {
                "–".into()
            } else {
                categories
            },
        ),
        (
            "design",
            format!(
                "{} baseline repeats per order; tie detection on {} answers; {} calls planned",
                s.plan.repeats,
                escape(&s.plan.tie_targets),
                thousands(s.plan.total_calls as u64)
            ),
        ),
        (
            "artifacts",
            s.plan
                .artifacts
                .iter()
                .map(|a| escape(a))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    ];
    for (k, v) in rows {
        let _ = write!(out, "<tr><th>{k}</th><td>{v}</td></tr>");
    }
    out.push_str("</tbody></table></div>\n");

    out.push_str("<h3>Judges</h3><div class=\"table-wrap\"><table class=\"judges\"><thead><tr><th>judge</th><th>backend · model</th><th>template · sha256</th><th>calls</th><th>tokens</th><th>faults (every failed attempt)</th><th>cost</th></tr></thead><tbody>");
    let mut names: Vec<&str> = s.judge_configs.iter().map(|j| j.name.as_str()).collect();
    for j in &s.judges {
        if !names.contains(&j.name.as_str()) {
            names.push(&j.name);
        }
    }
    for name in names {
        let config = s.judge_configs.iter().find(|c| c.name == name);
        let result = s.judges.iter().find(|j| j.name == name);
        let simulated = config
            .map(|c| c.simulated)
            .or(result.map(|r| r.simulated))
            .unwrap_or(false);
        let (model, template) = match config {
            Some(c) => (
                format!("{} · {}", escape(&c.backend), escape(&c.model)),
                format!(
                    "{}<div class=\"mono sha\">{}</div>",
                    escape(&c.template),
                    escape(&c.template_sha256)
                ),
            ),
            None => ("–".into(), "–".into()),
        };
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{model}</td><td>{template}</td>",
            judge_name_html(name, simulated)
        );
        match result {
            Some(r) => {
                let c = &r.calls;
                let faults = if r.faults.is_empty() {
                    "none".to_string()
                } else {
                    r.faults
                        .iter()
                        .map(|(k, n)| {
                            let kind = serde_json::to_value(k)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_else(|| format!("{k:?}"));
                            format!("{} {n}", escape(&kind))
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let stopped = r
                    .stopped
                    .as_ref()
                    .map(|why| format!("<div class=\"note\">stopped: {}</div>", escape(why)))
                    .unwrap_or_default();
                let cost = cost_text(r, config);
                let _ = write!(
                    out,
                    "<td class=\"nw\">{} planned<div class=\"p\">{} completed · {} failed · {} unparseable</div></td><td class=\"nw\">{} in<div class=\"p\">{} out</div></td><td>{faults}{stopped}</td><td class=\"nw\">{cost}</td></tr>",
                    thousands(c.planned),
                    thousands(c.completed),
                    thousands(c.failed),
                    thousands(c.invalid),
                    thousands(c.input_tokens),
                    thousands(c.output_tokens)
                );
            }
            None => out.push_str("<td colspan=\"4\" class=\"note\">no results</td></tr>"),
        }
    }
    out.push_str("</tbody></table></div>\n");

    out.push_str("<h3>Artifacts</h3><div class=\"table-wrap\"><table><thead><tr><th>id</th><th>title</th><th>operation</th><th>source</th><th>expected effect</th></tr></thead><tbody>");
    for a in &s.artifacts {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&a.id),
            escape(&a.title),
            escape(&a.operation),
            escape(&a.source),
            escape(&a.expected_effect)
        );
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

/// An estimate from the judge's configured prices, else a dash.
fn cost_text(result: &JudgeResult, config: Option<&super::JudgeInfo>) -> String {
    match config.and_then(super::JudgeInfo::pricing) {
        Some(p) => {
            let usd = result.calls.input_tokens as f64 / 1e6 * p.input_per_mtok
                + result.calls.output_tokens as f64 / 1e6 * p.output_per_mtok;
            format!(
                "≈ {} <span class=\"ci\">(configured prices)</span>",
                super::format::usd(usd)
            )
        }
        None => "–".into(),
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
