//! Labels of a token, as the managed model-serving service defines them: the formats of keys
//! and values, the merge of a label patch (`null` removes a key, `{}` removes all) and the
//! `label_selector` filter of a listing.
//!
//! A selector is a comma-separated list of requirements, all of which must hold: the
//! `key=value,…` form of STACKIT's other list APIs (e.g. `env=prod,team=ml`) with the rest of
//! Kubernetes' equality-based operators. `key=value` (or `key==value`), `key!=value` (the key
//! is absent or has another value), `key` (present) and `!key` (absent). Whitespace around keys
//! and values is ignored; an empty selector selects everything.

use std::collections::BTreeMap;

use crate::error::AuthError;

/// A token's labels, sorted by key.
pub type Labels = BTreeMap<String, String>;

/// A label patch: a `null` value removes that key, an empty patch removes every label.
pub type LabelPatch = BTreeMap<String, Option<String>>;

/// Most labels a token may have.
pub const MAX_LABELS: usize = 64;
/// Longest key or value, in characters.
pub const MAX_LABEL_CHARS: usize = 63;
/// The key prefix the service reserves for itself.
pub const RESERVED_PREFIX: &str = "stackit";

/// The wire name of the query parameter of a listing.
pub const SELECTOR_PARAM: &str = "label_selector";

/// The format of keys, as the client is told.
const KEY_RULE: &str = "1-63 characters of a-z, A-Z, 0-9, '-', '_' and '.', beginning and \
                        ending with a letter or digit";
/// The format of values, as the client is told.
const VALUE_RULE: &str = "empty, or 1-63 characters of a-z, A-Z, 0-9, '-', '_' and '.', \
                          beginning and ending with a letter or digit";

/// Whether `text` is 1–63 characters of `[A-Za-z0-9._-]` that begin and end with a letter or
/// digit: keys always, values when not empty (the two patterns of the service).
fn well_formed(text: &str) -> bool {
    let bytes = text.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    bytes.len() <= MAX_LABEL_CHARS
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn check_key(field: &'static str, key: &str) -> Result<(), AuthError> {
    if !well_formed(key) {
        return Err(AuthError::validation(
            field,
            format!("label key {key:?} must be {KEY_RULE}"),
        ));
    }
    Ok(())
}

fn check_value(field: &'static str, key: &str, value: &str) -> Result<(), AuthError> {
    if !value.is_empty() && !well_formed(value) {
        return Err(AuthError::validation(
            field,
            format!("the value of label {key:?} must be {VALUE_RULE}"),
        ));
    }
    Ok(())
}

/// Checks a key that is to be set (the reserved prefix included).
fn check_new_key(key: &str) -> Result<(), AuthError> {
    check_key("labels", key)?;
    if key.starts_with(RESERVED_PREFIX) {
        return Err(AuthError::validation(
            "labels",
            format!("label key {key:?}: the prefix {RESERVED_PREFIX:?} is reserved"),
        ));
    }
    Ok(())
}

fn check_count(count: usize) -> Result<(), AuthError> {
    if count > MAX_LABELS {
        return Err(AuthError::validation(
            "labels",
            format!("a token has at most {MAX_LABELS} labels"),
        ));
    }
    Ok(())
}

/// Checks the labels of a new token; the error names the rule the first bad one breaks.
pub(crate) fn validate(labels: &Labels) -> Result<(), AuthError> {
    check_count(labels.len())?;
    for (key, value) in labels {
        check_new_key(key)?;
        check_value("labels", key, value)?;
    }
    Ok(())
}

/// Checks the entries of a patch (not the count it leads to; see [`apply`]).
pub(crate) fn validate_patch(patch: &LabelPatch) -> Result<(), AuthError> {
    check_count(patch.len())?;
    for (key, value) in patch {
        check_new_key(key)?;
        if let Some(value) = value {
            check_value("labels", key, value)?;
        }
    }
    Ok(())
}

/// The labels `current` becomes under `patch`: `{}` removes every label, a `null` value removes
/// its key, any other value sets it. Fails when the result has too many labels.
pub(crate) fn apply(current: &Labels, patch: &LabelPatch) -> Result<Labels, AuthError> {
    if patch.is_empty() {
        return Ok(Labels::new());
    }
    let mut labels = current.clone();
    for (key, value) in patch {
        match value {
            Some(value) => labels.insert(key.clone(), value.clone()),
            None => labels.remove(key),
        };
    }
    check_count(labels.len())?;
    Ok(labels)
}

/// One requirement of a [`LabelSelector`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
}

