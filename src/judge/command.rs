//! Command backend: run a user program once per judgment.
//!
//! The program is `command = ["python3", "judge.py"]` (or `program` + `args`). It runs in the
//! judge file's folder (the current folder for judges not read from a file), so relative paths in
//! the command resolve next to the judge file; a relative program path containing `/` resolves
//! there too, a bare name is looked up on `PATH`. It inherits the caller's environment (keys
//! belong there) plus the judge's `env` table.
//!
//! **Input** (stdin, one JSON object, then stdin is closed):
//! `{"call_id", "prompt", "first", "second", "repeat", "system", "user", "model", "temperature",
//! "max_tokens"}` where `system` / `user` are the judge's template rendered for this pair
//! (`system` is `null` when the template has none).
//!
//! **Output** (stdout): either a JSON object
//! `{"verdict": "first"|"second"|"tie"|..., "raw": "...", "probs": {"first", "second", "tie"},
//! "usage": {"input_tokens", "output_tokens"}}` (every field optional, unknown fields ignored), or
//! plain text, which is parsed by the judge's verdict parser exactly like a model's reply.
//! `verdict` accepts `first`/`a`/`1`, `second`/`b`/`2`, `tie`/`c`/`draw`/`0` and `invalid`
//! (case-insensitive); any other string is given to the verdict parser (so `"[[A]]"` or
//! `"Output (b)"` work). Without `verdict`, `raw` is parsed. Output that starts with `{` must be
//! valid JSON; empty output is a reply with an invalid verdict.
//!
//! **Failures**: a JSON `{"error": "...", "permanent": true}` stops the judge, `{"error": "..."}`
//! without `permanent` is retried. Exit status 2 is permanent; any other non-zero exit (or death
//! by a signal) is a retryable `Backend` fault, retried up to `max_retries`; its message quotes the
//! end of stderr. A program that runs longer than `timeout_secs` is killed (`SIGKILL`, and on
//! cancellation through `kill_on_drop`) and the call is a retryable `Timeout`. Only the program
//! itself is killed: a program that starts long-lived children of its own should `exec` them.
//! A program that cannot be started (not found, not executable) is a permanent `Backend` fault.
//! Output beyond `max_response_bytes` (stdout or stderr) is not read: the pipe is closed and the
//! call is a retryable `MalformedResponse`. A key named by `api_key_env`, when set, is redacted
//! from everything the program prints.
//!
//! Replies are cached like every backend's ([`super::templated`]): the key covers the command
//! line, the rendered messages and the generation parameters, not the program's own code, so
//! clear the cache (or pass `--no-cache`) after changing the program.

use super::chat::VerdictSource;
use super::chat::{ChatCall, ChatTransport, Completion};
use super::config::Backend;
use super::http::{Redactor, build_error, truncate, truncate_tail};
use super::templated::{BuildTransport, Prepared, TemplatedJudge};
use super::{
    FaultKind, JudgeBuildError, JudgeConfig, JudgeError, JudgeRequest, LabelProbs, TokenUsage,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

pub use super::templated::verdict_keyword;

#[cfg(test)]
use super::http::MAX_QUOTED;

/// Exit status that marks a failure as permanent (retrying will not help).
pub const PERMANENT_EXIT_CODE: i32 = 2;

/// A judge implemented by a local program.
pub type CommandJudge = TemplatedJudge<CommandTransport>;

/// Runs the judge's program once per call.
#[derive(Debug)]
pub struct CommandTransport {
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    timeout: Duration,
    max_output_bytes: u64,
    /// The program and arguments as one line (messages and the cache key's endpoint).
    command_line: String,
    redactor: Redactor,
}

/// The request JSON written to the program's stdin.
#[derive(Debug, Serialize)]
pub struct CommandInput<'a> {
    /// Stable call id from the plan.
    pub call_id: &'a str,
    /// The user prompt both answers respond to.
    pub prompt: &'a str,
    /// The answer shown first.
    pub first: &'a str,
    /// The answer shown second.
    pub second: &'a str,
    /// Repeat index.
    pub repeat: u32,
    /// The template's rendered system message (`null` when it has none).
    pub system: Option<&'a str>,
    /// The template's rendered user message.
    pub user: &'a str,
    /// The judge's `model` setting (may be empty).
    pub model: &'a str,
    /// The judge's `temperature` setting.
    pub temperature: f64,
    /// The judge's `max_tokens` setting.
    pub max_tokens: u32,
}

