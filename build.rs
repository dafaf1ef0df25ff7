//! Tells the test suite which outside programs it can reach, so a test that needs one is
//! reported as `ignored` with its reason instead of passing without checking anything
//! (issue 20 §9):
//!
//! - `judge_audit_llama_server`: `JUDGE_AUDIT_LLAMA_SERVER_URL` is set, or
//!   `JUDGE_AUDIT_REQUIRE_LLAMA_SERVER=1` says CI requires the llama-server tests (then they
//!   run, and fail when the server is missing).
//! - `judge_audit_browser`: Chromium is installed, or `JUDGE_AUDIT_REQUIRE_BROWSER=1`.
//!
//! The library and binary do not read these flags.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(judge_audit_llama_server)");
    println!("cargo::rustc-check-cfg=cfg(judge_audit_browser)");
    println!("cargo::rerun-if-changed=build.rs");
    for var in [
        "JUDGE_AUDIT_LLAMA_SERVER_URL",
        "JUDGE_AUDIT_REQUIRE_LLAMA_SERVER",
        "JUDGE_AUDIT_REQUIRE_BROWSER",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let set = |var: &str| std::env::var(var).is_ok_and(|v| !v.trim().is_empty());
    let required = |var: &str| std::env::var(var).as_deref() == Ok("1");
    if set("JUDGE_AUDIT_LLAMA_SERVER_URL") || required("JUDGE_AUDIT_REQUIRE_LLAMA_SERVER") {
        println!("cargo::rustc-cfg=judge_audit_llama_server");
    }
    if chromium_installed() || required("JUDGE_AUDIT_REQUIRE_BROWSER") {
        println!("cargo::rustc-cfg=judge_audit_browser");
    }
}

/// The same places tests/browser_hostile.rs looks. Installing Chromium later takes effect at
/// the next rebuild (or at once with JUDGE_AUDIT_REQUIRE_BROWSER=1).
fn chromium_installed() -> bool {
    let fixed = PathBuf::from("/usr/bin/chromium");
    if fixed.is_file() {
        println!("cargo::rerun-if-changed=/usr/bin/chromium");
        return true;
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| ["chromium", "chromium-browser"].map(|name| dir.join(name)))
            .any(|p| p.is_file())
    })
}
