//! Incremental detokenization: turns the tokens of a sequence into text one token at a time,
//! releasing only complete UTF-8 characters. A token may hold part of a character (byte-level
//! BPE), and some tokenizers change how a token reads depending on its neighbours, so each
//! step decodes a short window of recent tokens and releases what it adds to the text.

use tokenizers::Tokenizer;

use crate::EngineError;

/// Turns token ids into text.
pub(crate) trait TokenDecoder {
    /// The text of `ids`, special tokens left out; incomplete characters read as U+FFFD.
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError>;
}

impl TokenDecoder for Tokenizer {
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        std::ops::Deref::deref(self)
            .decode(ids, true)
            .map_err(|error| EngineError::Tokenizer(error.to_string()))
    }
}

impl<T: TokenDecoder> TokenDecoder for std::sync::Arc<T> {
    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.as_ref().decode(ids)
    }
}

/// The detokenization state of one sequence.
#[derive(Debug, Clone, Default)]
pub(crate) struct Detokenizer {
    tokens: Vec<u32>,
    /// Start of the window decoded for context.
    prefix_offset: usize,
    /// End of the text released so far.
    read_offset: usize,
}

impl Detokenizer {
    /// Adds `token` and returns the text it completes (empty while a character is incomplete).
    pub(crate) fn push(
        &mut self,
        decoder: &dyn TokenDecoder,
        token: u32,
    ) -> Result<String, EngineError> {
        self.tokens.push(token);
        let prefix = decoder.decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let text = decoder.decode(&self.tokens[self.prefix_offset..])?;
        if text.len() <= prefix.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        let Some(added) = text.get(prefix.len()..) else {
            return Ok(String::new());
        };
        let added = added.to_owned();
        self.prefix_offset = self.read_offset;
        self.read_offset = self.tokens.len();
        Ok(added)
    }

    /// The text of tokens not yet released (an incomplete character at the end), as it reads.
    pub(crate) fn finish(&mut self, decoder: &dyn TokenDecoder) -> Result<String, EngineError> {
        let prefix = decoder.decode(&self.tokens[self.prefix_offset..self.read_offset])?;
        let text = decoder.decode(&self.tokens[self.prefix_offset..])?;
        self.prefix_offset = self.tokens.len();
        self.read_offset = self.tokens.len();
        Ok(text.get(prefix.len()..).unwrap_or_default().to_owned())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;

    /// A byte-level vocabulary: token `id` is the byte `id`; 300 is a special token.
    pub(crate) struct ByteDecoder;

    impl TokenDecoder for ByteDecoder {
        fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
            let bytes: Vec<u8> = ids.iter().filter_map(|&id| u8::try_from(id).ok()).collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    fn feed(bytes: &[u8]) -> Vec<String> {
        let mut detokenizer = Detokenizer::default();
        bytes
            .iter()
            .map(|&b| detokenizer.push(&ByteDecoder, u32::from(b)).unwrap())
            .collect()
    }

    #[test]
    fn ascii_comes_out_token_by_token() {
        assert_eq!(feed(b"Hi!"), vec!["H", "i", "!"]);
    }

    #[test]
    fn a_character_split_over_tokens_comes_out_whole() {
        let bytes = "aé€".as_bytes();
        assert_eq!(feed(bytes), vec!["a", "", "é", "", "", "€"]);
    }

    #[test]
    fn special_tokens_add_nothing_and_finish_flushes_a_partial_character() {
        let mut detokenizer = Detokenizer::default();
        assert_eq!(detokenizer.push(&ByteDecoder, 300).unwrap(), "");
        assert_eq!(
            detokenizer.push(&ByteDecoder, u32::from(b'x')).unwrap(),
            "x"
        );
        assert_eq!(detokenizer.push(&ByteDecoder, 0xC3).unwrap(), "");
        assert_eq!(detokenizer.finish(&ByteDecoder).unwrap(), "\u{FFFD}");
    }
}