impl Requirement {
    fn parse(text: &str) -> Result<Self, AuthError> {
        let text = text.trim();
        let pair = |key: &str, value: &str| -> Result<(String, String), AuthError> {
            let (key, value) = (key.trim(), value.trim());
            check_key(SELECTOR_PARAM, key)?;
            check_value(SELECTOR_PARAM, key, value)?;
            Ok((key.to_owned(), value.to_owned()))
        };
        if let Some((key, value)) = text.split_once("!=") {
            let (key, value) = pair(key, value)?;
            return Ok(Self::NotEquals(key, value));
        }
        if let Some((key, value)) = text.split_once('=') {
            let value = value.strip_prefix('=').unwrap_or(value);
            let (key, value) = pair(key, value)?;
            return Ok(Self::Equals(key, value));
        }
        let (key, absent) = match text.strip_prefix('!') {
            Some(key) => (key.trim(), true),
            None => (text, false),
        };
        if !well_formed(key) {
            return Err(AuthError::validation(
                SELECTOR_PARAM,
                format!(
                    "{text:?} is no requirement: use key=value, key!=value, key or !key, \
                     separated by commas (keys: {KEY_RULE})"
                ),
            ));
        }
        Ok(if absent {
            Self::Absent(key.to_owned())
        } else {
            Self::Exists(key.to_owned())
        })
    }

    fn matches(&self, labels: &Labels) -> bool {
        match self {
            Self::Equals(key, value) => labels.get(key) == Some(value),
            Self::NotEquals(key, value) => labels.get(key) != Some(value),
            Self::Exists(key) => labels.contains_key(key),
            Self::Absent(key) => !labels.contains_key(key),
        }
    }
}

/// A parsed `label_selector`: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// Parses a selector; the error names `label_selector` and the rule broken.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let requirements = text
            .split(',')
            .map(Requirement::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self { requirements })
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn message(error: AuthError) -> String {
        assert_eq!(error.status(), 400);
        error.to_string()
    }

    #[test]
    fn keys_and_values_follow_the_service_formats() {
        assert!(validate(&labels(&[("env", "prod"), ("a.b-c_d", ""), ("x", "1.0")])).is_ok());
        let long = "k".repeat(63);
        assert!(validate(&labels(&[(long.as_str(), long.as_str())])).is_ok());
        for key in ["", "-env", "env-", "e nv", "ümlaut", &"k".repeat(64)] {
            let text = message(validate(&labels(&[(key, "v")])).unwrap_err());
            assert!(text.starts_with("invalid labels: label key"), "{text}");
            assert!(text.contains("beginning and ending with a letter or digit"));
        }
        for value in ["-v", "v.", "a b", &"v".repeat(64)] {
            let text = message(validate(&labels(&[("k", value)])).unwrap_err());
            assert!(
                text.contains("the value of label \"k\" must be empty, or"),
                "{text}"
            );
        }
        let text = message(validate(&labels(&[("stackit-owner", "me")])).unwrap_err());
        assert!(
            text.contains("the prefix \"stackit\" is reserved"),
            "{text}"
        );
        let many: Labels = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
        assert!(message(validate(&many).unwrap_err()).contains("at most 64 labels"));
    }

    #[test]
    fn a_patch_sets_removes_and_clears() {
        let current = labels(&[("a", "1"), ("b", "2")]);
        let patch: LabelPatch = [
            ("a".to_owned(), None),
            ("c".to_owned(), Some("3".to_owned())),
            ("b".to_owned(), Some("20".to_owned())),
        ]
        .into();
        validate_patch(&patch).unwrap();
        assert_eq!(
            apply(&current, &patch).unwrap(),
            labels(&[("b", "20"), ("c", "3")])
        );
        assert_eq!(apply(&current, &LabelPatch::new()).unwrap(), Labels::new());
        let full: Labels = (0..64).map(|i| (format!("k{i}"), String::new())).collect();
        let one_more: LabelPatch = [("extra".to_owned(), Some(String::new()))].into();
        assert!(message(apply(&full, &one_more).unwrap_err()).contains("at most 64 labels"));
        let bad: LabelPatch = [("stackit".to_owned(), None)].into();
        assert!(validate_patch(&bad).is_err());
    }

    #[test]
    fn selectors_match_as_documented() {
        let prod = labels(&[("env", "prod"), ("team", "ml")]);
        let dev = labels(&[("env", "dev")]);
        let none = Labels::new();
        let cases = [
            ("", [true, true, true]),
            ("env=prod", [true, false, false]),
            ("env==prod", [true, false, false]),
            (" env = prod , team=ml ", [true, false, false]),
            ("env!=prod", [false, true, true]),
            ("env", [true, true, false]),
            ("!env", [false, false, true]),
            ("env,!team", [false, true, false]),
            ("team=", [false, false, false]),
        ];
        for (text, expected) in cases {
            let selector = LabelSelector::parse(text).unwrap();
            let got = [&prod, &dev, &none].map(|l| selector.matches(l));
            assert_eq!(got, expected, "{text:?}");
        }
    }

    #[test]
    fn bad_selectors_name_the_parameter_and_the_rule() {
        for text in ["env in (a,b)", "=prod", "env=prod,", "-x", "env=a b", "!"] {
            let error = LabelSelector::parse(text).unwrap_err();
            assert_eq!(error.field(), Some(SELECTOR_PARAM), "{text:?}");
            assert!(message(error).starts_with("invalid label_selector: "));
        }
        let text = message(LabelSelector::parse("env in (a)").unwrap_err());
        assert!(
            text.contains("use key=value, key!=value, key or !key"),
            "{text}"
        );
    }
}
