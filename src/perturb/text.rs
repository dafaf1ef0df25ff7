//! Text segmentation for the structural operations (reorder, repeat, verbose): sentences and
//! Markdown-style list items, returned as byte ranges into the original text so that callers can
//! rebuild the text exactly and report injected spans.
//!
//! The rules are deliberately simple and predictable rather than linguistically complete:
//! - Every line break ends a sentence (LLM answers use line breaks for lists, headings, code).
//! - Within a line, `.`, `!`, `?` (optionally repeated and followed by closing quotes/brackets)
//!   end a sentence when followed by whitespace and then a character that is not lowercase.
//!   A single `.` after a known abbreviation (`Dr.`, `e.g.`, `Mr.`...), after a word containing an
//!   inner dot (`U.S.`), or after a single-letter initial (`J. Smith`) does not end a sentence.
//!   Decimals (`3.14`) and URLs never split because no whitespace follows the dot.
//! - `。！？؟।` end a sentence even without following whitespace (CJK, Arabic, Devanagari).
//! - A fenced code block (```` ``` ````) and a run of table lines (`|...`) are one unit each.
//! - A list item starts with optional indentation, a marker (`-`, `*`, `+`, `•`, or 1–3 digits
//!   followed by `.` or `)`), whitespace and some content. A list block is a run of items at
//!   the same indentation; following lines that are indented deeper (continuations, nested
//!   lists, indented code) belong to the current item, a shallower line ends the block, and a
//!   blank line stays inside the block when the list continues after it.

use std::ops::Range;

/// Words that end with a dot without ending the sentence (compared case-insensitively, without
/// the trailing dot). `etc` is deliberately absent: it usually ends a sentence when followed by a
/// capital letter.
const ABBREVIATIONS: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "sr", "jr", "st", "vs", "cf", "fig", "figs", "approx", "inc",
    "ltd", "co", "corp", "mt", "gen", "col", "lt", "sgt", "capt", "rev", "hon", "dept", "est",
    "vol", "al", "ed", "eds", "op", "ca", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "e.g", "i.e", "a.m", "p.m", "u.s", "u.k", "ph.d",
];

/// Characters that close a quotation or bracket after a sentence terminator.
const CLOSERS: &[char] = &[
    '"', '\'', ')', ']', '}', '”', '’', '»', '」', '』', '）', '*', '_',
];

/// Terminators that end a sentence without needing whitespace after them.
const WIDE_TERMINATORS: &[char] = &['。', '！', '？', '؟', '।'];

/// The marker of one list item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Marker {
    /// `-`, `*`, `+` or `•`.
    Bullet(char),
    /// `12.` or `12)`.
    Number {
        /// The number as written.
        value: u64,
        /// `.` or `)`.
        delim: char,
    },
}

/// One top-level list item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListItem {
    /// The item's marker.
    pub marker: Marker,
    /// Byte range of the content after the marker, through the end of its last non-blank line
    /// (continuation and nested lines included), trailing whitespace excluded.
    pub content: Range<usize>,
}

/// A maximal run of list items at the same indentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ListBlock {
    /// Leading whitespace of the first item line.
    pub indent: String,
    /// The items, in text order.
    pub items: Vec<ListItem>,
    /// True when blank lines separate the items (a "loose" Markdown list).
    pub loose: bool,
}

/// One line of the text: `full` includes nothing after the line's content (no `\n`, no `\r`).
#[derive(Debug, Clone)]
struct Line {
    start: usize,
    end: usize,
    /// True when the line is part of a fenced code block (fences included).
    in_code: bool,
}

fn split_lines(text: &str) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == '\n' {
            lines.push(Line {
                start,
                end: strip_cr(text, start, i),
                in_code: false,
            });
            start = i + 1;
        }
    }
    lines.push(Line {
        start,
        end: strip_cr(text, start, text.len()),
        in_code: false,
    });
    // Mark fenced code blocks; an unterminated fence runs to the end of the text.
    let mut in_code = false;
    for line in &mut lines {
        let is_fence = text[line.start..line.end].trim_start().starts_with("```");
        if is_fence {
            line.in_code = true;
            in_code = !in_code;
        } else {
            line.in_code = in_code;
        }
    }
    lines
}

