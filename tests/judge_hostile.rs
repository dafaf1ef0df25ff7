//! Issue 10 items 7, 8, 9 and 11 against real loopback servers and real programs: a key reflected
//! in an answer never reaches a stored or printed text (and the reply says it was redacted);
//! redaction comes before truncation; hostile durations and rates neither panic nor stall; and
//! response bodies are capped without being read whole.

mod support;

use judge_audit::judge::anthropic::AnthropicJudge;
use judge_audit::judge::check::check_request;
use judge_audit::judge::command::CommandJudge;
use judge_audit::judge::config::Backend;
use judge_audit::judge::openai::OpenAiJudge;
use judge_audit::judge::{FaultKind, Judge, JudgeConfig, JudgeError, SlotVerdict};
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{MockServer, Reply, anthropic_message, chat_completion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_judge-audit");
const KEY: &str = "sk-REFLECTED-0c9f2e7a5b3d41f8a6e2";

fn key_env(name: &str) -> Option<String> {
    (name == "HOSTILE_TEST_KEY").then(|| KEY.to_string())
}

fn openai(base_url: &str) -> JudgeConfig {
    let mut c = JudgeConfig::new("hostile-openai", Backend::Openai);
    c.model = "m".into();
    c.base_url = Some(base_url.into());
    c.api_key_env = Some("HOSTILE_TEST_KEY".into());
    c.max_retries = 0;
    c
}

fn anthropic(root_url: &str) -> JudgeConfig {
    let mut c = JudgeConfig::new("hostile-anthropic", Backend::Anthropic);
    c.model = "claude-test".into();
    c.base_url = Some(root_url.into());
    c.api_key_env = Some("HOSTILE_TEST_KEY".into());
    c.max_retries = 0;
    c
}

/// Both HTTP judges for the same behaviour: (openai judge, anthropic judge, their servers).
async fn both(
    openai_reply: Reply,
    anthropic_reply: Reply,
    edit: impl Fn(&mut JudgeConfig),
) -> (Vec<Box<dyn Judge>>, Vec<MockServer>) {
    let o = MockServer::always(openai_reply).await;
    let a = MockServer::always(anthropic_reply).await;
    let mut oc = openai(&o.base_url());
    let mut ac = anthropic(&a.root_url());
    edit(&mut oc);
    edit(&mut ac);
    let judges: Vec<Box<dyn Judge>> = vec![
        Box::new(OpenAiJudge::with_env(&oc, key_env).unwrap()),
        Box::new(AnthropicJudge::with_env(&ac, key_env).unwrap()),
    ];
    (judges, vec![o, a])
}

fn retryable(err: &JudgeError) -> (FaultKind, &str, Option<Duration>) {
    match err {
        JudgeError::Retryable {
            kind,
            message,
            retry_after,
        } => (*kind, message.as_str(), *retry_after),
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

// ---- item 7: a reflected key is redacted from the reply and recorded as redacted ----

#[tokio::test]
async fn a_key_reflected_in_an_answer_is_redacted_and_the_reply_says_so() {
    let text = format!("Output (a). Your header was Bearer {KEY}; x-api-key {KEY}");
    let (judges, _servers) = both(
        Reply::json(chat_completion(&text)),
        Reply::json(anthropic_message(&text)),
        |_| {},
    )
    .await;
    for judge in &judges {
        let reply = judge.judge(&check_request()).await.unwrap();
        assert!(!reply.raw.contains(KEY), "{}: {}", judge.name(), reply.raw);
        assert!(reply.raw.contains("<redacted>"), "{}", reply.raw);
        assert!(reply.redacted, "{}", judge.name());
        assert_eq!(reply.verdict, SlotVerdict::First);
        // The flag survives the JSON the store and the cache keep.
        let stored = serde_json::to_string(&reply).unwrap();
        assert!(stored.contains("\"redacted\":true"), "{stored}");
        assert!(!stored.contains(KEY));
    }
    // A clean answer is not marked, and its JSON is what it was before the flag existed.
    let (judges, _servers) = both(
        Reply::json(chat_completion("Output (a)")),
        Reply::json(anthropic_message("Output (a)")),
        |_| {},
    )
    .await;
    for judge in &judges {
        let reply = judge.judge(&check_request()).await.unwrap();
        assert!(!reply.redacted);
        assert!(!serde_json::to_string(&reply).unwrap().contains("redacted"));
    }
}

#[tokio::test]
async fn a_key_in_a_json_escaped_answer_is_redacted_after_decoding() {
    // `\u002d` is `-`: the raw body does not contain the key, the decoded text does.
    let escaped = KEY.replace('-', "\\u002d");
    let body = format!(
        r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"Output (b) {escaped}"}},"finish_reason":"stop"}}]}}"#
    );
    let server = MockServer::always(Reply::status(200, body)).await;
    let judge = OpenAiJudge::with_env(&openai(&server.base_url()), key_env).unwrap();
    let reply = judge.judge(&check_request()).await.unwrap();
    assert_eq!(reply.raw, "Output (b) <redacted>");
    assert!(reply.redacted);
}