impl CommandInput<'_> {
    /// The input for one call.
    pub fn for_call<'a>(call: &ChatCall<'a>) -> CommandInput<'a> {
        let request = call.request;
        CommandInput {
            call_id: &request.call_id,
            prompt: &request.prompt,
            first: &request.first,
            second: &request.second,
            repeat: request.repeat,
            system: super::chat::ChatMessage::system(call.messages),
            user: super::chat::ChatMessage::user(call.messages),
            model: &call.params.model,
            temperature: call.params.temperature,
            max_tokens: call.params.max_tokens,
        }
    }
}

/// The JSON object a program may print.
#[derive(Debug, Default, Deserialize)]
struct CommandOutput {
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    raw: Option<String>,
    #[serde(default)]
    probs: Option<OutputProbs>,
    #[serde(default)]
    usage: Option<OutputUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    permanent: Option<bool>,
}

#[derive(Debug, Deserialize)]
struct OutputProbs {
    first: f64,
    second: f64,
    #[serde(default)]
    tie: f64,
}

#[derive(Debug, Deserialize)]
struct OutputUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

/// What a finished program produced.
struct Finished {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// A secret was found in the output and replaced.
    redacted: bool,
}

impl BuildTransport for CommandTransport {
    const BACKEND: Backend = Backend::Command;

    fn build(
        config: &JudgeConfig,
        _prepared: &Prepared,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        Self::with_env(config, env)
    }
}

impl TemplatedJudge<CommandTransport> {
    /// The program and arguments, as run.
    pub fn command_line(&self) -> String {
        self.transport().command_line.clone()
    }

    /// The folder the program runs in (`None`: the current folder).
    pub fn working_dir(&self) -> Option<&Path> {
        self.transport().cwd.as_deref()
    }

    /// The JSON written to the program's stdin for `request`.
    pub fn input_json(&self, request: &JudgeRequest) -> String {
        let (messages, params) = self.call_parts(request);
        let call = ChatCall::new(request, &messages, &params);
        serde_json::to_string(&CommandInput::for_call(&call))
            .expect("strings and numbers serialize")
    }
}

/// Read at most `limit` bytes of a pipe into `out`, then close it; true when there was more.
/// Closing the pipe early makes a program that keeps writing fail with a broken pipe instead of
/// blocking until the timeout.
async fn read_capped(
    pipe: impl AsyncRead + Unpin,
    limit: u64,
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    pipe.take(limit.saturating_add(1)).read_to_end(out).await?;
    Ok(out.len() as u64 > limit)
}

