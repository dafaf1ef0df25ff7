//! `judge-audit judges check` through the real binary, for every backend: loopback OpenAI- and
//! Anthropic-shaped servers, a command script and a simulated preset. Judge files live in a temp
//! folder and carry the loopback base URL.

mod support;

use std::path::Path;
use std::process::Output;
use support::{MockServer, Reply, anthropic_message, chat_completion};

/// Run the binary with a clean provider environment (no real keys or base URLs leak in).
async fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_judge-audit"));
    cmd.args(args);
    for var in [
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    // Async, so this test's runtime keeps serving the mock server meanwhile.
    cmd.output().await.expect("run judge-audit")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[track_caller]
fn assert_line(out: &str, prefix: &str, rest: &str) {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"));
    assert!(
        line[prefix.len()..].trim() == rest,
        "`{line}` is not `{prefix} {rest}`:\n{out}"
    );
}

#[tokio::test]
async fn openai_judge_that_answers_and_parses() {
    let server = MockServer::always(Reply::json(chat_completion("Output (a)"))).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "local.toml",
        &format!(
            "name = \"local-openai\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n",
            server.base_url()
        ),
    );
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let out = run(
        &["judges", "check", "local-openai", "--judges-dir", &dir_arg],
        &[],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_line(&text, "reachable:", "yes");
    assert_line(&text, "raw:", "\"Output (a)\"");
    assert_line(&text, "verdict:", "first (parsed)");
    assert_line(&text, "usage:", "10 input + 2 output tokens");
    assert!(text.contains("latency:"), "{text}");
    // Exactly one request: the tiny fixed pair, rendered with the judge's template.
    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let user = recorded[0].body["messages"][0]["content"].as_str().unwrap();
    assert!(
        user.contains("How should I store household bleach and ammonia cleaners?"),
        "{user}"
    );
}

#[tokio::test]
async fn openai_judge_whose_answer_does_not_parse_exits_1() {
    let server = MockServer::always(Reply::json(chat_completion("I cannot decide."))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "judge.toml",
        &format!(
            "name = \"vague\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n",
            server.base_url()
        ),
    );
    let out = run(&["judges", "check", &path], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_line(&text, "reachable:", "yes");
    assert_line(&text, "raw:", "\"I cannot decide.\"");
    assert!(text.contains("verdict:   invalid"), "{text}");
}

#[tokio::test]
async fn unreachable_and_failing_judges_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let url = support::refused_base_url().await;
    let path = write(
        dir.path(),
        "down.toml",
        &format!("name = \"down\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{url}\"\n"),
    );
    let out = run(&["judges", "check", &path], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_line(&text, "reachable:", "no");
    assert!(text.contains("Connection"), "{text}");

    // The server answers, with an auth error.
    let server = MockServer::always(Reply::anthropic_error(
        401,
        "authentication_error",
        "invalid x-api-key",
    ))
    .await;
    let path = write(
        dir.path(),
        "denied.toml",
        &format!(
            "name = \"denied\"\nbackend = \"anthropic\"\nmodel = \"m\"\nbase_url = \"{}\"\n",
            server.root_url()
        ),
    );
    let out = run(&["judges", "check", &path], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_line(&text, "reachable:", "yes, but the call failed");
    assert!(
        text.contains("Auth") && text.contains("permanent"),
        "{text}"
    );

    // Misconfigured: an Anthropic judge for a remote host without a key never sends anything.
    let out = run(&["judges", "check", "anthropic-claude-haiku"], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_line(&text, "reachable:", "no (misconfigured)");
    assert!(text.contains("ANTHROPIC_API_KEY"), "{text}");

    // Unknown judge: an error on stderr, exit 2.
    let out = run(&["judges", "check", "no-such-judge"], &[]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-judge"));
}

#[tokio::test]
async fn anthropic_judge_with_a_key_from_the_environment() {
    let server = MockServer::always(Reply::json(anthropic_message("Output (b)"))).await;
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "claude.toml",
        &format!(
            "name = \"claude-local\"\nbackend = \"anthropic\"\nmodel = \"claude-test\"\n\
             base_url = \"{}\"\napi_key_env = \"CHECK_TEST_KEY\"\n",
            server.root_url()
        ),
    );
    let secret = "sk-ant-check-SECRET-987654321";
    let out = run(&["judges", "check", &path], &[("CHECK_TEST_KEY", secret)]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_line(&text, "reachable:", "yes");
    assert_line(&text, "verdict:", "second (parsed)");
    assert_line(&text, "base url:", &server.root_url());
    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].path, "/v1/messages");
    assert_eq!(recorded[0].header("x-api-key"), Some(secret));
    assert!(!text.contains(secret));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
}

#[tokio::test]
async fn command_judge_runs_its_script() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "judge.sh",
        "cat > request.json\nprintf '{\"verdict\":\"tie\",\"raw\":\"both fine\"}'\n",
    );
    write(
        dir.path(),
        "script.toml",
        "name = \"script\"\nbackend = \"command\"\ncommand = [\"sh\", \"judge.sh\"]\n",
    );
    let dir_arg = dir.path().to_string_lossy().into_owned();
    let out = run(
        &["judges", "check", "script", "--judges-dir", &dir_arg],
        &[],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert_line(&text, "reachable:", "yes");
    assert_line(&text, "raw:", "\"both fine\"");
    assert_line(&text, "verdict:", "tie (parsed)");
    // The script ran in the judge file's folder and got the fixed pair.
    let request: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("request.json")).unwrap()).unwrap();
    assert_eq!(request["call_id"], "judges-check");
    assert!(
        request["second"]
            .as_str()
            .unwrap()
            .contains("mixing them makes a stronger cleaner")
    );

    // A failing script: exit 2 with the program's error.
    write(
        dir.path(),
        "broken.toml",
        "name = \"broken\"\nbackend = \"command\"\ncommand = [\"sh\", \"-c\", \"echo model missing >&2; exit 2\"]\n",
    );
    let out = run(
        &["judges", "check", "broken", "--judges-dir", &dir_arg],
        &[],
    )
    .await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert_line(&text, "reachable:", "no");
    assert!(text.contains("model missing"), "{text}");
}

#[tokio::test]
async fn simulated_preset_needs_no_network() {
    let out = run(&["judges", "check", "sim-first-slot"], &[]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("[simulated]"), "{text}");
    assert_line(&text, "reachable:", "yes");
    assert!(text.contains("(parsed)"), "{text}");
    assert!(!text.contains("base url:"), "{text}");
}
