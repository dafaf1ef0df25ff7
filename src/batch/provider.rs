//! Provider batches: an `openai` judge's pending calls sent through the OpenAI Batch API
//! (upload the input file to `/files`, `POST /batches`, poll `GET /batches/{id}`, download the
//! output and error files) and an `anthropic` judge's through Message Batches
//! (`POST /v1/messages/batches`, poll `processing_status`, read the results), at half price and
//! outside the synchronous rate limits.
//!
//! The request bodies are the ones the synchronous backends build (the `openai` lines are the
//! ones `batch export` writes, `batch::file::input_line`; an `anthropic` request's `params` is
//! the transport's own body) and results go through `batch import`'s reader with each backend's
//! own parser, so a batch result is an ordinary call record with `via = "batch:<id>"`.
//!
//! Crash safety: a batch id is committed to the run store the moment its create call returns.
//! A batch created but not committed (killed in between) is found again: an OpenAI batch carries
//! the SHA-256 of its input in its metadata, and the next submit lists the provider's batches and
//! finds it by that hash; Anthropic batches have no metadata, so the submission hash and size are
//! stored before the create call, and the next submit adopts the newest listed batch of that size
//! the store does not know. Calls in a batch that is not collected are never sent again;
//! errored, expired and cancelled calls are pending again once their batch is collected.
//!
//! A sequential audit goes one wave per batch round ([`run_sequential`]): its waves are chosen
//! from the answers of the previous ones, so each round replays the stored records through a
//! fresh engine and submits only that wave's missing calls; the recovery above holds per wave.

use super::file::{self, input_line, pending, request_of};
use crate::audit::{self, AuditError, Prepared};
use crate::design::CallSpec;
use crate::judge::anthropic::AnthropicJudge;
use crate::judge::chat::ChatCall;
use crate::judge::config::Backend;
use crate::judge::http::{HttpBackend, Redactor};
use crate::judge::openai::OpenAiJudge;
use crate::judge::{FaultKind, Judge, TokenUsage};
use crate::run::cost_usd;
use crate::run::lock::RunLock;
use crate::run::store::{BatchJob, FaultRow, RunStore};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The OpenAI Batch API's cap on requests per input file.
pub const OPENAI_MAX_LINES: usize = 50_000;
/// 95% of the OpenAI Batch API's 200 MB input-file cap (headroom as Inspect keeps).
pub const OPENAI_MAX_BYTES: usize = 190_000_000;
/// Largest output or error file read (bytes); a bigger one is refused, not read.
pub const MAX_RESULT_BYTES: u64 = 2_000_000_000;
/// Pages of `GET /batches` read when looking for a batch created but not committed.
const MAX_LIST_PAGES: usize = 50;
/// Batches a call may ride in before it is left pending for `--batch-fallback sync` or a later
/// run (errored and expired calls would otherwise be resubmitted forever).
pub const MAX_ATTEMPTS: usize = 3;
/// Metadata keys on every batch this tool creates.
const META_PLAN: &str = "judge_audit_plan";
const META_SUBMISSION: &str = "judge_audit_submission";
/// Run metadata key holding the line limit of the run's batches.
const MAX_LINES_KEY: &str = "batch_max_lines";
/// How a call record answered by a provider batch names its route (`batch:<batch id>`).
pub const VIA_PREFIX: &str = "batch:";
/// Fraction of `[pricing]` charged for batch calls unless the judge sets `[batch_pricing]`.
pub const BATCH_PRICE_FACTOR: f64 = 0.5;

/// Limits and budget of a submission.
#[derive(Debug, Clone, Copy)]
pub struct SubmitOptions {
    /// Stop creating batches once their estimated cost (at batch prices) would exceed this.
    pub max_cost: Option<f64>,
    /// Requests per batch (1..=50,000).
    pub max_lines: usize,
    /// Bytes per input file (1..=190 MB).
    pub max_bytes: usize,
}

impl Default for SubmitOptions {
    fn default() -> Self {
        Self {
            max_cost: None,
            max_lines: OPENAI_MAX_LINES,
            max_bytes: OPENAI_MAX_BYTES,
        }
    }
}

impl SubmitOptions {
    /// Refuse limits outside the provider's.
    pub fn check(&self) -> Result<(), AuditError> {
        if !(1..=OPENAI_MAX_LINES).contains(&self.max_lines) {
            return Err(AuditError::Config(format!(
                "--batch-max-lines must be 1..={OPENAI_MAX_LINES}, not {}",
                self.max_lines
            )));
        }
        if !(1..=OPENAI_MAX_BYTES).contains(&self.max_bytes) {
            return Err(AuditError::Config(format!(
                "batch bytes must be 1..={OPENAI_MAX_BYTES}, not {}",
                self.max_bytes
            )));
        }
        if let Some(max) = self.max_cost {
            crate::run::check_max_cost(max).map_err(AuditError::Config)?;
        }
        Ok(())
    }
}

/// What a submission did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Submitted {
    /// Batches created (judge, batch id, requests).
    pub created: Vec<(String, String, usize)>,
    /// Batches found at the provider by their submission hash (created by a process that
    /// stopped before committing them) and committed now.
    pub recovered: Vec<(String, String, usize)>,
    /// Calls not submitted because the cost budget would be exceeded.
    pub over_budget: usize,
    /// Calls left pending after [`MAX_ATTEMPTS`] batches.
    pub exhausted: usize,
    /// Pending calls of judges that cannot go through a provider batch (per judge).
    pub skipped: Vec<(String, usize)>,
    /// Judges stopped by a batch that failed validation (judge, provider message).
    pub stopped: Vec<(String, String)>,
    /// Calls held back by a judge's `batch_queue_tokens` until its open batches end.
    pub deferred: usize,
}

/// What a collection did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Collected {
    /// Batches collected now (batch id, final status).
    pub finished: Vec<(String, String)>,
    /// Calls committed from them.
    pub committed: usize,
    /// Result lines that failed (their calls are pending again).
    pub failed: usize,
    /// Batches still running.
    pub open: usize,
    /// Calls of the plan still pending.
    pub pending: usize,
    /// Judges stopped by a batch that failed validation (judge, provider message).
    pub stopped: Vec<(String, String)>,
}

