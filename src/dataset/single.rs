//! Single answers, the unit a pointwise judge grades: `{id, prompt, response}` with an optional
//! gold `label` or `score` and a `category`, one JSON object per line. Pairs can be graded
//! pointwise too ([`items_from_pairs`]): each answer alone, its gold taken from `preferred`.
//!
//! Errors name the file, the 1-based line and the field, like the pair loader's.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

use super::{DatasetError, Pair, Preference};

/// What is known about an answer's quality.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gold {
    /// A gold label (e.g. `yes`, `unsafe`, `pass`).
    Label(String),
    /// A gold score (e.g. a mean human rating).
    Score(f64),
    /// The answer is the preferred (`true`) or the other (`false`) answer of its pair.
    Preferred(bool),
}

/// One prompt with one answer to grade.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Unique, stable identifier (for items from pairs: `<pair id>/a` or `/b`).
    pub id: String,
    /// The user turn the answer responds to.
    pub prompt: String,
    /// The answer to grade.
    pub response: String,
    /// Gold, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gold: Option<Gold>,
    /// Free-form category.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The pair the item came from, so statistics can cluster a pair's two answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pair_id: Option<String>,
}

fn invalid(file: &str, line: usize, field: &str, message: impl Into<String>) -> DatasetError {
    DatasetError::Invalid {
        file: file.to_string(),
        line,
        field: field.to_string(),
        message: message.into(),
    }
}

/// Load single-answer items from a JSON Lines file. Blank lines are skipped; ids must be unique;
/// `label` (a string) and `score` (a finite number) are mutually exclusive.
pub fn load_items(path: &Path) -> Result<Vec<Item>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file = path.display().to_string();
    parse_items(text.strip_prefix('\u{feff}').unwrap_or(&text), &file)
}

/// Parse JSON Lines text into items; `file` names the source in errors.
pub fn parse_items(text: &str, file: &str) -> Result<Vec<Item>, DatasetError> {
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(raw).map_err(|e| {
            invalid(
                file,
                line,
                "<json>",
                format!("invalid JSON at column {}", e.column()),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(invalid(
                file,
                line,
                "<json>",
                "expected a JSON object per line",
            ));
        };
        let text_field = |field: &str, required: bool| -> Result<Option<String>, DatasetError> {
            match obj.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
                Some(Value::String(_)) if required => {
                    Err(invalid(file, line, field, "must not be empty"))
                }
                Some(Value::Null) | None if required => Err(invalid(file, line, field, "missing")),
                Some(Value::Null) | None | Some(Value::String(_)) => Ok(None),
                Some(Value::Number(n)) if field == "id" => Ok(Some(n.to_string())),
                Some(other) => Err(invalid(
                    file,
                    line,
                    field,
                    format!("expected a string, got {other}"),
                )),
            }
        };
        let id = text_field("id", true)?.unwrap_or_default();
        let prompt = text_field("prompt", true)?.unwrap_or_default();
        let response = text_field("response", true)?.unwrap_or_default();
        let category = text_field("category", false)?;
        let label = text_field("label", false)?;
        let score = match obj.get("score") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => match n.as_f64().filter(|v| v.is_finite()) {
                Some(v) => Some(v),
                None => return Err(invalid(file, line, "score", "not a finite number")),
            },
            Some(other) => {
                return Err(invalid(
                    file,
                    line,
                    "score",
                    format!("expected a number, got {other}"),
                ));
            }
        };
        let gold = match (label, score) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    file,
                    line,
                    "score",
                    "an item has a gold `label` or a gold `score`, not both",
                ));
            }
            (Some(l), None) => Some(Gold::Label(l)),
            (None, Some(s)) => Some(Gold::Score(s)),
            (None, None) => None,
        };
        if !seen.insert(id.clone()) {
            return Err(invalid(file, line, "id", format!("duplicate id `{id}`")));
        }
        items.push(Item {
            id,
            prompt,
            response,
            gold,
            category,
            pair_id: None,
        });
    }
    Ok(items)
}

/// True when a JSON Lines file holds single answers rather than pairs: its first record has a
/// `response` and none of the pair fields (`response_a`, `chosen`). Anything unreadable is left
/// to the pair loader, whose errors name the problem.
pub fn looks_single(path: &Path) -> bool {
    let is_jsonl = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"));
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let Some(first) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    match serde_json::from_str::<Value>(first) {
        Ok(Value::Object(obj)) => {
            is_jsonl
                && obj.contains_key("response")
                && !["response_a", "response_b", "chosen", "rejected"]
                    .iter()
                    .any(|k| obj.contains_key(*k))
        }
        _ => false,
    }
}