/// Through the binary: the key a server reflects is in no file of the run directory or the
/// cache, and the stored records say which replies were redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reflected_key_reaches_no_stored_file_and_no_judges_check_output() {
    let server = MockServer::start(|r| {
        let auth = r.header("authorization").unwrap_or_default().to_string();
        Reply::json(chat_completion(&format!("Output (b) (you sent {auth})")))
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("pairs.jsonl"),
        json!({"id": "p0", "prompt": "Safe?", "response_a": "Careful.", "response_b": "Sure.",
               "preferred": "a"})
        .to_string()
            + "\n",
    )
    .unwrap();
    std::fs::write(
        d.join("audit.toml"),
        format!(
            "seed = 3\n[dataset]\npath = \"pairs.jsonl\"\n[design]\nartifacts = [\"apology\"]\n\
             [[judge]]\nname = \"reflecting\"\nbackend = \"openai\"\nmodel = \"m\"\n\
             base_url = \"{}\"\napi_key_env = \"HOSTILE_TEST_KEY\"\n",
            server.base_url()
        ),
    )
    .unwrap();
    std::fs::create_dir(d.join("judges")).unwrap();
    std::fs::write(
        d.join("judges/reflecting.toml"),
        format!(
            "name = \"reflecting\"\nbackend = \"openai\"\nmodel = \"m\"\nbase_url = \"{}\"\n\
             api_key_env = \"HOSTILE_TEST_KEY\"\n",
            server.base_url()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let dir = d.to_path_buf();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(BIN)
                .current_dir(&dir)
                .args(&args)
                .env("HOSTILE_TEST_KEY", KEY)
                .env("JUDGE_AUDIT_CACHE", dir.join("cache"))
                .env_remove("OPENAI_API_KEY")
                .env_remove("OPENAI_BASE_URL")
                .output()
                .unwrap()
        })
    };
    let out = run(&["run", "--quiet", "--config", "audit.toml", "--out", "out"])
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.count() > 0);
    let mut files = Vec::new();
    collect(d, &mut files);
    let mut checked = 0;
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()),
            "the key is in {}",
            file.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 4,
        "run store, calls.jsonl, cache and reports read"
    );
    let calls = std::fs::read_to_string(d.join("out/calls.jsonl")).unwrap();
    assert!(calls.lines().count() > 0);
    assert!(
        calls.lines().all(|l| l.contains("\"redacted\":true")),
        "{calls}"
    );
    for text in [&out.stdout, &out.stderr] {
        assert!(!String::from_utf8_lossy(text).contains(KEY));
    }

    let check = run(&["judges", "check", "reflecting", "--judges-dir", "judges"])
        .await
        .unwrap();
    let shown = String::from_utf8_lossy(&check.stdout).to_string()
        + &String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success(), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
    assert!(shown.contains("redacted:"), "{shown}");
}

