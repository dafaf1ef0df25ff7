//! Escaping of untrusted text, in one place for every exporter and the terminal.
//!
//! Answers, prompts, names and reasons come from datasets and from the judges under test, so
//! they may hold markup, Markdown syntax, bidi overrides (which reorder what a reader sees) or C0
//! control characters (ESC sequences that restyle or rewrite a terminal, BEL). Every format first
//! makes those controls visible as `\u{XXXX}` ([`visible_controls`]), then applies its own syntax
//! escaping.

use std::borrow::Cow;
use std::fmt::Write;

/// True for characters that are shown as `\u{XXXX}` instead of themselves: bidi embedding,
/// override and isolate controls (U+202A–U+202E, U+2066–U+2069) and every control character
/// except the layout ones in `keep`.
fn hidden(c: char, keep: &[char]) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
        || (c.is_control() && !keep.contains(&c))
}

fn visible_keeping<'a>(text: &'a str, keep: &[char]) -> Cow<'a, str> {
    if !text.chars().any(|c| hidden(c, keep)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if hidden(c, keep) {
            let _ = write!(out, "\\u{{{:04X}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` with bidi controls and control characters other than tab, newline and carriage return
/// written visibly as `\u{XXXX}`.
pub fn visible_controls(text: &str) -> Cow<'_, str> {
    visible_keeping(text, &['\n', '\t', '\r'])
}

/// Text for the terminal: like [`visible_controls`], and a carriage return is shown too (it
/// would let an answer overwrite the line it is printed on).
pub fn terminal(text: &str) -> Cow<'_, str> {
    visible_keeping(text, &['\n', '\t'])
}

/// Escape text for HTML and SVG text or attribute values: controls are made visible
/// ([`visible_controls`]) so they can neither reorder the page nor hide, then the template
/// crate's escaper (maud's, which turns `&`, `<`, `>` and `"` into entities) runs; `'` becomes
/// `&#39;` as well so the text is safe in either attribute quoting.
pub fn html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + text.len() / 8);
    html_to(text, &mut out);
    out
}

/// [`html`], appended to `out` (the one HTML escaping routine; [`Text`] renders through it).
fn html_to(text: &str, out: &mut String) {
    let text = visible_controls(text);
    for (k, part) in text.split('\'').enumerate() {
        if k > 0 {
            out.push_str("&#39;");
        }
        let _ = maud::Escaper::new(out).write_str(part);
    }
}

/// Untrusted text spliced into a maud template: `html! { (Text(name)) }` escapes it with
/// [`html`] (visible controls, then maud's escaper). Every string from a summary reaches
/// `report.html` through this type.
#[derive(Debug, Clone, Copy)]
pub struct Text<'a>(pub &'a str);

impl maud::Render for Text<'_> {
    fn render_to(&self, buffer: &mut String) {
        html_to(self.0, buffer);
    }
}

/// Escape untrusted text for Markdown prose (a list item or sentence): controls are made visible
/// ([`visible_controls`]), line breaks become spaces (the text stays on its line), and only the
/// characters that would start Markdown syntax there are backslash-escaped: `\\`, `*`, `` ` ``,
/// `[`, `]`; `_` unless inside a word (CommonMark does not emphasise intraword `_`); `<` when it
/// could open an HTML tag or autolink (before a letter, `/`, `!` or `?`); `#` and `>` at the start
/// of the text. So `p < 0.05` and `|T|` stay readable in the raw file.
pub fn markdown(text: &str) -> String {
    markdown_escaped(text, false)
}

/// Escape untrusted text for a Markdown table cell: [`markdown`], and `|` is escaped too (it
/// would end the cell).
pub fn markdown_cell(text: &str) -> String {
    markdown_escaped(text, true)
}

fn markdown_escaped(text: &str, cell: bool) -> String {
    let text = visible_controls(text);
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let word = |k: Option<&char>| k.is_some_and(|c| c.is_alphanumeric());
    for (k, &c) in chars.iter().enumerate() {
        let next = chars.get(k + 1);
        let escape = match c {
            '\\' | '*' | '`' | '[' | ']' => true,
            '_' => !(k > 0 && word(chars.get(k - 1)) && word(next)),
            '<' => next.is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')),
            '#' | '>' => chars[..k].iter().all(|c| c.is_whitespace()),
            '|' => cell,
            _ => false,
        };
        match c {
            '\n' | '\r' => out.push(' '),
            c if escape => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// Escape text for XML character data and attribute values (JUnit). XML 1.0 cannot carry most
/// C0 controls even as references, so they are made visible first.
pub fn xml(text: &str) -> String {
    html(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_visible_in_every_format() {
        let hostile = "a\u{1b}[31mred\u{7}\u{202E}txt\u{2066}\r\nb";
        assert_eq!(
            visible_controls(hostile),
            "a\\u{001B}[31mred\\u{0007}\\u{202E}txt\\u{2066}\r\nb"
        );
        assert_eq!(
            terminal(hostile),
            "a\\u{001B}[31mred\\u{0007}\\u{202E}txt\\u{2066}\\u{000D}\nb"
        );
        assert_eq!(
            markdown(hostile),
            // The backslash of `\u{…}` is escaped too, so a reader sees `\u{001B}`.
            "a\\\\u{001B}\\[31mred\\\\u{0007}\\\\u{202E}txt\\\\u{2066}  b"
        );
        assert_eq!(
            html("<b a='x'>&\u{1b}"),
            "&lt;b a=&#39;x&#39;&gt;&amp;\\u{001B}"
        );
        for out in [
            markdown(hostile),
            html(hostile),
            terminal(hostile).into_owned(),
        ] {
            assert!(
                !out.chars()
                    .any(|c| c == '\u{1b}' || c == '\u{7}' || c == '\u{202E}')
            );
        }
    }

    #[test]
    fn markdown_prose_escapes_only_what_starts_syntax() {
        // Prose reads as written: comparisons, |T| and intraword underscores are left alone.
        assert_eq!(
            markdown("position consistency 47.9% < 50.0%; |T| = 67.7% ≥ 20.0%"),
            "position consistency 47.9% < 50.0%; |T| = 67.7% ≥ 20.0%"
        );
        assert_eq!(markdown("sim_position a>b"), "sim_position a>b");
        // What would become markup is escaped.
        assert_eq!(
            markdown("<script>x</script> </b> <!-- <?x *a* `c` [l](u) _e_"),
            "\\<script>x\\</script> \\</b> \\<!-- \\<?x \\*a\\* \\`c\\` \\[l\\](u) \\_e\\_"
        );
        assert_eq!(markdown("# title"), "\\# title");
        assert_eq!(markdown("  > quote"), "  \\> quote");
        assert_eq!(markdown("a # b > c"), "a # b > c");
        // Only a table cell escapes the pipe.
        assert_eq!(markdown_cell("a|b <i>"), "a\\|b \\<i>");
    }

    #[test]
    fn clean_text_is_borrowed() {
        assert!(matches!(
            visible_controls("plain\ttext\n"),
            Cow::Borrowed(_)
        ));
    }
}
