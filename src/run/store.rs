//! The run store: one SQLite database (`run.sqlite`, WAL) per run directory holding the run's
//! snapshot (without its pairs), the pairs one row each, its plan, every completed call and every
//! fault. A call counts once its row is committed; failures are stored as faults, never as
//! results.

use super::columns::CallColumns;
use super::{CallRecord, FaultCounts};
use crate::dataset::Pair;
use crate::judge::{FaultKind, LabelProbs, SlotVerdict, TokenUsage};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// File name of the run database inside a run directory.
pub const RUN_DB: &str = "run.sqlite";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("{path}: {source}")]
    Sqlite {
        /// Database path.
        path: PathBuf,
        /// Underlying error.
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded.
    #[error("{path}: stored {what} is unreadable: {message}")]
    Corrupt {
        /// Database path.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// Decoder message.
        message: String,
    },
}

/// An open run database.
pub struct RunStore {
    conn: Connection,
    path: PathBuf,
}

/// One failed attempt, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultRow {
    /// Judge name.
    pub judge: String,
    /// Call id.
    pub call_id: String,
    /// Fault kind.
    pub kind: FaultKind,
    /// Message (never contains secrets: backends redact keys).
    pub message: String,
}

impl RunStore {
    fn err(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Open (creating if needed) the run database in `dir`.
    pub fn open(dir: &Path) -> Result<RunStore, StoreError> {
        let path = dir.join(RUN_DB);
        let conn = Connection::open(&path).map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        RunStore::init(conn, path)
    }

    /// A new, empty run database in memory (for an audit that writes nothing to disk): the same
    /// schema and queries as a file, gone when the store is dropped.
    pub fn memory() -> Result<RunStore, StoreError> {
        let path = PathBuf::from(super::MEMORY_DIR);
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Sqlite {
            path: path.clone(),
            source,
        })?;
        RunStore::init(conn, path)
    }

    /// Set the pragmas and create the tables (a no-op on a database that has them).
    fn init(conn: Connection, path: PathBuf) -> Result<RunStore, StoreError> {
        let store = RunStore { conn, path };
        store
            .conn
            .execute_batch(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = NORMAL;
                 PRAGMA busy_timeout = 5000;
                 CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS pairs (position INTEGER PRIMARY KEY, pair TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS plan (
                     position INTEGER PRIMARY KEY, call_id TEXT NOT NULL, judge TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS calls (
                     call_id TEXT PRIMARY KEY, judge TEXT NOT NULL, record TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS faults (
                     id INTEGER PRIMARY KEY, judge TEXT NOT NULL, call_id TEXT NOT NULL,
                     kind TEXT NOT NULL, message TEXT NOT NULL);
                 CREATE TABLE IF NOT EXISTS rewrites (key TEXT PRIMARY KEY, record TEXT NOT NULL);",
            )
            .map_err(store.err())?;
        Ok(store)
    }

    /// True when `dir` holds a run database.
    pub fn exists(dir: &Path) -> bool {
        dir.join(RUN_DB).is_file()
    }

    /// Read a metadata value.
    pub fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(self.err())
    }

    /// Record a new run in one transaction: its metadata (key, JSON text), its pairs (one row
    /// each, so no single huge value is built) and its plan's (call id, judge) in order. An
    /// interrupted start leaves nothing half-written.
    pub fn create_run(
        &mut self,
        meta: &[(&str, &str)],
        pairs: &[Pair],
        plan: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                )
                .map_err(err)?;
            for (key, value) in meta {
                insert.execute(params![key, value]).map_err(err)?;
            }
            let mut insert = tx
                .prepare("INSERT OR REPLACE INTO pairs (position, pair) VALUES (?1, ?2)")
                .map_err(err)?;
            for (position, pair) in pairs.iter().enumerate() {
                let json = serde_json::to_string(pair).expect("pairs serialize");
                insert
                    .execute(params![position as i64, json])
                    .map_err(err)?;
            }
            let mut insert = tx
                .prepare(
                    "INSERT OR IGNORE INTO plan (position, call_id, judge) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            // Rows are taken one at a time from the caller: no list of the plan is built.
            for (position, (call_id, judge)) in plan.into_iter().enumerate() {
                insert
                    .execute(params![position as i64, call_id.as_ref(), judge.as_ref()])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// The run's pairs, in order (empty for runs that kept them inside the snapshot).
    pub fn pairs(&self) -> Result<Vec<Pair>, StoreError> {
        self.json_rows("SELECT pair FROM pairs ORDER BY position", "pair", 0)
    }

    /// Decode the first column of every row of `sql` as JSON text. Text is borrowed from
    /// SQLite, not copied; `what` names the value in a corruption error.
    fn json_rows<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        what: &str,
        capacity: usize,
    ) -> Result<Vec<T>, StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            message,
        };
        let mut query = self.conn.prepare(sql).map_err(self.err())?;
        let mut rows = query.query([]).map_err(self.err())?;
        let mut values = Vec::with_capacity(capacity);
        while let Some(row) = rows.next().map_err(self.err())? {
            let text = row
                .get_ref(0)
                .map_err(self.err())?
                .as_str()
                .map_err(|e| corrupt(e.to_string()))?;
            values.push(serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?);
        }
        Ok(values)
    }

    /// The stored plan's call ids, in order.
    pub fn plan_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT call_id FROM plan ORDER BY position")
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// True when the stored plan's call ids are exactly `ids`, in order. Compared row by row, so
    /// no copy of the stored plan is built.
    pub fn plan_is(
        &self,
        ids: impl IntoIterator<Item = impl AsRef<str>>,
    ) -> Result<bool, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT call_id FROM plan ORDER BY position")
            .map_err(self.err())?;
        let mut rows = query.query([]).map_err(self.err())?;
        let mut ids = ids.into_iter();
        loop {
            match (rows.next().map_err(self.err())?, ids.next()) {
                (None, None) => return Ok(true),
                (Some(row), Some(id)) => {
                    let stored = row.get_ref(0).map_err(self.err())?;
                    if stored.as_str().ok() != Some(id.as_ref()) {
                        return Ok(false);
                    }
                }
                _ => return Ok(false),
            }
        }
    }

