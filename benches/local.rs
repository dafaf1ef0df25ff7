//! Judgments per minute of the in-process llama.cpp judge, with and without prompt-prefix
//! reuse, against llama-server with its prompt cache on, on the same GGUF and the same prompts.
//!
//! `bash scripts/bench-local.sh` runs it for every fetched registry model (it builds and starts
//! llama-server per model). By hand: `cargo bench --features local --bench local`, with
//! - `JUDGE_AUDIT_BENCH_MODELS` a comma-separated list of GGUF files (default: the registry's
//!   SmolLM2 and Qwen2.5-Coder-1.5B files in the model cache, those that are there);
//! - `JUDGE_AUDIT_BENCH_SERVER` the `/v1` URL of a llama-server serving the (single) model;
//! - `JUDGE_AUDIT_BENCH_PAIRS` built-in pairs per model (default 6), `JUDGE_AUDIT_BENCH_TEMPLATE`
//!   the judge template (default `chen-safety`, the longest built-in preamble),
//!   `JUDGE_AUDIT_BENCH_THREADS` compute threads (default 0: all cores),
//!   `JUDGE_AUDIT_BENCH_ENGINES` which rows to run, a comma-separated subset of
//!   `reuse,fresh,whole,server` (default: all; `fresh` is needed for the Δ column).
//!
//! The calls come in an audit's order: for each pair, both orders of the original pair, then
//! both orders with the catalog's apology appended to the first answer. Each configuration
//! loads its own model, runs one untimed warm-up call on a prompt outside the set, then the
//! calls in sequence; the table shows the mean time per judgment. The verdict is one forward
//! pass (logits mode), as the local judge runs; llama-server is asked for one token with
//! log-probabilities. The in-process rows also report the largest difference in a label
//! log-probability between reuse and no reuse (the claim is: none).

#[cfg(feature = "local")]
fn main() {
    bench::main();
}

#[cfg(not(feature = "local"))]
fn main() {
    eprintln!(
        "the local bench needs `--features local` (cargo bench --features local --bench local)"
    );
}

#[cfg(feature = "local")]
mod bench {
    use judge_audit::dataset;
    use judge_audit::judge::local::{LocalModel, LocalOutput, LocalSettings};
    use judge_audit::judge::template::{RenderedPrompt, Template};
    use judge_audit::perturb::Catalog;
    use std::path::PathBuf;
    use std::time::Instant;

    struct Row {
        engine: String,
        per_judgment_s: f64,
        prompt_tokens: f64,
        evaluated_tokens: f64,
        outputs: Vec<LocalOutput>,
    }