/// One batch as the provider describes it.
#[derive(Debug, Clone, Deserialize)]
struct RemoteBatch {
    id: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    output_file_id: Option<String>,
    #[serde(default)]
    error_file_id: Option<String>,
    #[serde(default)]
    request_counts: Option<Counts>,
    #[serde(default)]
    metadata: Option<HashMap<String, String>>,
    #[serde(default)]
    errors: Option<BatchErrors>,
}

#[derive(Debug, Clone, Deserialize)]
struct Counts {
    #[serde(default)]
    total: u64,
    #[serde(default)]
    completed: u64,
    #[serde(default)]
    failed: u64,
}

#[derive(Debug, Clone, Deserialize)]
struct BatchErrors {
    #[serde(default)]
    data: Vec<BatchErrorItem>,
}

#[derive(Debug, Clone, Deserialize)]
struct BatchErrorItem {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    line: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct Page {
    #[serde(default)]
    data: Vec<RemoteBatch>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct FileObject {
    id: String,
}

impl RemoteBatch {
    fn counts(&self) -> String {
        self.request_counts.as_ref().map_or_else(String::new, |c| {
            format!(
                "{} completed, {} failed of {}",
                c.completed, c.failed, c.total
            )
        })
    }

    /// Ended: nothing more will change.
    fn terminal(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "expired" | "cancelled" | "failed"
        )
    }

    fn validation_message(&self) -> String {
        let items: Vec<String> = self
            .errors
            .iter()
            .flat_map(|e| &e.data)
            .map(|e| {
                let line = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
                format!(
                    "{}{line}: {}",
                    e.code.as_deref().unwrap_or("error"),
                    e.message.as_deref().unwrap_or("")
                )
            })
            .collect();
        if items.is_empty() {
            "the batch failed validation (no message)".into()
        } else {
            items.join("; ")
        }
    }
}

/// A judge whose calls can go through a provider batch, built for rendering and parsing.
enum BatchJudge {
    OpenAi(Box<OpenAiJudge>),
    Anthropic(Box<AnthropicJudge>),
}

impl file::ReadAnswer for BatchJudge {
    fn read_answer(
        &self,
        body: String,
    ) -> Result<crate::judge::JudgeReply, crate::judge::JudgeError> {
        match self {
            BatchJudge::OpenAi(j) => j.read_answer(body),
            BatchJudge::Anthropic(j) => j.read_answer(body),
        }
    }

    fn redact(&self, text: &str) -> String {
        match self {
            BatchJudge::OpenAi(j) => j.redact(text),
            BatchJudge::Anthropic(j) => j.redact(text),
        }
    }
}

impl BatchJudge {
    fn provider(&self) -> &'static str {
        match self {
            BatchJudge::OpenAi(_) => "openai",
            BatchJudge::Anthropic(_) => "anthropic",
        }
    }

    fn judge(&self) -> &dyn Judge {
        match self {
            BatchJudge::OpenAi(j) => j.as_ref(),
            BatchJudge::Anthropic(j) => j.as_ref(),
        }
    }

    /// One request line of `spec`: the body the synchronous backend sends, under its custom id.
    fn line(
        &self,
        prepared: &Prepared,
        plan: &str,
        spec: &CallSpec,
    ) -> Result<Vec<u8>, AuditError> {
        let value = match self {
            BatchJudge::OpenAi(j) => input_line(prepared, j, plan, spec)?,
            BatchJudge::Anthropic(j) => {
                let request = request_of(prepared, spec)?;
                let (messages, params) = j.call_parts(&request);
                let body = j
                    .transport()
                    .body(&ChatCall::new(&request, &messages, &params));
                let params: serde_json::Value =
                    serde_json::from_slice(&body).expect("bodies are JSON");
                serde_json::json!({"custom_id": file::custom_id(plan, &spec.id), "params": params})
            }
        };
        Ok(serde_json::to_vec(&value).expect("lines serialize"))
    }

    fn api(&self, name: &str) -> Api<'_> {
        match self {
            BatchJudge::OpenAi(j) => Api::OpenAi(OpenAiBatches::new(j, name)),
            BatchJudge::Anthropic(j) => {
                let http = j.transport().http();
                Api::Anthropic(AnthropicBatches {
                    base: http.base_url().trim_end_matches('/').to_string(),
                    client: http.client(),
                    redactor: http.redactor(),
                    judge: name.to_string(),
                })
            }
        }
    }
}

/// The `openai` and `anthropic` judges of a run.
fn batch_judges(prepared: &Prepared) -> Result<HashMap<String, BatchJudge>, AuditError> {
    let mut judges = HashMap::new();
    for handle in &prepared.judges {
        if matches!(handle.config.backend, Backend::Openai | Backend::Anthropic) {
            super::file::refuse_mitigated(&handle.config)?;
        }
        let judge = match handle.config.backend {
            Backend::Openai => BatchJudge::OpenAi(Box::new(OpenAiJudge::new(&handle.config)?)),
            Backend::Anthropic => {
                BatchJudge::Anthropic(Box::new(AnthropicJudge::new(&handle.config)?))
            }
            _ => continue,
        };
        judges.insert(handle.config.name.clone(), judge);
    }
    Ok(judges)
}

