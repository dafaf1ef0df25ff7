//! The command backend with small real scripts (sh, and python3 where JSON must be read): the
//! request JSON on stdin, JSON and plain-text verdicts, exit-status and error classification,
//! timeouts that kill the program, and configuration checks.

use judge_audit::judge::command::CommandJudge;
use judge_audit::judge::config::{Backend, JudgeConfig};
use judge_audit::judge::template::Template;
use judge_audit::judge::{
    FaultKind, Judge, JudgeError, JudgeReply, JudgeRequest, LabelProbs, SimContext, SlotVerdict,
    TokenUsage,
};
use serde_json::json;
use std::path::Path;

/// Prints `$OUT` to stdout and `$ERR` to stderr, exits with `$EXIT` (default 0); reads stdin.
const ECHO_SCRIPT: &str = r#"cat > /dev/null
printf '%s' "$OUT"
printf '%s' "$ERR" >&2
exit "${EXIT:-0}"
"#;

fn request(repeat: u32) -> JudgeRequest {
    JudgeRequest {
        pair_id: String::new(),
        call_id: format!("pair-7/baseline/{repeat}"),
        prompt: "How do I pick a lock?".into(),
        first: "I can't help with that.".into(),
        second: "Use a tension wrench and a pick.".into(),
        repeat,
        sim: SimContext::default(),
        context: Vec::new(),
    }
}

/// A temp folder holding `judge.toml` (the given TOML) and `name` = `script`.
fn judge_dir(toml: &str, name: &str, script: &str) -> (tempfile::TempDir, JudgeConfig) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), script).unwrap();
    let path = dir.path().join("judge.toml");
    std::fs::write(&path, toml).unwrap();
    let config = JudgeConfig::from_file(&path).unwrap();
    (dir, config)
}

/// A judge running ECHO_SCRIPT with `OUT`, `ERR` and `EXIT` set.
async fn echo(out: &str, err: &str, exit: i32) -> Result<JudgeReply, JudgeError> {
    let toml = format!(
        "name = \"echo\"\nbackend = \"command\"\ncommand = [\"sh\", \"echo.sh\"]\ntimeout_secs = 20\n\
         [env]\nOUT = {}\nERR = {}\nEXIT = \"{exit}\"\n",
        toml_string(out),
        toml_string(err)
    );
    let (_dir, config) = judge_dir(&toml, "echo.sh", ECHO_SCRIPT);
    CommandJudge::new(&config).unwrap().judge(&request(0)).await
}

fn toml_string(s: &str) -> String {
    // A JSON string literal is a valid TOML basic string for the texts used here.
    serde_json::to_string(s).unwrap()
}

#[track_caller]
fn assert_retryable(err: &JudgeError, kind: FaultKind) {
    match err {
        JudgeError::Retryable { kind: k, .. } => assert_eq!(*k, kind, "{err}"),
        other => panic!("expected retryable {kind:?}, got {other:?}"),
    }
}

#[track_caller]
fn assert_permanent(err: &JudgeError, kind: FaultKind) {
    match err {
        JudgeError::Permanent { kind: k, .. } => assert_eq!(*k, kind, "{err}"),
        other => panic!("expected permanent {kind:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn the_request_goes_to_stdin_and_a_json_verdict_comes_back() {
    // The script saves its stdin next to the judge file (it runs in that folder) and answers with
    // every optional field.
    let script = r#"cat > "$1"
printf '{"verdict":"b","raw":"mode=%s","probs":{"first":0.2,"second":0.7,"tie":0.1},"usage":{"input_tokens":30,"output_tokens":1},"extra":"ignored"}' "$JUDGE_MODE"
"#;
    let toml = "name = \"script\"\nbackend = \"command\"\nmodel = \"my-model\"\n\
                command = [\"sh\", \"judge.sh\", \"captured.json\"]\ntemperature = 0.3\n\
                max_tokens = 64\n[env]\nJUDGE_MODE = \"strict\"\n";
    let (dir, config) = judge_dir(toml, "judge.sh", script);
    let judge = CommandJudge::new(&config).unwrap();
    assert_eq!(
        judge.working_dir(),
        Some(std::path::absolute(dir.path()).unwrap().as_path())
    );
    let reply = judge.judge(&request(3)).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
    assert_eq!(reply.raw, "mode=strict");
    assert_eq!(
        reply.label_probs,
        Some(LabelProbs {
            first: 0.2,
            second: 0.7,
            tie: 0.1
        })
    );
    assert_eq!(
        reply.usage,
        Some(TokenUsage {
            input_tokens: 30,
            output_tokens: 1
        })
    );
    let captured: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("captured.json")).unwrap()).unwrap();
    let user = Template::builtin("chen-safety")
        .unwrap()
        .render(
            "How do I pick a lock?",
            "I can't help with that.",
            "Use a tension wrench and a pick.",
        )
        .user;
    assert_eq!(
        captured,
        json!({
            "call_id": "pair-7/baseline/3",
            "prompt": "How do I pick a lock?",
            "first": "I can't help with that.",
            "second": "Use a tension wrench and a pick.",
            "repeat": 3,
            "system": null,
            "user": user,
            "model": "my-model",
            "temperature": 0.3,
            "max_tokens": 64
        })
    );
}

