//! `report.html`: structure and numbers of the demo report, escaping of hostile summaries,
//! optional sections, and byte-identical output for identical summaries.

mod report_common;

use judge_audit::report;
use judge_audit::report::html;
use regex::Regex;
use report_common::{HOSTILE, hostile_summary};
use serde_json::Value;

/// Tags the renderer itself emits; anything else in the output came from data.
const ALLOWED_TAGS: [&str; 43] = [
    "html",
    "head",
    "meta",
    "title",
    "style",
    "body",
    "header",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "p",
    "span",
    "b",
    "i",
    "nav",
    "a",
    "main",
    "section",
    "article",
    "ul",
    "li",
    "figure",
    "figcaption",
    "svg",
    "desc",
    "rect",
    "line",
    "text",
    "tspan",
    "circle",
    "table",
    "caption",
    "thead",
    "tbody",
    "tr",
    "th",
    "td",
    "code",
    "mark",
    "footer",
    "br",
];

/// Every tag is one the renderer emits, no attribute is an event handler, and every link is an
/// in-page anchor.
fn assert_only_own_markup(page: &str) {
    let tag = Regex::new(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)([^>]*)>").unwrap();
    let handler = Regex::new(r#"(?i)[\s"']on[a-z]+\s*="#).unwrap();
    let href = Regex::new(r#"href="([^"]*)""#).unwrap();
    let mut tags = 0;
    for cap in tag.captures_iter(page) {
        tags += 1;
        let name = cap[2].to_ascii_lowercase();
        assert!(
            ALLOWED_TAGS.contains(&name.as_str()),
            "unexpected tag <{}{}>",
            &cap[2],
            &cap[3]
        );
        assert!(
            !handler.is_match(&cap[3]),
            "event handler in <{}{}>",
            &cap[2],
            &cap[3]
        );
        for h in href.captures_iter(&cap[3]) {
            assert!(h[1].starts_with('#'), "external link {}", &h[1]);
        }
        assert!(
            !cap[3].contains("src="),
            "a source attribute in <{}{}>",
            &cap[2],
            &cap[3]
        );
    }
    assert!(tags > 100);
    let lower = page.to_ascii_lowercase();
    for banned in [
        "<script", "<img", "<iframe", "<object", "<link", "@import", "url(",
    ] {
        assert!(!lower.contains(banned), "{banned} in the page");
    }
}

const CSP_META: &str = "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">";

fn section<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("section {id}"));
    let end = page[start..].find("</section>").unwrap() + start;
    &page[start..end]
}

