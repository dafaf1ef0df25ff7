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

/// The default model file: where `scripts/fetch-model.sh` puts the registry's default model
/// (SmolLM2-135M-Instruct).
pub fn default_model_path() -> Option<PathBuf> {
    let (_, model) = super::models::lookup("")?;
    Some(super::models::cache_dir()?.join(model.file))
}

/// The file a judge without `model_path` loads: the registered model its `model` names
/// (`judges/models.toml`; an empty `model` is the default, SmolLM2) in the model cache. A name
/// the registry does not know is an error rather than a silent SmolLM2, so the model recorded
/// in the report is the model that judged.
fn registered_model_path(
    config: &JudgeConfig,
) -> Result<(PathBuf, Option<String>), JudgeBuildError> {
    let (name, model) = super::models::lookup(&config.model).ok_or_else(|| {
        build_error(
            &config.name,
            "model",
            format!(
                "`{}` is not a registered local model (known: {}); set `model_path` to use another GGUF file",
                config.model,
                super::models::names().join(", ")
            ),
        )
    })?;
    let dir = super::models::cache_dir().ok_or_else(|| {
        build_error(
            &config.name,
            "model_path",
            "no model file given and no HOME",
        )
    })?;
    Ok((dir.join(model.file), Some(name)))
}

/// A judge backed by an in-process GGUF model.
pub type LocalJudge = TemplatedJudge<LocalTransport>;

/// Sends rendered messages to the loaded model.
pub struct LocalTransport {
    model: Arc<LocalModel>,
    /// The model file's path and the prompt-evaluation step: the cache key's endpoint, so
    /// another model file misses the cache, and so does an answer from an engine that
    /// evaluated prompts in other steps (its log-probabilities differ, by 0.28 nats measured
    /// on SmolLM2 between one whole-prompt step and 64-token steps).
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
        let (path, registered) = match &config.model_path {
            Some(path) => (path.clone(), None),
            None => registered_model_path(config)?,
        };
        if !path.is_file() {
            let fetch = match &registered {
                Some(name) => format!("run scripts/fetch-model.sh {name}"),
                None => "check `model_path`".to_string(),
            };
            return Err(build_error(
                &config.name,
                "model_path",
                format!("{} does not exist ({fetch})", path.display()),
            ));
        }
        let mut settings = LocalSettings::new(path.clone());
        settings.max_tokens = config.max_tokens;
        if config.is_pointwise() {
            // A grade is read from generated text (a rating, a label, a JSON rubric), not from
            // the logits of pairwise label tokens.
            settings.mode = super::local::LocalMode::Generate;
        }
        if let Some(tokens) = &prepared.template.tokens {
            settings.labels.first = tokens.first.clone();
            settings.labels.second = tokens.second.clone();
            settings.labels.tie = tokens.tie.clone();
        }
        let model = LocalModel::load(&settings)
            .map_err(|e| build_error(&config.name, "model_path", e.to_string()))?;
        Ok(LocalTransport {
            model,
            endpoint: format!("{}#eval-steps-{}", path.display(), settings.eval_chunk),
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
