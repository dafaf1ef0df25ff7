//! A bounded mutation fuzzer over every loader of untrusted text: the dataset loaders (JSONL and
//! CSV files), the TOML loaders (audit files, judge files, prompt templates, artifact files, with
//! each loaded artifact applied to a text) and the verdict parsers (template labels, custom
//! regexes, command keywords). No input may panic: bad input is an error or an `Invalid`
//! verdict.
//!
//! The quick test runs a fixed number of cases per target on every `cargo test`. The long one is
//! ignored by default and runs for `JUDGE_AUDIT_FUZZ_SECS` seconds (default 60), from the seed in
//! `JUDGE_AUDIT_FUZZ_SEED` (default: the clock, printed so a failure can be replayed):
//!
//! ```text
//! JUDGE_AUDIT_FUZZ_SECS=60 cargo test --release --test fuzz_loaders -- --ignored --nocapture
//! ```
//!
//! A panicking input is written to `target/fuzz-failures/` and named in the failure message.

use judge_audit::audit::AuditConfig;
use judge_audit::dataset::{self, LoadOptions};
use judge_audit::judge::JudgeConfig;
use judge_audit::judge::config::ParserConfig;
use judge_audit::judge::parser::{Pick, VerdictParser};
use judge_audit::judge::template::Template;
use judge_audit::perturb::Artifact;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Tokens that tend to reach corner cases of the formats and of the numbers in them.
const DICTIONARY: &[&str] = &[
    "\"",
    "'",
    "\n",
    "\r\n",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    ",",
    ":",
    "\\",
    "\\u0000",
    "\\ud800",
    "\u{0}",
    "\u{1b}[31m",
    "\u{202e}",
    "\u{feff}",
    "é",
    "𝕏",
    "'''",
    "\"\"\"",
    "#",
    "0",
    "-1",
    "1e308",
    "-1e308",
    "1e-320",
    "nan",
    "inf",
    "-inf",
    "NaN",
    "4294967295",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "true",
    "null",
    "\"\"",
    "[]",
    "{}",
    "\"id\": ",
    "\"prompt\": ",
    "\"response_a\": ",
    "\"response_b\": ",
    "\"preferred\": ",
    "\"chosen\": ",
    "\"rejected\": ",
    "\"winner\": ",
    "preferred = ",
    "repeats = ",
    "concurrency = ",
    "bootstrap_resamples = ",
    "max_tokens = ",
    "timeout_secs = ",
    "rpm = ",
    "temperature = ",
    "operation = ",
    "[design]",
    "[run]",
    "[[judge]]",
    "[parser]",
    "[labels]",
    "Output (a)",
    "Output (b)",
    "[[A]]",
    "[[B]]",
    "[[C]]",
    "<think>",
    "</think>",
    "A",
    "B",
    "tie",
    "(",
    ")",
    "*",
    "+",
    "?",
    "{9999}",
    "(?i)",
    "$",
    "^",
    ".*",
    "\\b",
];

#[derive(Clone, Copy, Debug)]
enum Target {
    Jsonl,
    Csv,
    Audit,
    Judge,
    Template,
    Artifact,
    Reply,
    Regex,
}

