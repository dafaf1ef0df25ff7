//! LLM-rewritten artifacts (`kind = "rewrite"`): the instruction sent to the rewriter, the key a
//! rewrite is stored and cached under, and the deterministic meaning guards every rewrite must
//! pass before it may count towards an artifact's estimates.
//!
//! The calls themselves happen in the run layer (`run::rewrites`), before any judge call; this
//! module is pure so that a stored run re-renders from its stored rewrites alone.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// Why an item of a rewrite artifact has no rewrite to measure: the rewriter was not called
/// (no `run` yet, or its call failed; a resume retries it).
pub const NOT_REWRITTEN: &str = "no stored rewrite";

/// Placeholder for the answer in an instruction template.
pub const ANSWER: &str = "{answer}";

/// Largest accepted `max_length_percent` (a rewrite 10x the original is no longer a restyle).
pub const MAX_LENGTH_PERCENT: u32 = 1000;

/// The instruction for one answer: `{answer}` replaced by the answer, every `{name}` of
/// `params` by its value. Params are substituted first, so an answer that happens to contain
/// `{language}` is sent verbatim.
pub fn render_instruction(
    template: &str,
    params: &BTreeMap<String, String>,
    answer: &str,
) -> String {
    let mut out = template.to_string();
    for (k, v) in params {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out.replace(ANSWER, answer)
}

/// Hex SHA-256 of the instruction template (stored with every rewrite, part of its key).
pub fn instruction_hash(template: &str) -> String {
    hex::encode(Sha256::digest(template.as_bytes()))
}

/// The store and cache key of one rewrite: everything that determines the rewriter's answer
/// (rewriter identity, model, instruction, parameters, the original text). Two artifacts or two
/// runs asking the same thing share it, so the question is never paid for twice.
pub fn rewrite_key(
    rewriter: &str,
    model: &str,
    instruction_hash: &str,
    params: &BTreeMap<String, String>,
    original: &str,
) -> String {
    let mut h = Sha256::new();
    for part in [rewriter, model, instruction_hash] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(serde_json::to_string(params).expect("string maps serialize"));
    h.update([0u8]);
    h.update(original.as_bytes());
    hex::encode(h.finalize())
}

/// Guards an artifact may switch off (`skip_guards`): the English refusal keywords mean nothing
/// in a translation, and a restyle into another script has no capitalised names to compare.
pub const SKIPPABLE_GUARDS: &[&str] = &["refusal", "names"];

/// The settings of the meaning guard: length bounds in percent of the original's length (in
/// chars), and which optional guards apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LengthBounds {
    /// Shortest accepted rewrite.
    pub min_percent: u32,
    /// Longest accepted rewrite.
    pub max_percent: u32,
    /// Check that a refusal is neither added nor removed (English keywords).
    pub refusal: bool,
    /// Check for new capitalised names.
    pub names: bool,
}

/// Why a rewrite failed the deterministic guards (the first failing guard). The text is what the
/// report shows and what failures are counted by.
pub fn guard(original: &str, rewritten: &str, bounds: LengthBounds) -> Option<String> {
    let (a, b) = (original.chars().count().max(1), rewritten.chars().count());
    if rewritten.trim().is_empty() {
        return Some("empty rewrite".into());
    }
    let percent = 100 * b / a;
    if percent < bounds.min_percent as usize || percent > bounds.max_percent as usize {
        return Some(format!(
            "length ratio {percent}% outside [{}%, {}%]",
            bounds.min_percent, bounds.max_percent
        ));
    }
    let new = |f: fn(&str) -> BTreeSet<String>| -> Vec<String> {
        let old = f(original);
        f(rewritten)
            .into_iter()
            .filter(|x| !old.contains(x))
            .collect()
    };
    let numbers = new(numbers);
    if !numbers.is_empty() {
        return Some(format!("new number {}", numbers[0]));
    }
    let urls = new(urls);
    if !urls.is_empty() {
        return Some(format!("new URL {}", urls[0]));
    }
    // Named entities: capitalised words that are not sentence-initial. A word the original has
    // in any case is not new (a restyle may capitalise "paris" or start a sentence with it).
    let lower: BTreeSet<String> = words(original).map(|w| w.to_lowercase()).collect();
    if let Some(name) = entities(rewritten)
        .into_iter()
        .find(|e| bounds.names && !lower.contains(&e.to_lowercase()))
    {
        return Some(format!("new name {name}"));
    }
    if bounds.refusal && refuses(original) != refuses(rewritten) {
        return Some(if refuses(rewritten) {
            "refusal added".into()
        } else {
            "refusal removed".into()
        });
    }
    None
}

