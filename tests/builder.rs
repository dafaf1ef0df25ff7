//! The `Audit` builder as an embedding program uses it: a custom judge plugged in, pairs in
//! memory or from a file, the run store in memory or in a run directory, typed errors.

use judge_audit::dataset::{Pair, Preference};
use judge_audit::judge::{Judge, JudgeError, JudgeReply, JudgeRequest, SlotVerdict};
use judge_audit::{Audit, Error, Store, audit};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Prefers the longer answer (a tie on equal lengths) and counts its calls.
#[derive(Default)]
struct PrefersLonger {
    calls: AtomicUsize,
}

#[judge_audit::judge::async_trait]
impl Judge for PrefersLonger {
    fn name(&self) -> &str {
        "prefers-longer"
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
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

fn pair(i: usize) -> Pair {
    Pair {
        id: format!("p{i}"),
        prompt: format!("Question {i}?"),
        response_a: format!("A full answer to question {i}, with the reasons behind it."),
        response_b: format!("Short {i}."),
        preferred: Some(Preference::A),
        category: None,
        label_kind: None,
    }
}

fn pairs(n: usize) -> Vec<Pair> {
    (0..n).map(pair).collect()
}

fn audit_of(judge: Arc<PrefersLonger>) -> Audit {
    Audit::new()
        .pairs("in-memory", pairs(8))
        .artifacts(["verbosity", "position"])
        .judge_arc(judge)
        .bootstrap_resamples(200)
        .seed(3)
}

fn json(summary: &judge_audit::report::Summary) -> String {
    serde_json::to_string_pretty(summary).unwrap()
}

#[test]
fn a_custom_judge_is_asked_every_planned_call_and_analysed_in_memory() {
    let judge = Arc::new(PrefersLonger::default());
    let audit = audit_of(judge.clone());
    let planned = audit.prepare().unwrap().plan.calls.len();
    let summary = audit.run().unwrap();
    assert_eq!(judge.calls.load(Ordering::SeqCst), planned);
    assert_eq!(summary.plan.total_calls, planned);
    assert_eq!(summary.dataset.name, "in-memory");
    assert_eq!(summary.dataset.pairs, 8);
    let info = &summary.judge_configs[0];
    assert_eq!(
        (info.name.as_str(), info.backend.as_str()),
        ("prefers-longer", "custom")
    );
    let result = &summary.judges[0];
    let t = |id: &str| {
        let a = result.artifacts.iter().find(|a| a.artifact == id).unwrap();
        a.tie_detection.score.estimate.unwrap()
    };
    assert_eq!(t("verbosity"), 1.0);
    assert_eq!(t("position"), 0.0);
    // The longer answer is the gold one in every pair.
    assert_eq!(result.baseline.gold_accuracy.estimate, Some(1.0));
}

#[test]
fn a_run_directory_holds_the_same_summary_and_re_renders_it_without_the_judge() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let memory = audit_of(Arc::default()).run().unwrap();
    let stored = audit_of(Arc::default())
        .store(Store::dir(&out))
        .run()
        .unwrap();
    // The store in memory and the one on disk feed the analysis the same calls.
    assert_eq!(json(&memory), json(&stored));
    for file in [
        "run.sqlite",
        "calls.jsonl",
        "summary.json",
        "report.md",
        "report.html",
        "results.csv",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let written = std::fs::read_to_string(out.join("summary.json")).unwrap();
    // The custom judge renders no template, and its summary is a valid summary.json.
    assert_eq!(stored.judge_configs[0].template, "none");
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/reports/summary.schema.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let instance: serde_json::Value = serde_json::from_str(&written).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // `report` rebuilds the run from its snapshot, where the custom judge is only a name.
    let rerendered = audit::rerender(&out).unwrap();
    assert_eq!(json(&rerendered), json(&stored));
    assert_eq!(
        std::fs::read_to_string(out.join("summary.json")).unwrap(),
        written
    );
}

#[test]
fn a_memory_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    let lines: Vec<String> = pairs(5)
        .iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect();
    std::fs::write(&data, lines.join("\n") + "\n").unwrap();
    let summary = Audit::new()
        .dataset_file(&data)
        .artifacts(["apology"])
        .judge(PrefersLonger::default())
        .bootstrap_resamples(100)
        .run()
        .unwrap();
    assert_eq!(summary.dataset.name, "pairs.jsonl");
    assert_eq!(summary.dataset.pairs, 5);
    let entries: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(entries.len(), 1, "only the dataset file is in {dir:?}");
}

#[test]
fn a_preset_and_a_custom_judge_run_side_by_side() {
    let summary = Audit::new()
        .limit(6)
        .artifacts(["apology"])
        .preset("sim-unbiased")
        .judge(PrefersLonger::default())
        .bootstrap_resamples(100)
        .run()
        .unwrap();
    let names: Vec<&str> = summary
        .judge_configs
        .iter()
        .map(|j| j.name.as_str())
        .collect();
    assert_eq!(names, ["sim-unbiased", "prefers-longer"]);
    assert!(summary.judges.iter().any(|j| j.name == "prefers-longer"));
}

#[test]
fn mistakes_are_typed_errors() {
    let duplicate = Audit::new()
        .pairs("dup", [pair(1), pair(1)])
        .judge(PrefersLonger::default())
        .run();
    assert!(matches!(duplicate, Err(Error::DuplicatePair(id)) if id == "p1"));
    let empty = Audit::new()
        .pairs("none", Vec::new())
        .judge(PrefersLonger::default())
        .run();
    assert!(matches!(empty, Err(Error::NoPairs)));
    let no_judge = Audit::new().run();
    assert!(matches!(no_judge, Err(Error::Audit(_))));
    let twice = Audit::new()
        .judge(PrefersLonger::default())
        .judge(PrefersLonger::default())
        .run();
    let message = twice.err().unwrap().to_string();
    assert!(
        message.contains("two judges are named `prefers-longer`"),
        "{message}"
    );
    let missing = Audit::new()
        .dataset_file(Path::new("/nonexistent/pairs.jsonl"))
        .judge(PrefersLonger::default())
        .run();
    assert!(matches!(missing, Err(Error::Audit(_))));
}

#[test]
fn a_judge_file_cannot_name_the_custom_backend() {
    let text = "name = \"mine\"\nbackend = \"custom\"\n";
    let error = judge_audit::judge::JudgeConfig::from_toml_str(text, "mine.toml")
        .unwrap_err()
        .to_string();
    assert!(error.contains("backend"), "{error}");
    assert!(error.contains("Audit::judge"), "{error}");
}

/// Answers `budget` calls like [`PrefersLonger`], then fails every call permanently (a key
/// revoked mid-run), which stops it with the rest of its calls pending.
struct RunsOut {
    inner: PrefersLonger,
    budget: usize,
}

#[judge_audit::judge::async_trait]
impl Judge for RunsOut {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        if self.inner.calls.load(Ordering::SeqCst) >= self.budget {
            return Err(JudgeError::Permanent {
                kind: judge_audit::judge::FaultKind::Auth,
                message: "key revoked".into(),
            });
        }
        self.inner.judge(request).await
    }
}

