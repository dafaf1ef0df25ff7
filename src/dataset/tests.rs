//! Unit tests for the parsing internals; file-level behaviour is covered in `tests/dataset.rs`.

use super::*;

fn parse_jsonl(text: &str, skip_invalid: bool) -> Result<Dataset, DatasetError> {
    let options = LoadOptions {
        skip_invalid,
        placement_seed: None,
    };
    load_bytes(
        text.as_bytes(),
        Format::Jsonl,
        "mem.jsonl",
        "mem",
        "mem",
        &options,
    )
}

fn parse_csv(text: &str) -> Result<Dataset, DatasetError> {
    let options = LoadOptions::default();
    load_bytes(
        text.as_bytes(),
        Format::Csv,
        "mem.csv",
        "mem",
        "mem",
        &options,
    )
}

#[test]
fn preference_parsing() {
    assert_eq!(Preference::parse_optional("a"), Ok(Some(Preference::A)));
    assert_eq!(Preference::parse_optional(" B "), Ok(Some(Preference::B)));
    assert_eq!(Preference::parse_optional("Tie"), Ok(Some(Preference::Tie)));
    assert_eq!(Preference::parse_optional("  "), Ok(None));
    let err = Preference::parse_optional("ab").unwrap_err();
    assert!(err.contains("`ab`"), "{err}");
}

#[test]
fn csv_line_index_skips_blank_lines_before_a_record() {
    let index = csv_format::LineIndex::new(b"h\n\n\r\nrow\nnext");
    assert_eq!(index.record_line(0), 1);
    // Offset 2 is just after the header; the record itself starts on line 4.
    assert_eq!(index.record_line(2), 4);
    assert_eq!(index.record_line(9), 5);
    // Past the end clamps to the last line.
    assert_eq!(index.record_line(100), 5);
}

#[test]
fn csv_reports_start_line_after_blank_lines() {
    let text = "id,prompt,response_a,response_b\n\n\nx,Q,A,\n";
    match parse_csv(text).unwrap_err() {
        DatasetError::Invalid { line, field, .. } => {
            assert_eq!((line, field.as_str()), (4, "response_b"))
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn whitespace_only_csv_rows_are_blank_lines() {
    let text = "id,prompt,response_a,response_b\n   \nx,Q,A,B\n";
    assert_eq!(parse_csv(text).unwrap().pairs.len(), 1);
}

#[test]
fn unknown_shape_is_reported_against_the_native_schema() {
    match parse_jsonl(r#"{"foo":"bar"}"#, false).unwrap_err() {
        DatasetError::Invalid { line, field, .. } => assert_eq!((line, field.as_str()), (1, "id")),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn json_error_message_has_column_not_a_misleading_line() {
    let err = parse_jsonl("{\"id\": }", false).unwrap_err().to_string();
    assert!(
        err.starts_with("mem.jsonl:1: field `<json>`: invalid JSON at column 8"),
        "{err}"
    );
    assert!(!err.contains("at line"), "{err}");
}

#[test]
fn integer_ids_become_strings_and_collide_with_equal_strings() {
    let text = concat!(
        r#"{"id":7,"prompt":"Q","response_a":"A","response_b":"B"}"#,
        "\n",
        r#"{"id":"7","prompt":"Q","response_a":"A","response_b":"B"}"#,
    );
    match parse_jsonl(text, false).unwrap_err() {
        DatasetError::DuplicateId { id, line, .. } => assert_eq!((id.as_str(), line), ("7", 2)),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn blank_optional_strings_are_absent() {
    let text = r#"{"id":"x","prompt":"Q","response_a":"A","response_b":"B","preferred":"","category":" ","label_kind":""}"#;
    let pair = &parse_jsonl(text, false).unwrap().pairs[0];
    assert_eq!(
        (pair.preferred, &pair.category, &pair.label_kind),
        (None, &None, &None)
    );
}

#[test]
fn builtin_file_parses_without_skips() {
    // Strict parse of the embedded file: any invalid or duplicate record fails here.
    let ds = parse_jsonl(BUILTIN_PAIRS, false).unwrap();
    assert_eq!(ds.pairs, builtin().pairs);
}
