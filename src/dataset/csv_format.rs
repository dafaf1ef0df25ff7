//! CSV with a header row naming the native columns.

use super::{Collector, DatasetError, Pair, Preference, RecordError, optional_text, require_text};

/// Columns every file must have.
const REQUIRED: [&str; 4] = ["id", "prompt", "response_a", "response_b"];

/// Column positions found in the header (extra columns such as `source` are ignored).
struct Columns {
    id: usize,
    prompt: usize,
    response_a: usize,
    response_b: usize,
    preferred: Option<usize>,
    category: Option<usize>,
    label_kind: Option<usize>,
    count: usize,
}

/// Parse `bytes` (BOM already stripped) into `collector`.
pub(super) fn parse(bytes: &[u8], collector: &mut Collector<'_>) -> Result<(), DatasetError> {
    let file = collector.file.to_string();
    let lines = LineIndex::new(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        // Field-count mismatches are reported per record by us, with the record's line.
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut columns: Option<Columns> = None;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                // Reading from memory leaves only malformed-input errors; report and stop, since
                // the reader cannot resynchronise reliably after one.
                let line = e
                    .position()
                    .map_or(0, |p| lines.record_line(p.byte() as usize));
                return Err(DatasetError::Invalid {
                    file,
                    line,
                    field: "<csv>".to_string(),
                    message: e.to_string(),
                });
            }
        }
        let line = record
            .position()
            .map_or(0, |p| lines.record_line(p.byte() as usize));
        // Rows of only whitespace are the CSV equivalent of blank lines.
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        match &columns {
            None => columns = Some(header(&record, &file, line)?),
            Some(cols) => collector.accept(line, row(&record, cols))?,
        }
    }
    Ok(())
}

/// Read the header row. A missing required column fails the load even with `skip_invalid`,
/// because no record of the file could be valid.
fn header(record: &csv::ByteRecord, file: &str, line: usize) -> Result<Columns, DatasetError> {
    let names: Vec<String> = record
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_ascii_lowercase())
        .collect();
    let invalid = |field: &str, message: String| DatasetError::Invalid {
        file: file.to_string(),
        line,
        field: field.to_string(),
        message,
    };
    for (i, name) in names.iter().enumerate() {
        if names[..i].contains(name) {
            return Err(invalid(name, "column appears twice in the header".into()));
        }
    }
    let find = |name: &str| names.iter().position(|n| n == name);
    for name in REQUIRED {
        if find(name).is_none() {
            return Err(invalid(
                name,
                format!(
                    "missing column in the header row (found: {})",
                    names.join(", ")
                ),
            ));
        }
    }
    Ok(Columns {
        id: find("id").expect("checked above"),
        prompt: find("prompt").expect("checked above"),
        response_a: find("response_a").expect("checked above"),
        response_b: find("response_b").expect("checked above"),
        preferred: find("preferred"),
        category: find("category"),
        label_kind: find("label_kind"),
        count: names.len(),
    })
}

/// Turn one data row into a pair.
fn row(record: &csv::ByteRecord, cols: &Columns) -> Result<Pair, RecordError> {
    if record.len() != cols.count {
        return Err(RecordError::new(
            "<csv>",
            format!(
                "record has {} fields but the header has {}",
                record.len(),
                cols.count
            ),
        ));
    }
    let cell = |index: usize, field: &str| -> Result<String, RecordError> {
        let bytes = record.get(index).unwrap_or_default();
        String::from_utf8(bytes.to_vec()).map_err(|e| {
            let at = e.utf8_error().valid_up_to() + 1;
            RecordError::new(field, format!("invalid UTF-8 at byte {at} of the field"))
        })
    };
    let optional = |index: Option<usize>, field: &str| -> Result<Option<String>, RecordError> {
        index.map(|i| cell(i, field)).transpose()
    };
    Ok(Pair {
        id: require_text("id", cell(cols.id, "id")?)?,
        prompt: require_text("prompt", cell(cols.prompt, "prompt")?)?,
        response_a: require_text("response_a", cell(cols.response_a, "response_a")?)?,
        response_b: require_text("response_b", cell(cols.response_b, "response_b")?)?,
        preferred: match optional(cols.preferred, "preferred")? {
            Some(p) => {
                Preference::parse_optional(&p).map_err(|m| RecordError::new("preferred", m))?
            }
            None => None,
        },
        category: optional_text(optional(cols.category, "category")?),
        label_kind: optional_text(optional(cols.label_kind, "label_kind")?),
    })
}

/// Maps byte offsets to 1-based line numbers.
pub(super) struct LineIndex<'a> {
    bytes: &'a [u8],
    /// Byte offset of every `\n`.
    newlines: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter_map(|(i, &b)| (b == b'\n').then_some(i))
            .collect();
        LineIndex { bytes, newlines }
    }

    /// The line a record starts on. The csv reader reports the offset just after the previous
    /// record, which is before any blank lines it skipped, so skip line breaks first.
    pub(super) fn record_line(&self, offset: usize) -> usize {
        let mut start = offset.min(self.bytes.len());
        while start < self.bytes.len() && matches!(self.bytes[start], b'\n' | b'\r') {
            start += 1;
        }
        self.newlines.partition_point(|&nl| nl < start) + 1
    }
}
