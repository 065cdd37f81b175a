//! The one way the gateway reads an instant that people write in queries, configuration and
//! commands: an RFC 3339 time (`2026-05-20T10:00:00Z`) or a UTC date (`2026-05-20`, meaning
//! its midnight).

use chrono::{DateTime, NaiveDate, Utc};

/// `text` as an RFC 3339 time or a UTC date (its midnight); `None` if it is neither.
pub fn parse_instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .ok()
        .or_else(|| midnight(NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?))
}

/// The start of `date` in UTC.
pub fn midnight(date: NaiveDate) -> Option<DateTime<Utc>> {
    Some(date.and_hms_opt(0, 0, 0)?.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates_are_read_and_nothing_else() {
        let date = parse_instant("2026-11-01").map(|t| t.to_rfc3339());
        assert_eq!(date.as_deref(), Some("2026-11-01T00:00:00+00:00"));
        let time = parse_instant("2026-11-01T12:30:00+02:00").map(|t| t.to_rfc3339());
        assert_eq!(time.as_deref(), Some("2026-11-01T10:30:00+00:00"));
        assert_eq!(parse_instant("1st of May"), None);
    }
}
