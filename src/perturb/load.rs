//! Loading one artifact file: TOML is parsed into a tree that keeps the byte span of every key
//! and value, then checked field by field so each error names the file, line and field path
//! (e.g. `operation.variants[1].weight`), which serde's derived errors cannot do for the nested,
//! kind-dependent `[operation]` table.

use super::{Artifact, ContextPlace, Operation, PerturbError, ReorderUnit, Variant};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;
use std::ops::Range;
use toml::Spanned;

/// A TOML value with spans.
#[derive(Debug)]
pub(crate) enum Node {
    Str(String),
    Int(i64),
    /// Floats and booleans are never valid in an artifact; only their type name is reported.
    Float,
    Bool,
    Datetime,
    Array(Vec<Spanned<Node>>),
    Table(Vec<(Spanned<String>, Spanned<Node>)>),
}

/// toml's private marker key for datetime values.
const DATETIME_KEY: &str = "$__toml_private_datetime";

impl Node {
    fn type_name(&self) -> &'static str {
        match self {
            Node::Str(_) => "a string",
            Node::Int(_) => "an integer",
            Node::Float => "a float",
            Node::Bool => "a boolean",
            Node::Datetime => "a datetime",
            Node::Array(_) => "an array",
            Node::Table(_) => "a table",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        i64::try_from(v)
            .map(Node::Int)
            .map_err(|_| E::custom("integer out of range"))
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Float)
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element::<Spanned<Node>>()? {
            out.push(v);
        }
        Ok(Node::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut out = Vec::new();
        while let Some(k) = map.next_key::<KeyOrDatetime>()? {
            match k {
                KeyOrDatetime::Datetime => {
                    map.next_value::<de::IgnoredAny>()?;
                    return Ok(Node::Datetime);
                }
                KeyOrDatetime::Key(k) => {
                    let v = map.next_value::<Spanned<Node>>()?;
                    out.push((k, v));
                }
            }
        }
        Ok(Node::Table(out))
    }
}

/// A table key with its span, or toml's datetime marker (whose key deserializer does not
/// support spans).
enum KeyOrDatetime {
    Key(Spanned<String>),
    Datetime,
}

impl<'de> Deserialize<'de> for KeyOrDatetime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Ask for a spanned key the way `Spanned<T>` does: toml's key deserializer answers with
        // a map (start, end, value); its datetime deserializer answers with a plain marker string.
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyOrDatetime;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyOrDatetime, E> {
                if v == DATETIME_KEY {
                    Ok(KeyOrDatetime::Datetime)
                } else {
                    // No span available (not produced by toml's parser in practice).
                    Ok(KeyOrDatetime::Key(Spanned::new(0..0, v.to_string())))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<KeyOrDatetime, A::Error> {
                let s = Spanned::<String>::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(KeyOrDatetime::Key(s))
            }
        }
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, V)
    }
}

// The names serde_spanned uses to ask a deserializer for a spanned value (mirrors
// `serde_spanned::__unstable`; checked by the datetime and key tests below).
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_FIELDS: &[&str] = &[
    "$__serde_spanned_private_start",
    "$__serde_spanned_private_end",
    "$__serde_spanned_private_value",
];

/// 1-based line of byte `offset` in `src`.
fn line_of(src: &str, offset: usize) -> usize {
    let end = offset.min(src.len());
    src.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Parse the span tree of a TOML document.
fn parse_tree(file: &str, src: &str) -> Result<Spanned<Node>, PerturbError> {
    toml::from_str::<Spanned<Node>>(src).map_err(|e| PerturbError::Syntax {
        file: file.to_string(),
        line: e.span().map(|s| line_of(src, s.start)),
        message: e.message().trim().replace('\n', " "),
    })
}

/// Span of the node at `path` (`a.b[2].c`), or of the deepest existing ancestor.
fn span_of(root: &Spanned<Node>, path: &str) -> Option<Range<usize>> {
    let mut node = root;
    let mut best = None;
    for seg in path.split('.') {
        let (name, idx) = match seg.find('[') {
            Some(p) => (
                &seg[..p],
                seg[p + 1..].trim_end_matches(']').parse::<usize>().ok(),
            ),
            None => (seg, None),
        };
        let Node::Table(entries) = node.get_ref() else {
            break;
        };
        let Some((k, v)) = entries.iter().find(|(k, _)| k.get_ref() == name) else {
            break;
        };
        best = Some(k.span());
        node = v;
        if let Some(i) = idx {
            let Node::Array(items) = node.get_ref() else {
                break;
            };
            let Some(item) = items.get(i) else { break };
            best = Some(item.span());
            node = item;
        }
    }
    best
}

/// 1-based line of the top-level `key` in `src`, if the document parses.
pub(crate) fn line_of_key(src: &str, key: &str) -> Option<usize> {
    let root = toml::from_str::<Spanned<Node>>(src).ok()?;
    span_of(&root, key).map(|s| line_of(src, s.start))
}

/// Error-reporting context for one file.
struct Cx<'a> {
    file: &'a str,
    src: &'a str,
}

