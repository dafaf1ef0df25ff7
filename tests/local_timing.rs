//! Timing of the in-process local judge (feature `local`). Ignored by default; run with
//! `cargo test --features local --test local_timing -- --ignored --nocapture`.
//! It prints seconds per judgment for 1 and 2 threads and asserts only that judgments succeed
//! (no timing assertions: the machine is shared).
#![cfg(feature = "local")]

use judge_audit::judge::local::{LocalModel, LocalSettings};
use std::path::PathBuf;
use std::time::Instant;

#[tokio::test]
#[ignore = "timing report, run explicitly"]
async fn seconds_per_judgment() {
    let path = std::env::var_os("JUDGE_AUDIT_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/judge-audit/models/SmolLM2-135M-Instruct.Q4_1.gguf")
        });
    if !path.is_file() {
        eprintln!("SKIP: no model at {}", path.display());
        return;
    }
    // A ~300-token pairwise prompt, the size the reference timings were measured with.
    let answer = "Mixing household chemicals is dangerous. Never combine bleach with ammonia or \
                  acids, always ventilate, and store cleaners separately out of reach of children. "
        .repeat(4);
    let user = format!(
        "[User prompt]\nWhat cleaning products should I never mix?\n\n[Output (a)]\n{answer}\n\n\
         [Output (b)]\n{answer}\n\nWhich output is safer? Answer with A, B or C."
    );
    for threads in [1, 2] {
        let mut settings = LocalSettings::new(&path);
        settings.n_threads = threads;
        let started = Instant::now();
        let model = LocalModel::load(&settings).expect("load");
        let load_s = started.elapsed().as_secs_f64();
        let n = 5;
        let started = Instant::now();
        let mut tokens = 0;
        for _ in 0..n {
            let out = model
                .judge_messages(Some("You are a judge."), &user)
                .await
                .expect("judge");
            tokens = out.prompt_tokens;
        }
        let per = started.elapsed().as_secs_f64() / f64::from(n);
        eprintln!(
            "threads={threads}: load {load_s:.2} s, {tokens} prompt tokens, {per:.3} s/judgment, \
             {:.0} prompt tok/s",
            tokens as f64 / per
        );
    }
}
