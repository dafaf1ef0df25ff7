//! Simulated reference judge: seeded, deterministic, with declared biases.
//!
//! A simulated judge makes its decision in a fixed order so that each planted parameter is the
//! expected value of the statistic that measures it:
//! 1. with probability `invalid_rate` it answers something unparseable;
//! 2. when the call carries an artifact it has a preference `p` for, with probability `|p|` it picks
//!    the artifact answer (`p > 0`) or the other one (`p < 0`), so Chen's T equals `p`;
//! 3. with probability `|position_bias|` it picks the first (`> 0`) or second slot, so T(position) on
//!    identical answers equals `position_bias`;
//! 4. otherwise it judges "substance": the gold answer with probability `accuracy`, a tie with
//!    probability `tie_rate`, else the other answer; on identical answers a tie with probability
//!    `tie_rate`, else a fair coin.
//!
//! Each decision draws from an RNG keyed on what the decision is about (the substantive comparison,
//! or the artifact on one answer), never on the call, so an ignored artifact cannot flip a verdict.
//! With probability `noise` a call redraws everything from an RNG keyed on the call itself: that is
//! the judge's run-to-run noise, and it leaves every call's marginal distribution unchanged.

use super::config::SimParams;
use super::{
    Judge, JudgeBuildError, JudgeConfig, JudgeError, JudgeReply, JudgeRequest, Slot, SlotVerdict,
    TokenUsage,
};
use async_trait::async_trait;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

/// A seeded, deterministic judge with declared biases. Always reports itself as simulated.
#[derive(Debug, Clone)]
pub struct SimJudge {
    name: String,
    seed: u64,
    params: SimParams,
}

impl SimJudge {
    /// Build from configuration (`backend = "sim"` with a `[sim]` table).
    pub fn new(config: &JudgeConfig) -> Result<Self, JudgeBuildError> {
        let params = config.sim.clone().ok_or_else(|| JudgeBuildError::Invalid {
            judge: config.name.clone(),
            field: "sim".into(),
            message: "a sim judge needs a [sim] table".into(),
        })?;
        let check = |field: &str, value: f64, low: f64| -> Result<(), JudgeBuildError> {
            if value.is_finite() && (low..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(JudgeBuildError::Invalid {
                    judge: config.name.clone(),
                    field: format!("sim.{field}"),
                    message: format!("{value} is outside [{low}, 1]"),
                })
            }
        };
        check("accuracy", params.accuracy, 0.0)?;
        check("position_bias", params.position_bias, -1.0)?;
        check("noise", params.noise, 0.0)?;
        check("tie_rate", params.tie_rate, 0.0)?;
        check("invalid_rate", params.invalid_rate, 0.0)?;
        for (artifact, value) in &params.artifact_preference {
            check(&format!("artifact_preference.{artifact}"), *value, -1.0)?;
        }
        if params.accuracy + params.tie_rate > 1.0 {
            return Err(JudgeBuildError::Invalid {
                judge: config.name.clone(),
                field: "sim.tie_rate".into(),
                message: "accuracy + tie_rate must not exceed 1".into(),
            });
        }
        Ok(SimJudge {
            name: config.name.clone(),
            seed: config.seed,
            params,
        })
    }

    /// The declared parameters.
    pub fn params(&self) -> &SimParams {
        &self.params
    }

    fn rng(&self, domain: &str, key: &str) -> ChaCha8Rng {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_le_bytes());
        hasher.update(self.name.as_bytes());
        hasher.update([0]);
        hasher.update(domain.as_bytes());
        hasher.update([0]);
        hasher.update(key.as_bytes());
        ChaCha8Rng::from_seed(hasher.finalize().into())
    }

    /// The verdict for `request`, deterministic in (seed, name, request keys).
    pub fn decide(&self, request: &JudgeRequest) -> SlotVerdict {
        let ctx = &request.sim;
        let mut call_rng = self.rng("call", &request.call_id);
        let redraw = call_rng.random::<f64>() < self.params.noise;
        // Under noise every decision comes from the call's own stream; otherwise from streams keyed
        // on what is being decided, shared by every call that decides the same thing.
        let mut stream = |domain: &str, key: &str| -> f64 {
            if redraw {
                call_rng.random::<f64>()
            } else {
                self.rng(domain, key).random::<f64>()
            }
        };

        if stream("invalid", &request.call_id) < self.params.invalid_rate {
            return SlotVerdict::Invalid;
        }
        if let (Some(artifact), Some(slot)) = (&ctx.artifact, ctx.artifact_slot) {
            let preference = self
                .params
                .artifact_preference
                .get(artifact)
                .copied()
                .unwrap_or(0.0);
            if preference != 0.0 && stream("artifact", &ctx.artifact_key) < preference.abs() {
                let chosen = if preference > 0.0 { slot } else { other(slot) };
                return slot_verdict(chosen);
            }
        }
        let bias = self.params.position_bias;
        if bias != 0.0 && stream("position", &ctx.substance_key) < bias.abs() {
            return slot_verdict(if bias > 0.0 {
                Slot::First
            } else {
                Slot::Second
            });
        }
        let u = stream("substance", &ctx.substance_key);
        match ctx.gold_slot {
            Some(gold) if !ctx.same_answer => {
                if u < self.params.accuracy {
                    slot_verdict(gold)
                } else if u < self.params.accuracy + self.params.tie_rate {
                    SlotVerdict::Tie
                } else {
                    slot_verdict(other(gold))
                }
            }
            _ => {
                if u < self.params.tie_rate {
                    SlotVerdict::Tie
                } else if u < self.params.tie_rate + (1.0 - self.params.tie_rate) / 2.0 {
                    SlotVerdict::First
                } else {
                    SlotVerdict::Second
                }
            }
        }
    }
}

