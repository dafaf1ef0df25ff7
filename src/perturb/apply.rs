//! Applying an [`Operation`] to one answer with an already-seeded RNG.

use super::text::{self, ListBlock, Marker};
use super::{Operation, Perturbation, ReorderUnit, Variant};
use rand::RngCore;
use regex::Regex;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::{LazyLock, Mutex};

/// How many fresh shuffles a reorder tries before falling back to rotations.
const RESHUFFLES: usize = 16;

/// Compiled patterns, shared across items so a regex artifact is compiled once per process.
static REGEX_CACHE: LazyLock<Mutex<HashMap<String, Result<Regex, String>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// Compile `pattern` (cached). The error is a one-line message.
pub(crate) fn compile(pattern: &str) -> Result<Regex, String> {
    let mut cache = REGEX_CACHE.lock().unwrap_or_else(|p| p.into_inner());
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| {
            Regex::new(pattern).map_err(|e| {
                let msg = e.to_string();
                // regex errors are multi-line drawings; keep the last line, which says what is wrong.
                let last = msg
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("");
                format!("invalid regular expression: {}", last.trim())
            })
        })
        .clone()
}

/// Apply `op` to `text`.
pub(crate) fn apply(op: &Operation, text: &str, rng: &mut impl RngCore) -> Perturbation {
    match op {
        Operation::Prepend { text: p } => wrap(p, text, ""),
        Operation::Append { text: s } => wrap("", text, s),
        Operation::Wrap { prefix, suffix } => wrap(prefix, text, suffix),
        Operation::Template { variants } => {
            let v = pick_variant(variants, rng);
            match v {
                Some(v) => wrap(&v.prefix, text, &v.suffix),
                None => unchanged(text),
            }
        }
        Operation::RegexReplace {
            pattern,
            replacement,
        } => regex_replace(pattern, replacement, text),
        Operation::Reorder { unit } => reorder(*unit, text, rng),
        Operation::Repeat { times } => repeat(*times, text),
        Operation::Verbose {
            openers,
            restatement_leads,
            closers,
        } => verbose(openers, restatement_leads, closers, text, rng),
        Operation::Bullets => bullets(text),
        // Composition is applied by `Artifact::apply`, which holds the resolved components.
        // Rewrites come from the run store (`Artifact::with_rewrite`).
        Operation::Position
        | Operation::Compose { .. }
        | Operation::Context { .. }
        | Operation::Rewrite { .. } => unchanged(text),
    }
}

/// One step of a stack: `next` was produced from `prev.text`. When the step only added text
/// around `prev.text`, the earlier highlighted ranges move with it; otherwise only the step's
/// own ranges are kept.
pub(crate) fn stack(prev: Perturbation, next: Perturbation) -> Perturbation {
    let mut injected = next.injected.clone();
    if let Some(at) = next.text.find(prev.text.as_str())
        && (prev.injected.is_empty() || next.text.matches(prev.text.as_str()).count() == 1)
    {
        let shifted = prev.injected.iter().map(|r| r.start + at..r.end + at);
        injected.extend(shifted);
        injected.sort_by_key(|r| r.start);
        // Merge overlaps so the ranges stay sorted and disjoint.
        let mut merged: Vec<std::ops::Range<usize>> = Vec::new();
        for r in injected {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        injected = merged;
    }
    Perturbation {
        text: next.text,
        injected,
        changed: true,
        already_present: false,
        rejected: None,
    }
}

fn bullets(text: &str) -> Perturbation {
    if text::main_list(text).is_some() {
        return unchanged(text);
    }
    let units = text::sentences(text);
    if units.len() < 2 || units.iter().any(|r| text[r.clone()].contains('\n')) {
        return unchanged(text);
    }
    let mut out = String::with_capacity(text.len() + 3 * units.len());
    let mut injected = Vec::new();
    for (i, r) in units.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        injected.push(out.len()..out.len() + 2);
        out.push_str("- ");
        out.push_str(text[r.clone()].trim());
    }
    Perturbation {
        text: out,
        injected,
        changed: true,
        already_present: false,
        rejected: None,
    }
}

