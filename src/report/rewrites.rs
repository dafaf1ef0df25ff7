//! The report's rewrite section: per LLM-rewritten artifact, who rewrote it, how many rewrites
//! passed the meaning check (and why the others failed), and a few originals next to their
//! rewrites with the changed words marked, so a reader can judge the rewriter. The data is
//! [`crate::analyze::rewrites`]; this module only renders it.

pub use crate::analyze::rewrites::*;
use std::ops::Range;

/// `text` with the `changed` ranges marked `**…**`, Markdown-escaped (answers are untrusted).
fn marked_markdown(text: &str, changed: &[Range<usize>]) -> String {
    use super::markdown::escape;
    let mut out = String::new();
    let mut at = 0;
    for r in changed {
        if r.start < at
            || r.end > text.len()
            || !text.is_char_boundary(r.start)
            || !text.is_char_boundary(r.end)
        {
            continue;
        }
        out.push_str(&escape(&text[at..r.start]));
        out.push_str("**");
        out.push_str(&escape(&text[r.clone()]));
        out.push_str("**");
        at = r.end;
    }
    out.push_str(&escape(&text[at..]));
    out
}

/// The Markdown section.
pub fn markdown(section: &RewriteSection) -> String {
    use super::markdown::escape;
    use std::fmt::Write;
    let mut out = String::new();
    let u = &section.usage;
    let _ = writeln!(
        out,
        "## LLM-rewritten artifacts\n\n{} rewrites and {} meaning checks stored ({} input / {} output tokens, ${:.4}). A rewrite that fails the meaning check (length bounds, no new numbers, URLs or names, refusal kept, and the checker model when configured) is excluded from its artifact's estimates.\n",
        u.rewrites, u.checks, u.input_tokens, u.output_tokens, u.cost_usd
    );
    for a in &section.artifacts {
        let _ = writeln!(
            out,
            "### {}\n\nRewriter `{}` (model `{}`{}), instruction sha256 `{}`{}. **Failed the meaning check: {} of {} ({:.1}%)**{}.\n",
            escape(&a.id),
            escape(&a.rewriter),
            escape(&a.model),
            a.checker
                .as_ref()
                .map(|c| format!(", checker `{}`", escape(c)))
                .unwrap_or_default(),
            &a.instruction_sha256[..16.min(a.instruction_sha256.len())],
            if a.params.is_empty() {
                String::new()
            } else {
                format!(
                    ", parameters {}",
                    a.params
                        .iter()
                        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            a.rejected,
            a.items,
            100.0 * a.rejected_share,
            if a.reasons.is_empty() {
                String::new()
            } else {
                format!(
                    " — {}",
                    a.reasons
                        .iter()
                        .map(|(r, n)| format!("{}: {n}", escape(r)))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
        if !a.rejected_items.is_empty() {
            let listed: Vec<String> = a
                .rejected_items
                .iter()
                .map(|r| {
                    format!(
                        "`{}`/{} ({})",
                        escape(&r.pair_id),
                        r.side,
                        escape(&r.reason)
                    )
                })
                .collect();
            let _ = writeln!(out, "Rejected: {}.\n", listed.join(", "));
        }
        for ex in &a.examples {
            let _ = writeln!(
                out,
                "- pair `{}`, answer {}:\n  - original: {}\n  - rewrite (changes in bold): {}",
                escape(&ex.pair_id),
                ex.side,
                escape(&ex.original).replace('\n', " "),
                marked_markdown(&ex.rewritten, &ex.changed).replace('\n', " ")
            );
        }
        out.push('\n');
    }
    out
}

/// The HTML section (every text escaped by maud; changes in `<mark>`).
pub fn html(section: &RewriteSection) -> maud::Markup {
    use super::text::Text;
    use maud::html;
    let u = &section.usage;
    html! {
        section #rewrites {
            h2 { "LLM-rewritten artifacts" }
            p.intro {
                (u.rewrites) " rewrites and " (u.checks) " meaning checks stored (" (u.input_tokens) " input / "
                (u.output_tokens) " output tokens, $" (format!("{:.4}", u.cost_usd)) "). A rewrite that fails the meaning check is excluded from its artifact's estimates. Words of a rewrite that are not in the original are "
                mark { "highlighted" } "."
            }
            @for a in &section.artifacts {
                h3 { (Text(&a.id)) }
                p {
                    "Rewriter " span.mono { (Text(&a.rewriter)) } " (model " span.mono { (Text(&a.model)) } ")"
                    @if let Some(c) = &a.checker { ", checker " span.mono { (Text(c)) } }
                    ". " b { "Failed the meaning check: " (a.rejected) " of " (a.items) " (" (format!("{:.1}", 100.0 * a.rejected_share)) "%)" }
                    @for (r, n) in &a.reasons { " · " (Text(r)) ": " (n) }
                }
                @if !a.params.is_empty() {
                    p { "Parameters: " @for (k, v) in &a.params { span.mono { (Text(k)) " = " (Text(v)) } " " } }
                }
                @if !a.rejected_items.is_empty() {
                    p.note {
                        "Rejected: "
                        @for (k, r) in a.rejected_items.iter().enumerate() {
                            @if k > 0 { ", " }
                            span.mono { (Text(&r.pair_id)) "/" (r.side) } " (" (Text(&r.reason)) ")"
                        }
                    }
                }
                @for ex in &a.examples {
                    article.example {
                        div.head { span { "pair " span.mono { (Text(&ex.pair_id)) } } span { "answer " (ex.side) } }
                        div.cols {
                            div.col { h4 { "Original" } div.answer { (maud::PreEscaped(super::html::highlighted(&ex.original, &[], super::html::DISPLAY_LIMIT))) } }
                            div.col { h4 { "Rewrite" } div.answer { (maud::PreEscaped(super::html::highlighted(&ex.rewritten, &ex.changed, super::html::DISPLAY_LIMIT))) } }
                        }
                    }
                }
            }
        }
    }
}