fn other(slot: Slot) -> Slot {
    match slot {
        Slot::First => Slot::Second,
        Slot::Second => Slot::First,
    }
}

fn slot_verdict(slot: Slot) -> SlotVerdict {
    match slot {
        Slot::First => SlotVerdict::First,
        Slot::Second => SlotVerdict::Second,
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
        let verdict = self.decide(request);
        let raw = match verdict {
            SlotVerdict::First => "Output (a)",
            SlotVerdict::Second => "Output (b)",
            SlotVerdict::Tie => "Tie",
            SlotVerdict::Invalid => "[simulated unparseable answer]",
        };
        // A crude token count keeps cost and token columns meaningful for demos.
        let input_tokens =
            ((request.prompt.len() + request.first.len() + request.second.len()) / 4) as u64;
        Ok(JudgeReply {
            raw: format!("[simulated] {raw}"),
            verdict,
            usage: Some(TokenUsage {
                input_tokens,
                output_tokens: 3,
            }),
            label_probs: None,
            redacted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::SimContext;
    use crate::judge::config::Backend;
    use std::collections::BTreeMap;

    fn config(params: SimParams) -> JudgeConfig {
        let mut config = JudgeConfig::new("sim-test", Backend::Sim);
        config.seed = 7;
        config.sim = Some(params);
        config
    }

    fn params() -> SimParams {
        SimParams {
            accuracy: 0.8,
            position_bias: 0.0,
            noise: 0.0,
            tie_rate: 0.1,
            invalid_rate: 0.0,
            artifact_preference: BTreeMap::new(),
        }
    }

    fn request(call: &str, ctx: SimContext) -> JudgeRequest {
        JudgeRequest {
            call_id: call.into(),
            prompt: "p".into(),
            first: "x".into(),
            second: "y".into(),
            repeat: 0,
            sim: ctx,
        }
    }

    #[test]
    fn artifact_preference_is_the_expected_tie_detection_score() {
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 0.6);
        let judge = SimJudge::new(&config(p)).unwrap();
        let n = 20_000;
        let mut net = 0i64;
        for i in 0..n {
            let slot = if i % 2 == 0 {
                Slot::First
            } else {
                Slot::Second
            };
            let ctx = SimContext {
                artifact: Some("apology".into()),
                artifact_slot: Some(slot),
                gold_slot: None,
                same_answer: true,
                substance_key: format!("p{i}/same"),
                artifact_key: format!("p{i}/apology"),
            };
            match (judge.decide(&request(&format!("c{i}"), ctx)), slot) {
                (SlotVerdict::First, Slot::First) | (SlotVerdict::Second, Slot::Second) => net += 1,
                (SlotVerdict::First, Slot::Second) | (SlotVerdict::Second, Slot::First) => net -= 1,
                _ => {}
            }
        }
        let t = net as f64 / n as f64;
        // Binomial-type sd of the mean is about 0.006 here; 0.03 is five of them.
        assert!((t - 0.6).abs() < 0.03, "T = {t}");
    }

    #[test]
    fn ignored_artifact_never_flips_without_noise() {
        let judge = SimJudge::new(&config(params())).unwrap();
        for i in 0..500 {
            let base = SimContext {
                artifact: None,
                artifact_slot: None,
                gold_slot: Some(Slot::First),
                same_answer: false,
                substance_key: format!("p{i}/ab"),
                artifact_key: String::new(),
            };
            let mut shifted = base.clone();
            shifted.artifact = Some("halo".into());
            shifted.artifact_slot = Some(Slot::Second);
            shifted.artifact_key = format!("p{i}/halo/b");
            assert_eq!(
                judge.decide(&request(&format!("base{i}"), base)),
                judge.decide(&request(&format!("shift{i}"), shifted))
            );
        }
    }

    #[test]
    fn noise_makes_repeats_disagree_at_a_bounded_rate() {
        let mut p = params();
        p.noise = 0.2;
        let judge = SimJudge::new(&config(p)).unwrap();
        let n = 10_000;
        let mut differ = 0;
        for i in 0..n {
            let ctx = SimContext {
                gold_slot: Some(Slot::First),
                substance_key: format!("p{i}/ab"),
                ..SimContext::default()
            };
            let r0 = judge.decide(&request(&format!("c{i}/r0"), ctx.clone()));
            let r1 = judge.decide(&request(&format!("c{i}/r1"), ctx));
            differ += usize::from(r0 != r1);
        }
        // P(differ) = 1 - P(same); with outcome probabilities (0.8, 0.1, 0.1) and independent redraws
        // with probability 0.2 each: P(same) = 0.64 + 0.36 * 0.66 = 0.8776, so P(differ) = 0.1224.
        let rate = differ as f64 / n as f64;
        assert!((rate - 0.1224).abs() < 0.02, "rate = {rate}");
    }

    #[test]
    fn rejects_out_of_range_parameters() {
        let mut p = params();
        p.artifact_preference.insert("apology".into(), 1.5);
        let err = SimJudge::new(&config(p)).unwrap_err().to_string();
        assert!(err.contains("sim.artifact_preference.apology"), "{err}");
    }
}
