//! Parsing of TTL durations such as `30d`, `12h`, `90m` or `45s` (also combined: `1d12h`).

use std::fmt;
use std::str::FromStr;

/// The longest TTL accepted: ten years.
pub const MAX_TTL_SECONDS: i64 = 3650 * 86_400;

/// A positive duration written as `<number><unit>` groups, units `d`, `h`, `m`, `s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TtlDuration {
    seconds: i64,
}

/// Why a TTL duration string was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// The string is empty.
    #[error("duration is empty")]
    Empty,
    /// A number is not followed by a unit.
    #[error("a number must be followed by a unit (d, h, m or s), e.g. 30d")]
    MissingUnit,
    /// A unit is not preceded by a number.
    #[error("a unit must be preceded by a number, e.g. 30d")]
    MissingNumber,
    /// An unknown unit character.
    #[error("unknown unit {0:?}; use d, h, m or s")]
    UnknownUnit(char),
    /// The total is zero.
    #[error("duration must be positive")]
    Zero,
    /// The total exceeds [`MAX_TTL_SECONDS`].
    #[error("duration must not exceed 3650d")]
    TooLong,
}

impl TtlDuration {
    /// A duration of `seconds` seconds (1 ..= [`MAX_TTL_SECONDS`]).
    pub fn from_seconds(seconds: i64) -> Result<Self, DurationError> {
        if seconds <= 0 {
            Err(DurationError::Zero)
        } else if seconds > MAX_TTL_SECONDS {
            Err(DurationError::TooLong)
        } else {
            Ok(Self { seconds })
        }
    }

    /// Length in whole seconds.
    pub fn as_seconds(&self) -> i64 {
        self.seconds
    }

    /// The duration as a `chrono::TimeDelta`.
    pub fn as_time_delta(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.seconds)
    }
}

impl FromStr for TtlDuration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() {
            return Err(DurationError::Empty);
        }
        let mut total: i64 = 0;
        let mut number: Option<i64> = None;
        for c in s.chars() {
            if let Some(digit) = c.to_digit(10) {
                let n = number.unwrap_or(0);
                number = Some(
                    n.checked_mul(10)
                        .and_then(|n| n.checked_add(i64::from(digit)))
                        .ok_or(DurationError::TooLong)?,
                );
                continue;
            }
            let unit = match c {
                'd' => 86_400,
                'h' => 3_600,
                'm' => 60,
                's' => 1,
                other => return Err(DurationError::UnknownUnit(other)),
            };
            let n = number.take().ok_or(DurationError::MissingNumber)?;
            total = n
                .checked_mul(unit)
                .and_then(|part| total.checked_add(part))
                .ok_or(DurationError::TooLong)?;
            if total > MAX_TTL_SECONDS {
                return Err(DurationError::TooLong);
            }
        }
        if number.is_some() {
            return Err(DurationError::MissingUnit);
        }
        Self::from_seconds(total)
    }
}

impl fmt::Display for TtlDuration {
    /// Canonical form: the largest units first, zero groups left out (`1d12h`, `90s` → `1m30s`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.seconds;
        for (unit, len) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
            if rest >= len {
                write!(f, "{}{unit}", rest / len)?;
                rest %= len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_single_and_combined_units() {
        let p = |s: &str| s.parse::<TtlDuration>().map(|d| d.as_seconds());
        assert_eq!(p("30d"), Ok(30 * 86_400));
        assert_eq!(p("12h"), Ok(12 * 3_600));
        assert_eq!(p("90m"), Ok(5_400));
        assert_eq!(p("45s"), Ok(45));
        assert_eq!(p("1d12h"), Ok(129_600));
        assert_eq!(p(" 2h "), Ok(7_200));
    }

    #[test]
    fn rejects_bad_input_with_typed_errors() {
        let p = |s: &str| s.parse::<TtlDuration>();
        assert_eq!(p(""), Err(DurationError::Empty));
        assert_eq!(p("30"), Err(DurationError::MissingUnit));
        assert_eq!(p("d"), Err(DurationError::MissingNumber));
        assert_eq!(p("3w"), Err(DurationError::UnknownUnit('w')));
        assert_eq!(p("-3d"), Err(DurationError::UnknownUnit('-')));
        assert_eq!(p("0m"), Err(DurationError::Zero));
        assert_eq!(p("3651d"), Err(DurationError::TooLong));
        assert_eq!(p("99999999999999999999d"), Err(DurationError::TooLong));
    }

    #[test]
    fn displays_canonically() {
        assert_eq!("90s".parse::<TtlDuration>().unwrap().to_string(), "1m30s");
        assert_eq!("36h".parse::<TtlDuration>().unwrap().to_string(), "1d12h");
    }
}