fn strip_cr(text: &str, start: usize, end: usize) -> usize {
    if end > start && text.as_bytes()[end - 1] == b'\r' {
        end - 1
    } else {
        end
    }
}

fn is_blank(text: &str, line: &Line) -> bool {
    text[line.start..line.end].trim().is_empty()
}

fn indent_len(s: &str) -> usize {
    s.len() - s.trim_start_matches([' ', '\t']).len()
}

/// If `line` is a list item, return (indent bytes, marker, byte offset of the content in `line`).
fn parse_item(line: &str) -> Option<(usize, Marker, usize)> {
    let indent = indent_len(line);
    let rest = &line[indent..];
    let first = rest.chars().next()?;
    let (marker, marker_len) = match first {
        '-' | '*' | '+' | '•' => (Marker::Bullet(first), first.len_utf8()),
        '0'..='9' => {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 3 {
                return None;
            }
            let delim = rest[digits..].chars().next()?;
            if delim != '.' && delim != ')' {
                return None;
            }
            let value = rest[..digits].parse().ok()?;
            (Marker::Number { value, delim }, digits + 1)
        }
        _ => return None,
    };
    let after = &rest[marker_len..];
    let gap = after.len() - after.trim_start_matches([' ', '\t']).len();
    if gap == 0 || after[gap..].trim().is_empty() {
        return None;
    }
    Some((indent, marker, indent + marker_len + gap))
}

/// If `line` is a list item, the byte offset where its content starts (after the marker).
pub(crate) fn item_content_offset(line: &str) -> Option<usize> {
    parse_item(line).map(|(_, _, off)| off)
}

/// All list blocks of the text (code blocks are skipped).
pub(crate) fn list_blocks(text: &str) -> Vec<ListBlock> {
    let lines = split_lines(text);
    let item_at = |i: usize| -> Option<(usize, Marker, usize)> {
        let l = &lines[i];
        if l.in_code {
            None
        } else {
            parse_item(&text[l.start..l.end])
        }
    };
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some((base, marker, off)) = item_at(i) else {
            i += 1;
            continue;
        };
        let mut block = ListBlock {
            indent: text[lines[i].start..lines[i].start + base].to_string(),
            items: Vec::new(),
            loose: false,
        };
        let mut cur_marker = marker;
        let mut cur_start = lines[i].start + off;
        let mut cur_end = lines[i].end;
        let mut j = i + 1;
        let mut saw_blank = false;
        loop {
            if j >= lines.len() {
                break;
            }
            let l = &lines[j];
            if is_blank(text, l) {
                // A blank line stays in the list only if the list continues after it.
                let next = (j + 1..lines.len()).find(|&k| !is_blank(text, &lines[k]));
                let continues = next.is_some_and(|k| {
                    let nl = &lines[k];
                    let ind = indent_len(&text[nl.start..nl.end]);
                    match item_at(k) {
                        // A sibling (same indentation) or a nested item continues the list.
                        Some((ind, _, _)) => ind >= base,
                        None => ind > base,
                    }
                });
                if !continues {
                    break;
                }
                saw_blank = true;
                j += 1;
                continue;
            }
            match item_at(j) {
                Some((ind, m, o)) if ind == base => {
                    if saw_blank {
                        block.loose = true;
                    }
                    block.items.push(ListItem {
                        marker: cur_marker,
                        content: trim_range(text, cur_start..cur_end),
                    });
                    cur_marker = m;
                    cur_start = l.start + o;
                    cur_end = l.end;
                }
                _ => {
                    // Deeper lines (nested items, wrapped text, indented code) belong to the
                    // current item; anything shallower ends the list.
                    let ind = indent_len(&text[l.start..l.end]);
                    if ind > base {
                        cur_end = l.end;
                    } else {
                        break;
                    }
                }
            }
            saw_blank = false;
            j += 1;
        }
        block.items.push(ListItem {
            marker: cur_marker,
            content: trim_range(text, cur_start..cur_end),
        });
        blocks.push(block);
        i = j.max(i + 1);
    }
    blocks
}

/// The list an operation works on: the block with the most items (the earliest on ties), if it
/// has at least two items.
pub(crate) fn main_list(text: &str) -> Option<ListBlock> {
    let mut best: Option<ListBlock> = None;
    for b in list_blocks(text) {
        if b.items.len() >= 2 && best.as_ref().is_none_or(|x| b.items.len() > x.items.len()) {
            best = Some(b);
        }
    }
    best
}

