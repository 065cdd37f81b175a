//! Constrained decoding with `llguidance`, the grammar engine of llama.cpp, vLLM and SGLang:
//! a [`GrammarCompiler`] per model holds a trie of the vocabulary's token bytes (read from the
//! model's `tokenizer.json`), turns a request's [`OutputConstraint`] into a [`TokenGrammar`],
//! and each choice's grammar tells its sampler which tokens may come next (a bit mask over the
//! vocabulary, computed against the trie) and follows the tokens chosen. Once the output is
//! complete only the end-of-sequence token is allowed.

use std::path::Path;
use std::sync::Arc;

use gateway_backend::OutputConstraint;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{ApproximateTokEnv, SimpleVob, TokEnv, TokRxInfo, TokTrie};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};

use crate::EngineError;

/// Compiles output constraints into token grammars for one model's vocabulary.
pub(crate) struct GrammarCompiler {
    factory: ParserFactory,
}

impl std::fmt::Debug for GrammarCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrammarCompiler").finish_non_exhaustive()
    }
}

impl GrammarCompiler {
    /// The compiler of the vocabulary of `tokenizer_json` (a Hugging Face `tokenizer.json`
    /// with a byte-level or byte-fallback decoder), padded to `vocab_size` tokens, with `eos`
    /// as the token that ends a complete output.
    pub(crate) fn new(
        tokenizer_json: &serde_json::Value,
        vocab_size: usize,
        eos: u32,
    ) -> Result<Self, String> {
        let mut words = llguidance::token_bytes_from_tokenizer_json(tokenizer_json)
            .map_err(|error| error.to_string())?;
        words.resize(vocab_size.max(words.len()), Vec::new());
        let size = u32::try_from(words.len()).map_err(|error| error.to_string())?;
        let trie = TokTrie::from(&TokRxInfo::new(size, eos), &words);
        let env: TokEnv = Arc::new(ApproximateTokEnv::new(trie));
        let mut factory = ParserFactory::new_simple(&env).map_err(|error| error.to_string())?;
        factory.quiet();
        Ok(Self { factory })
    }

    /// The compiler of the tokenizer file at `path`; `None` (with the reason logged) when its
    /// vocabulary cannot be read as bytes, so that the model serves without constraints.
    pub(crate) fn for_tokenizer_file(
        path: &Path,
        vocab_size: usize,
        eos: Option<u32>,
    ) -> Option<Self> {
        let eos = eos?;
        let compiled = std::fs::read(path)
            .map_err(|error| error.to_string())
            .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|error| error.to_string()))
            .and_then(|json| Self::new(&json, vocab_size, eos));
        match compiled {
            Ok(compiler) => Some(compiler),
            Err(reason) => {
                tracing::warn!(path = %path.display(), %reason, "structured outputs are off for this model");
                None
            }
        }
    }

    /// The grammar of `constraint`, ready for a choice's first token;
    /// [`EngineError::InvalidConstraint`] when the grammar engine refuses it.
    pub(crate) fn compile(
        &self,
        constraint: &OutputConstraint,
    ) -> Result<TokenGrammar, EngineError> {
        let grammar = match constraint {
            OutputConstraint::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            OutputConstraint::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            OutputConstraint::Regex(pattern) => TopLevelGrammar::from_regex(pattern),
            OutputConstraint::Choice(choices) => {
                TopLevelGrammar::from_regex(&choice_pattern(choices))
            }
        };
        let refused = || EngineError::InvalidConstraint(constraint.kind());
        let parser = self.factory.create_parser(grammar).map_err(|_| refused())?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(_) => Err(refused()),
            None => Ok(TokenGrammar { matcher }),
        }
    }
}

/// `schema` with the JSON written as `json.dumps` writes it (`", "` and `": "`, no other
/// white space), the layout models have seen most, so that no output wanders off into
/// white space; `oneOf` is read as `anyOf`.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if schema.is_object() {
        let options = JsonCompileOptions {
            item_separator: ", ".to_owned(),
            key_separator: ": ".to_owned(),
            whitespace_flexible: false,
            coerce_one_of: true,
            ..JsonCompileOptions::default()
        };
        options.apply_to(&mut schema);
    }
    schema
}

