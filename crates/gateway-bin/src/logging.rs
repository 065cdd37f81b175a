//! Where and how the gateway logs: the `[logging]` section. `gateway serve` writes text or
//! JSON lines to standard error, or, with `dir`, to one file per UTC day in that directory,
//! `gateway.YYYY-MM-DD.log`, whose old files the retention job deletes (`retention.rs`). The
//! other commands log text to standard error. `RUST_LOG` filters (default `info`).

use std::path::PathBuf;

use anyhow::Context;
use chrono::NaiveDate;
use serde::Deserialize;
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// What log file names start with.
const FILE_PREFIX: &str = "gateway";
/// What log file names end with.
const FILE_SUFFIX: &str = "log";

/// `[logging]`: where `gateway serve` writes its log and in which format.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingConfig {
    /// Directory of the daily log files; relative paths are inside the data directory.
    /// Without it the log goes to standard error.
    pub dir: Option<PathBuf>,
    /// `text` (the default) or `json` (one JSON object per line).
    pub format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields,
    /// `target` and the spans it happened in.
    Json,
}

/// The directory of the log files, if `[logging] dir` is set.
pub fn log_dir(config: &Config) -> Option<PathBuf> {
    config
        .logging
        .dir
        .as_deref()
        .map(|dir| config.in_data_dir(dir))
}

/// The day a log file of ours holds (`gateway.2026-12-01.log`), or `None` for any other name.
pub fn file_date(name: &str) -> Option<NaiveDate> {
    let date = name
        .strip_prefix(FILE_PREFIX)?
        .strip_prefix('.')?
        .strip_suffix(FILE_SUFFIX)?
        .strip_suffix('.')?;
    NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()
}

/// Logging of `gateway serve`, as `[logging]` says.
pub fn init_serve(config: &Config) -> anyhow::Result<()> {
    let format = config.logging.format;
    match log_dir(config) {
        None => install(format, std::io::stderr, stderr_is_terminal()),
        Some(dir) => {
            let files = RollingFileAppender::builder()
                .rotation(Rotation::DAILY)
                .filename_prefix(FILE_PREFIX)
                .filename_suffix(FILE_SUFFIX)
                .build(&dir)
                .with_context(|| format!("cannot write log files in {}", dir.display()))?;
            install(format, files, false);
        }
    }
    Ok(())
}

/// Logging of the other commands: text on standard error.
pub fn init_stderr() {
    install(LogFormat::Text, std::io::stderr, stderr_is_terminal());
}

fn install<W>(format: LogFormat, writer: W, ansi: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match format {
        LogFormat::Text => builder.with_ansi(ansi).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn stderr_is_terminal() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn only_our_daily_files_have_a_date() {
        let day = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        assert_eq!(file_date("gateway.2026-12-01.log"), Some(day));
        for other in [
            "gateway.log",
            "gateway.2026-12-01",
            "gateway.2026-12-01.log.gz",
            "other.2026-12-01.log",
            "gateway.2026-13-01.log",
            "gateway.2026-12-01-10.log",
        ] {
            assert_eq!(file_date(other), None, "{other}");
        }
    }

    #[test]
    fn the_section_parses() {
        let config = Config::parse("[logging]\ndir = \"logs\"\nformat = \"json\"\n").unwrap();
        assert_eq!(config.logging.format, LogFormat::Json);
        assert_eq!(log_dir(&config), Some(PathBuf::from("data/logs")));
        let default = Config::parse("").unwrap();
        assert_eq!(default.logging.format, LogFormat::Text);
        assert_eq!(log_dir(&default), None);
        assert!(Config::parse("[logging]\nformat = \"xml\"\n").is_err());
    }
}