impl CommandTransport {
    /// The transport for a validated `command` configuration (`env` finds a key to redact).
    pub fn with_env(
        config: &JudgeConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        let name = &config.name;
        let (program, args) = match (&config.command, &config.program) {
            (Some(cmd), _) => (cmd[0].clone(), cmd[1..].to_vec()),
            (None, Some(p)) => (p.clone(), config.args.clone()),
            (None, None) => unreachable!("validate() requires command or program"),
        };
        let base = config.base_dir();
        let absolute = |p: &Path| {
            std::path::absolute(p)
                .map_err(|e| build_error(name, "command", format!("{}: {e}", p.display())))
        };
        let cwd = match &base {
            Some(dir) if !dir.as_os_str().is_empty() => Some(absolute(dir)?),
            _ => None,
        };
        // A relative path with a separator is resolved here, against the judge file's folder:
        // how a spawned process resolves it after changing directory is platform specific.
        let program_path = Path::new(&program);
        let program = if program_path.is_relative() && program.contains(std::path::MAIN_SEPARATOR) {
            match &cwd {
                Some(dir) => dir.join(program_path),
                None => absolute(program_path)?,
            }
        } else {
            program_path.to_path_buf()
        };
        let command_line = std::iter::once(program.display().to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ");
        let limits = config.limits();
        Ok(Self {
            program,
            args,
            env: config.env.clone(),
            cwd,
            timeout: limits.timeout,
            max_output_bytes: limits.max_response_bytes,
            command_line,
            redactor: Redactor::for_key(config.resolve_api_key_with(env).as_ref()),
        })
    }

    fn command_line(&self) -> &str {
        &self.command_line
    }

    fn spawn_error(&self, err: &std::io::Error) -> JudgeError {
        let what = format!("cannot run `{}`: {err}", self.command_line());
        match err.kind() {
            std::io::ErrorKind::NotFound => JudgeError::Permanent {
                kind: FaultKind::Backend,
                message: format!(
                    "{what} (a bare name is looked up on PATH; a relative path resolves against \
                     the judge file's folder)"
                ),
            },
            std::io::ErrorKind::PermissionDenied => JudgeError::Permanent {
                kind: FaultKind::Backend,
                message: format!("{what} (is the file executable?)"),
            },
            // Out of processes or file descriptors: may pass.
            _ => JudgeError::Retryable {
                kind: FaultKind::Backend,
                message: what,
                retry_after: None,
            },
        }
    }

    /// Run the program once with `input` on stdin, within the timeout.
    async fn run(&self, input: &[u8]) -> Result<Finished, JudgeError> {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .envs(&self.env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A cancelled call (run aborted, timeout) must not leave the program running.
            .kill_on_drop(true);
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(&e))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        let limit = self.max_output_bytes;
        let io = async {
            let write = async {
                // A program that exits without reading its input breaks the pipe: not an error
                // in itself, its exit status and output decide.
                let _ = stdin.write_all(input).await;
                drop(stdin);
            };
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let ((), read_out, read_err) = tokio::join!(
                write,
                read_capped(stdout, limit, &mut out),
                read_capped(stderr, limit, &mut err)
            );
            let status = child.wait().await;
            (status, read_out, read_err, out, err)
        };
        let (status, read_out, read_err, stdout, stderr) =
            match tokio::time::timeout(self.timeout, io).await {
                Ok(done) => done,
                Err(_) => {
                    let _ = child.start_kill();
                    // Reap it so no zombie is left behind.
                    let _ = child.wait().await;
                    return Err(JudgeError::Retryable {
                        kind: FaultKind::Timeout,
                        message: format!(
                            "`{}` did not finish within {:?} and was killed",
                            self.command_line(),
                            self.timeout
                        ),
                        retry_after: None,
                    });
                }
            };
        let io_failure = |e: std::io::Error| JudgeError::Retryable {
            kind: FaultKind::Backend,
            message: format!("`{}`: {e}", self.command_line()),
            retry_after: None,
        };
        let out_over = read_out.map_err(io_failure)?;
        let err_over = read_err.map_err(io_failure)?;
        let status = status.map_err(io_failure)?;
        if out_over || err_over {
            return Err(JudgeError::Retryable {
                kind: FaultKind::MalformedResponse,
                message: format!(
                    "`{}` printed more than {limit} bytes on {} (max_response_bytes); the rest \
                     was not read",
                    self.command_line(),
                    if out_over { "stdout" } else { "stderr" }
                ),
                retry_after: None,
            });
        }
        let (mut stdout, mut stderr) = (stdout, stderr);
        // Redacted before anything is quoted or parsed from the output.
        let redacted =
            self.redactor.redact_bytes(&mut stdout) | self.redactor.redact_bytes(&mut stderr);
        Ok(Finished {
            status,
            stdout,
            stderr,
            redacted,
        })
    }

    /// Turn a finished program's output into a reply or an error.
    fn interpret(&self, finished: Finished) -> Result<Completion, JudgeError> {
        let stdout = String::from_utf8_lossy(&finished.stdout);
        let text = stdout.trim();
        let json = if text.starts_with('{') {
            match serde_json::from_str::<serde_json::Value>(text) {
                Ok(value) => Some(value),
                // Cut-off JSON must not be read as free text that happens to hold a label.
                Err(e) if finished.status.success() => {
                    return Err(JudgeError::Retryable {
                        kind: FaultKind::MalformedResponse,
                        message: format!(
                            "`{}` printed invalid JSON ({e}): {}",
                            self.command_line(),
                            truncate(text)
                        ),
                        retry_after: None,
                    });
                }
                Err(_) => None,
            }
        } else {
            None
        };
        let output = match json {
            Some(value) => match serde_json::from_value::<CommandOutput>(value) {
                Ok(output) => Some(output),
                // The program's own bug: the same input will give the same output.
                Err(e) if finished.status.success() => {
                    return Err(JudgeError::Permanent {
                        kind: FaultKind::Backend,
                        message: format!(
                            "`{}` printed JSON that does not fit the verdict format ({e}): {}",
                            self.command_line(),
                            truncate(text)
                        ),
                    });
                }
                Err(_) => None,
            },
            None => None,
        };
        let reported = output.as_ref().and_then(|o| {
            o.error.as_ref().map(|e| {
                let message = match e {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (message, o.permanent == Some(true))
            })
        });
        if let Some((message, permanent)) = reported {
            return Err(self.failure(
                &finished,
                permanent,
                &format!("error: {}", truncate(&message)),
            ));
        }
        if !finished.status.success() {
            let permanent = finished.status.code() == Some(PERMANENT_EXIT_CODE);
            let stderr = String::from_utf8_lossy(&finished.stderr);
            let detail = if stderr.trim().is_empty() {
                "(no stderr)".to_string()
            } else {
                format!("stderr: {}", truncate_tail(stderr.trim()))
            };
            return Err(self.failure(&finished, permanent, &detail));
        }
        let Some(output) = output else {
            // Plain text: a model's reply, parsed like one. Blank text is an invalid verdict.
            return Ok(Completion {
                text: stdout.to_string(),
                stated_verdict: Some(VerdictSource::Text(text.to_string())),
                redacted: finished.redacted,
                ..Completion::default()
            });
        };
        let (raw, stated) = match (&output.verdict, output.raw) {
            (Some(v), raw) => (
                raw.unwrap_or_else(|| v.clone()),
                Some(VerdictSource::Stated(v.clone())),
            ),
            (None, Some(raw)) => (raw, None),
            (None, None) => {
                return Err(JudgeError::Permanent {
                    kind: FaultKind::Backend,
                    message: format!(
                        "`{}` printed JSON with neither `verdict` nor `raw`: {}",
                        self.command_line(),
                        truncate(text)
                    ),
                });
            }
        };
        let label_probs = match output.probs {
            None => None,
            Some(p) => {
                let all = [p.first, p.second, p.tie];
                let sum: f64 = all.iter().sum();
                if !all.iter().all(|v| v.is_finite() && (0.0..=1.0).contains(v)) || sum > 1.0 + 1e-6
                {
                    return Err(JudgeError::Permanent {
                        kind: FaultKind::Backend,
                        message: format!(
                            "`{}` printed probs outside [0, 1] or summing above 1: first {}, \
                             second {}, tie {}",
                            self.command_line(),
                            p.first,
                            p.second,
                            p.tie
                        ),
                    });
                }
                Some(LabelProbs {
                    first: p.first,
                    second: p.second,
                    tie: p.tie,
                })
            }
        };
        Ok(Completion {
            text: raw,
            usage: output.usage.map(|u| TokenUsage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
            }),
            label_probs,
            stated_verdict: stated,
            redacted: finished.redacted,
            ..Completion::default()
        })
    }

    fn failure(&self, finished: &Finished, permanent: bool, detail: &str) -> JudgeError {
        let how = match finished.status.code() {
            Some(0) => "reported a failure".to_string(),
            Some(code) => format!("exited with status {code}"),
            None => "was killed by a signal".to_string(),
        };
        let message = format!("`{}` {how}: {detail}", self.command_line());
        if permanent {
            JudgeError::Permanent {
                kind: FaultKind::Backend,
                message,
            }
        } else {
            JudgeError::Retryable {
                kind: FaultKind::Backend,
                message,
                retry_after: None,
            }
        }
    }
}

#[async_trait]
impl ChatTransport for CommandTransport {
    fn backend(&self) -> &'static str {
        "command"
    }

