//! The README works when copied (issue 20 §2). Generic over the README's content, so sections
//! added later are checked too:
//! - every ```toml block parses: a block with `backend` as a judge file, any other as an
//!   `audit.toml` (unknown keys are errors, so a top-level key stranded in a table fails);
//! - every judge named in an audit block's `judges` that is not a file is a built-in preset;
//! - every `judge-audit …` command (in ```sh blocks, after `cargo run … --`, and in inline code)
//!   names a real subcommand, and each of its `--flags` exists for that subcommand;
//! - every preset the prose names ("the `X` preset", "use `X`") is a built-in preset;
//! - every built-in artifact has a row in the artifact table.

use judge_audit::audit::AuditConfig;
use judge_audit::judge::JudgeConfig;
use std::collections::BTreeSet;
use std::process::Command;

fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

fn bin(args: &[&str]) -> (bool, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(args)
        .env_remove("JUDGE_AUDIT_MODEL")
        .output()
        .unwrap();
    (
        o.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Fenced code blocks: (info string, first line number, body).
fn blocks(text: &str) -> Vec<(String, usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, usize, String)> = None;
    for (n, line) in text.lines().enumerate() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(block) => out.push(block),
                None => current = Some((rest.trim().to_string(), n + 2, String::new())),
            }
        } else if let Some((_, _, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    out
}

fn presets() -> BTreeSet<String> {
    let (ok, out) = bin(&["judges", "list"]);
    assert!(ok, "{out}");
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_toml_block_parses_and_names_real_presets() {
    let presets = presets();
    let text = readme();
    let mut checked = 0;
    for (info, line, body) in blocks(&text) {
        if info != "toml" {
            continue;
        }
        checked += 1;
        let value: toml::Table = toml::from_str(&body)
            .unwrap_or_else(|e| panic!("README.md:{line}: TOML syntax: {e}\n{body}"));
        if value.contains_key("backend") {
            JudgeConfig::from_toml_str(&body, &format!("README.md:{line}"))
                .unwrap_or_else(|e| panic!("README.md:{line}: not a valid judge file: {e}"));
            continue;
        }
        let config: AuditConfig = toml::from_str(&body)
            .unwrap_or_else(|e| panic!("README.md:{line}: not a valid audit.toml: {e}"));
        for judge in &config.judges {
            if !judge.ends_with(".toml") {
                assert!(
                    presets.contains(judge),
                    "README.md:{line}: `{judge}` is not a built-in preset ({presets:?})"
                );
            }
        }
    }
    assert!(
        checked >= 2,
        "the README has an audit.toml and a judge-file example"
    );
}

/// `judge-audit …` command lines, from shell blocks (also `cargo run … -- ARGS`) and inline code.
fn commands(text: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let words = |s: &str| -> Vec<String> {
        let s = s.split(" #").next().unwrap_or(s);
        s.split_whitespace().map(str::to_string).collect()
    };
    for (info, line, body) in blocks(text) {
        if !matches!(info.as_str(), "sh" | "bash" | "shell" | "console") {
            continue;
        }
        for (i, l) in body.lines().enumerate() {
            let l = l.trim().trim_start_matches("$ ");
            if let Some(rest) = l.strip_prefix("judge-audit ") {
                out.push((line + i, words(rest)));
            } else if l.starts_with("cargo run")
                && let Some((_, rest)) = l.split_once(" -- ")
            {
                out.push((line + i, words(rest)));
            }
        }
    }
    for (n, l) in text.lines().enumerate() {
        let mut rest = l;
        while let Some(start) = rest.find("`judge-audit ") {
            let after = &rest[start + "`judge-audit ".len()..];
            let Some(end) = after.find('`') else { break };
            out.push((n + 1, words(&after[..end])));
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_judge_audit_command_names_real_subcommands_and_flags() {
    let text = readme();
    let commands = commands(&text);
    assert!(commands.len() >= 5, "{commands:?}");
    for (line, words) in commands {
        // The subcommand path: leading words that are not flags and not placeholders. A word
        // like `stats|clear|path` lists alternatives; each must exist.
        let mut paths: Vec<Vec<String>> = vec![Vec::new()];
        let mut flags = Vec::new();
        let mut in_path = true;
        for w in &words {
            if w.starts_with('-') {
                in_path = false;
                flags.push(w.split('=').next().unwrap().to_string());
                continue;
            }
            if !in_path {
                continue;
            }
            let candidate = |p: &Vec<String>, alt: &str| {
                let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
                args.push(alt);
                args.push("--help");
                bin(&args).0
            };
            let alts: Vec<&str> = w.split('|').collect();
            if alts
                .iter()
                .all(|a| paths.iter().all(|p| candidate(p, a)) && is_word(a))
            {
                // A real subcommand, unless this level takes positional arguments (a NAME that
                // happens to parse as an argument): then `--help` still succeeds, so require the
                // help to differ from the parent's.
                let parent_help = |p: &Vec<String>| {
                    let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
                    args.push("--help");
                    bin(&args).1
                };
                let is_sub = paths.iter().all(|p| {
                    alts.iter().all(|a| {
                        let mut args: Vec<&str> = p.iter().map(String::as_str).collect();
                        args.push(a);
                        args.push("--help");
                        bin(&args).1 != parent_help(p)
                    })
                });
                if is_sub {
                    paths = paths
                        .iter()
                        .flat_map(|p| {
                            alts.iter().map(move |a| {
                                let mut q = p.clone();
                                q.push(a.to_string());
                                q
                            })
                        })
                        .collect();
                    continue;
                }
            }
            in_path = false;
        }
        assert!(
            paths.iter().all(|p| !p.is_empty()),
            "README.md:{line}: `judge-audit {}` names no subcommand",
            words.join(" ")
        );
        for path in &paths {
            let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
            args.push("--help");
            let (ok, help) = bin(&args);
            assert!(
                ok,
                "README.md:{line}: `judge-audit {}`: {help}",
                path.join(" ")
            );
            for flag in &flags {
                if flag == "--help" || flag == "--version" {
                    continue;
                }
                assert!(
                    help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
                    "README.md:{line}: `judge-audit {}` has no flag {flag}:\n{help}",
                    path.join(" ")
                );
            }
        }
    }
}

fn is_word(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

#[test]
fn every_preset_the_prose_names_exists() {
    let presets = presets();
    let text = readme();
    let mut named = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let ticks: Vec<&str> = line.split('`').collect();
        // Odd indices are inside backticks.
        for i in (1..ticks.len()).step_by(2) {
            let before = ticks[i - 1];
            let after = ticks.get(i + 1).copied().unwrap_or("");
            let is_preset_mention = after.starts_with(" preset")
                || before.ends_with("preset ")
                || before.ends_with("presets ")
                || before.ends_with("use ")
                || (before.ends_with(" or ") && i >= 2 && ticks[i - 2].ends_with("use "));
            let name = ticks[i];
            let looks_like_a_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            if is_preset_mention && looks_like_a_name {
                named.push((n + 1, ticks[i].to_string()));
            }
        }
    }
    assert!(named.len() >= 4, "{named:?}");
    for (line, name) in named {
        assert!(
            presets.contains(&name),
            "README.md:{line}: `{name}` is named as a preset but `judge-audit judges list` has no such judge"
        );
    }
}

#[test]
fn every_built_in_artifact_is_in_the_artifact_table() {
    let (ok, out) = bin(&["artifacts", "list"]);
    assert!(ok, "{out}");
    let text = readme();
    // `artifacts list` groups the ids under headers such as `answer-side:`.
    let ids = out
        .lines()
        .filter(|l| !l.trim_end().ends_with(':'))
        .filter_map(|l| l.split_whitespace().next());
    for id in ids {
        assert!(
            text.contains(&format!("| `{id}` |")),
            "README.md: the artifact table has no row for `{id}`"
        );
    }
}

#[test]
fn a_top_level_key_inside_a_table_gets_a_hint_to_move_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        "seed = 42\n\n[perturbations]\njudges = [\"sim-unbiased\"]\n",
    )
    .unwrap();
    let (ok, out) = bin(&["plan", "--config", config.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("hint: `judges` is a top-level key")
            && out.contains("above the first `[section]`"),
        "{out}"
    );
}

#[test]
fn judges_list_names_backends_as_judge_files_spell_them() {
    let (ok, out) = bin(&["judges", "list"]);
    assert!(ok);
    assert!(!out.contains("Openai") && !out.contains(" Sim "), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("openai-gpt-4o-mini") && l.contains(" openai ")),
        "{out}"
    );
}