/// Shrink `r` so it starts and ends on non-whitespace.
fn trim_range(text: &str, r: Range<usize>) -> Range<usize> {
    let s = &text[r.clone()];
    let start = r.start + (s.len() - s.trim_start().len());
    let end = r.start + s.trim_end().len();
    if end <= start {
        start..start
    } else {
        start..end
    }
}

/// True when the same sentence or list item (trimmed, at least eight characters, list markers
/// and numbering ignored) occurs twice: the sign of a repetition attack.
pub(crate) fn has_repeated_unit(text: &str) -> bool {
    let mut seen = std::collections::HashSet::new();
    for r in sentences(text) {
        let s = &text[r];
        let body = match item_content_offset(s) {
            Some(off) => &s[off..],
            None => s,
        };
        let body = body.trim();
        if body.chars().count() >= 8 && !seen.insert(body) {
            return true;
        }
    }
    false
}

/// Sentence units of the text, in order, as trimmed non-empty byte ranges. Code blocks and table
/// runs are single units; every line break ends a unit.
pub(crate) fn sentences(text: &str) -> Vec<Range<usize>> {
    let lines = split_lines(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = &lines[i];
        let s = &text[l.start..l.end];
        if l.in_code || s.trim_start().starts_with('|') {
            // Group the whole code block or table run into one unit.
            let code = l.in_code;
            let mut j = i;
            let mut fences = 0;
            while j < lines.len() {
                let lj = &lines[j];
                let sj = &text[lj.start..lj.end];
                if code {
                    if !lj.in_code {
                        break;
                    }
                    if sj.trim_start().starts_with("```") {
                        fences += 1;
                        if fences == 2 {
                            j += 1;
                            break;
                        }
                    }
                } else if !sj.trim_start().starts_with('|') {
                    break;
                }
                j += 1;
            }
            let r = trim_range(text, l.start..lines[j - 1].end);
            if !r.is_empty() {
                out.push(r);
            }
            i = j;
            continue;
        }
        // Start scanning after a list marker so that "1." is not read as a sentence.
        let skip = parse_item(s).map_or(0, |(_, _, off)| off);
        split_line(text, l.start, l.end, l.start + skip, &mut out);
        i += 1;
    }
    out
}

/// Split one line (`start..end`) into sentences, scanning for terminators from `scan_from`.
fn split_line(text: &str, start: usize, end: usize, scan_from: usize, out: &mut Vec<Range<usize>>) {
    let chars: Vec<(usize, char)> = text[scan_from..end]
        .char_indices()
        .map(|(i, c)| (scan_from + i, c))
        .collect();
    let n = chars.len();
    let mut sent_start = start;
    let mut k = 0;
    while k < n {
        let (pos, c) = chars[k];
        if WIDE_TERMINATORS.contains(&c) {
            let mut j = k + 1;
            while j < n && (WIDE_TERMINATORS.contains(&chars[j].1) || CLOSERS.contains(&chars[j].1))
            {
                j += 1;
            }
            let cut = if j < n { chars[j].0 } else { end };
            push_unit(text, sent_start..cut, out);
            sent_start = cut;
            k = j;
            continue;
        }
        if matches!(c, '.' | '!' | '?') {
            let mut j = k;
            while j < n && matches!(chars[j].1, '.' | '!' | '?') {
                j += 1;
            }
            let single_dot = c == '.' && j == k + 1;
            while j < n && CLOSERS.contains(&chars[j].1) {
                j += 1;
            }
            if j < n && chars[j].1.is_whitespace() {
                let mut w = j;
                while w < n && chars[w].1.is_whitespace() {
                    w += 1;
                }
                let boundary = w < n
                    && !chars[w].1.is_lowercase()
                    && !(single_dot && is_abbreviation(text, sent_start, pos));
                if boundary {
                    let cut = chars[j].0;
                    push_unit(text, sent_start..cut, out);
                    sent_start = cut;
                }
            }
            k = j.max(k + 1);
            continue;
        }
        k += 1;
    }
    push_unit(text, sent_start..end, out);
}

fn push_unit(text: &str, r: Range<usize>, out: &mut Vec<Range<usize>>) {
    let r = trim_range(text, r);
    if !r.is_empty() {
        out.push(r);
    }
}

