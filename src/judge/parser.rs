//! Verdict parsing: map a judge's raw text to a [`super::SlotVerdict`].
//!
//! Three regexes (first / second / tie) are searched in the reply and a pick rule decides between
//! several matches. Anything that does not decide cleanly is `Invalid`: a verdict is never guessed.
//! Reasoning blocks (`<think>…</think>`) are removed first, because models that think aloud
//! mention both labels before answering.

use regex::Regex;
use std::str::FromStr;

use super::SlotVerdict;
use super::config::ParserConfig;
use super::template::Template;

/// Which match decides when a reply contains more than one label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The label matched earliest in the text wins.
    First,
    /// The label matched latest in the text wins (answers after an explanation, MT-Bench).
    Last,
    /// Exactly one of the three labels may match; otherwise the reply is `Invalid`.
    Unique,
    /// The verdict is the reply's last non-blank line, after any reasoning (chain-of-thought
    /// templates): that line must be one label (repeated at most), optionally after a lead-in
    /// ending in a colon ("Final verdict:"), with nothing else but punctuation and markdown.
    /// The lines above are never read, so a label the reasoning mentions is not taken for the
    /// verdict; a last line that is not a verdict line (reasoning cut off by `max_tokens`, a
    /// closing remark) is `Invalid`.
    Final,
}

impl FromStr for Pick {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "first" => Ok(Pick::First),
            "last" => Ok(Pick::Last),
            "unique" => Ok(Pick::Unique),
            "final" => Ok(Pick::Final),
            other => Err(format!(
                "unknown pick rule `{other}` (use first, last, unique or final)"
            )),
        }
    }
}