impl Cx<'_> {
    fn err(&self, field: &str, span: Option<Range<usize>>, message: String) -> PerturbError {
        PerturbError::Invalid {
            file: self.file.to_string(),
            line: span.map(|s| line_of(self.src, s.start)),
            field: field.to_string(),
            message,
        }
    }
}

/// A table being checked, with its field path.
struct Tbl<'a> {
    path: String,
    /// `None` for the document root, whose span would only point at line 1.
    span: Option<Range<usize>>,
    entries: &'a [(Spanned<String>, Spanned<Node>)],
}

impl<'a> Tbl<'a> {
    fn field(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn get(&self, key: &str) -> Option<&'a Spanned<Node>> {
        self.entries
            .iter()
            .find(|(k, _)| k.get_ref() == key)
            .map(|(_, v)| v)
    }

    /// Reject the first key not in `allowed`; `what` says whose fields these are.
    fn allow(&self, cx: &Cx, allowed: &[&str], what: &str) -> Result<(), PerturbError> {
        for (k, _) in self.entries {
            if !allowed.contains(&k.get_ref().as_str()) {
                return Err(cx.err(
                    &self.field(k.get_ref()),
                    Some(k.span()),
                    format!(
                        "unknown field for {what}; expected one of: {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn required(&self, cx: &Cx, key: &str) -> Result<&'a Spanned<Node>, PerturbError> {
        self.get(key).ok_or_else(|| {
            cx.err(
                &self.field(key),
                self.span.clone(),
                "missing required field".into(),
            )
        })
    }

    fn type_err(&self, cx: &Cx, key: &str, v: &Spanned<Node>, want: &str) -> PerturbError {
        cx.err(
            &self.field(key),
            Some(v.span()),
            format!("expected {want}, found {}", v.get_ref().type_name()),
        )
    }

    fn opt_str(&self, cx: &Cx, key: &str) -> Result<Option<String>, PerturbError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                Node::Str(s) => Ok(Some(s.clone())),
                _ => Err(self.type_err(cx, key, v, "a string")),
            },
        }
    }

    fn req_str(&self, cx: &Cx, key: &str) -> Result<String, PerturbError> {
        let v = self.required(cx, key)?;
        match v.get_ref() {
            Node::Str(s) => Ok(s.clone()),
            _ => Err(self.type_err(cx, key, v, "a string")),
        }
    }

    /// An optional integer that must fit `T` (range rules are checked later by `Artifact::check`).
    fn opt_int<T: TryFrom<i64>>(&self, cx: &Cx, key: &str) -> Result<Option<T>, PerturbError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.get_ref() {
                Node::Int(i) => T::try_from(*i).map(Some).map_err(|_| {
                    cx.err(
                        &self.field(key),
                        Some(v.span()),
                        format!("{i} is out of range (must be a positive integer)"),
                    )
                }),
                _ => Err(self.type_err(cx, key, v, "an integer")),
            },
        }
    }