/// A batch as either provider describes it, reduced to what the run needs.
#[derive(Debug, Clone, Default)]
struct Remote {
    id: String,
    status: String,
    terminal: bool,
    counts: String,
    /// Requests in the batch, as the provider counts them.
    total: u64,
    /// The validation message of a batch that failed as a whole.
    failed: Option<String>,
    /// OpenAI: the submission hash from the metadata.
    submission: Option<String>,
    /// OpenAI: the output and error files.
    files: Vec<(String, &'static str)>,
}

impl From<RemoteBatch> for Remote {
    fn from(b: RemoteBatch) -> Remote {
        Remote {
            counts: b.counts(),
            terminal: b.terminal(),
            failed: (b.status == "failed").then(|| b.validation_message()),
            total: b.request_counts.as_ref().map_or(0, |c| c.total),
            submission: b
                .metadata
                .as_ref()
                .and_then(|m| m.get(META_SUBMISSION))
                .cloned(),
            files: [(b.output_file_id, "output"), (b.error_file_id, "error")]
                .into_iter()
                .filter_map(|(id, kind)| id.map(|id| (id, kind)))
                .collect(),
            id: b.id,
            status: b.status,
        }
    }
}

/// A Message Batch as Anthropic describes it.
#[derive(Debug, Clone, Deserialize)]
struct MessageBatch {
    id: String,
    #[serde(default)]
    processing_status: String,
    #[serde(default)]
    request_counts: Option<MessageCounts>,
}

#[derive(Debug, Clone, Default, Deserialize)]
struct MessageCounts {
    #[serde(default)]
    processing: u64,
    #[serde(default)]
    succeeded: u64,
    #[serde(default)]
    errored: u64,
    #[serde(default)]
    canceled: u64,
    #[serde(default)]
    expired: u64,
}

impl From<MessageBatch> for Remote {
    fn from(b: MessageBatch) -> Remote {
        let c = b.request_counts.unwrap_or_default();
        Remote {
            counts: format!(
                "{} succeeded, {} errored, {} expired, {} canceled, {} processing",
                c.succeeded, c.errored, c.expired, c.canceled, c.processing
            ),
            total: c.processing + c.succeeded + c.errored + c.canceled + c.expired,
            terminal: b.processing_status == "ended",
            id: b.id,
            status: b.processing_status,
            ..Remote::default()
        }
    }
}

#[derive(Debug, Deserialize)]
struct MessagePage {
    #[serde(default)]
    data: Vec<MessageBatch>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

/// One line of a Message Batch's results.
#[derive(Debug, Deserialize)]
struct MessageResult {
    custom_id: String,
    result: MessageOutcome,
}

#[derive(Debug, Deserialize)]
struct MessageOutcome {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

/// The Message Batches endpoints of one `anthropic` judge, through its own client.
struct AnthropicBatches<'a> {
    base: String,
    client: &'a reqwest::Client,
    redactor: &'a Redactor,
    judge: String,
}

impl AnthropicBatches<'_> {
    fn reader(&self) -> OpenAiBatches<'_> {
        // The reading helpers (caps, redaction, provider messages) are the same.
        OpenAiBatches {
            base: self.base.clone(),
            client: self.client,
            redactor: self.redactor,
            judge: self.judge.clone(),
        }
    }

    async fn create(&self, requests: &[u8]) -> Result<Remote, AuditError> {
        // `requests` is the JSON lines of the chunk: joined into the request list as is.
        let mut body = Vec::with_capacity(requests.len() + 16);
        body.extend_from_slice(b"{\"requests\":[");
        for (n, line) in requests
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .enumerate()
        {
            if n > 0 {
                body.push(b',');
            }
            body.extend_from_slice(line);
        }
        body.extend_from_slice(b"]}");
        let response = self
            .client
            .post(format!("{}/v1/messages/batches", self.base))
            .body(body)
            .send()
            .await;
        let batch: MessageBatch = self.reader().json("create", response).await?;
        Ok(batch.into())
    }

    async fn retrieve(&self, id: &str) -> Result<Remote, AuditError> {
        let response = self
            .client
            .get(format!("{}/v1/messages/batches/{id}", self.base))
            .send()
            .await;
        let batch: MessageBatch = self.reader().json("retrieve", response).await?;
        Ok(batch.into())
    }

    async fn list(&self) -> Result<Vec<Remote>, AuditError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut request = self
                .client
                .get(format!("{}/v1/messages/batches", self.base))
                .query(&[("limit", "100")]);
            if let Some(after) = &after {
                request = request.query(&[("after_id", after.as_str())]);
            }
            let page: MessagePage = self.reader().json("list", request.send().await).await?;
            let last = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            found.extend(page.data.into_iter().map(Remote::from));
            match (page.has_more, last) {
                (true, Some(last)) if after.as_deref() != Some(&last) => after = Some(last),
                _ => break,
            }
        }
        Ok(found)
    }

    /// The results, rewritten as OpenAI batch output lines (a succeeded message as a 200 body,
    /// an error as the line's error) for the common reader. Expired and canceled requests get
    /// no line: their calls are pending again.
    async fn download(&self, id: &str, path: &Path) -> Result<(), AuditError> {
        // Always this URL, never the `results_url` a server names: the key rides in every
        // request's headers and must not go to another host.
        let response = self
            .client
            .get(format!("{}/v1/messages/batches/{id}/results", self.base))
            .send()
            .await;
        let judge = self.judge.clone();
        let mut n = 0usize;
        self.reader()
            .stream_lines("results", response, path, move |line| {
                n += 1;
                let result: MessageResult = serde_json::from_slice(line).map_err(|e| {
                    api_error(
                        &judge,
                        "results",
                        format!("line {n}: not a batch result ({e})"),
                    )
                })?;
                let converted = match result.result.kind.as_str() {
                    "succeeded" => serde_json::json!({
                        "custom_id": result.custom_id,
                        "response": {"status_code": 200, "body": result.result.message},
                        "error": null,
                    }),
                    "errored" => serde_json::json!({
                        "custom_id": result.custom_id,
                        "response": null,
                        "error": result.result.error.unwrap_or(serde_json::Value::Null),
                    }),
                    _ => return Ok(None),
                };
                Ok(Some(
                    serde_json::to_vec(&converted).expect("lines serialize"),
                ))
            })
            .await
    }
}

/// A judge's batch endpoints.
enum Api<'a> {
    OpenAi(OpenAiBatches<'a>),
    Anthropic(AnthropicBatches<'a>),
}

impl Api<'_> {
    async fn create(
        &self,
        jsonl: &[u8],
        plan: &str,
        submission: &str,
    ) -> Result<Remote, AuditError> {
        match self {
            Api::OpenAi(api) => {
                let file_id = api.upload(jsonl, submission).await?;
                Ok(api.create(&file_id, plan, submission).await?.into())
            }
            Api::Anthropic(api) => api.create(jsonl).await,
        }
    }

    async fn retrieve(&self, id: &str) -> Result<Remote, AuditError> {
        match self {
            Api::OpenAi(api) => Ok(api.retrieve(id).await?.into()),
            Api::Anthropic(api) => api.retrieve(id).await,
        }
    }

    async fn list(&self, plan: &str) -> Result<Vec<Remote>, AuditError> {
        match self {
            Api::OpenAi(api) => Ok(api
                .list(plan)
                .await?
                .into_iter()
                .map(Remote::from)
                .collect()),
            Api::Anthropic(api) => api.list().await,
        }
    }

    /// The result files of an ended batch, in the OpenAI output format, written into `folder`.
    async fn results(&self, remote: &Remote, folder: &Path) -> Result<Vec<PathBuf>, AuditError> {
        let stem = file_stem(&remote.id);
        let mut paths = Vec::new();
        match self {
            Api::OpenAi(api) => {
                for (file_id, kind) in &remote.files {
                    let path = folder.join(format!("{stem}.{kind}.jsonl"));
                    api.download(file_id, &path).await?;
                    paths.push(path);
                }
            }
            Api::Anthropic(api) => {
                let path = folder.join(format!("{stem}.results.jsonl"));
                api.download(&remote.id, &path).await?;
                paths.push(path);
            }
        }
        Ok(paths)
    }
}

