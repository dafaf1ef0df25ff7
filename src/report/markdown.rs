//! `report.md`: GitHub-flavoured Markdown, readable in a PR comment.

use super::Summary;
use crate::analyze::{
    AgreementResult, CorrelationMatrix, Estimate, JudgeKind, JudgeResult, JuryAnalysis, TieRule,
    WeightSource,
};
use std::fmt::Write;

/// A p-value in a compact, exact-enough form (see [`super::format::p`]).
pub use super::format::p as p_text;
use super::format::{coef, coef_estimate as coef_cell, opt, rate, signed as pct};
/// Escape text for Markdown prose (see [`super::text::markdown`], the one escaping place).
pub use super::text::markdown as escape;
/// Escape text for a Markdown table cell (prose escaping and `|`).
pub use super::text::markdown_cell as cell_text;

fn cell(e: &Estimate, signed: bool) -> String {
    super::format::estimate(e, signed)
}

fn p_cell(e: &Estimate) -> String {
    match (e.p_value, e.p_adjusted) {
        (Some(p), Some(q)) => {
            let mark = if q < crate::analyze::ALPHA {
                " **✱**"
            } else {
                ""
            };
            let bh = e.q_value.map_or("–".to_string(), p_text);
            format!("{} / {}{mark} / {bh}", p_text(p), p_text(q))
        }
        (Some(p), None) => format!("{} / – / –", p_text(p)),
        _ => "–".into(),
    }
}