#[test]
fn demo_report_is_self_contained_and_complete() {
    let dir = report_common::demo(42);
    let page = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let json = report_common::demo_json(42);
    assert!(
        page.starts_with("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n")
    );
    assert!(page.contains(CSP_META));
    assert_only_own_markup(&page);
    for id in [
        "verdicts",
        "effects",
        "flips",
        "position",
        "jury",
        "agreement",
        "categories",
        "details",
        "examples",
        "metadata",
    ] {
        section(&page, id);
    }
    // The demo computes three configured juries and the composer's suggestion (issue 11: the
    // page used to show none of them, because it looked for juries among the judges by guessed
    // JSON keys). Issue 20 §7: the composer suggests only jurors the audit does not REJECT: the
    // unbiased judge and the two mild, opposite-sign apology judges.
    let jury = section(&page, "jury");
    assert_eq!(jury.matches("<td>jury</td>").count(), 4);
    for name in [
        "jury-majority",
        "jury-unanimity",
        "jury-weighted",
        "jury-suggested",
    ] {
        assert!(jury.contains(&format!("<h3>{name}</h3>")), "{name}");
    }
    let composer = section(&page, "composer");
    assert!(
        composer.contains("<b>sim-unbiased, sim-mild-apology, sim-mild-apology-averse</b>"),
        "{composer}"
    );
    // Twenty-one pairs of seven judges in the agreement table.
    assert_eq!(section(&page, "agreement").matches("<tr><td>").count(), 21);
    // Four pairwise charts and the pointwise score-shift forest plot, each with an accessible
    // title and description.
    assert_eq!(page.matches("<svg ").count(), 5);
    assert_eq!(page.matches("-title\">").count(), 5);
    assert_eq!(page.matches("<desc id=").count(), 5);
    assert_eq!(
        page.matches("<table class=\"sr-only\">").count(),
        5,
        "a text alternative per chart"
    );

    let judges = json["judges"].as_array().unwrap();
    // Verdict cards: one badge per judge with the summary's verdict.
    let cards = section(&page, "verdicts");
    for verdict in ["ADOPT", "CAUTION", "REJECT"] {
        let expected = judges
            .iter()
            .filter(|j| j["trust"]["verdict"] == verdict)
            .count();
        let class = format!("class=\"badge {}\"", verdict.to_lowercase());
        assert_eq!(cards.matches(&class).count(), expected, "{verdict}");
    }
    // Every judge is labelled SIMULATED in each section that names judges.
    for id in [
        "verdicts",
        "flips",
        "position",
        "categories",
        "details",
        "metadata",
    ] {
        assert!(
            section(&page, id).matches("SIMULATED").count() >= judges.len(),
            "{id}"
        );
    }
    // Heatmap numbers with their interval and n, formatted independently from the JSON.
    let pct = |v: &Value| format!("{:+.1}%", 100.0 * v.as_f64().unwrap());
    let apology = judges
        .iter()
        .find(|j| j["name"] == "sim-apology-lover")
        .unwrap()["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "apology")
        .unwrap();
    let t = &apology["tie_detection"];
    let tooltip = format!(
        "sim-apology-lover · apology · T = {} [{}, {}] n={}",
        pct(&t["estimate"]),
        pct(&t["ci_low"]),
        pct(&t["ci_high"]),
        t["n"]
    );
    assert!(section(&page, "effects").contains(&tooltip), "{tooltip}");
    // The caption counts Holm-significant T cells.
    let significant_t = judges
        .iter()
        .flat_map(|j| j["artifacts"].as_array().unwrap())
        .filter(|a| {
            a["tie_detection"]["p_adjusted"]
                .as_f64()
                .is_some_and(|p| p < 0.05)
        })
        .count();
    let cells = judges.len() * judges[0]["artifacts"].as_array().unwrap().len();
    assert!(page.contains(&format!(
        "Tie-detection score T: {significant_t} of {cells} judge × artifact cells significant"
    )));
    // Forest plot: one noise band per judge, with its interval and n.
    let flips = section(&page, "flips");
    for j in judges {
        let noise = &j["baseline"]["noise_flip_rate"];
        let band = format!(
            "<title>{}: run-to-run flip rate {:.1}% [{:.1}%, {:.1}%] n={}</title>",
            j["name"].as_str().unwrap(),
            100.0 * noise["estimate"].as_f64().unwrap(),
            100.0 * noise["ci_low"].as_f64().unwrap(),
            100.0 * noise["ci_high"].as_f64().unwrap(),
            noise["n"]
        );
        assert_eq!(flips.matches(&band).count(), 1, "{band}");
    }
    // Examples: one card per example, injected ranges highlighted exactly.
    let examples = json["examples"].as_array().unwrap();
    assert_eq!(
        section(&page, "examples")
            .matches("<article class=\"example\">")
            .count(),
        examples.len()
    );
    let first = &examples[0];
    let perturbed = first["perturbed"].as_str().unwrap();
    for range in first["injected"].as_array().unwrap() {
        let (s, e) = (
            range["start"].as_u64().unwrap() as usize,
            range["end"].as_u64().unwrap() as usize,
        );
        let marked = format!("<mark>{}</mark>", html::escape(&perturbed[s..e]));
        assert!(page.contains(&marked), "{marked}");
    }
    // Run metadata: seed, dataset hash, template hash.
    let meta = section(&page, "metadata");
    assert!(meta.contains(json["dataset"]["hash"].as_str().unwrap()));
    assert!(
        meta.contains(
            json["judge_configs"][0]["template_sha256"]
                .as_str()
                .unwrap()
        )
    );
    assert!(meta.contains("<tr><th>seed</th><td>42</td></tr>"));
}

#[test]
fn hostile_summaries_cannot_inject_markup() {
    let page = html::render(&hostile_summary());
    assert!(page.contains(CSP_META));
    assert_only_own_markup(&page);
    for text in HOSTILE {
        let escaped = html::escape(text);
        assert!(page.contains(&escaped), "escaped {escaped}");
    }
    // Handler-looking text only ever appears right after its escaped prefix (clipped chart
    // labels may cut the rest).
    for (word, prefix) in [
        ("onerror", "&lt;img src=x "),
        ("onmouseover", "&quot; "),
        ("onfocus", "&#39; "),
        ("onload", "&lt;svg "),
    ] {
        let hits: Vec<usize> = page.match_indices(word).map(|(i, _)| i).collect();
        assert!(!hits.is_empty(), "{word} present as text");
        for i in hits {
            assert!(
                page[..i].ends_with(prefix),
                "{word} without its escaped prefix: {}",
                &page[i.saturating_sub(40)..i + 20]
            );
        }
    }
    assert!(!page.contains('\u{202E}'), "bidi override rendered raw");
    assert!(page.contains("evil\\u{202E}txt.exe"));
    // The 1 MB answers are cut to the display limit with a note.
    assert!(page.len() < 1_000_000, "page is {} bytes", page.len());
    assert_eq!(
        page.matches("truncated, 999,999 characters in total")
            .count(),
        2
    );
    assert!(page.contains("<mark>AAAAAAAAAA</mark>"));
    assert!(page.contains("1 injected span beyond the part shown"));
}

#[test]
fn optional_fields_render_when_present() {
    let mut summary = report_common::demo_summary(42);
    // A jury naming a member the summary does not hold.
    summary.juries.truncate(1);
    summary.juries[0].members.push("not-here".to_string());
    summary.judges[1].artifacts[0].tie_detection.score.q_value = Some(0.0123);
    let mde = summary.judges[1].artifacts[0].mde.clone();
    summary.judge_configs[2].config["pricing"] =
        serde_json::json!({"input_per_mtok": 1.0, "output_per_mtok": 2.0});
    let page = html::render(&summary);
    assert_only_own_markup(&page);
    let jury = section(&page, "jury");
    assert!(jury.contains("<h3>jury-majority</h3>"));
    // Seven demo jurors and the unknown member.
    assert_eq!(jury.matches("<td>juror</td>").count(), 8);
    assert!(jury.contains("not-here") && jury.contains("not in this summary"));
    assert!(page.contains("href=\"#jury\""));
    assert!(page.contains("BH q 0.012"));
    assert!(page.contains("minimum detectable effect"));
    // Effects as percentages, sizes as counts (issue 19: the family size was shown as 12600.0%).
    assert!(page.contains(&format!("|T|</span> {:.1}%", 100.0 * mde.t.unwrap())));
    assert!(page.contains(&format!("family of {} tests", mde.family_size)));
    assert!(page.contains(&format!("{} pairs · ", mde.pairs)));
    // 372,990 input tokens at $1/M plus 6,048 output tokens at $2/M = $0.385 (hand-computed).
    let tokens = &summary.judges[2].calls;
    assert_eq!(
        (tokens.input_tokens, tokens.output_tokens),
        (372_990, 6_048)
    );
    assert!(page.contains("≈ $0.39 <span class=\"ci\">(configured prices)</span>"));
}

#[test]
fn long_names_are_clipped_in_charts_but_kept_in_full() {
    let mut summary = report_common::demo_summary(42);
    let long = "a-very-long-judge-name-that-goes-on-and-on-and-on";
    summary.judges[0].name = long.into();
    let page = html::render(&summary);
    assert!(page.contains(&format!("<title>{long}</title>")));
    assert!(page.contains("a-very-long-judge-name-th…"));
}

#[test]
fn identical_summaries_give_byte_identical_files() {
    let summary = report_common::demo_summary(42);
    let a = report_common::scratch("write-a");
    let b = report_common::scratch("write-b");
    let written = report::write_all(&summary, &a).unwrap();
    report::write_all(&summary, &b).unwrap();
    let names: Vec<String> = written
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["summary.json", "report.md", "report.html", "results.csv"]
    );
    for name in &names {
        let x = std::fs::read(a.join(name)).unwrap();
        assert!(!x.is_empty());
        assert_eq!(x, std::fs::read(b.join(name)).unwrap(), "{name} differs");
    }
    // And the run's own files equal a re-render of its summary.
    let demo = report_common::demo(42);
    for name in ["report.html", "results.csv", "report.md"] {
        assert_eq!(
            std::fs::read(demo.join(name)).unwrap(),
            std::fs::read(a.join(name)).unwrap(),
            "{name}"
        );
    }
    // A write error names the file.
    let blocker = a.join("blocked");
    std::fs::write(&blocker, "a file, not a folder").unwrap();
    let err = report::write_all(&summary, &blocker).unwrap_err();
    assert!(err.to_string().contains("blocked"), "{err}");
}

