//! Credentials: generation, parsing, SHA-256 digests compared in constant time, and masking.
//!
//! A model API key reads `sk-<public id>-<secret>`, a management token
//! `gmt-<public id>-<secret>`. The public id (12 base62 characters) finds the row; the secret
//! is 43 base62 characters drawn from a CSPRNG (62^43 > 2^256, so at least 256 bits). Only the
//! SHA-256 digest of the whole string is stored, and compared with [`subtle`].

use std::fmt;

use rand::distr::{Alphanumeric, SampleString};
use serde::{Serialize, Serializer};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Length of the public id part, in base62 characters.
pub const PUBLIC_ID_LEN: usize = 12;
/// Length of the secret part, in base62 characters (≥ 256 bits of randomness).
pub const SECRET_LEN: usize = 43;

/// Which kind of credential a string is; decides its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CredentialKind {
    /// A model API key, `sk-…`.
    ApiKey,
    /// A management API token, `gmt-…`.
    ManagementToken,
}

impl CredentialKind {
    /// The prefix before the first `-`.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ApiKey => "sk",
            Self::ManagementToken => "gmt",
        }
    }

    /// The masked form shown in listings: prefix and public id, secret hidden.
    pub fn mask(self, public_id: &str) -> String {
        format!("{}-{public_id}-****", self.prefix())
    }

    /// The public id of `presented` if it is well-formed for this kind, else `None`.
    pub fn public_id(self, presented: &str) -> Option<&str> {
        let rest = presented.strip_prefix(self.prefix())?.strip_prefix('-')?;
        let (public_id, secret) = rest.split_once('-')?;
        let base62 =
            |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_alphanumeric());
        (base62(public_id, PUBLIC_ID_LEN) && base62(secret, SECRET_LEN)).then_some(public_id)
    }

    /// Generates a fresh credential of this kind.
    pub fn generate(self) -> GeneratedCredential {
        let mut rng = rand::rng();
        let public_id = Alphanumeric.sample_string(&mut rng, PUBLIC_ID_LEN);
        let secret_part = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
        let secret = Secret(format!("{}-{public_id}-{secret_part}", self.prefix()));
        let digest = KeyDigest::of(secret.expose());
        GeneratedCredential {
            public_id,
            secret,
            digest,
        }
    }
}

/// A freshly generated credential: the plaintext (shown once), its public id and digest.
#[derive(Debug)]
pub struct GeneratedCredential {
    /// The public id part, stored in clear to find the row.
    pub public_id: String,
    /// The full plaintext credential.
    pub secret: Secret,
    /// SHA-256 of the full plaintext, the only form that is stored.
    pub digest: KeyDigest,
}

/// SHA-256 digest of a whole credential string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest of `presented`.
    pub fn of(presented: &str) -> Self {
        Self(Sha256::digest(presented.as_bytes()).into())
    }

    /// Rebuilds a digest from its stored bytes; `None` unless exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "KeyDigest({:02x}{:02x}{:02x}{:02x}…)",
            self.0[0], self.0[1], self.0[2], self.0[3]
        )
    }
}

/// A plaintext credential. `Debug` and `Display` are masked; only [`Secret::expose`] and
/// serialization (for the one-time `content` field of a creation response) reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The plaintext. Call only to hand it to its owner once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(****)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_keys_parse_and_hash() {
        let key = CredentialKind::ApiKey.generate();
        let text = key.secret.expose();
        assert!(text.starts_with("sk-"));
        assert_eq!(text.len(), 3 + PUBLIC_ID_LEN + 1 + SECRET_LEN);
        assert_eq!(
            CredentialKind::ApiKey.public_id(text),
            Some(key.public_id.as_str())
        );
        assert_eq!(CredentialKind::ManagementToken.public_id(text), None);
        assert!(KeyDigest::of(text).ct_eq(&key.digest));
        assert!(!KeyDigest::of("sk-other").ct_eq(&key.digest));
    }

    #[test]
    fn malformed_keys_are_rejected() {
        let kind = CredentialKind::ApiKey;
        for bad in [
            "",
            "sk-",
            "sk-abc-def",
            "gmt-aaaaaaaaaaaa-x",
            "sk-aaaaaaaaaaa!-bbb",
        ] {
            assert_eq!(kind.public_id(bad), None, "{bad}");
        }
        let key = kind.generate();
        let truncated = &key.secret.expose()[..key.secret.expose().len() - 1];
        assert_eq!(kind.public_id(truncated), None);
    }

    #[test]
    fn debug_and_display_never_show_the_secret() {
        let key = CredentialKind::ManagementToken.generate();
        let secret_part = &key.secret.expose()[4 + PUBLIC_ID_LEN + 1..];
        for shown in [format!("{key:?}"), format!("{}", key.secret)] {
            assert!(!shown.contains(secret_part), "{shown}");
        }
        assert_eq!(CredentialKind::ManagementToken.mask("abc"), "gmt-abc-****");
    }
}
