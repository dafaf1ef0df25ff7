//! OpenAI batch files: the pending calls of a run written as an OpenAI batch input file (for
//! `vllm run-batch -i … -o …`, a SLURM array, LiteLLM, the OpenAI Batch API), and the output
//! file of such an executor read back into the run store.
//!
//! A line's `custom_id` is derived from the plan hash and the call's stable id, never random, so
//! an output file matches its calls after any restart and on any machine. The request body is
//! the one the `openai` backend sends, and each answer goes through the same parser, so an
//! imported call is an ordinary call record (`via` names the file).

use crate::audit::{self, AuditError, Prepared};
use crate::design::CallSpec;
use crate::judge::FaultKind;
use crate::judge::chat::ChatBody;
use crate::judge::config::Backend;
use crate::judge::http::HttpBackend;
use crate::judge::openai::OpenAiJudge;
use crate::run::store::{FaultRow, RunStore};
use crate::run::{CallRecord, lock::RunLock};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// Lines per input file: the OpenAI Batch API's limit (vLLM has none; smaller files are fine).
pub const MAX_LINES: usize = 50_000;

/// The endpoint every exported line names.
pub const CHAT_URL: &str = "/v1/chat/completions";

/// The plan hash: SHA-256 over the stored snapshot and every call id of the plan, in order. Two
/// runs of one audit share it; any change to the audit changes it.
pub fn plan_hash(dir: &Path, prepared: &Prepared) -> Result<String, AuditError> {
    let store = RunStore::open(dir)?;
    let snapshot = store.meta(audit::SNAPSHOT_KEY)?.unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(snapshot.as_bytes());
    for call in &prepared.plan.calls {
        hasher.update(b"\n");
        hasher.update(call.id.as_bytes());
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `custom_id` of call `call_id` under plan hash `plan_hash`: the first 26 characters of the
/// RFC 4648 base32 of `sha256(plan_hash ‖ "\n" ‖ call_id)` — `[A-Z2-7]`, which every provider's
/// id charset and 64-character limit accept.
pub fn custom_id(plan_hash: &str, call_id: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(plan_hash.as_bytes());
    hasher.update(b"\n");
    hasher.update(call_id.as_bytes());
    base32(&hasher.finalize())[..26].to_string()
}

/// RFC 4648 base32 without padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Record a new run of `prepared` in `dir` without sending anything (or check that `dir` holds
/// this very audit), so its calls can be exported.
pub fn start(prepared: &Prepared, dir: &Path) -> Result<(), AuditError> {
    audit::open_run(prepared, dir).map(drop)
}

/// The `openai` judges of a run, built for rendering and parsing (never for sending).
pub(crate) fn openai_judges(
    prepared: &Prepared,
) -> Result<HashMap<String, OpenAiJudge>, AuditError> {
    let mut judges = HashMap::new();
    for handle in &prepared.judges {
        if handle.config.backend == Backend::Openai {
            refuse_mitigated(&handle.config)?;
            judges.insert(
                handle.config.name.clone(),
                OpenAiJudge::new(&handle.config)?,
            );
        }
    }
    Ok(judges)
}

/// Batch lines are rendered by the backend itself, not through the judge layer, so a judge
/// whose file declares judge-layer mitigations (`normalise`, `bias_instruction`,
/// `swap_and_confirm`, `majority_of_templates`) would be sent unmitigated and stored as if mitigated: refused instead.
pub(crate) fn refuse_mitigated(config: &crate::judge::JudgeConfig) -> Result<(), AuditError> {
    if config.mitigations().is_empty() {
        return Ok(());
    }
    Err(AuditError::Config(format!(
        "judge `{}` declares judge-layer mitigations (normalise, bias_instruction, \
         swap_and_confirm or majority_of_templates), which batch requests do not apply; audit \
         it without --batch",
        config.name
    )))
}

/// The calls of `dir` not committed yet, of this run's shard.
pub(crate) fn pending<'a>(
    dir: &Path,
    prepared: &'a Prepared,
) -> Result<Vec<&'a CallSpec>, AuditError> {
    // A rewrite artifact's calls need its rewrites first (`run` makes them before judging); a
    // batch route would send the original text in their place, so it refuses them.
    let rewrites: Vec<&str> = prepared
        .artifacts
        .iter()
        .filter(|a| a.is_rewrite())
        .map(|a| a.id.as_str())
        .collect();
    if !rewrites.is_empty() {
        return Err(AuditError::Config(format!(
            "{}: the batch routes do not make rewrites, and rewrite artifacts ({}) need them \
             before any judge call: run this audit with `judge-audit run` (without --batch), or \
             leave those artifacts out of [design] artifacts",
            dir.display(),
            rewrites.join(", ")
        )));
    }
    let store = RunStore::open(dir)?;
    audit::check_stored_plan(&store, prepared, dir)?;
    let done = store.completed_ids()?;
    let shard = crate::batch::shard::stored(dir)?;
    Ok(prepared
        .plan
        .calls
        .iter()
        .filter(|c| !done.contains(&c.id) && shard.is_none_or(|s| s.contains(&c.id)))
        .collect())
}