/// The OpenAI files + batches endpoints of one judge, through its own client (the key stays in
/// its sensitive header) and redactor.
struct OpenAiBatches<'a> {
    base: String,
    client: &'a reqwest::Client,
    redactor: &'a Redactor,
    judge: String,
}

fn api_error(judge: &str, what: &str, message: impl std::fmt::Display) -> AuditError {
    AuditError::Config(format!("{judge}: batch {what}: {message}"))
}

impl<'a> OpenAiBatches<'a> {
    fn new(judge: &'a OpenAiJudge, name: &str) -> Self {
        let http = crate::judge::http::HttpBackend::http(judge.transport());
        Self {
            base: http.base_url().trim_end_matches('/').to_string(),
            client: http.client(),
            redactor: http.redactor(),
            judge: name.to_string(),
        }
    }

    /// A reply's body within `cap` bytes, secrets removed; a non-success status is an error
    /// carrying the provider's message.
    async fn read(
        &self,
        what: &str,
        response: Result<reqwest::Response, reqwest::Error>,
        cap: u64,
    ) -> Result<Vec<u8>, AuditError> {
        let mut response = response.map_err(|e| {
            api_error(
                &self.judge,
                what,
                self.redactor.redact(&crate::judge::http::error_chain(&e)).0,
            )
        })?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| api_error(&self.judge, what, self.redactor.redact(&e.to_string()).0))?
        {
            if (bytes.len() + chunk.len()) as u64 > cap {
                return Err(api_error(
                    &self.judge,
                    what,
                    format!("reply over {cap} bytes, not read"),
                ));
            }
            bytes.extend_from_slice(&chunk);
        }
        self.redactor.redact_bytes(&mut bytes);
        if !status.is_success() {
            return Err(api_error(
                &self.judge,
                what,
                format!("HTTP {status}: {}", crate::judge::http::snippet(&bytes)),
            ));
        }
        Ok(bytes)
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        response: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, AuditError> {
        // Batch objects and file objects are small; 16 MB bounds a hostile server.
        let bytes = self.read(what, response, 16 << 20).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            api_error(
                &self.judge,
                what,
                format!(
                    "unreadable reply ({e}): {}",
                    crate::judge::http::snippet(&bytes)
                ),
            )
        })
    }

    async fn upload(&self, jsonl: &[u8], submission: &str) -> Result<String, AuditError> {
        // Built by hand: one text field and one file part; the boundary cannot occur in JSONL
        // lines (it has a hash in it and no JSON string holds a raw CR LF).
        let boundary = format!("judge-audit-{}", &submission[..24]);
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n\
                 --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{submission}.jsonl\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = self
            .client
            .post(format!("{}/files", self.base))
            .header(
                reqwest::header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
            .await;
        let file: FileObject = self.json("upload", response).await?;
        Ok(file.id)
    }

    async fn create(
        &self,
        file_id: &str,
        plan: &str,
        submission: &str,
    ) -> Result<RemoteBatch, AuditError> {
        let body = serde_json::json!({
            "input_file_id": file_id,
            "endpoint": file::CHAT_URL,
            "completion_window": "24h",
            "metadata": {META_PLAN: plan, META_SUBMISSION: submission},
        });
        let response = self
            .client
            .post(format!("{}/batches", self.base))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        self.json("create", response).await
    }

    async fn retrieve(&self, id: &str) -> Result<RemoteBatch, AuditError> {
        let response = self
            .client
            .get(format!("{}/batches/{id}", self.base))
            .send()
            .await;
        self.json("retrieve", response).await
    }

    /// This plan's batches at the provider, by submission hash (first listed wins).
    async fn list(&self, plan: &str) -> Result<Vec<RemoteBatch>, AuditError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut request = self
                .client
                .get(format!("{}/batches", self.base))
                .query(&[("limit", "100")]);
            if let Some(after) = &after {
                request = request.query(&[("after", after.as_str())]);
            }
            let page: Page = self.json("list", request.send().await).await?;
            let last = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            found.extend(page.data.into_iter().filter(|b| {
                b.metadata
                    .as_ref()
                    .and_then(|m| m.get(META_PLAN))
                    .is_some_and(|p| p == plan)
            }));
            match (page.has_more, last) {
                (true, Some(last)) if after.as_deref() != Some(&last) => after = Some(last),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Stream file `id`'s content into `path` (through a temporary file, so a kill leaves no
    /// half file under the final name).
    async fn download(&self, id: &str, path: &Path) -> Result<(), AuditError> {
        let response = self
            .client
            .get(format!("{}/files/{id}/content", self.base))
            .send()
            .await;
        self.stream_lines("download", response, path, |line| Ok(Some(line.to_vec())))
            .await
    }

    /// Stream a result file into `path` one line at a time (memory: the longest line), each
    /// line with secrets removed, then through `convert` (`None` drops it); within
    /// [`MAX_RESULT_BYTES`]. Written to a temporary file and renamed, so a kill leaves no half
    /// file under the final name.
    async fn stream_lines(
        &self,
        what: &str,
        response: Result<reqwest::Response, reqwest::Error>,
        path: &Path,
        mut convert: impl FnMut(&[u8]) -> Result<Option<Vec<u8>>, AuditError>,
    ) -> Result<(), AuditError> {
        use std::io::Write;
        let transport = |e: reqwest::Error| {
            api_error(&self.judge, what, self.redactor.redact(&e.to_string()).0)
        };
        let mut response = response.map_err(transport)?;
        if !response.status().is_success() {
            return self.read(what, Ok(response), 16 << 20).await.map(drop);
        }
        let partial = path.with_extension("part");
        let io = |source| AuditError::Io {
            path: partial.clone(),
            source,
        };
        let mut out = std::io::BufWriter::new(std::fs::File::create(&partial).map_err(io)?);
        let mut emit = |line: &[u8], out: &mut std::io::BufWriter<std::fs::File>| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let mut line = line.to_vec();
            self.redactor.redact_bytes(&mut line);
            if let Some(converted) = convert(&line)? {
                out.write_all(&converted).map_err(io)?;
                out.write_all(b"\n").map_err(io)?;
            }
            Ok::<(), AuditError>(())
        };
        let (mut carry, mut total) = (Vec::new(), 0u64);
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            total += chunk.len() as u64;
            if total > MAX_RESULT_BYTES {
                return Err(api_error(
                    &self.judge,
                    what,
                    format!("file over {MAX_RESULT_BYTES} bytes, not read"),
                ));
            }
            carry.extend_from_slice(&chunk);
            let Some(last) = carry.iter().rposition(|&b| b == b'\n') else {
                continue;
            };
            for line in carry[..last].split(|&b| b == b'\n') {
                emit(line, &mut out)?;
            }
            carry.drain(..=last);
        }
        emit(&carry, &mut out)?;
        out.flush().map_err(io)?;
        drop(out);
        std::fs::rename(&partial, path).map_err(|source| AuditError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn stop_key(judge: &str) -> String {
    format!("batch_stopped:{judge}")
}

fn runtime() -> Result<tokio::runtime::Runtime, AuditError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Config(format!("cannot start the async runtime: {e}")))
}

