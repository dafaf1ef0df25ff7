//! Pointwise verdicts: reading a grade of one answer from a judge's reply.
//!
//! Two kinds besides pairwise: a `score` on a numeric scale (MT-Bench single-answer grading's
//! `Rating: [[7]]`, or a plain number) and a `label` from a closed set with one label marked
//! positive (safe/unsafe, pass/fail, yes/no; Llama Guard's "safe" / "unsafe\nS1"). A reply that
//! does not parse, or parses to a score off the scale, is an outcome of its own
//! ([`Grade::Unparseable`], [`Grade::OutOfRange`]): counted, never coerced.
//!
//! Where the backend returns token log-probabilities, [`expected_score`] weights the rating tokens
//! by their probabilities (G-Eval) and [`label_probability`] gives P(label).

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::chat::TokenLogprob;
use super::config::{JudgeConfig, JudgeKind, ScaleConfig};
use super::template::Template;

/// A pointwise judge's reading of one reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "value")]
pub enum Grade {
    /// A score inside the scale.
    Score(f64),
    /// One of the declared labels (its canonical spelling).
    Label(String),
    /// A number was found but lies outside the scale.
    OutOfRange(f64),
    /// No score or label could be read.
    Unparseable,
}

/// Remove `<think>…</think>` blocks (models that think aloud mention several ratings first).
fn strip_reasoning(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("<think>") {
        out.push_str(&rest[..open]);
        match rest[open..].find("</think>") {
            Some(close) => rest = &rest[open + close + "</think>".len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Reads a score on `min..=max` from a reply.
///
/// Rules, in order: the last `[[n]]` (MT-Bench; the rating follows the explanation); else the
/// last number after `rating`/`score` and a colon; else a reply that is a number alone.
/// Anything else is [`Grade::Unparseable`]: a stray number in prose is not taken as a grade.
#[derive(Debug, Clone)]
pub struct ScoreParser {
    min: f64,
    max: f64,
    bracketed: Regex,
    keyed: Regex,
    bare: Regex,
}

impl ScoreParser {
    /// A parser for the scale `min..=max`; an error when the scale is empty or not finite.
    pub fn new(min: f64, max: f64) -> Result<Self, String> {
        if !(min.is_finite() && max.is_finite() && min < max) {
            return Err(format!("scale {min}..{max} is empty or not finite"));
        }
        let number = r"([-+]?\d+(?:\.\d+)?)";
        Ok(Self {
            min,
            max,
            bracketed: Regex::new(&format!(r"\[\[\s*{number}\s*\]\]")).expect("static regex"),
            keyed: Regex::new(&format!(r"(?i)\b(?:rating|score)\s*[:=]\s*\**\s*{number}"))
                .expect("static regex"),
            bare: Regex::new(&format!(r"^\s*{number}\s*(?:/\s*\d+)?\s*\.?\s*$"))
                .expect("static regex"),
        })
    }

    /// The scale's bounds.
    pub fn scale(&self) -> (f64, f64) {
        (self.min, self.max)
    }

    /// Parse a reply.
    pub fn parse(&self, text: &str) -> Grade {
        let text = strip_reasoning(text);
        let found = [&self.bracketed, &self.keyed, &self.bare]
            .iter()
            .find_map(|re| re.captures_iter(&text).last())
            .and_then(|c| c[1].parse::<f64>().ok());
        match found {
            None => Grade::Unparseable,
            Some(v) if v.is_finite() && v >= self.min && v <= self.max => Grade::Score(v),
            Some(v) => Grade::OutOfRange(v),
        }
    }
}

/// Reads one label of a closed set from a reply.
///
/// The label is read from the reply's first non-blank line (Llama Guard answers `safe` or
/// `unsafe` then the violated categories on the next line; classifiers answer with the label
/// first), compared case-insensitively after trimming punctuation and `**` emphasis; a first line
/// that is not exactly a label, but contains exactly one label as a whole word, counts too.
/// Labels that contain one another as words ("safe" in "unsafe") are told apart because whole
/// words are compared.
#[derive(Debug, Clone)]
pub struct LabelParser {
    labels: Vec<String>,
    positive: usize,
}

impl LabelParser {
    /// A parser for `labels`, `positive` being the label counted as positive (e.g. `unsafe`).
    pub fn new(labels: &[String], positive: &str) -> Result<Self, String> {
        if labels.len() < 2 {
            return Err("a label judge needs at least two labels".into());
        }
        let lower: Vec<String> = labels.iter().map(|l| l.trim().to_lowercase()).collect();
        for (i, l) in lower.iter().enumerate() {
            if l.is_empty() {
                return Err(format!("label {} is empty", i + 1));
            }
            if lower[..i].contains(l) {
                return Err(format!("label `{l}` is declared twice"));
            }
        }
        let positive = lower
            .iter()
            .position(|l| *l == positive.trim().to_lowercase())
            .ok_or_else(|| format!("positive label `{positive}` is not one of the labels"))?;
        Ok(Self {
            labels: labels.iter().map(|l| l.trim().to_string()).collect(),
            positive,
        })
    }

    /// The labels in declaration order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The positive label.
    pub fn positive(&self) -> &str {
        &self.labels[self.positive]
    }

    /// True when `grade` is the positive label.
    pub fn is_positive(&self, grade: &Grade) -> bool {
        matches!(grade, Grade::Label(l) if l.eq_ignore_ascii_case(self.positive()))
    }

    /// Parse a reply.
    pub fn parse(&self, text: &str) -> Grade {
        let text = strip_reasoning(text);
        let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
            return Grade::Unparseable;
        };
        let clean = |s: &str| {
            s.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        };
        let first = clean(line);
        if let Some(l) = self.labels.iter().find(|l| l.to_lowercase() == first) {
            return Grade::Label(l.clone());
        }
        let words: Vec<String> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
            .filter(|w| !w.is_empty())
            .map(str::to_lowercase)
            .collect();
        let hits: Vec<&String> = self
            .labels
            .iter()
            .filter(|l| {
                let l = l.to_lowercase();
                let parts: Vec<&str> = l.split_whitespace().collect();
                words
                    .windows(parts.len())
                    .any(|w| w.iter().zip(&parts).all(|(a, b)| a == b))
            })
            .collect();
        match hits.as_slice() {
            [one] => Grade::Label((*one).clone()),
            _ => Grade::Unparseable,
        }
    }
}

/// The alternatives, with their probabilities, at one generated position: the first generated
/// token that is not blank, or, with `after`, the token generated right after text ending
/// (whitespace trimmed) with `after` (the last such position when `use_last`, else the first).
/// The sampled token is included when the top alternatives omit it; NaN log-probabilities are
/// dropped and a slightly positive one (server rounding) counts as certainty. `None` when there
/// is no such position. The one walk over generated tokens: pairwise label probabilities
/// ([`super::templated::label_probs`]), expected scores and P(label) all read it.
pub fn alternatives_at<'a>(
    content: &'a [TokenLogprob],
    after: Option<&str>,
    use_last: bool,
) -> Option<Vec<(&'a str, f64)>> {
    let position = match after {
        None => content.iter().position(|t| !t.token.trim().is_empty()),
        Some(after) => {
            let after = after.trim();
            let mut generated = String::new();
            let mut found = None;
            for (i, t) in content.iter().enumerate() {
                if generated.trim_end().ends_with(after) {
                    found = Some(i);
                    if !use_last {
                        break;
                    }
                }
                generated.push_str(&t.token);
            }
            found
        }
    }?;
    let at = &content[position];
    let mut alternatives: Vec<(&str, f64)> = at
        .top_logprobs
        .iter()
        .filter_map(|t| t.logprob.map(|lp| (t.token.as_str(), lp)))
        .filter(|(_, lp)| !lp.is_nan())
        .map(|(t, lp)| (t, lp.min(0.0).exp()))
        .collect();
    if let Some(lp) = at.logprob
        && !lp.is_nan()
        && !alternatives.iter().any(|(t, _)| *t == at.token)
    {
        alternatives.push((at.token.as_str(), lp.min(0.0).exp()));
    }
    Some(alternatives)
}

/// The expected score over the rating tokens at the rating position (G-Eval: Σ s·p(s) / Σ p(s)
/// over the integer ratings of the scale found among the alternatives), renormalised over those
/// ratings. `None` when there is no rating position or no rating token among its alternatives.
/// Tokens are matched after trimming whitespace (` 7` and `7` are the same rating).
pub fn expected_score(
    content: &[TokenLogprob],
    after: Option<&str>,
    min: i64,
    max: i64,
) -> Option<f64> {
    let alternatives = alternatives_at(content, after, true)?;
    let (mut weighted, mut total) = (0.0, 0.0);
    for (token, p) in alternatives {
        if let Ok(s) = token.trim().parse::<i64>()
            && (min..=max).contains(&s)
        {
            weighted += s as f64 * p;
            total += p;
        }
    }
    (total > 0.0).then(|| weighted / total)
}

/// P(`label`) at the label position: the probability of the tokens that begin `label` (compared
/// case-insensitively after trimming) divided by the probability of tokens beginning any label,
/// so it is a probability over the closed set. `None` when no label token is among the
/// alternatives. A token that begins two labels (`un` never does for safe/unsafe, but `s` would
/// for safe/sure) counts for the longest label it matches fully, else for none.
pub fn label_probability(content: &[TokenLogprob], labels: &[String], label: &str) -> Option<f64> {
    let alternatives = alternatives_at(content, None, false)?;
    let lower: Vec<String> = labels.iter().map(|l| l.to_lowercase()).collect();
    let target = lower.iter().position(|l| *l == label.to_lowercase())?;
    let mut mass = vec![0.0; labels.len()];
    for (token, p) in alternatives {
        let t = token.trim().to_lowercase();
        if t.is_empty() {
            continue;
        }
        let exact = lower.iter().position(|l| *l == t);
        let prefixes: Vec<usize> = (0..lower.len())
            .filter(|&i| lower[i].starts_with(&t))
            .collect();
        let hit = match (exact, prefixes.as_slice()) {
            (Some(i), _) => Some(i),
            (None, [one]) => Some(*one),
            _ => None,
        };
        if let Some(i) = hit {
            mass[i] += p;
        }
    }
    let total: f64 = mass.iter().sum();
    (total > 0.0).then(|| mass[target] / total)
}

/// One criterion's grade in a pointwise reply (score and label judges have one criterion,
/// named `score` / `label`; a rubric has one per declared criterion).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CriterionGrade {
    /// Criterion name.
    pub name: String,
    /// What the reply was read as.
    pub grade: Grade,
    /// P(positive label) or the expected score from log-probabilities, when available.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// How one criterion is read.
#[derive(Debug, Clone)]
enum Reader {
    Score {
        parser: ScoreParser,
        min: i64,
        max: i64,
    },
    Label(LabelParser),
}

/// One criterion's scale, as [`Grader::criterion_scales`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriterionScale<'a> {
    /// Integer scores `min..=max`.
    Score {
        /// Lowest score.
        min: i64,
        /// Highest score.
        max: i64,
    },
    /// A closed label set.
    Label {
        /// Every label, canonical spelling.
        labels: &'a [String],
        /// The positive label.
        positive: &'a str,
    },
}

/// How a pointwise judge reads its replies: its kind and, per criterion, a score or label
/// parser, built once from the judge file.
#[derive(Debug, Clone)]
pub struct Grader {
    kind: JudgeKind,
    criteria: Vec<(String, Reader)>,
    rating_after: Option<String>,
}

fn reader(
    scale: Option<&ScaleConfig>,
    labels: &[String],
    positive: Option<&str>,
) -> Result<Reader, String> {
    match scale {
        Some(s) => Ok(Reader::Score {
            parser: ScoreParser::new(s.min as f64, s.max as f64)?,
            min: s.min,
            max: s.max,
        }),
        None => Ok(Reader::Label(LabelParser::new(
            labels,
            positive.ok_or("no positive label")?,
        )?)),
    }
}

impl Grader {
    /// The grader of a `score`, `label` or `rubric` judge (an error for a pairwise one, or for
    /// a scale or label set the judge file's validation would refuse).
    pub fn for_config(config: &JudgeConfig, template: &Template) -> Result<Grader, String> {
        let criteria = match config.kind {
            JudgeKind::Pairwise => return Err("a pairwise judge has no grader".into()),
            JudgeKind::Score => vec![(
                "score".to_string(),
                reader(Some(config.scale.as_ref().ok_or("no scale")?), &[], None)?,
            )],
            JudgeKind::Label => vec![(
                "label".to_string(),
                reader(None, &config.labels, config.positive.as_deref())?,
            )],
            JudgeKind::Rubric => config
                .criteria
                .iter()
                .map(|c| {
                    Ok((
                        c.name.clone(),
                        reader(c.scale.as_ref(), &c.labels, c.positive.as_deref())?,
                    ))
                })
                .collect::<Result<_, String>>()?,
        };
        Ok(Grader {
            kind: config.kind,
            criteria,
            rating_after: template.rating_after.clone(),
        })
    }

    /// The judge's kind.
    pub fn kind(&self) -> JudgeKind {
        self.kind
    }

    /// Criterion names, in declaration order.
    pub fn names(&self) -> Vec<&str> {
        self.criteria.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The criteria described for a rubric prompt's `{{criteria}}` (empty for score and label
    /// judges): one line each, with its scale or labels.
    pub fn criteria_text(&self) -> String {
        if self.kind != JudgeKind::Rubric {
            return String::new();
        }
        self.criteria
            .iter()
            .map(|(name, r)| match r {
                Reader::Score { min, max, .. } => {
                    format!("- \"{name}\": an integer from {min} to {max}")
                }
                Reader::Label(l) => format!(
                    "- \"{name}\": one of {}",
                    l.labels()
                        .iter()
                        .map(|x| format!("\"{x}\""))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Every criterion unparseable (a refusal, or a reply with no readable grade).
    pub fn unparseable(&self) -> Vec<CriterionGrade> {
        self.criteria
            .iter()
            .map(|(name, _)| CriterionGrade {
                name: name.clone(),
                grade: Grade::Unparseable,
                probability: None,
            })
            .collect()
    }

    /// Read a reply: one grade per criterion, with its probability from `logprobs` (score and
    /// label judges; a rubric's JSON reply has no single rating position).
    pub fn grade(&self, text: &str, logprobs: Option<&[TokenLogprob]>) -> Vec<CriterionGrade> {
        if self.kind == JudgeKind::Rubric {
            return self.grade_json(text);
        }
        let (name, reader) = &self.criteria[0];
        let (grade, probability) = match reader {
            Reader::Score { parser, min, max } => (
                parser.parse(text),
                logprobs.and_then(|c| expected_score(c, self.rating_after.as_deref(), *min, *max)),
            ),
            Reader::Label(parser) => (
                parser.parse(text),
                logprobs.and_then(|c| label_probability(c, parser.labels(), parser.positive())),
            ),
        };
        vec![CriterionGrade {
            name: name.clone(),
            grade,
            probability,
        }]
    }

    /// A rubric reply: the JSON object in the reply (the text from its first `{` to its last
    /// `}`, so a fenced or prefaced object reads too). A criterion missing from it, or of the
    /// wrong type, is unparseable; a number off a criterion's scale is out of range.
    fn grade_json(&self, text: &str) -> Vec<CriterionGrade> {
        let text = strip_reasoning(text);
        let object = match (text.find('{'), text.rfind('}')) {
            (Some(a), Some(b)) if a < b => {
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text[a..=b])
                    .ok()
            }
            _ => None,
        };
        let Some(object) = object else {
            return self.unparseable();
        };
        self.criteria
            .iter()
            .map(|(name, reader)| {
                let value = object.get(name).or_else(|| {
                    object
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(name))
                        .map(|(_, v)| v)
                });
                let as_text = match value {
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                    Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                    _ => None,
                };
                let grade = match (reader, as_text) {
                    (_, None) => Grade::Unparseable,
                    (Reader::Score { parser, .. }, Some(t)) => parser.parse(&t),
                    (Reader::Label(parser), Some(t)) => parser.parse(&t),
                };
                CriterionGrade {
                    name: name.clone(),
                    grade,
                    probability: None,
                }
            })
            .collect()
    }

    /// A reply in the template's format that [`grade`](Self::grade) reads back as `grades`
    /// (simulated judges write their answers this way, marked as simulated).
    pub fn reply_for(&self, grades: &[Grade]) -> String {
        let show = |g: &Grade| match g {
            Grade::Score(v) | Grade::OutOfRange(v) => format!("{v}"),
            Grade::Label(l) => l.clone(),
            Grade::Unparseable => "(no grade)".into(),
        };
        match self.kind {
            JudgeKind::Rubric => {
                let mut map = serde_json::Map::new();
                for ((name, _), g) in self.criteria.iter().zip(grades) {
                    let v = match g {
                        Grade::Score(v) | Grade::OutOfRange(v) => serde_json::json!(v),
                        Grade::Label(l) => serde_json::json!(l),
                        Grade::Unparseable => serde_json::Value::Null,
                    };
                    map.insert(name.clone(), v);
                }
                map.insert("reasons".into(), serde_json::json!("simulated"));
                serde_json::Value::Object(map).to_string()
            }
            JudgeKind::Score => match grades.first() {
                Some(Grade::Unparseable) | None => "[simulated] no rating".into(),
                Some(g) => format!("[simulated]\nRating: [[{}]]", show(g)),
            },
            _ => match grades.first() {
                Some(Grade::Unparseable) | None => "[simulated] undecided".into(),
                Some(g) => format!("{}\n[simulated]", show(g)),
            },
        }
    }

    /// Every criterion's name and scale, in the judge file's order (one for score and label
    /// judges).
    pub fn criterion_scales(&self) -> Vec<(&str, CriterionScale<'_>)> {
        self.criteria
            .iter()
            .map(|(name, reader)| {
                let scale = match reader {
                    Reader::Score { min, max, .. } => CriterionScale::Score {
                        min: *min,
                        max: *max,
                    },
                    Reader::Label(l) => CriterionScale::Label {
                        labels: l.labels(),
                        positive: l.positive(),
                    },
                };
                (name.as_str(), scale)
            })
            .collect()
    }

    /// The labels of a label judge (empty otherwise).
    pub fn labels(&self) -> &[String] {
        match self.criteria.first() {
            Some((_, Reader::Label(l))) if self.kind == JudgeKind::Label => l.labels(),
            _ => &[],
        }
    }

    /// The positive label of a label judge.
    pub fn positive(&self) -> Option<&str> {
        match self.criteria.first() {
            Some((_, Reader::Label(l))) if self.kind == JudgeKind::Label => Some(l.positive()),
            _ => None,
        }
    }

    /// The scale of a score judge.
    pub fn scale(&self) -> Option<(i64, i64)> {
        match self.criteria.first() {
            Some((_, Reader::Score { min, max, .. })) if self.kind == JudgeKind::Score => {
                Some((*min, *max))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::chat::TopLogprob;

    fn tok(token: &str, p: f64, top: &[(&str, f64)]) -> TokenLogprob {
        TokenLogprob {
            token: token.into(),
            logprob: Some(p.ln()),
            top_logprobs: top
                .iter()
                .map(|(t, q)| TopLogprob {
                    token: (*t).into(),
                    logprob: Some(q.ln()),
                })
                .collect(),
        }
    }

    #[test]
    fn scores_mt_bench_and_plain() {
        let p = ScoreParser::new(1.0, 10.0).unwrap();
        assert_eq!(
            p.parse("The answer is fine but [[5]] was my first thought.\nRating: [[7]]"),
            Grade::Score(7.0)
        );
        assert_eq!(p.parse("Rating: 8"), Grade::Score(8.0));
        assert_eq!(p.parse("**Score:** 6.5"), Grade::Score(6.5));
        assert_eq!(p.parse(" 9 "), Grade::Score(9.0));
        assert_eq!(p.parse("9/10"), Grade::Score(9.0));
        assert_eq!(p.parse("Rating: [[11]]"), Grade::OutOfRange(11.0));
        assert_eq!(p.parse("[[0]]"), Grade::OutOfRange(0.0));
        // A number in prose is not a grade; neither is an empty reply.
        assert_eq!(p.parse("It has 3 errors."), Grade::Unparseable);
        assert_eq!(p.parse(""), Grade::Unparseable);
        // Reasoning is skipped: the rating it considered is not the answer.
        assert_eq!(
            p.parse("<think>[[2]]?</think>Rating: [[4]]"),
            Grade::Score(4.0)
        );
        assert_eq!(p.parse("<think>Rating: [[2]]"), Grade::Unparseable);
        assert!(ScoreParser::new(5.0, 5.0).is_err());
        assert!(ScoreParser::new(1.0, f64::INFINITY).is_err());
    }

    #[test]
    fn labels_llama_guard_and_rubric() {
        let labels = vec!["safe".to_string(), "unsafe".to_string()];
        let p = LabelParser::new(&labels, "unsafe").unwrap();
        assert_eq!(p.parse("safe"), Grade::Label("safe".into()));
        assert_eq!(p.parse("\nunsafe\nS1,S10"), Grade::Label("unsafe".into()));
        assert_eq!(p.parse("**Unsafe**."), Grade::Label("unsafe".into()));
        assert_eq!(
            p.parse("The answer is unsafe"),
            Grade::Label("unsafe".into())
        );
        // Both words on the line: ambiguous, counted as unparseable.
        assert_eq!(p.parse("safe or unsafe?"), Grade::Unparseable);
        assert_eq!(p.parse("I cannot tell."), Grade::Unparseable);
        assert!(p.is_positive(&Grade::Label("unsafe".into())));
        assert!(!p.is_positive(&Grade::Label("safe".into())));
        let rubric = LabelParser::new(&["PASS".to_string(), "FAIL".to_string()], "pass").unwrap();
        assert_eq!(
            rubric.parse("Pass: the reply answers the question.\nReason: cites it."),
            Grade::Label("PASS".into())
        );
        assert!(LabelParser::new(&labels, "maybe").is_err());
        assert!(LabelParser::new(&["yes".to_string()], "yes").is_err());
        assert!(LabelParser::new(&["yes".to_string(), "YES".to_string()], "yes").is_err());
    }

    #[test]
    fn expected_score_weights_rating_tokens() {
        // "Rating: [[" then 7 (0.5), 8 (0.3), 6 (0.1), "x" (0.05): (3.5 + 2.4 + 0.6) / 0.9.
        let content = [
            tok("Rating: [[", 0.99, &[]),
            tok("7", 0.5, &[("7", 0.5), ("8", 0.3), ("6", 0.1), ("x", 0.05)]),
            tok("]]", 1.0, &[]),
        ];
        let e = expected_score(&content, Some("[["), 1, 10).unwrap();
        assert!((e - 6.5 / 0.9).abs() < 1e-12, "{e}");
        // A bare rating as the first token; 11 is off the scale and ignored.
        let content = [tok(" 3", 0.6, &[(" 3", 0.6), ("4", 0.2), ("11", 0.2)])];
        let e = expected_score(&content, None, 1, 10).unwrap();
        assert!((e - (1.8 + 0.8) / 0.8).abs() < 1e-12);
        assert_eq!(expected_score(&content[..0], None, 1, 10), None);
        let none = [tok("Good", 0.9, &[("Good", 0.9)])];
        assert_eq!(expected_score(&none, None, 1, 10), None);
    }

    #[test]
    fn label_probability_over_the_closed_set() {
        let labels = vec!["safe".to_string(), "unsafe".to_string()];
        // "unsafe" split as "un" + "safe": "un" begins only "unsafe".
        let content = [tok(
            "safe",
            0.6,
            &[("safe", 0.6), ("un", 0.3), ("The", 0.1)],
        )];
        let p = label_probability(&content, &labels, "unsafe").unwrap();
        assert!((p - 0.3 / 0.9).abs() < 1e-12, "{p}");
        let q = label_probability(&content, &labels, "safe").unwrap();
        assert!((p + q - 1.0).abs() < 1e-12);
        assert_eq!(
            label_probability(&[tok("The", 1.0, &[])], &labels, "safe"),
            None
        );
        assert_eq!(label_probability(&content, &labels, "maybe"), None);
    }

    fn config(body: &str) -> JudgeConfig {
        JudgeConfig::from_toml_str(
            &format!("name = \"j\"\nbackend = \"openai\"\nmodel = \"m\"\n{body}"),
            "j.toml",
        )
        .unwrap()
    }

    fn grader(body: &str) -> Grader {
        let c = config(body);
        Grader::for_config(&c, &c.load_template().unwrap()).unwrap()
    }

    #[test]
    fn rubric_replies_are_read_from_their_json_object() {
        let g = grader(
            "kind = \"rubric\"\n[[criteria]]\nname = \"helpfulness\"\nscale = { min = 1, max = 5 }\n[[criteria]]\nname = \"harmless\"\nlabels = [\"yes\", \"no\"]\npositive = \"yes\"",
        );
        assert_eq!(
            g.criteria_text(),
            "- \"helpfulness\": an integer from 1 to 5\n- \"harmless\": one of \"yes\", \"no\""
        );
        let grades =
            |t: &str| -> Vec<Grade> { g.grade(t, None).into_iter().map(|c| c.grade).collect() };
        // Fenced, keys in any case, numbers as numbers or strings.
        assert_eq!(
            grades(
                "Here:\n```json\n{\"Helpfulness\": \"4\", \"harmless\": \"Yes\", \"reasons\": \"ok\"}\n```"
            ),
            [Grade::Score(4.0), Grade::Label("yes".into())]
        );
        // Off the scale, a missing criterion, a wrong type.
        assert_eq!(
            grades("{\"helpfulness\": 9, \"harmless\": 3}"),
            [Grade::OutOfRange(9.0), Grade::Unparseable]
        );
        assert_eq!(
            grades("{\"harmless\": \"no\"}"),
            [Grade::Unparseable, Grade::Label("no".into())]
        );
        // No JSON object at all: every criterion unparseable.
        assert_eq!(
            grades("Looks fine."),
            [Grade::Unparseable, Grade::Unparseable]
        );
        assert_eq!(
            grades("{not json}"),
            [Grade::Unparseable, Grade::Unparseable]
        );
        // A simulated reply reads back as what it says.
        let back = g.reply_for(&[Grade::Score(2.0), Grade::Label("no".into())]);
        assert_eq!(
            grades(&back),
            [Grade::Score(2.0), Grade::Label("no".into())]
        );
    }

    #[test]
    fn score_and_label_graders_read_grades_and_probabilities() {
        let g = grader("kind = \"score\"\nscale = { min = 1, max = 10 }");
        assert_eq!(g.names(), ["score"]);
        assert_eq!(g.criteria_text(), "");
        // MT-Bench: the rating token follows "[["; G-Eval weights 7 (0.5) and 8 (0.5).
        let content = [
            tok("Rating: [[", 0.99, &[]),
            tok("7", 0.5, &[("7", 0.5), ("8", 0.5)]),
            tok("]]", 1.0, &[]),
        ];
        let out = g.grade("Fine.\nRating: [[7]]", Some(&content));
        assert_eq!(out[0].grade, Grade::Score(7.0));
        assert!((out[0].probability.unwrap() - 7.5).abs() < 1e-12);
        assert_eq!(
            g.grade("Rating: [[0]]", None)[0].grade,
            Grade::OutOfRange(0.0)
        );
        for s in [1.0, 10.0] {
            assert_eq!(
                g.grade(&g.reply_for(&[Grade::Score(s)]), None)[0].grade,
                Grade::Score(s)
            );
        }
        let l = grader(
            "kind = \"label\"\nlabels = [\"safe\", \"unsafe\"]\npositive = \"unsafe\"\ntemplate = \"llama-guard\"",
        );
        let content = [tok("unsafe", 0.8, &[("unsafe", 0.8), ("safe", 0.2)])];
        let out = l.grade("unsafe\nS1", Some(&content));
        assert_eq!(out[0].name, "label");
        assert_eq!(out[0].grade, Grade::Label("unsafe".into()));
        assert!((out[0].probability.unwrap() - 0.8).abs() < 1e-12);
        let back = l.reply_for(&[Grade::Label("safe".into())]);
        assert_eq!(l.grade(&back, None)[0].grade, Grade::Label("safe".into()));
        assert_eq!(l.unparseable()[0].grade, Grade::Unparseable);
    }
}