fn collect(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else {
            out.push(path);
        }
    }
}

// ---- item 8: redact first, then truncate ----

#[tokio::test]
async fn a_key_at_the_truncation_point_of_an_error_leaves_no_part_behind() {
    // The key starts just before the 300-character cut: truncating first would keep its head.
    let message = format!("{}{KEY} and more", "x".repeat(290));
    let (judges, _servers) = both(
        Reply::error(500, &message, "server_error", None),
        Reply::anthropic_error(500, "api_error", &message),
        |_| {},
    )
    .await;
    let head = &KEY[..8];
    for judge in &judges {
        let err = judge.judge(&check_request()).await.unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(head), "{}: {shown}", judge.name());
        assert_eq!(err.kind(), FaultKind::ServerError);
    }
}

// ---- item 9: hostile durations and rates ----

#[tokio::test]
async fn huge_retry_after_on_429_and_503_neither_panics_nor_is_honoured() {
    for status in [429, 503] {
        for wait in ["1e20", "86400"] {
            let (judges, _servers) = both(
                Reply::error(status, "slow down", "rate_limit", None)
                    .with_header("retry-after", wait),
                Reply::anthropic_error(status, "rate_limit_error", "slow down")
                    .with_header("retry-after", wait),
                |_| {},
            )
            .await;
            for judge in &judges {
                let err = judge.judge(&check_request()).await.unwrap_err();
                let (_, message, retry_after) = retryable(&err);
                assert_eq!(retry_after, None, "{} {status} {wait}", judge.name());
                assert!(message.contains("max_retry_after_secs"), "{message}");
            }
        }
    }
}

#[tokio::test]
async fn a_wait_within_the_cap_is_honoured_and_the_cap_is_configurable() {
    let (judges, _servers) = both(
        Reply::error(429, "slow down", "rate_limit", None).with_header("retry-after", "5"),
        Reply::anthropic_error(429, "rate_limit_error", "slow down")
            .with_header("retry-after", "5"),
        |_| {},
    )
    .await;
    for judge in &judges {
        let err = judge.judge(&check_request()).await.unwrap_err();
        assert_eq!(retryable(&err).2, Some(Duration::from_secs(5)));
    }
    let (judges, _servers) = both(
        Reply::error(429, "slow down", "rate_limit", None).with_header("retry-after", "5"),
        Reply::anthropic_error(429, "rate_limit_error", "slow down")
            .with_header("retry-after", "5"),
        |c| c.max_retry_after_secs = Some(2.0),
    )
    .await;
    for judge in &judges {
        let err = judge.judge(&check_request()).await.unwrap_err();
        assert_eq!(retryable(&err).2, None, "{}", judge.name());
    }
}

fn load_error(extra: &str) -> String {
    let text = format!("name = \"j\"\nbackend = \"openai\"\nmodel = \"m\"\n{extra}\n");
    JudgeConfig::from_toml_str(&text, "judges/j.toml")
        .map(|_| String::new())
        .unwrap_or_else(|e| e.to_string())
}

#[test]
fn hostile_durations_and_rates_are_refused_at_load_time() {
    for (extra, field) in [
        ("timeout_secs = 1e20", "timeout_secs"),
        ("timeout_secs = 86401", "timeout_secs"),
        ("rpm = 1e-30", "rpm"),
        ("tpm = 1e-30", "tpm"),
        ("max_retry_after_secs = 1e20", "max_retry_after_secs"),
        ("max_retry_after_secs = -1", "max_retry_after_secs"),
        ("max_retry_after_secs = nan", "max_retry_after_secs"),
        ("max_response_bytes = 0", "max_response_bytes"),
    ] {
        let err = load_error(extra);
        assert!(err.contains(field), "{extra}: {err:?}");
        assert!(err.contains("judges/j.toml"), "{extra}: {err:?}");
    }
    for fine in [
        "timeout_secs = 86400",
        "rpm = 0.5",
        "tpm = 1",
        "max_retry_after_secs = 0",
        "max_response_bytes = 1",
    ] {
        assert_eq!(load_error(fine), "", "{fine}");
    }
    // A configuration built in code is checked when the judge is built, and never panics.
    let mut c = openai("http://127.0.0.1:9");
    c.timeout_secs = 1e20;
    let err = OpenAiJudge::with_env(&c, key_env).unwrap_err().to_string();
    assert!(err.contains("timeout_secs"), "{err}");
}