const TARGETS: [Target; 8] = [
    Target::Jsonl,
    Target::Csv,
    Target::Audit,
    Target::Judge,
    Target::Template,
    Target::Artifact,
    Target::Reply,
    Target::Regex,
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.toml` file directly in `dir` (the shipped presets are the seeds).
fn toml_files(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "toml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

struct Corpus {
    jsonl: Vec<Vec<u8>>,
    csv: Vec<Vec<u8>>,
    audit: Vec<Vec<u8>>,
    judge: Vec<Vec<u8>>,
    template: Vec<Vec<u8>>,
    artifact: Vec<Vec<u8>>,
    reply: Vec<Vec<u8>>,
    regex: Vec<Vec<u8>>,
}

impl Corpus {
    fn load() -> Corpus {
        let builtin: Vec<String> = dataset::builtin()
            .pairs
            .iter()
            .take(3)
            .map(|p| serde_json::to_string(p).unwrap())
            .collect();
        let jsonl = vec![
            (builtin.join("\n") + "\n").into_bytes(),
            br#"{"id": "1", "prompt": "q", "response_a": "x", "response_b": "y", "preferred": "a"}
{"prompt": "q", "chosen": "good", "rejected": "bad"}
{"id": 3, "question": "q", "answer_a": "x", "answer_b": "y", "winner": "tie"}
"#
            .to_vec(),
        ];
        let csv = vec![
            b"id,prompt,response_a,response_b,preferred\n1,q,\"x, y\",z,a\n2,\"multi\nline\",a,b,tie\n"
                .to_vec(),
            b"prompt,chosen,rejected\nq,good,bad\n".to_vec(),
        ];
        let audit = vec![
            br#"seed = 7
judges = ["sim-unbiased", "sim-first-slot"]
out = "reports/x"
[dataset]
path = "pairs.jsonl"
skip_invalid = true
[design]
repeats = 2
artifacts = ["apology", "halo", "position"]
bootstrap_resamples = 200
[run]
concurrency = 4
[[judge]]
name = "inline"
backend = "openai"
model = "m"
base_url = "http://127.0.0.1:9/v1"
concurrency = 2
max_retries = 1
"#
            .to_vec(),
        ];
        let mut judge = toml_files(&repo().join("judges"));
        judge.extend(toml_files(&repo().join("judges/sim")));
        let template = toml_files(&repo().join("judges/templates"));
        let artifact = toml_files(&repo().join("perturbations"));
        let reply = [
            "Output (a)",
            "Output (b)",
            "I think [[A]] is better, but [[B]] has merit.",
            "<think>Output (b)</think> Output (a)",
            "<think>unclosed Output (a)",
            "tie",
            "Neither. [[C]]",
            "",
        ]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
        let regex = [r"(?i)output\s*\(a\)", r"\[\[B\]\]", r"(?i)\btie\b", r"^A$"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        assert!(!judge.is_empty() && !template.is_empty() && !artifact.is_empty());
        Corpus {
            jsonl,
            csv,
            audit,
            judge,
            template,
            artifact,
            reply,
            regex,
        }
    }

    fn seeds(&self, target: Target) -> &[Vec<u8>] {
        match target {
            Target::Jsonl => &self.jsonl,
            Target::Csv => &self.csv,
            Target::Audit => &self.audit,
            Target::Judge => &self.judge,
            Target::Template => &self.template,
            Target::Artifact => &self.artifact,
            Target::Reply => &self.reply,
            Target::Regex => &self.regex,
        }
    }
}

/// One to eight random edits: byte flips, dictionary tokens, deletions, duplications, splices
/// with another seed, truncation.
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..rng.random_range(1..=8) {
        let at = if data.is_empty() {
            0
        } else {
            rng.random_range(0..=data.len())
        };
        match rng.random_range(0..7) {
            0 if !data.is_empty() => {
                let i = rng.random_range(0..data.len());
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 => data.insert(at, rng.random()),
            2 | 3 => {
                let token = DICTIONARY[rng.random_range(0..DICTIONARY.len())];
                data.splice(at..at, token.bytes());
            }
            4 if !data.is_empty() => {
                let end = (at + rng.random_range(1..64)).min(data.len());
                data.drain(at.min(end)..end);
            }
            5 if !data.is_empty() => {
                let start = rng.random_range(0..data.len());
                let end = (start + rng.random_range(1..256)).min(data.len());
                let copy = data[start..end].to_vec();
                data.splice(at..at, copy);
            }
            6 if !others.is_empty() => {
                let other = &others[rng.random_range(0..others.len())];
                if !other.is_empty() {
                    let start = rng.random_range(0..other.len());
                    let end = (start + rng.random_range(1..512)).min(other.len());
                    data.splice(at..at, other[start..end].iter().copied());
                }
            }
            _ => data.truncate(at),
        }
    }
    data
}

/// Feed one input to one target. Errors are fine; only a panic is a finding.
fn exercise(target: Target, input: &[u8], scratch: &Path) {
    let text = String::from_utf8_lossy(input);
    match target {
        Target::Jsonl | Target::Csv => {
            let path = scratch.join(match target {
                Target::Jsonl => "pairs.jsonl",
                _ => "pairs.csv",
            });
            std::fs::write(&path, input).unwrap();
            for skip_invalid in [false, true] {
                let options = LoadOptions {
                    skip_invalid,
                    placement_seed: None,
                };
                if let Ok(loaded) = dataset::load(&path, &options) {
                    // What loads must hash and serialize.
                    let _ = dataset::hash_pairs(&loaded.pairs);
                }
            }
        }
        Target::Audit => {
            let path = scratch.join("audit.toml");
            std::fs::write(&path, input).unwrap();
            let _ = AuditConfig::from_file(&path);
        }
        Target::Judge => {
            if let Ok(config) = JudgeConfig::from_toml_str(&text, "fuzz.toml") {
                let _ = config.validate();
                let _ = config.resolve_base_url_with(|_| None);
            }
        }
        Target::Template => {
            if let Ok(template) = Template::from_toml_str(&text, "fuzz.toml", "fuzz") {
                let _ = template.render("prompt {x}", "first {{a}}", "second");
                if let Ok(parser) = VerdictParser::for_config(&template, &ParserConfig::default()) {
                    let _ = parser.parse("Output (a) [[B]] tie");
                }
            }
        }
        Target::Artifact => {
            if let Ok(artifact) = Artifact::from_toml_str("fuzz.toml", &text)
                && artifact.validate("fuzz.toml").is_ok()
            {
                let _ = artifact.apply(
                    "Sure. Here is the answer: wear protection, and ask an expert.\n\nThanks!",
                    7,
                    "pair/a",
                );
                let _ = artifact.apply("", 7, "pair/b");
            }
        }
        Target::Reply => {
            // Compiled once: regex compilation would dominate the run.
            static PARSERS: std::sync::OnceLock<Vec<VerdictParser>> = std::sync::OnceLock::new();
            let parsers = PARSERS.get_or_init(|| {
                Template::builtin_names()
                    .into_iter()
                    .map(|name| {
                        let template = Template::builtin(name).unwrap();
                        VerdictParser::for_config(&template, &ParserConfig::default()).unwrap()
                    })
                    .collect()
            });
            for parser in parsers {
                let _ = parser.parse(&text);
            }
            let _ = judge_audit::judge::command::verdict_keyword(&text);
        }
        Target::Regex => {
            for pick in [Pick::First, Pick::Last, Pick::Unique] {
                if let Ok(parser) = VerdictParser::new(&text, r"\[\[B\]\]", "(?i)tie", pick) {
                    let _ = parser.parse("Output (a) [[A]] [[B]] tie A");
                }
            }
        }
    }
}

/// Run the fuzzer until `budget` says stop; panics (after saving the input) on the first
/// panicking input.
fn fuzz(seed: u64, mut keep_going: impl FnMut(usize) -> bool) -> usize {
    let corpus = Corpus::load();
    let scratch = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut cases = 0;
    while keep_going(cases) {
        let target = TARGETS[cases % TARGETS.len()];
        let seeds = corpus.seeds(target);
        let base = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, base, seeds);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
            exercise(target, &input, scratch.path())
        }));
        if outcome.is_err() {
            let dir = repo().join("target/fuzz-failures");
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join(format!("{target:?}-{seed}-{cases}"));
            std::fs::write(&file, &input).unwrap();
            panic!(
                "{target:?} panicked on case {cases} (seed {seed}); input saved to {}",
                file.display()
            );
        }
        cases += 1;
    }
    cases
}

#[test]
fn loaders_and_parsers_survive_mutated_input() {
    // Fixed seed and count: the same cases on every run.
    let cases = fuzz(20_261_201, |n| n < 100 * TARGETS.len());
    assert_eq!(cases, 800);
}

#[test]
#[ignore = "long-running; CI runs it in release for JUDGE_AUDIT_FUZZ_SECS seconds"]
fn fuzz_for_a_while() {
    let secs: u64 = std::env::var("JUDGE_AUDIT_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("JUDGE_AUDIT_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    eprintln!("fuzzing for {secs} s from seed {seed} (JUDGE_AUDIT_FUZZ_SEED={seed} replays it)");
    let until = Instant::now() + Duration::from_secs(secs);
    let cases = fuzz(seed, |_| Instant::now() < until);
    eprintln!("{cases} cases, no panic");
}
