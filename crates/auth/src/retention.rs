//! Retention of personal data in the audit log: after the retention period an event keeps
//! what happened, to what and when, but no longer who did it by name or from where.
//!
//! For each event older than the period, [`Management::pseudonymize_audit_log`] (through
//! [`crate::Store::pseudonymize_audit_events`]):
//!
//! - replaces the actor's subject id by a pseudonym, `pseudonym-<16 hex digits>` (the
//!   operator's fixed subject `gateway-admin` is no person's and stays);
//! - clears the actor's e-mail (it reads `""`) and deletes the source IP address;
//! - does the same to the `subject` (pseudonym) and `email` (`""`) fields of its `changes`,
//!   which `principal.add` records about the principal it added;
//! - marks the event, so a later run leaves it alone.
//!
//! Everything else stays: id, sequence, time, project, action, outcome, reason, target token,
//! the other changes and the request id.
//!
//! # The pseudonym, and why it is a keyed hash
//!
//! The pseudonym is the first 64 bits of HMAC-SHA-256 of the subject id under a random 256-bit
//! key drawn once per database (table `pseudonym_key`; it never leaves the database and is
//! never logged).
//!
//! - A plain hash (SHA-256 of the e-mail or the subject id) would not be a pseudonym: anyone
//!   who reads the log can hash a guessed address or id and compare, and e-mail addresses are
//!   easy to guess. It would stay personal data for every reader.
//! - A fixed `redacted` marker would be anonymous, but it would also lose what a customer
//!   reads an old log for after an incident: which of the events were done by the same person.
//! - The keyed hash keeps that (one pseudonym per subject, on every replica and in every run),
//!   and without the key nobody can test a guess against it. The e-mail is not hashed at all:
//!   it is deleted, so no pseudonym depends on a guessable value. Source IPs are deleted too:
//!   the IPv4 space is small enough to hash whole, so a pseudonym of an address would protect
//!   little.
//! - Sixty-four bits tell the principals of a project apart (the chance that two of 10,000
//!   subjects share one is about 3 in a billion) and give away less of the hash.
//!
//! This is pseudonymisation in the sense of GDPR Art. 4(5), not anonymisation: whoever holds
//! the database holds the key and can compute the pseudonym of a subject id it knows. The
//! principals table (subject, e-mail, role per project) is the customer's own record of who may
//! manage its project and is kept as long as the principal has a role. To cut the link for
//! the operator too, delete the key's row (`DELETE FROM pseudonym_key`): the next run draws a
//! new key, and events pseudonymized before keep their old pseudonyms, which nothing can
//! compute any more.
//!
//! [`Management::pseudonymize_audit_log`]: crate::Management::pseudonymize_audit_log

use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::error::{AuthError, StoreError};
use crate::management::Management;
use crate::model::Actor;

/// What every pseudonym starts with.
pub const PSEUDONYM_PREFIX: &str = "pseudonym-";

/// Bytes of the HMAC shown in a pseudonym (16 hex digits).
const PSEUDONYM_BYTES: usize = 8;

/// What one run of [`Management::pseudonymize_audit_log`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PseudonymizedEvents {
    /// Events before this time were due.
    pub cutoff: DateTime<Utc>,
    /// How many of them this run pseudonymized (those an earlier run or another replica did
    /// are not counted again).
    pub events: u64,
}

impl Management {
    /// Pseudonymizes the personal data of every audit event older than `retention` at the
    /// service's clock (see the [module documentation](self)). Idempotent, and safe to run on
    /// several replicas at once.
    pub async fn pseudonymize_audit_log(
        &self,
        retention: TimeDelta,
    ) -> Result<PseudonymizedEvents, AuthError> {
        let cutoff = Some(retention)
            .filter(|retention| *retention > TimeDelta::zero())
            .and_then(|retention| self.now().checked_sub_signed(retention))
            .ok_or_else(|| AuthError::validation("retention", "must be a positive duration"))?;
        let events = self.store.pseudonymize_audit_events(cutoff).await?;
        Ok(PseudonymizedEvents { cutoff, events })
    }
}

/// The random key of a database's pseudonyms.
#[derive(Clone)]
pub(crate) struct PseudonymKey([u8; 32]);

impl PseudonymKey {
    /// A fresh key from the operating system's CSPRNG (through `rand`'s thread generator).
    pub(crate) fn generate() -> Self {
        Self(rand::random())
    }

    /// The key as stored; `None` if the stored value is not 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The bytes to store.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// `pseudonym-<16 hex>` of a subject id.
    pub(crate) fn pseudonym(&self, subject: &str) -> Result<String, StoreError> {
        // HMAC takes keys of any length, so this never fails with a 32-byte key.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .map_err(|_| StoreError::Corrupt("pseudonym_key.secret".to_owned()))?
            .chain_update(subject.as_bytes())
            .finalize()
            .into_bytes();
        let hex: String = mac[..PSEUDONYM_BYTES]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(format!("{PSEUDONYM_PREFIX}{hex}"))
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey(****)")
    }
}