// ---- item 11: response bodies are capped ----

#[tokio::test]
async fn an_oversize_body_is_a_malformed_response() {
    let big = "y".repeat(4096);
    let (judges, _servers) = both(
        Reply::json(chat_completion(&big)),
        Reply::json(anthropic_message(&big)),
        |c| c.max_response_bytes = Some(1024),
    )
    .await;
    for judge in &judges {
        let err = judge.judge(&check_request()).await.unwrap_err();
        let (kind, message, _) = retryable(&err);
        assert_eq!(kind, FaultKind::MalformedResponse, "{message}");
        assert!(message.contains("max_response_bytes"), "{message}");
    }
}

/// A server that streams a chunked 200 body forever: a reader that waited for the whole body
/// would never return (the timeout is an hour). Returns the base URL and a counter of bytes
/// the server managed to write.
async fn endless_server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::Ordering;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let w = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let w = w.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                // Read the request head and body (small) before answering.
                let _ = socket.read(&mut buf).await;
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                            transfer-encoding: chunked\r\n\r\n";
                if socket.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = format!("{:x}\r\n{}\r\n", 16384, "z".repeat(16384));
                while socket.write_all(chunk.as_bytes()).await.is_ok() {
                    w.fetch_add(16384, Ordering::SeqCst);
                }
            });
        }
    });
    (format!("http://{addr}/v1"), written)
}

#[tokio::test]
async fn an_endless_body_is_refused_without_reading_it_whole() {
    let (base_url, _written) = endless_server().await;
    let mut c = openai(&base_url);
    c.timeout_secs = 3600.0;
    c.max_response_bytes = Some(100_000);
    let judge = OpenAiJudge::with_env(&c, key_env).unwrap();
    let err = judge.judge(&check_request()).await.unwrap_err();
    let (kind, message, _) = retryable(&err);
    assert_eq!(kind, FaultKind::MalformedResponse, "{message}");
    assert!(message.contains("100000 bytes"), "{message}");
}

#[tokio::test]
async fn a_program_printing_without_end_is_cut_off_as_a_malformed_response() {
    let mut c = JudgeConfig::new("endless", Backend::Command);
    // `yes` never stops on its own; closing its pipe ends it.
    c.command = Some(vec!["yes".into(), "Output (a)".into()]);
    c.timeout_secs = 600.0;
    c.max_response_bytes = Some(10_000);
    let judge = CommandJudge::new(&c).unwrap();
    let err = judge.judge(&check_request()).await.unwrap_err();
    let (kind, message, _) = retryable(&err);
    assert_eq!(kind, FaultKind::MalformedResponse, "{message}");
    assert!(message.contains("max_response_bytes"), "{message}");
}

#[tokio::test]
async fn a_key_printed_by_a_program_is_redacted() {
    let mut c = JudgeConfig::new("leaky", Backend::Command);
    c.api_key_env = Some("HOSTILE_TEST_KEY".into());
    c.command = Some(vec![
        "sh".into(),
        "-c".into(),
        format!("cat > /dev/null; echo '{{\"verdict\": \"second\", \"raw\": \"key {KEY}\"}}'"),
    ]);
    let judge = judge_audit::judge::templated::TemplatedJudge::<
        judge_audit::judge::command::CommandTransport,
    >::with_env(&c, key_env)
    .unwrap();
    let reply = judge.judge(&check_request()).await.unwrap();
    assert_eq!(reply.raw, "key <redacted>");
    assert!(reply.redacted);
    assert_eq!(reply.verdict, SlotVerdict::Second);
}
