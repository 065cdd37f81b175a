//! The error type of every operation of this crate, and the store's own error.
//!
//! Each [`AuthError`] variant maps to one HTTP status ([`AuthError::status`]) and carries a
//! message that is safe to show to a client ([`AuthError::client_message`]); store details are
//! only reachable through `source()`, for the log.

use std::borrow::Cow;

/// Why an authentication, authorization, validation or store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A model API key that is missing, malformed, unknown, expired or revoked. Deliberately
    /// one variant, so a client never learns which of these it was. HTTP 401.
    #[error("invalid API key")]
    InvalidKey,
    /// A management credential that is missing, malformed, unknown or expired. HTTP 401.
    #[error("authentication required")]
    Unauthenticated,
    /// The object does not exist, or the principal has no role on its project (so ids of other
    /// projects never leak). HTTP 404.
    #[error("not found")]
    NotFound,
    /// The principal sees the project but its role does not allow the operation. HTTP 403.
    #[error("the principal's role does not allow this operation")]
    Forbidden,
    /// A request field is invalid; `field` is its wire name (e.g. `ttlDuration`). HTTP 400.
    #[error("invalid {field}: {message}")]
    Validation {
        /// Wire name of the offending field.
        field: &'static str,
        /// What is wrong with it, safe to show to the client.
        message: String,
    },
    /// The object already exists. HTTP 409.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The store failed. HTTP 500; the details stay in `source()` and never reach the client.
    #[error("internal store error")]
    Store(#[source] StoreError),
}

impl AuthError {
    /// Shorthand for a [`AuthError::Validation`] error.
    pub fn validation(field: &'static str, message: impl Into<String>) -> Self {
        Self::Validation {
            field,
            message: message.into(),
        }
    }

    /// The HTTP status code this error maps to.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidKey | Self::Unauthenticated => 401,
            Self::NotFound => 404,
            Self::Forbidden => 403,
            Self::Validation { .. } => 400,
            Self::Conflict(_) => 409,
            Self::Store(_) => 500,
        }
    }

    /// A message that may be shown to the client (never store details).
    pub fn client_message(&self) -> Cow<'static, str> {
        match self {
            Self::Store(_) => Cow::Borrowed("internal error"),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// The wire name of the offending field, for validation errors.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Validation { field, .. } => Some(field),
            _ => None,
        }
    }
}

impl From<StoreError> for AuthError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => Self::Store(other),
        }
    }
}

/// Why a [`crate::Store`] operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// Applying the migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint was violated.
    #[error("{0} already exists")]
    Conflict(String),
    /// A row holds a value this version cannot read.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// The store URL has a scheme no store handles.
    #[error("unsupported store URL scheme (expected sqlite: or postgres:)")]
    UnsupportedUrl,
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err.as_database_error() {
            Some(db) if db.is_unique_violation() => {
                Self::Conflict(db.table().unwrap_or("row").to_owned())
            }
            _ => Self::Database(err),
        }
    }
}