/// The numbers in `text` (digit runs, with inner `.`/`,` kept so "3.5" and "1,000" are one).
fn numbers(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let inner = (c == '.' || c == ',')
            && !cur.is_empty()
            && chars.get(i + 1).is_some_and(|n| n.is_ascii_digit());
        if c.is_ascii_digit() || inner {
            cur.push(c);
        } else if !cur.is_empty() {
            out.insert(std::mem::take(&mut cur).replace(',', ""));
        }
    }
    if !cur.is_empty() {
        out.insert(cur.replace(',', ""));
    }
    out
}

/// The URLs in `text` (`http://`, `https://`, `www.`), trailing punctuation removed.
fn urls(text: &str) -> BTreeSet<String> {
    text.split_whitespace()
        .filter(|w| w.contains("http://") || w.contains("https://") || w.starts_with("www."))
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '/')
                .to_string()
        })
        .collect()
}

fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '-'))
        .filter(|w| !w.is_empty())
}

/// Capitalised words that do not start a sentence, line or list item: a cheap named-entity
/// detector that never needs a model. "I" and its contractions are not names.
fn entities(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut sentence_start = true;
    for token in text.split_whitespace() {
        let word = token.trim_matches(|c: char| !c.is_alphanumeric());
        let capital = word.chars().next().is_some_and(char::is_uppercase);
        let is_i = word == "I" || word.starts_with("I'");
        if capital && !sentence_start && !is_i && word.chars().count() > 1 {
            out.push(word.to_string());
        }
        if !word.is_empty() {
            sentence_start = false;
        }
        if token.ends_with(['.', '!', '?', ':', ';'])
            || token.starts_with(['-', '*', '#', '>'])
            || token.chars().all(|c| !c.is_alphanumeric())
        {
            sentence_start = true;
        }
    }
    out
}

/// Keywords of a refusal: an answer that declines to help. Checked on both texts so a rewrite
/// cannot turn a refusal into compliance (or back) unnoticed.
const REFUSAL: &[&str] = &[
    "i can't",
    "i cannot",
    "i can not",
    "i won't",
    "i will not",
    "i'm unable",
    "i am unable",
    "i'm sorry",
    "i am sorry",
    "i must decline",
    "i refuse",
    "not able to help",
];

fn refuses(text: &str) -> bool {
    let t = text.to_lowercase().replace('’', "'");
    REFUSAL.iter().any(|k| t.contains(k))
}

