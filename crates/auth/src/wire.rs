//! The JSON objects of the token management API (camelCase, as the STACKIT model-serving API
//! defines them) and the validation of request bodies, with errors naming the offending field
//! and the rule it breaks.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::duration::TtlDuration;
use crate::error::AuthError;
use crate::key::{CredentialKind, Secret};
use crate::labels::{self, LabelPatch, Labels};
use crate::model::{KeyRecord, ManagementTokenRecord};

/// Longest accepted token name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most entries in `allowedModels`.
pub const MAX_ALLOWED_MODELS: usize = 100;
/// The format of a name (the service's pattern; `\s` is ASCII whitespace as in RE2: space,
/// tab, line feed, form feed, carriage return).
pub const NAME_PATTERN: &str = r"^[0-9a-zA-Z\s_-]+$";
/// The format of a description (the service's pattern).
pub const DESCRIPTION_PATTERN: &str = r"^[0-9a-zA-Z\s.:/-]+$";
/// `validUntil` of a token that never expires: the zero time of Go, which the managed service
/// answers there (its SDKs require the field; its Terraform provider reads this value as "no
/// expiry").
pub const NEVER_EXPIRES: &str = "0001-01-01T00:00:00Z";
/// [`NEVER_EXPIRES`] as seconds since the Unix epoch.
const NEVER_EXPIRES_SECS: i64 = -62_135_596_800;

/// Lifecycle state of a token. Creation and deletion are synchronous here, so stored tokens
/// are `active` or (once expired) `inactive`; the other two exist for wire compatibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TokenState {
    /// Being created.
    Creating,
    /// Usable.
    Active,
    /// Being deleted.
    Deleting,
    /// Expired; no longer usable.
    Inactive,
}

/// The token object of the management API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Token id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Description, omitted when there is none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Region the token was created in.
    pub region: String,
    /// Lifecycle state.
    pub state: TokenState,
    /// Expiry (RFC 3339); a token that never expires (`None`) is written as
    /// `0001-01-01T00:00:00Z`, [`NEVER_EXPIRES`].
    #[serde(default, with = "valid_until")]
    #[schema(
        value_type = String,
        format = DateTime,
        example = "0001-01-01T00:00:00Z"
    )]
    pub valid_until: Option<DateTime<Utc>>,
    /// Labels, omitted when there are none.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    #[schema(value_type = BTreeMap<String, String>)]
    pub labels: Labels,
    /// The key with its secret hidden, e.g. `sk-AbC123xyZ789-****`.
    pub masked_content: String,
    /// Models the token may use, omitted when it may use all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
}

impl Token {
    /// The wire object of `key` as seen at `now`.
    pub fn from_record(key: &KeyRecord, now: DateTime<Utc>) -> Self {
        Self {
            id: key.id,
            name: key.name.clone(),
            description: key.description.clone(),
            region: key.region.clone(),
            state: if key.is_expired(now) {
                TokenState::Inactive
            } else {
                TokenState::Active
            },
            valid_until: key.expires_at,
            labels: key.labels.clone(),
            masked_content: CredentialKind::ApiKey.mask(&key.public_id),
            allowed_models: key.allowed_models.clone(),
        }
    }
}

/// `validUntil` on the wire: always present, [`NEVER_EXPIRES`] for `None`.
mod valid_until {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        value: &Option<DateTime<Utc>>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(time) => time.serialize(serializer),
            None => serializer.serialize_str(NEVER_EXPIRES),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<DateTime<Utc>>, D::Error> {
        let time = DateTime::<Utc>::deserialize(deserializer)?;
        let never = time.timestamp() == NEVER_EXPIRES_SECS && time.timestamp_subsec_nanos() == 0;
        Ok((!never).then_some(time))
    }
}

/// A newly created token: the token object plus its secret `content`, shown this once.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// The token object.
    #[serde(flatten)]
    pub token: Token,
    /// The plaintext key, shown only in this answer (`Debug` masks it).
    #[schema(value_type = String)]
    pub content: Secret,
}

