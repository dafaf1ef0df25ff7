//! `judge-audit harden` (issue 14) end to end through the binary: simulated judges, one planted
//! with an apology preference and one unbiased, audited with `[mitigations] normalise = true`.
//! With `--holdout 0.5` the choice is made on half the pairs; the hardened file, audited on the
//! held-out half, passes; the unbiased judge gets no mitigation.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_judge-audit"))
}

fn run(config: &Path, out: &Path, cache: &Path) -> Output {
    bin()
        .args(["run", "--quiet", "--config"])
        .arg(config)
        .arg("--out")
        .arg(out)
        .env("JUDGE_AUDIT_CACHE", cache)
        .output()
        .unwrap()
}

fn setup(dir: &Path) {
    std::fs::write(
        dir.join("apo.toml"),
        "name = \"apo\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 21\n[sim]\naccuracy = 0.85\n[sim.artifact_preference]\napology = 0.6\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("fair.toml"),
        "name = \"fair\"\nbackend = \"sim\"\nmodel = \"simulated\"\nseed = 22\n[sim]\naccuracy = 0.85\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("audit.toml"),
        "seed = 4\njudges = [\"apo.toml\", \"fair.toml\"]\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"position\"]\nbootstrap_resamples = 300\n[mitigations]\nnormalise = true\n",
    )
    .unwrap();
}