    fn endpoint(&self) -> &str {
        &self.command_line
    }

    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, JudgeError> {
        let input = serde_json::to_string(&CommandInput::for_call(call))
            .expect("strings and numbers serialize");
        let finished = self.run(input.as_bytes()).await?;
        self.interpret(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::SlotVerdict;

    #[test]
    fn keywords() {
        for (text, want) in [
            ("first", SlotVerdict::First),
            (" A ", SlotVerdict::First),
            ("1", SlotVerdict::First),
            ("Second", SlotVerdict::Second),
            ("b", SlotVerdict::Second),
            ("2", SlotVerdict::Second),
            ("TIE", SlotVerdict::Tie),
            ("c", SlotVerdict::Tie),
            ("draw", SlotVerdict::Tie),
            ("0", SlotVerdict::Tie),
            ("invalid", SlotVerdict::Invalid),
        ] {
            assert_eq!(verdict_keyword(text), Some(want), "{text:?}");
        }
        for text in ["", "Output (a)", "[[A]]", "firstly", "3"] {
            assert_eq!(verdict_keyword(text), None, "{text:?}");
        }
    }

    #[test]
    fn quoting_keeps_the_head_or_the_tail() {
        let long: String = (0..1000)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let head = truncate(&long);
        assert!(head.starts_with("abc") && head.ends_with('…'));
        assert_eq!(head.chars().count(), MAX_QUOTED + 1);
        let tail = truncate_tail(&long);
        assert!(tail.starts_with('…'));
        assert!(tail.ends_with(&long[1000 - 10..]));
        assert_eq!(tail.chars().count(), MAX_QUOTED + 1);
        assert_eq!(truncate_tail("short"), "short");
    }
}
