//! A real browser opens `report.html` rendered from hostile summaries: headless Chromium's DOM
//! must hold the hostile strings as text (no script element, no event-handler attribute, no
//! reordering bidi control), and a screenshot must be produced.
//!
//! Without Chromium (at build time, see build.rs) the tests are reported `ignored` with the
//! reason; `JUDGE_AUDIT_REQUIRE_BROWSER=1` makes them run and a missing browser a failure (CI).
//! Screenshots go to `$JUDGE_AUDIT_ARTIFACTS`, else `target/ci-artifacts/`.

mod report_common;

use judge_audit::report::html;
use regex::Regex;
use report_common::{HOSTILE, hostile_summary, scratch};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `/usr/bin/chromium`, else `chromium` (or `chromium-browser`) on `PATH`.
fn chromium() -> Option<PathBuf> {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        return Some(fixed);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
        .find(|p| p.is_file())
}

/// The browser; a test that is not ignored fails without one.
fn browser() -> PathBuf {
    chromium().expect(
        "no chromium found (install it, or unset JUDGE_AUDIT_REQUIRE_BROWSER to have these tests ignored)",
    )
}

fn artifacts_dir() -> PathBuf {
    let dir = match std::env::var_os("JUDGE_AUDIT_ARTIFACTS") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("the target directory")
            .join("ci-artifacts"),
    };
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run headless Chromium on `page` with `args`, in a fresh profile, and return its stdout. A
/// generous deadline only guards against a hung browser; nothing is asserted about time.
fn run_chromium(browser: &Path, work: &Path, page: &Path, args: &[String]) -> String {
    let profile = work.join(format!("profile-{}", args.len()));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile).unwrap();
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("chromium starts");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("chromium did not finish");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = out_reader.join().unwrap();
    let err = err_reader.join().unwrap();
    assert!(status.success(), "chromium failed: {status}\n{err}");
    out
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.len() > 24, "too short for a PNG");
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

fn screenshot(browser: &Path, work: &Path, page: &Path, name: &str) -> PathBuf {
    let target = artifacts_dir().join(name);
    let _ = std::fs::remove_file(&target);
    run_chromium(
        browser,
        work,
        page,
        &[
            format!("--screenshot={}", target.display()),
            "--window-size=1280,2000".to_string(),
        ],
    );
    let bytes = std::fs::read(&target).expect("a screenshot was written");
    assert_eq!(png_size(&bytes), (1280, 2000));
    // A blank 1280×2000 page compresses to a few kilobytes; a rendered report does not.
    assert!(
        bytes.len() > 40_000,
        "screenshot is only {} bytes",
        bytes.len()
    );
    target
}

/// Tags in a serialized DOM (text `<` is serialized as `&lt;`, so these are real elements).
fn tags(dom: &str) -> Vec<(String, String)> {
    Regex::new(r"<([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>")
        .unwrap()
        .captures_iter(dom)
        .map(|c| (c[1].to_ascii_lowercase(), c[2].to_string()))
        .collect()
}

#[test]
#[cfg_attr(
    not(judge_audit_browser),
    ignore = "needs Chromium: install it (or set JUDGE_AUDIT_REQUIRE_BROWSER=1) and rebuild"
)]
fn hostile_report_is_inert_in_a_real_browser() {
    let browser = browser();
    let work = scratch("hostile");
    let mut summary = hostile_summary();
    // A script that would leave a trace in the DOM if it ever ran.
    summary.judges[1]
        .findings
        .push("<script>document.body.setAttribute('data-pwned','1')</script>".into());
    let page = work.join("report.html");
    std::fs::write(&page, html::render(&summary)).unwrap();

    let dom = run_chromium(&browser, &work, &page, &["--dump-dom".to_string()]);
    assert!(
        dom.len() > 10_000,
        "the DOM was dumped: {} bytes",
        dom.len()
    );
    let tags = tags(&dom);
    assert!(
        tags.iter().any(|(t, _)| t == "svg"),
        "charts are in the DOM"
    );
    assert!(tags.iter().any(|(t, _)| t == "mark"));
    let handler = Regex::new(r#"(?i)(^|[\s"'])on[a-z]+\s*="#).unwrap();
    for (tag, attrs) in &tags {
        assert!(
            !["script", "img", "iframe", "object", "embed", "link", "base"].contains(&tag.as_str()),
            "<{tag}{attrs}> in the DOM"
        );
        assert!(!handler.is_match(attrs), "event handler in <{tag}{attrs}>");
        assert!(!attrs.contains("data-pwned"), "a script ran");
        assert!(
            !attrs.to_ascii_lowercase().contains("javascript:"),
            "<{tag}{attrs}>"
        );
    }
    assert!(dom.contains("Content-Security-Policy"));
    // The hostile strings are there as text (the DOM serializer escapes only &, < and > in text).
    for text in HOSTILE {
        let serialized = text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('\u{202E}', "\\u{202E}");
        assert!(dom.contains(&serialized), "text {serialized}");
    }
    assert!(
        !dom.contains('\u{202E}'),
        "a raw bidi override reached the DOM"
    );
    assert!(dom.contains("truncated, 999,999 characters in total"));

    screenshot(&browser, &work, &page, "hostile-report.png");
}

#[test]
#[cfg_attr(
    not(judge_audit_browser),
    ignore = "needs Chromium: install it (or set JUDGE_AUDIT_REQUIRE_BROWSER=1) and rebuild"
)]
fn demo_report_renders_in_a_real_browser() {
    let browser = browser();
    let work = scratch("demo");
    let page = report_common::demo(42).join("report.html");
    let dom = run_chromium(&browser, &work, &page, &["--dump-dom".to_string()]);
    let tags = tags(&dom);
    // Four pairwise charts and the pointwise score-shift forest plot (the demo's simulated
    // graders; no pointwise judge has probabilities, so there is no reliability diagram).
    assert_eq!(tags.iter().filter(|(t, _)| t == "svg").count(), 5);
    assert!(!tags.iter().any(|(t, _)| t == "script"));
    screenshot(&browser, &work, &page, "demo-report.png");
}
