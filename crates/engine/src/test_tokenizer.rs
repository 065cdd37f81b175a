//! A word-level tokenizer for the engine's unit tests: the given words (the first is the
//! unknown token) get the ids 0, 1, 2, … in order, split on whitespace.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;

use tokenizers::models::wordlevel::WordLevel;
use tokenizers::pre_tokenizers::whitespace::Whitespace;
use tokenizers::Tokenizer;

/// A tokenizer over `words`, `words[0]` being the unknown token.
pub(crate) fn word_level(words: &[&str]) -> Tokenizer {
    let vocab: HashMap<String, u32> = words
        .iter()
        .zip(0..)
        .map(|(word, id)| ((*word).to_owned(), id))
        .collect();
    let model = WordLevel::builder()
        .vocab(vocab.into_iter().collect())
        .unk_token(words[0].to_owned())
        .build()
        .unwrap();
    let mut tokenizer = Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(Whitespace {}));
    tokenizer
}
