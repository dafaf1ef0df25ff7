//! Multiplicity families match the decision (issue 20 §8): the adoption decision is per judge,
//! so by default each judge's artifact tests are one Holm family of artifacts × {T, WR, flip}
//! tests, named after the judge in every p-value label; `[design] multiplicity = "run"` pools
//! every judge of the run, as before. A judge's verdict then does not depend on how many other
//! judges share its run.

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn run(dir: &Path, name: &str, config: &str) -> Value {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).unwrap();
    let out = dir.join(name);
    let o = Command::new(env!("CARGO_BIN_EXE_judge-audit"))
        .args(["run", "--quiet", "--no-cache", "--config"])
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap()
}

fn judge<'a>(summary: &'a Value, name: &str) -> &'a Value {
    summary["judges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == name)
        .unwrap_or_else(|| panic!("judge {name}"))
}

fn position(judge: &Value) -> &Value {
    judge["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["artifact"] == "position")
        .unwrap()
}

const JUDGES: &str = "judges = [\"sim-first-slot\", \"sim-unbiased\", \"sim-verbose-fan\", \"sim-apology-lover\", \"sim-authority-skeptic\"]";

#[test]
fn each_judge_is_its_own_family_by_default_and_the_run_is_an_option() {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("seed = 42\n{JUDGES}\n\n[dataset]\nlimit = 30\n");
    let per_judge = run(dir.path(), "per-judge", &base);
    let run_wide = run(
        dir.path(),
        "run-wide",
        &format!("{base}\n[design]\nmultiplicity = \"run\"\n"),
    );

    let first = judge(&per_judge, "sim-first-slot");
    let artifacts = first["artifacts"].as_array().unwrap().len();
    let judges = per_judge["judges"].as_array().unwrap().len();
    assert_eq!(judges, 5);
    let t = &position(first)["tie_detection"];
    let family = t["p_family"].as_str().unwrap();
    assert!(
        family.starts_with(&format!(
            "holm over {} tests (grid[sim-first-slot]): every artifact",
            3 * artifacts
        )),
        "{family}"
    );
    assert!(family.ends_with("of judge sim-first-slot"), "{family}");
    // Every adjusted p-value of the judge names the judge's own family.
    for a in first["artifacts"].as_array().unwrap() {
        for e in [&a["tie_detection"], &a["winrate_shift"], &a["flip_rate"]] {
            if !e["p_adjusted"].is_null() {
                assert!(
                    e["p_family"]
                        .as_str()
                        .unwrap()
                        .contains("(grid[sim-first-slot])"),
                    "{e}"
                );
            }
        }
    }

    let first_run = judge(&run_wide, "sim-first-slot");
    let t_run = &position(first_run)["tie_detection"];
    let family_run = t_run["p_family"].as_str().unwrap();
    assert!(
        family_run.starts_with(&format!(
            "holm over {} tests (grid): every judge × artifact",
            3 * artifacts * judges
        )),
        "{family_run}"
    );
    // Same data, same raw p; the smaller family adjusts less.
    assert_eq!(t["p_value"], t_run["p_value"]);
    assert!(t["p_adjusted"].as_f64().unwrap() < t_run["p_adjusted"].as_f64().unwrap());

    // The analysis lists one family per judge by default, one for the run as an option.
    let names = |s: &Value| -> Vec<String> {
        s["analysis"]["families"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap().to_string())
            .filter(|n| n.starts_with("grid"))
            .collect()
    };
    assert_eq!(names(&per_judge).len(), 5, "{:?}", names(&per_judge));
    assert_eq!(names(&run_wide), ["grid"]);

    // The findings say which family a p-value was adjusted in.
    let findings = first["findings"].as_array().unwrap();
    let with_p: Vec<&str> = findings
        .iter()
        .filter_map(|f| f.as_str())
        .filter(|f| f.contains("Holm"))
        .collect();
    assert!(!with_p.is_empty());
    for line in with_p {
        assert!(line.contains("(grid[sim-first-slot])"), "{line}");
    }
}

#[test]
fn a_judges_verdict_does_not_depend_on_the_other_judges_of_its_run() {
    let dir = tempfile::tempdir().unwrap();
    let alone = run(
        dir.path(),
        "alone",
        "seed = 42\njudges = [\"sim-first-slot\"]\n\n[dataset]\nlimit = 30\n",
    );
    let crowd = run(
        dir.path(),
        "crowd",
        &format!("seed = 42\n{JUDGES}\n\n[dataset]\nlimit = 30\n"),
    );
    let a = judge(&alone, "sim-first-slot");
    let b = judge(&crowd, "sim-first-slot");
    assert_eq!(a["trust"], b["trust"]);
    assert_eq!(
        position(a)["tie_detection"]["p_adjusted"],
        position(b)["tie_detection"]["p_adjusted"]
    );
}
