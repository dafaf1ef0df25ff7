//! Shared by the report tests: run the real binary's demo once per seed and test binary, in a
//! folder under Cargo's per-target scratch directory (cleared first, because `calls.jsonl` is
//! appended to).
#![allow(dead_code)] // Each test binary uses a different subset.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

/// The judge-audit binary built for these tests.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_judge-audit"))
}

/// A fresh scratch folder named `name` for this test binary.
pub fn scratch(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let binary = exe.file_stem().unwrap().to_string_lossy().to_string();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(binary)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Run `judge-audit demo --seed SEED` once per test binary and return its output folder.
pub fn demo(seed: u64) -> PathBuf {
    static RUNS: OnceLock<Mutex<HashMap<u64, PathBuf>>> = OnceLock::new();
    let runs = RUNS.get_or_init(Default::default);
    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = runs.get(&seed) {
        return dir.clone();
    }
    let dir = scratch(&format!("demo-{seed}"));
    let output = bin()
        .args(["demo", "--quiet", "--seed", &seed.to_string(), "--out"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_success(&output);
    runs.insert(seed, dir.clone());
    dir
}

/// Fail with the command's stderr unless it exited with 0.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The demo's summary, typed.
pub fn demo_summary(seed: u64) -> judge_audit::report::Summary {
    let text = std::fs::read_to_string(demo(seed).join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The demo's summary as JSON.
pub fn demo_json(seed: u64) -> serde_json::Value {
    let text = std::fs::read_to_string(demo(seed).join("summary.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Strings that would run script or reorder text if a renderer passed them through.
pub const HOSTILE: [&str; 8] = [
    "<script>alert(1)</script>",
    "</style><script>alert(2)</script>",
    "[click](javascript:alert(3))",
    "<img src=x onerror=alert(4)>",
    "\" onmouseover=\"alert(5)",
    "' onfocus='alert(6)",
    "evil\u{202E}txt.exe",
    "<svg onload=alert(7)>",
];

/// The demo summary (seed 42) with every piece of free text replaced by hostile strings, and one example
/// answer of 1 MB.
pub fn hostile_summary() -> judge_audit::report::Summary {
    let mut s = demo_summary(42);
    let h = |i: usize| HOSTILE[i % HOSTILE.len()].to_string();
    s.dataset.name = h(0);
    let categories = std::mem::take(&mut s.dataset.categories);
    for (i, (_, n)) in categories.into_iter().enumerate() {
        s.dataset.categories.insert(format!("{}{i}", h(i)), n);
    }
    for (i, a) in s.artifacts.iter_mut().enumerate() {
        a.title = h(i);
        a.source = h(i + 1);
        a.operation = h(i + 2);
        a.expected_effect = h(i + 3);
    }
    let renames: Vec<(String, String)> = s
        .judges
        .iter()
        .enumerate()
        .map(|(i, j)| (j.name.clone(), format!("{}#{i}", h(i))))
        .collect();
    let rename = |name: &mut String| {
        if let Some((_, new)) = renames.iter().find(|(old, _)| old == name) {
            *name = new.clone();
        }
    };
    for (i, j) in s.judges.iter_mut().enumerate() {
        rename(&mut j.name);
        j.trust.reasons.push(
            judge_audit::analyze::TrustReason::new(
                &h(i + 8),
                judge_audit::analyze::Trust::Caution,
                h(i + 1),
            )
            .on(&h(i + 9)),
        );
        j.trust.passed.push(h(i + 2));
        j.findings.push(h(i + 3));
        j.stopped = Some(h(i + 4));
        for (k, c) in j.categories.iter_mut().enumerate() {
            c.category = format!("{}{k}", h(k));
        }
    }
    for (i, c) in s.judge_configs.iter_mut().enumerate() {
        rename(&mut c.name);
        c.model = h(i + 5);
        c.template = h(i + 6);
        c.template_sha256 = h(i + 7);
    }
    for (i, e) in s.examples.iter_mut().enumerate() {
        rename(&mut e.judge);
        e.prompt = h(i);
        e.pair_id = h(i + 1);
        e.original = h(i + 2);
        e.other = h(i + 3);
        e.before = h(i + 4);
        e.perturbed = format!("{}{}", h(i + 5), h(i + 6));
        #[allow(clippy::single_range_in_vec_init)] // One injected span: the prefix.
        let injected = vec![0..h(i + 5).len()];
        e.injected = injected;
    }
    let huge = format!("{}{}", "A".repeat(999_990), "<script>x");
    s.examples[0].perturbed = huge.clone();
    s.examples[0].injected = vec![0..10, 999_990..huge.len()];
    s.examples[1].original = huge;
    s
}