/// Single answers as one-answer pairs (both slots hold the answer, no preference), so the
/// perturbation and plan machinery, which work on pairs, carry them; pointwise judges grade
/// only answer a of each.
pub fn items_as_pairs(items: &[Item]) -> Vec<Pair> {
    items
        .iter()
        .map(|i| Pair {
            id: i.id.clone(),
            prompt: i.prompt.clone(),
            response_a: i.response.clone(),
            response_b: i.response.clone(),
            preferred: None,
            category: i.category.clone(),
            label_kind: None,
        })
        .collect()
}

/// Each answer of each pair as an item of its own (`<id>/a`, `<id>/b`), gold from `preferred`
/// (a tie or no gold gives no gold).
pub fn items_from_pairs(pairs: &[Pair]) -> Vec<Item> {
    let mut items = Vec::with_capacity(pairs.len() * 2);
    for pair in pairs {
        for (side, response, preference) in [
            ("a", &pair.response_a, Preference::A),
            ("b", &pair.response_b, Preference::B),
        ] {
            let gold = match pair.preferred {
                Some(Preference::Tie) | None => None,
                Some(p) => Some(Gold::Preferred(p == preference)),
            };
            items.push(Item {
                id: format!("{}/{side}", pair.id),
                prompt: pair.prompt.clone(),
                response: response.clone(),
                gold,
                category: pair.category.clone(),
                pair_id: Some(pair.id.clone()),
            });
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_scores_and_errors() {
        let text = "{\"id\":\"x1\",\"prompt\":\"Is it true?\",\"response\":\"Water is wet.\",\"label\":\"yes\",\"category\":\"tf\"}\n\n{\"id\":2,\"prompt\":\"Rate\",\"response\":\"ok\",\"score\":4.5}\n{\"id\":\"x3\",\"prompt\":\"p\",\"response\":\"r\"}\n";
        let items = parse_items(text, "items.jsonl").unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[0].gold, Some(Gold::Label("yes".into())));
        assert_eq!(items[0].category.as_deref(), Some("tf"));
        assert_eq!(items[1].id, "2");
        assert_eq!(items[1].gold, Some(Gold::Score(4.5)));
        assert_eq!(items[2].gold, None);
        let err = |t: &str| parse_items(t, "f.jsonl").unwrap_err().to_string();
        assert_eq!(
            err("{\"id\":\"a\",\"prompt\":\"p\"}"),
            "f.jsonl:1: field `response`: missing"
        );
        assert_eq!(
            err("\n{\"id\":\"a\",\"prompt\":\"p\",\"response\":\"r\",\"score\":\"high\"}"),
            "f.jsonl:2: field `score`: expected a number, got \"high\""
        );
        assert!(
            err("{\"id\":\"a\",\"prompt\":\"p\",\"response\":\"r\",\"label\":\"y\",\"score\":1}")
                .contains("not both")
        );
        assert!(err("{\"id\":\"a\",\"prompt\":\"p\",\"response\":\"r\"}\n{\"id\":\"a\",\"prompt\":\"p\",\"response\":\"r\"}").starts_with("f.jsonl:2: field `id`: duplicate"));
        assert!(err("[1]").contains("field `<json>`"));
    }

    #[test]
    fn pairs_become_two_items() {
        let pair = Pair {
            id: "p1".into(),
            prompt: "q".into(),
            response_a: "good".into(),
            response_b: "bad".into(),
            preferred: Some(Preference::A),
            category: Some("c".into()),
            label_kind: None,
        };
        let items = items_from_pairs(std::slice::from_ref(&pair));
        assert_eq!(items[0].id, "p1/a");
        assert_eq!(items[0].gold, Some(Gold::Preferred(true)));
        assert_eq!(items[1].gold, Some(Gold::Preferred(false)));
        assert_eq!(items[1].pair_id.as_deref(), Some("p1"));
        let tie = Pair {
            preferred: Some(Preference::Tie),
            ..pair
        };
        assert!(items_from_pairs(&[tie]).iter().all(|i| i.gold.is_none()));
    }

    /// The shared real sets load whole when present (they are not part of the repository).
    #[test]
    fn shared_pointwise_sets_load() {
        let dir = Path::new("/work/shared/data");
        let yesno = dir.join("pointwise_yesno_statements.jsonl");
        if yesno.exists() {
            let items = load_items(&yesno).unwrap();
            assert_eq!(items.len(), 100);
            assert!(
                items
                    .iter()
                    .all(|i| matches!(&i.gold, Some(Gold::Label(l)) if l == "yes" || l == "no"))
            );
        }
        let tiers = dir.join("pointwise_scale_tiers.jsonl");
        if tiers.exists() {
            let items = load_items(&tiers).unwrap();
            assert_eq!(items.len(), 200);
            assert!(items.iter().all(|i| matches!(i.gold, Some(Gold::Score(_)))));
        }
    }
}