    pub fn main() {
        let template_name =
            std::env::var("JUDGE_AUDIT_BENCH_TEMPLATE").unwrap_or_else(|_| "chen-safety".into());
        let n_pairs: usize = std::env::var("JUDGE_AUDIT_BENCH_PAIRS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(6);
        let threads: u32 = std::env::var("JUDGE_AUDIT_BENCH_THREADS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let template = Template::builtin(&template_name).expect("a built-in template");
        let (warmup, prompts) = prompts(&template, n_pairs);
        let models = models();
        if models.is_empty() {
            eprintln!(
                "no model file found: run scripts/fetch-model.sh (and fetch-model.sh qwen2.5-coder-1.5b)"
            );
            return;
        }
        let server = std::env::var("JUDGE_AUDIT_BENCH_SERVER").ok();
        let engines: Vec<String> = std::env::var("JUDGE_AUDIT_BENCH_ENGINES")
            .unwrap_or_else(|_| "reuse,fresh,whole,server".into())
            .split(',')
            .map(|e| e.trim().to_owned())
            .collect();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        println!(
            "template {template_name}, {} judgments per engine ({n_pairs} pairs x 2 orders x {{original, apology}}), {} threads",
            prompts.len(),
            if threads == 0 {
                cores
            } else {
                threads as usize
            }
        );
        println!(
            "| model | engine | s / judgment | judgments / min | prompt tokens | evaluated tokens | max |Δ log p| vs fresh |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|");
        for model in &models {
            let name = model.file_stem().unwrap_or_default().to_string_lossy();
            let configs = [
                ("reuse", "in-process, prefix reuse", true, None),
                (
                    "fresh",
                    "in-process, no reuse (same 64-token steps)",
                    false,
                    None,
                ),
                (
                    "whole",
                    "in-process, no reuse, whole prompt in one step",
                    false,
                    Some(2048),
                ),
            ];
            let mut rows = Vec::new();
            for (id, label, reuse, chunk) in configs {
                if !engines.iter().any(|e| e == id) {
                    continue;
                }
                let mut settings = LocalSettings::new(model.clone());
                settings.prefix_reuse = reuse;
                settings.n_threads = threads;
                if let Some(c) = chunk {
                    settings.eval_chunk = c;
                }
                rows.push(in_process(label, &settings, &warmup, &prompts));
            }
            let fresh = rows
                .iter()
                .find(|r| r.engine.starts_with("in-process, no reuse (same"));
            for row in &rows {
                let diff = fresh.map(|f| max_logprob_diff(&row.outputs, &f.outputs));
                print_row(&name, row, diff);
            }
            if let Some(url) = &server {
                if models.len() == 1 && engines.iter().any(|e| e == "server") {
                    let row = llama_server(url, &warmup, &prompts);
                    print_row(&name, &row, None);
                }
            }
            if let (Some(fresh), Some(reuse)) = (
                fresh,
                rows.first().filter(|r| r.engine.ends_with("prefix reuse")),
            ) {
                let speedup = fresh.per_judgment_s / reuse.per_judgment_s;
                println!("|  | reuse speed-up over no reuse | {speedup:.2}x |  |  |  |  |");
            }
        }
    }

    fn print_row(model: &str, row: &Row, diff: Option<f64>) {
        println!(
            "| {model} | {} | {:.3} | {:.1} | {:.0} | {:.0} | {} |",
            row.engine,
            row.per_judgment_s,
            60.0 / row.per_judgment_s,
            row.prompt_tokens,
            row.evaluated_tokens,
            diff.map_or("n/a".into(), |d| format!("{d:.1e}"))
        );
    }

    /// The model files: `JUDGE_AUDIT_BENCH_MODELS`, else the registry's two in the cache.
    fn models() -> Vec<PathBuf> {
        if let Ok(list) = std::env::var("JUDGE_AUDIT_BENCH_MODELS") {
            return list
                .split(',')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        let Some(dir) = judge_audit::judge::models::cache_dir() else {
            return Vec::new();
        };
        ["smollm2-135m", "qwen2.5-coder-1.5b"]
            .iter()
            .filter_map(|name| judge_audit::judge::models::lookup(name))
            .map(|(_, m)| dir.join(m.file))
            .filter(|p| p.is_file())
            .collect()
    }

    /// A warm-up prompt (the last built-in pair) and the timed prompts, in an audit's order.
    fn prompts(template: &Template, n_pairs: usize) -> (RenderedPrompt, Vec<RenderedPrompt>) {
        let data = dataset::builtin();
        let catalog = Catalog::builtin();
        let apology = catalog.get("apology").expect("apology in the catalog");
        let pairs = &data.pairs;
        assert!(n_pairs < pairs.len(), "at most {} pairs", pairs.len() - 1);
        let last = pairs.last().expect("pairs");
        let warmup = template.render(&last.prompt, &last.response_a, &last.response_b);
        let mut out = Vec::new();
        for pair in pairs.iter().take(n_pairs) {
            let with_apology = apology.apply(&pair.response_a, 7, &pair.id).text;
            for a in [&pair.response_a, &with_apology] {
                out.push(template.render(&pair.prompt, a, &pair.response_b));
                out.push(template.render(&pair.prompt, &pair.response_b, a));
            }
        }
        (warmup, out)
    }

    fn in_process(
        label: &str,
        settings: &LocalSettings,
        warmup: &RenderedPrompt,
        prompts: &[RenderedPrompt],
    ) -> Row {
        let model = LocalModel::load(settings).expect("model loads");
        model
            .judge_messages_blocking(warmup.system.as_deref(), &warmup.user)
            .expect("warm-up judgment");
        let start = Instant::now();
        let outputs: Vec<LocalOutput> = prompts
            .iter()
            .map(|p| {
                model
                    .judge_messages_blocking(p.system.as_deref(), &p.user)
                    .expect("judgment")
            })
            .collect();
        let secs = start.elapsed().as_secs_f64();
        let n = prompts.len() as f64;
        let prompt_tokens: u64 = outputs.iter().map(|o| o.prompt_tokens).sum();
        let reused: u64 = outputs.iter().map(|o| o.reused_prompt_tokens).sum();
        Row {
            engine: label.into(),
            per_judgment_s: secs / n,
            prompt_tokens: prompt_tokens as f64 / n,
            evaluated_tokens: (prompt_tokens - reused) as f64 / n,
            outputs,
        }
    }

    fn max_logprob_diff(a: &[LocalOutput], b: &[LocalOutput]) -> f64 {
        a.iter()
            .zip(b)
            .flat_map(|(x, y)| x.label_logprobs.iter().zip(&y.label_logprobs))
            .map(|(x, y)| (x.logprob - y.logprob).abs())
            .fold(0.0, f64::max)
    }

    /// Sequential chat requests (one token, log-probabilities, prompt cache on) to a llama-server.
    fn llama_server(url: &str, warmup: &RenderedPrompt, prompts: &[RenderedPrompt]) -> Row {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let client = reqwest::Client::new();
        let url = format!("{}/chat/completions", url.trim_end_matches('/'));
        let ask = |p: &RenderedPrompt| {
            let mut messages = Vec::new();
            if let Some(s) = &p.system {
                messages.push(serde_json::json!({"role": "system", "content": s}));
            }
            messages.push(serde_json::json!({"role": "user", "content": p.user}));
            let body = serde_json::json!({
                "model": "m", "messages": messages, "max_tokens": 1, "temperature": 0.0,
                "logprobs": true, "top_logprobs": 20, "cache_prompt": true,
            });
            let client = client.clone();
            let url = url.clone();
            rt.block_on(async move {
                let v: serde_json::Value = client
                    .post(&url)
                    .json(&body)
                    .send()
                    .await
                    .expect("llama-server reachable")
                    .json()
                    .await
                    .expect("JSON reply");
                (
                    v["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
                    v["timings"]["prompt_n"].as_u64(),
                )
            })
        };
        ask(warmup);
        let start = Instant::now();
        let mut tokens = 0u64;
        let mut evaluated = 0u64;
        for p in prompts {
            let (t, e) = ask(p);
            tokens += t;
            evaluated += e.unwrap_or(t);
        }
        let secs = start.elapsed().as_secs_f64();
        let n = prompts.len() as f64;
        Row {
            engine: "llama-server, prompt cache on (HTTP)".into(),
            per_judgment_s: secs / n,
            prompt_tokens: tokens as f64 / n,
            evaluated_tokens: evaluated as f64 / n,
            outputs: Vec::new(),
        }
    }
}
