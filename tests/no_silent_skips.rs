//! A test that needs an outside program (llama-server, Chromium) is reported `ignored` with its
//! reason when the program is absent, or fails when CI requires it; it never returns early and
//! passes having checked nothing (issue 20 §9). build.rs sets the cfg flags the attributes read.

use std::path::Path;

/// Test files whose tests need an outside program, and the cfg flag that says it is present.
const GATED: [(&str, &str); 4] = [
    ("llama_server.rs", "judge_audit_llama_server"),
    ("llama_server_audit.rs", "judge_audit_llama_server"),
    ("browser_hostile.rs", "judge_audit_browser"),
    ("local_backend.rs", "judge_audit_llama_server"),
];

/// Every test function of `text` that mentions `needle`, with the attribute lines above it.
fn tests_using<'a>(text: &'a str, needle: &str) -> Vec<(&'a str, String)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line
            .strip_prefix("async fn ")
            .or_else(|| line.strip_prefix("fn "))
        else {
            continue;
        };
        let mut attrs = String::new();
        let mut j = i;
        while j > 0 && !lines[j - 1].trim().is_empty() && !lines[j - 1].starts_with('}') {
            j -= 1;
            attrs = format!("{}\n{attrs}", lines[j]);
        }
        if !attrs.contains("test]") {
            continue;
        }
        let body_end = lines[i..]
            .iter()
            .position(|l| *l == "}")
            .map_or(lines.len(), |k| i + k);
        let body = lines[i..body_end].join("\n");
        let name = rest.split('(').next().unwrap_or(rest);
        if body.contains(needle) || attrs.contains(needle) {
            out.push((name, format!("{attrs}{body}")));
        }
    }
    out
}

#[test]
fn tests_that_need_an_outside_program_are_ignored_with_a_reason_not_skipped_silently() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut gated = 0;
    for (file, flag) in GATED {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let needle = if flag == "judge_audit_browser" {
            "browser()"
        } else {
            "server_url()"
        };
        let needle = if file == "local_backend.rs" {
            "JUDGE_AUDIT_LLAMA_SERVER_URL"
        } else {
            needle
        };
        let found = tests_using(&text, needle);
        assert!(!found.is_empty(), "{file}: no test uses {needle}");
        for (name, code) in found {
            gated += 1;
            let attribute = format!("not({flag}),\n    ignore = \"");
            assert!(
                code.contains(&attribute),
                "{file}: {name} needs an outside program but has no #[cfg_attr(not({flag}), ignore = \"reason\")]"
            );
            assert!(
                !code.contains("SKIP") && !code.contains("skipping"),
                "{file}: {name} still prints a skip message and passes"
            );
        }
        assert!(
            !text.contains("else { return }") || file == "local_backend.rs",
            "{file}: an early-return skip is left"
        );
    }
    assert!(gated >= 6, "only {gated} gated tests found");
}

#[test]
fn the_build_script_sets_the_flags_from_the_environment() {
    // The flags this build was compiled with agree with the environment build.rs read.
    let url = option_env!("JUDGE_AUDIT_LLAMA_SERVER_URL").is_some_and(|v| !v.trim().is_empty())
        || option_env!("JUDGE_AUDIT_REQUIRE_LLAMA_SERVER") == Some("1");
    assert_eq!(cfg!(judge_audit_llama_server), url);
    let browser_required = option_env!("JUDGE_AUDIT_REQUIRE_BROWSER") == Some("1");
    assert!(
        !browser_required || cfg!(judge_audit_browser),
        "JUDGE_AUDIT_REQUIRE_BROWSER=1 must enable the browser tests"
    );
}