/// The judge request of `spec`, as the runner builds it.
pub(crate) fn request_of(
    prepared: &Prepared,
    spec: &CallSpec,
) -> Result<crate::judge::JudgeRequest, AuditError> {
    crate::design::request(spec, &prepared.dataset.pairs, &prepared.perturbed).ok_or_else(|| {
        AuditError::Config(format!(
            "call `{}` cannot be built from the dataset and perturbations",
            spec.id
        ))
    })
}

/// One input-file line: the body the `openai` backend sends for `spec`, under its custom id.
pub(crate) fn input_line(
    prepared: &Prepared,
    judge: &OpenAiJudge,
    hash: &str,
    spec: &CallSpec,
) -> Result<serde_json::Value, AuditError> {
    let request = request_of(prepared, spec)?;
    let (messages, params) = judge.call_parts(&request);
    Ok(serde_json::json!({
        "custom_id": custom_id(hash, &spec.id),
        "method": "POST",
        "url": CHAT_URL,
        "body": ChatBody::new(&messages, &params),
    }))
}

/// Calls of run directory `dir` not committed yet (of its shard).
pub fn pending_count(dir: &Path) -> Result<usize, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    Ok(pending(dir, &prepared)?.len())
}

/// One written input file.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedFile {
    /// The file.
    pub path: PathBuf,
    /// Judge whose calls it holds.
    pub judge: String,
    /// Lines (requests).
    pub lines: usize,
}

/// What `batch export` did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Export {
    /// Files written (one model per file, at most [`MAX_LINES`] lines each).
    pub files: Vec<ExportedFile>,
    /// Pending calls of judges whose backend is not `openai`, which a batch file cannot carry
    /// (per judge); `run --resume` sends them.
    pub skipped: Vec<(String, usize)>,
}

fn file_stem(judge: &str) -> String {
    judge
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Write the pending calls of run directory `dir` as OpenAI batch input files in `out_dir`
/// (`<judge>-<n>.jsonl`), in plan order.
pub fn export(dir: &Path, out_dir: &Path) -> Result<Export, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    let hash = plan_hash(dir, &prepared)?;
    let judges = openai_judges(&prepared)?;
    let pending = pending(dir, &prepared)?;
    std::fs::create_dir_all(out_dir).map_err(|source| AuditError::Io {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let mut export = Export::default();
    for handle in &prepared.judges {
        let name = &handle.config.name;
        let calls: Vec<&CallSpec> = pending
            .iter()
            .copied()
            .filter(|c| &c.judge == name)
            .collect();
        let Some(judge) = judges.get(name) else {
            if !calls.is_empty() {
                export.skipped.push((name.clone(), calls.len()));
            }
            continue;
        };
        for (n, chunk) in calls.chunks(MAX_LINES).enumerate() {
            let path = out_dir.join(format!("{}-{n:03}.jsonl", file_stem(name)));
            let io = |source| AuditError::Io {
                path: path.clone(),
                source,
            };
            let mut writer = std::io::BufWriter::new(std::fs::File::create(&path).map_err(io)?);
            for spec in chunk {
                let line = input_line(&prepared, judge, &hash, spec)?;
                serde_json::to_writer(&mut writer, &line).map_err(|e| io(e.into()))?;
                writer.write_all(b"\n").map_err(io)?;
            }
            writer.flush().map_err(io)?;
            export.files.push(ExportedFile {
                path,
                judge: name.clone(),
                lines: chunk.len(),
            });
        }
    }
    Ok(export)
}

/// What `batch import` did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Import {
    /// Calls committed from the file.
    pub committed: usize,
    /// Lines for calls that were already committed (left as they were).
    pub already: usize,
    /// Lines that carried an error (status, error object, unreadable body): recorded as faults,
    /// their calls stay pending.
    pub failed: usize,
    /// Calls of the plan still pending afterwards.
    pub pending: usize,
}

/// An output line's id (the first pass).
#[derive(serde::Deserialize)]
struct IdOnly {
    custom_id: Option<String>,
}

/// One output line, as executors write it.
#[derive(serde::Deserialize)]
struct OutputLine {
    custom_id: Option<String>,
    #[serde(default)]
    response: Option<OutputResponse>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct OutputResponse {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default)]
    body: Option<serde_json::Value>,
}