/// Is the word ending just before the dot at `dot` an abbreviation or an initial?
fn is_abbreviation(text: &str, floor: usize, dot: usize) -> bool {
    let before = &text[floor..dot];
    let word_start = before
        .char_indices()
        .rev()
        .find(|(_, c)| c.is_whitespace())
        .map_or(0, |(i, c)| i + c.len_utf8());
    let word = before[word_start..].trim_start_matches(['(', '[', '"', '\'', '“', '‘']);
    if word.is_empty() {
        return false;
    }
    let lower = word.to_lowercase();
    if ABBREVIATIONS.contains(&lower.as_str()) {
        return true;
    }
    // "U.S" / "e.g" style words with an inner dot between letters.
    if word.contains('.') && word.chars().all(|c| c.is_alphabetic() || c == '.') {
        return true;
    }
    // A single capital letter is most likely an initial ("J. R. Smith").
    let mut cs = word.chars();
    matches!((cs.next(), cs.next()), (Some(c), None) if c.is_uppercase())
}

/// Lowercase the first letter of `s` unless the first word looks like a name that must keep its
/// capital: the pronoun "I" (and "I'm", "I'd"...), an acronym, or a word with inner capitals.
/// Proper nouns such as "Paris" cannot be told apart from ordinary words without a lexicon and
/// are lowercased; this is a documented limitation of the verbosity restatement.
pub(crate) fn lowercase_first(s: &str) -> String {
    let word: &str = s
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\''))
        .next()
        .unwrap_or("");
    let mut chars = word.chars();
    let Some(first) = chars.next() else {
        return s.to_string();
    };
    let rest_has_upper = chars.clone().any(char::is_uppercase);
    let pronoun_i = word == "I" || word.starts_with("I'") || word.starts_with("I’");
    if !first.is_uppercase() || rest_has_upper || pronoun_i {
        return s.to_string();
    }
    let mut out: String = first.to_lowercase().collect();
    out.push_str(&s[first.len_utf8()..]);
    out
}

