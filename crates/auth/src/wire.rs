//! The JSON objects of the token management API (camelCase, shaped like the STACKIT
//! model-serving product API) and the validation of request bodies, with errors naming the
//! offending field.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::duration::TtlDuration;
use crate::error::AuthError;
use crate::key::{CredentialKind, Secret};
use crate::model::KeyRecord;

/// Longest accepted token name, in characters.
pub const MAX_NAME_CHARS: usize = 200;
/// Longest accepted description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Most entries in `allowedModels`.
pub const MAX_ALLOWED_MODELS: usize = 100;

/// Lifecycle state of a token. Creation and deletion are synchronous here, so stored tokens
/// are `active` or (once expired) `inactive`; the other two exist for wire compatibility.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Expiry (RFC 3339), omitted for tokens that never expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<DateTime<Utc>>,
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
            masked_content: CredentialKind::ApiKey.mask(&key.public_id),
            allowed_models: key.allowed_models.clone(),
        }
    }
}

/// A newly created token: the token object plus its secret `content`, shown this once.
#[derive(Clone, Debug, Serialize)]
pub struct CreatedToken {
    /// The token object.
    #[serde(flatten)]
    pub token: Token,
    /// The plaintext key (`Debug` masks it).
    pub content: Secret,
}

/// Body of `POST …/tokens`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateToken {
    /// Display name (required, 1–200 characters).
    #[serde(default)]
    pub name: String,
    /// Optional description (≤ 2000 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Optional lifetime such as `30d`, `12h`, `90m`; none means the token never expires.
    #[serde(default)]
    pub ttl_duration: Option<String>,
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
        Ok(ValidCreateToken {
            name: valid_name(&self.name)?,
            description: valid_description(self.description)?,
            ttl,
            allowed_models,
        })
    }
}

/// Body of `PATCH …/tokens/{tokenId}`; absent fields stay as they are, an empty description
/// clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateToken {
    /// New display name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
}

impl UpdateToken {
    /// Checks the fields that are present.
    pub(crate) fn validate(self) -> Result<(Option<String>, Option<Option<String>>), AuthError> {
        let name = self.name.as_deref().map(valid_name).transpose()?;
        let description = match self.description {
            None => None,
            Some(text) => Some(valid_description(Some(text))?),
        };
        Ok((name, description))
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

fn valid_name(name: &str) -> Result<String, AuthError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AuthError::validation("name", "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AuthError::validation(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(AuthError::validation(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

fn valid_description(description: Option<String>) -> Result<Option<String>, AuthError> {
    match description {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_CHARS => Err(AuthError::validation(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        )),
        Some(text) if text.trim().is_empty() => Ok(None),
        other => Ok(other),
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
    fn regions_are_checked() {
        assert!(valid_region("eu01").is_ok());
        assert_eq!(
            valid_region("EU 1").err().and_then(|e| e.field()),
            Some("regionId")
        );
        assert!(valid_region("").is_err());
    }
}