/// The personal data of one stored event, as the job reads it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PersonalDataRow {
    /// The event's sequence number.
    pub seq: i64,
    /// The actor's subject id.
    pub actor_subject: Option<String>,
    /// The changes, as stored (a JSON object).
    pub changes: String,
}

/// What an event keeps of its personal data; its e-mail and source IP are cleared.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pseudonymized {
    /// The actor's pseudonym (or the operator's subject).
    pub actor_subject: Option<String>,
    /// The changes with `subject` pseudonymized and `email` cleared.
    pub changes: String,
}

/// The pseudonymized form of `row` under `key`.
pub(crate) fn pseudonymize(
    key: &PseudonymKey,
    row: &PersonalDataRow,
) -> Result<Pseudonymized, StoreError> {
    let operator = Actor::operator().subject;
    let actor_subject = match &row.actor_subject {
        Some(subject) if *subject != operator => Some(key.pseudonym(subject)?),
        other => other.clone(),
    };
    let mut changes: Map<String, Value> = serde_json::from_str(&row.changes)
        .map_err(|_| StoreError::Corrupt("audit_events.changes".to_owned()))?;
    if let Some(Value::String(subject)) = changes.get("subject") {
        let pseudonym = key.pseudonym(subject)?;
        changes.insert("subject".to_owned(), Value::String(pseudonym));
    }
    if let Some(email) = changes.get_mut("email") {
        *email = Value::String(String::new());
    }
    Ok(Pseudonymized {
        actor_subject,
        changes: Value::Object(changes).to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn row(subject: Option<&str>, changes: &str) -> PersonalDataRow {
        PersonalDataRow {
            seq: 1,
            actor_subject: subject.map(str::to_owned),
            changes: changes.to_owned(),
        }
    }

    #[test]
    fn a_subject_has_one_pseudonym_per_key() {
        let key = PseudonymKey::generate();
        let a = key.pseudonym("alice").unwrap();
        assert_eq!(a, key.pseudonym("alice").unwrap());
        assert_ne!(a, key.pseudonym("bob").unwrap());
        assert_ne!(a, PseudonymKey::generate().pseudonym("alice").unwrap());
        let hex = a.strip_prefix(PSEUDONYM_PREFIX).unwrap();
        assert_eq!(hex.len(), 16);
        assert!(hex.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_pseudonym_is_hmac_sha256() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        // HMAC pads short keys with zeros, so "Jefe" and "Jefe" + 28 zero bytes are one key.
        let key = PseudonymKey(key);
        assert_eq!(
            key.pseudonym("what do ya want for nothing?").unwrap(),
            "pseudonym-5bdcc146bf60754e"
        );
    }

    #[test]
    fn changes_lose_subject_and_email_only() {
        let key = PseudonymKey::generate();
        let clean = pseudonymize(
            &key,
            &row(
                Some("alice"),
                r#"{"subject":"bob","email":"bob@example.com","role":"owner"}"#,
            ),
        )
        .unwrap();
        assert_eq!(clean.actor_subject, Some(key.pseudonym("alice").unwrap()));
        let changes: Value = serde_json::from_str(&clean.changes).unwrap();
        assert_eq!(changes["subject"], key.pseudonym("bob").unwrap());
        assert_eq!(changes["email"], "");
        assert_eq!(changes["role"], "owner");
    }

    #[test]
    fn the_operator_and_the_system_stay() {
        let key = PseudonymKey::generate();
        let operator = pseudonymize(&key, &row(Some("gateway-admin"), r#"{"name":"x"}"#)).unwrap();
        assert_eq!(operator.actor_subject.as_deref(), Some("gateway-admin"));
        assert_eq!(operator.changes, r#"{"name":"x"}"#);
        let system = pseudonymize(&key, &row(None, "{}")).unwrap();
        assert_eq!(system.actor_subject, None);
    }

    #[test]
    fn corrupt_changes_are_an_error() {
        let key = PseudonymKey::generate();
        assert!(pseudonymize(&key, &row(None, "[")).is_err());
    }

    #[test]
    fn keys_do_not_show_in_debug() {
        assert_eq!(
            format!("{:?}", PseudonymKey::generate()),
            "PseudonymKey(****)"
        );
        assert!(PseudonymKey::from_slice(&[0; 31]).is_none());
        let key = PseudonymKey::generate();
        let again = PseudonymKey::from_slice(key.as_bytes()).unwrap();
        assert_eq!(key.pseudonym("a").unwrap(), again.pseudonym("a").unwrap());
    }
}