/// A judge's batch prices: its `[batch_pricing]`, else half of its `[pricing]`.
pub fn batch_pricing(config: &crate::judge::JudgeConfig) -> Option<crate::judge::config::Pricing> {
    config.batch_pricing.or_else(|| {
        config.pricing.map(|p| crate::judge::config::Pricing {
            input_per_mtok: p.input_per_mtok * BATCH_PRICE_FACTOR,
            output_per_mtok: p.output_per_mtok * BATCH_PRICE_FACTOR,
        })
    })
}

/// True when `backend` has a provider batch route here.
pub fn batchable(backend: Backend) -> bool {
    matches!(backend, Backend::Openai | Backend::Anthropic)
}

/// Estimated tokens of `spec`: its input as the runner estimates it plus `max_tokens`.
fn estimated_tokens(prepared: &Prepared, judge: &dyn Judge, spec: &CallSpec) -> u64 {
    let max_tokens = prepared
        .judges
        .iter()
        .find(|h| h.config.name == spec.judge)
        .map_or(0, |h| u64::from(h.config.max_tokens));
    request_of(prepared, spec).map_or(0, |r| judge.estimate_input_tokens(&r)) + max_tokens
}

/// Estimated cost of `spec` at batch prices, as the runner estimates a call.
fn estimated_cost(prepared: &Prepared, judge: &dyn Judge, spec: &CallSpec) -> f64 {
    let Some(handle) = prepared.judges.iter().find(|h| h.config.name == spec.judge) else {
        return 0.0;
    };
    let Some(pricing) = batch_pricing(&handle.config) else {
        return 0.0;
    };
    let Ok(request) = request_of(prepared, spec) else {
        return 0.0;
    };
    let usage = TokenUsage {
        input_tokens: judge.estimate_input_tokens(&request),
        output_tokens: u64::from(handle.config.max_tokens),
    };
    cost_usd(&usage, &pricing)
}

/// Mark `dir` as a batch run (so `run --resume` collects instead of re-sending).
pub fn mark(dir: &Path) -> Result<(), AuditError> {
    RunStore::open(dir)?.set_meta("batch_run", "1")?;
    Ok(())
}

/// True when `dir` is a batch run (marked, or holding batches).
pub fn is_batch_run(dir: &Path) -> Result<bool, AuditError> {
    let store = RunStore::open(dir)?;
    Ok(store.meta("batch_run")?.is_some() || !store.batches()?.is_empty())
}

/// Submit the pending calls of `dir`'s `openai` and `anthropic` judges that no open batch
/// carries, in chunks, committing each batch id as soon as its create call returns.
pub fn submit(dir: &Path, options: &SubmitOptions) -> Result<Submitted, AuditError> {
    submit_where(dir, options, None)
}

