//! The retention job: the `[retention]` section, and the job that removes personal data kept
//! outside the customer's own records once it is older than `personal_data_days`. `serve`
//! runs it every `interval_secs` (and at start); `gateway admin retention run` runs it once.
//!
//! One run, "as of" a time (now, unless the admin command is told otherwise):
//!
//! - audit events older than the period lose their actor's subject (a pseudonym replaces it),
//!   e-mail and source IP (`gateway_auth::retention` says how and why);
//! - the daily log files of `[logging] dir` whose day began before the cutoff are deleted, so
//!   no log line is kept longer than the period (plus at most one interval); the lines of that
//!   file's last day, up to a day younger, go with it. Only our own names
//!   (`gateway.YYYY-MM-DD.log`) are touched, and the date comes from the name.
//!
//! Both are idempotent and safe on several replicas at once (each replica has its own log
//! directory; the database's events are pseudonymized exactly once).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, TimeDelta, Utc};
use gateway_auth::{Management, ManualClock, Store};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::logging::{file_date, log_dir};

/// `[retention]`: how long personal data is kept and how often the job looks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Days the personal data of audit events and log files is kept (at least 1).
    pub personal_data_days: u32,
    /// Seconds between two runs of the job in `serve` (at least 1).
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            personal_data_days: 30,
            interval_secs: 3600,
        }
    }
}

impl RetentionConfig {
    /// The retention period; an error names the field when it is 0.
    fn period(&self) -> anyhow::Result<TimeDelta> {
        anyhow::ensure!(
            self.personal_data_days > 0,
            "retention.personal_data_days must be at least 1"
        );
        Ok(TimeDelta::days(i64::from(self.personal_data_days)))
    }

    /// The time between runs; an error names the field when it is 0.
    fn interval(&self) -> anyhow::Result<Duration> {
        anyhow::ensure!(
            self.interval_secs > 0,
            "retention.interval_secs must be at least 1"
        );
        Ok(Duration::from_secs(self.interval_secs))
    }
}

/// What one run did; `gateway admin retention run` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RetentionReport {
    /// The time the run took as "now".
    pub as_of: DateTime<Utc>,
    /// The retention period, in days.
    pub personal_data_days: u32,
    /// Data from before this time was due.
    pub cutoff: DateTime<Utc>,
    /// Audit events this run pseudonymized.
    pub audit_events_pseudonymized: u64,
    /// The log directory looked at, if `[logging] dir` is set.
    pub log_dir: Option<PathBuf>,
    /// Names of the log files this run deleted, oldest first.
    pub log_files_deleted: Vec<String>,
}

/// The job: the database, the period and the log directory.
#[derive(Debug, Clone)]
pub struct RetentionJob {
    store: Arc<dyn Store>,
    days: u32,
    period: TimeDelta,
    log_dir: Option<PathBuf>,
}

impl RetentionJob {
    /// The job `config` describes, on `store`.
    pub fn new(store: Arc<dyn Store>, config: &Config) -> anyhow::Result<Self> {
        Ok(Self {
            store,
            days: config.retention.personal_data_days,
            period: config.retention.period()?,
            log_dir: log_dir(config),
        })
    }

    /// Runs the job once, taking `as_of` as now.
    pub async fn run(&self, as_of: DateTime<Utc>) -> anyhow::Result<RetentionReport> {
        let clock = Arc::new(ManualClock::new(as_of));
        let management = Management::with_clock(Arc::clone(&self.store), clock);
        let audit = management
            .pseudonymize_audit_log(self.period)
            .await
            .context("cannot pseudonymize the audit log")?;
        let log_files_deleted = match &self.log_dir {
            None => Vec::new(),
            Some(dir) => {
                let dir = dir.clone();
                tokio::task::spawn_blocking(move || delete_old_log_files(&dir, audit.cutoff))
                    .await??
            }
        };
        Ok(RetentionReport {
            as_of,
            personal_data_days: self.days,
            cutoff: audit.cutoff,
            audit_events_pseudonymized: audit.events,
            log_dir: self.log_dir.clone(),
            log_files_deleted,
        })
    }
}

/// Starts the job of `serve`: a run now and one every `[retention] interval_secs`.
pub fn start(store: Arc<dyn Store>, config: &Config) -> anyhow::Result<JoinHandle<()>> {
    let job = RetentionJob::new(store, config)?;
    let interval = config.retention.interval()?;
    Ok(tokio::spawn(run_periodically(job, interval)))
}

async fn run_periodically(job: RetentionJob, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match job.run(Utc::now()).await {
            Ok(report) => log_report(&report),
            Err(error) => tracing::warn!(error = format!("{error:#}"), "retention job failed"),
        }
    }
}

fn log_report(report: &RetentionReport) {
    let files = report.log_files_deleted.len();
    if report.audit_events_pseudonymized > 0 || files > 0 {
        tracing::info!(
            audit_events = report.audit_events_pseudonymized,
            log_files = files,
            cutoff = %report.cutoff,
            "retention: removed personal data older than {} days",
            report.personal_data_days
        );
    }
}