/// Byte ranges of `rewritten` whose words are not in the original (a word-level longest common
/// subsequence), merged across the whitespace between them: what the report marks as changed.
/// Long texts fall back to the span between the common prefix and suffix.
pub fn changed_ranges(original: &str, rewritten: &str) -> Vec<std::ops::Range<usize>> {
    let tokens = |t: &str| -> Vec<(usize, usize)> {
        let mut out = Vec::new();
        let mut start = None;
        for (i, c) in t.char_indices() {
            match (c.is_whitespace(), start) {
                (false, None) => start = Some(i),
                (true, Some(s)) => {
                    out.push((s, i));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            out.push((s, t.len()));
        }
        out
    };
    let (a, b) = (tokens(original), tokens(rewritten));
    let word = |t: &str, r: (usize, usize)| t[r.0..r.1].to_string();
    let aw: Vec<String> = a.iter().map(|&r| word(original, r)).collect();
    let bw: Vec<String> = b.iter().map(|&r| word(rewritten, r)).collect();
    let mut keep = vec![false; b.len()];
    if a.len().saturating_mul(b.len()) <= 4_000_000 {
        // lcs[i][j] = LCS length of aw[i..] and bw[j..].
        let (n, m) = (aw.len(), bw.len());
        let mut lcs = vec![0u32; (n + 1) * (m + 1)];
        for i in (0..n).rev() {
            for j in (0..m).rev() {
                lcs[i * (m + 1) + j] = if aw[i] == bw[j] {
                    lcs[(i + 1) * (m + 1) + j + 1] + 1
                } else {
                    lcs[(i + 1) * (m + 1) + j].max(lcs[i * (m + 1) + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < n && j < m {
            if aw[i] == bw[j] {
                keep[j] = true;
                i += 1;
                j += 1;
            } else if lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1] {
                i += 1;
            } else {
                j += 1;
            }
        }
    } else {
        let pre = aw.iter().zip(&bw).take_while(|(x, y)| x == y).count();
        let suf = aw[pre..]
            .iter()
            .rev()
            .zip(bw[pre..].iter().rev())
            .take_while(|(x, y)| x == y)
            .count();
        for (j, k) in keep.iter_mut().enumerate() {
            *k = j < pre || j >= bw.len() - suf;
        }
    }
    let mut out: Vec<std::ops::Range<usize>> = Vec::new();
    let mut prev_changed = false;
    for (j, &(s, e)) in b.iter().enumerate() {
        if keep[j] {
            prev_changed = false;
            continue;
        }
        match out.last_mut() {
            Some(last) if prev_changed => last.end = e,
            _ => out.push(s..e),
        }
        prev_changed = true;
    }
    out
}

/// The checker model's question: do the two texts make the same claims? Answered `yes`/`no`.
pub fn checker_prompt(original: &str, rewritten: &str) -> String {
    format!(
        "Do the two texts below make the same factual claims (style and tone may differ)? \
         Answer with one word, yes or no.\n\nText 1:\n{original}\n\nText 2:\n{rewritten}\n"
    )
}

/// The checker's answer read as yes (`Some(true)`), no (`Some(false)`) or neither (`None`,
/// counted as a failure: an unreadable check does not vouch for the rewrite).
pub fn checker_says(answer: &str) -> Option<bool> {
    let first = answer
        .trim()
        .split(|c: char| !c.is_alphanumeric())
        .find(|w| !w.is_empty())?
        .to_lowercase();
    match first.as_str() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: LengthBounds = LengthBounds {
        min_percent: 50,
        max_percent: 300,
        refusal: true,
        names: true,
    };

    #[test]
    fn instruction_substitutes_params_then_answer() {
        let mut p = BTreeMap::new();
        p.insert("language".to_string(), "French".to_string());
        assert_eq!(
            render_instruction("Translate into {language}:\n{answer}", &p, "Say {language}"),
            "Translate into French:\nSay {language}"
        );
    }

    #[test]
    fn key_changes_with_every_input() {
        let p = BTreeMap::new();
        let base = rewrite_key("r", "m", "h", &p, "x");
        assert_eq!(base, rewrite_key("r", "m", "h", &p, "x"));
        assert_ne!(base, rewrite_key("r2", "m", "h", &p, "x"));
        assert_ne!(base, rewrite_key("r", "m2", "h", &p, "x"));
        assert_ne!(base, rewrite_key("r", "m", "h2", &p, "x"));
        assert_ne!(base, rewrite_key("r", "m", "h", &p, "y"));
        let mut q = BTreeMap::new();
        q.insert("a".to_string(), "b".to_string());
        assert_ne!(base, rewrite_key("r", "m", "h", &q, "x"));
    }

    #[test]
    fn guards_catch_each_kind_of_change() {
        let o = "Paris is the capital of France. It has 2,100,000 inhabitants.";
        assert_eq!(
            guard(
                o,
                "The capital of France is Paris, with 2100000 inhabitants.",
                B
            ),
            None
        );
        assert_eq!(
            guard(
                o,
                "Paris is the capital of France. It has 3 million people.",
                B
            )
            .as_deref(),
            Some("new number 3")
        );
        assert_eq!(
            guard(o, "Paris, see https://x.org, is the capital of France.", B).as_deref(),
            Some("new URL https://x.org")
        );
        assert_eq!(
            guard(
                o,
                "Paris is the capital of France, said Napoleon to many.",
                B
            )
            .as_deref(),
            Some("new name Napoleon")
        );
        assert_eq!(
            guard(o, "Paris.", B).as_deref(),
            Some("length ratio 9% outside [50%, 300%]")
        );
        assert_eq!(
            guard(
                o,
                "I'm sorry, Paris is the capital of France, it has many people.",
                B
            )
            .as_deref(),
            Some("refusal added")
        );
        assert_eq!(guard(o, "   ", B).as_deref(), Some("empty rewrite"));
        // Switched-off guards do not fire.
        let lax = LengthBounds {
            refusal: false,
            names: false,
            ..B
        };
        assert_eq!(
            guard(
                o,
                "I'm sorry, Paris is the capital of France, said Napoleon.",
                lax
            ),
            None
        );
    }

    #[test]
    fn changed_ranges_mark_new_words_only() {
        let r = "The big cat sat on a red mat";
        let got = changed_ranges("The cat sat on the mat", r);
        let marked: Vec<&str> = got.iter().map(|x| &r[x.clone()]).collect();
        assert_eq!(marked, ["big", "a red"]);
        assert!(changed_ranges("same text", "same text").is_empty());
    }

    #[test]
    fn checker_answers() {
        assert_eq!(checker_says("Yes."), Some(true));
        assert_eq!(checker_says(" no, they differ"), Some(false));
        assert_eq!(checker_says("maybe"), None);
        assert_eq!(checker_says(""), None);
    }
}
