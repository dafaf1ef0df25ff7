//! judge-audit: does an LLM judge (or a jury of judges) decide on substance, or can superficial
//! artifacts move its verdict?
//!
//! The crate is a one-way pipeline; each stage is a module with a narrow typed interface:
//!
//! `dataset` (pairs) → `perturb` (artifact texts) → `design` (the plan of judge calls) →
//! `run` (executing the plan against `judge` backends) → `analyze` (statistics over verdicts,
//! built from the pure functions in `stats`) → `report` (JSON, Markdown, CSV, HTML).

pub mod analyze;
pub mod audit;
pub mod batch;
pub mod dataset;
pub mod design;
pub mod harden;
pub mod judge;
pub mod perturb;
pub mod report;
pub mod reproduce;
pub mod run;
pub mod stats;