/// `simulated_members`: the jury members that are simulated judges (empty for a judge).
fn judge_section(out: &mut String, judge: &JudgeResult, simulated_members: &[&str]) {
    let label = match (judge.kind, judge.simulated) {
        (JudgeKind::Judge, true) => " (SIMULATED judge)".to_string(),
        (JudgeKind::Judge, false) => String::new(),
        (JudgeKind::Jury, true) => " (jury of SIMULATED judges)".to_string(),
        (JudgeKind::Jury, false) if simulated_members.is_empty() => " (jury)".to_string(),
        (JudgeKind::Jury, false) => format!(
            " (jury with SIMULATED members: {})",
            escape(&simulated_members.join(", "))
        ),
    };
    let _ = writeln!(
        out,
        "## {}{label}: {}\n",
        escape(&judge.name),
        judge.trust.verdict.label()
    );
    if let Some(small) = &judge.small_audit {
        let _ = writeln!(out, "⚠ {}.\n", escape(&small.message));
    }
    // Each reason carries its own severity: a caution-level reason on a REJECTed judge is
    // printed as CAUTION, not as part of the rejection.
    for reason in &judge.trust.reasons {
        let _ = writeln!(
            out,
            "- {} because {}",
            reason.severity.label(),
            escape(&reason.text)
        );
    }
    for note in &judge.trust.notes {
        let _ = writeln!(out, "- Note: {}", escape(note));
    }
    if !judge.trust.reasons.is_empty() || !judge.trust.notes.is_empty() {
        out.push('\n');
    }
    if judge.kind == JudgeKind::Jury {
        let _ = writeln!(
            out,
            "Members: {}. Rule: {}.\n",
            escape(&judge.members.join(", ")),
            escape(judge.rule.as_deref().unwrap_or("–"))
        );
    }
    if let Some(reason) = &judge.stopped {
        let _ = writeln!(out, "> **Stopped:** {}\n", escape(reason));
    }
    let c = &judge.calls;
    let _ = writeln!(
        out,
        "Calls: {} planned, {} completed, {} failed, {} unparseable verdicts (counted, never coerced). Tokens: {} in, {} out.\n",
        c.planned, c.completed, c.failed, c.invalid, c.input_tokens, c.output_tokens
    );
    if !judge.faults.is_empty() {
        let faults: Vec<String> = judge
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind:?}: {n}"))
            .collect();
        let _ = writeln!(
            out,
            "Faults (every failed attempt): {}.\n",
            faults.join(", ")
        );
    }
    let _ = writeln!(out, "**Findings**\n");
    for line in &judge.findings {
        let _ = writeln!(out, "- {}", escape(line));
    }
    let _ = writeln!(
        out,
        "\n| artifact | T (tie detection) | p raw / Holm / BH | WR (winrate shift) | p raw / Holm / BH | flip rate (RR = 1 − flip) | toward / away | p raw / Holm / BH (mid-p) | excess over noise | Stuart–Maxwell χ² p raw / Holm | MDE \\|T\\| / excess flip |{}",
        if judge.simulated && judge.kind == JudgeKind::Judge {
            " planted T |"
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---|---|---|---|---|---|---|{}",
        if judge.simulated && judge.kind == JudgeKind::Judge {
            "---|"
        } else {
            ""
        }
    );
    for a in &judge.artifacts {
        let planted = match &a.planted {
            Some(p) => format!(
                " {} ({}) |",
                pct(p.value),
                if p.recovered {
                    "inside CI"
                } else {
                    "OUTSIDE CI"
                }
            ),
            None if judge.simulated && judge.kind == JudgeKind::Judge => " – |".into(),
            None => String::new(),
        };
        let mid = a
            .flip_rate
            .rate
            .p_mid
            .map_or(String::new(), |p| format!(" ({})", p_text(p)));
        let sm = match &a.stuart_maxwell {
            Some(t) => format!(
                "{} / {}",
                p_text(t.p_value),
                t.p_adjusted.map_or("–".to_string(), p_text)
            ),
            None => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} / {} | {}{mid} | {} | {sm} | {} / {} |{planted}",
            cell_text(&a.artifact),
            cell(&a.tie_detection.score, true),
            p_cell(&a.tie_detection.score),
            cell(&a.winrate_shift.shift, true),
            p_cell(&a.winrate_shift.shift),
            cell(&a.flip_rate.rate, false),
            a.flip_rate.toward,
            a.flip_rate.away,
            p_cell(&a.flip_rate.rate),
            cell(&a.excess_flip_rate, true),
            opt(a.mde.t, rate),
            opt(a.mde.excess_flip, rate),
        );
    }
    let counted: Vec<String> = judge
        .artifacts
        .iter()
        .filter_map(|a| {
            let c = a.perturbation.as_ref()?;
            Some(format!(
                "{} {}/{} ({} unchanged, {} already carried it{}){}",
                escape(&a.artifact),
                c.effective,
                c.targets,
                c.unchanged,
                c.already_present,
                match c.rejected_share {
                    Some(share) => format!(
                        ", {} failed the meaning check ({:.1}%)",
                        c.rejected,
                        100.0 * share
                    ),
                    None => String::new(),
                },
                if c.warning.is_some() {
                    " ⚠ under half changed"
                } else {
                    ""
                }
            ))
        })
        .collect();
    if !counted.is_empty() {
        let _ = writeln!(
            out,
            "\nPerturbed answers counted in the estimates (changed by the artifact and not already carrying it; the rest are excluded): {}.",
            counted.join("; ")
        );
    }
    for a in &judge.artifacts {
        if let Some(asr) = &a.attack_success_rate {
            let _ = writeln!(
                out,
                "\nAttack success rate of the injection `{}`: {} of verdicts moved toward the answer carrying it (security probe; above the `[trust]` threshold it is a REJECT).",
                escape(&a.artifact),
                cell(asr, false)
            );
        }
        if let Some(i) = &a.interaction {
            let show = |x: Option<f64>| super::format::opt(x, super::format::signed);
            let _ = writeln!(
                out,
                "\nInteraction of the stack `{}` ({}): T(stack) − ΣT = {}, WR(stack) − ΣWR = {}.",
                escape(&a.artifact),
                i.components.join(" + "),
                show(i.tie_detection),
                show(i.winrate_shift)
            );
        }
    }
    let soft: Vec<String> = judge
        .artifacts
        .iter()
        .filter_map(|a| {
            let shift = a.soft_shift.as_ref()?;
            Some(format!(
                "{}: soft T {}, soft shift {} (p raw / Holm / BH {})",
                escape(&a.artifact),
                a.tie_detection
                    .soft
                    .as_ref()
                    .map_or("–".to_string(), |e| cell(e, true)),
                cell(shift, true),
                p_cell(shift)
            ))
        })
        .collect();
    if !soft.is_empty() {
        let _ = writeln!(
            out,
            "\nSoft verdicts (label probabilities; soft T = mean P(artifact copy wins) − P(original wins), soft shift = mean change in P(perturbed answer wins)): {}.",
            soft.join("; ")
        );
    }
    let b = &judge.baseline;
    let pc = &b.position_consistency;
    let sc = &b.self_consistency;
    let _ = writeln!(
        out,
        "\nBaseline: position consistency {} (first slot both times: {}, second: {}, win/tie mix: {}, error: {}; MT-Bench shares of all pairs: consistent {}, prefers first {}, prefers second {}, error {}); run-to-run flip rate {} (Chen's SSC = CALM's CR = {}; MSC = {}); gold accuracy {}; Chen's HA (gold agreement, ties included) {}; Cohen's κ vs gold {}; Scott's π vs gold {}; {} unparseable baseline verdicts.",
        cell(&pc.rate, false),
        pc.prefers_first,
        pc.prefers_second,
        pc.other,
        pc.error,
        rate(pc.shares.consistent),
        rate(pc.shares.prefers_first),
        rate(pc.shares.prefers_second),
        rate(pc.shares.error),
        cell(&b.noise_flip_rate, false),
        opt(sc.ssc, rate),
        cell(&sc.msc, false),
        cell(&b.gold_accuracy, false),
        cell(&b.gold_agreement, false),
        coef_cell(&b.gold_kappa),
        coef_cell(&b.gold_scott_pi),
        b.invalid
    );
    if let Some(l) = &judge.length {
        let _ = writeln!(
            out,
            "\nLength (AlpacaEval-style control on {} pairs): raw preference for answer a {}, length-controlled {}; slope on tanh(Δlength / sd) {} (p raw / Holm / BH {}){}.",
            l.pairs,
            rate(l.raw_preference),
            rate(l.controlled_preference),
            coef_cell(&l.slope),
            p_cell(&l.slope),
            if l.converged {
                ""
            } else {
                "; the fit did not converge"
            }
        );
    }
    if let Some(s) = &judge.soft {
        let _ = writeln!(
            out,
            "\nLabel probabilities over {} baseline calls: mean P(a) {}, P(b) {}, P(tie) {}{}.",
            s.calls,
            rate(s.mean_p_a),
            rate(s.mean_p_b),
            rate(s.mean_p_tie),
            s.covered_mass
                .map(|m| format!("; the labels cover {} of the next-token mass", rate(m)))
                .unwrap_or_default()
        );
    }
    // A judge audited on part of the dataset has categories it never saw: leave them out.
    let judged: Vec<_> = judge.categories.iter().filter(|c| c.pairs > 0).collect();
    if judged.len() > 1 {
        let _ = writeln!(
            out,
            "\n| category | pairs | gold accuracy | HA (Chen Eq. 6) | flip rate (text artifacts) | toward / away | p raw / Holm / BH |\n|---|---|---|---|---|---|---|"
        );
        for c in judged {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} / {} | {} |",
                cell_text(&c.category),
                c.pairs,
                cell(&c.gold_accuracy, false),
                cell(&c.gold_agreement, false),
                cell(&c.flip_rate, false),
                c.flip_toward,
                c.flip_away,
                p_cell(&c.flip_rate)
            );
        }
    }
    out.push('\n');
}