/// [`submit`] restricted to the pending calls whose ids are in `only` (all pending calls when
/// `None`): a sequential audit submits one wave at a time. The chunks of a given set of calls
/// are always cut the same way, so a restarted wave finds its uncommitted batch by its hash.
fn submit_where(
    dir: &Path,
    options: &SubmitOptions,
    only: Option<&HashSet<String>>,
) -> Result<Submitted, AuditError> {
    options.check()?;
    let prepared = audit::prepare_stored(dir)?;
    let plan = file::plan_hash(dir, &prepared)?;
    let judges = batch_judges(&prepared)?;
    let _lock = RunLock::acquire(dir).map_err(crate::run::RunError::from)?;
    let mut store = RunStore::open(dir)?;
    mark(dir)?;
    // The run keeps its first submission's line limit: a restarted submit must cut the same
    // files to find a batch created but not committed by its submission hash.
    let mut options = *options;
    match store
        .meta(MAX_LINES_KEY)?
        .and_then(|v| v.parse::<usize>().ok())
    {
        Some(stored) if (1..=OPENAI_MAX_LINES).contains(&stored) => options.max_lines = stored,
        _ => store.set_meta(MAX_LINES_KEY, &options.max_lines.to_string())?,
    }
    let options = &options;
    let pending = pending(dir, &prepared)?;
    let in_flight = store.in_flight_ids()?;
    let known: HashSet<String> = store.batches()?.into_iter().map(|b| b.batch_id).collect();
    let mut spent: f64 = store.batches()?.iter().map(|b| b.estimated_cost).sum();
    let attempts = attempts(&store)?;
    let mut outcome = Submitted::default();
    let runtime = runtime()?;
    for handle in &prepared.judges {
        let name = &handle.config.name;
        let calls: Vec<&CallSpec> = pending
            .iter()
            .copied()
            .filter(|c| {
                &c.judge == name
                    && !in_flight.contains(&c.id)
                    && only.is_none_or(|ids| ids.contains(&c.id))
            })
            .collect();
        let Some(judge) = judges.get(name) else {
            if !calls.is_empty() {
                outcome.skipped.push((name.clone(), calls.len()));
            }
            continue;
        };
        if let Some(message) = store.meta(&stop_key(name))? {
            outcome.stopped.push((name.clone(), message));
            continue;
        }
        let (calls, exhausted): (Vec<&CallSpec>, Vec<&CallSpec>) = calls
            .into_iter()
            .partition(|c| attempts.get(&c.id).copied().unwrap_or(0) < MAX_ATTEMPTS);
        outcome.exhausted += exhausted.len();
        if calls.is_empty() {
            continue;
        }
        let queue_limit = handle.config.batch_queue_tokens;
        let mut queued: u64 = store
            .batches()?
            .iter()
            .filter(|b| &b.judge == name && !b.collected)
            .map(|b| b.tokens)
            .sum();
        let api = judge.api(name);
        let intent_key = intent_key(name);
        let intent = store.meta(&intent_key)?.filter(|v| !v.is_empty());
        let mut remote: Option<Vec<Remote>> = None;
        let mut deferring = false;
        for chunk in chunks(&prepared, judge, &plan, &calls, options, queue_limit)? {
            // The provider refuses a batch past the judge's enqueued-token limit: later chunks
            // wait for the open ones to end (chunks are cut to fit the limit alone).
            if deferring || queue_limit.is_some_and(|limit| queued + chunk.tokens > limit) {
                deferring = true;
                outcome.deferred += chunk.specs.len();
                continue;
            }
            let cost: f64 = chunk
                .specs
                .iter()
                .map(|s| estimated_cost(&prepared, judge.judge(), s))
                .sum();
            if let Some(max) = options.max_cost
                && spent + cost > max
            {
                outcome.over_budget += chunk.specs.len();
                continue;
            }
            let submission = sha256_hex(&chunk.jsonl);
            let unknown = |b: &&Remote| !known.contains(&b.id);
            let found = match judge {
                BatchJudge::OpenAi(_) => {
                    // Listed once per judge, only when something is to be created.
                    if remote.is_none() {
                        remote = Some(runtime.block_on(api.list(&plan))?);
                    }
                    remote
                        .iter()
                        .flatten()
                        .filter(unknown)
                        .find(|b| b.submission.as_deref() == Some(&submission))
                        .cloned()
                }
                // No metadata at Anthropic: a stored intent for this very submission means a
                // create call may have gone through; the newest unknown batch of its size is it.
                BatchJudge::Anthropic(_) if intent.as_deref() == Some(&submission) => {
                    let listed = runtime.block_on(api.list(&plan))?;
                    listed
                        .iter()
                        .filter(unknown)
                        .find(|b| b.total == chunk.specs.len() as u64)
                        .cloned()
                }
                BatchJudge::Anthropic(_) => None,
            };
            let (batch, recovered) = match found {
                Some(batch) => (batch, true),
                None => {
                    if matches!(judge, BatchJudge::Anthropic(_)) {
                        store.set_meta(&intent_key, &submission)?;
                    }
                    (
                        runtime.block_on(api.create(&chunk.jsonl, &plan, &submission))?,
                        false,
                    )
                }
            };
            let job = BatchJob {
                batch_id: batch.id.clone(),
                provider: judge.provider().into(),
                judge: name.clone(),
                submission,
                requests: chunk.specs.len(),
                estimated_cost: cost,
                tokens: chunk.tokens,
                status: batch.status.clone(),
                counts: batch.counts.clone(),
                collected: false,
            };
            let ids: Vec<&str> = chunk.specs.iter().map(|s| s.id.as_str()).collect();
            store.add_batch(&job, &ids)?;
            store.set_meta(&intent_key, "")?;
            spent += cost;
            queued += chunk.tokens;
            let entry = (name.clone(), batch.id.clone(), chunk.specs.len());
            if recovered {
                outcome.recovered.push(entry);
            } else {
                outcome.created.push(entry);
            }
        }
    }
    Ok(outcome)
}

fn intent_key(judge: &str) -> String {
    format!("batch_intent:{judge}")
}

/// Batches each call has been submitted in.
fn attempts(store: &RunStore) -> Result<HashMap<String, usize>, AuditError> {
    let mut counts = HashMap::new();
    for job in store.batches()? {
        for id in store.batch_call_ids(&job.batch_id)? {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
    Ok(counts)
}

#[derive(Default)]
struct Chunk<'a> {
    specs: Vec<&'a CallSpec>,
    jsonl: Vec<u8>,
    /// Estimated tokens (input plus `max_tokens` per call).
    tokens: u64,
}

/// Split `calls` (plan order) into input files within the line and byte limits. Deterministic,
/// so a restarted submit rebuilds the same files and finds an uncommitted batch by its hash.
fn chunks<'a>(
    prepared: &Prepared,
    judge: &BatchJudge,
    plan: &str,
    calls: &[&'a CallSpec],
    options: &SubmitOptions,
    max_tokens: Option<u64>,
) -> Result<Vec<Chunk<'a>>, AuditError> {
    let mut out = Vec::new();
    let mut current = Chunk::default();
    for &spec in calls {
        let mut line = judge.line(prepared, plan, spec)?;
        line.push(b'\n');
        let tokens = estimated_tokens(prepared, judge.judge(), spec);
        if let Some(limit) = max_tokens
            && tokens > limit
        {
            return Err(AuditError::Config(format!(
                "call `{}`: about {tokens} tokens, over the judge's batch_queue_tokens ({limit})",
                spec.id
            )));
        }
        if line.len() > options.max_bytes {
            return Err(AuditError::Config(format!(
                "call `{}`: its batch line is {} bytes, over the {} byte limit",
                spec.id,
                line.len(),
                options.max_bytes
            )));
        }
        if !current.specs.is_empty()
            && (current.specs.len() >= options.max_lines
                || current.jsonl.len() + line.len() > options.max_bytes
                || max_tokens.is_some_and(|limit| current.tokens + tokens > limit))
        {
            out.push(std::mem::take(&mut current));
        }
        current.specs.push(spec);
        current.jsonl.extend_from_slice(&line);
        current.tokens += tokens;
    }
    if !current.specs.is_empty() {
        out.push(current);
    }
    Ok(out)
}