#[test]
fn the_same_audit_on_the_same_directory_sends_only_what_is_still_pending() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let first = Arc::new(RunsOut {
        inner: PrefersLonger::default(),
        budget: 10,
    });
    let build = |judge: Arc<dyn Judge>| {
        Audit::new()
            .pairs("in-memory", pairs(8))
            .artifacts(["verbosity", "position"])
            .judge_arc(judge)
            .bootstrap_resamples(200)
            .seed(3)
            .concurrency(1)
            .store(Store::dir(&out))
    };
    let stopped = build(first.clone()).run().unwrap();
    assert!(stopped.judges[0].stopped.is_some());
    let committed = first.inner.calls.load(Ordering::SeqCst);
    let planned = stopped.plan.total_calls;
    assert!(committed < planned);
    let second = Arc::new(PrefersLonger::default());
    let resumed = build(second.clone()).run().unwrap();
    assert_eq!(second.calls.load(Ordering::SeqCst), planned - committed);
    // Resumed or run at once, the analysis sees the same calls; the first session's fault
    // stays on record.
    let whole = audit_of(Arc::default()).run().unwrap();
    let (r, w) = (&resumed.judges[0], &whole.judges[0]);
    assert_eq!(
        serde_json::to_value(&r.artifacts).unwrap(),
        serde_json::to_value(&w.artifacts).unwrap()
    );
    assert_eq!(
        serde_json::to_value(&r.baseline).unwrap(),
        serde_json::to_value(&w.baseline).unwrap()
    );
    assert_eq!(r.calls.completed, planned as u64);
    assert!(r.stopped.is_none());
    assert_eq!(r.faults.values().sum::<u64>(), 1);
}

#[test]
fn rewrite_artifacts_need_a_run_directory() {
    let dir = tempfile::tempdir().unwrap();
    let rewriter = dir.path().join("rewriter.toml");
    // Never called: the audit is refused before any rewrite is asked for.
    std::fs::write(
        &rewriter,
        "name = \"rw\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let refused = Audit::new()
        .pairs("in-memory", pairs(3))
        .artifacts(["rewrite-sentiment-cheerful"])
        .rewriter(&rewriter)
        .judge(PrefersLonger::default())
        .run();
    match refused {
        Err(Error::Audit(audit::AuditError::RewritesNeedDir(artifacts))) => {
            assert_eq!(artifacts, ["rewrite-sentiment-cheerful"]);
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
}
