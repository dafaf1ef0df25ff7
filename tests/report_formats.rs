//! Every section in every format from one typed view (issue 11), numbers in their own units
//! (issue 19), the CI formats (JUnit validated against the common schema, agreeing with
//! `--fail-on`; the GitHub step summary), `--format`, `report --open`, and controls from answers
//! shown escaped in Markdown and on the terminal (issue 10 item 14).

mod report_common;

use judge_audit::analyze::Trust;
use judge_audit::report::{self, ReportView, Section, Summary};
use regex::Regex;
use report_common::{assert_success, bin, demo, demo_summary, scratch};
use std::path::{Path, PathBuf};

/// A run of the unbiased simulated judge alone (no jury, no agreement, no composer).
fn one_judge_run() -> PathBuf {
    let dir = scratch("one-judge");
    let config = dir.join("audit.toml");
    std::fs::write(&config, "seed = 42\njudges = [\"sim-unbiased\"]\n").unwrap();
    let out = dir.join("run");
    let o = bin()
        .args(["run", "--quiet", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&o);
    out
}

/// The marker of each optional section in each default format.
fn markers(section: Section) -> [&'static str; 4] {
    // [html, markdown, json, csv]
    match section {
        Section::Juries => [
            "<section id=\"jury\">",
            "# Juries\n",
            "\"juries\": [",
            ",jury\n",
        ],
        Section::Agreement => [
            "<section id=\"agreement\">",
            "## Agreement between judges\n",
            "\"agreement\": {",
            ",agreement,cohen_kappa,",
        ],
        Section::Composer => [
            "<section id=\"composer\">",
            "**Suggested jury**",
            "\"composer\": {",
            ",composer\n",
        ],
        _ => unreachable!(),
    }
}

fn files(dir: &Path) -> [String; 4] {
    ["report.html", "report.md", "summary.json", "results.csv"]
        .map(|f| std::fs::read_to_string(dir.join(f)).unwrap())
}

#[test]
fn jury_agreement_and_composer_sections_appear_in_every_format_for_the_demo_and_in_none_for_one_judge()
 {
    let demo_files = files(&demo(42));
    let one_files = files(&one_judge_run());
    // Issue 20 §7: the composer suggests no REJECTed juror; the demo's unbiased judge and its
    // two mild, opposite-sign jurors are eligible, the four strongly biased ones are not.
    assert!(demo_files[2].contains("is not suggested as a juror (REJECT)"));
    for section in [Section::Juries, Section::Agreement, Section::Composer] {
        for (k, marker) in markers(section).iter().enumerate() {
            assert!(
                demo_files[k].contains(marker),
                "{section:?}: demo file {k} lacks {marker:?}"
            );
            assert!(
                !one_files[k].contains(marker),
                "{section:?}: one-judge file {k} has {marker:?}"
            );
        }
    }
    // The view agrees with the files.
    let summary = demo_summary(42);
    let view = ReportView::new(&summary);
    assert!(
        view.has(Section::Juries) && view.has(Section::Agreement) && view.has(Section::Composer)
    );
    let one: Summary = serde_json::from_str(
        &std::fs::read_to_string(one_judge_run().join("summary.json")).unwrap(),
    )
    .unwrap();
    let view = ReportView::new(&one);
    assert!(
        !view.has(Section::Juries) && !view.has(Section::Agreement) && !view.has(Section::Composer)
    );
}

#[test]
fn no_size_or_count_is_shown_as_a_percentage() {
    let page = std::fs::read_to_string(demo(42).join("report.html")).unwrap();
    // Text only: markup and inline SVG coordinates are not numbers a reader sees.
    let text = Regex::new(r"<[^>]*>").unwrap().replace_all(&page, " ");
    let count_units = "pairs?|tests?|comparisons?|calls?|items?|judges?|subsets?|verdicts?";
    let as_percent = Regex::new(&format!(
        r"\d[\d,.]*%\s*({count_units})\b|n=\d[\d,.]*%|family_size"
    ))
    .unwrap();
    let hits: Vec<&str> = as_percent.find_iter(&text).map(|m| m.as_str()).collect();
    assert!(hits.is_empty(), "counts shown as percentages: {hits:?}");
    // The labelled counts are there, as integers (the check above is not vacuous).
    let family = Regex::new(r"family of (\d[\d,]*) tests").unwrap();
    let sizes: Vec<&str> = family
        .captures_iter(&text)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let summary = demo_summary(42);
    let expected = summary.judges[0].artifacts[0].mde.family_size.to_string();
    assert!(
        !sizes.is_empty() && sizes.iter().all(|s| *s == expected),
        "{sizes:?}"
    );
    assert!(Regex::new(r"\b48 pairs\b").unwrap().is_match(&text));
    assert!(Regex::new(r"n=\d+\b").unwrap().find_iter(&text).count() > 100);
}

fn junit_counts(xml: &str) -> (usize, usize, Vec<String>) {
    let root = Regex::new(r#"<testsuites [^>]*tests="(\d+)" failures="(\d+)""#)
        .unwrap()
        .captures(xml)
        .expect("testsuites element");
    let failed_verdicts = Regex::new(
        r#"<testsuite name="([^"]*)"[^>]*>\s*<properties>.*?</properties>\s*<testcase name="verdict"[^>]*><failure"#,
    )
    .unwrap()
    .captures_iter(xml)
    .map(|c| c[1].to_string())
    .collect();
    (
        root[1].parse().unwrap(),
        root[2].parse().unwrap(),
        failed_verdicts,
    )
}

/// `xmllint --schema` (Debian's libxml2-utils). CI installs it and sets
/// JUDGE_AUDIT_REQUIRE_XMLLINT=1 so the validation cannot be skipped there.
fn validate(xml_path: &Path) -> bool {
    let xsd = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/junit.xsd");
    match std::process::Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(&xsd)
        .arg(xml_path)
        .output()
    {
        Ok(o) => {
            assert!(
                o.status.success(),
                "{} does not validate: {}",
                xml_path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
        Err(e) => {
            assert!(
                std::env::var_os("JUDGE_AUDIT_REQUIRE_XMLLINT").is_none(),
                "xmllint is required: {e}"
            );
            eprintln!("xmllint not installed ({e}); schema validation skipped");
            false
        }
    }
}

#[test]
fn junit_validates_and_agrees_with_the_fail_on_gate() {
    let summary = demo_summary(42);
    let dir = scratch("junit");
    for threshold in [Trust::Caution, Trust::Reject] {
        let view = ReportView::new(&summary).with_fail_on(Some(threshold));
        let xml = report::junit::render(&view);
        let path = dir.join(format!("{}.xml", threshold.label()));
        std::fs::write(&path, &xml).unwrap();
        validate(&path);
        let gate = report::gate(&summary, threshold);
        let (tests, failures, failed_verdicts) = junit_counts(&xml);
        // Pairwise judges, then pointwise ones: JUnit and the gate count both.
        let pointwise = summary.pointwise.iter().flat_map(|p| &p.judges);
        let tripped: Vec<String> = summary
            .judges
            .iter()
            .filter(|j| j.trust.verdict >= threshold)
            .map(|j| j.name.clone())
            .chain(
                pointwise
                    .clone()
                    .filter(|j| j.trust.verdict >= threshold)
                    .map(|j| j.judge.clone()),
            )
            .collect();
        assert_eq!(failed_verdicts, tripped, "{threshold:?}");
        assert_eq!(gate.passed, failures == 0, "{threshold:?}");
        assert!(!gate.passed && failures > tripped.len());
        // Every reason at or above the threshold is a failure with its text; those below are not.
        let reasons_failing: usize = summary
            .judges
            .iter()
            .flat_map(|j| &j.trust.reasons)
            .chain(pointwise.clone().flat_map(|j| &j.trust.reasons))
            .filter(|r| r.severity >= threshold)
            .count();
        assert_eq!(failures, tripped.len() + reasons_failing);
        let cases = summary
            .judges
            .iter()
            .map(|j| &j.trust)
            .chain(pointwise.map(|j| &j.trust))
            .map(|t| 1 + t.reasons.len() + t.passed.len())
            .sum::<usize>()
            + 1;
        assert_eq!(tests, cases);
    }
    // A judge-free summary fails the gate, and JUnit says so.
    let mut empty = summary.clone();
    empty.judges.clear();
    empty.pointwise = None;
    let xml = report::junit::render(&ReportView::new(&empty).with_fail_on(Some(Trust::Reject)));
    assert!(!report::gate(&empty, Trust::Reject).passed);
    assert_eq!(junit_counts(&xml).1, 1);
    // The unbiased judge alone passes both.
    let mut unbiased = summary.clone();
    unbiased.judges.truncate(1);
    unbiased.pointwise = None;
    assert_eq!(unbiased.judges[0].trust.verdict, Trust::Adopt);
    let xml = report::junit::render(&ReportView::new(&unbiased).with_fail_on(Some(Trust::Caution)));
    assert_eq!(junit_counts(&xml).1, 0);
    assert!(report::gate(&unbiased, Trust::Caution).passed);
}

#[test]
fn hostile_names_keep_junit_valid() {
    let summary = report_common::hostile_summary();
    let xml = report::junit::render(&ReportView::new(&summary));
    let path = scratch("junit-hostile").join("report.junit.xml");
    std::fs::write(&path, &xml).unwrap();
    if validate(&path) {
        // Validation parsed it: no markup escaped the attributes.
    }
    assert!(!xml.contains("<script"));
}

#[test]
fn format_chooses_the_files_and_report_re_renders_them_identically() {
    let dir = scratch("formats");
    let out = dir.join("run");
    let o = bin()
        .args([
            "demo",
            "--quiet",
            "--seed",
            "42",
            "--format",
            "junit",
            "--format",
            "gh-summary",
            "--format",
            "junit",
            "--fail-on",
            "reject",
            "--out",
        ])
        .arg(&out)
        .output()
        .unwrap();
    // The demo has rejected judges: the gate trips (exit 1) and JUnit carries failures.
    assert_eq!(o.status.code(), Some(1));
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with("calls.") && !n.starts_with("run."))
        .collect();
    names.sort();
    assert_eq!(names, ["report.junit.xml", "step-summary.md"]);
    let junit = std::fs::read_to_string(out.join("report.junit.xml")).unwrap();
    assert!(junit_counts(&junit).1 > 0);
    let step = std::fs::read_to_string(out.join("step-summary.md")).unwrap();
    assert!(step.contains("**gate: FAIL (--fail-on reject"));
    assert!(step.len() < 64 * 1024);

    // `report` re-renders: the default four, identical to the demo's own files.
    let o = bin().arg("report").arg(&out).output().unwrap();
    assert_success(&o);
    for f in report::REPORT_FILES {
        assert_eq!(
            std::fs::read(out.join(f)).unwrap(),
            std::fs::read(demo(42).join(f)).unwrap(),
            "{f}"
        );
    }
    // And a chosen format again, byte for byte (the gate threshold of `report` is REJECT, the
    // same as the run's --fail-on reject).
    let o = bin()
        .arg("report")
        .arg(&out)
        .args(["--format", "junit"])
        .output()
        .unwrap();
    assert_success(&o);
    assert_eq!(
        std::fs::read_to_string(out.join("report.junit.xml")).unwrap(),
        junit
    );
    let o = bin()
        .arg("report")
        .arg(&out)
        .args(["--format", "pdf"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown format `pdf`"));
}

#[test]
fn report_open_runs_the_configured_opener_on_the_page() {
    let dir = scratch("open");
    let run = dir.join("run");
    let o = bin()
        .args([
            "demo", "--quiet", "--seed", "7", "--format", "json", "--out",
        ])
        .arg(&run)
        .output()
        .unwrap();
    assert_success(&o);
    let log = dir.join("opened.txt");
    let opener = dir.join("opener.sh");
    std::fs::write(
        &opener,
        format!("#!/bin/sh\nprintf '%s' \"$1\" > '{}'\n", log.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&opener, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    // Without the page, --open says which format to add.
    let o = bin()
        .arg("report")
        .arg(&run)
        .args(["--format", "json", "--open"])
        .env("JUDGE_AUDIT_OPENER", &opener)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("add --format html"));
    assert!(!log.exists());
    let o = bin()
        .arg("report")
        .arg(&run)
        .arg("--open")
        .env("JUDGE_AUDIT_OPENER", &opener)
        .output()
        .unwrap();
    assert_success(&o);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        run.join("report.html").display().to_string()
    );
    // No display and no opener: nothing is run, the page is named.
    let o = bin()
        .arg("report")
        .arg(&run)
        .arg("--open")
        .env_remove("JUDGE_AUDIT_OPENER")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .unwrap();
    assert_success(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("no display"));
}

#[test]
fn controls_from_answers_are_escaped_in_markdown_and_on_the_terminal() {
    let mut summary = demo_summary(42);
    let hostile = "evil\u{1b}[2J\u{7}\u{202E}txt";
    summary.judges[0].findings.insert(0, hostile.to_string());
    summary.juries[0].name = hostile.to_string();
    if let Some(e) = summary.examples.first_mut() {
        e.judge = hostile.to_string();
    }
    let md = report::markdown::render(&summary);
    let step = report::gh_summary::render(&ReportView::new(&summary));
    for text in [&md, &step] {
        assert!(!text.contains('\u{1b}') && !text.contains('\u{7}') && !text.contains('\u{202E}'));
        // Markdown escapes the backslash too, so a reader sees `\u{001B}`.
        assert!(text.contains("evil\\\\u{001B}"));
    }
    // The terminal lines go through the same place (print_verdicts uses text::terminal).
    assert_eq!(
        judge_audit::report::text::terminal(hostile),
        "evil\\u{001B}[2J\\u{0007}\\u{202E}txt"
    );
}

/// Regression: report.md escaped `|` and `<` in prose too, so a reader of the raw file saw
/// `\|T\|` and `47.9% \< 50.0%`. Prose now keeps them; table cells still escape `|`, and markup
/// from an answer or a name stays inert in both.
#[test]
fn markdown_prose_reads_as_written_and_cells_stay_cells() {
    let mut summary = demo_summary(42);
    let md = report::markdown::render(&summary);
    let prose: Vec<&str> = md.lines().filter(|l| !l.starts_with('|')).collect();
    assert!(
        prose.iter().any(|l| l.contains("|T| = ")),
        "a reason about |T| is in the prose"
    );
    for line in &prose {
        assert!(
            !line.contains("\\|") && !line.contains("\\<"),
            "escaped | or < in prose: {line}"
        );
    }
    // A hostile name: in a table row the pipe is escaped (the row keeps its column count), in
    // prose its tag cannot open HTML.
    summary
        .agreement
        .as_mut()
        .expect("the demo has agreement")
        .pairwise[0]
        .judge_a = "a|b <img src=x onerror=alert(1)>".to_string();
    summary.judges[0]
        .findings
        .insert(0, "see <script>alert(1)</script>".to_string());
    let md = report::markdown::render(&summary);
    assert!(md.contains("see \\<script>alert(1)\\</script>"), "{md}");
    let unescaped = md.replace("\\<", "");
    assert!(!unescaped.contains("<img") && !unescaped.contains("<script"));
    let row = md
        .lines()
        .find(|l| l.starts_with("| a\\|b"))
        .expect("a table row naming the hostile judge");
    assert!(row.contains("\\<img"), "{row}");
}

/// Issue 11: a template limit and an artifact that changed under half of its answers are
/// warnings in the summary's data, shown by every format that shows warnings (the first used to
/// reach only a `tracing` event, the second only the artifact's own line).
#[test]
fn template_limits_and_artifacts_that_change_little_are_warnings_in_every_format() {
    let dir = scratch("template-limit");
    std::fs::create_dir_all(dir.join("catalog")).unwrap();
    std::fs::write(
        dir.join("catalog/noop.toml"),
        "id = \"apology-noop\"\ntitle = \"t\"\ndescription = \"d\"\nsource = \"s\"\n\
         expected_effect = \"e\"\n[operation]\nkind = \"regex_replace\"\n\
         pattern = 'ZZZ-never'\nreplacement = \"sorry \"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("sim-short.toml"),
        "name = \"sim-short\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 1\n\
         template = \"mtbench-pairwise\"\nmax_tokens = 64\n\n[sim]\naccuracy = 0.8\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        "seed = 42\njudges = [\"sim-short.toml\", \"sim-unbiased\"]\n\
         [design]\nartifacts = [\"apology\", \"apology-noop\"]\n\
         [perturbations]\ndir = \"catalog\"\n",
    )
    .unwrap();
    let out = dir.join("run");
    let o = bin()
        .args(["run", "--quiet", "--limit", "3", "--config"])
        .arg(dir.join("audit.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&o);
    let summary: Summary =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // mtbench-pairwise declares min_max_tokens = 512.
    assert_eq!(summary.judge_configs[0].template_min_max_tokens, Some(512));
    let limits: Vec<_> = summary
        .warnings
        .iter()
        .filter(|w| w.kind == "template_limit")
        .collect();
    assert_eq!(limits.len(), 1);
    assert_eq!(limits[0].judge.as_deref(), Some("sim-short"));
    let words = "max_tokens = 64 is below the minimum of 512";
    assert!(limits[0].message.contains(words), "{}", limits[0].message);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(md.contains(words) && html.contains(words));
    // The no-op artifact changed none of the 6 answers of 3 pairs, for both judges: one
    // warning naming them; the real apology changed every answer: none.
    let low: Vec<_> = summary
        .warnings
        .iter()
        .filter(|w| w.kind == "artifact_low_change")
        .collect();
    assert_eq!(low.len(), 1, "{low:?}");
    assert_eq!(low[0].judge, None);
    let words = "`apology-noop` changed only 0 of 6 answers";
    assert!(low[0].message.contains(words), "{}", low[0].message);
    assert!(
        low[0]
            .message
            .ends_with("(judges: sim-short, sim-unbiased)")
    );
    // Markdown escapes the backticks of the message; both pages show its words.
    let words = "apology-noop\\` changed only 0 of 6 answers";
    assert!(md.contains(words), "{md}");
    assert!(html.contains("apology-noop` changed only 0 of 6 answers"));
    // A judge at or above the minimum gets no such warning: the demo's judges use templates
    // without one.
    assert!(
        !demo_summary(42)
            .warnings
            .iter()
            .any(|w| w.kind == "template_limit")
    );
}