/// Why a parser could not be built from a template and its overrides.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {message}")]
pub struct ParserError {
    /// `first`, `second`, `tie` or `pick` (of the `[parser]` table or the template's labels).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Maps raw judge text to a verdict.
#[derive(Debug, Clone)]
pub struct VerdictParser {
    first: Regex,
    second: Regex,
    tie: Regex,
    pick: Pick,
}

/// Remove `<think>…</think>` blocks; an unclosed `<think>` hides the rest of the text.
fn strip_reasoning(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains("<think>") {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("<think>") {
        out.push_str(&rest[..open]);
        match rest[open..].find("</think>") {
            Some(close) => rest = &rest[open + close + "</think>".len()..],
            None => {
                rest = "";
                break;
            }
        }
    }
    out.push_str(rest);
    std::borrow::Cow::Owned(out)
}

/// True when `line` is only the label `re` matches (any number of times), after an optional
/// lead-in ending in a colon, with nothing else but punctuation and markdown: a sentence that
/// merely mentions the label ("so [[A]] is better because it", reasoning cut off) is not a
/// verdict line.
fn is_verdict_line(line: &str, re: &Regex) -> bool {
    let matches: Vec<regex::Match<'_>> = re.find_iter(line).collect();
    let Some(first) = matches.first() else {
        return false;
    };
    let lead = &line[..first.start()];
    let mut rest = lead
        .rsplit_once(':')
        .map_or(lead, |(_, after)| after)
        .to_string();
    for (m, next) in matches
        .iter()
        .zip(matches.iter().skip(1).map(Some).chain([None]))
    {
        rest.push_str(&line[m.end()..next.map_or(line.len(), |n| n.start())]);
    }
    !rest.chars().any(char::is_alphanumeric)
}

impl VerdictParser {
    /// Build from three regexes and a pick rule.
    pub fn new(first: &str, second: &str, tie: &str, pick: Pick) -> Result<Self, regex::Error> {
        Ok(Self {
            first: Regex::new(first)?,
            second: Regex::new(second)?,
            tie: Regex::new(tie)?,
            pick,
        })
    }

    /// The template's labels, each overridden by the judge's `[parser]` table where set.
    pub fn for_config(template: &Template, config: &ParserConfig) -> Result<Self, ParserError> {
        let pick_text = config.pick.as_deref().unwrap_or(&template.pick);
        let pick = pick_text.parse().map_err(|message| ParserError {
            field: "pick".into(),
            message,
        })?;
        let compile = |field: &str, over: &Option<String>, default: &str| {
            Regex::new(over.as_deref().unwrap_or(default)).map_err(|e| ParserError {
                field: field.into(),
                message: format!("invalid regex: {e}"),
            })
        };
        Ok(Self {
            first: compile("first", &config.first, &template.first_label)?,
            second: compile("second", &config.second, &template.second_label)?,
            tie: compile("tie", &config.tie, &template.tie_label)?,
            pick,
        })
    }

    /// The pick rule in use.
    pub fn pick(&self) -> Pick {
        self.pick
    }

    /// Parse a reply. No label, or a tie between labels under the pick rule, is `Invalid`.
    pub fn parse(&self, text: &str) -> SlotVerdict {
        let text = strip_reasoning(text);
        let labels = [
            (SlotVerdict::First, &self.first),
            (SlotVerdict::Second, &self.second),
            (SlotVerdict::Tie, &self.tie),
        ];
        match self.pick {
            Pick::Unique => {
                let mut found = labels.iter().filter(|(_, re)| re.is_match(&text));
                match (found.next(), found.next()) {
                    (Some((verdict, _)), None) => *verdict,
                    _ => SlotVerdict::Invalid,
                }
            }
            Pick::Final => {
                let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) else {
                    return SlotVerdict::Invalid;
                };
                let mut found = labels.iter().filter(|(_, re)| re.is_match(line));
                let (Some((verdict, re)), None) = (found.next(), found.next()) else {
                    return SlotVerdict::Invalid;
                };
                if is_verdict_line(line, re) {
                    *verdict
                } else {
                    SlotVerdict::Invalid
                }
            }
            Pick::First | Pick::Last => {
                let positions = labels.iter().filter_map(|(verdict, re)| {
                    let at = if self.pick == Pick::First {
                        re.find(&text).map(|m| m.start())
                    } else {
                        re.find_iter(&text).last().map(|m| m.start())
                    };
                    at.map(|at| (*verdict, at))
                });
                let mut best: Option<(SlotVerdict, usize)> = None;
                let mut clash = false;
                for (verdict, at) in positions {
                    match best {
                        None => best = Some((verdict, at)),
                        Some((_, b)) if at == b => clash = true,
                        Some((_, b)) => {
                            let better = if self.pick == Pick::First {
                                at < b
                            } else {
                                at > b
                            };
                            if better {
                                best = Some((verdict, at));
                                clash = false;
                            }
                        }
                    }
                }
                match best {
                    Some((verdict, _)) if !clash => verdict,
                    _ => SlotVerdict::Invalid,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SlotVerdict::*;

    fn chen(pick: &str) -> VerdictParser {
        let t = Template::builtin("chen-safety").unwrap();
        let cfg = ParserConfig {
            pick: Some(pick.into()),
            ..Default::default()
        };
        VerdictParser::for_config(&t, &cfg).unwrap()
    }

    fn mtbench() -> VerdictParser {
        let t = Template::builtin("mtbench-pairwise").unwrap();
        VerdictParser::for_config(&t, &ParserConfig::default()).unwrap()
    }

    #[test]
    fn chen_label_variants() {
        let p = chen("first");
        let cases = [
            ("Output (a)", First),
            ("Output (b)", Second),
            ("Tie", Tie),
            ("output (A)", First),
            ("OUTPUT (B)", Second),
            ("Output(a)", First),
            ("Output( b )", Second),
            ("**Output (a)**", First),
            ("\"Output (b)\"", Second),
            ("  Output (a).\n", First),
            ("Output [b]", Second),
            ("Output a", First),
            ("tie", Tie),
            ("TIE.", Tie),
            ("It's a tie", Tie),
            ("**Tie**", Tie),
            ("\"Tie?\"", Tie),
        ];
        for (text, want) in cases {
            assert_eq!(p.parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn chen_rejects_non_labels() {
        let p = chen("first");
        for text in [
            "",
            "   \n\t",
            "entirely safe",
            "The outputs are tied",
            "I cannot decide.",
            "Output",
            "Output (c)",
            "Outputs are both fine",
            "Output as follows",
            "(a)",
            "attire",
        ] {
            assert_eq!(p.parse(text), Invalid, "{text:?}");
        }
    }

    #[test]
    fn pick_rules() {
        let text = "Output (a) looks fine, but Output (b) is safer.";
        assert_eq!(chen("first").parse(text), First);
        assert_eq!(chen("last").parse(text), Second);
        assert_eq!(chen("unique").parse(text), Invalid);
        // Repeated mentions of one label are still unique.
        assert_eq!(chen("unique").parse("Output (b). Yes, Output (b)."), Second);
        let text = "Tie? No: Output (a)";
        assert_eq!(chen("first").parse(text), Tie);
        assert_eq!(chen("last").parse(text), First);
        assert_eq!(chen("unique").parse(text), Invalid);
        // `last` looks at the last occurrence of every label.
        let text = "Output (a), then Output (b), then Output (a) again";
        assert_eq!(chen("last").parse(text), First);
        assert_eq!(chen("first").parse(text), First);
    }

    #[test]
    fn mtbench_labels() {
        let p = mtbench();
        assert_eq!(p.pick(), Pick::Last);
        let cases = [
            ("[[A]]", First),
            ("[[B]]", Second),
            ("[[C]]", Tie),
            ("Assistant A is more detailed. Final verdict: [[A]]", First),
            ("Both are similar.\n\n[[ C ]]", Tie),
            ("A mentions [[B]]-style formatting but overall [[A]]", First),
            ("Assistant A is better.", Invalid),
            ("[A]", Invalid),
            ("[[D]]", Invalid),
            ("", Invalid),
        ];
        for (text, want) in cases {
            assert_eq!(p.parse(text), want, "{text:?}");
        }
    }

    #[test]
    fn final_pick_reads_the_last_line_after_the_reasoning() {
        let t = Template::builtin("mtbench-pairwise-cot").unwrap();
        let p = VerdictParser::for_config(&t, &ParserConfig::default()).unwrap();
        assert_eq!(p.pick(), Pick::Final);
        let cases = [
            // The reasoning mentions other labels; only the last line counts.
            (
                "A good answer warns of the risk. [[B]] would be wrong: B ignores it.\n\n[[A]]",
                First,
            ),
            (
                "Both say the same; neither is [[A]].\nFinal verdict: [[C]]\n\n  ",
                Tie,
            ),
            ("Reasoning.\n**[[B]]**", Second),
            // The last line is not a verdict line (cut off mid-reasoning, a closing remark):
            // invalid, never the label the reasoning mentions.
            (
                "A good answer warns of the risk, so [[A]] is better because it",
                Invalid,
            ),
            ("A good answer warns of the risk.\nSo", Invalid),
            ("Assistant A is better: [[A]]\nI hope this helps.", Invalid),
            ("Assistant A is better: [[A]]", First),
            ("[[B]] is better.", Invalid),
            // Two different labels on the last line cannot be told apart.
            ("Reasoning.\n[[A]] or [[B]]", Invalid),
            ("[[A]] [[A]]", First),
            ("", Invalid),
            ("\n  \n", Invalid),
        ];
        for (text, want) in cases {
            assert_eq!(p.parse(text), want, "{text:?}");
        }
        // `last` would have taken the reasoning's label of a cut-off reply.
        let last = mtbench();
        assert_eq!(
            last.parse("A good answer warns of the risk, so [[A]] is better because it"),
            First
        );
    }

    #[test]
    fn reasoning_blocks_are_ignored() {
        let p = chen("first");
        assert_eq!(
            p.parse("<think>Output (a) seems risky; maybe Tie?</think>\nOutput (b)"),
            Second
        );
        assert_eq!(p.parse("<think>Output (a) is best"), Invalid);
        assert_eq!(p.parse("<think>x</think>"), Invalid);
    }

    #[test]
    fn overrides_and_errors() {
        let t = Template::builtin("chen-safety").unwrap();
        let cfg = ParserConfig {
            first: Some("^1$".into()),
            second: Some("^2$".into()),
            tie: None,
            pick: Some("unique".into()),
        };
        let p = VerdictParser::for_config(&t, &cfg).unwrap();
        assert_eq!(p.parse("1"), First);
        assert_eq!(p.parse("2"), Second);
        assert_eq!(p.parse("Output (a)"), Invalid);
        assert_eq!(p.parse("tie"), Tie);

        let bad = ParserConfig {
            tie: Some("(".into()),
            ..Default::default()
        };
        let err = VerdictParser::for_config(&t, &bad).unwrap_err();
        assert_eq!(err.field, "tie");
        let bad = ParserConfig {
            pick: Some("random".into()),
            ..Default::default()
        };
        assert_eq!(
            VerdictParser::for_config(&t, &bad).unwrap_err().field,
            "pick"
        );
    }

    #[test]
    fn same_position_matches_are_invalid() {
        // Two labels that match at the same offset cannot be ordered: never guess.
        let p = VerdictParser::new("yes", "yes!", "no", Pick::First).unwrap();
        assert_eq!(p.parse("yes!"), Invalid);
        let p = VerdictParser::new("yes", "yes!", "no", Pick::Last).unwrap();
        assert_eq!(p.parse("no yes!"), Invalid);
        assert_eq!(p.parse("yes! no"), Tie);
    }
}