/// Body of `POST …/tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreateToken {
    /// Display name (required): 1-200 letters a-z and A-Z, digits, whitespace, `_` and `-`
    /// ([`NAME_PATTERN`]).
    #[serde(default)]
    #[schema(
        required = true,
        min_length = 1,
        max_length = 200,
        pattern = r"^[0-9a-zA-Z\s_-]+$"
    )]
    pub name: String,
    /// Optional description: at most 2000 letters a-z and A-Z, digits, whitespace, `.`, `:`,
    /// `/` and `-` ([`DESCRIPTION_PATTERN`]); empty means none.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[0-9a-zA-Z\s.:/-]+$")]
    pub description: Option<String>,
    /// Optional lifetime such as `30d`, `12h`, `5h30m40s`; none means the token never expires.
    #[serde(default)]
    #[schema(example = "30d")]
    pub ttl_duration: Option<String>,
    /// Optional labels ([`crate::labels`]): at most 64; keys of 1-63 letters, digits, `-`, `_`
    /// and `.`, beginning and ending with a letter or digit, not beginning with `stackit`;
    /// values empty or of the same form.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub labels: Option<Labels>,
    /// Optional list of model ids the token is restricted to.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// A [`CreateToken`] that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ValidCreateToken {
    pub name: String,
    pub description: Option<String>,
    pub ttl: Option<TtlDuration>,
    pub labels: Labels,
    pub allowed_models: Option<Vec<String>>,
}

impl CreateToken {
    /// Checks every field; the error names the first offending one.
    pub(crate) fn validate(self) -> Result<ValidCreateToken, AuthError> {
        let ttl = match self.ttl_duration.as_deref() {
            None => None,
            Some(text) => Some(
                text.parse::<TtlDuration>()
                    .map_err(|e| AuthError::validation("ttlDuration", e.to_string()))?,
            ),
        };
        let allowed_models = match self.allowed_models {
            None => None,
            Some(models) => {
                if models.is_empty() || models.len() > MAX_ALLOWED_MODELS {
                    return Err(AuthError::validation(
                        "allowedModels",
                        format!("must list 1 to {MAX_ALLOWED_MODELS} model ids"),
                    ));
                }
                if models
                    .iter()
                    .any(|m| m.trim().is_empty() || m.chars().count() > 256)
                {
                    return Err(AuthError::validation(
                        "allowedModels",
                        "model ids must be non-empty and at most 256 characters",
                    ));
                }
                Some(models)
            }
        };
        let labels = self.labels.unwrap_or_default();
        labels::validate(&labels)?;
        Ok(ValidCreateToken {
            name: valid_name(self.name)?,
            description: valid_description(self.description)?,
            ttl,
            labels,
            allowed_models,
        })
    }
}

/// Body of `PATCH …/tokens/{tokenId}`; absent fields stay as they are, an empty description
/// clears it, `labels` is a patch (a `null` value removes its key, `{}` removes every label).
/// Exactly the fields of the service's `PartialUpdateTokenPayload`: any other field (e.g.
/// `allowedModels`, which only a creation sets) is refused, never silently ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateToken {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// Changes to the labels.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, Option<String>>>)]
    pub labels: Option<LabelPatch>,
}

/// An [`UpdateToken`] that passed validation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ValidUpdateToken {
    pub name: Option<String>,
    /// `Some(None)` clears the description.
    pub description: Option<Option<String>>,
    pub labels: Option<LabelPatch>,
}

impl UpdateToken {
    /// Checks the fields that are present.
    pub(crate) fn validate(self) -> Result<ValidUpdateToken, AuthError> {
        let name = self.name.map(valid_name).transpose()?;
        let description = match self.description {
            None => None,
            Some(text) => Some(valid_description(Some(text))?),
        };
        if let Some(patch) = &self.labels {
            labels::validate_patch(patch)?;
        }
        Ok(ValidUpdateToken {
            name,
            description,
            labels: self.labels,
        })
    }
}

/// A newly created management token, shown once.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedManagementToken {
    /// Token id.
    pub id: Uuid,
    /// The principal it authenticates.
    pub subject: String,
    /// Expiry, omitted when it never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
    /// The plaintext token (`Debug` masks it).
    pub content: Secret,
}

