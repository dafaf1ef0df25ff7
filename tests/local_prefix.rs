//! Prompt-prefix reuse in the in-process llama.cpp judge (feature `local`) gives the same
//! verdicts as a fresh evaluation of every prompt: identical label log-probabilities, on real
//! judge prompts, for SmolLM2-135M and Qwen2.5-Coder-1.5B.
//!
//! The calls come in an audit's order (for each pair: both orders of the original pair, then
//! both orders with the catalog's apology on the first answer), so later calls reuse the
//! template's preamble and the pair's prompt. The reuse engine must actually reuse (whole
//! 64-token steps, on every call after the first) and the fresh engine must not.
//!
//! Models: SmolLM2 from JUDGE_AUDIT_MODEL or the model cache (required when
//! JUDGE_AUDIT_REQUIRE_MODEL=1); Qwen from JUDGE_AUDIT_QWEN_MODEL or the model cache
//! (`scripts/fetch-model.sh qwen2.5-coder-1.5b`; required when JUDGE_AUDIT_REQUIRE_QWEN=1). A
//! missing model prints a skip message. Qwen is slow on a CPU, so its test is bounded to 4
//! judgments per engine.
#![cfg(feature = "local")]

use judge_audit::dataset;
use judge_audit::judge::local::{LocalModel, LocalOutput, LocalSettings};
use judge_audit::judge::template::{RenderedPrompt, Template};
use judge_audit::perturb::Catalog;
use std::path::PathBuf;

/// The bound the issue sets; the engine is built to give exactly 0.
const TOLERANCE: f64 = 1e-4;

/// One model at a time: two llama.cpp engines on two cores wait for each other at every step.
static ONE_MODEL_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn model(env: &str, require: &str, registry_name: &str) -> Option<PathBuf> {
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => {
            let (_, m) = judge_audit::judge::models::lookup(registry_name).expect("registered");
            judge_audit::judge::models::cache_dir()?.join(m.file)
        }
    };
    if path.is_file() {
        return Some(path);
    }
    assert!(
        std::env::var(require).as_deref() != Ok("1"),
        "{require}=1 but the model is missing at {} (run scripts/fetch-model.sh {registry_name})",
        path.display()
    );
    eprintln!("SKIP: no model at {} (set {env})", path.display());
    None
}

/// Judge prompts in an audit's order: `n_pairs` built-in pairs x 2 orders x {original, apology}.
fn prompts(template: &str, n_pairs: usize) -> Vec<RenderedPrompt> {
    let template = Template::builtin(template).expect("built-in template");
    let data = dataset::builtin();
    let catalog = Catalog::builtin();
    let apology = catalog.get("apology").expect("apology");
    let mut out = Vec::new();
    for pair in data.pairs.iter().take(n_pairs) {
        let with_apology = apology.apply(&pair.response_a, 11, &pair.id).text;
        for a in [&pair.response_a, &with_apology] {
            out.push(template.render(&pair.prompt, a, &pair.response_b));
            out.push(template.render(&pair.prompt, &pair.response_b, a));
        }
    }
    out
}

fn judge_all(path: &PathBuf, reuse: bool, prompts: &[RenderedPrompt]) -> Vec<LocalOutput> {
    let mut settings = LocalSettings::new(path.clone());
    settings.prefix_reuse = reuse;
    let model = LocalModel::load(&settings).expect("model loads");
    prompts
        .iter()
        .map(|p| {
            model
                .judge_messages_blocking(p.system.as_deref(), &p.user)
                .expect("judgment")
        })
        .collect()
}

/// Judge the prompts with and without reuse and compare every label log-probability. With
/// `long_preamble` (at least one whole step shared by all calls) every call after the first
/// must reuse; otherwise reuse must happen somewhere (the calls of one pair share its prompt).
fn assert_reuse_is_exact(path: &PathBuf, template: &str, n_pairs: usize, long_preamble: bool) {
    let _one = ONE_MODEL_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let prompts = prompts(template, n_pairs);
    let reused = judge_all(path, true, &prompts);
    let fresh = judge_all(path, false, &prompts);
    let chunk = u64::from(judge_audit::judge::local::DEFAULT_EVAL_CHUNK);
    let mut max_diff = 0.0f64;
    let mut saved = 0u64;
    let mut total = 0u64;
    for (i, (r, f)) in reused.iter().zip(&fresh).enumerate() {
        assert_eq!(r.prompt_tokens, f.prompt_tokens, "call {i}: same prompt");
        assert_eq!(
            f.reused_prompt_tokens, 0,
            "call {i}: the fresh engine reused"
        );
        assert_eq!(
            r.reused_prompt_tokens % chunk,
            0,
            "call {i}: whole steps only"
        );
        assert!(r.reused_prompt_tokens < r.prompt_tokens, "call {i}");
        if i == 0 {
            assert_eq!(
                r.reused_prompt_tokens, 0,
                "nothing to reuse on the first call"
            );
        } else if long_preamble {
            assert!(
                r.reused_prompt_tokens >= chunk,
                "call {i} of {template} reused nothing ({} prompt tokens)",
                r.prompt_tokens
            );
        }
        saved += r.reused_prompt_tokens;
        total += r.prompt_tokens;
        assert_eq!(r.verdict, f.verdict, "call {i}: verdict");
        assert_eq!(r.label_logprobs.len(), f.label_logprobs.len());
        for (a, b) in r.label_logprobs.iter().zip(&f.label_logprobs) {
            assert_eq!(a.token, b.token);
            assert!(a.logprob.is_finite(), "call {i}: {a:?}");
            let diff = (a.logprob - b.logprob).abs();
            max_diff = max_diff.max(diff);
            assert!(
                diff <= TOLERANCE,
                "call {i}, label {:?}: {} with reuse, {} fresh",
                a.label,
                a.logprob,
                b.logprob
            );
        }
    }
    assert!(saved > 0, "{template}: no call reused anything");
    eprintln!(
        "{} on {template}: {} calls, {saved} of {total} prompt tokens reused, max |diff| {max_diff:e}",
        path.display(),
        prompts.len()
    );
}

#[test]
fn smollm2_prefix_reuse_gives_identical_label_logprobs() {
    let Some(path) = model(
        "JUDGE_AUDIT_MODEL",
        "JUDGE_AUDIT_REQUIRE_MODEL",
        "smollm2-135m",
    ) else {
        return;
    };
    // chen-safety: the long few-shot preamble; letter-safety: what the local presets use.
    assert_reuse_is_exact(&path, "chen-safety", 2, true);
    assert_reuse_is_exact(&path, "letter-safety", 3, false);
}

#[test]
fn qwen_prefix_reuse_gives_identical_label_logprobs() {
    let Some(path) = model(
        "JUDGE_AUDIT_QWEN_MODEL",
        "JUDGE_AUDIT_REQUIRE_QWEN",
        "qwen2.5-coder-1.5b",
    ) else {
        return;
    };
    // One pair of chen-safety (4 calls per engine): its preamble is longer than a step, so every
    // call after the first must reuse. (letter-safety's shared opening is shorter than one
    // 64-token step in Qwen's tokens for the first built-in pairs, so it would reuse nothing.)
    assert_reuse_is_exact(&path, "chen-safety", 1, true);
}
