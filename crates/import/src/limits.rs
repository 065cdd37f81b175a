//! The importer's bounds on numbers read from a source: architecture limits (generous for real
//! models, small enough that a hostile file cannot make the importer allocate without bound),
//! the one check that a length read from a file fits in the bytes the file has left, and the
//! checks of floats and chat templates. `docs/model-format.md` lists the limits.

use std::path::Path;

use super::error::ImportError;
use crate::ChatTemplateCheck;

/// Longest context (`context_length`, `max_position_embeddings`) accepted: 1 Mi tokens.
pub(crate) const MAX_CONTEXT_LENGTH: u64 = 1 << 20;
/// Most decoder blocks or encoder layers accepted.
pub(crate) const MAX_BLOCK_COUNT: u64 = 1024;
/// Widest hidden state (`embedding_length`, `hidden_size`) accepted.
pub(crate) const MAX_EMBEDDING_LENGTH: u64 = 1 << 16;
/// Widest feed-forward layer (`feed_forward_length`, `intermediate_size`) accepted.
pub(crate) const MAX_FEED_FORWARD_LENGTH: u64 = 1 << 18;
/// Most attention heads (query or key/value) accepted.
pub(crate) const MAX_HEAD_COUNT: u64 = 1024;
/// Widest attention head (`key_length`, `head_dim`) accepted.
pub(crate) const MAX_HEAD_DIM: u64 = 1024;
/// Largest vocabulary accepted.
pub(crate) const MAX_VOCAB_SIZE: u64 = 1 << 20;
/// Most token types of a BERT-family encoder (`type_vocab_size`).
pub(crate) const MAX_TYPE_VOCAB_SIZE: u64 = 1024;
/// Most entries of the rotary cos/sin tables (`context_length × key_length`; 512 MiB of f32
/// for both tables together).
pub(crate) const MAX_ROPE_TABLE: u64 = 1 << 27;
/// Most elements of one GGUF metadata array (real vocabularies have at most a few 100 000).
pub(crate) const MAX_ARRAY_LEN: u64 = 1 << 21;
/// Most metadata values (keys and array elements) of one GGUF header together: with 32 bytes
/// a value in memory, at most 128 MiB besides the strings' own bytes.
pub(crate) const MAX_METADATA_VALUES: u64 = 1 << 22;
/// Most tensors of one GGUF file.
pub(crate) const MAX_TENSORS: u64 = 1 << 16;

/// `value` if it lies in `min..=max`, else [`ImportError::OutOfRange`] naming `field`.
pub(crate) fn in_range(field: &str, value: u64, min: u64, max: u64) -> Result<u64, ImportError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ImportError::OutOfRange {
            field: field.to_owned(),
            value,
            min,
            max,
        })
    }
}

/// `value` if it is finite and positive, else [`ImportError::NotPositiveFinite`] naming
/// `field`.
pub(crate) fn positive_finite(field: &str, value: f32) -> Result<f32, ImportError> {
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(ImportError::NotPositiveFinite {
            field: field.to_owned(),
            value: value.into(),
        })
    }
}

/// The bytes `what` claims when a file has `left` bytes for it: `count` items of `unit` bytes
/// each. `Err` if they do not fit, before anything is allocated for them.
pub(crate) fn fit_in_file(what: &str, count: u64, unit: u64, left: u64) -> Result<u64, Overrun> {
    match count.checked_mul(unit) {
        Some(bytes) if bytes <= left => Ok(bytes),
        claimed => Err(Overrun {
            what: what.to_owned(),
            claimed: claimed.unwrap_or(u64::MAX),
            left,
        }),
    }
}

/// A length read from a file that exceeds the bytes the file has left ([`fit_in_file`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Overrun {
    /// What claimed the bytes (a metadata key, a tensor, a header).
    pub what: String,
    /// Bytes claimed (`u64::MAX` when the claim overflows).
    pub claimed: u64,
    /// Bytes the file has left.
    pub left: u64,
}

impl Overrun {
    /// The [`ImportError::ExceedsFile`] for the file at `path`, of `format`.
    pub(crate) fn into_error(self, format: &'static str, path: &Path) -> ImportError {
        ImportError::ExceedsFile {
            format,
            path: path.to_owned(),
            what: self.what,
            claimed: self.claimed,
            left: self.left,
        }
    }
}

/// Checks a chat template: it must be non-empty UTF-8 and pass `check`, the server's own
/// check (the importer has no template engine to compile it with).
pub(crate) fn chat_template(
    bytes: Vec<u8>,
    check: Option<ChatTemplateCheck>,
) -> Result<String, ImportError> {
    let text = String::from_utf8(bytes).map_err(|e| ImportError::InvalidChatTemplate {
        reason: format!("not UTF-8 ({e})"),
    })?;
    if text.trim().is_empty() {
        return Err(ImportError::InvalidChatTemplate {
            reason: "empty".to_owned(),
        });
    }
    if let Some(check) = check {
        check(&text).map_err(|reason| ImportError::InvalidChatTemplate { reason })?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges_floats_and_file_fits() {
        assert_eq!(in_range("x", 5, 1, 5).unwrap(), 5);
        assert!(matches!(
            in_range("llama.context_length", 0, 1, MAX_CONTEXT_LENGTH),
            Err(ImportError::OutOfRange { ref field, value: 0, min: 1, .. })
                if field == "llama.context_length"
        ));
        assert!(positive_finite("eps", 1e-6).is_ok());
        for bad in [0.0, -1.0, f32::INFINITY, f32::NAN] {
            assert!(matches!(
                positive_finite("eps", bad),
                Err(ImportError::NotPositiveFinite { .. })
            ));
        }
        assert_eq!(fit_in_file("s", 3, 4, 12).unwrap(), 12);
        assert_eq!(
            fit_in_file("s", u64::MAX, 2, 12).unwrap_err(),
            Overrun {
                what: "s".to_owned(),
                claimed: u64::MAX,
                left: 12
            }
        );
        assert!(matches!(
            chat_template(b"{{ x }}".to_vec(), None).as_deref(),
            Ok("{{ x }}")
        ));
        assert!(chat_template(vec![0xff, 0xfe], None).is_err());
        let refuse: ChatTemplateCheck = |_| Err("it loops".to_owned());
        assert!(matches!(
            chat_template(b"{{ x }}".to_vec(), Some(refuse)),
            Err(ImportError::InvalidChatTemplate { ref reason }) if reason == "it loops"
        ));
        assert!(chat_template(b"  \n".to_vec(), None).is_err());
    }
}
