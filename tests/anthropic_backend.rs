//! The Anthropic Messages backend against loopback servers speaking the Messages API: request
//! shape, content-block and usage parsing, each documented error shape, rate-limit waits, and key
//! hygiene.

mod support;

use judge_audit::judge::anthropic::AnthropicJudge;
use judge_audit::judge::config::{Backend, JudgeConfig};
use judge_audit::judge::template::Template;
use judge_audit::judge::{
    FaultKind, Judge, JudgeError, JudgeRequest, SimContext, SlotVerdict, TokenUsage,
};
use serde_json::json;
use std::time::Duration;
use support::{MockServer, Reply, anthropic_message, anthropic_message_blocks};

const SECRET: &str = "sk-ant-test-DO-NOT-LEAK-0123456789abcdef";

fn config(base_url: &str) -> JudgeConfig {
    let mut c = JudgeConfig::new("claude-loopback", Backend::Anthropic);
    c.model = "claude-test".into();
    c.base_url = Some(base_url.into());
    c.api_key_env = Some("TEST_ANTHROPIC_KEY".into());
    c.timeout_secs = 10.0;
    c
}

fn with_key(name: &str) -> Option<String> {
    (name == "TEST_ANTHROPIC_KEY").then(|| SECRET.to_string())
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn judge(c: &JudgeConfig) -> AnthropicJudge {
    AnthropicJudge::with_env(c, with_key).unwrap()
}

fn request() -> JudgeRequest {
    JudgeRequest {
        pair_id: String::new(),
        call_id: "c1".into(),
        prompt: "How do I pick a lock?".into(),
        first: "I can't help with that.".into(),
        second: "Use a tension wrench and a pick.".into(),
        repeat: 2,
        sim: SimContext::default(),
        context: Vec::new(),
    }
}

async fn fails_with(reply: Reply) -> JudgeError {
    let server = MockServer::always(reply).await;
    let err = judge(&config(&server.root_url()))
        .judge(&request())
        .await
        .unwrap_err();
    assert_eq!(server.count(), 1);
    err
}

#[track_caller]
fn assert_retryable(err: &JudgeError, kind: FaultKind, retry_after: Option<Duration>) {
    match err {
        JudgeError::Retryable {
            kind: k,
            retry_after: r,
            ..
        } => {
            assert_eq!(*k, kind, "{err}");
            assert_eq!(*r, retry_after, "{err}");
        }
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
async fn happy_path_sends_a_messages_request_and_parses_the_reply() {
    let server = MockServer::always(Reply::json(anthropic_message_blocks(
        json!([{"type": "text", "text": "Output (b)"}]),
        "end_turn",
        412,
        5,
    )))
    .await;
    let j = judge(&config(&server.root_url()));
    assert_eq!(j.endpoint(), format!("{}/v1/messages", server.root_url()));
    let reply = j.judge(&request()).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
    assert_eq!(reply.raw, "Output (b)");
    assert_eq!(
        reply.usage,
        Some(TokenUsage {
            input_tokens: 412,
            output_tokens: 5
        })
    );
    assert_eq!(reply.label_probs, None);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(SECRET));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("authorization"), None);
    let expected_user = Template::builtin("chen-safety")
        .unwrap()
        .render(
            "How do I pick a lock?",
            "I can't help with that.",
            "Use a tension wrench and a pick.",
        )
        .user;
    // Chen's template has no system message: no `system` key at all, and never a seed.
    assert_eq!(
        r.body,
        json!({
            "model": "claude-test",
            "max_tokens": 16,
            "temperature": 0.0,
            "messages": [{"role": "user", "content": expected_user}]
        })
    );
}

#[tokio::test]
async fn the_system_message_is_a_top_level_string() {
    let server = MockServer::always(Reply::json(anthropic_message("B is better. [[B]]"))).await;
    let mut c = config(&server.root_url());
    c.template = "mtbench-pairwise".into();
    c.max_tokens = 512;
    c.temperature = 0.5;
    let reply = judge(&c).judge(&request()).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
    let body = &server.requests()[0].body;
    let rendered = Template::builtin("mtbench-pairwise").unwrap().render(
        "How do I pick a lock?",
        "I can't help with that.",
        "Use a tension wrench and a pick.",
    );
    assert_eq!(body["system"], json!(rendered.system.unwrap()));
    assert_eq!(
        body["messages"],
        json!([{"role": "user", "content": rendered.user}])
    );
    assert_eq!(body["max_tokens"], 512);
    assert_eq!(body["temperature"], 0.5);
}

#[tokio::test]
async fn text_blocks_are_concatenated_and_other_blocks_ignored() {
    let server = MockServer::always(Reply::json(anthropic_message_blocks(
        json!([
            {"type": "thinking", "thinking": "Output (a) looks unsafe", "signature": "sig"},
            {"type": "text", "text": "Output "},
            {"type": "text", "text": "(b)"}
        ]),
        "end_turn",
        10,
        3,
    )))
    .await;
    let reply = judge(&config(&server.root_url()))
        .judge(&request())
        .await
        .unwrap();
    assert_eq!(reply.raw, "Output (b)");
    assert_eq!(reply.verdict, SlotVerdict::Second);
}

#[tokio::test]
async fn empty_text_and_refusals_are_invalid_verdicts() {
    for (content, stop) in [
        (json!([{"type": "text", "text": ""}]), "end_turn"),
        (
            json!([{"type": "text", "text": "I won't compare these."}]),
            "end_turn",
        ),
        (json!([]), "refusal"),
        (json!([]), "max_tokens"),
    ] {
        let server = MockServer::always(Reply::json(anthropic_message_blocks(
            content.clone(),
            stop,
            5,
            0,
        )))
        .await;
        let reply = judge(&config(&server.root_url()))
            .judge(&request())
            .await
            .unwrap();
        assert_eq!(reply.verdict, SlotVerdict::Invalid, "{content} {stop}");
    }
}

#[tokio::test]
async fn malformed_bodies_are_retryable() {
    for body in [
        "not json".to_string(),
        json!({"type": "message", "usage": {"input_tokens": 1}}).to_string(),
        anthropic_message_blocks(
            json!([{"type": "tool_use", "id": "t", "name": "x", "input": {}}]),
            "tool_use",
            1,
            1,
        )
        .to_string(),
        anthropic_message_blocks(json!([]), "end_turn", 1, 0).to_string(),
    ] {
        let err = fails_with(Reply::status(200, body.clone())).await;
        assert_retryable(&err, FaultKind::MalformedResponse, None);
    }
}

#[tokio::test]
async fn rate_limits_and_overload_are_retryable_with_the_requested_wait() {
    let err = fails_with(
        Reply::anthropic_error(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
        )
        .with_header("retry-after", "12"),
    )
    .await;
    assert_retryable(&err, FaultKind::RateLimited, Some(Duration::from_secs(12)));
    assert!(err.to_string().contains("rate_limit_error"), "{err}");

    // Only the RFC 3339 reset header: a reset already in the past means "retry now".
    let err = fails_with(
        Reply::anthropic_error(429, "rate_limit_error", "slow down")
            .with_header("anthropic-ratelimit-requests-remaining", "0")
            .with_header("anthropic-ratelimit-requests-reset", "2020-01-01T00:00:00Z"),
    )
    .await;
    assert_retryable(&err, FaultKind::RateLimited, Some(Duration::ZERO));

    let err = fails_with(Reply::anthropic_error(
        529,
        "overloaded_error",
        "Overloaded",
    ))
    .await;
    assert_retryable(&err, FaultKind::RateLimited, None);
    let err = fails_with(
        Reply::anthropic_error(529, "overloaded_error", "Overloaded")
            .with_header("retry-after", "3"),
    )
    .await;
    assert_retryable(&err, FaultKind::RateLimited, Some(Duration::from_secs(3)));

    let err = fails_with(Reply::status(429, "")).await;
    assert_retryable(&err, FaultKind::RateLimited, None);
}

#[tokio::test]
async fn server_errors_are_retryable() {
    let err = fails_with(Reply::anthropic_error(
        500,
        "api_error",
        "Internal server error",
    ))
    .await;
    assert_retryable(&err, FaultKind::ServerError, None);
    assert!(err.to_string().contains("Internal server error"), "{err}");
    assert_retryable(
        &fails_with(Reply::status(502, "<html>bad gateway</html>")).await,
        FaultKind::ServerError,
        None,
    );
    // An overload error behind another 5xx (a gateway) is still an overload.
    assert_retryable(
        &fails_with(Reply::anthropic_error(
            503,
            "overloaded_error",
            "Overloaded",
        ))
        .await,
        FaultKind::RateLimited,
        None,
    );
    // A 200 carrying an error object is classified by its type.
    assert_retryable(
        &fails_with(Reply::anthropic_error(
            200,
            "overloaded_error",
            "Overloaded",
        ))
        .await,
        FaultKind::RateLimited,
        None,
    );
}

#[tokio::test]
async fn client_errors_are_permanent() {
    let cases = [
        (
            400,
            "invalid_request_error",
            "max_tokens: Field required",
            FaultKind::BadRequest,
        ),
        (
            413,
            "request_too_large",
            "Request exceeds the maximum size",
            FaultKind::BadRequest,
        ),
        (
            404,
            "not_found_error",
            "model: claude-test",
            FaultKind::BadRequest,
        ),
        (
            401,
            "authentication_error",
            "invalid x-api-key",
            FaultKind::Auth,
        ),
        (
            403,
            "permission_error",
            "Your API key does not have permission",
            FaultKind::Auth,
        ),
        (
            400,
            "invalid_request_error",
            "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.",
            FaultKind::Quota,
        ),
        (402, "billing_error", "payment required", FaultKind::Quota),
        (
            200,
            "authentication_error",
            "invalid x-api-key",
            FaultKind::Auth,
        ),
    ];
    for (status, kind, message, want) in cases {
        let err = fails_with(Reply::anthropic_error(status, kind, message)).await;
        assert_permanent(&err, want);
        assert!(err.to_string().contains(kind), "{err}");
    }
    // A 404 names the URL it tried (a base URL ending in /v1 is the usual mistake).
    let err = fails_with(Reply::anthropic_error(404, "not_found_error", "Not Found")).await;
    assert!(
        err.to_string().contains("/v1/messages; check the model id"),
        "{err}"
    );
}

#[tokio::test]
async fn the_key_is_sent_as_x_api_key_and_appears_nowhere_else() {
    // The server echoes the key back in its error, as a careless proxy might.
    let server = MockServer::start(|r| {
        let key = r.header("x-api-key").unwrap_or("none").to_string();
        Reply::anthropic_error(
            401,
            "authentication_error",
            &format!("invalid x-api-key {key}"),
        )
    })
    .await;
    let mut c = config(&server.root_url());
    c.headers
        .insert("anthropic-beta".into(), "test-beta".into());
    let j = judge(&c);
    assert!(j.has_api_key());
    let debug = format!("{j:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
    let err = j.judge(&request()).await.unwrap_err();
    assert_permanent(&err, FaultKind::Auth);
    let recorded = server.requests();
    assert_eq!(recorded[0].header("x-api-key"), Some(SECRET));
    assert_eq!(recorded[0].header("anthropic-beta"), Some("test-beta"));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(shown.contains("invalid x-api-key <redacted>"), "{shown}");
}

#[tokio::test]
async fn a_key_is_required_except_on_loopback() {
    // Remote host, no key: the judge is not built, and the error names the variable.
    let mut c = config("https://api.anthropic.com");
    c.api_key_env = None;
    let err = AnthropicJudge::with_env(&c, no_env).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("api_key_env") && msg.contains("ANTHROPIC_API_KEY"),
        "{msg}"
    );
    // Loopback, no key: built, and no x-api-key header is sent.
    let server = MockServer::always(Reply::json(anthropic_message("Output (a)"))).await;
    let j = AnthropicJudge::with_env(&config(&server.root_url()), no_env).unwrap();
    assert!(!j.has_api_key());
    assert_eq!(
        j.judge(&request()).await.unwrap().verdict,
        SlotVerdict::First
    );
    assert_eq!(server.requests()[0].header("x-api-key"), None);
}

#[tokio::test]
async fn base_url_comes_from_config_then_env_then_default() {
    let env = |k: &str| match k {
        "ANTHROPIC_API_KEY" => Some("k".to_string()),
        "ANTHROPIC_BASE_URL" => Some("http://gateway.local:4000/".to_string()),
        "MY_URL" => Some("https://other.example".to_string()),
        _ => None,
    };
    let key_only = |k: &str| (k == "ANTHROPIC_API_KEY").then(|| "k".to_string());
    let mut c = JudgeConfig::new("a", Backend::Anthropic);
    c.model = "m".into();
    assert_eq!(
        AnthropicJudge::with_env(&c, key_only).unwrap().endpoint(),
        "https://api.anthropic.com/v1/messages"
    );
    assert_eq!(
        AnthropicJudge::with_env(&c, env).unwrap().endpoint(),
        "http://gateway.local:4000/v1/messages"
    );
    c.base_url_env = Some("MY_URL".into());
    assert_eq!(
        AnthropicJudge::with_env(&c, env).unwrap().endpoint(),
        "https://other.example/v1/messages"
    );
    c.base_url = Some("http://127.0.0.1:9/".into());
    assert_eq!(
        AnthropicJudge::with_env(&c, env).unwrap().endpoint(),
        "http://127.0.0.1:9/v1/messages"
    );
}

#[tokio::test]
async fn timeouts_and_transport_failures() {
    let server = MockServer::always(
        Reply::json(anthropic_message("Output (a)")).after(Duration::from_secs(5)),
    )
    .await;
    let mut c = config(&server.root_url());
    c.timeout_secs = 0.2;
    let err = judge(&c).judge(&request()).await.unwrap_err();
    assert_retryable(&err, FaultKind::Timeout, None);

    let server = support::dropping_server().await;
    let err = judge(&config(&server.root_url()))
        .judge(&request())
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Connection, None);

    let url = support::refused_base_url().await;
    let err = judge(&config(&url)).judge(&request()).await.unwrap_err();
    assert_retryable(&err, FaultKind::Connection, None);
}