fn unchanged(text: &str) -> Perturbation {
    Perturbation {
        text: text.to_string(),
        injected: Vec::new(),
        changed: true,
        already_present: false,
        rejected: None,
    }
}

/// `prefix + text + suffix`, with each non-empty addition as an injected range.
fn wrap(prefix: &str, text: &str, suffix: &str) -> Perturbation {
    let mut out = String::with_capacity(prefix.len() + text.len() + suffix.len());
    let mut injected = Vec::new();
    out.push_str(prefix);
    if !prefix.is_empty() {
        injected.push(0..prefix.len());
    }
    out.push_str(text);
    let s = out.len();
    out.push_str(suffix);
    if !suffix.is_empty() {
        injected.push(s..out.len());
    }
    Perturbation {
        text: out,
        injected,
        changed: true,
        already_present: false,
        rejected: None,
    }
}

/// Uniform integer in `0..n` (n > 0) by rejection sampling on `next_u64`, so the result does not
/// depend on `rand`'s range-sampling algorithm.
fn below(rng: &mut impl RngCore, n: usize) -> usize {
    let n = n as u64;
    let zone = u64::MAX - (u64::MAX % n + 1) % n;
    loop {
        let x = rng.next_u64();
        if x <= zone {
            return (x % n) as usize;
        }
    }
}

/// Fisher–Yates shuffle driven by [`below`].
fn shuffle<T>(rng: &mut impl RngCore, v: &mut [T]) {
    for i in (1..v.len()).rev() {
        let j = below(rng, i + 1);
        v.swap(i, j);
    }
}

fn pick<'a>(rng: &mut impl RngCore, list: &'a [String]) -> Option<&'a str> {
    if list.is_empty() {
        None
    } else {
        Some(&list[below(rng, list.len())])
    }
}

fn pick_variant<'a>(variants: &'a [Variant], rng: &mut impl RngCore) -> Option<&'a Variant> {
    let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
    if total == 0 {
        return variants.first();
    }
    let mut r = below(rng, total as usize) as u64;
    for v in variants {
        let w = u64::from(v.weight);
        if r < w {
            return Some(v);
        }
        r -= w;
    }
    variants.last()
}

fn regex_replace(pattern: &str, replacement: &str, text: &str) -> Perturbation {
    let re = match compile(pattern) {
        Ok(re) => re,
        Err(e) => {
            // Artifacts from the loader are validated; one built in code may not be.
            tracing::warn!("regex_replace artifact skipped: {e}");
            return unchanged(text);
        }
    };
    let mut out = String::with_capacity(text.len());
    let mut injected: Vec<Range<usize>> = Vec::new();
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let m = caps.get(0).expect("group 0 always matches");
        out.push_str(&text[last..m.start()]);
        let s = out.len();
        caps.expand(replacement, &mut out);
        if out.len() > s {
            // Adjacent matches give one merged highlight.
            match injected.last_mut() {
                Some(r) if r.end == s => r.end = out.len(),
                _ => injected.push(s..out.len()),
            }
        }
        last = m.end();
    }
    out.push_str(&text[last..]);
    Perturbation {
        text: out,
        injected,
        changed: true,
        already_present: false,
        rejected: None,
    }
}

/// Rebuild `text` with the units at `slots` replaced, in order, by the units at `order`.
fn rebuild(text: &str, slots: &[Range<usize>], order: &[usize]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (slot, &src) in slots.iter().zip(order) {
        out.push_str(&text[last..slot.start]);
        out.push_str(&text[slots[src].clone()]);
        last = slot.end;
    }
    out.push_str(&text[last..]);
    out
}

