//! Projects, model API keys, the token management operations and the audit log of the
//! gateway, with their stores.
//!
//! - [`KeyVerifier`] resolves a model API key (`sk-<public id>-<secret>`) to its project on the
//!   request path, from an in-memory cache that honours revocation within
//!   [`verifier::DEFAULT_MAX_AGE`] across replicas.
//! - [`Management`] implements the token management API (create, list, get, update, delete
//!   tokens; read the audit log) with role checks and audit events, plus the operator's
//!   `gateway admin …` operations. Its objects and formats are those of the STACKIT
//!   model-serving API ([`Token`], [`labels`]).
//! - [`retention`] pseudonymizes the personal data (subject, e-mail, source IP) of audit events
//!   older than the retention period ([`Management::pseudonymize_audit_log`]).
//! - [`Store`] keeps everything; [`store::open`] picks [`SqliteStore`] or [`PostgresStore`] by
//!   URL scheme.
//!
//! Plaintext credentials exist only in the [`Secret`] returned at creation; stores keep their
//! SHA-256 digests, and `Debug` output masks them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), gateway_auth::AuthError> {
//! use gateway_auth::{store, CreateToken, KeyVerifier, Management, RequestContext};
//! let store = store::open("sqlite://data/gateway.db?mode=rwc").await?;
//! let management = Management::new(store.clone());
//! let project = management.create_project("demo").await?;
//! let request = CreateToken { name: "ci".into(), ..CreateToken::default() };
//! let created = management.create_key(project.id, "eu01", request).await?;
//! let verifier = KeyVerifier::new(store);
//! let key = verifier.verify(created.content.expose()).await?;
//! assert_eq!(key.project_id, project.id);
//! # Ok(()) }
//! ```

mod admin;
pub mod audit;
mod clock;
mod duration;
mod error;
mod key;
pub mod labels;
mod management;
mod model;
pub mod retention;
pub mod store;
pub mod verifier;
mod wire;

pub use audit::{
    write_ndjson, AuditAction, AuditEvent, AuditOutcome, AuditPage, AuditQuery, AuditRecord,
};
pub use clock::{Clock, ManualClock, SystemClock};
pub use duration::{DurationError, TtlDuration, MAX_TTL_SECONDS};
pub use error::{AuthError, StoreError};
pub use key::{CredentialKind, KeyDigest, Secret};
pub use labels::{LabelPatch, LabelSelector, Labels};
pub use management::{AuditExport, Management};
pub use model::{
    Actor, KeyPatch, KeyRecord, LabelChange, ManagementTokenRecord, Membership, MembershipRemoval,
    Project, ProjectAccess, RequestContext, Role, UnknownRole,
};
pub use retention::PseudonymizedEvents;
pub use store::{PostgresStore, SqliteStore, Store};
pub use verifier::{KeyVerifier, VerifiedKey};
pub use wire::{
    CreateToken, CreatedManagementToken, CreatedToken, ManagementToken, Token, TokenState,
    UpdateToken, DESCRIPTION_PATTERN, NAME_PATTERN, NEVER_EXPIRES,
};

/// Parses an id from a URL path; anything that is not a UUID is [`AuthError::NotFound`].
pub fn parse_id(text: &str) -> Result<uuid::Uuid, AuthError> {
    text.parse().map_err(|_| AuthError::NotFound)
}