/// A regular expression matching exactly one of `choices`.
fn choice_pattern(choices: &[String]) -> String {
    choices
        .iter()
        .map(|choice| format!("({})", regex_syntax::escape(choice)))
        .collect::<Vec<_>>()
        .join("|")
}

/// The grammar state of one choice: which tokens may come next.
pub(crate) struct TokenGrammar {
    matcher: Matcher,
}

impl std::fmt::Debug for TokenGrammar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrammar").finish_non_exhaustive()
    }
}

impl TokenGrammar {
    /// An independent copy in the same state, for another choice of the same request.
    pub(crate) fn fork(&self) -> Self {
        Self {
            matcher: self.matcher.deep_clone(),
        }
    }

    /// Sets the score of every token that cannot come next to minus infinity; only the
    /// end-of-sequence token is left once the output is complete.
    pub(crate) fn mask(&mut self, scores: &mut [f32]) -> Result<(), EngineError> {
        let allowed: SimpleVob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(constraint_error)?;
        if allowed.is_zero() {
            return Err(EngineError::Constraint(
                "no token can continue the output".to_owned(),
            ));
        }
        allowed.iter_unset_entries(|token| {
            if let Some(score) = scores.get_mut(token) {
                *score = f32::NEG_INFINITY;
            }
        });
        Ok(())
    }

    /// Follows the chosen `token` (once the output is complete, only the end-of-sequence
    /// token was allowed, and nothing is left to follow).
    pub(crate) fn accept(&mut self, token: u32) -> Result<(), EngineError> {
        if self.matcher.is_stopped() {
            return Ok(());
        }
        self.matcher.consume_token(token).map_err(constraint_error)
    }
}

