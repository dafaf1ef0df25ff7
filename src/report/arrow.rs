//! `results.arrow`: the rows of `results.csv` as an Arrow IPC file, typed (booleans, unsigned
//! counts, nullable floats), for notebooks (`pyarrow.ipc.open_file`, `polars.read_ipc`,
//! `arrow::ipc`) without CSV parsing. The same rows in the same order as [`super::csv::rows`].
//!
//! Arrow IPC rather than Parquet: with default features off, `arrow-ipc` adds 16 crates and about
//! 50 s to a clean single-core debug build; `parquet` adds 19 crates and about 5 minutes.

use super::csv::{COLUMNS, Row, rows};
use super::view::{Exporter, Format, ReportView};
use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use std::sync::Arc;

/// The Arrow schema: the CSV's columns, typed.
pub fn schema() -> Schema {
    let types = [
        DataType::Utf8,
        DataType::Boolean,
        DataType::Utf8,
        DataType::Utf8,
        DataType::Utf8,
        DataType::UInt64,
        DataType::Float64,
        DataType::Float64,
        DataType::Float64,
        DataType::Float64,
        DataType::Float64,
        DataType::Utf8,
    ];
    Schema::new(
        COLUMNS
            .iter()
            .zip(types)
            .map(|(name, t)| {
                // Identity columns are always set; numbers may be missing (n/a).
                let nullable = !matches!(t, DataType::Utf8 | DataType::Boolean);
                Field::new(*name, t, nullable)
            })
            .collect::<Vec<_>>(),
    )
}

/// Render `results.arrow` for `summary`.
pub fn render(summary: &super::Summary) -> Result<Vec<u8>, arrow_schema::ArrowError> {
    let rows = rows(summary);
    let text = |f: fn(&Row) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
    };
    // Non-finite numbers are missing, as in the CSV.
    let float = |f: fn(&Row) -> Option<f64>| -> ArrayRef {
        Arc::new(Float64Array::from_iter(
            rows.iter().map(|r| f(r).filter(|x| x.is_finite())),
        ))
    };
    let columns: Vec<ArrayRef> = vec![
        text(|r| &r.judge),
        Arc::new(BooleanArray::from_iter(
            rows.iter().map(|r| Some(r.simulated)),
        )),
        text(|r| &r.artifact),
        text(|r| r.condition),
        text(|r| r.metric),
        Arc::new(UInt64Array::from_iter(rows.iter().map(|r| r.n))),
        float(|r| r.estimate),
        float(|r| r.ci_low),
        float(|r| r.ci_high),
        float(|r| r.p_value),
        float(|r| r.p_adjusted),
        text(|r| r.kind),
    ];
    let schema = Arc::new(schema());
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut writer = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &schema)?;
    writer.write(&batch)?;
    writer.finish()?;
    writer.into_inner()
}

/// `results.arrow`.
pub struct ArrowExporter;

impl Exporter for ArrowExporter {
    fn format(&self) -> Format {
        Format::Arrow
    }

    fn file_name(&self) -> &'static str {
        "results.arrow"
    }

    fn render(&self, view: &ReportView<'_>) -> std::io::Result<Vec<u8>> {
        render(view.summary).map_err(std::io::Error::other)
    }
}