/// True when the text's first non-blank line is Markdown block syntax (list item, heading,
/// table, quote, code fence) that would break if text were glued in front of it.
pub(crate) fn starts_with_block(text: &str) -> bool {
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let t = line.trim_start();
    parse_item(line).is_some()
        || t.starts_with('#')
        || t.starts_with('|')
        || t.starts_with('>')
        || t.starts_with("```")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sents(text: &str) -> Vec<&str> {
        sentences(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn splits_plain_sentences() {
        assert_eq!(
            sents("The sky is blue. Is it? Yes! It is."),
            vec!["The sky is blue.", "Is it?", "Yes!", "It is."]
        );
    }

    #[test]
    fn abbreviations_and_decimals_do_not_split() {
        assert_eq!(
            sents("Dr. Smith measured 3.14 units, e.g. in the U.S. Army. Then he left."),
            vec![
                "Dr. Smith measured 3.14 units, e.g. in the U.S. Army.",
                "Then he left."
            ]
        );
        assert_eq!(
            sents("See https://example.com/a.b for details. J. R. Tolkien wrote it."),
            vec![
                "See https://example.com/a.b for details.",
                "J. R. Tolkien wrote it."
            ]
        );
        // A lowercase continuation after "etc." does not split; a capital does.
        assert_eq!(
            sents("Apples, pears, etc. are fruit. Bananas too, etc. Done."),
            vec![
                "Apples, pears, etc. are fruit.",
                "Bananas too, etc.",
                "Done."
            ]
        );
    }

    #[test]
    fn quotes_and_ellipses() {
        assert_eq!(
            sents("He said \"stop.\" Then nothing... And more?! Fine."),
            vec![
                "He said \"stop.\"",
                "Then nothing...",
                "And more?!",
                "Fine."
            ]
        );
    }

    #[test]
    fn cjk_and_line_breaks() {
        assert_eq!(
            sents("你好。今天天气很好！真的吗？\nLine two\n\n## Heading"),
            vec![
                "你好。",
                "今天天气很好！",
                "真的吗？",
                "Line two",
                "## Heading"
            ]
        );
    }

    #[test]
    fn list_marker_is_not_a_sentence() {
        assert_eq!(
            sents("1. The evidence is clear; chemtrails are real! Look up.\n2. Second."),
            vec![
                "1. The evidence is clear; chemtrails are real!",
                "Look up.",
                "2. Second."
            ]
        );
    }

    #[test]
    fn code_blocks_and_tables_are_single_units() {
        let t = "Intro. Here.\n```rust\nfn a() {}\n// x. Y.\n```\n| a | b |\n|---|---|\nEnd.";
        assert_eq!(
            sents(t),
            vec![
                "Intro.",
                "Here.",
                "```rust\nfn a() {}\n// x. Y.\n```",
                "| a | b |\n|---|---|",
                "End."
            ]
        );
    }

    #[test]
    fn detects_lists_with_continuations_and_nesting() {
        let t =
            "Tips:\n1. Sleep well.\n   Really.\n2) Eat.\n   - nested\n3. Move.\nBye.\n\n* a\n* b";
        let blocks = list_blocks(t);
        assert_eq!(blocks.len(), 2);
        let items: Vec<&str> = blocks[0]
            .items
            .iter()
            .map(|i| &t[i.content.clone()])
            .collect();
        assert_eq!(
            items,
            vec!["Sleep well.\n   Really.", "Eat.\n   - nested", "Move."]
        );
        assert_eq!(
            blocks[0].items[1].marker,
            Marker::Number {
                value: 2,
                delim: ')'
            }
        );
        assert!(!blocks[0].loose);
        let b: Vec<&str> = blocks[1]
            .items
            .iter()
            .map(|i| &t[i.content.clone()])
            .collect();
        assert_eq!(b, vec!["a", "b"]);
        assert_eq!(blocks[1].items[0].marker, Marker::Bullet('*'));
        // The longer list wins.
        assert_eq!(main_list(t).unwrap().items.len(), 3);
    }

    #[test]
    fn nested_lists_stay_inside_their_parent_item() {
        // Nested items after blank lines belong to the outer item (XSTest-style Markdown).
        let t = "Ways:\n\n1. **A:**\n\n   - a1\n\n     ```\n     code\n     ```\n\n   - a2\n\n2. **B:**\n\n   - b1\n\nEnd.";
        let blocks = list_blocks(t);
        assert_eq!(blocks.len(), 1);
        let items: Vec<&str> = blocks[0]
            .items
            .iter()
            .map(|i| &t[i.content.clone()])
            .collect();
        assert_eq!(
            items,
            vec![
                "**A:**\n\n   - a1\n\n     ```\n     code\n     ```\n\n   - a2",
                "**B:**\n\n   - b1"
            ]
        );
        assert!(blocks[0].loose);
        // A shallower item ends an indented block instead of joining it.
        let t = "   - a\n   - b\n- c\n- d\n- e";
        let blocks = list_blocks(t);
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].indent, "   ");
        assert_eq!(blocks[0].items.len(), 2);
        assert_eq!(blocks[1].items.len(), 3);
        assert_eq!(main_list(t).unwrap().indent, "");
    }

    #[test]
    fn loose_lists_and_non_items() {
        let t = "- one\n\n- two\n\nAfter.";
        let b = list_blocks(t);
        assert_eq!(b.len(), 1);
        assert!(b[0].loose);
        assert_eq!(b[0].items.len(), 2);
        // Not list items: bold text, negative numbers, years, empty markers, code.
        let t = "**bold** text\n-5 degrees\n2024. A year\n- \n```\n- in code\n- in code\n```";
        assert!(list_blocks(t).is_empty());
        assert!(main_list("• only one").is_none());
    }

    #[test]
    fn lowercase_first_rules() {
        assert_eq!(lowercase_first("The sky."), "the sky.");
        assert_eq!(lowercase_first("I think so."), "I think so.");
        assert_eq!(lowercase_first("I'm sure."), "I'm sure.");
        assert_eq!(lowercase_first("NASA agrees."), "NASA agrees.");
        assert_eq!(lowercase_first("McDonald said."), "McDonald said.");
        assert_eq!(lowercase_first("Ébène."), "ébène.");
        assert_eq!(lowercase_first("你好。"), "你好。");
        assert_eq!(lowercase_first(""), "");
    }

    #[test]
    fn block_starts() {
        assert!(starts_with_block("\n1. a\n2. b"));
        assert!(starts_with_block("# Title"));
        assert!(!starts_with_block("Plain text."));
        assert!(!starts_with_block(""));
    }
}
