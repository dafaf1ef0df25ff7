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