fn reorder(unit: ReorderUnit, text: &str, rng: &mut impl RngCore) -> Perturbation {
    let list_units = match unit {
        ReorderUnit::ListItems => text::main_list(text)
            .map(|b| b.items.into_iter().map(|i| i.content).collect::<Vec<_>>()),
        ReorderUnit::Sentences => None,
    };
    let units = list_units.unwrap_or_else(|| text::sentences(text));
    let n = units.len();
    let first = units.first().map(|r| &text[r.clone()]);
    if n < 2 || units.iter().all(|r| Some(&text[r.clone()]) == first) {
        return unchanged(text);
    }
    let mut order: Vec<usize> = (0..n).collect();
    let mut out = None;
    for _ in 0..RESHUFFLES {
        shuffle(rng, &mut order);
        let candidate = rebuild(text, &units, &order);
        if candidate != text {
            out = Some(candidate);
            break;
        }
    }
    // Rotating a sequence that is not constant always changes it; the string comparison guards
    // against exotic cases where different unit orders spell the same text.
    let out = out.or_else(|| {
        (1..n).find_map(|k| {
            let rotated: Vec<usize> = (0..n).map(|i| (i + k) % n).collect();
            let candidate = rebuild(text, &units, &rotated);
            (candidate != text).then_some(candidate)
        })
    });
    match out {
        // Units are permuted in place, so the output has the same length and the moved span
        // keeps its byte offsets.
        Some(t) => {
            let moved = units[0].start..units[n - 1].end;
            Perturbation {
                text: t,
                injected: vec![moved],
                changed: true,
                already_present: false,
                rejected: None,
            }
        }
        None => unchanged(text),
    }
}

fn repeat(times: usize, text: &str) -> Perturbation {
    if times == 0 {
        return unchanged(text);
    }
    let (at, insert) = match text::main_list(text) {
        Some(block) => list_copies(&block, text, times),
        None => {
            let units = text::sentences(text);
            let (Some(a), Some(b)) = (units.first(), units.last()) else {
                return unchanged(text);
            };
            let span = &text[a.start..b.end];
            let sep = if span.contains('\n') { "\n\n" } else { " " };
            let mut ins = String::new();
            for _ in 0..times {
                ins.push_str(sep);
                ins.push_str(span);
            }
            (b.end, ins)
        }
    };
    let mut out = String::with_capacity(text.len() + insert.len());
    out.push_str(&text[..at]);
    out.push_str(&insert);
    out.push_str(&text[at..]);
    let added = at..at + insert.len();
    Perturbation {
        injected: vec![added],
        text: out,
        changed: true,
        already_present: false,
        rejected: None,
    }
}

/// The insertion point (end of the list's last item) and the repeated items, each on its own line
/// with the list's indentation and marker style; numbers continue from the last item.
fn list_copies(block: &ListBlock, text: &str, times: usize) -> (usize, String) {
    let last = block.items.last().expect("main_list has >= 2 items");
    let mut next_number = block
        .items
        .iter()
        .rev()
        .find_map(|i| match i.marker {
            Marker::Number { value, .. } => Some(value),
            Marker::Bullet(_) => None,
        })
        .unwrap_or(0)
        + 1;
    let joiner = if block.loose { "\n\n" } else { "\n" };
    let mut ins = String::new();
    for _ in 0..times {
        for item in &block.items {
            ins.push_str(joiner);
            ins.push_str(&block.indent);
            match item.marker {
                Marker::Bullet(c) => ins.push(c),
                Marker::Number { delim, .. } => {
                    ins.push_str(&next_number.to_string());
                    ins.push(delim);
                    next_number += 1;
                }
            }
            ins.push(' ');
            ins.push_str(&text[item.content.clone()]);
        }
    }
    (last.content.end, ins)
}

/// The first sentence worth restating: the first prose sentence (or list item content) that ends
/// with `.`/`!`/`。`/`！`; headings, tables, quotes, code and questions are skipped.
fn restatable_sentence(text: &str) -> Option<&str> {
    for r in text::sentences(text) {
        let s = &text[r];
        let t = s.trim_start();
        if t.starts_with('#') || t.starts_with('|') || t.starts_with('>') || t.starts_with("```") {
            continue;
        }
        let body = match text::item_content_offset(s) {
            Some(off) => &s[off..],
            None => s,
        };
        let core = body.trim_end_matches(['"', '\'', ')', ']', '”', '’', '*', '_']);
        if core.ends_with(['.', '!', '。', '！']) && !core.contains('\n') {
            return Some(body);
        }
    }
    None
}