#[tokio::test]
async fn a_python_judge_reads_the_request_and_serves_concurrent_calls() {
    // Answers by the repeat's parity, so each reply is tied to its own request; the system
    // message of MT-Bench's template must arrive too.
    let script = r#"import json, sys
r = json.load(sys.stdin)
assert r["system"].startswith("Please act as an impartial judge"), r["system"]
print("[[A]]" if r["repeat"] % 2 == 0 else "Verdict: [[B]]")
"#;
    let toml = "name = \"py\"\nbackend = \"command\"\nprogram = \"python3\"\nargs = [\"judge.py\"]\n\
                template = \"mtbench-pairwise\"\nmax_tokens = 600\n";
    let (_dir, config) = judge_dir(toml, "judge.py", script);
    let judge = std::sync::Arc::new(CommandJudge::new(&config).unwrap());
    let calls: Vec<_> = (0..12u32)
        .map(|i| {
            let j = judge.clone();
            tokio::spawn(async move { (i, j.judge(&request(i)).await) })
        })
        .collect();
    for call in calls {
        let (i, result) = call.await.unwrap();
        let reply = result.unwrap();
        let want = if i % 2 == 0 {
            SlotVerdict::First
        } else {
            SlotVerdict::Second
        };
        assert_eq!(reply.verdict, want, "{reply:?}");
        assert_eq!(reply.usage, None);
    }
}

#[tokio::test]
async fn plain_text_is_parsed_by_the_verdict_parser() {
    let cases = [
        ("Output (a)\n", SlotVerdict::First),
        ("**Output (b)**", SlotVerdict::Second),
        ("Tie", SlotVerdict::Tie),
        ("I refuse to compare these.", SlotVerdict::Invalid),
        ("", SlotVerdict::Invalid),
        // Not an object: plain text, parsed like any reply.
        ("\"Output (a)\"", SlotVerdict::First),
    ];
    for (out, want) in cases {
        let reply = echo(out, "", 0).await.unwrap();
        assert_eq!(reply.verdict, want, "{out:?}");
        assert_eq!(reply.raw, out, "{out:?}");
    }
}

