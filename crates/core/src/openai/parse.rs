//! Parsing request bodies into wire types with errors that say where the body is wrong: the
//! JSON path of a bad field becomes the OpenAI error's `param`. A message names the field and
//! the rule it breaks, never the value the client sent (`reason.rs`). A field the wire type
//! does not know is refused as OpenAI's API refuses it, or ignored ([`UnknownFields`]).

use serde::de::{DeserializeOwned, IgnoredAny};
use serde_path_to_error::Segment;

use super::error::ErrorBody;
use super::reason::describe;

/// Why a body did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The body is not JSON (or has trailing characters).
    #[error("{message}")]
    Syntax {
        /// What is wrong, with the line and column.
        message: String,
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column of the problem.
        column: usize,
    },
    /// The body is JSON but does not fit the schema.
    #[error("{message}")]
    Invalid {
        /// The JSON path of the field at fault (`messages[0].content`), if any.
        param: Option<String>,
        /// What is wrong.
        message: String,
    },
}

impl WireError {
    /// The JSON path of the field at fault, for the error's `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Self::Syntax { .. } => None,
            Self::Invalid { param, .. } => param.as_deref(),
        }
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        match self {
            Self::Syntax { message, .. } | Self::Invalid { message, .. } => message,
        }
    }

    /// The `invalid_request_error` body (HTTP 400) for this error.
    pub fn to_error_body(&self) -> ErrorBody {
        let body = ErrorBody::invalid_request(self.message());
        match self.param() {
            Some(param) => body.with_param(param),
            None => body,
        }
    }
}

impl From<WireError> for ErrorBody {
    fn from(error: WireError) -> Self {
        error.to_error_body()
    }
}

/// What a parser does with a field the wire type does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnknownFields {
    /// A 400 naming the first such field (`Unrecognized request argument supplied: …`), as
    /// OpenAI's API answers.
    #[default]
    Refuse,
    /// Ignored, for legacy clients that send fields of other servers' APIs.
    Ignore,
}

/// Longest unknown field path named in an error; a longer one (or one of other characters
/// than a field name's) is refused without its name.
const MAX_NAMED_FIELD_LEN: usize = 64;

/// Parses a JSON request body (an object), reporting the path of a field of the wrong type,
/// the name of a missing required field, or the line and column of a syntax error. Fields the
/// type does not know are ignored.
pub fn from_json_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, WireError> {
    from_json_slice_with(bytes, UnknownFields::Ignore)
}

/// [`from_json_slice`], with fields the type does not know handled as `unknown` says.
pub fn from_json_slice_with<T: DeserializeOwned>(
    bytes: &[u8],
    unknown: UnknownFields,
) -> Result<T, WireError> {
    let mut first_unknown = None;
    let value = parse_tracking(bytes, |path| {
        first_unknown.get_or_insert_with(|| field_path(&path));
    })?;
    match first_unknown {
        Some(path) if unknown == UnknownFields::Refuse => Err(unrecognized(path)),
        _ => Ok(value),
    }
}

/// The error of an unknown field at `path`.
fn unrecognized(path: String) -> WireError {
    let plain = path.len() <= MAX_NAMED_FIELD_LEN
        && path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']'));
    if !plain {
        return WireError::Invalid {
            param: None,
            message: "Unrecognized request argument supplied.".to_owned(),
        };
    }
    WireError::Invalid {
        message: format!("Unrecognized request argument supplied: {path}"),
        param: Some(path),
    }
}

/// The path of an ignored field as `messages[0].name`.
fn field_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => {
            let parent = field_path(parent);
            if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            }
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Parses `bytes`, telling `on_unknown` the path of every field the type does not know.
fn parse_tracking<T: DeserializeOwned>(
    bytes: &[u8],
    mut on_unknown: impl FnMut(serde_ignored::Path<'_>),
) -> Result<T, WireError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let tracking = serde_ignored::Deserializer::new(&mut deserializer, &mut on_unknown);
    let value = serde_path_to_error::deserialize(tracking).map_err(|error| {
        let param = format_path(error.path());
        let error = error.into_inner();
        if error.is_data() && root_is_array(bytes) {
            // Derived structs also accept arrays; say what was meant instead of naming `[0]`.
            return WireError::Invalid {
                param: None,
                message: "Invalid request body: expected a JSON object, not an array.".to_owned(),
            };
        }
        if let Some(wrong) = enum_of_wrong_type(bytes, &error, param.as_deref()) {
            return wrong;
        }
        from_serde_error(error, param)
    })?;
    deserializer
        .end()
        .map_err(|error| from_serde_error(error, None))?;
    Ok(value)
}

fn from_serde_error(error: serde_json::Error, param: Option<String>) -> WireError {
    let (line, column) = (error.line(), error.column());
    if !error.is_data() {
        return WireError::Syntax {
            message: format!("We could not parse the JSON body of your request: {error}"),
            line,
            column,
        };
    }
    let text = error.to_string();
    let suffix = format!(" at line {line} column {column}");
    let reason = text.strip_suffix(&suffix).unwrap_or(&text);
    if let Some(field) = missing_field(reason) {
        let param = match param {
            Some(path) => format!("{path}.{field}"),
            None => field.to_owned(),
        };
        return WireError::Invalid {
            message: format!("Missing required parameter: '{param}'."),
            param: Some(param),
        };
    }
    let reason = describe(reason);
    match param {
        Some(path) => WireError::Invalid {
            message: format!("Invalid value for '{path}': {reason}."),
            param: Some(path),
        },
        None => WireError::Invalid {
            message: format!("Invalid request body: {reason}."),
            param: None,
        },
    }
}

/// serde_json reports a value of the wrong JSON type where an enum's string is expected
/// (`"role": 1`, `"role": null`, `"encoding_format": 5`) as the syntax error "expected value"
/// at that value. In a body that is valid JSON it is the field's error: say so, naming the
/// field.
fn enum_of_wrong_type(
    bytes: &[u8],
    error: &serde_json::Error,
    param: Option<&str>,
) -> Option<WireError> {
    let path = param?;
    if !error.is_syntax()
        || !error.to_string().starts_with("expected value at ")
        || serde_json::from_slice::<IgnoredAny>(bytes).is_err()
    {
        return None;
    }
    let found = bytes
        .split(|&byte| byte == b'\n')
        .nth(error.line().checked_sub(1)?)
        .and_then(|line| line.get(error.column().checked_sub(1)?))
        .map_or("a value of another type", |&byte| json_kind_at(byte));
    Some(WireError::Invalid {
        message: format!("Invalid value for '{path}': expected a string, got {found}."),
        param: Some(path.to_owned()),
    })
}

/// The JSON type of the value that starts with `byte`.
fn json_kind_at(byte: u8) -> &'static str {
    match byte {
        b'-' | b'0'..=b'9' => "a number",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'[' => "an array",
        b'{' => "an object",
        b'"' => "a string",
        _ => "a value of another type",
    }
}

/// Whether the document's first non-blank character opens an array.
fn root_is_array(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .find(|byte| !byte.is_ascii_whitespace())
        .is_some_and(|byte| *byte == b'[')
}

/// The field name of serde's "missing field `name`" message.
fn missing_field(reason: &str) -> Option<&str> {
    reason.strip_prefix("missing field `")?.strip_suffix('`')
}

/// Writes a path as `messages[0].content`; `None` for the document root.
fn format_path(path: &serde_path_to_error::Path) -> Option<String> {
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
