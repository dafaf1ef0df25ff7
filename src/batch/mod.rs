//! Audits past one machine: plans split into shards that independent processes run, the merge
//! of their run directories into one, and OpenAI batch files for self-hosted batch executors.
//!
//! Every route ends in ordinary call records in an ordinary run store, so analysis, the cache,
//! `report` and `compare` do not know how a call was made.

pub mod file;
pub mod merge;
pub mod provider;
pub mod shard;