/// Poll every open batch of `dir` and record its status and counts; returns every batch.
pub fn status(dir: &Path) -> Result<Vec<BatchJob>, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    let judges = batch_judges(&prepared)?;
    let store = RunStore::open(dir)?;
    let runtime = runtime()?;
    for job in store.batches()?.iter().filter(|j| !j.collected) {
        let Some(judge) = judges.get(&job.judge) else {
            continue;
        };
        let remote = runtime.block_on(judge.api(&job.judge).retrieve(&job.batch_id))?;
        store.update_batch(&job.batch_id, &remote.status, &remote.counts, false)?;
    }
    Ok(store.batches()?)
}

/// Poll the open batches of `dir`; commit the results of those that ended (through `batch
/// import`'s reader, each backend parsing its own bodies) and mark them collected. A batch that
/// failed validation stops its judge: its calls get the provider's message as a fault. The
/// reports are written again whenever something was collected.
pub fn collect(dir: &Path) -> Result<Collected, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    let judges = batch_judges(&prepared)?;
    let runtime = runtime()?;
    let mut outcome = Collected::default();
    let folder: PathBuf = dir.join("batches");
    let jobs = RunStore::open(dir)?.batches()?;
    for job in jobs.iter().filter(|j| !j.collected) {
        let Some(judge) = judges.get(&job.judge) else {
            continue;
        };
        let api = judge.api(&job.judge);
        let remote = runtime.block_on(api.retrieve(&job.batch_id))?;
        RunStore::open(dir)?.update_batch(&job.batch_id, &remote.status, &remote.counts, false)?;
        if !remote.terminal {
            outcome.open += 1;
            continue;
        }
        if let Some(message) = &remote.failed {
            stop_judge(dir, job, message)?;
            outcome
                .stopped
                .push((job.judge.clone(), format!("{}: {message}", job.batch_id)));
        }
        std::fs::create_dir_all(&folder).map_err(|source| AuditError::Io {
            path: folder.clone(),
            source,
        })?;
        let via = format!("{VIA_PREFIX}{}", job.batch_id);
        for path in runtime.block_on(api.results(&remote, &folder))? {
            let import = file::import_with(dir, &prepared, &path, &via, &judges)?;
            outcome.committed += import.committed;
            outcome.failed += import.failed;
        }
        // Marked only now: a kill before this line collects the batch again next time, and
        // already committed calls are counted as such, not twice.
        RunStore::open(dir)?.update_batch(&job.batch_id, &remote.status, &remote.counts, true)?;
        outcome
            .finished
            .push((job.batch_id.clone(), remote.status.clone()));
    }
    outcome.pending = pending(dir, &prepared)?.len();
    if !outcome.finished.is_empty() {
        audit::rerender(dir)?;
    }
    Ok(outcome)
}

/// Stop `job`'s judge: later submits skip it, and each call of the batch gets the provider's
/// validation message as a fault (shown as failed, like a 400 on the synchronous path).
fn stop_judge(dir: &Path, job: &BatchJob, message: &str) -> Result<(), AuditError> {
    let _lock = RunLock::acquire(dir).map_err(crate::run::RunError::from)?;
    let mut store = RunStore::open(dir)?;
    let text = format!("batch {} failed validation: {message}", job.batch_id);
    let faults: Vec<FaultRow> = store
        .batch_call_ids(&job.batch_id)?
        .into_iter()
        .map(|call_id| FaultRow {
            judge: job.judge.clone(),
            call_id,
            kind: FaultKind::BadRequest,
            message: text.clone(),
        })
        .collect();
    store.commit(&[], &faults)?;
    store.set_meta(&stop_key(&job.judge), &text)?;
    Ok(())
}

fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What `run --batch` did, over all its rounds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchRun {
    /// Batches created.
    pub created: usize,
    /// Batches recovered from the provider's list.
    pub recovered: usize,
    /// Calls committed from batches.
    pub committed: usize,
    /// Calls not submitted for the cost budget (last round).
    pub over_budget: usize,
    /// Calls left pending after [`MAX_ATTEMPTS`] batches (last round).
    pub exhausted: usize,
    /// Pending calls of judges a provider batch cannot carry (last round).
    pub skipped: Vec<(String, usize)>,
    /// Judges stopped by validation failures.
    pub stopped: Vec<(String, String)>,
    /// Calls of the plan still pending at the end (a sequential audit: calls of the wave it
    /// stopped in that have no answer).
    pub pending: usize,
    /// A sequential audit: waves whose calls went through provider batches in this process.
    pub waves: usize,
    /// A sequential audit: calls sent through the synchronous executor (judges without a batch
    /// route, and `--batch-fallback sync`).
    pub sync_sent: usize,
}

/// Collect, submit what is pending, and poll every `poll` until no batch is open and nothing is
/// left to submit. Calls the provider did not answer go into the next batch (at most
/// [`MAX_ATTEMPTS`] batches per call).
pub fn run(dir: &Path, options: &SubmitOptions, poll: Duration) -> Result<BatchRun, AuditError> {
    let mut total = BatchRun::default();
    loop {
        // Collect first: a resumed run picks up what finished while it was away.
        let collected = collect(dir)?;
        total.committed += collected.committed;
        total.stopped.extend(collected.stopped);
        total.pending = collected.pending;
        if collected.open > 0 {
            std::thread::sleep(poll);
            continue;
        }
        let submitted = submit(dir, options)?;
        total.created += submitted.created.len();
        total.recovered += submitted.recovered.len();
        total.over_budget = submitted.over_budget;
        total.exhausted = submitted.exhausted;
        total.skipped = submitted.skipped;
        if submitted.created.is_empty() && submitted.recovered.is_empty() {
            break;
        }
        std::thread::sleep(poll);
    }
    total.stopped.sort();
    total.stopped.dedup();
    Ok(total)
}