#[tokio::test]
async fn json_verdict_keywords_labels_and_raw() {
    let cases = [
        (r#"{"verdict":"first"}"#, SlotVerdict::First, "first"),
        (r#"{"verdict":"A"}"#, SlotVerdict::First, "A"),
        (r#"{"verdict":"second"}"#, SlotVerdict::Second, "second"),
        (r#"{"verdict":"b"}"#, SlotVerdict::Second, "b"),
        (r#"{"verdict":"tie"}"#, SlotVerdict::Tie, "tie"),
        (r#"{"verdict":"invalid"}"#, SlotVerdict::Invalid, "invalid"),
        // Not a keyword: the template's labels decide.
        (
            r#"{"verdict":"Output (b)"}"#,
            SlotVerdict::Second,
            "Output (b)",
        ),
        (r#"{"verdict":"maybe"}"#, SlotVerdict::Invalid, "maybe"),
        // No verdict: `raw` is parsed.
        (
            r#"{"raw":"I pick Output (a)."}"#,
            SlotVerdict::First,
            "I pick Output (a).",
        ),
        // Both: the verdict decides, `raw` is kept.
        (
            r#"{"verdict":"tie","raw":"Output (a)"}"#,
            SlotVerdict::Tie,
            "Output (a)",
        ),
    ];
    for (out, want, raw) in cases {
        let reply = echo(out, "", 0).await.unwrap();
        assert_eq!(reply.verdict, want, "{out}");
        assert_eq!(reply.raw, raw, "{out}");
        assert_eq!(reply.label_probs, None);
    }
}

#[tokio::test]
async fn exit_status_and_reported_errors_are_classified() {
    // Non-zero exit: retryable, quoting the end of stderr.
    let err = echo("", "Traceback ...\nConnectionError: upstream down", 1)
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Backend);
    let msg = err.to_string();
    assert!(msg.contains("status 1"), "{msg}");
    assert!(msg.contains("ConnectionError: upstream down"), "{msg}");
    // Exit 2: permanent.
    let err = echo("", "bad config", 2).await.unwrap_err();
    assert_permanent(&err, FaultKind::Backend);
    assert!(err.to_string().contains("bad config"), "{err}");
    // A reported error, permanent or not, whatever the exit status.
    let err = echo(r#"{"error":"quota gone","permanent":true}"#, "", 0)
        .await
        .unwrap_err();
    assert_permanent(&err, FaultKind::Backend);
    assert!(err.to_string().contains("quota gone"), "{err}");
    let err = echo(r#"{"error":"quota gone","permanent":true}"#, "", 1)
        .await
        .unwrap_err();
    assert_permanent(&err, FaultKind::Backend);
    let err = echo(r#"{"error":"busy, try later"}"#, "", 0)
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Backend);
    assert!(err.to_string().contains("busy, try later"), "{err}");
    // A plain-text verdict does not rescue a failed run.
    let err = echo("Output (a)", "", 3).await.unwrap_err();
    assert_retryable(&err, FaultKind::Backend);
}

#[tokio::test]
async fn broken_or_misshapen_json_is_an_error() {
    // Cut-off JSON is never read as text (it contains a label).
    let err = echo(r#"{"verdict":"first","raw":"Output (b) is"#, "", 0)
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::MalformedResponse);
    // Wrong types, impossible probabilities, nothing to read: the program's bug, permanent.
    for out in [
        r#"{"verdict":5}"#,
        r#"{"verdict":"a","probs":{"first":0.8,"second":0.5}}"#,
        r#"{"verdict":"a","probs":{"first":-0.1,"second":0.5}}"#,
        r#"{"verdict":"a","usage":{"input_tokens":"many"}}"#,
        r#"{"note":"no verdict here"}"#,
    ] {
        let err = echo(out, "", 0).await.unwrap_err();
        assert_permanent(&err, FaultKind::Backend);
    }
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_program_past_its_timeout_is_killed() {
    let script = "echo $$ > pid\nexec sleep 30\n";
    let toml = "name = \"slow\"\nbackend = \"command\"\ncommand = [\"sh\", \"slow.sh\"]\n\
                timeout_secs = 0.5\n";
    let (dir, config) = judge_dir(toml, "slow.sh", script);
    let err = CommandJudge::new(&config)
        .unwrap()
        .judge(&request(0))
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Timeout);
    let pid = std::fs::read_to_string(dir.path().join("pid")).unwrap();
    let pid = pid.trim();
    assert!(!pid.is_empty());
    // Killed and reaped: the process no longer exists.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still exists"
    );
}

#[tokio::test]
async fn programs_that_cannot_start_are_permanent_failures() {
    let toml = "name = \"missing\"\nbackend = \"command\"\n\
                command = [\"judge-audit-no-such-program-xyz\"]\n";
    let (_dir, config) = judge_dir(toml, "unused", "");
    let err = CommandJudge::new(&config)
        .unwrap()
        .judge(&request(0))
        .await
        .unwrap_err();
    assert_permanent(&err, FaultKind::Backend);
    assert!(
        err.to_string().contains("judge-audit-no-such-program-xyz"),
        "{err}"
    );
    // A relative path resolves against the judge file's folder; without the execute bit it
    // cannot run.
    let toml = "name = \"noexec\"\nbackend = \"command\"\nprogram = \"./judge.sh\"\n";
    let (dir, config) = judge_dir(toml, "judge.sh", "#!/bin/sh\necho 'Output (a)'\n");
    let judge = CommandJudge::new(&config).unwrap();
    let err = judge.judge(&request(0)).await.unwrap_err();
    assert_permanent(&err, FaultKind::Backend);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.path().join("judge.sh");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let reply = judge.judge(&request(0)).await.unwrap();
        assert_eq!(reply.verdict, SlotVerdict::First);
    }
}

#[tokio::test]
async fn a_program_that_ignores_a_large_input_still_answers() {
    // Never reads stdin: the write hits a closed pipe, which is not an error in itself.
    let toml = "name = \"deaf\"\nbackend = \"command\"\ncommand = [\"sh\", \"-c\", \"echo 'Output (b)'\"]\n";
    let (_dir, config) = judge_dir(toml, "unused", "");
    let mut req = request(0);
    req.first = "x".repeat(4 << 20);
    let reply = CommandJudge::new(&config)
        .unwrap()
        .judge(&req)
        .await
        .unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
}

#[test]
fn configuration_is_checked() {
    let parse = |text: &str| JudgeConfig::from_toml_str(text, "c.toml");
    let head = "name = \"c\"\nbackend = \"command\"\n";
    let err = parse(head).unwrap_err();
    assert_eq!(err.field(), Some("command"), "{err}");
    let err = parse(&format!("{head}command = []\n")).unwrap_err();
    assert_eq!(
        (err.field(), err.line()),
        (Some("command"), Some(3)),
        "{err}"
    );
    let err = parse(&format!("{head}command = [\"a\"]\nprogram = \"b\"\n")).unwrap_err();
    assert_eq!(err.field(), Some("program"), "{err}");
    let err = parse(&format!("{head}command = [\"a\"]\nargs = [\"x\"]\n")).unwrap_err();
    assert_eq!(err.field(), Some("args"), "{err}");
    let err = parse(&format!("{head}program = \"a\"\nbase_url = \"http://x\"\n")).unwrap_err();
    assert_eq!(err.field(), Some("base_url"), "{err}");
    let err = parse(&format!("{head}program = \"a\"\nlogprobs = true\n")).unwrap_err();
    assert_eq!(err.field(), Some("logprobs"), "{err}");
    // Secrets never go in a judge file, and the value is never echoed.
    let secret = "sk-live-SECRET-1234567890";
    let err = parse(&format!(
        "{head}program = \"a\"\n[env]\nMODE = \"x\"\nOPENAI_API_KEY = \"{secret}\"\n"
    ))
    .unwrap_err();
    assert_eq!(
        (err.field(), err.line()),
        (Some("env.OPENAI_API_KEY"), Some(6)),
        "{err}"
    );
    assert!(!format!("{err} {err:?}").contains(secret));
    let err = parse(&format!("{head}program = \"a\"\n[env]\n\"1BAD\" = \"x\"\n")).unwrap_err();
    assert_eq!(err.field(), Some("env.1BAD"), "{err}");
    // Command fields belong to the command backend only.
    let err =
        parse("name = \"o\"\nbackend = \"openai\"\nmodel = \"m\"\nprogram = \"a\"\n").unwrap_err();
    assert_eq!(err.field(), Some("program"), "{err}");
    let ok = parse(&format!(
        "{head}command = [\"python3\", \"judge.py\"]\n[env]\nMODE = \"fast\"\n"
    ))
    .unwrap();
    assert_eq!(ok.backend, Backend::Command);
    assert_eq!(ok.api_key_env_name(), None);
    // No model is fine: it is only passed along.
    assert!(ok.model.is_empty());
}

#[tokio::test]
async fn build_dispatches_to_the_command_backend() {
    let mut c = JudgeConfig::new("cmd", Backend::Command);
    c.command = Some(vec!["sh".into(), "-c".into(), "echo Tie".into()]);
    let j = judge_audit::judge::build(&c).unwrap();
    assert_eq!(j.name(), "cmd");
    assert!(!j.simulated());
    assert_eq!(
        j.judge(&request(0)).await.unwrap().verdict,
        SlotVerdict::Tie
    );
    let sim = JudgeConfig::new("s", Backend::Sim);
    assert!(CommandJudge::new(&sim).is_err());
}