/// Read the OpenAI batch output file `results` into run directory `dir`. Every line is checked
/// first: a line that is not JSON, has no `custom_id`, or names a call that is not in this
/// run's plan (or not an `openai` judge's) refuses the whole file, naming its line, before
/// anything is committed. Then answers are committed as ordinary call records and failed lines
/// are recorded as faults (the call stays pending); the reports are written again.
pub fn import(dir: &Path, results: &Path) -> Result<Import, AuditError> {
    let via = format!(
        "file:{}",
        results.file_name().map_or_else(
            || results.display().to_string(),
            |n| n.to_string_lossy().into_owned()
        )
    );
    import_as(dir, results, &via)
}

/// Reads one answer body of a judge the way its synchronous backend does: secrets out first,
/// then the backend's own parser and the judge's verdict parser.
pub(crate) trait ReadAnswer {
    /// The reply in `body` (a chat completion, an Anthropic message, as the backend sends).
    fn read_answer(
        &self,
        body: String,
    ) -> Result<crate::judge::JudgeReply, crate::judge::JudgeError>;
    /// `text` without the judge's secrets.
    fn redact(&self, text: &str) -> String;
}

impl<T: HttpBackend + crate::judge::templated::BuildTransport> ReadAnswer
    for crate::judge::templated::TemplatedJudge<T>
{
    fn read_answer(
        &self,
        mut body: String,
    ) -> Result<crate::judge::JudgeReply, crate::judge::JudgeError> {
        let redacted = self
            .transport()
            .http()
            .redactor()
            .redact_in_place(&mut body);
        let mut completion = self.transport().parse_success(body.as_bytes())?;
        completion.redacted |= redacted;
        Ok(self.reply(completion))
    }

    fn redact(&self, text: &str) -> String {
        self.transport().http().redactor().redact(text).0
    }
}

/// [`import`] with the records' `via` given (`batch:<id>` for a provider batch's output).
pub(crate) fn import_as(dir: &Path, results: &Path, via: &str) -> Result<Import, AuditError> {
    let prepared = audit::prepare_stored(dir)?;
    let judges = openai_judges(&prepared)?;
    import_with(dir, &prepared, results, via, &judges)
}