/// Collect until no batch of `dir` is open, polling every `poll`; what was collected is added
/// to `total`. A signal (see [`crate::run::watch_interrupts`]) ends the wait with
/// [`crate::run::RunError::Interrupted`]: the batches keep running and a resume collects them.
fn drain(
    dir: &Path,
    poll: Duration,
    total: &mut BatchRun,
    interrupted: &std::sync::atomic::AtomicI32,
) -> Result<(), AuditError> {
    loop {
        let collected = collect(dir)?;
        total.committed += collected.committed;
        total.stopped.extend(collected.stopped);
        if collected.open == 0 {
            return Ok(());
        }
        // In short steps, so a signal is noticed while a long poll interval runs.
        let until = std::time::Instant::now() + poll;
        loop {
            let signal = interrupted.load(std::sync::atomic::Ordering::SeqCst);
            if signal != 0 {
                let store = RunStore::open(dir)?;
                return Err(crate::run::RunError::Interrupted {
                    signal,
                    committed: store.completed_ids()?.len(),
                    planned: store.plan_ids()?.len(),
                    dir: dir.to_path_buf(),
                }
                .into());
            }
            let now = std::time::Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(100)));
        }
    }
}

fn tally(total: &mut BatchRun, submitted: Submitted) -> bool {
    total.created += submitted.created.len();
    total.recovered += submitted.recovered.len();
    total.over_budget = submitted.over_budget;
    total.exhausted = submitted.exhausted;
    total.stopped.extend(submitted.stopped);
    !submitted.created.is_empty() || !submitted.recovered.is_empty()
}

/// `run --batch` of a sequential audit: one wave per round. Each round collects every open
/// batch, replays the stored records through a fresh sequential engine (so a resumed run
/// continues at the wave it stopped in, with the same decisions), submits that wave's missing
/// calls of `openai` and `anthropic` judges as provider batches (the limits, budget and
/// submission-hash recovery of [`submit`]), sends the other judges' calls of the wave through
/// the synchronous executor meanwhile, and waits for the wave's batches, resubmitting errored
/// and expired calls (at most [`MAX_ATTEMPTS`] batches each). The waves and decisions are
/// those of the synchronous sequential run of the same audit. The run stops early, as the
/// synchronous one does, when a wave makes no progress, a judge was stopped or the cost budget
/// ran out; with `fallback_sync` the calls a wave's batches left go through the synchronous
/// executor before the wave is decided.
pub fn run_sequential(
    prepared: &Prepared,
    dir: &Path,
    options: &SubmitOptions,
    poll: Duration,
    exec: &audit::ExecOptions,
    fallback_sync: bool,
) -> Result<BatchRun, AuditError> {
    use crate::analyze::sequential::Sequential;
    options.check()?;
    let plan = &prepared.plan;
    let engine_options = audit::sequential_options(prepared, exec.max_calls);
    let routed: HashSet<&str> = prepared
        .judges
        .iter()
        .filter(|h| batchable(h.config.backend))
        .map(|h| h.config.name.as_str())
        .collect();
    let shard = crate::batch::shard::stored(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AuditError::Config(format!("cannot start the async runtime: {e}")))?;
    let interrupted = crate::run::watch_interrupts(&runtime);
    let mut total = BatchRun::default();
    // (wave, calls of it still missing) after the previous round: a wave that did not shrink
    // is not sent again, as in the synchronous runner.
    let mut last = (usize::MAX, usize::MAX);
    loop {
        // Collect first: a resumed run picks up what finished while it was away.
        drain(dir, poll, &mut total, &interrupted)?;
        let records = RunStore::open(dir)?.records()?;
        let by_id: HashMap<&str, &crate::run::CallRecord> =
            records.iter().map(|r| (r.call_id.as_str(), r)).collect();
        let mut engine = Sequential::new(plan, &engine_options);
        let Some(calls) = engine.replay(plan, &by_id) else {
            total.pending = 0;
            break;
        };
        let missing: Vec<usize> = calls
            .iter()
            .copied()
            .filter(|&i| {
                let id = &plan.calls[i].id;
                !by_id.contains_key(id.as_str()) && shard.is_none_or(|s| s.contains(id))
            })
            .collect();
        total.pending = missing.len();
        if missing.is_empty() || (engine.waves_run() == last.0 && missing.len() >= last.1) {
            break;
        }
        // A wave sent again (it shrank but is not complete) is still one wave.
        let new_wave = engine.waves_run() != last.0;
        last = (engine.waves_run(), missing.len());
        let wave: HashSet<String> = missing.iter().map(|&i| plan.calls[i].id.clone()).collect();
        let (batched, direct): (Vec<usize>, Vec<usize>) = missing
            .iter()
            .partition(|&&i| routed.contains(plan.calls[i].judge.as_str()));
        let mut stop = false;
        // Batches first, so the provider works on them while the other judges answer.
        if !batched.is_empty() {
            total.waves += usize::from(new_wave);
            let submitted = submit_where(dir, options, Some(&wave))?;
            stop |= submitted.over_budget > 0 || !submitted.stopped.is_empty();
            tally(&mut total, submitted);
        }
        if !direct.is_empty() {
            let outcome = runtime.block_on(audit::execute_calls(prepared, dir, exec, &direct))?;
            total.sync_sent += outcome.sent;
            stop |= outcome.over_budget > 0 || !outcome.stopped.is_empty();
        }
        if !batched.is_empty() {
            // Until the wave's batches end: unanswered calls ride in the next batch.
            loop {
                drain(dir, poll, &mut total, &interrupted)?;
                let submitted = submit_where(dir, options, Some(&wave))?;
                stop |= submitted.over_budget > 0 || !submitted.stopped.is_empty();
                if !tally(&mut total, submitted) {
                    break;
                }
            }
            if fallback_sync {
                let done = RunStore::open(dir)?.completed_ids()?;
                let left: Vec<usize> = batched
                    .into_iter()
                    .filter(|&i| !done.contains(&plan.calls[i].id))
                    .collect();
                if !left.is_empty() {
                    let outcome =
                        runtime.block_on(audit::execute_calls(prepared, dir, exec, &left))?;
                    total.sync_sent += outcome.sent;
                    stop |= outcome.over_budget > 0;
                }
            }
        }
        if stop {
            // The wave stays as it is; what it still misses is pending.
            let done = RunStore::open(dir)?.completed_ids()?;
            total.pending = missing
                .iter()
                .filter(|&&i| !done.contains(&plan.calls[i].id))
                .count();
            break;
        }
    }
    total.stopped.sort();
    total.stopped.dedup();
    Ok(total)
}