    /// Positions of the stored plan's calls that have no committed answer, in plan order (the
    /// store does the matching, so no set of committed ids is built).
    pub fn pending_positions(&self) -> Result<Vec<usize>, StoreError> {
        let mut query = self
            .conn
            .prepare(
                "SELECT p.position FROM plan p WHERE NOT EXISTS
                     (SELECT 1 FROM calls c WHERE c.call_id = p.call_id)
                 ORDER BY p.position",
            )
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(self.err())?;
        rows.map(|r| r.map(|p| p.max(0) as usize))
            .collect::<Result<_, _>>()
            .map_err(self.err())
    }

    /// Number of committed calls.
    pub fn committed_count(&self) -> Result<usize, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get::<_, i64>(0))
            .map(|n| n.max(0) as usize)
            .map_err(self.err())
    }

    /// Commit a batch of completed calls (each with its JSON text) and faults in one
    /// transaction. Calls without a verdict are not stored. A call id that is already stored is
    /// ignored, so a call is never counted twice.
    pub fn commit(
        &mut self,
        records: &[(CallRecord, String)],
        faults: &[FaultRow],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO calls (call_id, judge, record) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (record, json) in records.iter().filter(|(r, _)| r.succeeded()) {
                insert
                    .execute(params![record.call_id, record.judge, json])
                    .map_err(err)?;
            }
            let mut fault = tx
                .prepare_cached(
                    "INSERT INTO faults (judge, call_id, kind, message) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(err)?;
            for row in faults {
                let kind = serde_json::to_string(&row.kind).expect("fault kinds serialize");
                fault
                    .execute(params![
                        row.judge,
                        row.call_id,
                        kind.trim_matches('"'),
                        row.message
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Ids of calls that were sent and failed (a fault is recorded) and have no committed
    /// answer: failed calls, as opposed to calls never sent (pending).
    pub fn failed_ids(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut query = self
            .conn
            .prepare(
                "SELECT DISTINCT call_id FROM faults WHERE call_id NOT IN (SELECT call_id FROM calls)",
            )
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Ids of committed calls.
    pub fn completed_ids(&self) -> Result<HashSet<String>, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT call_id FROM calls")
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Every committed call.
    pub fn records(&self) -> Result<Vec<CallRecord>, StoreError> {
        self.json_rows("SELECT record FROM calls", "call record", 0)
    }

    /// The committed calls of the stored plan, in plan order (calls outside the plan are left
    /// out). The store does the ordering, so no second copy of the records is sorted.
    pub fn records_in_plan_order(&self) -> Result<Vec<CallRecord>, StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))
            .map_err(self.err())?;
        self.json_rows(
            "SELECT c.record FROM plan p JOIN calls c ON c.call_id = p.call_id
             ORDER BY p.position",
            "call record",
            usize::try_from(count).unwrap_or(0),
        )
    }

    /// [`RunStore::records_in_plan_order`] as the analysis reads them: each judge's raw text is
    /// dropped as its record is decoded. No analysis or report reads the raw texts (they stay in
    /// the store and `calls.jsonl`), and a judge that reasons before its verdict makes them most
    /// of a record's size, so the records of a long audit no longer hold them all at once.
    pub fn records_for_analysis(&self) -> Result<Vec<CallRecord>, StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM calls", [], |r| r.get(0))
            .map_err(self.err())?;
        let mut records: Vec<CallRecord> = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        self.each_json_row(
            "SELECT c.record FROM plan p JOIN calls c ON c.call_id = p.call_id
             ORDER BY p.position",
            "call record",
            |mut record: CallRecord| {
                record.raw = None;
                records.push(record);
            },
        )?;
        Ok(records)
    }

    /// The committed calls of the stored plan in column form, `planned` positions (the caller
    /// checked that the stored plan is its plan): each record's verdict, usage and label
    /// probabilities, and a failed mark for each call that was sent and failed (a fault is
    /// recorded) with no committed answer. Only those three fields of a record are decoded, so
    /// neither a record nor a string per call is built: what `run` and `report` hand the
    /// analysis of an audit without pointwise judges or a sequential design.
    pub fn call_columns(&self, planned: usize) -> Result<CallColumns, StoreError> {
        /// The part of a stored [`CallRecord`] the analysis reads; serde skips the rest.
        #[derive(serde::Deserialize)]
        struct Verdict {
            #[serde(default)]
            verdict: Option<SlotVerdict>,
            #[serde(default)]
            label_probs: Option<LabelProbs>,
            #[serde(default)]
            usage: Option<TokenUsage>,
        }
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            what: "call record".into(),
            message,
        };
        let mut columns = CallColumns::new(planned);
        let mut query = self
            .conn
            .prepare(
                "SELECT p.position, c.record FROM plan p JOIN calls c ON c.call_id = p.call_id",
            )
            .map_err(self.err())?;
        let mut rows = query.query([]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let position: i64 = row.get(0).map_err(self.err())?;
            let text = row
                .get_ref(1)
                .map_err(self.err())?
                .as_str()
                .map_err(|e| corrupt(e.to_string()))?;
            let v: Verdict = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
            if let Ok(position) = usize::try_from(position) {
                columns.set(position, v.verdict, v.usage, v.label_probs.as_ref());
            }
        }
        // As `failed_ids`: sent, failed, never answered.
        let mut query = self
            .conn
            .prepare(
                "SELECT p.position FROM plan p WHERE p.call_id IN (SELECT call_id FROM faults)
                 AND NOT EXISTS (SELECT 1 FROM calls c WHERE c.call_id = p.call_id)",
            )
            .map_err(self.err())?;
        let failed = query
            .query_map([], |r| r.get::<_, i64>(0))
            .map_err(self.err())?;
        for position in failed {
            if let Ok(position) = usize::try_from(position.map_err(self.err())?) {
                columns.set(position, None, None, None);
            }
        }
        Ok(columns)
    }

    /// Every committed call with its raw text dropped (as in [`RunStore::records_for_analysis`]),
    /// in no particular order: what a resumed session needs of the earlier ones.
    pub fn records_without_texts(&self) -> Result<Vec<CallRecord>, StoreError> {
        let mut records = Vec::new();
        self.each_json_row(
            "SELECT record FROM calls",
            "call record",
            |mut record: CallRecord| {
                record.raw = None;
                records.push(record);
            },
        )?;
        Ok(records)
    }

    /// Hand every committed call, raw text included, to `each`, one at a time (in storage
    /// order, as [`RunStore::records`] lists them), so no list of them is built.
    pub fn each_record(&self, each: impl FnMut(CallRecord)) -> Result<(), StoreError> {
        self.each_json_row("SELECT record FROM calls", "call record", each)
    }

    /// Decode the first column of every row of `sql` as JSON text and hand each value to `each`
    /// (text borrowed from SQLite, not copied).
    fn each_json_row<T: serde::de::DeserializeOwned>(
        &self,
        sql: &str,
        what: &str,
        mut each: impl FnMut(T),
    ) -> Result<(), StoreError> {
        let corrupt = |message: String| StoreError::Corrupt {
            path: self.path.clone(),
            what: what.into(),
            message,
        };
        let mut query = self.conn.prepare(sql).map_err(self.err())?;
        let mut rows = query.query([]).map_err(self.err())?;
        while let Some(row) = rows.next().map_err(self.err())? {
            let text = row
                .get_ref(0)
                .map_err(self.err())?
                .as_str()
                .map_err(|e| corrupt(e.to_string()))?;
            each(serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?);
        }
        Ok(())
    }

    /// Faults per judge and kind, over every session of this run.
    pub fn fault_counts(&self) -> Result<FaultCounts, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT judge, kind, COUNT(*) FROM faults GROUP BY judge, kind")
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(self.err())?;
        let mut counts = FaultCounts::new();
        for row in rows {
            let (judge, kind, n) = row.map_err(self.err())?;
            let kind: FaultKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
                .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("fault kind `{kind}`"),
                message: e.to_string(),
            })?;
            *counts.entry(judge).or_default().entry(kind).or_default() += n as u64;
        }
        Ok(counts)
    }
    /// Set a metadata value (insert or replace).
    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every committed call as stored: (call id, judge, record JSON text), by call id.
    pub fn call_rows(&self) -> Result<Vec<(String, String, String)>, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT call_id, judge, record FROM calls ORDER BY call_id")
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Commit stored call rows (call id, judge, record JSON text) verbatim in one transaction;
    /// a call id already stored is ignored (as in [`RunStore::commit`]).
    pub fn insert_call_rows(
        &mut self,
        rows: &[(String, String, String)],
    ) -> Result<(), StoreError> {
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO calls (call_id, judge, record) VALUES (?1, ?2, ?3)",
                )
                .map_err(err)?;
            for (call_id, judge, record) in rows {
                insert
                    .execute(params![call_id, judge, record])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(())
    }

    /// Every stored rewrite (and meaning check) of LLM-rewritten artifacts, by key.
    pub fn rewrites(
        &self,
    ) -> Result<std::collections::BTreeMap<String, super::rewrites::StoredRewrite>, StoreError>
    {
        let mut stmt = self
            .conn
            .prepare("SELECT key, record FROM rewrites")
            .map_err(self.err())?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(self.err())?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (key, record) = row.map_err(self.err())?;
            // An unreadable row is a missing rewrite: a resume asks again.
            if let Ok(r) = serde_json::from_str(&record) {
                out.insert(key, r);
            }
        }
        Ok(out)
    }

    /// Store one rewrite (or meaning check) as soon as it is answered, so an interrupted run
    /// never pays for it again.
    pub fn insert_rewrite(
        &self,
        record: &super::rewrites::StoredRewrite,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(record).expect("rewrites serialize");
        self.conn
            .execute(
                "INSERT OR REPLACE INTO rewrites (key, record) VALUES (?1, ?2)",
                rusqlite::params![record.key, json],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// Every stored fault, in the order it was stored.
    pub fn fault_rows(&self) -> Result<Vec<FaultRow>, StoreError> {
        let mut query = self
            .conn
            .prepare("SELECT judge, call_id, kind, message FROM faults ORDER BY id")
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(self.err())?;
        let mut faults = Vec::new();
        for row in rows {
            let (judge, call_id, kind, message) = row.map_err(self.err())?;
            let kind: FaultKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
                .map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("fault kind `{kind}`"),
                message: e.to_string(),
            })?;
            faults.push(FaultRow {
                judge,
                call_id,
                kind,
                message,
            });
        }
        Ok(faults)
    }
}