/// [`import_as`] for the judges in `judges` (an output file in the OpenAI batch output format
/// whose bodies each judge's backend reads).
pub(crate) fn import_with<R: ReadAnswer>(
    dir: &Path,
    prepared: &Prepared,
    results: &Path,
    via: &str,
    judges: &HashMap<String, R>,
) -> Result<Import, AuditError> {
    let hash = plan_hash(dir, prepared)?;
    let by_custom_id: HashMap<String, &CallSpec> = prepared
        .plan
        .calls
        .iter()
        .filter(|c| judges.contains_key(&c.judge))
        .map(|c| (custom_id(&hash, &c.id), c))
        .collect();
    let bad = |line: usize, message: String| {
        AuditError::Config(format!("{}: line {line}: {message}", results.display()))
    };
    let file = std::fs::File::open(results).map_err(|source| AuditError::Io {
        path: results.to_path_buf(),
        source,
    })?;
    let mut lines = Vec::new();
    let mut seen = HashSet::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let text = line.map_err(|source| AuditError::Io {
            path: results.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        // Only the id is kept from this first pass: a 100k-line file's bodies are read again,
        // one chunk at a time, once the whole file is known to belong to the plan.
        let parsed: IdOnly = serde_json::from_str(&text)
            .map_err(|e| bad(number, format!("not a batch output line ({e})")))?;
        let id = parsed
            .custom_id
            .clone()
            .ok_or_else(|| bad(number, "field `custom_id`: missing".into()))?;
        let Some(&spec) = by_custom_id.get(&id) else {
            return Err(bad(
                number,
                format!(
                    "field `custom_id`: `{}` is not a call of this run's plan (an output file of another run or plan?); nothing was imported",
                    id.chars().take(64).collect::<String>()
                ),
            ));
        };
        if !seen.insert(id) {
            return Err(bad(
                number,
                format!("field `custom_id`: call `{}` appears twice", spec.id),
            ));
        }
        lines.push(spec);
    }

    let _lock = RunLock::acquire(dir).map_err(crate::run::RunError::from)?;
    let mut store = RunStore::open(dir)?;
    let done = store.completed_ids()?;
    let via = via.to_string();
    let mut outcome = Import::default();
    let mut records = Vec::new();
    let mut faults = Vec::new();
    let log = dir.join("calls.jsonl");
    let file = std::fs::File::open(results).map_err(|source| AuditError::Io {
        path: results.to_path_buf(),
        source,
    })?;
    let mut specs = lines.into_iter();
    for (index, text) in std::io::BufReader::new(file).lines().enumerate() {
        let number = index + 1;
        let text = text.map_err(|source| AuditError::Io {
            path: results.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            continue;
        }
        let line: OutputLine = serde_json::from_str(&text)
            .map_err(|e| bad(number, format!("not a batch output line ({e})")))?;
        let spec = specs
            .next()
            .filter(|spec| line.custom_id.as_deref() == Some(&custom_id(&hash, &spec.id)[..]))
            .ok_or_else(|| bad(number, "the file changed while it was imported".into()))?;
        if records.len() + faults.len() >= CHUNK {
            outcome.committed += records.len();
            outcome.failed += faults.len();
            commit_chunk(&mut store, &log, &mut records, &mut faults)?;
        }
        if done.contains(&spec.id) {
            outcome.already += 1;
            continue;
        }
        let judge = &judges[&spec.judge];
        let fault = |kind: FaultKind, message: String| FaultRow {
            judge: spec.judge.clone(),
            call_id: spec.id.clone(),
            kind,
            message: format!("{via}: {message}"),
        };
        let status = line.response.as_ref().and_then(|r| r.status_code);
        let body = line.response.and_then(|r| r.body);
        match (line.error, status, body) {
            (Some(error), _, _) if !error.is_null() => {
                // Server texts may echo the key: redacted before they are stored.
                let text = judge.redact(&error.to_string());
                faults.push(fault(FaultKind::Backend, snippet(&text)));
            }
            (_, Some(status), body) if status != 200 => {
                let kind = crate::judge::http::classify_status(status).kind;
                let detail = body
                    .map(|b| snippet(&judge.redact(&b.to_string())))
                    .unwrap_or_default();
                faults.push(fault(kind, format!("HTTP {status}: {detail}")));
            }
            (_, _, Some(body)) => {
                // As on the synchronous path: secrets out of the body before it is read.
                match judge.read_answer(body.to_string()) {
                    Ok(reply) => {
                        let record = CallRecord::from_reply(spec, reply, Some(via.clone()));
                        let json = serde_json::to_string(&record).expect("records serialize");
                        records.push((record, json));
                    }
                    Err(error) => faults.push(fault(error.kind(), error.to_string())),
                }
            }
            _ => faults.push(fault(
                FaultKind::MalformedResponse,
                "line has neither a response body nor an error".into(),
            )),
        }
    }
    outcome.committed += records.len();
    outcome.failed += faults.len();
    commit_chunk(&mut store, &log, &mut records, &mut faults)?;
    drop(store);
    drop(_lock);
    outcome.pending = pending(dir, prepared)?.len();
    audit::rerender(dir)?;
    Ok(outcome)
}

/// Lines committed per transaction on import.
const CHUNK: usize = 4096;

/// Commit one chunk of imported records and faults, then append the records to `calls.jsonl`
/// (after their commit, as the runner does), and empty both.
fn commit_chunk(
    store: &mut RunStore,
    log: &Path,
    records: &mut Vec<(CallRecord, String)>,
    faults: &mut Vec<FaultRow>,
) -> Result<(), AuditError> {
    store.commit(records, faults)?;
    let io = |source| AuditError::Io {
        path: log.to_path_buf(),
        source,
    };
    let mut writer = std::io::BufWriter::new(
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io)?,
    );
    for (_, json) in records.iter() {
        writer.write_all(json.as_bytes()).map_err(io)?;
        writer.write_all(b"\n").map_err(io)?;
    }
    writer.flush().map_err(io)?;
    records.clear();
    faults.clear();
    Ok(())
}

fn snippet(text: &str) -> String {
    const MAX: usize = 300;
    if text.chars().count() > MAX {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 §10 test vectors, without padding.
        for (input, expected) in [
            ("", ""),
            ("f", "MY"),
            ("fo", "MZXQ"),
            ("foo", "MZXW6"),
            ("foob", "MZXW6YQ"),
            ("fooba", "MZXW6YTB"),
            ("foobar", "MZXW6YTBOI"),
        ] {
            assert_eq!(base32(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn custom_ids_are_stable_short_and_distinct() {
        let a = custom_id("plan", "j/p1/baseline/ab/r0");
        assert_eq!(a, custom_id("plan", "j/p1/baseline/ab/r0"));
        assert_eq!(a.len(), 26);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
        assert_ne!(a, custom_id("plan", "j/p1/baseline/ab/r1"));
        assert_ne!(a, custom_id("other plan", "j/p1/baseline/ab/r0"));
    }
}