fn constraint_error(error: impl std::fmt::Display) -> EngineError {
    EngineError::Constraint(error.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use gateway_backend::SamplingParams;
    use serde_json::json;

    use super::*;
    use crate::generator::sampler::Sampler;

    /// The id of the end-of-sequence token of [`byte_vocabulary`].
    const EOS: u32 = 256;

    /// A byte-level `tokenizer.json`: one token per byte (GPT-2's byte-to-character map), a
    /// few multi-byte tokens, and an end-of-sequence special token.
    fn byte_vocabulary() -> serde_json::Value {
        let mut next = 256u32;
        let mut vocab = serde_json::Map::new();
        for byte in 0..=255u8 {
            let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let ch = if printable {
                char::from(byte)
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            };
            vocab.insert(ch.to_string(), json!(byte));
        }
        for (id, word) in [(257, "\"a"), (258, "true"), (259, "\u{120}\"b\"")] {
            vocab.insert(word.to_owned(), json!(id));
        }
        json!({
            "added_tokens": [{"id": EOS, "content": "<|end|>", "special": true}],
            "decoder": {"type": "ByteLevel"},
            "model": {"type": "BPE", "vocab": vocab},
        })
    }

    fn compiler() -> GrammarCompiler {
        GrammarCompiler::new(&byte_vocabulary(), 260, EOS).unwrap()
    }

    /// The token's bytes in [`byte_vocabulary`].
    fn bytes_of(token: u32) -> Vec<u8> {
        match token {
            0..=255 => vec![token as u8],
            257 => b"\"a".to_vec(),
            258 => b"true".to_vec(),
            259 => b" \"b\"".to_vec(),
            _ => Vec::new(),
        }
    }

    /// What a sampler held to `constraint` writes from random logits until the end-of-sequence
    /// token (or 400 tokens).
    fn generate(constraint: &OutputConstraint, seed: u64) -> String {
        let grammar = compiler().compile(constraint).unwrap();
        let params = SamplingParams {
            temperature: 1.0,
            seed,
            ..SamplingParams::default()
        };
        let mut sampler = Sampler::new(params).following(Some(grammar));
        let mut noise = Sampler::new(SamplingParams { seed, ..params });
        let mut output = Vec::new();
        for step in 0..400 {
            // Pseudo-random logits that favour closing quotes and brackets and the end more and
            // more, so that every output ends.
            let logits: Vec<f32> = (0..260u32)
                .map(|token| {
                    let spread = (u64::from(token) * 2_654_435_761 + seed * 97 + step * 31) % 1000;
                    let closing = [EOS, u32::from(b'"'), u32::from(b'}'), u32::from(b']')];
                    let pull = if closing.contains(&token) {
                        step as f32 / 10.0
                    } else {
                        0.0
                    };
                    spread as f32 / 250.0 + pull
                })
                .collect();
            let _ = noise.sample(&logits).unwrap();
            let token = sampler.sample(&logits).unwrap().token;
            if token == EOS {
                return String::from_utf8(output).unwrap();
            }
            output.extend(bytes_of(token));
        }
        panic!(
            "no end after 400 tokens: {}",
            String::from_utf8_lossy(&output)
        );
    }

    #[test]
    fn json_outputs_follow_their_schema_whatever_the_logits() {
        let schema = json!({
            "type": "object",
            "properties": {
                "name": {"type": "string", "maxLength": 8},
                "size": {"type": "integer", "minimum": -5, "maximum": 1000},
                "tags": {"type": "array", "items": {"enum": ["x", "y"]}, "maxItems": 3},
                "inner": {
                    "type": "object",
                    "properties": {"ok": {"type": "boolean"}},
                    "required": ["ok"],
                    "additionalProperties": false,
                },
            },
            "required": ["name", "size", "tags", "inner"],
            "additionalProperties": false,
        });
        for seed in 0..20 {
            let text = generate(&OutputConstraint::JsonSchema(schema.clone()), seed);
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"));
            assert!(
                value["name"]
                    .as_str()
                    .is_some_and(|name| name.chars().count() <= 8),
                "{text}"
            );
            assert!(
                value["size"]
                    .as_i64()
                    .is_some_and(|size| (-5..=1000).contains(&size)),
                "{text}"
            );
            let tags = value["tags"].as_array().unwrap();
            assert!(
                tags.len() <= 3 && tags.iter().all(|t| t == "x" || t == "y"),
                "{text}"
            );
            assert!(value["inner"]["ok"].is_boolean(), "{text}");
            assert_eq!(value.as_object().unwrap().len(), 4, "{text}");
        }
    }

    #[test]
    fn any_json_object_choices_and_patterns() {
        for seed in 0..10 {
            let text = generate(&OutputConstraint::JsonObject, seed);
            let value: serde_json::Value =
                serde_json::from_str(&text).unwrap_or_else(|error| panic!("{error}: {text}"));
            assert!(value.is_object(), "{text}");
            let choices = vec!["yes".to_owned(), "no (a|b)".to_owned()];
            let text = generate(&OutputConstraint::Choice(choices.clone()), seed);
            assert!(choices.contains(&text), "{text}");
            let text = generate(
                &OutputConstraint::Regex("[0-9]{3}-[a-z]{2}".to_owned()),
                seed,
            );
            let bytes = text.as_bytes();
            assert_eq!(bytes.len(), 6, "{text}");
            assert!(
                bytes[..3].iter().all(u8::is_ascii_digit) && bytes[3] == b'-',
                "{text}"
            );
        }
    }

    #[test]
    fn forked_grammars_are_independent() {
        let mut first = compiler()
            .compile(&OutputConstraint::Choice(vec![
                "ab".to_owned(),
                "cd".to_owned(),
            ]))
            .unwrap();
        let mut second = first.fork();
        first.accept(u32::from(b'a')).unwrap();
        let mut scores = vec![0.0; 260];
        second.mask(&mut scores).unwrap();
        assert!(scores[usize::from(b'c')].is_finite() && scores[usize::from(b'a')].is_finite());
        let mut scores = vec![0.0; 260];
        first.mask(&mut scores).unwrap();
        let allowed: Vec<usize> = (0..260).filter(|&t| scores[t].is_finite()).collect();
        assert_eq!(allowed, vec![usize::from(b'b')]);
    }

    #[test]
    fn schemas_the_engine_cannot_compile_are_refused() {
        let bad = OutputConstraint::JsonSchema(json!({"type": "nonsense"}));
        assert!(matches!(
            compiler().compile(&bad),
            Err(EngineError::InvalidConstraint(_))
        ));
        let bad = OutputConstraint::Regex("(".to_owned());
        assert!(matches!(
            compiler().compile(&bad),
            Err(EngineError::InvalidConstraint(_))
        ));
    }
}