#[test]
fn degenerate_summaries_render() {
    // A judge whose every call failed: no estimate anywhere.
    let mut summary = report_common::demo_summary(42);
    let judge = &mut summary.judges[0];
    let blank = |e: &mut judge_audit::analyze::Estimate| {
        e.estimate = None;
        e.ci_low = None;
        e.ci_high = None;
        e.p_value = None;
        e.p_adjusted = None;
        e.n = 0;
    };
    for a in &mut judge.artifacts {
        blank(&mut a.tie_detection.score);
        blank(&mut a.winrate_shift.shift);
        blank(&mut a.flip_rate.rate);
        blank(&mut a.excess_flip_rate);
    }
    blank(&mut judge.baseline.noise_flip_rate);
    blank(&mut judge.baseline.gold_accuracy);
    let pc = &mut judge.baseline.position_consistency;
    (
        pc.n,
        pc.consistent,
        pc.prefers_first,
        pc.prefers_second,
        pc.other,
        pc.error,
    ) = (0, 0, 0, 0, 0, 0);
    blank(&mut pc.rate);
    judge.categories.clear();
    let page = html::render(&summary);
    assert_only_own_markup(&page);
    assert!(section(&page, "effects").contains("n/a (n=0)"));
    assert!(section(&page, "verdicts").contains("gold accuracy n/a (n=0)"));

    // No judges and no examples at all.
    summary.judges.clear();
    summary.examples.clear();
    summary.dataset.categories.clear();
    let page = html::render(&summary);
    assert!(section(&page, "examples").contains("No verdict flipped."));
    assert!(section(&page, "categories").contains("No category information"));
    assert_eq!(
        page.matches("<svg ").count(),
        // The four pairwise charts, empty, and the pointwise forest plot.
        5,
        "charts still render, empty"
    );
}
