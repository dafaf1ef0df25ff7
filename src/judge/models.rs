//! The local model registry, `judges/models.toml`, embedded at build time: which GGUF file a
//! `local` judge's `model` names, and where `scripts/fetch-model.sh NAME` caches it. The script
//! reads the same file, so a judge file and the fetch command cannot disagree on a model's file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// File name of the registry in `judges/`; judge-file loaders skip it (it is not a judge).
pub const REGISTRY_FILE: &str = "models.toml";

/// The registry as shipped with this build.
const REGISTRY: &str = include_str!("../../judges/models.toml");

/// One registered model (the fields a judge needs; the script also reads the wheel parts).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RegisteredModel {
    /// File name in the model cache.
    pub file: String,
    /// Size in bytes of the assembled file.
    pub size: u64,
    /// sha256 of the assembled file.
    pub sha256: String,
    /// License of the weights.
    pub license: String,
}

#[derive(Deserialize)]
struct Registry {
    default: String,
    models: BTreeMap<String, RegisteredModel>,
}

fn registry() -> Registry {
    // The shipped file is checked by this module's tests, so a parse failure is a build defect.
    toml::from_str(REGISTRY).expect("judges/models.toml (embedded) parses")
}

/// Names of the registered models, in registry order (sorted).
pub fn names() -> Vec<String> {
    registry().models.into_keys().collect()
}

/// The registry entry a judge's `model` refers to: a registered name (`qwen2.5-coder-1.5b`),
/// or a file name with or without `.gguf`. An empty `model` means the registry's default
/// (SmolLM2). `None` when nothing matches.
pub fn lookup(model: &str) -> Option<(String, RegisteredModel)> {
    let registry = registry();
    let wanted = if model.is_empty() {
        registry.default.as_str()
    } else {
        model
    };
    registry.models.iter().find_map(|(name, m)| {
        let stem = m.file.strip_suffix(".gguf").unwrap_or(&m.file);
        (name == wanted || m.file == wanted || stem == wanted).then(|| (name.clone(), m.clone()))
    })
}

/// The model cache: `$JUDGE_AUDIT_HOME/models`, else `~/.cache/judge-audit/models`, as
/// `scripts/fetch-model.sh` uses it. `None` without either variable.
pub fn cache_dir() -> Option<PathBuf> {
    let home = std::env::var_os("JUDGE_AUDIT_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("judge-audit"))
        })?;
    Some(home.join("models"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_registry_parses_and_its_default_is_smollm2() {
        let (name, m) = lookup("").unwrap();
        assert_eq!(name, "smollm2-135m");
        assert_eq!(m.file, "SmolLM2-135M-Instruct.Q4_1.gguf");
        assert_eq!(m.size, 98_362_432);
        assert_eq!(
            names(),
            ["qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b", "smollm2-135m"]
        );
    }

    #[test]
    fn a_model_is_found_by_name_file_or_stem_and_nothing_else() {
        let by_name = lookup("qwen2.5-coder-1.5b").unwrap();
        assert_eq!(by_name.1.file, "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf");
        assert_eq!(
            by_name.1.sha256,
            "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
        );
        assert_eq!(
            lookup("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf").unwrap().0,
            "qwen2.5-coder-1.5b"
        );
        // The stem smollm2-local.toml has always used.
        assert_eq!(
            lookup("SmolLM2-135M-Instruct.Q4_1").unwrap().0,
            "smollm2-135m"
        );
        assert!(lookup("gpt-4o").is_none());
        assert!(lookup("qwen2.5").is_none());
    }
}
