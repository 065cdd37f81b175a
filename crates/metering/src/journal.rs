//! The usage journal: makes a [`UsageRecord`] durable before the client receives the end of
//! its answer, cheaply, and moves records into the [`UsageStore`] in batches.
//!
//! [`UsageJournal::append`] writes the record as one JSON line to the current segment file
//! (`usage-<start ms>-<random>-<n>.jsonl` in the journal directory): one `write` into the page cache,
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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// A record could not be written as JSON.
    #[error("usage record not encodable: {0}")]
    Encode(#[from] serde_json::Error),
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
    /// Names this process's segments apart from those of earlier and other processes:
    /// `<start ms>-<random>`.
    instance: String,
    next_segment: Mutex<u64>,
    current: Mutex<Segment>,
    /// Sealed segments, oldest first; one whose insert failed waits here for the next flush.
    sealed: tokio::sync::Mutex<Vec<Sealed>>,
    store: Arc<dyn UsageStore>,
    /// Records appended and not yet in the store.
    pending: AtomicU64,
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
        let instance = format!(
            "{}-{:08x}",
            chrono::Utc::now().timestamp_millis(),
            rand::random::<u32>()
        );
        let current = create_segment(dir, &instance, 0)?;
        Ok(Self {
            dir: dir.to_owned(),
            instance,
            next_segment: Mutex::new(1),
            current: Mutex::new(current),
            sealed: tokio::sync::Mutex::new(Vec::new()),
            store,
            pending: AtomicU64::new(0),
        })
    }

    /// Writes `record` to the current segment. Once this returns, the record survives the
    /// process being killed.
    pub fn append(&self, record: &UsageRecord) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        let mut guard = self.lock_current();
        let segment = &mut *guard;
        segment
            .file
            .write_all(&line)
            .map_err(|source| io_error(&segment.path, source))?;
        segment.records.push(record.clone());
        self.pending.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many appended records are not in the store yet (they wait here while it is
    /// unreachable).
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
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
            self.pending
                .fetch_sub(segment.records.len() as u64, Ordering::Relaxed);
            remove_segment(&segment.path);
            sealed.remove(0);
        }
        Ok(inserted)
    }

    /// Swaps in a new segment and returns the old one, if it holds records. The new file is
    /// made before the segment is locked, so appends do not wait for it.
    fn seal(&self) -> Result<Option<Sealed>, JournalError> {
        if self.lock_current().records.is_empty() {
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
        let fresh = create_segment(&self.dir, &self.instance, number)?;
        let old = std::mem::replace(&mut *self.lock_current(), fresh);
        Ok(Some(Sealed {
            path: old.path,
            records: old.records,
        }))
    }

    fn lock_current(&self) -> std::sync::MutexGuard<'_, Segment> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Creates segment `number` of the journal `instance`, locked.
fn create_segment(dir: &Path, instance: &str, number: u64) -> Result<Segment, JournalError> {
    let path = dir.join(format!("usage-{instance}-{number}.jsonl"));
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

/// (start ms, random, number) from `usage-<start ms>-<random>-<number>.jsonl`.
fn segment_order(path: &Path) -> (i64, String, u64) {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default();
    let mut parts = stem.trim_start_matches("usage-").splitn(3, '-');
    let started = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let random = parts.next().unwrap_or_default().to_owned();
    let number = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (started, random, number)
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
        match read_line(&line) {
            Ok(record) => records.push(record),
            Err(_) if line.trim().is_empty() => {}
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "skipping a cut usage journal line")
            }
        }
    }
    Ok(Some(records))
}

