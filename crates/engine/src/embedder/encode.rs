//! Turning a request's inputs into checked token sequences: tokenization with the model's
//! Hugging Face tokenizer, the context-length rule (reject or truncate), and the checks on
//! pre-tokenized inputs.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use gateway_backend::EmbeddingInputs;

use crate::EngineError;

/// One input, ready for the model: token ids and their segment (token type) ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sequence {
    pub(crate) ids: Vec<i64>,
    pub(crate) type_ids: Vec<i64>,
}

impl Sequence {
    pub(crate) fn len(&self) -> usize {
        self.ids.len()
    }
}

/// The limits an encoder applies to a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EncodeLimits {
    /// Longest sequence the model accepts, special tokens included.
    pub(crate) context_length: usize,
    /// Most inputs in one request.
    pub(crate) max_inputs: usize,
    /// Cut long texts to the context length instead of rejecting them.
    pub(crate) truncate: bool,
}

/// The model's tokenizer with the request limits applied.
pub(crate) struct InputEncoder {
    tokenizer: Tokenizer,
    vocab_size: usize,
    limits: EncodeLimits,
}

impl InputEncoder {
    /// Loads `tokenizer.json`, dropping its own padding and truncation settings: the engine pads
    /// per batch and applies `limits` itself.
    pub(crate) fn load(path: &Path, limits: EncodeLimits) -> Result<Self, EngineError> {
        let mut tokenizer = crate::model_dir::read_tokenizer(path)?;
        let truncation = limits.truncate.then_some(TruncationParams {
            max_length: limits.context_length,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        tokenizer
            .with_truncation(truncation)
            .map_err(|error| EngineError::InvalidModel {
                path: path.to_path_buf(),
                message: error.to_string(),
            })?;
        let vocab_size = tokenizer.get_vocab_size(true);
        Ok(Self {
            tokenizer,
            vocab_size,
            limits,
        })
    }

    /// Checks and tokenizes every input, in order.
    pub(crate) fn encode(&self, inputs: &EmbeddingInputs) -> Result<Vec<Sequence>, EngineError> {
        if inputs.is_empty() {
            return Err(EngineError::EmptyInput);
        }
        if inputs.len() > self.limits.max_inputs {
            return Err(EngineError::TooManyInputs {
                count: inputs.len(),
                max: self.limits.max_inputs,
            });
        }
        match inputs {
            EmbeddingInputs::Texts(texts) => texts
                .iter()
                .enumerate()
                .map(|(index, text)| self.encode_text(index, text))
                .collect(),
            EmbeddingInputs::Tokens(items) => items
                .iter()
                .enumerate()
                .map(|(index, tokens)| self.check_tokens(index, tokens))
                .collect(),
        }
    }

    fn encode_text(&self, index: usize, text: &str) -> Result<Sequence, EngineError> {
        if text.is_empty() {
            return Err(EngineError::EmptyItem { index });
        }
        let encoding = self
            .tokenizer
            .encode(text, true)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))?;
        let sequence = Sequence {
            ids: encoding.get_ids().iter().map(|&id| i64::from(id)).collect(),
            type_ids: encoding
                .get_type_ids()
                .iter()
                .map(|&id| i64::from(id))
                .collect(),
        };
        self.check_length(index, sequence.len())?;
        Ok(sequence)
    }

    fn check_tokens(&self, index: usize, tokens: &[u32]) -> Result<Sequence, EngineError> {
        if tokens.is_empty() {
            return Err(EngineError::EmptyItem { index });
        }
        if let Some(position) = tokens
            .iter()
            .position(|&token| token as usize >= self.vocab_size)
        {
            return Err(EngineError::TokenOutOfRange {
                index,
                position,
                vocab_size: self.vocab_size,
            });
        }
        let kept = if self.limits.truncate {
            &tokens[..tokens.len().min(self.limits.context_length)]
        } else {
            self.check_length(index, tokens.len())?;
            tokens
        };
        Ok(Sequence {
            ids: kept.iter().map(|&id| i64::from(id)).collect(),
            type_ids: vec![0; kept.len()],
        })
    }

    fn check_length(&self, index: usize, tokens: usize) -> Result<(), EngineError> {
        if tokens > self.limits.context_length {
            return Err(EngineError::ContextLengthExceeded {
                index,
                tokens,
                max: self.limits.context_length,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::test_tokenizer::word_level;

    /// A word-level tokenizer over `[UNK] a b c d`, saved as `tokenizer.json` in a temp dir.
    fn encoder(context_length: usize, max_inputs: usize, truncate: bool) -> InputEncoder {
        let tokenizer = word_level(&["[UNK]", "a", "b", "c", "d"]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tokenizer.save(&path, false).unwrap();
        let limits = EncodeLimits {
            context_length,
            max_inputs,
            truncate,
        };
        InputEncoder::load(&path, limits).unwrap()
    }

    fn texts(items: &[&str]) -> EmbeddingInputs {
        EmbeddingInputs::Texts(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn texts_become_token_ids_in_order() {
        let sequences = encoder(8, 4, false)
            .encode(&texts(&["a b", "d x"]))
            .unwrap();
        assert_eq!(sequences[0].ids, vec![1, 2]);
        assert_eq!(sequences[1].ids, vec![4, 0]);
        assert_eq!(sequences[1].type_ids, vec![0, 0]);
    }

    #[test]
    fn empty_requests_and_items_are_rejected() {
        let encoder = encoder(8, 4, false);
        assert!(matches!(
            encoder.encode(&texts(&[])),
            Err(EngineError::EmptyInput)
        ));
        assert!(matches!(
            encoder.encode(&texts(&["a", ""])),
            Err(EngineError::EmptyItem { index: 1 })
        ));
        assert!(matches!(
            encoder.encode(&EmbeddingInputs::Tokens(vec![vec![1], vec![]])),
            Err(EngineError::EmptyItem { index: 1 })
        ));
    }

    #[test]
    fn too_many_inputs_are_rejected() {
        let error = encoder(8, 2, false)
            .encode(&texts(&["a", "b", "c"]))
            .unwrap_err();
        assert!(matches!(
            error,
            EngineError::TooManyInputs { count: 3, max: 2 }
        ));
    }

    #[test]
    fn long_inputs_are_rejected_or_truncated() {
        let long = texts(&["a", "a b c d a b"]);
        let error = encoder(4, 4, false).encode(&long).unwrap_err();
        assert!(matches!(
            error,
            EngineError::ContextLengthExceeded {
                index: 1,
                tokens: 6,
                max: 4
            }
        ));
        let cut = encoder(4, 4, true).encode(&long).unwrap();
        assert_eq!(cut[1].ids, vec![1, 2, 3, 4]);
        let tokens = EmbeddingInputs::Tokens(vec![vec![1, 2, 3, 4, 1]]);
        assert!(encoder(4, 4, false).encode(&tokens).is_err());
        assert_eq!(encoder(4, 4, true).encode(&tokens).unwrap()[0].len(), 4);
    }

    #[test]
    fn token_ids_outside_the_vocabulary_are_rejected() {
        let tokens = EmbeddingInputs::Tokens(vec![vec![1, 2], vec![3, 5]]);
        let error = encoder(8, 4, false).encode(&tokens).unwrap_err();
        assert!(matches!(
            error,
            EngineError::TokenOutOfRange {
                index: 1,
                position: 1,
                vocab_size: 5
            }
        ));
    }
}