/// `gateway admin retention run [--as-of TIME]`: one run, as JSON.
pub async fn run_command(config: &Config, as_of: Option<&str>) -> anyhow::Result<String> {
    let as_of = match as_of {
        Some(text) => crate::metering::parse_time(text).context("invalid --as-of")?,
        None => Utc::now(),
    };
    let store = crate::store::open(config).await?;
    let report = RetentionJob::new(store, config)?.run(as_of).await?;
    Ok(serde_json::to_string(&report)?)
}

/// Deletes the log files in `dir` whose day began before `cutoff`; returns their names,
/// oldest first. A directory that does not exist yet holds none.
fn delete_old_log_files(dir: &Path, cutoff: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error).context(format!("cannot list {}", dir.display())),
    };
    let mut due = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let began = file_date(&name).and_then(gateway_core::time::midnight);
        if began.is_some_and(|began| began < cutoff) {
            due.push(name);
        }
    }
    due.sort();
    for name in &due {
        let path = dir.join(name);
        std::fs::remove_file(&path).with_context(|| format!("cannot delete {}", path.display()))?;
    }
    Ok(due)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_whose_day_began_before_the_cutoff_go() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "gateway.2026-10-30.log",
            "gateway.2026-10-31.log",
            "gateway.2026-11-01.log",
            "gateway.2026-11-30.log",
            "gateway.log",
            "other.2020-01-01.log",
            "notes.txt",
        ] {
            std::fs::write(dir.path().join(name), "line\n").unwrap();
        }
        // 30 days before 2026-11-30T12:00Z: the files of 31 October (began at midnight) and
        // earlier go; 1 November's began after the cutoff and stays.
        let cutoff = time("2026-10-31T12:00:00Z");
        let deleted = delete_old_log_files(dir.path(), cutoff).unwrap();
        assert_eq!(
            deleted,
            ["gateway.2026-10-30.log", "gateway.2026-10-31.log"]
        );
        assert_eq!(
            names(dir.path()),
            [
                "gateway.2026-11-01.log",
                "gateway.2026-11-30.log",
                "gateway.log",
                "notes.txt",
                "other.2020-01-01.log",
            ]
        );
        assert!(delete_old_log_files(dir.path(), cutoff).unwrap().is_empty());
    }

    #[test]
    fn a_missing_directory_has_no_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("logs");
        assert!(delete_old_log_files(&missing, Utc::now())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_section_parses_and_is_checked() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.retention.personal_data_days, 30);
        assert_eq!(config.retention.period().unwrap(), TimeDelta::days(30));
        assert_eq!(
            config.retention.interval().unwrap(),
            Duration::from_secs(3600)
        );
        let zero = Config::parse("[retention]\npersonal_data_days = 0\n").unwrap();
        let error = zero.retention.period().unwrap_err().to_string();
        assert!(error.contains("personal_data_days"), "{error}");
        assert!(Config::parse("[retention]\ndays = 3\n").is_err());
    }

    #[tokio::test]
    async fn a_run_pseudonymizes_old_events_and_deletes_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[server]\ndata_dir = {:?}\n[logging]\ndir = \"logs\"\n[retention]\npersonal_data_days = 2\n",
            dir.path().display().to_string()
        );
        let config = Config::parse(&text).unwrap();
        let store = crate::store::open(&config).await.unwrap();
        let clock = Arc::new(ManualClock::new(time("2026-11-01T10:00:00Z")));
        let management = Management::with_clock(Arc::clone(&store), clock.clone());
        let project = management.create_project("p").await.unwrap();
        management
            .add_principal(
                project.id,
                "sub-1",
                "a@example.com",
                gateway_auth::Role::Owner,
            )
            .await
            .unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("gateway.2026-10-31.log"), "").unwrap();
        std::fs::write(logs.join("gateway.2026-11-02.log"), "").unwrap();
        let job = RetentionJob::new(store, &config).unwrap();
        let early = job.run(time("2026-11-02T10:00:00Z")).await.unwrap();
        assert_eq!(early.audit_events_pseudonymized, 0);
        assert_eq!(early.log_files_deleted, ["gateway.2026-10-31.log"]);
        let report = job.run(time("2026-11-03T10:00:01Z")).await.unwrap();
        assert_eq!(report.cutoff, time("2026-11-01T10:00:01Z"));
        assert_eq!(report.audit_events_pseudonymized, 2);
        assert!(report.log_files_deleted.is_empty());
        assert_eq!(report.log_dir, Some(logs));
        let again = job.run(time("2026-11-03T10:00:01Z")).await.unwrap();
        assert_eq!(again.audit_events_pseudonymized, 0);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["personalDataDays"], 2);
        assert_eq!(json["auditEventsPseudonymized"], 2);
    }
}