/// One journal line's record. A line written before prompt caching was metered has neither
/// cached input tokens (they are 0) nor a cached input price: it gets its input price, as
/// the migration gave the stored records, so that it bills on the line of its price.
fn read_line(line: &str) -> serde_json::Result<UsageRecord> {
    let mut value: serde_json::Value = serde_json::from_str(line)?;
    if let Some(fields) = value.as_object_mut() {
        if let (None, Some(input_price)) =
            (fields.get("cached_input_price"), fields.get("input_price"))
        {
            let input_price = input_price.clone();
            fields.insert("cached_input_price".to_owned(), input_price);
        }
    }
    serde_json::from_value(value)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::str::FromStr;

    use gateway_core::ServicePlan;
    use rust_decimal::Decimal;
    use uuid::Uuid;

    use super::*;
    use crate::price::Price;
    use crate::record::{Outcome, Requester, TokenCounts};
    use crate::store::UsageQuery;

    fn record(project: Uuid, request_id: &str) -> UsageRecord {
        let price = Price {
            plan: ServicePlan::Base,
            effective_from: chrono::Utc::now(),
            currency: "EUR".to_owned(),
            input_per_million: Decimal::from_str("0.45").unwrap(),
            cached_input_per_million: Decimal::from_str("0.09").unwrap(),
            output_per_million: Decimal::from_str("0.65").unwrap(),
        };
        let requester = Requester {
            project_id: project,
            key_id: Uuid::new_v4(),
            model: "m".to_owned(),
            request_id: request_id.to_owned(),
        };
        let counts = TokenCounts {
            input: 10,
            cached_input: 4,
            output: 2,
            exact: true,
        };
        UsageRecord::new(
            requester,
            chrono::Utc::now(),
            &price,
            counts,
            Outcome::Complete,
        )
    }

    async fn store(dir: &Path) -> Arc<dyn UsageStore> {
        let url = format!("sqlite://{}?mode=rwc", dir.join("usage.db").display());
        crate::store::open(&url).await.unwrap()
    }

    async fn stored(store: &dyn UsageStore, project: Uuid) -> Vec<String> {
        let query = UsageQuery {
            project_id: project,
            from: None,
            to: None,
        };
        let records = store.records(&query).await.unwrap();
        records.into_iter().map(|r| r.request_id).collect()
    }

    fn segments(dir: &Path) -> usize {
        segment_paths(dir).unwrap().len()
    }

    #[tokio::test]
    async fn a_flush_moves_the_records_into_the_store_and_deletes_their_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let journal_dir = dir.path().join("journal");
        let journal = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        let project = Uuid::new_v4();
        journal.append(&record(project, "a")).unwrap();
        journal.append(&record(project, "b")).unwrap();
        assert_eq!(journal.flush().await.unwrap(), 2);
        assert_eq!(stored(store.as_ref(), project).await, ["a", "b"]);
        assert_eq!(segments(&journal_dir), 1, "only the fresh segment is left");
        assert_eq!(journal.flush().await.unwrap(), 0);
    }

    /// A store that fails every operation while `down` is set, as a database that went away.
    #[derive(Debug)]
    struct Unreliable {
        inner: Arc<dyn UsageStore>,
        down: std::sync::atomic::AtomicBool,
    }

    impl Unreliable {
        fn check(&self) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Database(sqlx::Error::PoolTimedOut));
            }
            Ok(())
        }
    }

    #[async_trait::async_trait]
    impl UsageStore for Unreliable {
        async fn insert_records(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
            self.check()?;
            self.inner.insert_records(records).await
        }
        async fn records(&self, query: &UsageQuery) -> Result<Vec<UsageRecord>, StoreError> {
            self.check()?;
            self.inner.records(query).await
        }
        async fn usage_rows(
            &self,
            query: &UsageQuery,
            group_by: crate::report::GroupBy,
        ) -> Result<Vec<crate::report::UsageRow>, StoreError> {
            self.check()?;
            self.inner.usage_rows(query, group_by).await
        }
        async fn set_limit_override(
            &self,
            limits: &crate::store::LimitOverride,
        ) -> Result<(), StoreError> {
            self.check()?;
            self.inner.set_limit_override(limits).await
        }
        async fn limit_overrides(&self) -> Result<Vec<crate::store::LimitOverride>, StoreError> {
            self.check()?;
            self.inner.limit_overrides().await
        }
    }

    #[tokio::test]
    async fn records_wait_in_the_journal_while_the_store_is_away() {
        let dir = tempfile::tempdir().unwrap();
        let inner = store(dir.path()).await;
        let unreliable = Arc::new(Unreliable {
            inner: Arc::clone(&inner),
            down: true.into(),
        });
        let journal_dir = dir.path().join("journal");
        let journal = UsageJournal::open(&journal_dir, unreliable.clone())
            .await
            .unwrap();
        let project = Uuid::new_v4();
        for (round, id) in ["a", "b", "c"].into_iter().enumerate() {
            journal.append(&record(project, id)).unwrap();
            assert!(journal.flush().await.is_err());
            assert_eq!(journal.pending(), round as u64 + 1);
        }
        assert_eq!(
            segments(&journal_dir),
            4,
            "three sealed segments and the current one"
        );
        unreliable.down.store(false, Ordering::SeqCst);
        assert_eq!(journal.flush().await.unwrap(), 3);
        assert_eq!(journal.pending(), 0);
        assert_eq!(stored(inner.as_ref(), project).await, ["a", "b", "c"]);
        assert_eq!(segments(&journal_dir), 1);
    }

    #[tokio::test]
    async fn records_of_a_killed_process_are_replayed_once_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let journal_dir = dir.path().join("journal");
        let project = Uuid::new_v4();
        let killed = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        let flushed = record(project, "flushed");
        killed.append(&flushed).unwrap();
        killed.flush().await.unwrap();
        killed.append(&record(project, "journaled")).unwrap();
        // a write cut by the kill, and the flushed record again (a crash between the insert
        // and the deletion of its segment)
        let path = killed.current.lock().unwrap().path.clone();
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        let mut again = serde_json::to_vec(&flushed).unwrap();
        again.push(b'\n');
        file.write_all(&again).unwrap();
        file.write_all(b"{\"id\":\"cut").unwrap();
        drop(killed);
        let restarted = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        assert_eq!(
            stored(store.as_ref(), project).await,
            ["flushed", "journaled"]
        );
        assert_eq!(segments(&journal_dir), 1);
        drop(restarted);
    }

    #[tokio::test]
    async fn a_record_journaled_before_prompt_caching_is_replayed_at_its_input_price() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let journal_dir = dir.path().join("journal");
        fs::create_dir_all(&journal_dir).unwrap();
        let project = Uuid::new_v4();
        let mut old = serde_json::to_value(record(project, "old")).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("cached_input_tokens").unwrap();
        fields.remove("cached_input_price").unwrap();
        fields.insert("cost".to_owned(), serde_json::json!("0.0000058"));
        let mut line = serde_json::to_vec(&old).unwrap();
        line.push(b'\n');
        fs::write(journal_dir.join("usage-1-old-0.jsonl"), line).unwrap();
        let journal = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        let query = UsageQuery {
            project_id: project,
            from: None,
            to: None,
        };
        let replayed = store.records(&query).await.unwrap();
        assert_eq!(replayed.len(), 1);
        let replayed = &replayed[0];
        assert_eq!(replayed.request_id, "old");
        assert_eq!(replayed.input_tokens, 10);
        assert_eq!(replayed.cached_input_tokens, 0);
        assert_eq!(replayed.cached_input_price, replayed.input_price);
        assert_eq!(replayed.cost, Decimal::from_str("0.0000058").unwrap());
        drop(journal);
    }

    #[tokio::test]
    async fn a_live_process_keeps_its_segment() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let journal_dir = dir.path().join("journal");
        let project = Uuid::new_v4();
        let live = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        live.append(&record(project, "live")).unwrap();
        let second = UsageJournal::open(&journal_dir, Arc::clone(&store))
            .await
            .unwrap();
        assert!(stored(store.as_ref(), project).await.is_empty());
        assert_eq!(live.flush().await.unwrap(), 1);
        assert_eq!(second.flush().await.unwrap(), 0);
        assert_eq!(stored(store.as_ref(), project).await, ["live"]);
    }
}