    fn str_list(&self, cx: &Cx, key: &str) -> Result<Vec<String>, PerturbError> {
        let Some(v) = self.get(key) else {
            return Ok(Vec::new());
        };
        let Node::Array(items) = v.get_ref() else {
            return Err(self.type_err(cx, key, v, "an array of strings"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item.get_ref() {
                Node::Str(s) => Ok(s.clone()),
                other => Err(cx.err(
                    &format!("{}[{i}]", self.field(key)),
                    Some(item.span()),
                    format!("expected a string, found {}", other.type_name()),
                )),
            })
            .collect()
    }

    fn table(&self, cx: &Cx, key: &str) -> Result<Tbl<'a>, PerturbError> {
        let v = self.required(cx, key)?;
        match v.get_ref() {
            Node::Table(entries) => Ok(Tbl {
                path: self.field(key),
                span: Some(v.span()),
                entries,
            }),
            _ => Err(self.type_err(cx, key, v, "a table")),
        }
    }
}

/// Every operation kind with the fields it accepts (besides `kind`).
const KINDS: &[(&str, &[&str])] = &[
    ("prepend", &["text"]),
    ("append", &["text"]),
    ("wrap", &["prefix", "suffix"]),
    ("regex_replace", &["pattern", "replacement"]),
    ("reorder", &["unit"]),
    ("repeat", &["times"]),
    ("template", &["variants"]),
    ("verbose", &["openers", "restatement_leads", "closers"]),
    ("bullets", &[]),
    ("position", &[]),
    ("context", &["place", "text", "chosen_name", "other_name"]),
    ("compose", &["artifacts"]),
    (
        "rewrite",
        &[
            "rewriter",
            "instruction",
            "params",
            "checker",
            "min_length_percent",
            "max_length_percent",
            "skip_guards",
        ],
    ),
];

/// Parse and validate one artifact file.
pub(crate) fn parse_artifact(file: &str, src: &str) -> Result<Artifact, PerturbError> {
    let cx = Cx { file, src };
    let root = parse_tree(file, src)?;
    let Node::Table(entries) = root.get_ref() else {
        return Err(cx.err("", None, "the document must be a table".into()));
    };
    let top = Tbl {
        path: String::new(),
        span: None,
        entries,
    };
    top.allow(
        &cx,
        &[
            "id",
            "title",
            "description",
            "source",
            "expected_effect",
            "operation",
            "detector",
            "compose",
            "probe",
        ],
        "an artifact",
    )?;
    let id = top.req_str(&cx, "id")?;
    let title = top.req_str(&cx, "title")?;
    let description = top.req_str(&cx, "description")?;
    let source = top.req_str(&cx, "source")?;
    let expected_effect = top.req_str(&cx, "expected_effect")?;
    let operation = if top.get("compose").is_some() {
        if let Some(v) = top.get("operation") {
            return Err(cx.err(
                "operation",
                Some(v.span()),
                "a composed artifact (`compose = [...]`) takes its operations from the listed \
                 artifacts and must not have an [operation] table"
                    .into(),
            ));
        }
        Operation::Compose {
            artifacts: top.str_list(&cx, "compose")?,
            resolved: Default::default(),
        }
    } else {
        let op = top.table(&cx, "operation")?;
        parse_operation(&cx, &op)?
    };
    let detector = top.opt_str(&cx, "detector")?;
    let probe = top.opt_str(&cx, "probe")?;

    let artifact = Artifact {
        id,
        title,
        description,
        source,
        expected_effect,
        operation,
        detector,
        probe,
    };
    artifact
        .check()
        .map_err(|(field, message)| cx.err(&field, span_of(&root, &field), message))?;
    Ok(artifact)
}

fn parse_operation(cx: &Cx, op: &Tbl) -> Result<Operation, PerturbError> {
    let kind_node = op.required(cx, "kind")?;
    let Node::Str(kind) = kind_node.get_ref() else {
        return Err(op.type_err(cx, "kind", kind_node, "a string"));
    };
    let Some((_, fields)) = KINDS.iter().find(|(k, _)| k == kind) else {
        let names: Vec<&str> = KINDS.iter().map(|(k, _)| *k).collect();
        return Err(cx.err(
            &op.field("kind"),
            Some(kind_node.span()),
            format!(
                "unknown kind `{kind}`; expected one of: {}",
                names.join(", ")
            ),
        ));
    };
    let mut allowed = vec!["kind"];
    allowed.extend_from_slice(fields);
    op.allow(cx, &allowed, &format!("kind `{kind}`"))?;

    Ok(match kind.as_str() {
        "prepend" => Operation::Prepend {
            text: op.req_str(cx, "text")?,
        },
        "append" => Operation::Append {
            text: op.req_str(cx, "text")?,
        },
        "wrap" => Operation::Wrap {
            prefix: op.req_str(cx, "prefix")?,
            suffix: op.req_str(cx, "suffix")?,
        },
        "regex_replace" => Operation::RegexReplace {
            pattern: op.req_str(cx, "pattern")?,
            replacement: op.req_str(cx, "replacement")?,
        },
        "reorder" => {
            let unit = match op.opt_str(cx, "unit")?.as_deref() {
                None | Some("list_items") => ReorderUnit::ListItems,
                Some("sentences") => ReorderUnit::Sentences,
                Some(other) => {
                    return Err(cx.err(
                        &op.field("unit"),
                        op.get("unit").map(|v| v.span()),
                        format!("unknown unit `{other}`; expected one of: sentences, list_items"),
                    ));
                }
            };
            Operation::Reorder { unit }
        }
        "repeat" => Operation::Repeat {
            times: op.opt_int::<usize>(cx, "times")?.unwrap_or(1),
        },
        "template" => Operation::Template {
            variants: parse_variants(cx, op)?,
        },
        "verbose" => Operation::Verbose {
            openers: op.str_list(cx, "openers")?,
            restatement_leads: op.str_list(cx, "restatement_leads")?,
            closers: op.str_list(cx, "closers")?,
        },
        "bullets" => Operation::Bullets,
        // The JSON/serde form of a top-level `compose = [...]`.
        "compose" => Operation::Compose {
            artifacts: op.str_list(cx, "artifacts")?,
            resolved: Default::default(),
        },
        "position" => Operation::Position,
        "context" => {
            let place = match op.req_str(cx, "place")?.as_str() {
                "system" => ContextPlace::System,
                "note" => ContextPlace::Note,
                "names" => ContextPlace::Names,
                "verdict_line" => ContextPlace::VerdictLine,
                other => {
                    return Err(cx.err(
                        &op.field("place"),
                        op.get("place").map(|v| v.span()),
                        format!(
                            "unknown place `{other}`; expected one of: system, note, names, \
                             verdict_line"
                        ),
                    ));
                }
            };
            Operation::Context {
                place,
                text: op.opt_str(cx, "text")?.unwrap_or_default(),
                chosen_name: op.opt_str(cx, "chosen_name")?.unwrap_or_default(),
                other_name: op.opt_str(cx, "other_name")?.unwrap_or_default(),
            }
        }
        "rewrite" => Operation::Rewrite {
            rewriter: op.req_str(cx, "rewriter")?,
            instruction: op.req_str(cx, "instruction")?,
            params: match op.get("params") {
                None => Default::default(),
                Some(_) => {
                    let t = op.table(cx, "params")?;
                    let mut out = std::collections::BTreeMap::new();
                    for (k, _) in t.entries {
                        out.insert(k.get_ref().clone(), t.req_str(cx, k.get_ref())?);
                    }
                    out
                }
            },
            checker: op.opt_str(cx, "checker")?,
            min_length_percent: op.opt_int::<u32>(cx, "min_length_percent")?.unwrap_or(50),
            max_length_percent: op.opt_int::<u32>(cx, "max_length_percent")?.unwrap_or(300),
            skip_guards: op.str_list(cx, "skip_guards")?,
        },
        _ => unreachable!("kind validated against KINDS"),
    })
}

fn parse_variants(cx: &Cx, op: &Tbl) -> Result<Vec<Variant>, PerturbError> {
    let v = op.required(cx, "variants")?;
    let Node::Array(items) = v.get_ref() else {
        return Err(op.type_err(cx, "variants", v, "an array of tables"));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("{}[{i}]", op.field("variants"));
        let Node::Table(entries) = item.get_ref() else {
            return Err(cx.err(
                &path,
                Some(item.span()),
                format!("expected a table, found {}", item.get_ref().type_name()),
            ));
        };
        let t = Tbl {
            path,
            span: Some(item.span()),
            entries,
        };
        t.allow(cx, &["prefix", "suffix", "weight"], "a template variant")?;
        out.push(Variant {
            prefix: t.opt_str(cx, "prefix")?.unwrap_or_default(),
            suffix: t.opt_str(cx, "suffix")?.unwrap_or_default(),
            weight: t.opt_int::<u32>(cx, "weight")?.unwrap_or(1),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_and_datetimes() {
        let src = "a = 1\n[t]\nb = \"x\"\nd = 1979-05-27\n[[t.v]]\nc = true\n";
        let root = parse_tree("f", src).unwrap();
        assert_eq!(
            span_of(&root, "t.b").map(|s| line_of(src, s.start)),
            Some(3)
        );
        assert_eq!(
            span_of(&root, "t.v[0].c").map(|s| line_of(src, s.start)),
            Some(6)
        );
        let Node::Table(top) = root.get_ref() else {
            panic!()
        };
        let Node::Table(t) = top[1].1.get_ref() else {
            panic!()
        };
        assert!(matches!(t[1].1.get_ref(), Node::Datetime));
    }

    #[test]
    fn line_of_counts_newlines() {
        assert_eq!(line_of("a\nb\nc", 0), 1);
        assert_eq!(line_of("a\nb\nc", 2), 2);
        assert_eq!(line_of("a\nb\nc", 99), 3);
    }
}
