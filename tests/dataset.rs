//! Integration tests for `judge_audit::dataset`, on real files in a temp directory.
//!
//! Reference values marked "python" were computed independently with Python 3's `hashlib`, e.g.
//! `hashlib.sha256(b"judge-audit-pairs-v1:rb-1").digest()[0] & 1`.

use judge_audit::dataset::{
    self, DEFAULT_PLACEMENT_SEED, Dataset, DatasetError, LoadOptions, Pair, Preference,
};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// Write `content` to `name` inside a fresh temp dir; the dir must outlive the path.
fn temp_file(name: &str, content: &[u8]) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write temp file");
    (dir, path)
}

fn load(path: &Path) -> Result<Dataset, DatasetError> {
    dataset::load(path, &LoadOptions::default())
}

fn load_skipping(path: &Path) -> Result<Dataset, DatasetError> {
    let options = LoadOptions {
        skip_invalid: true,
        ..LoadOptions::default()
    };
    dataset::load(path, &options)
}

fn pair(id: &str, prompt: &str, a: &str, b: &str, preferred: Option<Preference>) -> Pair {
    Pair {
        id: id.into(),
        prompt: prompt.into(),
        response_a: a.into(),
        response_b: b.into(),
        preferred,
        category: None,
        label_kind: None,
    }
}

