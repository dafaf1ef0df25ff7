//! Simulated reference judge.
use super::{Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest};
use async_trait::async_trait;

/// A seeded, deterministic judge with declared biases.
pub struct SimJudge {
    name: String,
}

impl SimJudge {
    /// Build from configuration.
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        Ok(Self {
            name: config.name.clone(),
        })
    }
}

#[async_trait]
impl Judge for SimJudge {
    fn name(&self) -> &str {
        &self.name
    }
    fn simulated(&self) -> bool {
        true
    }
    async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
        let _ = request;
        todo!()
    }
}