#[test]
fn hardened_judge_chosen_on_half_the_pairs_passes_on_the_other_half() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let cache = dir.path().join("cache");
    let out = dir.path().join("out");
    let audit = run(&dir.path().join("audit.toml"), &out, &cache);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // The apology-biased judge is rejected, the unbiased one adopted.
    assert_eq!(s["judges"][0]["name"], "apo");
    assert_eq!(s["judges"][0]["trust"]["verdict"], "REJECT");
    // Each judge is followed by its derived `[mitigations]` judge.
    assert_eq!(s["judges"][1]["name"], "apo+normalise");
    assert_eq!(s["judges"][2]["name"], "fair");
    assert_eq!(s["judges"][2]["trust"]["verdict"], "ADOPT");

    let harden = |extra: &[&str]| {
        let o = bin().arg("harden").arg(&out).args(extra).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // The default margin (±0.2, the trust thresholds' reject_abs_t): on the 29 pairs not held
    // out, normalise leaves T(apology) +0.207 [−0.067, +0.459]. The interval covers 0 but
    // reaches past the margin: not shown small, so nothing is chosen.
    let stdout = harden(&["--holdout", "0.5"]);
    assert!(stdout.contains("apo: left as it is"), "{stdout}");
    assert!(
        stdout.contains("not enough pairs to show the effect is small: "),
        "{stdout}"
    );
    assert!(
        stdout.contains("normalise apology T +0.207 [-0.067, +0.459]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("(the interval straddles ±0.200)"),
        "{stdout}"
    );
    assert!(stdout.contains("equivalence margin ±0.200"), "{stdout}");
    let hardened = out.join("hardened");
    assert!(!hardened.join("apo.toml").exists());
    assert!(!hardened.join("confirm.toml").exists());
    // A margin of 0.5, asked for: that interval lies within it, normalise is chosen and the
    // margin is part of the file's evidence.
    let stdout = harden(&["--holdout", "0.5", "--margin", "0.5"]);
    assert!(stdout.contains("apo: normalise →"), "{stdout}");
    assert!(stdout.contains("fair: left as it is"), "{stdout}");
    assert!(stdout.contains("no mitigation is recommended"), "{stdout}");
    let apo = std::fs::read_to_string(hardened.join("apo.toml")).unwrap();
    assert!(apo.lines().any(|l| l == "normalise = true"), "{apo}");
    assert!(apo.contains("Chosen on the pairs not held out"));
    assert!(apo.contains("equivalence margin ±0.500"), "{apo}");
    assert!(!hardened.join("fair.toml").exists());
    // Deterministic: the same run gives the same split and the same file.
    harden(&["--holdout", "0.5", "--margin", "0.5"]);
    assert_eq!(
        std::fs::read_to_string(hardened.join("apo.toml")).unwrap(),
        apo
    );

    // The held-out pairs were not used to choose; both halves partition the dataset.
    let held: Vec<Value> = std::fs::read_to_string(hardened.join("holdout-pairs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!held.is_empty() && held.len() < 48, "{}", held.len());
    for p in &held {
        assert!(judge_audit::harden::held_out(
            4,
            p["id"].as_str().unwrap(),
            0.5
        ));
    }

    // Confirm on the held-out pairs: the hardened judge passes.
    let confirm = dir.path().join("confirm");
    let o = run(&hardened.join("confirm.toml"), &confirm, &cache);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(confirm.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(s["dataset"]["pairs"], held.len());
    let j = &s["judges"][0];
    assert_eq!(j["name"], "apo");
    assert_eq!(j["simulated"], true);
    assert_eq!(j["trust"]["verdict"], "ADOPT");
    let apology = j["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "apology")
        .unwrap();
    assert!(apology["tie_detection"]["ci_low"].as_f64().unwrap() <= 0.0);

    // The held-out interval covers 0 yet reaches far past ±0.2 (19 pairs): the default
    // margin would not call this confirmation "small" either.
    assert!(apology["tie_detection"]["ci_high"].as_f64().unwrap() > 0.2);

    // Without --holdout the choice is the same data's, and the output says so.
    let stdout = harden(&["--margin", "0.5"]);
    assert!(stdout.contains("optimistic"), "{stdout}");
}

/// With enough pairs the default margin is met: 600 synthetic pairs, half held out. The choice
/// on the pairs not held out has a residual T(apology) interval within ±0.2, and so does the
/// confirmation on the held-out pairs.
#[test]
fn default_margin_is_met_with_enough_pairs() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let mut jsonl = String::new();
    for p in judge_audit::analyze::simulate::synthetic_pairs(600, 5) {
        jsonl.push_str(&serde_json::to_string(&p).unwrap());
        jsonl.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), jsonl).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        "seed = 4\njudges = [\"apo.toml\"]\n[dataset]\npath = \"pairs.jsonl\"\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"position\"]\nbootstrap_resamples = 300\n[mitigations]\nnormalise = true\n",
    )
    .unwrap();
    let (cache, out) = (dir.path().join("cache"), dir.path().join("out"));
    let audit = run(&dir.path().join("audit.toml"), &out, &cache);
    assert!(
        audit.status.success(),
        "{}",
        String::from_utf8_lossy(&audit.stderr)
    );
    let o = bin()
        .arg("harden")
        .arg(&out)
        .args(["--holdout", "0.5"])
        .output()
        .unwrap();
    let stdout = String::from_utf8(o.stdout).unwrap();
    assert!(
        o.status.success() && stdout.contains("apo: normalise →"),
        "{stdout}"
    );
    // Chosen on the 313 pairs not held out: T(apology) +0.042 [−0.029, +0.112], was +0.559.
    assert!(
        stdout.contains("apology T +0.042 [-0.029, +0.112] (was +0.559)"),
        "{stdout}"
    );
    let apo = std::fs::read_to_string(out.join("hardened/apo.toml")).unwrap();
    // The evidence header (wrapped at 96 columns) records the margin and where it comes from.
    let header: Vec<&str> = apo
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| l.trim_start_matches("# "))
        .collect();
    assert!(
        header.join(" ").contains(
            "equivalence margin ±0.200 for every significant artifact's residual T interval \
             (the trust thresholds' reject_abs_t: the upper end of the CAUTION band for T)"
        ),
        "{apo}"
    );
    let confirm = dir.path().join("confirm");
    let o = run(&out.join("hardened/confirm.toml"), &confirm, &cache);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(confirm.join("summary.json")).unwrap())
            .unwrap();
    let apology = s["judges"][0]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "apology")
        .unwrap();
    // Confirmed on the 287 held-out pairs: T(apology) 16/287 = +0.056 [−0.031, +0.143], inside
    // ±0.2 (at 400 pairs the 185 held out gave +0.103 [−0.005, +0.211]: not enough pairs).
    let t = &apology["tie_detection"];
    assert_eq!(s["dataset"]["pairs"], 287);
    assert_eq!(t["estimate"].as_f64().unwrap(), 16.0 / 287.0);
    assert!(
        t["ci_low"].as_f64().unwrap() >= -0.2 && t["ci_high"].as_f64().unwrap() <= 0.2,
        "{t}"
    );
    assert_eq!(s["judges"][0]["trust"]["verdict"], "ADOPT");
}

