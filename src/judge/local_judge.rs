//! The `local` backend: a GGUF chat model run in-process by llama.cpp (see [`super::local`]),
//! behind the same [`Judge`] trait as every other backend.

use super::local::{LocalError, LocalModel, LocalSettings};
use super::parser::VerdictParser;
use super::template::Template;
use super::{FaultKind, Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest};
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
pub struct LocalJudge {
    name: String,
    template: Template,
    parser: VerdictParser,
    model: Arc<LocalModel>,
}

fn invalid(config: &JudgeConfig, field: &str, message: String) -> JudgeBuildError {
    JudgeBuildError::Invalid {
        judge: config.name.clone(),
        field: field.into(),
        message,
    }
}

impl LocalJudge {
    /// Load the model (once per judge) and the template.
    pub fn new(config: &JudgeConfig) -> Result<LocalJudge, JudgeBuildError> {
        let path = config
            .model_path
            .clone()
            .or_else(default_model_path)
            .ok_or_else(|| {
                invalid(
                    config,
                    "model_path",
                    "no model file given and no HOME".into(),
                )
            })?;
        if !path.is_file() {
            return Err(invalid(
                config,
                "model_path",
                format!(
                    "{} does not exist (run scripts/fetch-model.sh for SmolLM2)",
                    path.display()
                ),
            ));
        }
        let template = config
            .load_template()
            .map_err(|e| invalid(config, "template", e.to_string()))?;
        let parser = VerdictParser::for_config(&template, &config.parser)
            .map_err(|e| invalid(config, "parser", e.to_string()))?;
        let mut settings = LocalSettings::new(path);
        settings.max_tokens = config.max_tokens;
        if let Some(tokens) = &template.tokens {
            settings.labels.first = tokens.first.clone();
            settings.labels.second = tokens.second.clone();
            settings.labels.tie = tokens.tie.clone();
        }
        let model = LocalModel::load(&settings)
            .map_err(|e| invalid(config, "model_path", e.to_string()))?;
        Ok(LocalJudge {
            name: config.name.clone(),
            template,
            parser,
            model,
        })
    }
}

#[async_trait]
impl Judge for LocalJudge {
    fn name(&self) -> &str {
        &self.name
    }

    fn simulated(&self) -> bool {
        false
    }

    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let rendered = self
            .template
            .render(&request.prompt, &request.first, &request.second);
        let output = self
            .model
            .judge_messages(rendered.system.as_deref(), &rendered.user)
            .await
            .map_err(|e: LocalError| JudgeError::Retryable {
                kind: FaultKind::Backend,
                message: e.to_string(),
                retry_after: None,
            })?;
        let mut reply: JudgeReply = output.into();
        // In logits mode `raw` is the winning label; the template's parser has the last word in
        // both modes, so a label the parser cannot read is Invalid, never coerced.
        let parsed = self.parser.parse(&reply.raw);
        if parsed != reply.verdict {
            reply.verdict = parsed;
        }
        Ok(reply)
    }
}