fn matrix_section(out: &mut String, m: &CorrelationMatrix) {
    if m.judges.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Correlation of \"{}\" between jurors (phi; mean ρ̄ = {}, effective jury size m / (1 + (m − 1)ρ̄) = {}):\n",
        escape(&m.indicator),
        opt(m.mean, coef),
        opt(m.effective_size, coef)
    );
    let _ = writeln!(
        out,
        "| | {} |\n|---|{}",
        m.judges
            .iter()
            .map(|j| cell_text(j))
            .collect::<Vec<_>>()
            .join(" | "),
        "---|".repeat(m.judges.len())
    );
    for (name, row) in m.judges.iter().zip(&m.values) {
        let cells: Vec<String> = row.iter().map(|v| opt(*v, coef)).collect();
        let _ = writeln!(out, "| {} | {} |", cell_text(name), cells.join(" | "));
    }
    out.push('\n');
}

fn jury_section(out: &mut String, jury: &JuryAnalysis) {
    let _ = writeln!(out, "## Jury design\n");
    let tie_rule = match jury.tie_rule {
        TieRule::Tie => "count as votes for tie",
        TieRule::Abstain => "abstain",
    };
    let weight_source = match jury.weight_source {
        WeightSource::GoldAccuracy => "log-odds of gold accuracy",
        WeightSource::Kappa => "κ against gold",
        WeightSource::Equal => "equal",
    };
    let _ = writeln!(
        out,
        "Members: {}. Tie votes {tie_rule}; unparseable or failed votes abstain. Weights of the weighted rule ({weight_source}): {}.\n",
        escape(&jury.members.join(", ")),
        jury.weights
            .iter()
            .map(|w| format!("{} {:.3}", escape(&w.judge), w.weight))
            .collect::<Vec<_>>()
            .join(", ")
    );
    matrix_section(out, &jury.flip_correlation);
    matrix_section(out, &jury.error_correlation);
    if let Some(c) = &jury.composer {
        let s = &c.suggestion;
        let _ = writeln!(
            out,
            "**Suggested jury** (size {}, {} subsets evaluated; {}): {} with max |T| {} and max |WR| {}. {}\n",
            c.size,
            c.evaluated,
            escape(&c.objective),
            escape(&s.members.join(", ")),
            rate(s.max_abs_t),
            rate(s.max_abs_wr),
            escape(&c.note)
        );
        let _ = writeln!(
            out,
            "| artifact | jury T | jury WR |{}\n|---|---|---|{}",
            s.members
                .iter()
                .map(|m| format!(" T of {} |", cell_text(m)))
                .collect::<String>(),
            "---|".repeat(s.members.len())
        );
        for (k, artifact) in c.artifacts.iter().enumerate() {
            let members: String = s
                .members
                .iter()
                .map(|m| {
                    let t = c.member_t.get(m).and_then(|v| v.get(k).copied().flatten());
                    format!(" {} |", opt(t, pct))
                })
                .collect();
            let _ = writeln!(
                out,
                "| {} | {} | {} |{members}",
                cell_text(artifact),
                opt(s.t.get(k).copied().flatten(), pct),
                opt(s.wr.get(k).copied().flatten(), pct)
            );
        }
        out.push('\n');
    }
    for note in &jury.notes {
        let _ = writeln!(out, "- {}", escape(note));
    }
    if !jury.notes.is_empty() {
        out.push('\n');
    }
}

