//! The usage journal: makes a [`UsageRecord`] durable before the client receives the end of
//! its answer, cheaply, and moves records into the [`UsageStore`] in batches.
//!
//! [`UsageJournal::append`] writes the record as one JSON line to the current segment file
//! (`usage-<start ms>-<n>.jsonl` in the journal directory): one `write` into the page cache,
//! which survives the process being killed (`kill -9`), though not the machine losing power.
//! [`UsageJournal::flush`] (every [`FLUSH_INTERVAL`] from [`UsageJournal::run_writer`], and at
//! shutdown) swaps in a new segment, inserts the old one's records in one transaction and
//! deletes its file. At start, [`UsageJournal::open`] replays every segment left by a process
//! that died; the store skips records it already holds, so none is counted twice. Each
//! segment is locked by the process writing it, so a second process on the same directory
//! never replays a live one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::record::UsageRecord;
use crate::store::{StoreError, UsageStore};

/// How often the writer moves journaled records into the store.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// Records inserted per transaction when replaying a segment.
const REPLAY_BATCH: usize = 512;

/// The journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing a segment failed.
    #[error("usage journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The store refused the records (they stay in the journal and are retried).
    #[error("usage store: {0}")]
    Store(#[from] StoreError),
}

/// The segment being written and the records in it.
#[derive(Debug)]
struct Segment {
    file: File,
    path: PathBuf,
    records: Vec<UsageRecord>,
}

/// A written-to segment whose records are not in the store yet.
#[derive(Debug)]
struct Sealed {
    path: PathBuf,
    records: Vec<UsageRecord>,
}

/// Durable usage records on their way to the store.
#[derive(Debug)]
pub struct UsageJournal {
    dir: PathBuf,
    /// Distinguishes this process's segments from earlier ones.
    started_ms: i64,
    next_segment: Mutex<u64>,
    current: Mutex<Segment>,
    /// Sealed segments, oldest first; one whose insert failed waits here for the next flush.
    sealed: tokio::sync::Mutex<Vec<Sealed>>,
    store: Arc<dyn UsageStore>,
}

impl UsageJournal {
    /// Opens the journal in `dir` (created if missing), moves the records of segments that
    /// no live process holds into `store`, and starts a new segment.
    pub async fn open(dir: &Path, store: Arc<dyn UsageStore>) -> Result<Self, JournalError> {
        fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let replayed = replay_leftovers(dir, store.as_ref()).await?;
        if replayed > 0 {
            tracing::info!(records = replayed, "usage journal replayed");
        }
        let started_ms = chrono::Utc::now().timestamp_millis();
        let current = create_segment(dir, started_ms, 0)?;
        Ok(Self {
            dir: dir.to_owned(),
            started_ms,
            next_segment: Mutex::new(1),
            current: Mutex::new(current),
            sealed: tokio::sync::Mutex::new(Vec::new()),
            store,
        })
    }

