//! The `local` transport: a GGUF chat model run in-process by llama.cpp (see [`super::local`]),
//! behind the same templated judge as every other backend, so it renders, parses and caches the
//! same way.

use super::chat::{ChatCall, ChatMessage, ChatTransport, Completion};
use super::config::Backend;
use super::http::{Redactor, build_error};
use super::local::{LocalError, LocalModel, LocalSettings};
use super::templated::{BuildTransport, Prepared, TemplatedJudge};
use super::{FaultKind, JudgeBuildError, JudgeConfig, JudgeError, TokenUsage};
use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;

/// The default model file: where `scripts/fetch-model.sh` puts SmolLM2-135M-Instruct.
pub fn default_model_path() -> Option<PathBuf> {
    let home = std::env::var_os("JUDGE_AUDIT_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("judge-audit"))
        })?;
    Some(home.join("models").join("SmolLM2-135M-Instruct.Q4_1.gguf"))
}

/// A judge backed by an in-process GGUF model.
pub type LocalJudge = TemplatedJudge<LocalTransport>;

/// Sends rendered messages to the loaded model.
pub struct LocalTransport {
    model: Arc<LocalModel>,
    /// The model file's path: the cache key's endpoint, so another model file misses the cache.
    endpoint: String,
    redactor: Redactor,
}

impl std::fmt::Debug for LocalTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalTransport")
            .field("model", &self.endpoint)
            .finish()
    }
}

impl BuildTransport for LocalTransport {
    const BACKEND: Backend = Backend::Local;

    /// Load the model (once per judge).
    fn build(
        config: &JudgeConfig,
        prepared: &Prepared,
        _env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, JudgeBuildError> {
        let path = config
            .model_path
            .clone()
            .or_else(default_model_path)
            .ok_or_else(|| {
                build_error(
                    &config.name,
                    "model_path",
                    "no model file given and no HOME",
                )
            })?;
        if !path.is_file() {
            return Err(build_error(
                &config.name,
                "model_path",
                format!(
                    "{} does not exist (run scripts/fetch-model.sh for SmolLM2)",
                    path.display()
                ),
            ));
        }
        let mut settings = LocalSettings::new(path.clone());
        settings.max_tokens = config.max_tokens;
        if let Some(tokens) = &prepared.template.tokens {
            settings.labels.first = tokens.first.clone();
            settings.labels.second = tokens.second.clone();
            settings.labels.tie = tokens.tie.clone();
        }
        let model = LocalModel::load(&settings)
            .map_err(|e| build_error(&config.name, "model_path", e.to_string()))?;
        Ok(LocalTransport {
            model,
            endpoint: path.display().to_string(),
            redactor: Redactor::default(),
        })
    }
}

#[async_trait]
impl ChatTransport for LocalTransport {
    fn backend(&self) -> &'static str {
        "local"
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    async fn complete(&self, call: &ChatCall<'_>) -> Result<Completion, JudgeError> {
        let output = self
            .model
            .judge_messages(
                ChatMessage::system(call.messages),
                ChatMessage::user(call.messages),
            )
            .await
            .map_err(|e: LocalError| JudgeError::Retryable {
                kind: FaultKind::Backend,
                message: e.to_string(),
                retry_after: None,
            })?;
        // In logits mode the text is the winning label; the template's parser has the last word
        // in both modes, so a label the parser cannot read is Invalid, never coerced.
        Ok(Completion {
            text: output.raw,
            usage: Some(TokenUsage {
                input_tokens: output.prompt_tokens,
                output_tokens: output.completion_tokens,
            }),
            label_probs: Some(output.probs),
            ..Completion::default()
        })
    }
}