fn agreement_section(out: &mut String, a: &AgreementResult) {
    let _ = writeln!(out, "## Agreement between judges\n");
    let _ = writeln!(out, "Labels: {}.\n", escape(&a.labels));
    let _ = writeln!(
        out,
        "| judge | judge | items | agreement | Cohen's κ | Scott's π |\n|---|---|---|---|---|---|"
    );
    for p in &a.pairwise {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} |",
            cell_text(&p.judge_a),
            cell_text(&p.judge_b),
            p.n,
            opt(p.percent, rate),
            coef_cell(&p.cohen_kappa),
            coef_cell(&p.scott_pi)
        );
    }
    if let Some(f) = &a.fleiss_kappa {
        let _ = writeln!(
            out,
            "\nFleiss' κ of {} over {} items every rater judged validly: {}.",
            escape(&f.raters.join(", ")),
            f.items,
            coef_cell(&f.value)
        );
    }
    if let Some(k) = &a.krippendorff_alpha {
        let _ = writeln!(
            out,
            "Krippendorff's α (nominal, missing values allowed) over {} items: {}.",
            k.items,
            coef_cell(&k.value)
        );
    }
    out.push('\n');
}

/// `report.md`.
pub struct MarkdownExporter;

impl super::Exporter for MarkdownExporter {
    fn format(&self) -> super::Format {
        super::Format::Markdown
    }

    fn file_name(&self) -> &'static str {
        "report.md"
    }

    fn render(&self, view: &super::ReportView<'_>) -> std::io::Result<Vec<u8>> {
        Ok(render_view(view).into_bytes())
    }
}

/// The warnings as a Markdown list under a heading (empty when there is none).
pub fn warnings_section(out: &mut String, warnings: &[super::Warning]) {
    if warnings.is_empty() {
        return;
    }
    let _ = writeln!(out, "## Warnings\n");
    for w in warnings {
        match &w.judge {
            Some(j) => {
                let _ = writeln!(out, "- **{}**: {}", escape(j), escape(&w.message));
            }
            None => {
                let _ = writeln!(out, "- {}", escape(&w.message));
            }
        }
    }
    out.push('\n');
}

