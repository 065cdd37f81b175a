//! What a serde error says about a bad field, without the value the client sent.
//!
//! serde's messages quote the value at fault (`invalid type: string "…", expected f32`,
//! ``unknown variant `…`, expected one of …``), and a request's values are prompts, inputs and
//! other content that must never reach an error message or a log line. [`describe`] keeps what
//! the schema expected and says only which JSON type arrived. Messages of our own
//! deserializers (`de::Error::custom`) name the rule, never a value, and pass as they are.

use std::borrow::Cow;

/// Separates what serde found from what it expected; our `expecting` texts never contain it,
/// so its last occurrence is serde's own even when the client's value contains it too.
const EXPECTED: &str = ", expected ";

/// The reason of a data error (serde's message without the position), with the client's value
/// taken out.
pub(super) fn describe(reason: &str) -> Cow<'_, str> {
    if let Some(rest) = reason.strip_prefix("invalid type: ") {
        return match split_expected(rest) {
            Some((found, expected)) => Cow::Owned(format!(
                "expected {}, got {}",
                plain_expectation(expected),
                json_kind(found)
            )),
            None => Cow::Borrowed("invalid type"),
        };
    }
    if let Some(rest) = reason.strip_prefix("invalid value: ") {
        return Cow::Owned(match split_expected(rest) {
            Some((_, expected)) => format!("expected {}", plain_expectation(expected)),
            None => "invalid value".to_owned(),
        });
    }
    for prefix in ["unknown variant ", "unknown field "] {
        if let Some(rest) = reason.strip_prefix(prefix) {
            return match split_expected(rest) {
                Some((_, expected)) => Cow::Owned(format!("expected {expected}")),
                None => Cow::Borrowed(prefix.trim_end()),
            };
        }
    }
    Cow::Borrowed(reason)
}

/// `(found, expected)` of serde's `<found>, expected <expected>`.
fn split_expected(text: &str) -> Option<(&str, &str)> {
    let at = text.rfind(EXPECTED)?;
    Some((&text[..at], &text[at + EXPECTED.len()..]))
}

/// The JSON type of what serde found (its `Unexpected`), never the value itself.
fn json_kind(found: &str) -> &'static str {
    const KINDS: [(&str, &str); 8] = [
        ("string", "a string"),
        ("character", "a string"),
        ("integer", "an integer"),
        ("floating point", "a number"),
        ("boolean", "a boolean"),
        ("null", "null"),
        ("sequence", "an array"),
        ("map", "an object"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| found.starts_with(prefix))
        .map_or("a value of another type", |(_, kind)| kind)
}

/// serde's name of an expected type in the words of a JSON request (`u32` → an integer from 0
/// to 4294967295, `a sequence` → an array); our own `expecting` texts as they are.
fn plain_expectation(expected: &str) -> Cow<'_, str> {
    let range = |max: u64| Cow::Owned(format!("an integer from 0 to {max}"));
    match expected {
        "u8" => range(u8::MAX.into()),
        "u16" => range(u16::MAX.into()),
        "u32" => range(u32::MAX.into()),
        "u64" => range(u64::MAX),
        "i8" | "i16" | "i32" | "i64" => Cow::Borrowed("an integer"),
        "f32" | "f64" => Cow::Borrowed("a number"),
        "a sequence" => Cow::Borrowed("an array"),
        "a map" => Cow::Borrowed("an object"),
        _ if expected.starts_with("struct ") => Cow::Borrowed("an object"),
        _ => Cow::Borrowed(expected),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_taken_out() {
        let cases = [
            (
                r#"invalid type: string "secret, expected x", expected f32"#,
                "expected a number, got a string",
            ),
            (
                "invalid type: map, expected a string or an array of content parts",
                "expected a string or an array of content parts, got an object",
            ),
            (
                "invalid value: integer `-7`, expected u32",
                "expected an integer from 0 to 4294967295",
            ),
            (
                "unknown variant `secret`, expected `float` or `base64`",
                "expected `float` or `base64`",
            ),
            (
                "invalid type: null, expected i64",
                "expected an integer, got null",
            ),
            (
                "invalid type: floating point `1.5`, expected struct StreamOptions",
                "expected an object, got a number",
            ),
            (
                "invalid type: byte array, expected a sequence",
                "expected an array, got a value of another type",
            ),
        ];
        for (reason, described) in cases {
            assert_eq!(describe(reason), described, "{reason}");
        }
    }

    #[test]
    fn rules_and_lengths_pass() {
        for reason in [
            "invalid length 3, expected 2 elements",
            "array items must all be strings, all token ids or all arrays of token ids",
            "duplicate field `model`",
        ] {
            assert_eq!(describe(reason), reason);
        }
    }
}