/// Assert that loading `content` as `name` fails at `line` on `field`, and that the message
/// names the file, the line and the field.
fn assert_invalid(name: &str, content: &str, line: usize, field: &str) {
    let (_dir, path) = temp_file(name, content.as_bytes());
    let err = load(&path).expect_err("load must fail");
    let text = err.to_string();
    match &err {
        DatasetError::Invalid {
            file,
            line: l,
            field: f,
            ..
        } => {
            assert_eq!(file, &path.display().to_string(), "{text}");
            assert_eq!(*l, line, "{text}");
            assert_eq!(f, field, "{text}");
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(text.contains(&path.display().to_string()), "{text}");
    assert!(text.contains(&format!(":{line}:")), "{text}");
    assert!(text.contains(&format!("field `{field}`")), "{text}");
}

#[test]
fn native_jsonl_loads_with_extra_fields_and_blank_lines() {
    let content = concat!(
        r#"{"id":"n1","source":"somewhere","prompt":"Q1","response_a":"A1","response_b":"B1","preferred":"tie","category":"cat","label_kind":"safety"}"#,
        "\n\n   \n",
        r#"{"id":"n2","prompt":"Q2","response_a":"A2","response_b":"B2","preferred":null}"#,
        "\r\n",
        r#"{"id":"n3","prompt":"Q3","response_a":"A3","response_b":"B3","preferred":"B"}"#,
    );
    let (_dir, path) = temp_file("native.jsonl", content.as_bytes());
    let ds = load(&path).unwrap();
    assert_eq!(ds.name, "native.jsonl");
    assert!(ds.skipped.is_empty());
    let mut first = pair("n1", "Q1", "A1", "B1", Some(Preference::Tie));
    first.category = Some("cat".into());
    first.label_kind = Some("safety".into());
    assert_eq!(
        ds.pairs,
        vec![
            first,
            pair("n2", "Q2", "A2", "B2", None),
            pair("n3", "Q3", "A3", "B3", Some(Preference::B)),
        ]
    );
}

#[test]
fn json_extension_is_read_as_json_lines() {
    let content = r#"{"id":"j1","prompt":"Q","response_a":"A","response_b":"B"}"#;
    let (_dir, path) = temp_file("x.JSON", content.as_bytes());
    assert_eq!(load(&path).unwrap().pairs.len(), 1);
}

#[test]
fn hash_is_sha256_of_canonical_pairs_json() {
    let mut second = pair("p2", "Why?", "x", "y", None);
    second.category = Some("c".into());
    second.label_kind = Some("safety".into());
    let pairs = vec![pair("p1", "Q?", "Yes.", "No.", Some(Preference::A)), second];
    // The canonical form: serde_json, struct field order, absent options omitted.
    let canonical = r#"[{"id":"p1","prompt":"Q?","response_a":"Yes.","response_b":"No.","preferred":"a"},{"id":"p2","prompt":"Why?","response_a":"x","response_b":"y","category":"c","label_kind":"safety"}]"#;
    assert_eq!(serde_json::to_string(&pairs).unwrap(), canonical);
    // python: hashlib.sha256(canonical.encode()).hexdigest()
    let expected = "f06269b2354535370f754b7140d8a6ce447cb4e23d38ce617223b06430fe9427";
    assert_eq!(dataset::hash_pairs(&pairs), expected);

    // A loaded file carries the same hash, and write_jsonl round-trips exactly.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("round.jsonl");
    dataset::write_jsonl(&pairs, &path).unwrap();
    let ds = load(&path).unwrap();
    assert_eq!(ds.pairs, pairs);
    assert_eq!(ds.hash, expected);
}

#[test]
fn chosen_on_b_matches_python_hashlib() {
    // python: hashlib.sha256(f"{seed}:{id}".encode()).digest()[0] & 1
    let cases = [
        (DEFAULT_PLACEMENT_SEED, "rb-1", true),  // first byte 0xdf
        (DEFAULT_PLACEMENT_SEED, "rb-2", false), // 0xf8
        (DEFAULT_PLACEMENT_SEED, "rb-3", true),  // 0xe1
        (DEFAULT_PLACEMENT_SEED, "42", true),    // 0xf7
        ("other-seed", "rb-1", false),           // 0x58
        ("other-seed", "rb-3", true),            // 0xdf
    ];
    for (seed, id, on_b) in cases {
        assert_eq!(dataset::chosen_on_b(seed, id), on_b, "{seed}:{id}");
    }
}

/// Lines 1..=6 of a RewardBench-style file named `pairs.jsonl`.
const REWARD_BENCH: &str = concat!(
    r#"{"id":"rb-1","prompt":"P1","chosen":"C1","rejected":"R1","subset":"refusals-dangerous"}"#,
    "\n",
    r#"{"id":"rb-2","prompt":"P2","chosen":"C2","rejected":"R2","category":"chat","chosen_model":"m"}"#,
    "\n\n",
    r#"{"prompt":"P4","chosen":"C4","rejected":"R4"}"#,
    "\n",
    r#"{"id":42,"prompt":"P5","chosen":"C5","rejected":"R5"}"#,
    "\n",
    r#"{"prompt":"P6","chosen":"C6","rejected":"R6","label_kind":"safety"}"#,
    "\n",
);

/// (id, response_a, response_b, preferred, category) of a loaded pair.
type Placed<'a> = (
    &'a str,
    &'a str,
    &'a str,
    Option<Preference>,
    Option<&'a str>,
);

#[test]
fn reward_bench_places_chosen_by_seeded_hash() {
    let (_dir, path) = temp_file("pairs.jsonl", REWARD_BENCH.as_bytes());
    let ds = load(&path).unwrap();
    let got: Vec<Placed> = ds
        .pairs
        .iter()
        .map(|p| {
            (
                p.id.as_str(),
                p.response_a.as_str(),
                p.response_b.as_str(),
                p.preferred,
                p.category.as_deref(),
            )
        })
        .collect();
    // python bits for "judge-audit-pairs-v1:<id>": rb-1 → 1, rb-2 → 0, pairs-4 → 0, 42 → 1,
    // pairs-6 → 1 (1 = chosen on b). Ids without an `id` use "<stem>-<line>", so line 4 and
    // line 6 (records 3 and 5) give pairs-4 and pairs-6; pairs-3 would have been 1 and pairs-5 0.
    let b = Some(Preference::B);
    let a = Some(Preference::A);
    assert_eq!(
        got,
        vec![
            ("rb-1", "R1", "C1", b, Some("refusals-dangerous")),
            ("rb-2", "C2", "R2", a, Some("chat")),
            ("pairs-4", "C4", "R4", a, None),
            ("42", "R5", "C5", b, None),
            ("pairs-6", "R6", "C6", b, None),
        ]
    );
    assert_eq!(ds.pairs[4].label_kind.as_deref(), Some("safety"));

    // Another seed moves rb-1 (python: "other-seed:rb-1" → bit 0) to a.
    let options = LoadOptions {
        placement_seed: Some("other-seed".into()),
        ..LoadOptions::default()
    };
    let reseeded = dataset::load(&path, &options).unwrap();
    assert_eq!(reseeded.pairs[0].response_a, "C1");
    assert_eq!(reseeded.pairs[0].preferred, Some(Preference::A));
    assert_ne!(reseeded.hash, ds.hash);
}

#[test]
fn judge_bench_labels_map_to_preferences() {
    let content = concat!(
        r#"{"pair_id":"jb-1","original_id":"x","source":"mmlu-pro-math","question":"Q1","response_A":"A1","response_B":"B1","label":"A>B"}"#,
        "\n",
        r#"{"pair_id":"jb-2","question":"Q2","response_A":"A2","response_B":"B2","label":"B>A"}"#,
        "\n",
        r#"{"pair_id":"jb-3","question":"Q3","response_A":"A3","response_B":"B3","label":"A=B"}"#,
        "\n",
    );
    let (_dir, path) = temp_file("jb.jsonl", content.as_bytes());
    let ds = load(&path).unwrap();
    let mut expected = vec![
        pair("jb-1", "Q1", "A1", "B1", Some(Preference::A)),
        pair("jb-2", "Q2", "A2", "B2", Some(Preference::B)),
        pair("jb-3", "Q3", "A3", "B3", Some(Preference::Tie)),
    ];
    for p in &mut expected {
        p.label_kind = Some("helpfulness".into());
    }
    assert_eq!(ds.pairs, expected);
}

#[test]
fn mixed_schemas_in_one_file() {
    let content = concat!(
        r#"{"id":"n1","prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
        r#"{"id":"rb-2","prompt":"Q","chosen":"C","rejected":"R"}"#,
        "\n",
        r#"{"pair_id":"jb","question":"Q","response_A":"A","response_B":"B","label":"B>A"}"#,
        "\n",
    );
    let (_dir, path) = temp_file("mixed.jsonl", content.as_bytes());
    let ids: Vec<String> = load(&path)
        .unwrap()
        .pairs
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["n1", "rb-2", "jb"]);
}

