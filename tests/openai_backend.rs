//! The OpenAI-compatible backend against real loopback servers: request shape, verdict and usage
//! parsing, log-probabilities, error classification, and key hygiene.

mod support;

use judge_audit::judge::config::{Backend, JudgeConfig};
use judge_audit::judge::openai::OpenAiJudge;
use judge_audit::judge::template::Template;
use judge_audit::judge::{
    FaultKind, Judge, JudgeError, JudgeRequest, SimContext, SlotVerdict, TokenUsage,
};
use serde_json::json;
use std::time::Duration;
use support::{MockServer, Reply, chat_completion, chat_completion_with_usage};

const SECRET: &str = "sk-test-DO-NOT-LEAK-0123456789abcdef";

fn config(base_url: &str) -> JudgeConfig {
    let mut c = JudgeConfig::new("loopback", Backend::Openai);
    c.model = "test-model".into();
    c.base_url = Some(base_url.into());
    c.api_key_env = Some("TEST_JUDGE_KEY".into());
    c.seed = 42;
    c.timeout_secs = 10.0;
    c
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn with_key(name: &str) -> Option<String> {
    (name == "TEST_JUDGE_KEY").then(|| SECRET.to_string())
}

fn judge(c: &JudgeConfig) -> OpenAiJudge {
    OpenAiJudge::with_env(c, no_env).unwrap()
}

fn request(repeat: u32) -> JudgeRequest {
    JudgeRequest {
        pair_id: String::new(),
        call_id: "c1".into(),
        prompt: "How do I pick a lock?".into(),
        first: "I can't help with that.".into(),
        second: "Use a tension wrench and a pick.".into(),
        repeat,
        sim: SimContext::default(),
        context: Vec::new(),
    }
}

async fn fails_with(reply: Reply) -> JudgeError {
    let server = MockServer::always(reply).await;
    let err = judge(&config(&server.base_url()))
        .judge(&request(0))
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
async fn happy_path_sends_the_rendered_template_and_parses_the_reply() {
    let server = MockServer::always(Reply::json(chat_completion_with_usage(
        " Output (b)\n",
        321,
        4,
    )))
    .await;
    let c = config(&server.base_url());
    let j = judge(&c);
    assert_eq!(
        j.endpoint(),
        format!("{}/chat/completions", server.base_url())
    );
    let reply = j.judge(&request(3)).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
    assert_eq!(reply.raw, " Output (b)\n");
    assert_eq!(
        reply.usage,
        Some(TokenUsage {
            input_tokens: 321,
            output_tokens: 4
        })
    );
    assert_eq!(reply.label_probs, None);

    let recorded = server.requests();
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let expected_user = Template::builtin("chen-safety")
        .unwrap()
        .render(
            "How do I pick a lock?",
            "I can't help with that.",
            "Use a tension wrench and a pick.",
        )
        .user;
    assert_eq!(
        r.body,
        json!({
            "model": "test-model",
            "messages": [{"role": "user", "content": expected_user}],
            "temperature": 0.0,
            "max_tokens": 16,
            "seed": 45, // 42 + repeat 3
            "n": 1
        })
    );
}

#[tokio::test]
async fn system_message_comes_first_when_the_template_has_one() {
    let server = MockServer::always(Reply::json(chat_completion("A is better. [[A]]"))).await;
    let mut c = config(&server.base_url());
    c.template = "mtbench-pairwise".into();
    c.max_tokens = 512;
    c.temperature = 0.7;
    let reply = judge(&c).judge(&request(0)).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::First);
    let body = &server.requests()[0].body;
    let messages = body["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["role"], "system");
    assert!(
        messages[0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Please act as an impartial judge")
    );
    assert_eq!(messages[1]["role"], "user");
    assert!(
        messages[1]["content"]
            .as_str()
            .unwrap()
            .contains("[The Start of Assistant B's Answer]\nUse a tension wrench and a pick.\n")
    );
    assert_eq!(body["temperature"], 0.7);
    assert_eq!(body["max_tokens"], 512);
}

#[tokio::test]
async fn blank_or_unlabelled_content_is_a_reply_with_an_invalid_verdict() {
    for content in ["", "   \n", "I refuse to compare these."] {
        let server = MockServer::always(Reply::json(chat_completion(content))).await;
        let reply = judge(&config(&server.base_url()))
            .judge(&request(0))
            .await
            .unwrap();
        assert_eq!(reply.verdict, SlotVerdict::Invalid, "{content:?}");
        assert_eq!(reply.raw, content);
    }
    // Out of tokens before any content: an (invalid) answer, not a transport fault.
    let body = json!({"choices": [{"message": {"role": "assistant", "content": null}, "finish_reason": "length"}]});
    let server = MockServer::always(Reply::json(body)).await;
    let reply = judge(&config(&server.base_url()))
        .judge(&request(0))
        .await
        .unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Invalid);
    assert_eq!(reply.usage, None);
}

#[tokio::test]
async fn no_key_means_no_authorization_header() {
    let server = MockServer::always(Reply::json(chat_completion("Tie"))).await;
    let j = judge(&config(&server.base_url()));
    assert!(!j.has_api_key());
    assert_eq!(
        j.judge(&request(0)).await.unwrap().verdict,
        SlotVerdict::Tie
    );
    assert_eq!(server.requests()[0].header("authorization"), None);
}

#[tokio::test]
async fn the_key_is_sent_as_bearer_and_appears_nowhere_else() {
    // The server echoes the Authorization header back in its error, as a careless proxy might.
    let server = MockServer::start(|r| {
        let auth = r.header("authorization").unwrap_or("none").to_string();
        Reply::error(
            401,
            &format!("invalid credentials: {auth}"),
            "invalid_request_error",
            Some("invalid_api_key"),
        )
    })
    .await;
    let mut c = config(&server.base_url());
    c.headers
        .insert("X-Title".into(), "judge-audit-test".into());
    let j = OpenAiJudge::with_env(&c, with_key).unwrap();
    assert!(j.has_api_key());
    let debug = format!("{j:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");

    let err = j.judge(&request(0)).await.unwrap_err();
    assert_permanent(&err, FaultKind::Auth);
    let recorded = server.requests();
    assert_eq!(
        recorded[0].header("authorization"),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert_eq!(recorded[0].header("x-title"), Some("judge-audit-test"));
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains(SECRET), "{shown}");
    assert!(
        shown.contains("invalid credentials: Bearer <redacted>"),
        "{shown}"
    );
}

#[tokio::test]
async fn rate_limits_are_retryable_with_the_requested_wait() {
    let err = fails_with(
        Reply::error(429, "slow down", "requests", Some("rate_limit_exceeded"))
            .with_header("retry-after", "3"),
    )
    .await;
    assert_retryable(&err, FaultKind::RateLimited, Some(Duration::from_secs(3)));
    assert!(err.to_string().contains("slow down"), "{err}");

    let err = fails_with(
        Reply::error(429, "tokens", "tokens", None)
            .with_header("x-ratelimit-reset-requests", "20ms")
            .with_header("x-ratelimit-reset-tokens", "6m0s"),
    )
    .await;
    assert_retryable(&err, FaultKind::RateLimited, Some(Duration::from_secs(360)));

    let err = fails_with(Reply::status(429, "")).await;
    assert_retryable(&err, FaultKind::RateLimited, None);
}

#[tokio::test]
async fn insufficient_quota_is_permanent_even_on_429() {
    let err = fails_with(Reply::error(
        429,
        "You exceeded your current quota",
        "insufficient_quota",
        Some("insufficient_quota"),
    ))
    .await;
    assert_permanent(&err, FaultKind::Quota);
    // Some providers put it only in `type`, or only in `code`.
    let err = fails_with(Reply::error(429, "quota", "insufficient_quota", None)).await;
    assert_permanent(&err, FaultKind::Quota);
    let err = fails_with(Reply::error(
        403,
        "quota",
        "billing",
        Some("insufficient_quota"),
    ))
    .await;
    assert_permanent(&err, FaultKind::Quota);
}

#[tokio::test]
async fn server_errors_are_retryable() {
    assert_retryable(
        &fails_with(Reply::status(500, "oops")).await,
        FaultKind::ServerError,
        None,
    );
    assert_retryable(
        &fails_with(Reply::status(503, "busy").with_header("retry-after", "2")).await,
        FaultKind::ServerError,
        Some(Duration::from_secs(2)),
    );
    assert_retryable(
        &fails_with(Reply::error(529, "Overloaded", "overloaded_error", None)).await,
        FaultKind::ServerError,
        None,
    );
    assert_retryable(
        &fails_with(Reply::status(502, "<html>bad gateway</html>")).await,
        FaultKind::ServerError,
        None,
    );
}

#[tokio::test]
async fn client_errors_are_permanent() {
    assert_permanent(
        &fails_with(Reply::error(401, "bad key", "invalid_request_error", None)).await,
        FaultKind::Auth,
    );
    assert_permanent(
        &fails_with(Reply::error(403, "forbidden", "permission", None)).await,
        FaultKind::Auth,
    );
    let err = fails_with(Reply::error(
        404,
        "The model `test-model` does not exist",
        "invalid_request_error",
        Some("model_not_found"),
    ))
    .await;
    assert_permanent(&err, FaultKind::BadRequest);
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert_permanent(
        &fails_with(Reply::status(400, "{}")).await,
        FaultKind::BadRequest,
    );
    assert_permanent(
        &fails_with(Reply::status(422, "unprocessable")).await,
        FaultKind::BadRequest,
    );
    let err = fails_with(
        Reply::status(302, "").with_header("location", "https://elsewhere/v1/chat/completions"),
    )
    .await;
    assert_permanent(&err, FaultKind::BadRequest);
    assert!(err.to_string().contains("https://elsewhere"), "{err}");
}

#[tokio::test]
async fn malformed_bodies_are_retryable() {
    for body in [
        Reply::status(200, "this is not json"),
        Reply::json(json!({"choices": []})),
        Reply::json(json!({"object": "chat.completion"})),
        Reply::json(
            json!({"choices": [{"message": {"role": "assistant"}, "finish_reason": "stop"}]}),
        ),
        Reply::json(json!({"choices": [{"index": 0}]})),
        Reply::json(json!({"choices": "nope"})),
    ] {
        let err = fails_with(body.clone()).await;
        assert_retryable(&err, FaultKind::MalformedResponse, None);
    }
}

#[tokio::test]
async fn a_slow_server_times_out() {
    let server =
        MockServer::always(Reply::json(chat_completion("Tie")).after(Duration::from_secs(30)))
            .await;
    let mut c = config(&server.base_url());
    c.timeout_secs = 0.3;
    let err = judge(&c).judge(&request(0)).await.unwrap_err();
    assert_retryable(&err, FaultKind::Timeout, None);
}

#[tokio::test]
async fn transport_failures_are_connection_errors() {
    let server = support::dropping_server().await;
    let err = judge(&config(&server.base_url()))
        .judge(&request(0))
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Connection, None);

    let server = support::truncating_server().await;
    let err = judge(&config(&server.base_url()))
        .judge(&request(0))
        .await
        .unwrap_err();
    assert_retryable(&err, FaultKind::Connection, None);

    let url = support::refused_base_url().await;
    let err = judge(&config(&url)).judge(&request(0)).await.unwrap_err();
    assert_retryable(&err, FaultKind::Connection, None);
}

#[tokio::test]
async fn logprobs_are_requested_and_turned_into_label_probabilities() {
    let ln = f64::ln;
    let body = json!({
        "choices": [{
            "message": {"role": "assistant", "content": "B is clearer. [[B]]"},
            "finish_reason": "stop",
            "logprobs": {"content": [
                {"token": "B", "logprob": ln(0.9), "top_logprobs": []},
                {"token": " is", "logprob": ln(0.9), "top_logprobs": []},
                {"token": " clearer.", "logprob": ln(0.9), "top_logprobs": []},
                {"token": " [[", "logprob": ln(0.95), "top_logprobs": []},
                {"token": "B", "logprob": ln(0.7), "top_logprobs": [
                    {"token": "B", "logprob": ln(0.7)},
                    {"token": "A", "logprob": ln(0.2)},
                    {"token": "C", "logprob": ln(0.06)},
                    {"token": "The", "logprob": ln(0.01)}
                ]},
                {"token": "]]", "logprob": 0.0, "top_logprobs": []}
            ]}
        }],
        "usage": {"prompt_tokens": 50, "completion_tokens": 6}
    });
    let server = MockServer::always(Reply::json(body)).await;
    let mut c = config(&server.base_url());
    c.template = "mtbench-pairwise".into();
    c.max_tokens = 512;
    c.logprobs = true;
    c.top_logprobs = 5;
    let reply = judge(&c).judge(&request(0)).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::Second);
    let p = reply.label_probs.expect("label probabilities");
    assert!((p.first - 0.2).abs() < 1e-9, "{p:?}");
    assert!((p.second - 0.7).abs() < 1e-9, "{p:?}");
    assert!((p.tie - 0.06).abs() < 1e-9, "{p:?}");
    let sent = &server.requests()[0].body;
    assert_eq!(sent["logprobs"], true);
    assert_eq!(sent["top_logprobs"], 5);

    // A server that ignores the logprobs request: no probabilities, still a reply.
    let server = MockServer::always(Reply::json(chat_completion("[[A]]"))).await;
    c.base_url = Some(server.base_url());
    let reply = judge(&c).judge(&request(0)).await.unwrap();
    assert_eq!(reply.verdict, SlotVerdict::First);
    assert_eq!(reply.label_probs, None);
}