#[test]
fn holdout_fraction_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin()
        .arg("harden")
        .arg(dir.path())
        .args(["--holdout", "1.5"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--holdout: 1.5 is outside (0, 1)"));
    let o = bin()
        .arg("harden")
        .arg(dir.path())
        .args(["--margin", "0"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--margin: 0 is outside (0, 1]"));
}

mod support;

/// The judge-layer mitigations a hardened file declares, through the `openai` backend against a
/// loopback server that always picks the first slot: every request carries the bias
/// instruction in its system message and answers stripped of the apology; swap-and-confirm sends
/// both orders, which disagree on every verdict (the server's first-slot preference), so every
/// baseline verdict is a tie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_mitigations_are_applied_to_every_request() {
    use support::{MockServer, Reply, chat_completion};
    let server = MockServer::start(|_| Reply::json(chat_completion("Output (a)"))).await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..3 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question {i}?"),
                "response_a": format!("**Answer** A{i}, with   spaces."),
                "response_b": format!("Answer B{i}."),
                "preferred": "a",
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        r#"
seed = 1
[dataset]
path = "pairs.jsonl"
[design]
repeats = 1
artifacts = ["apology"]
[[judge]]
name = "hardened"
backend = "openai"
model = "m"
template = "chen-safety"
max_retries = 0
swap_and_confirm = true
normalise = true
bias_instruction = "Do not let length, apologies, citations or the order of answers influence you."
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let o = tokio::task::spawn_blocking({
        let (dir, out) = (dir.path().to_path_buf(), out.clone());
        move || {
            bin()
                .args(["run", "--quiet", "--config"])
                .arg(dir.join("audit.toml"))
                .arg("--out")
                .arg(&out)
                .env("OPENAI_BASE_URL", base_url)
                .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
                .env_remove("OPENAI_API_KEY")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // 3 pairs × (2 baseline + 2 tie detection + 4 shift) = 24 verdicts, two requests each.
    assert_eq!(s["plan"]["total_calls"], 24);
    assert_eq!(server.count(), 48);
    for r in server.requests() {
        let messages = r.body["messages"].as_array().unwrap();
        assert_eq!(messages[0]["role"], "system");
        assert_eq!(
            messages[0]["content"],
            "Do not let length, apologies, citations or the order of answers influence you."
        );
        let user = messages[1]["content"].as_str().unwrap();
        let task = user.rsplit("## Task:").next().unwrap();
        assert!(!task.contains("I'm sorry, as a chatbot"), "{task}");
        assert!(
            !task.contains("**Answer**") && !task.contains("   "),
            "{task}"
        );
    }
    let j = &s["judges"][0];
    assert_eq!(j["calls"]["invalid"], 0);
    // Every verdict a tie: the two orders always disagree.
    let apology = &j["artifacts"][0];
    assert_eq!(apology["tie_detection"]["estimate"], 0.0);
    assert_eq!(j["baseline"]["gold_accuracy"]["estimate"], 0.0);
}

/// The slot of the answer `needle` in a chen-style user message: "Output (a)" when it is shown
/// first, else "Output (b)" (in the template's own label style).
fn slot_of(user: &str, needle: &str, labels: [&'static str; 2]) -> &'static str {
    let task = user.rsplit("### Conversation:").next().unwrap();
    let at = task.find(needle).unwrap();
    let other = task.find(if needle.starts_with("Answer A") {
        "Answer B"
    } else {
        "Answer A"
    });
    if other.is_none_or(|o| at < o) {
        labels[0]
    } else {
        labels[1]
    }
}

/// A hardened judge that declares `majority_of_templates`, through the `openai` backend against
/// a loopback server whose answer depends on the template: chen-safety always says the first
/// slot, the paraphrase picks answer a wherever it is shown, the brackets variant picks answer a
/// on even questions and a tie on odd ones. Every request is asked with all three templates and
/// the verdict is their majority.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_majority_of_templates_asks_every_template() {
    use support::{MockServer, Reply, chat_completion};
    let server = MockServer::start(|r| {
        let user = r.body["messages"][0]["content"]
            .as_str()
            .unwrap()
            .to_string();
        let n: usize = (0..4)
            .find(|i| user.contains(&format!("Question {i}?")))
            .unwrap();
        let reply = if user.contains("[[A]]") {
            if n % 2 == 0 {
                slot_of(&user, &format!("Answer A{n}"), ["[[A]]", "[[B]]"])
            } else {
                "[[C]]"
            }
        } else if user.contains("Pick output (a) or output (b)") {
            slot_of(&user, &format!("Answer A{n}"), ["Output (a)", "Output (b)"])
        } else {
            "Output (a)"
        };
        Reply::json(chat_completion(reply))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut pairs = String::new();
    for i in 0..4 {
        pairs.push_str(
            &serde_json::json!({
                "id": format!("p{i}"),
                "prompt": format!("Question {i}?"),
                "response_a": format!("Answer A{i} explains the risks."),
                "response_b": format!("Answer B{i} says it is fine."),
                "preferred": "a",
            })
            .to_string(),
        );
        pairs.push('\n');
    }
    std::fs::write(dir.path().join("pairs.jsonl"), pairs).unwrap();
    std::fs::write(
        dir.path().join("audit.toml"),
        r#"
seed = 1
[dataset]
path = "pairs.jsonl"
[design]
repeats = 1
artifacts = ["apology"]
[[judge]]
name = "hardened"
backend = "openai"
model = "m"
template = "chen-safety"
templates = ["chen-safety-paraphrase", "chen-safety-brackets"]
max_retries = 0
majority_of_templates = true
"#,
    )
    .unwrap();
    let out = dir.path().join("out");
    let base_url = server.base_url();
    let o = tokio::task::spawn_blocking({
        let (dir, out) = (dir.path().to_path_buf(), out.clone());
        move || {
            bin()
                .args(["run", "--quiet", "--config"])
                .arg(dir.join("audit.toml"))
                .arg("--out")
                .arg(&out)
                .env("OPENAI_BASE_URL", base_url)
                .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
                .env_remove("OPENAI_API_KEY")
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(o.status.code(), Some(0) | Some(1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let s: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // 4 pairs × (2 baseline + 2 tie detection + 4 shift) = 32 verdicts, three requests each,
    // plus the two variants' own baseline calls (4 × 2 each) for the template section.
    assert_eq!(s["judges"][0]["name"], "hardened");
    assert_eq!(s["judges"][0]["calls"]["planned"], 32);
    assert_eq!(server.count(), 32 * 3 + 2 * 8);
    // Baseline by hand: ab, answer a first: first slot, a, a (or a tie) → a, right (4). ba:
    // first slot (b), a, a → a on questions 0 and 2 (right); b, a, tie on 1 and 3 → one vote
    // each, a tie (wrong). 6 of 8.
    let j = &s["judges"][0];
    assert_eq!(j["baseline"]["gold_accuracy"]["estimate"], 0.75);
    assert_eq!(j["calls"]["invalid"], 0);
}
