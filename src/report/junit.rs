//! `report.junit.xml`: the audit as JUnit test results, which GitHub Actions, GitLab and Jenkins
//! show natively. One `<testsuite>` per judge; its test cases are the judge's verdict, one per
//! reason and one per passed check. A case fails when its severity is at or above the `--fail-on`
//! threshold (REJECT when none was given), so the JUnit failures and the `--fail-on` gate agree:
//! the gate fails exactly when some judge's `verdict` case fails.

use super::text::xml;
use super::view::{Exporter, Format, ReportView};
use crate::analyze::trust::TrustVerdict;
use std::fmt::Write;

/// `report.junit.xml`.
pub struct JunitExporter;

impl Exporter for JunitExporter {
    fn format(&self) -> Format {
        Format::Junit
    }

    fn file_name(&self) -> &'static str {
        "report.junit.xml"
    }

    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>> {
        Ok(render(view).into_bytes())
    }
}

/// One test case: name, and the failure (type, message) if it failed, or a note if it passed.
struct Case {
    name: String,
    failure: Option<(&'static str, String)>,
    note: Option<String>,
}

/// A judge's suite: name, verdict, simulated.
struct Suite<'a> {
    name: &'a str,
    trust: &'a TrustVerdict,
    simulated: bool,
}

fn cases(j: &Suite<'_>, view: &ReportView<'_>) -> Vec<Case> {
    let threshold = view.threshold();
    let option = threshold.label().to_lowercase();
    let mut out = vec![Case {
        name: "verdict".into(),
        failure: (j.trust.verdict >= threshold).then(|| {
            (
                j.trust.verdict.label(),
                format!(
                    "{} is {} (--fail-on {option}: {} or worse fails)",
                    j.name,
                    j.trust.verdict.label(),
                    threshold.label()
                ),
            )
        }),
        note: None,
    }];
    for r in &j.trust.reasons {
        // A rubric criterion names its case too (pointwise judges only).
        let rule = match &r.criterion {
            Some(c) => format!("{}: {c}", r.rule),
            None => r.rule.clone(),
        };
        let name = match &r.artifact {
            Some(a) => format!("{rule}: {a}"),
            None => rule,
        };
        if r.severity >= threshold {
            out.push(Case {
                name,
                failure: Some((r.severity.label(), r.text.clone())),
                note: None,
            });
        } else {
            out.push(Case {
                name,
                failure: None,
                note: Some(format!(
                    "{}: {} (below the --fail-on {option} threshold)",
                    r.severity.label(),
                    r.text
                )),
            });
        }
    }
    for p in &j.trust.passed {
        out.push(Case {
            name: format!("passed: {p}"),
            failure: None,
            note: None,
        });
    }
    out
}

/// Render the JUnit XML document.
pub fn render(view: &ReportView<'_>) -> String {
    let s = view.summary;
    // Pairwise judges, then pointwise judges: the judges the gate checks.
    let pairwise = s.judges.iter().map(|j| Suite {
        name: &j.name,
        trust: &j.trust,
        simulated: j.simulated,
    });
    let pointwise = s.pointwise.iter().flat_map(|p| &p.judges).map(|j| Suite {
        name: &j.judge,
        trust: &j.trust,
        simulated: j.simulated,
    });
    let suites: Vec<(Suite<'_>, Vec<Case>)> = pairwise
        .chain(pointwise)
        .map(|j| {
            let c = cases(&j, view);
            (j, c)
        })
        .collect();
    let tests: usize = suites.iter().map(|(_, c)| c.len()).sum::<usize>() + 1;
    let no_judge = suites.is_empty();
    let failures: usize = suites
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| c.failure.is_some())
        .count()
        + usize::from(no_judge);
    let mut out = String::with_capacity(4096);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"judge-audit\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">"
    );
    // The gate's own precondition: a summary without judges fails every --fail-on.
    let _ = writeln!(
        out,
        "  <testsuite name=\"judge-audit\" tests=\"1\" failures=\"{}\" errors=\"0\" skipped=\"0\">",
        usize::from(no_judge)
    );
    out.push_str("    <testcase name=\"judges audited\" classname=\"judge-audit\">");
    if no_judge {
        out.push_str("<failure type=\"NO JUDGE\" message=\"the summary has no judge to check\"/>");
    }
    // An interrupted run's verdicts are provisional: said where CI shows the suite.
    if let Some(w) = s.warnings.iter().find(|w| w.kind == "run_incomplete") {
        let _ = write!(out, "<system-out>{}</system-out>", xml(&w.message));
    }
    out.push_str("</testcase>\n  </testsuite>\n");
    for (j, cases) in &suites {
        let failed = cases.iter().filter(|c| c.failure.is_some()).count();
        let classname = xml(&format!("judge-audit.{}", j.name));
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" skipped=\"0\">",
            xml(j.name),
            cases.len()
        );
        let _ = writeln!(
            out,
            "    <properties><property name=\"verdict\" value=\"{}\"/><property name=\"simulated\" value=\"{}\"/></properties>",
            j.trust.verdict.label(),
            j.simulated
        );
        for c in cases {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{classname}\">",
                xml(&c.name)
            );
            if let Some((kind, message)) = &c.failure {
                let _ = write!(
                    out,
                    "<failure type=\"{kind}\" message=\"{}\">{}</failure>",
                    xml(message),
                    xml(message)
                );
            }
            if let Some(note) = &c.note {
                let _ = write!(out, "<system-out>{}</system-out>", xml(note));
            }
            out.push_str("</testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
