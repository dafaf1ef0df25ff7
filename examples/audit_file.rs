//! Audit a custom judge against a small JSONL dataset file, with the run store in memory.
//!
//! ```sh
//! cargo run --example audit_file
//! ```
//!
//! The judge below prefers the longer answer. The audit should find what that means: the
//! `verbosity` artifact (meaning-preserving padding) wins it every tie-detection call, the
//! order of two identical answers does not matter to it, and its gold accuracy is only as good
//! as the length of the better answer.

use judge_audit::judge::{Judge, JudgeError, JudgeReply, JudgeRequest, SlotVerdict};
use judge_audit::{Audit, Store};
use std::process::ExitCode;

/// Six pairs with gold labels, shipped next to this example.
const DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/pairs.jsonl");

/// Prefers the longer answer; equal lengths are a tie.
struct PrefersLonger;

#[judge_audit::judge::async_trait]
impl Judge for PrefersLonger {
    fn name(&self) -> &str {
        "prefers-longer"
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let verdict = match request.first.len().cmp(&request.second.len()) {
            std::cmp::Ordering::Greater => SlotVerdict::First,
            std::cmp::Ordering::Less => SlotVerdict::Second,
            std::cmp::Ordering::Equal => SlotVerdict::Tie,
        };
        Ok(JudgeReply {
            raw: format!("{verdict:?}"),
            verdict,
            usage: None,
            label_probs: None,
            redacted: false,
            grades: None,
        })
    }
}

fn main() -> ExitCode {
    let audit = Audit::new()
        .dataset_file(DATASET)
        .artifacts(["verbosity", "apology", "position"])
        .judge(PrefersLonger)
        .seed(7)
        .store(Store::memory());
    let summary = match audit.run() {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("audit_file: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "dataset {} ({} pairs), {} calls",
        summary.dataset.name, summary.dataset.pairs, summary.plan.total_calls
    );
    for judge in &summary.judges {
        println!("{}: {}", judge.name, judge.trust.verdict.label());
        if let Some(reason) = judge.trust.reasons.first() {
            println!("  because {}", reason.text);
        }
        let shown = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:+.2}"));
        for artifact in &judge.artifacts {
            let t = &artifact.tie_detection.score;
            println!(
                "  {:<10} T = {} (95% CI {} .. {})",
                artifact.artifact,
                shown(t.estimate),
                shown(t.ci_low),
                shown(t.ci_high)
            );
        }
        if let Some(accuracy) = judge.baseline.gold_accuracy.estimate {
            println!("  gold accuracy {accuracy:.2}");
        }
    }
    ExitCode::SUCCESS
}
