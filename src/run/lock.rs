//! The run-directory lock: one process at a time may send calls for a run directory.
//!
//! Two `run` processes on the same `--out` (or a `--resume` started while the first still runs)
//! would each send every pending call, so every call would be paid for twice. The lock is an
//! advisory `flock(2)` on `run.lock` inside the directory: the kernel releases it when the holder
//! exits, however it exits (even `kill -9`), so a stale lock file never blocks a resume. The file
//! names its holder so the refusal can say who it is.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// File name of the lock inside a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// A held run-directory lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct RunLock {
    // Holding the open file holds the lock.
    _file: File,
    path: PathBuf,
}

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error(
        "{dir}: another judge-audit process is running on this directory ({holder}); wait for it to finish or stop it — two runs on one directory would pay for every call twice"
    )]
    Held {
        /// The run directory.
        dir: PathBuf,
        /// What the lock file says about its holder.
        holder: String,
    },
    /// The lock file could not be opened or locked.
    #[error("{path}: cannot lock the run directory: {source}")]
    Io {
        /// The lock file.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
}

impl RunLock {
    /// Take the exclusive lock on `dir` without waiting, recording this process as the holder.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let path = dir.join(LOCK_FILE);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::WouldBlock {
                return Err(io(error));
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.split_whitespace().collect::<Vec<_>>().join(" ");
            return Err(LockError::Held {
                dir: dir.to_path_buf(),
                holder: if holder.is_empty() {
                    "holder unknown".into()
                } else {
                    holder
                },
            });
        }
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let text = format!(
            "pid {}, started at unix time {started}\n",
            std::process::id()
        );
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        file.write_all(text.as_bytes()).map_err(io)?;
        Ok(RunLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts
        // exactly as another process would.
        let second = RunLock::acquire(dir.path()).unwrap_err();
        let message = second.to_string();
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("another judge-audit process"), "{message}");
        drop(first);
        let again = RunLock::acquire(dir.path()).unwrap();
        assert_eq!(again.path(), dir.path().join(LOCK_FILE));
    }
}