/// Render the whole Markdown report.
/// The sequential audit's section: stopping rule, waves, calls and one row per judge × artifact.
pub fn sequential_section(out: &mut String, s: &crate::analyze::sequential::SequentialSummary) {
    let _ = writeln!(
        out,
        "## Sequential audit\n\nStopping rule: {}. Waves of {} pairs in a seeded random order (seed {}); {} of {} waves run; {} of {} planned calls used ({:.1}% saved).{} Anytime-valid: {}.\n",
        escape(&s.stopping_rule),
        s.wave_pairs,
        s.order_seed,
        s.waves_run,
        s.waves_planned,
        s.calls_used,
        s.calls_planned,
        100.0 * (1.0 - s.calls_used as f64 / s.calls_planned.max(1) as f64),
        if s.budget_exhausted {
            " **The call budget ended the audit: the undecided cells below are provisional.**"
        } else {
            ""
        },
        escape(&s.anytime_valid)
    );
    let _ = writeln!(
        out,
        "| judge | artifact | decision | decided on | after wave | pairs | T | T anytime-valid | WR anytime-valid | flip rate anytime-valid | excess flip anytime-valid | calls used / planned | calls still needed |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for c in &s.cells {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:+.3} | [{:+.3}, {:+.3}] | [{:+.3}, {:+.3}] | [{:.3}, {:.3}] | [{:+.3}, {:+.3}] | {} / {} | {} |",
            escape(&c.judge),
            escape(&c.artifact),
            c.decision.name(),
            c.decided_on
                .as_deref()
                .map_or_else(|| "–".to_string(), escape),
            c.decided_after_wave
                .map_or_else(|| "–".to_string(), |w| w.to_string()),
            c.values.len(),
            c.estimate(),
            c.interval.low,
            c.interval.high,
            c.wr_interval.low,
            c.wr_interval.high,
            c.flip_interval.low,
            c.flip_interval.high,
            c.excess_flip_interval.low,
            c.excess_flip_interval.high,
            c.calls_used,
            c.calls_planned,
            match (c.open(), c.calls_needed) {
                (false, _) => "–".to_string(),
                (true, Some(n)) => n.to_string(),
                (true, None) => "more than the plan has".to_string(),
            }
        );
    }
    out.push('\n');
    let noise: Vec<String> = s
        .noise_flip
        .iter()
        .map(|(judge, n)| {
            format!(
                "{} [{:.3}, {:.3}] ({} pairs)",
                escape(judge),
                n.interval.low,
                n.interval.high,
                n.pairs
            )
        })
        .collect();
    if !noise.is_empty() {
        let _ = writeln!(
            out,
            "Run-to-run flip rate, anytime-valid (the noise the excess flip rate is net of): {}.\n",
            noise.join("; ")
        );
    }
    if !s.juries.is_empty() {
        let _ = writeln!(
            out,
            "| jury | members | decided | after wave | members' worst level |\n|---|---|---|---|---|"
        );
        for j in &s.juries {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                escape(&j.name),
                j.members
                    .iter()
                    .map(|m| escape(m))
                    .collect::<Vec<_>>()
                    .join(", "),
                if j.decided {
                    "yes (every member's cells decided)"
                } else {
                    "no"
                },
                j.decided_after_wave
                    .map_or_else(|| "–".to_string(), |w| w.to_string()),
                j.members_level.label()
            );
        }
        out.push('\n');
    }
}

/// `report.md` for `summary`, through a [`super::ReportView`] with no gate set (what
/// `judge-audit report` writes).
pub fn render(summary: &Summary) -> String {
    render_view(&super::ReportView::new(summary))
}