#[test]
fn jsonl_errors_name_file_line_and_field() {
    let good = r#"{"id":"ok","prompt":"Q","response_a":"A","response_b":"B"}"#;
    let cases: &[(&str, &str)] = &[
        (r#"{"id":"x","prompt":"Q","response_a":"A""#, "<json>"),
        (r#"["not","an","object"]"#, "<json>"),
        (r#"{"prompt":"Q","response_a":"A","response_b":"B"}"#, "id"),
        (
            r#"{"id":"  ","prompt":"Q","response_a":"A","response_b":"B"}"#,
            "id",
        ),
        (
            r#"{"id":true,"prompt":"Q","response_a":"A","response_b":"B"}"#,
            "id",
        ),
        (r#"{"id":"x","response_a":"A","response_b":"B"}"#, "prompt"),
        (
            r#"{"id":"x","prompt":7,"response_a":"A","response_b":"B"}"#,
            "prompt",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":" \n\t","response_b":"B"}"#,
            "response_a",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":"A","response_b":""}"#,
            "response_b",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":"A","response_b":["B"]}"#,
            "response_b",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":"A","response_b":"B","preferred":"c"}"#,
            "preferred",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":"A","response_b":"B","preferred":1}"#,
            "preferred",
        ),
        (
            r#"{"id":"x","prompt":"Q","response_a":"A","response_b":"B","category":3}"#,
            "category",
        ),
        (r#"{"id":"x","prompt":"Q","chosen":"C"}"#, "rejected"),
        (
            r#"{"id":"x","prompt":"","chosen":"C","rejected":"R"}"#,
            "prompt",
        ),
        (
            r#"{"question":"Q","response_A":"A","response_B":"B","label":"A>B"}"#,
            "pair_id",
        ),
        (
            r#"{"pair_id":"p","question":"Q","response_A":"A","response_B":"B","label":"A>>B"}"#,
            "label",
        ),
        (
            r#"{"pair_id":"p","question":"Q","response_B":"B","label":"A>B"}"#,
            "response_A",
        ),
    ];
    for (bad, field) in cases {
        // The bad record sits on line 3, after a good record and a blank line.
        assert_invalid("bad.jsonl", &format!("{good}\n\n{bad}\n{good}\n"), 3, field);
    }
}

#[test]
fn invalid_utf8_line_is_a_json_error() {
    let mut content =
        b"{\"id\":\"ok\",\"prompt\":\"Q\",\"response_a\":\"A\",\"response_b\":\"B\"}\n".to_vec();
    content.extend_from_slice(b"{\"id\":\"x\xff\"}\n");
    let (_dir, path) = temp_file("utf8.jsonl", &content);
    match load(&path).unwrap_err() {
        DatasetError::Invalid { line, field, .. } => {
            assert_eq!((line, field.as_str()), (2, "<json>"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn skip_invalid_collects_bad_records_and_duplicates() {
    let content = concat!(
        r#"{"id":"a","prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
        r#"{"id":"b","prompt":"Q","response_a":"A","response_b":"B","preferred":"x"}"#,
        "\n",
        "{oops\n",
        r#"{"id":"a","prompt":"Q2","response_a":"A","response_b":"B"}"#,
        "\n\n",
        r#"{"id":"c","prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
    );
    let (_dir, path) = temp_file("skip.jsonl", content.as_bytes());
    let ds = load_skipping(&path).unwrap();
    let ids: Vec<&str> = ds.pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["a", "c"]);
    let skipped: Vec<(usize, &str)> = ds
        .skipped
        .iter()
        .map(|s| (s.line, s.field.as_str()))
        .collect();
    assert_eq!(skipped, [(2, "preferred"), (3, "<json>"), (4, "id")]);
    assert!(
        ds.skipped
            .iter()
            .all(|s| s.file == path.display().to_string())
    );
    assert!(ds.skipped[2].message.contains("duplicate id `a`"));
    assert!(ds.skipped[2].message.contains("line 1"));
    // The kept duplicate is the first one.
    assert_eq!(ds.pairs[0].prompt, "Q");

    // Without skipping, the first bad record (line 2) fails the load.
    match load(&path).unwrap_err() {
        DatasetError::Invalid { line, field, .. } => {
            assert_eq!((line, field.as_str()), (2, "preferred"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn duplicate_id_fails_without_skip_invalid() {
    let content = concat!(
        r#"{"id":"dup","prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
        r#"{"id":"other","prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
        r#"{"id":"dup","prompt":"Q","chosen":"C","rejected":"R"}"#,
        "\n",
    );
    let (_dir, path) = temp_file("dup.jsonl", content.as_bytes());
    let err = load(&path).unwrap_err();
    let text = err.to_string();
    match err {
        DatasetError::DuplicateId {
            file,
            line,
            id,
            first_line,
        } => {
            assert_eq!(file, path.display().to_string());
            assert_eq!((line, id.as_str(), first_line), (3, "dup", 1));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        text.contains(":3:") && text.contains("field `id`"),
        "{text}"
    );
}

#[test]
fn empty_inputs_are_empty_errors() {
    let cases: &[(&str, &str)] = &[
        ("empty.jsonl", ""),
        ("blank.jsonl", "\n  \n\r\n"),
        ("bom_only.jsonl", "\u{feff}"),
        ("header_only.csv", "id,prompt,response_a,response_b\n"),
    ];
    for (name, content) in cases {
        let (_dir, path) = temp_file(name, content.as_bytes());
        match load(&path).unwrap_err() {
            DatasetError::Empty { file } => assert_eq!(file, path.display().to_string()),
            other => panic!("{name}: unexpected {other:?}"),
        }
    }
    // Every record invalid and skipped: still no valid pairs.
    let (_dir, path) = temp_file("allbad.jsonl", b"{\"id\":\"x\"}\nnope\n");
    let err = load_skipping(&path).unwrap_err();
    assert!(matches!(err, DatasetError::Empty { .. }), "{err:?}");
    assert!(err.to_string().contains("allbad.jsonl"));
}

#[test]
fn unsupported_extension_and_missing_file() {
    let (_dir, path) = temp_file("pairs.txt", b"whatever");
    let err = load(&path).unwrap_err();
    assert!(
        matches!(err, DatasetError::UnsupportedFormat { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("pairs.txt"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let err = load(&missing).unwrap_err();
    assert!(matches!(err, DatasetError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.jsonl"), "{err}");
}

#[test]
fn bom_is_stripped_in_jsonl_and_csv() {
    let jsonl =
        "\u{feff}{\"id\":\"b1\",\"prompt\":\"Q\",\"response_a\":\"A\",\"response_b\":\"B\"}\n";
    let (_d1, path) = temp_file("bom.jsonl", jsonl.as_bytes());
    assert_eq!(load(&path).unwrap().pairs[0].id, "b1");

    let csv = "\u{feff}id,prompt,response_a,response_b\r\nb1,Q,A,B\r\n";
    let (_d2, path) = temp_file("bom.csv", csv.as_bytes());
    assert_eq!(
        load(&path).unwrap().pairs,
        vec![pair("b1", "Q", "A", "B", None)]
    );
}

#[test]
fn csv_loads_multiline_fields_and_optional_columns() {
    let content = concat!(
        "source,id,prompt,response_a,response_b,preferred,category,label_kind\n",
        "s,c1,\"Line one\nline two, with comma\",\"He said \"\"hi\"\"\",B1,a,cat,safety\n",
        "\n",
        "s,c2,Q2,\"1. first\n2. second\n3. third\",B2,,,\n",
        "s,c3,Q3,A3,B3,TIE,,\n",
    );
    let (_dir, path) = temp_file("pairs.csv", content.as_bytes());
    let ds = load(&path).unwrap();
    assert_eq!(ds.name, "pairs.csv");
    let mut first = pair(
        "c1",
        "Line one\nline two, with comma",
        "He said \"hi\"",
        "B1",
        Some(Preference::A),
    );
    first.category = Some("cat".into());
    first.label_kind = Some("safety".into());
    assert_eq!(
        ds.pairs,
        vec![
            first,
            pair("c2", "Q2", "1. first\n2. second\n3. third", "B2", None),
            pair("c3", "Q3", "A3", "B3", Some(Preference::Tie)),
        ]
    );
}

#[test]
fn csv_errors_report_the_records_starting_line() {
    let header = "id,prompt,response_a,response_b,preferred\n";
    // Record 1 spans lines 2-4, line 5 is blank, so the bad record starts on line 6.
    let multi = "m1,\"a\nmultiline\nprompt\",A,B,a\n\n";
    let cases: &[(&str, &str)] = &[
        ("x2,Q,A,B,maybe\n", "preferred"),
        ("x2,\"  \n \",A,B,\n", "prompt"),
        (",Q,A,B,\n", "id"),
        ("x2,Q,,B,\n", "response_a"),
        ("x2,Q,A,\"\"\n", "<csv>"),
        ("x2,Q,A,B,a,extra\n", "<csv>"),
        ("m1,Q,A,B,b\n", "id"),
    ];
    for (bad, field) in cases {
        let content = format!("{header}{multi}{bad}x3,Q,A,B,\n");
        if *field == "id" && bad.starts_with("m1") {
            // Duplicate of the multiline record: DuplicateId names both lines.
            let (_dir, path) = temp_file("bad.csv", content.as_bytes());
            match load(&path).unwrap_err() {
                DatasetError::DuplicateId {
                    line, first_line, ..
                } => assert_eq!((line, first_line), (6, 2)),
                other => panic!("unexpected {other:?}"),
            }
            continue;
        }
        assert_invalid("bad.csv", &content, 6, field);
    }
}

#[test]
fn csv_header_must_name_required_columns() {
    assert_invalid(
        "nohead.csv",
        "id,prompt,response_a\nx,Q,A\n",
        1,
        "response_b",
    );
    assert_invalid(
        "twice.csv",
        "id,prompt,response_a,response_b,id\nx,Q,A,B,y\n",
        1,
        "id",
    );
}

#[test]
fn csv_skip_invalid_counts_records() {
    let content = concat!(
        "id,prompt,response_a,response_b,preferred\n",
        "k1,Q,A,B,a\n",
        "k2,Q,A,B,zzz\n",
        "k3,\"multi\nline\",A,B,b\n",
        "k1,Q,A,B,b\n",
        "k4,Q,A\n",
        "k5,Q,A,B,tie\n",
    );
    let (_dir, path) = temp_file("skip.csv", content.as_bytes());
    let ds = load_skipping(&path).unwrap();
    let ids: Vec<&str> = ds.pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["k1", "k3", "k5"]);
    let skipped: Vec<(usize, &str)> = ds
        .skipped
        .iter()
        .map(|s| (s.line, s.field.as_str()))
        .collect();
    assert_eq!(skipped, [(3, "preferred"), (6, "id"), (7, "<csv>")]);
}

#[test]
fn builtin_set_meets_the_spec() {
    let ds = dataset::builtin();
    assert_eq!(ds.name, "builtin");
    assert!(ds.skipped.is_empty());
    assert!(ds.pairs.len() >= 48, "{} pairs", ds.pairs.len());
    assert_eq!(ds.hash, dataset::hash_pairs(&ds.pairs));
    assert_eq!(ds, dataset::builtin(), "builtin() must be deterministic");

    let ids: HashSet<&str> = ds.pairs.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), ds.pairs.len(), "ids must be unique");
    let id_shape = regex::Regex::new(r"^builtin-[a-z]+-\d{2}$").unwrap();

    let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut on_a, mut on_b, mut with_list) = (0, 0, 0);
    let (mut safer_longer, mut safer_shorter) = (0, 0);
    for p in &ds.pairs {
        assert!(id_shape.is_match(&p.id), "{}", p.id);
        assert_eq!(p.label_kind.as_deref(), Some("safety"), "{}", p.id);
        *per_category
            .entry(p.category.as_deref().expect("category set"))
            .or_default() += 1;
        let (safer, other) = match p.preferred {
            Some(Preference::A) => {
                on_a += 1;
                (&p.response_a, &p.response_b)
            }
            Some(Preference::B) => {
                on_b += 1;
                (&p.response_b, &p.response_a)
            }
            other => panic!("{}: preferred {other:?}", p.id),
        };
        if safer.len() > other.len() {
            safer_longer += 1;
        } else {
            safer_shorter += 1;
        }
        if [&p.response_a, &p.response_b]
            .iter()
            .any(|r| r.contains("\n1. ") || r.contains("\n- "))
        {
            with_list += 1;
        }
    }
    for category in [
        "self-harm",
        "misinformation",
        "dangerous-activities",
        "privacy",
        "harassment",
        "medical",
    ] {
        let n = per_category.get(category).copied().unwrap_or(0);
        assert!(n >= 8, "{category}: {n} pairs");
    }
    let n = ds.pairs.len() as f64;
    assert!(
        on_a as f64 >= 0.4 * n && on_b as f64 >= 0.4 * n,
        "a {on_a} / b {on_b}"
    );
    assert!(with_list >= 8, "{with_list} pairs with a list");
    assert!(
        safer_longer >= 5 && safer_shorter >= 5,
        "{safer_longer} / {safer_shorter}"
    );

    // Placement follows the same seeded rule as RewardBench records. python:
    // sha256("judge-audit-pairs-v1:builtin-selfharm-01")[0] & 1 == 1 → safer on b;
    // sha256("judge-audit-pairs-v1:builtin-selfharm-03")[0] & 1 == 0 → safer on a.
    let get = |id: &str| ds.pairs.iter().find(|p| p.id == id).unwrap();
    assert_eq!(get("builtin-selfharm-01").preferred, Some(Preference::B));
    assert_eq!(get("builtin-selfharm-03").preferred, Some(Preference::A));
}

/// One row of the README table in the shared data folder.
struct ReadmeRow {
    file: String,
    pairs: usize,
    label_kinds: BTreeMap<String, usize>,
    a: usize,
    b: usize,
}

fn number(s: &str) -> usize {
    s.trim()
        .replace(',', "")
        .parse()
        .unwrap_or_else(|_| panic!("number: {s:?}"))
}

/// Parse `| `file` | 1,798 | safety 1,798 | 923 / 875 | ...` rows.
fn readme_rows(readme: &str) -> Vec<ReadmeRow> {
    readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains(".jsonl`"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let mut label_kinds = BTreeMap::new();
            for part in cells[3].split(", ") {
                let (kind, count) = part.split_once(' ').expect("kind count");
                label_kinds.insert(kind.to_string(), number(count));
            }
            let (a, b) = cells[4].split_once('/').expect("a / b");
            ReadmeRow {
                file: cells[1].trim_matches('`').to_string(),
                pairs: number(cells[2]),
                label_kinds,
                a: number(a),
                b: number(b),
            }
        })
        .collect()
}

#[test]
fn shared_data_matches_readme_when_present() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let Ok(readme) = std::fs::read_to_string(dir.join("README.md")) else {
        return; // The shared data is optional; nothing to check without it.
    };
    let rows = readme_rows(&readme);
    let listed: HashSet<&str> = rows.iter().map(|r| r.file.as_str()).collect();
    let mut on_disk = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        // `pointwise_*` files hold single answers, not pairs: the README documents them in their
        // own sections, outside the pairs table.
        if name.starts_with("pointwise_") {
            assert!(
                readme.contains(&format!("`{name}`")),
                "{name} not documented in the README"
            );
            continue;
        }
        if name.ends_with(".jsonl") {
            on_disk += 1;
            assert!(
                listed.contains(name.as_str()),
                "{name} missing from README table"
            );
        }
    }
    assert_eq!(on_disk, rows.len());

    for row in &rows {
        let ds = load(&dir.join(&row.file)).unwrap_or_else(|e| panic!("{e}"));
        assert!(ds.skipped.is_empty());
        assert_eq!(ds.pairs.len(), row.pairs, "{}", row.file);
        let count = |p: Preference| ds.pairs.iter().filter(|x| x.preferred == Some(p)).count();
        assert_eq!(
            (count(Preference::A), count(Preference::B)),
            (row.a, row.b),
            "{}",
            row.file
        );
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for p in &ds.pairs {
            *kinds
                .entry(p.label_kind.clone().unwrap_or_default())
                .or_default() += 1;
        }
        assert_eq!(kinds, row.label_kinds, "{}", row.file);
        // The data was normalised with the same placement rule: preferred on b iff bit 0 is set.
        for p in &ds.pairs {
            let on_b = dataset::chosen_on_b(DEFAULT_PLACEMENT_SEED, &p.id);
            assert_eq!(
                p.preferred == Some(Preference::B),
                on_b,
                "{}: {}",
                row.file,
                p.id
            );
        }
        match row.file.as_str() {
            "judgebench.jsonl" => assert_eq!(ds.pairs.len(), 619),
            "hh_rlhf_harmless_base.jsonl" => assert_eq!(ds.pairs.len(), 1798),
            _ => {}
        }
    }
}
