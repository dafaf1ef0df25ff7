//! JSON Lines: one object per line, schema detected per record.

use super::{
    Collector, DatasetError, Pair, Preference, RecordError, chosen_on_b, optional_text,
    require_text,
};
use serde_json::{Map, Value};

/// The record shapes the loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schema {
    /// `{id, prompt, response_a, response_b, preferred?, category?, label_kind?}`.
    Native,
    /// `{prompt, chosen, rejected, id?, subset?, category?}`.
    RewardBench,
    /// `{pair_id, question, response_A, response_B, label}`.
    JudgeBench,
}

/// Parse every non-blank line of `bytes` (BOM already stripped) into `collector`.
pub(super) fn parse(
    bytes: &[u8],
    stem: &str,
    seed: &str,
    collector: &mut Collector<'_>,
) -> Result<(), DatasetError> {
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        // Decode per line so one bad byte costs one record, not the file.
        let text = match std::str::from_utf8(raw) {
            Ok(text) => text,
            Err(e) => {
                let message = format!("invalid UTF-8 at byte {} of the line", e.valid_up_to() + 1);
                collector.accept(line, Err(RecordError::new("<json>", message)))?;
                continue;
            }
        };
        if text.trim().is_empty() {
            continue;
        }
        collector.accept(line, parse_record(text, line, stem, seed))?;
    }
    Ok(())
}

/// Parse one line into a pair.
fn parse_record(text: &str, line: usize, stem: &str, seed: &str) -> Result<Pair, RecordError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        // serde_json appends "at line 1 column N"; the line is always 1 here, so keep the column.
        let full = e.to_string();
        let reason = full
            .rsplit_once(" at line ")
            .map_or(full.as_str(), |(r, _)| r);
        RecordError::new(
            "<json>",
            format!("invalid JSON at column {}: {reason}", e.column()),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(RecordError::new(
            "<json>",
            format!(
                "expected a JSON object per line (JSON Lines), got {}",
                type_name(&value)
            ),
        ));
    };
    match detect(&obj) {
        Schema::Native => native(&obj),
        Schema::RewardBench => reward_bench(&obj, line, stem, seed),
        Schema::JudgeBench => judge_bench(&obj),
    }
}

/// Pick the schema from distinctive keys. Anything unrecognised is treated as native so the
/// error names the native field that is missing.
fn detect(obj: &Map<String, Value>) -> Schema {
    let has = |k: &str| obj.contains_key(k);
    if has("response_a") || has("response_b") {
        Schema::Native
    } else if has("chosen") || has("rejected") {
        Schema::RewardBench
    } else if has("response_A") || has("response_B") || has("pair_id") || has("question") {
        Schema::JudgeBench
    } else {
        Schema::Native
    }
}

fn native(obj: &Map<String, Value>) -> Result<Pair, RecordError> {
    let id = match id_field(obj, "id")? {
        Some(id) => id,
        None => return Err(RecordError::new("id", "is missing")),
    };
    Ok(Pair {
        id,
        prompt: required_string(obj, "prompt")?,
        response_a: required_string(obj, "response_a")?,
        response_b: required_string(obj, "response_b")?,
        preferred: match optional_string(obj, "preferred")? {
            Some(p) => {
                Preference::parse_optional(&p).map_err(|m| RecordError::new("preferred", m))?
            }
            None => None,
        },
        category: optional_text(optional_string(obj, "category")?),
        label_kind: optional_text(optional_string(obj, "label_kind")?),
    })
}

fn reward_bench(
    obj: &Map<String, Value>,
    line: usize,
    stem: &str,
    seed: &str,
) -> Result<Pair, RecordError> {
    let id = id_field(obj, "id")?.unwrap_or_else(|| format!("{stem}-{line}"));
    let prompt = required_string(obj, "prompt")?;
    let chosen = required_string(obj, "chosen")?;
    let rejected = required_string(obj, "rejected")?;
    let subset = optional_text(optional_string(obj, "subset")?);
    let category = optional_text(optional_string(obj, "category")?);
    let label_kind = optional_text(optional_string(obj, "label_kind")?);
    let (response_a, response_b, preferred) = if chosen_on_b(seed, &id) {
        (rejected, chosen, Preference::B)
    } else {
        (chosen, rejected, Preference::A)
    };
    Ok(Pair {
        id,
        prompt,
        response_a,
        response_b,
        preferred: Some(preferred),
        // RewardBench calls its category `subset`; accept either, `subset` first.
        category: subset.or(category),
        label_kind,
    })
}

fn judge_bench(obj: &Map<String, Value>) -> Result<Pair, RecordError> {
    let id = match id_field(obj, "pair_id")? {
        Some(id) => id,
        None => return Err(RecordError::new("pair_id", "is missing")),
    };
    let prompt = required_string(obj, "question")?;
    let response_a = required_string(obj, "response_A")?;
    let response_b = required_string(obj, "response_B")?;
    let preferred = match optional_string(obj, "label")? {
        None => None,
        Some(label) => Some(match label.trim() {
            "A>B" => Preference::A,
            "B>A" => Preference::B,
            "A=B" => Preference::Tie,
            _ => {
                return Err(RecordError::new(
                    "label",
                    format!("expected `A>B`, `B>A` or `A=B`, got `{label}`"),
                ));
            }
        }),
    };
    Ok(Pair {
        id,
        prompt,
        response_a,
        response_b,
        // JudgeBench labels objective correctness, i.e. which answer is better.
        label_kind: preferred.map(|_| "helpfulness".to_string()),
        preferred,
        category: optional_text(optional_string(obj, "category")?),
    })
}

/// An id: a non-blank string or a non-negative integer (RewardBench uses integer ids).
/// `Ok(None)` when absent or null.
pub(super) fn id_field(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => require_text(field, s.clone()).map(Some),
        Some(Value::Number(n)) if n.is_u64() || n.is_i64() => Ok(Some(n.to_string())),
        Some(other) => Err(RecordError::new(
            field,
            format!("expected a string or an integer, got {}", type_name(other)),
        )),
    }
}

/// A string field that must be present and not blank.
fn required_string(obj: &Map<String, Value>, field: &str) -> Result<String, RecordError> {
    match optional_string(obj, field)? {
        Some(s) => require_text(field, s),
        None => Err(RecordError::new(field, "is missing")),
    }
}

/// A string field that may be absent or null.
pub(super) fn optional_string(
    obj: &Map<String, Value>,
    field: &str,
) -> Result<Option<String>, RecordError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(RecordError::new(
            field,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
