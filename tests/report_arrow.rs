//! `results.arrow`: the rows of `results.csv`, typed, read back with the Arrow IPC reader.

mod report_common;

use arrow_array::{Array, BooleanArray, Float64Array, StringArray, UInt64Array};
use judge_audit::report::{self, csv::Row};
use report_common::{assert_success, bin, demo_summary, scratch};

fn col<'a, T: 'static>(batch: &'a arrow_array::RecordBatch, name: &str) -> &'a T {
    batch
        .column_by_name(name)
        .unwrap_or_else(|| panic!("column {name}"))
        .as_any()
        .downcast_ref::<T>()
        .unwrap_or_else(|| panic!("type of {name}"))
}

#[test]
fn arrow_file_holds_the_csv_rows_typed_and_re_renders_identically() {
    let summary = demo_summary(42);
    let bytes = report::arrow::render(&summary).unwrap();
    assert_eq!(
        bytes,
        report::arrow::render(&summary).unwrap(),
        "deterministic"
    );
    let reader = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None).unwrap();
    let names: Vec<String> = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(names, report::csv::COLUMNS);
    let batches: Vec<_> = reader.map(|b| b.unwrap()).collect();
    let expected: Vec<Row> = report::csv::rows(&summary);
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(total, expected.len());
    assert!(expected.len() > 100, "the demo has many rows");
    let b = &batches[0];
    let judge = col::<StringArray>(b, "judge");
    let simulated = col::<BooleanArray>(b, "simulated");
    let metric = col::<StringArray>(b, "metric");
    let n = col::<UInt64Array>(b, "n");
    let estimate = col::<Float64Array>(b, "estimate");
    let ci_high = col::<Float64Array>(b, "ci_high");
    let kind = col::<StringArray>(b, "kind");
    for (k, r) in expected.iter().enumerate().take(b.num_rows()) {
        assert_eq!(judge.value(k), r.judge);
        assert_eq!(simulated.value(k), r.simulated);
        assert_eq!(metric.value(k), r.metric);
        assert_eq!(kind.value(k), r.kind);
        assert_eq!((!n.is_null(k)).then(|| n.value(k)), r.n, "row {k}");
        let finite = |x: Option<f64>| x.filter(|v| v.is_finite());
        assert_eq!(
            (!estimate.is_null(k)).then(|| estimate.value(k)),
            finite(r.estimate),
            "row {k}"
        );
        assert_eq!(
            (!ci_high.is_null(k)).then(|| ci_high.value(k)),
            finite(r.ci_high),
            "row {k}"
        );
    }
    // CALM's consistency rate and the juries are there, as in the CSV.
    assert!((0..b.num_rows()).any(|k| metric.value(k) == "consistency_rate"));
    assert!((0..b.num_rows()).any(|k| kind.value(k) == "jury"));
}

#[test]
fn format_arrow_writes_results_arrow_only_when_asked() {
    let out = scratch("report-arrow").join("run");
    let o = bin()
        .args(["demo", "--quiet", "--seed", "42", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_success(&o);
    assert!(!out.join("results.arrow").exists(), "not a default format");
    // `report` re-renders it from the stored run: the same bytes as the library renders.
    let o = bin()
        .arg("report")
        .arg(&out)
        .args(["--format", "arrow"])
        .output()
        .unwrap();
    assert_success(&o);
    let bytes = std::fs::read(out.join("results.arrow")).unwrap();
    assert_eq!(bytes, report::arrow::render(&demo_summary(42)).unwrap());
}