/// One provider batch, as stored: committed the moment its create call returns, so a restart
/// polls and collects it instead of sending its calls again.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchJob {
    /// The provider's batch id.
    pub batch_id: String,
    /// `openai` or `anthropic`.
    pub provider: String,
    /// Judge whose calls it carries.
    pub judge: String,
    /// SHA-256 of the submitted input (the JSONL file or request list): a batch created but not
    /// committed is found again by it.
    pub submission: String,
    /// Requests in the batch.
    pub requests: usize,
    /// Estimated cost at batch prices (USD), for `--max-cost`.
    pub estimated_cost: f64,
    /// Estimated tokens (input plus `max_tokens`), for the judge's enqueued-token budget.
    pub tokens: u64,
    /// Last status the provider reported.
    pub status: String,
    /// Last counts the provider reported (`completed/failed/total` or the provider's own).
    pub counts: String,
    /// True once its results were committed (or it ended with none); its uncommitted calls are
    /// pending again.
    pub collected: bool,
}

impl RunStore {
    fn batch_tables(&self) -> Result<(), StoreError> {
        self.conn
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS batch_jobs (
                     batch_id TEXT PRIMARY KEY, provider TEXT NOT NULL, judge TEXT NOT NULL,
                     submission TEXT NOT NULL, requests INTEGER NOT NULL,
                     estimated_cost REAL NOT NULL, tokens INTEGER NOT NULL, status TEXT NOT NULL,
                     counts TEXT NOT NULL, collected INTEGER NOT NULL, position INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS batch_items (
                     batch_id TEXT NOT NULL, call_id TEXT NOT NULL,
                     PRIMARY KEY (batch_id, call_id));",
            )
            .map_err(self.err())
    }

