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

use super::config::{Backend, ConfigError};
use super::parser::VerdictParser;
use super::template::Template;
use super::{
    FaultKind, Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest,
    LabelProbs, SlotVerdict, TokenUsage,
};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Longest piece of program output quoted in an error message.
const MAX_QUOTED: usize = 300;

/// Exit status that marks a failure as permanent (retrying will not help).
pub const PERMANENT_EXIT_CODE: i32 = 2;

/// A judge implemented by a local program.
#[derive(Debug)]
pub struct CommandJudge {
    name: String,
    model: String,
    program: PathBuf,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    cwd: Option<PathBuf>,
    temperature: f64,
    max_tokens: u32,
    timeout: Duration,
    template: Template,
    parser: VerdictParser,
}

fn build_error(judge: &str, field: &str, message: impl Into<String>) -> JudgeBuildError {
    JudgeBuildError::Invalid {
        judge: judge.to_string(),
        field: field.to_string(),
        message: message.into(),
    }
}

fn config_build_error(judge: &str, err: ConfigError) -> JudgeBuildError {
    let field = err.field().unwrap_or("template").to_string();
    build_error(judge, &field, err.to_string())
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
}

/// A verdict keyword (`first`, `a`, `1`, `second`, `b`, `2`, `tie`, `c`, `draw`, `0`, `invalid`),
/// case-insensitive; `None` for anything else.
pub fn verdict_keyword(text: &str) -> Option<SlotVerdict> {
    match text.trim().to_ascii_lowercase().as_str() {
        "first" | "a" | "1" => Some(SlotVerdict::First),
        "second" | "b" | "2" => Some(SlotVerdict::Second),
        "tie" | "c" | "draw" | "0" => Some(SlotVerdict::Tie),
        "invalid" => Some(SlotVerdict::Invalid),
        _ => None,
    }
}

impl CommandJudge {
    /// Build from configuration (`backend = "command"`).
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        let name = &config.name;
        if config.backend != Backend::Command {
            return Err(build_error(name, "backend", "not a command judge"));
        }
        config.validate().map_err(|e| config_build_error(name, e))?;
        let template = config
            .load_template()
            .map_err(|e| config_build_error(name, e))?;
        let parser = VerdictParser::for_config(&template, &config.parser)
            .map_err(|e| build_error(name, &format!("parser.{}", e.field), e.message))?;
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
        Ok(Self {
            name: name.clone(),
            model: config.model.clone(),
            program,
            args,
            env: config.env.clone(),
            cwd,
            temperature: config.temperature,
            max_tokens: config.max_tokens,
            timeout: Duration::from_secs_f64(config.timeout_secs),
            template,
            parser,
        })
    }

    /// The program and arguments, as run.
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The folder the program runs in (`None`: the current folder).
    pub fn working_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// The prompt template in use.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The JSON written to the program's stdin for `request`.
    pub fn input_json(&self, request: &JudgeRequest) -> String {
        let rendered = self
            .template
            .render(&request.prompt, &request.first, &request.second);
        let input = CommandInput {
            call_id: &request.call_id,
            prompt: &request.prompt,
            first: &request.first,
            second: &request.second,
            repeat: request.repeat,
            system: rendered.system.as_deref(),
            user: &rendered.user,
            model: &self.model,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
        };
        serde_json::to_string(&input).expect("strings and numbers serialize")
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
        let mut stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
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
                stdout.read_to_end(&mut out),
                stderr.read_to_end(&mut err)
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
        read_out.map_err(io_failure)?;
        read_err.map_err(io_failure)?;
        let status = status.map_err(io_failure)?;
        Ok(Finished {
            status,
            stdout,
            stderr,
        })
    }

    /// Turn a finished program's output into a reply or an error.
    fn interpret(&self, finished: Finished) -> Result<JudgeReply, JudgeError> {
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
                            quote(text)
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
                            quote(text)
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
            return Err(self.failure(&finished, permanent, &format!("error: {}", quote(&message))));
        }
        if !finished.status.success() {
            let permanent = finished.status.code() == Some(PERMANENT_EXIT_CODE);
            let stderr = String::from_utf8_lossy(&finished.stderr);
            let detail = if stderr.trim().is_empty() {
                "(no stderr)".to_string()
            } else {
                format!("stderr: {}", quote_tail(stderr.trim()))
            };
            return Err(self.failure(&finished, permanent, &detail));
        }
        let Some(output) = output else {
            // Plain text: a model's reply, parsed like one. Blank text is an invalid verdict.
            return Ok(JudgeReply {
                raw: stdout.to_string(),
                verdict: self.parser.parse(text),
                usage: None,
                label_probs: None,
            });
        };
        let (raw, verdict) = match (&output.verdict, output.raw) {
            (Some(v), raw) => {
                let verdict = verdict_keyword(v).unwrap_or_else(|| self.parser.parse(v));
                (raw.unwrap_or_else(|| v.clone()), verdict)
            }
            (None, Some(raw)) => {
                let verdict = self.parser.parse(&raw);
                (raw, verdict)
            }
            (None, None) => {
                return Err(JudgeError::Permanent {
                    kind: FaultKind::Backend,
                    message: format!(
                        "`{}` printed JSON with neither `verdict` nor `raw`: {}",
                        self.command_line(),
                        quote(text)
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
        Ok(JudgeReply {
            raw,
            verdict,
            usage: output.usage.map(|u| TokenUsage {
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
            }),
            label_probs,
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

fn quote(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_QUOTED) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

/// The last `MAX_QUOTED` characters (a traceback's end says what went wrong).
fn quote_tail(text: &str) -> String {
    let count = text.chars().count();
    if count <= MAX_QUOTED {
        return text.to_string();
    }
    let skip = count - MAX_QUOTED;
    let start = text.char_indices().nth(skip).map_or(0, |(i, _)| i);
    format!("…{}", &text[start..])
}

#[async_trait]
impl Judge for CommandJudge {
    fn name(&self) -> &str {
        &self.name
    }
    fn simulated(&self) -> bool {
        false
    }
    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let input = self.input_json(request);
        let finished = self.run(input.as_bytes()).await?;
        self.interpret(finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let head = quote(&long);
        assert!(head.starts_with("abc") && head.ends_with('…'));
        assert_eq!(head.chars().count(), MAX_QUOTED + 1);
        let tail = quote_tail(&long);
        assert!(tail.starts_with('…'));
        assert!(tail.ends_with(&long[1000 - 10..]));
        assert_eq!(tail.chars().count(), MAX_QUOTED + 1);
        assert_eq!(quote_tail("short"), "short");
    }
}