    /// Writes `record` to the current segment. Once this returns, the record survives the
    /// process being killed.
    pub fn append(&self, record: &UsageRecord) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).map_err(|error| Self::encode_error(&error))?;
        line.push(b'\n');
        let mut segment = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        let path = segment.path.clone();
        segment
            .file
            .write_all(&line)
            .map_err(|source| io_error(&path, source))?;
        segment.records.push(record.clone());
        Ok(())
    }

    fn encode_error(error: &serde_json::Error) -> JournalError {
        JournalError::Io {
            path: PathBuf::new(),
            source: io::Error::other(error.to_string()),
        }
    }

    /// Moves every journaled record into the store; returns how many were new there. A
    /// failed insert leaves the records journaled, to be retried by the next flush.
    pub async fn flush(&self) -> Result<u64, JournalError> {
        let mut sealed = self.sealed.lock().await;
        if let Some(segment) = self.seal()? {
            sealed.push(segment);
        }
        let mut inserted = 0;
        while let Some(segment) = sealed.first() {
            inserted += self.store.insert_records(&segment.records).await?;
            remove_segment(&segment.path);
            sealed.remove(0);
        }
        Ok(inserted)
    }

    /// Swaps in a new segment and returns the old one, if it holds records.
    fn seal(&self) -> Result<Option<Sealed>, JournalError> {
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.records.is_empty() {
            return Ok(None);
        }
        let number = {
            let mut next = self
                .next_segment
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            *next += 1;
            *next - 1
        };
        let fresh = create_segment(&self.dir, self.started_ms, number)?;
        let old = std::mem::replace(&mut *current, fresh);
        Ok(Some(Sealed {
            path: old.path,
            records: old.records,
        }))
    }

    /// Flushes every [`FLUSH_INTERVAL`] until the task is dropped; failures are logged and
    /// retried.
    pub async fn run_writer(self: Arc<Self>) {
        let mut interval = tokio::time::interval(FLUSH_INTERVAL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if let Err(error) = self.flush().await {
                tracing::warn!(%error, "usage records stay journaled; retrying");
            }
        }
    }
}

/// Creates segment `number` of the process that started at `started_ms`, locked.
fn create_segment(dir: &Path, started_ms: i64, number: u64) -> Result<Segment, JournalError> {
    let path = dir.join(format!("usage-{started_ms}-{number}.jsonl"));
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|source| io_error(&path, source))?;
    file.try_lock().map_err(|error| {
        io_error(
            &path,
            io::Error::new(io::ErrorKind::WouldBlock, error.to_string()),
        )
    })?;
    Ok(Segment {
        file,
        path,
        records: Vec::new(),
    })
}

/// Moves the records of every unlocked segment in `dir` into `store` and deletes it.
async fn replay_leftovers(dir: &Path, store: &dyn UsageStore) -> Result<u64, JournalError> {
    let mut replayed = 0;
    for path in segment_paths(dir)? {
        let Some(records) = read_unheld_segment(&path)? else {
            continue;
        };
        for batch in records.chunks(REPLAY_BATCH) {
            replayed += store.insert_records(batch).await?;
        }
        remove_segment(&path);
    }
    Ok(replayed)
}

/// The segment files in `dir`, oldest first.
fn segment_paths(dir: &Path) -> Result<Vec<PathBuf>, JournalError> {
    let entries = fs::read_dir(dir).map_err(|source| io_error(dir, source))?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| is_segment_name(path))
        .collect();
    paths.sort_by_key(|path| segment_order(path));
    Ok(paths)
}

fn is_segment_name(path: &Path) -> bool {
    path.file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("usage-") && name.ends_with(".jsonl"))
}

/// (start ms, number) from `usage-<start ms>-<number>.jsonl`.
fn segment_order(path: &Path) -> (i64, u64) {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let mut parts = stem.trim_start_matches("usage-").splitn(2, '-');
    let started = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let number = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (started, number)
}

/// The records of a segment no live process holds; `None` if one does. A line that does not
/// parse (the last one, cut by a crash in the middle of a write) is skipped with a warning.
fn read_unheld_segment(path: &Path) -> Result<Option<Vec<UsageRecord>>, JournalError> {
    let file = File::open(path).map_err(|source| io_error(path, source))?;
    if file.try_lock_shared().is_err() {
        return Ok(None);
    }
    let mut records = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|source| io_error(path, source))?;
        match serde_json::from_str(&line) {
            Ok(record) => records.push(record),
            Err(_) if line.trim().is_empty() => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping a cut usage journal line")
            }
        }
    }
    Ok(Some(records))
}

fn remove_segment(path: &Path) {
    if let Err(error) = fs::remove_file(path) {
        if error.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), %error, "cannot delete a usage journal segment");
        }
    }
}

fn io_error(path: &Path, source: io::Error) -> JournalError {
    JournalError::Io {
        path: path.to_owned(),
        source,
    }
}