/// Render the whole Markdown report of a view.
pub fn render_view(view: &super::ReportView<'_>) -> String {
    let summary = view.summary;
    let mut out = String::new();
    let _ = writeln!(out, "# judge-audit report\n");
    let simulated = super::view::simulated_judges(summary);
    if !simulated.is_empty() {
        let _ = writeln!(
            out,
            "> **Simulated judges:** {} are simulated reference judges with planted biases, not language models.\n",
            simulated
                .iter()
                .map(|s| escape(s))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        out,
        "Dataset `{}` ({} pairs, {} skipped as invalid, sha256 `{}`), seed {}, {} judge calls planned ({} baseline repeats per order). judge-audit {}.\n",
        escape(&summary.dataset.name),
        summary.dataset.pairs,
        summary.dataset.skipped,
        &summary.dataset.hash[..16.min(summary.dataset.hash.len())],
        summary.seed,
        summary.plan.total_calls,
        summary.plan.repeats,
        summary.tool.version
    );
    let _ = writeln!(
        out,
        "How to read: **T** is Chen & Goldfarb-Tarrant's tie-detection score (answer vs the same answer with the artifact; +100% = always prefers the artifact, for position = always prefers the first slot). **WR** is their winrate shift in net-preference units. **Flip rate** is the share of verdicts that changed against the baseline; *toward* means toward the perturbed answer (position: the first slot). Intervals are 95%, from a bootstrap that resamples whole pairs (Wilson for rates). p-values are shown raw / Holm-adjusted (confirmatory) / Benjamini–Hochberg q (screening), each within its family (listed at the end); ✱ marks Holm p < 0.05. **MDE** is the smallest effect this audit detects with 80% power at α = 0.05 (|T| by the exact sign test on per-pair nets with no ties; excess flip rate by a paired normal approximation): a non-significant artifact with an MDE above the effect you care about is *not* evidence of robustness.\n"
    );
    warnings_section(&mut out, view.warnings());
    if let Some(seq) = summary
        .sequential
        .as_ref()
        .filter(|_| view.has(super::Section::Sequential))
    {
        sequential_section(&mut out, seq);
    }
    for judge in &summary.judges {
        judge_section(&mut out, judge, &[]);
    }
    if !summary.juries.is_empty() {
        let _ = writeln!(
            out,
            "# Juries\n\nJuries are computed post hoc from the judges' verdicts on the same calls (no extra calls) and analysed like judges.\n"
        );
        for jury in &summary.juries {
            let simulated: Vec<&str> = jury
                .members
                .iter()
                .filter(|m| summary.judges.iter().any(|j| &j.name == *m && j.simulated))
                .map(String::as_str)
                .collect();
            judge_section(&mut out, jury, &simulated);
        }
    }
    if let Some(p) = summary
        .pointwise
        .as_ref()
        .filter(|_| view.has(super::Section::Pointwise))
    {
        out.push_str(&super::pointwise::markdown(p));
    }
    if let Some(jury) = &summary.jury {
        jury_section(&mut out, jury);
    }
    if let Some(m) = summary
        .mitigations
        .as_ref()
        .filter(|_| view.has(super::Section::Mitigations))
    {
        out.push_str(&super::mitigation::markdown(m));
    }
    if let Some(t) = &summary.templates {
        out.push_str(&super::templates::markdown(t));
    }
    if let Some(agreement) = &summary.agreement {
        agreement_section(&mut out, agreement);
    }
    if let Some(rw) = view
        .has(super::Section::Rewrites)
        .then_some(())
        .and(summary.rewrites.as_ref())
    {
        out.push_str(&super::rewrites::markdown(rw));
    }
    if let Some(info) = &summary.analysis {
        let _ = writeln!(
            out,
            "## Method\n\nBootstrap: {} resamples, {} intervals, resampling unit: {}; confidence {}; α = {}; MDE power {}. Multiplicity families (Holm for confirmatory claims, Benjamini–Hochberg for screening):\n",
            info.bootstrap_resamples,
            match info.bootstrap_method {
                crate::stats::BootstrapMethod::Percentile => "percentile",
                crate::stats::BootstrapMethod::Bca => "BCa",
            },
            escape(&info.cluster),
            info.confidence,
            info.alpha,
            info.power
        );
        for f in &info.families {
            let _ = writeln!(
                out,
                "- **{}** ({} tests): {}",
                escape(&f.name),
                f.tests,
                escape(&f.description)
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Artifacts\n");
    for a in &summary.artifacts {
        let _ = writeln!(
            out,
            "- **{}** ({}): {}. Source: {}. Expected: {}.",
            escape(&a.id),
            escape(&a.title),
            escape(&a.operation),
            escape(&a.source),
            escape(&a.expected_effect)
        );
    }
    let _ = writeln!(out, "\n## Judges\n");
    for j in &summary.judge_configs {
        let _ = writeln!(
            out,
            "- **{}**{}: backend `{}`, model `{}`, template `{}` (sha256 `{}`).",
            escape(&j.name),
            if j.simulated { " (simulated)" } else { "" },
            escape(&j.backend),
            escape(&j.model),
            escape(&j.template),
            &j.template_sha256[..16.min(j.template_sha256.len())]
        );
    }
    out
}
