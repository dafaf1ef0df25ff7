#![warn(missing_docs)]
//! judge-audit: does an LLM judge (or a jury of judges) decide on substance, or can superficial
//! artifacts move its verdict?
//!
//! # The pipeline
//!
//! One way, no cycles; each stage takes plain data and returns plain data:
//!
//! | stage | module | what it does |
//! |---|---|---|
//! | dataset | [`dataset`] | [`dataset::Pair`]s from JSONL / CSV (and the built-in sample set) |
//! | perturb | [`perturb`] | the artifact catalog ([`perturb::Catalog`]) and the seeded texts it makes |
//! | design | [`design`] | the [`design::Plan`]: which judge is asked which pair, in which order, how often |
//! | run | [`run`] | executing the plan against [`judge::Judge`] backends: limits, retries, cache, the run store |
//! | stats | [`analyze`], [`stats`] | estimates, intervals and tests over the verdicts (pure functions in `stats`) |
//! | report | [`report`] | the analysed [`report::Summary`] as JSON, Markdown, CSV, HTML and CI formats |
//!
//! [`audit`] strings the stages together from an `audit.toml`; [`Audit`] is the same sequence
//! as a builder, and what the CLI's `run` and `demo` go through.
//!
//! # Auditing your own judge
//!
//! Any type implementing [`judge::Judge`] can be audited. This one always prefers the longer
//! answer (and calls equal lengths a tie), so padding an answer (the `verbosity` artifact) wins
//! it every tie-detection call, while the order of two identical answers means nothing to it.
//! The run store stays in memory: nothing is written to disk.
//!
//! ```
//! use judge_audit::judge::{Judge, JudgeError, JudgeReply, JudgeRequest, SlotVerdict};
//! use judge_audit::{Audit, Store};
//!
//! struct PrefersLonger;
//!
//! #[judge_audit::judge::async_trait]
//! impl Judge for PrefersLonger {
//!     fn name(&self) -> &str {
//!         "prefers-longer"
//!     }
//!     fn simulated(&self) -> bool {
//!         false
//!     }
//!     async fn judge(&self, request: &JudgeRequest) -> Result<JudgeReply, JudgeError> {
//!         let (first, second) = (request.first.len(), request.second.len());
//!         let verdict = match first.cmp(&second) {
//!             std::cmp::Ordering::Greater => SlotVerdict::First,
//!             std::cmp::Ordering::Less => SlotVerdict::Second,
//!             std::cmp::Ordering::Equal => SlotVerdict::Tie,
//!         };
//!         Ok(JudgeReply {
//!             raw: format!("{verdict:?}"),
//!             verdict,
//!             usage: None,
//!             label_probs: None,
//!             redacted: false,
//!             grades: None,
//!         })
//!     }
//! }
//!
//! let summary = Audit::new() // the built-in pairs
//!     .artifacts(["verbosity", "position"])
//!     .judge(PrefersLonger)
//!     .limit(12)
//!     .bootstrap_resamples(200)
//!     .store(Store::memory())
//!     .run()?;
//!
//! let judge = &summary.judges[0];
//! let t = |id: &str| {
//!     let a = judge.artifacts.iter().find(|a| a.artifact == id).unwrap();
//!     a.tie_detection.score.estimate.unwrap()
//! };
//! assert_eq!(judge.name, "prefers-longer");
//! assert_eq!(t("verbosity"), 1.0); // the padded answer always wins
//! assert_eq!(t("position"), 0.0); // no first-slot preference
//! # Ok::<(), judge_audit::Error>(())
//! ```
//!
//! `examples/audit_file.rs` runs the same judge against a JSONL file
//! (`cargo run --example audit_file`).

pub mod analyze;
pub mod audit;
pub mod batch;
pub mod builder;
pub mod dataset;
pub mod design;
pub mod harden;
pub mod judge;
pub mod perturb;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod stats;

pub use builder::{Audit, Error, Finished, Store};
