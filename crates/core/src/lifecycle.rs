//! The life of a served model: [`Deprecation`] (announced on a date, retired on a later one,
//! optionally with a successor) and the [`LifecycleState`] it gives at a time, with the rule
//! every announcement must keep: retirement at least six months after the announcement, or
//! three months when a direct successor is named.

use chrono::{DateTime, Months, Utc};
use serde::{Deserialize, Serialize};

/// Least notice of a retirement without a successor.
pub const NOTICE_MONTHS: u32 = 6;
/// Least notice of a retirement with a direct successor.
pub const NOTICE_MONTHS_WITH_SUCCESSOR: u32 = 3;

/// Where a model stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LifecycleState {
    /// Served without notice.
    Active,
    /// Served, with its retirement announced.
    Deprecated,
    /// No longer served: requests go to the successor, or get 410.
    Retired,
}

/// A model's announced retirement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deprecation {
    /// When the retirement was announced; the model is deprecated from then on.
    pub announced: DateTime<Utc>,
    /// When the model retires.
    pub retires: DateTime<Utc>,
    /// The model that takes its requests after retirement, if any.
    pub successor: Option<String>,
}

/// An announcement that gives too little notice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {model}: retirement on {retires} is less than {months} months after its announcement \
     on {announced} ({rule})"
)]
pub struct NoticeTooShort {
    /// The model.
    pub model: String,
    /// Its announcement.
    pub announced: DateTime<Utc>,
    /// Its retirement.
    pub retires: DateTime<Utc>,
    /// The notice required.
    pub months: u32,
    /// Which rule applies.
    pub rule: &'static str,
}

impl Deprecation {
    /// The least notice this announcement needs, in months, and the rule's wording.
    pub fn required_notice(&self) -> (u32, &'static str) {
        if self.successor.is_some() {
            (
                NOTICE_MONTHS_WITH_SUCCESSOR,
                "3 months when a direct successor is named",
            )
        } else {
            (NOTICE_MONTHS, "6 months without a successor")
        }
    }

    /// Checks that `model`'s retirement comes late enough after its announcement.
    pub fn check_notice(&self, model: &str) -> Result<(), NoticeTooShort> {
        let (months, rule) = self.required_notice();
        let earliest = self.announced.checked_add_months(Months::new(months));
        if earliest.is_some_and(|earliest| self.retires >= earliest) {
            return Ok(());
        }
        Err(NoticeTooShort {
            model: model.to_owned(),
            announced: self.announced,
            retires: self.retires,
            months,
            rule,
        })
    }

    /// The state this announcement gives the model at `now`.
    pub fn state_at(&self, now: DateTime<Utc>) -> LifecycleState {
        if now >= self.retires {
            LifecycleState::Retired
        } else if now >= self.announced {
            LifecycleState::Deprecated
        } else {
            LifecycleState::Active
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn deprecation(announced: &str, retires: &str, successor: Option<&str>) -> Deprecation {
        Deprecation {
            announced: announced.parse().unwrap(),
            retires: retires.parse().unwrap(),
            successor: successor.map(str::to_owned),
        }
    }

    #[test]
    fn six_months_without_a_successor_three_with_one() {
        let day = "2026-01-15T00:00:00Z";
        assert!(deprecation(day, "2026-07-15T00:00:00Z", None)
            .check_notice("m")
            .is_ok());
        let short = deprecation(day, "2026-07-14T23:59:59Z", None)
            .check_notice("m")
            .unwrap_err();
        assert_eq!(short.months, 6);
        assert!(short.to_string().contains("model m"), "{short}");
        assert!(deprecation(day, "2026-04-15T00:00:00Z", Some("n"))
            .check_notice("m")
            .is_ok());
        let short = deprecation(day, "2026-04-14T00:00:00Z", Some("n"))
            .check_notice("m")
            .unwrap_err();
        assert_eq!(short.months, 3);
    }

    #[test]
    fn the_state_follows_the_clock() {
        let notice = deprecation("2026-01-01T00:00:00Z", "2026-07-01T00:00:00Z", None);
        let at = |time: &str| notice.state_at(time.parse().unwrap());
        assert_eq!(at("2025-12-31T23:59:59Z"), LifecycleState::Active);
        assert_eq!(at("2026-01-01T00:00:00Z"), LifecycleState::Deprecated);
        assert_eq!(at("2026-06-30T23:59:59Z"), LifecycleState::Deprecated);
        assert_eq!(at("2026-07-01T00:00:00Z"), LifecycleState::Retired);
    }
}