fn verbose(
    openers: &[String],
    leads: &[String],
    closers: &[String],
    text: &str,
    rng: &mut impl RngCore,
) -> Perturbation {
    // Draw in a fixed order so each piece's choice is stable whatever the others resolve to.
    let opener = pick(rng, openers);
    let lead = pick(rng, leads);
    let closer = pick(rng, closers);

    let prefix = match opener {
        Some(o) if text::starts_with_block(text) => format!("{}\n\n", o.trim_end()),
        Some(o) => o.to_string(),
        None => String::new(),
    };
    let mut tail_parts: Vec<String> = Vec::new();
    if let (Some(lead), Some(sentence)) = (lead, restatable_sentence(text)) {
        tail_parts.push(format!("{lead}{}", text::lowercase_first(sentence)));
    }
    if let Some(c) = closer {
        tail_parts.push(c.to_string());
    }
    let mut suffix = String::new();
    if !tail_parts.is_empty() {
        let sep = if text.is_empty() || text.ends_with(char::is_whitespace) {
            ""
        } else if text.contains('\n') {
            "\n\n"
        } else {
            " "
        };
        suffix.push_str(sep);
        // Pieces are joined with a space unless a piece already ends in whitespace.
        for (i, p) in tail_parts.iter().enumerate() {
            if i > 0 && !suffix.ends_with(char::is_whitespace) {
                suffix.push(' ');
            }
            suffix.push_str(p.trim_end_matches(' '));
        }
    }
    wrap(&prefix, text, &suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn below_is_in_range_and_uses_all_values() {
        let mut rng = ChaCha8Rng::from_seed([7; 32]);
        let mut seen = [0usize; 5];
        for _ in 0..1000 {
            seen[below(&mut rng, 5)] += 1;
        }
        // Each of 5 values over 1000 draws: expected 200, a count under 100 has p < 1e-12.
        assert!(seen.iter().all(|&c| c > 100), "{seen:?}");
        assert_eq!(below(&mut rng, 1), 0);
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let variants = vec![
            Variant {
                prefix: "a".into(),
                suffix: String::new(),
                weight: 9,
            },
            Variant {
                prefix: "b".into(),
                suffix: String::new(),
                weight: 1,
            },
        ];
        let mut rng = ChaCha8Rng::from_seed([1; 32]);
        let a = (0..2000)
            .filter(|_| pick_variant(&variants, &mut rng).unwrap().prefix == "a")
            .count();
        // Binomial(2000, 0.9): mean 1800, sd 13.4; the bounds are beyond 7 sd.
        assert!((1700..=1900).contains(&a), "{a}");
    }

    #[test]
    fn regex_replace_ranges_cover_replacements() {
        let p = regex_replace(r"(\d+)", "<$1>", "a 12 b 3");
        assert_eq!(p.text, "a <12> b <3>");
        let got: Vec<&str> = p.injected.iter().map(|r| &p.text[r.clone()]).collect();
        assert_eq!(got, vec!["<12>", "<3>"]);
        let p = regex_replace("x", "", "axb");
        assert_eq!(p.text, "ab");
        assert!(p.injected.is_empty());
    }

    #[test]
    fn repeat_continues_numbering() {
        let t = "Tips:\n1. Sleep.\n2. Eat.\nBye.";
        let p = repeat(1, t);
        assert_eq!(
            p.text,
            "Tips:\n1. Sleep.\n2. Eat.\n3. Sleep.\n4. Eat.\nBye."
        );
        assert_eq!(&p.text[p.injected[0].clone()], "\n3. Sleep.\n4. Eat.");
        let p = repeat(2, "- a\n\n- b");
        assert_eq!(p.text, "- a\n\n- b\n\n- a\n\n- b\n\n- a\n\n- b");
        let p = repeat(1, "One. Two.");
        assert_eq!(p.text, "One. Two. One. Two.");
    }
}
