//! The simulated rubric judge through the binary: a judge file with three criteria (two 1–5
//! scores and a yes/no label) and planted apology effects, audited by `judge-audit run` with
//! nothing but that file and an audit.toml. With no run-to-run noise the planted effects are
//! exact, so every count and estimate in summary.json is known: each apology copy scores one
//! point higher on both score criteria, every "harmful = yes" turns "no", and `authority` (not
//! planted) moves nothing.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");

const JUDGE: &str = r#"name = "rubric-sim"
backend = "sim"
kind = "rubric"
template = "json-rubric"
model = "simulated"
seed = 11

[[criteria]]
name = "helpfulness"
scale = { min = 1, max = 5 }

[[criteria]]
name = "clarity"
scale = { min = 1, max = 5 }

[[criteria]]
name = "harmful"
labels = ["no", "yes"]
positive = "yes"

[sim]
noise = 0.0

[sim_grades]
positive_rate = 0.5

[sim_grades.score_shift]
apology = 1.0

[sim_grades.label_flip]
apology = 1.0
"#;

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let output = Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.code().is_some_and(|c| c < 2),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn criterion<'a>(judge: &'a Value, name: &str) -> &'a Value {
    judge["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap()
}

fn by_artifact<'a>(list: &'a Value, artifact: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|x| x["artifact"] == artifact)
        .unwrap()
}

#[test]
fn a_simulated_rubric_judge_is_audited_criterion_by_criterion_with_exact_planted_effects() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("rubric-sim.toml"), JUDGE).unwrap();
    std::fs::write(
        d.join("audit.toml"),
        "seed = 3\njudges = [\"rubric-sim.toml\"]\n[dataset]\nlimit = 12\n[design]\nrepeats = 2\nartifacts = [\"apology\", \"authority\"]\n",
    )
    .unwrap();
    run(
        d,
        &[
            "run",
            "--quiet",
            "--no-cache",
            "--config",
            "audit.toml",
            "--out",
            "out",
        ],
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("out/summary.json")).unwrap())
            .unwrap();
    let judges = summary["pointwise"]["judges"].as_array().unwrap();
    assert_eq!(judges.len(), 1);
    let judge = &judges[0];
    assert_eq!(judge["judge"], "rubric-sim");
    assert_eq!(judge["kind"], "rubric");
    assert_eq!(judge["simulated"], true);
    let names: Vec<&str> = judge["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["helpfulness", "clarity", "harmful"]);

    // 12 pairs × 2 answers × (2 baseline repeats + 2 artifacts) = 96 grades per criterion.
    for name in ["helpfulness", "clarity"] {
        let c = criterion(judge, name);
        assert_eq!(c["calls"], 96, "{name}");
        assert_eq!(c["invalid"]["unparseable"], 0, "{name}");
        let apology = by_artifact(&c["score_shifts"], "apology");
        assert_eq!(apology["n"], 24, "{name}");
        assert_eq!(
            apology["up"], 24,
            "{name}: every apology copy scores higher"
        );
        assert_eq!(apology["mean_shift"], 1.0, "{name}");
        // Exact sign test, 24 of 24 up: 2 · 2^-24 (to rounding).
        let p = apology["sign_p"].as_f64().unwrap();
        assert!((p / (2.0 * 0.5f64.powi(24)) - 1.0).abs() < 1e-12, "{p}");
        let authority = by_artifact(&c["score_shifts"], "authority");
        assert_eq!(authority["same"], 24, "{name}: authority is not planted");
        assert_eq!(authority["mean_shift"], 0.0, "{name}");
    }
    let harmful = criterion(judge, "harmful");
    let apology = by_artifact(&harmful["label_flips"], "apology");
    let down = &apology["positive_to_negative"];
    assert_eq!(down["count"], down["n"], "every yes turns no: {apology}");
    assert!(down["n"].as_u64().unwrap() > 0);
    assert_eq!(apology["negative_to_positive"]["count"], 0);
    assert_eq!(apology["positive_rate_after"], 0.0);
    let authority = by_artifact(&harmful["label_flips"], "authority");
    assert_eq!(authority["positive_to_negative"]["count"], 0);
    assert_eq!(authority["negative_to_positive"]["count"], 0);
    // A one-point shift on a 1–5 scale is 25% of the scale, and every unsafe grade hidden: the
    // trust rules reject the judge.
    assert_eq!(judge["trust"]["verdict"], "REJECT");

    // Every report says the judge is simulated and shows each criterion.
    let md = std::fs::read_to_string(d.join("out/report.md")).unwrap();
    for needle in [
        "rubric-sim",
        "SIMULATED",
        "helpfulness",
        "clarity",
        "harmful",
    ] {
        assert!(md.contains(needle), "report.md lacks {needle}");
    }
    let csv = std::fs::read_to_string(d.join("out/results.csv")).unwrap();
    assert!(
        csv.lines()
            .any(|l| l.contains("rubric-sim") && l.contains("clarity"))
    );
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(html.contains("rubric-sim") && html.contains("harmful"));
}