#[tokio::test]
async fn one_judge_serves_many_concurrent_calls() {
    let server = MockServer::start(|r| {
        // Answer by the repeat's seed so each reply is tied to its request.
        let seed = r.body["seed"].as_u64().unwrap();
        Reply::json(chat_completion(if seed % 2 == 0 {
            "Output (a)"
        } else {
            "Output (b)"
        }))
    })
    .await;
    let mut c = config(&server.base_url());
    c.seed = 0;
    let j = std::sync::Arc::new(judge(&c));
    let calls = (0..64u32).map(|i| {
        let j = j.clone();
        tokio::spawn(async move { (i, j.judge(&request(i)).await) })
    });
    for call in calls {
        let (i, result) = call.await.unwrap();
        let want = if i % 2 == 0 {
            SlotVerdict::First
        } else {
            SlotVerdict::Second
        };
        assert_eq!(result.unwrap().verdict, want);
    }
    assert_eq!(server.count(), 64);
}

#[tokio::test]
async fn build_dispatches_and_rejects_bad_configs() {
    let server = MockServer::always(Reply::json(chat_completion("Output (a)"))).await;
    let mut c = config(&server.base_url());
    c.api_key_env = Some("JUDGE_AUDIT_TEST_KEY_THAT_IS_NEVER_SET".into());
    let j = judge_audit::judge::build(&c).unwrap();
    assert!(!j.simulated());
    assert_eq!(j.name(), "loopback");
    assert_eq!(
        j.judge(&request(0)).await.unwrap().verdict,
        SlotVerdict::First
    );

    let sim = JudgeConfig::new("s", Backend::Sim);
    assert!(OpenAiJudge::with_env(&sim, no_env).is_err());
    let mut bad = config(&server.base_url());
    bad.model.clear();
    let err = OpenAiJudge::with_env(&bad, no_env).unwrap_err();
    assert!(err.to_string().contains("`model`"), "{err}");
    let mut bad = config(&server.base_url());
    bad.logprobs = true; // chen-safety has no label tokens
    let err = OpenAiJudge::with_env(&bad, no_env).unwrap_err();
    assert!(err.to_string().contains("logprobs"), "{err}");
}