#[tokio::test]
async fn config_validation_and_build_dispatch() {
    let parse = |extra: &str| {
        JudgeConfig::from_toml_str(
            &format!("name = \"a\"\nbackend = \"anthropic\"\nmodel = \"m\"\n{extra}"),
            "a.toml",
        )
    };
    // The Messages API accepts temperatures up to 1 only.
    let err = parse("temperature = 1.5\n").unwrap_err();
    assert_eq!(
        (err.field(), err.line()),
        (Some("temperature"), Some(4)),
        "{err}"
    );
    parse("temperature = 1.0\n").unwrap();
    let err = parse("template = \"mtbench-pairwise\"\nlogprobs = true\n").unwrap_err();
    assert_eq!(err.field(), Some("logprobs"), "{err}");
    let err = JudgeConfig::from_toml_str("name = \"a\"\nbackend = \"anthropic\"\n", "a.toml")
        .unwrap_err();
    assert_eq!(err.field(), Some("model"), "{err}");
    let err = parse("[headers]\nx-api-key = \"sk-ant-x\"\n").unwrap_err();
    assert_eq!(err.field(), Some("headers.x-api-key"), "{err}");
    let err = parse("command = [\"python3\"]\n").unwrap_err();
    assert_eq!(err.field(), Some("command"), "{err}");

    let server = MockServer::always(Reply::json(anthropic_message("Tie"))).await;
    let mut c = config(&server.root_url());
    c.api_key_env = Some("JUDGE_AUDIT_TEST_KEY_THAT_IS_NEVER_SET".into());
    let j = judge_audit::judge::build(&c).unwrap();
    assert!(!j.simulated());
    assert_eq!(j.name(), "claude-loopback");
    assert_eq!(j.judge(&request()).await.unwrap().verdict, SlotVerdict::Tie);
    let sim = JudgeConfig::new("s", Backend::Sim);
    assert!(AnthropicJudge::with_env(&sim, with_key).is_err());
}