/// A management token as `gateway admin management-token list` shows it: never its secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManagementToken {
    /// Token id.
    pub id: Uuid,
    /// The token with its secret hidden, e.g. `gmt-AbC123xyZ789-****`.
    pub masked_content: String,
    /// The principal it authenticates.
    pub subject: String,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// Expiry, omitted when it never expires.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
}

impl From<&ManagementTokenRecord> for ManagementToken {
    fn from(record: &ManagementTokenRecord) -> Self {
        Self {
            id: record.id,
            masked_content: CredentialKind::ManagementToken.mask(&record.public_id),
            subject: record.subject.clone(),
            created_at: record.created_at,
            valid_until: record.expires_at,
        }
    }
}

/// Whitespace as `\s` means it in the service's patterns (RE2: ASCII only, no vertical tab).
fn is_pattern_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0C' | '\r')
}

/// Checks `text` against a pattern of the form `^[0-9a-zA-Z\s<extra>]+$` and a length limit,
/// and keeps it as given (no trimming), so a client reads back exactly what it sent.
fn check_format(
    field: &'static str,
    text: &str,
    max_chars: usize,
    extra: &str,
    pattern: &str,
) -> Result<(), AuthError> {
    if text.chars().count() > max_chars {
        return Err(AuthError::validation(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || is_pattern_space(c) || extra.contains(c);
    if text.is_empty() || !text.chars().all(allowed) {
        return Err(AuthError::validation(
            field,
            format!(
                "must match {pattern}: only letters a-z and A-Z, digits, whitespace and the \
                 characters {extra}"
            ),
        ));
    }
    Ok(())
}

fn valid_name(name: String) -> Result<String, AuthError> {
    if name.chars().all(is_pattern_space) {
        return Err(AuthError::validation(
            "name",
            format!("must be 1-{MAX_NAME_CHARS} characters, not only whitespace"),
        ));
    }
    check_format("name", &name, MAX_NAME_CHARS, "_-", NAME_PATTERN)?;
    Ok(name)
}

fn valid_description(description: Option<String>) -> Result<Option<String>, AuthError> {
    match description {
        Some(text) if text.is_empty() => Ok(None),
        Some(text) => {
            check_format(
                "description",
                &text,
                MAX_DESCRIPTION_CHARS,
                ".:/-",
                DESCRIPTION_PATTERN,
            )?;
            Ok(Some(text))
        }
        None => Ok(None),
    }
}

/// Checks a region id from the path: 1–32 characters of `a-z`, `0-9`, `-`.
pub(crate) fn valid_region(region: &str) -> Result<(), AuthError> {
    let ok = !region.is_empty()
        && region.len() <= 32
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AuthError::validation(
            "regionId",
            "must be 1-32 characters of a-z, 0-9 and -",
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn an_update_refuses_fields_the_service_does_not_define() {
        for field in ["allowedModels", "ttlDuration", "validUntil"] {
            let body = format!(r#"{{"name":"n","{field}":null}}"#);
            let error = serde_json::from_str::<UpdateToken>(&body).unwrap_err();
            assert!(error.to_string().contains(field), "{error}");
        }
        let known = r#"{"name":"n","description":"d","labels":{"a":null}}"#;
        assert!(serde_json::from_str::<UpdateToken>(known).is_ok());
    }

    #[test]
    fn create_token_errors_name_the_field() {
        let field = |body: &str| {
            let req: CreateToken = serde_json::from_str(body).unwrap();
            req.validate().err().and_then(|e| e.field())
        };
        assert_eq!(field(r#"{}"#), Some("name"));
        assert_eq!(field(r#"{"name":"  "}"#), Some("name"));
        assert_eq!(
            field(&format!(r#"{{"name":"{}"}}"#, "x".repeat(201))),
            Some("name")
        );
        assert_eq!(
            field(r#"{"name":"a","ttlDuration":"3x"}"#),
            Some("ttlDuration")
        );
        assert_eq!(
            field(r#"{"name":"a","allowedModels":[]}"#),
            Some("allowedModels")
        );
        let long = "d".repeat(2001);
        assert_eq!(
            field(&format!(r#"{{"name":"a","description":"{long}"}}"#)),
            Some("description")
        );
        assert_eq!(
            field(r#"{"name":"a","ttlDuration":"30d","description":"x"}"#),
            None
        );
    }

    #[test]
    fn names_and_descriptions_follow_the_service_patterns() {
        let message = |body: &str| {
            let req: CreateToken = serde_json::from_str(body).unwrap();
            req.validate().err().map(|e| e.to_string())
        };
        let ok = r#"{"name":"ci runner_2-a","description":"CI: https://ci.example.com/x - v1.2"}"#;
        assert_eq!(message(ok), None);
        assert_eq!(message(r#"{"name":" tab\tand\nline "}"#), None);
        for name in ["ci.runner", "ümlaut", "a/b", "x\u{b}"] {
            let body = serde_json::json!({ "name": name }).to_string();
            assert_eq!(
                message(&body).as_deref(),
                Some(concat!(
                    r"invalid name: must match ^[0-9a-zA-Z\s_-]+$: ",
                    "only letters a-z and A-Z, digits, whitespace and the characters _-"
                )),
                "{name:?}"
            );
        }
        assert_eq!(
            message(r#"{"name":"a","description":"50% off!"}"#).as_deref(),
            Some(concat!(
                r"invalid description: must match ^[0-9a-zA-Z\s.:/-]+$: ",
                "only letters a-z and A-Z, digits, whitespace and the characters .:/-"
            ))
        );
        assert_eq!(
            message(r#"{"name":" "}"#).as_deref(),
            Some("invalid name: must be 1-200 characters, not only whitespace")
        );
        let long = serde_json::json!({ "name": "x".repeat(201) }).to_string();
        assert_eq!(
            message(&long).as_deref(),
            Some("invalid name: must be at most 200 characters")
        );
        let labelled = r#"{"name":"a","labels":{"env":"prod","bad key":"x"}}"#;
        assert!(message(labelled)
            .unwrap()
            .starts_with(r#"invalid labels: label key "bad key" must be"#));
    }

    #[test]
    fn valid_names_and_descriptions_are_kept_as_given() {
        let req = CreateToken {
            name: " padded ".to_owned(),
            description: Some(" text ".to_owned()),
            ..CreateToken::default()
        };
        let valid = req.validate().unwrap();
        assert_eq!(valid.name, " padded ");
        assert_eq!(valid.description.as_deref(), Some(" text "));
        let cleared = UpdateToken {
            description: Some(String::new()),
            ..UpdateToken::default()
        };
        assert_eq!(cleared.validate().unwrap().description, Some(None));
    }

    #[test]
    fn a_token_that_never_expires_has_the_zero_time() {
        let token = Token {
            id: Uuid::nil(),
            name: "n".to_owned(),
            description: None,
            region: "eu01".to_owned(),
            state: TokenState::Active,
            valid_until: None,
            labels: Labels::new(),
            masked_content: "sk-x-****".to_owned(),
            allowed_models: None,
        };
        let json = serde_json::to_value(&token).unwrap();
        assert_eq!(json["validUntil"], NEVER_EXPIRES);
        assert!(json.get("labels").is_none());
        assert_eq!(serde_json::from_value::<Token>(json).unwrap(), token);
        let expiring = Token {
            valid_until: Some("2026-05-20T10:00:00.250Z".parse().unwrap()),
            labels: [("env".to_owned(), "prod".to_owned())].into(),
            ..token
        };
        let json = serde_json::to_value(&expiring).unwrap();
        assert_eq!(json["validUntil"], "2026-05-20T10:00:00.250Z");
        assert_eq!(json["labels"], serde_json::json!({"env": "prod"}));
        assert_eq!(serde_json::from_value::<Token>(json).unwrap(), expiring);
        assert_eq!(
            DateTime::<Utc>::from_timestamp(NEVER_EXPIRES_SECS, 0)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            NEVER_EXPIRES
        );
    }

    #[test]
    fn regions_are_checked() {
        assert!(valid_region("eu01").is_ok());
        assert_eq!(
            valid_region("EU 1").err().and_then(|e| e.field()),
            Some("regionId")
        );
        assert!(valid_region("").is_err());
    }
}