    /// Commit a created batch and the calls it carries in one transaction.
    pub fn add_batch(&mut self, job: &BatchJob, call_ids: &[&str]) -> Result<(), StoreError> {
        self.batch_tables()?;
        let path = self.path.clone();
        let err = |source| StoreError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT OR IGNORE INTO batch_jobs (batch_id, provider, judge, submission, requests,
                 estimated_cost, tokens, status, counts, collected, position)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?10, ?7, ?8, ?9,
                 (SELECT COUNT(*) FROM batch_jobs))",
            params![
                job.batch_id,
                job.provider,
                job.judge,
                job.submission,
                job.requests as i64,
                job.estimated_cost,
                job.status,
                job.counts,
                job.collected,
                job.tokens.min(i64::MAX as u64) as i64
            ],
        )
        .map_err(err)?;
        {
            let mut insert = tx
                .prepare("INSERT OR IGNORE INTO batch_items (batch_id, call_id) VALUES (?1, ?2)")
                .map_err(err)?;
            for id in call_ids {
                insert.execute(params![job.batch_id, id]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Every stored batch, in submission order.
    pub fn batches(&self) -> Result<Vec<BatchJob>, StoreError> {
        self.batch_tables()?;
        let mut query = self
            .conn
            .prepare(
                "SELECT batch_id, provider, judge, submission, requests, estimated_cost, status,
                        counts, collected, tokens FROM batch_jobs ORDER BY position",
            )
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| {
                Ok(BatchJob {
                    batch_id: r.get(0)?,
                    provider: r.get(1)?,
                    judge: r.get(2)?,
                    submission: r.get(3)?,
                    requests: r.get::<_, i64>(4)?.max(0) as usize,
                    estimated_cost: r.get(5)?,
                    status: r.get(6)?,
                    counts: r.get(7)?,
                    collected: r.get(8)?,
                    tokens: r.get::<_, i64>(9)?.max(0) as u64,
                })
            })
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Record a batch's latest status and counts, and whether it is collected.
    pub fn update_batch(
        &self,
        batch_id: &str,
        status: &str,
        counts: &str,
        collected: bool,
    ) -> Result<(), StoreError> {
        self.batch_tables()?;
        self.conn
            .execute(
                "UPDATE batch_jobs SET status = ?2, counts = ?3, collected = ?4 WHERE batch_id = ?1",
                params![batch_id, status, counts, collected],
            )
            .map(drop)
            .map_err(self.err())
    }

    /// Ids of the calls carried by batches not collected yet: in flight, never sent again.
    pub fn in_flight_ids(&self) -> Result<HashSet<String>, StoreError> {
        self.batch_tables()?;
        let mut query = self
            .conn
            .prepare(
                "SELECT call_id FROM batch_items WHERE batch_id IN
                     (SELECT batch_id FROM batch_jobs WHERE collected = 0)",
            )
            .map_err(self.err())?;
        let rows = query
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }

    /// Ids of the calls a batch carries.
    pub fn batch_call_ids(&self, batch_id: &str) -> Result<Vec<String>, StoreError> {
        self.batch_tables()?;
        let mut query = self
            .conn
            .prepare("SELECT call_id FROM batch_items WHERE batch_id = ?1 ORDER BY call_id")
            .map_err(self.err())?;
        let rows = query
            .query_map(params![batch_id], |r| r.get::<_, String>(0))
            .map_err(self.err())?;
        rows.collect::<Result<_, _>>().map_err(self.err())
    }
}
