//! OpenAI-compatible chat-completions backend.
use super::{Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest};
use async_trait::async_trait;

/// A judge behind an OpenAI-compatible `/chat/completions` endpoint.
pub struct OpenAiJudge {
    name: String,
}

impl OpenAiJudge {
    /// Build from configuration.
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        Ok(Self {
            name: config.name.clone(),
        })
    }
}

#[async_trait]
impl Judge for OpenAiJudge {
    fn name(&self) -> &str {
        &self.name
    }
    fn simulated(&self) -> bool {
        false
    }
    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let _ = request;
        todo!("judge helper")
    }
}
