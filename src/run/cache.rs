//! The shared response cache: judge replies keyed on a hash of everything that determines them
//! (backend, endpoint, model, the full request body with its generation parameters, the repeat
//! index), so a rerun never pays twice and a changed judge never gets another judge's answers.

use crate::judge::JudgeReply;
use rusqlite::{Connection, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// File name of the cache database inside the cache directory.
pub const CACHE_DB: &str = "responses.sqlite";

/// The default cache directory: `$JUDGE_AUDIT_CACHE`, else `$XDG_CACHE_HOME/judge-audit`, else
/// `$HOME/.cache/judge-audit`.
pub fn default_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("JUDGE_AUDIT_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(dir).join("judge-audit"));
    }
    std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cache").join("judge-audit"))
}

/// An open response cache.
pub struct ResponseCache {
    conn: Connection,
    path: PathBuf,
}

/// Size of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Stored replies.
    pub entries: u64,
    /// Database size in bytes (main file).
    pub bytes: u64,
}

/// What [`ResponseCache::clear_dir`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cleared {
    /// The cache was readable; this many entries were removed.
    Entries {
        /// The database file.
        path: PathBuf,
        /// Entries removed.
        removed: u64,
    },
    /// The cache could not be read, so its files were deleted.
    Unreadable {
        /// The database file.
        path: PathBuf,
        /// Why it could not be read.
        error: String,
    },
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> String + '_ {
    move |e| format!("{}: {e}", path.display())
}

impl ResponseCache {
    /// Open (creating if needed) the cache in `dir`.
    pub fn open(dir: &Path) -> Result<ResponseCache, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(CACHE_DB);
        let conn = Connection::open(&path).map_err(sqlite_error(&path))?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 10000;
             CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, reply TEXT NOT NULL);",
        )
        .map_err(sqlite_error(&path))?;
        Ok(ResponseCache { conn, path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Look up many keys at once; unreadable entries count as misses.
    pub fn lookup(&self, keys: &[&str]) -> Result<HashMap<String, JudgeReply>, String> {
        let mut query = self
            .conn
            .prepare_cached("SELECT reply FROM replies WHERE key = ?1")
            .map_err(sqlite_error(&self.path))?;
        let mut hits = HashMap::new();
        for key in keys {
            let mut rows = query
                .query(params![key])
                .map_err(sqlite_error(&self.path))?;
            if let Some(row) = rows.next().map_err(sqlite_error(&self.path))? {
                let text: String = row.get(0).map_err(sqlite_error(&self.path))?;
                if let Ok(reply) = serde_json::from_str(&text) {
                    hits.insert(key.to_string(), reply);
                }
            }
        }
        Ok(hits)
    }

    /// Store replies (one transaction).
    pub fn store(&mut self, entries: &[(String, JudgeReply)]) -> Result<(), String> {
        let path = self.path.clone();
        let tx = self.conn.transaction().map_err(sqlite_error(&path))?;
        {
            let mut insert = tx
                .prepare_cached("INSERT OR REPLACE INTO replies (key, reply) VALUES (?1, ?2)")
                .map_err(sqlite_error(&path))?;
            for (key, reply) in entries {
                let json = serde_json::to_string(reply).expect("replies serialize");
                insert
                    .execute(params![key, json])
                    .map_err(sqlite_error(&path))?;
            }
        }
        tx.commit().map_err(sqlite_error(&path))
    }

    /// Number of entries and file size.
    pub fn stats(&self) -> Result<CacheStats, String> {
        let entries: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM replies", [], |r| r.get(0))
            .map_err(sqlite_error(&self.path))?;
        let bytes = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        Ok(CacheStats {
            entries: entries as u64,
            bytes,
        })
    }

    /// Empty the cache in `dir`, even when it is damaged: a database SQLite reports as not a
    /// database or malformed is deleted with its WAL and shared-memory files, so a corrupt cache
    /// never blocks an audit for good. Any other failure (busy, permissions) is returned.
    pub fn clear_dir(dir: &Path) -> Result<Cleared, String> {
        let path = dir.join(CACHE_DB);
        let error = match ResponseCache::open(dir).and_then(|cache| cache.clear()) {
            Ok(removed) => return Ok(Cleared::Entries { path, removed }),
            Err(error) => error,
        };
        // Only a damaged file is deleted: a cache that is busy (another audit is using it) or
        // unreadable for lack of permission is left alone and the error reported.
        if !(error.contains("not a database") || error.contains("malformed")) {
            return Err(error);
        }
        for suffix in ["", "-wal", "-shm"] {
            let file = PathBuf::from(format!("{}{suffix}", path.display()));
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("{}: {e} (while clearing: {error})", file.display())),
            }
        }
        Ok(Cleared::Unreadable { path, error })
    }

    /// Delete every entry.
    pub fn clear(&self) -> Result<u64, String> {
        let removed = self
            .conn
            .execute("DELETE FROM replies", [])
            .map_err(sqlite_error(&self.path))?;
        self.conn
            .execute_batch("VACUUM")
            .map_err(sqlite_error(&self.path))?;
        Ok(removed as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_dir_empties_a_sound_cache_and_deletes_a_corrupt_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = ResponseCache::open(dir.path()).unwrap();
        let reply = JudgeReply {
            raw: "Output (a)".into(),
            verdict: crate::judge::SlotVerdict::First,
            usage: None,
            label_probs: None,
            redacted: false,
            grades: None,
        };
        cache.store(&[("k".into(), reply)]).unwrap();
        drop(cache);
        assert_eq!(
            ResponseCache::clear_dir(dir.path()).unwrap(),
            Cleared::Entries {
                path: dir.path().join(CACHE_DB),
                removed: 1
            }
        );
        std::fs::write(dir.path().join(CACHE_DB), "garbage ".repeat(600)).unwrap();
        assert!(ResponseCache::open(dir.path()).is_err());
        match ResponseCache::clear_dir(dir.path()).unwrap() {
            Cleared::Unreadable { error, .. } => assert!(error.contains("not a database")),
            other => panic!("{other:?}"),
        }
        // The next open starts an empty cache.
        let cache = ResponseCache::open(dir.path()).unwrap();
        assert_eq!(cache.stats().unwrap().entries, 0);
    }
}
