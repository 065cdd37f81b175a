//! The "text or tokens" input shared by `/v1/embeddings` (`input`) and `/v1/completions`
//! (`prompt`): a string, an array of strings, an array of token ids, or an array of token-id
//! arrays.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

/// A string, an array of strings, an array of token ids or an array of token-id arrays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TextOrTokens {
    /// One text: `"hello"`.
    Text(String),
    /// Several texts: `["a", "b"]`. An empty array `[]` reads as an empty batch of texts.
    TextBatch(Vec<String>),
    /// One pre-tokenized input: `[1, 2, 3]`.
    Tokens(Vec<u32>),
    /// Several pre-tokenized inputs: `[[1, 2], [3]]`.
    TokenBatch(Vec<Vec<u32>>),
}

/// One item of a [`TextOrTokens`], borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputItem<'a> {
    /// A text to tokenize.
    Text(&'a str),
    /// Token ids given by the client.
    Tokens(&'a [u32]),
}

impl TextOrTokens {
    /// Number of inputs (one for a single text or a single token array).
    pub fn len(&self) -> usize {
        match self {
            Self::Text(_) | Self::Tokens(_) => 1,
            Self::TextBatch(items) => items.len(),
            Self::TokenBatch(items) => items.len(),
        }
    }

    /// Whether there is no input at all (an empty array). An empty string is one input.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the inputs are token ids rather than texts.
    pub fn is_tokens(&self) -> bool {
        matches!(self, Self::Tokens(_) | Self::TokenBatch(_))
    }

    /// The inputs in order.
    pub fn items(&self) -> impl ExactSizeIterator<Item = InputItem<'_>> + '_ {
        let items: Vec<InputItem<'_>> = match self {
            Self::Text(text) => vec![InputItem::Text(text)],
            Self::TextBatch(texts) => texts.iter().map(|t| InputItem::Text(t)).collect(),
            Self::Tokens(tokens) => vec![InputItem::Tokens(tokens)],
            Self::TokenBatch(batch) => batch.iter().map(|t| InputItem::Tokens(t)).collect(),
        };
        items.into_iter()
    }

    /// The texts, when the inputs are texts.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            Self::Text(text) => Some(vec![text.as_str()]),
            Self::TextBatch(texts) => Some(texts.iter().map(String::as_str).collect()),
            Self::Tokens(_) | Self::TokenBatch(_) => None,
        }
    }
}

/// One element of a top-level array, before the array's shape is known.
enum Element {
    Text(String),
    Token(u32),
    Tokens(Vec<u32>),
}

impl<'de> Deserialize<'de> for Element {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ElementVisitor;

        impl<'de> Visitor<'de> for ElementVisitor {
            type Value = Element;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, a token id or an array of token ids")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<Element, E> {
                Ok(Element::Text(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<Element, E> {
                Ok(Element::Text(value))
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<Element, E> {
                token_id(value).map(Element::Token)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<Element, E> {
                match u64::try_from(value) {
                    Ok(value) => self.visit_u64(value),
                    Err(_) => Err(E::invalid_value(de::Unexpected::Signed(value), &TOKEN_ID)),
                }
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Element, A::Error> {
                let mut tokens = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
                while let Some(TokenId(id)) = seq.next_element()? {
                    tokens.push(id);
                }
                Ok(Element::Tokens(tokens))
            }
        }

        deserializer.deserialize_any(ElementVisitor)
    }
}

const TOKEN_ID: &str = "a token id (an integer from 0 to 4294967295)";

fn token_id<E: de::Error>(value: u64) -> Result<u32, E> {
    u32::try_from(value).map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &TOKEN_ID))
}

/// A token id inside a nested token array.
struct TokenId(u32);

impl<'de> Deserialize<'de> for TokenId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TokenIdVisitor;

        impl Visitor<'_> for TokenIdVisitor {
            type Value = TokenId;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(TOKEN_ID)
            }

            fn visit_u64<E: de::Error>(self, value: u64) -> Result<TokenId, E> {
                token_id(value).map(TokenId)
            }

            fn visit_i64<E: de::Error>(self, value: i64) -> Result<TokenId, E> {
                Err(E::invalid_value(de::Unexpected::Signed(value), &self))
            }
        }

        deserializer.deserialize_u64(TokenIdVisitor)
    }
}

impl<'de> Deserialize<'de> for TextOrTokens {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;

        impl<'de> Visitor<'de> for InputVisitor {
            type Value = TextOrTokens;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a string, an array of strings, an array of token ids \
                     or an array of token-id arrays",
                )
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<TextOrTokens, E> {
                Ok(TextOrTokens::Text(value.to_owned()))
            }

            fn visit_string<E: de::Error>(self, value: String) -> Result<TextOrTokens, E> {
                Ok(TextOrTokens::Text(value))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TextOrTokens, A::Error> {
                let mut out = match seq.next_element::<Element>()? {
                    None => return Ok(TextOrTokens::TextBatch(Vec::new())),
                    Some(Element::Text(text)) => TextOrTokens::TextBatch(vec![text]),
                    Some(Element::Token(id)) => TextOrTokens::Tokens(vec![id]),
                    Some(Element::Tokens(ids)) => TextOrTokens::TokenBatch(vec![ids]),
                };
                while let Some(element) = seq.next_element::<Element>()? {
                    match (&mut out, element) {
                        (TextOrTokens::TextBatch(items), Element::Text(text)) => items.push(text),
                        (TextOrTokens::Tokens(items), Element::Token(id)) => items.push(id),
                        (TextOrTokens::TokenBatch(items), Element::Tokens(ids)) => items.push(ids),
                        _ => {
                            return Err(de::Error::custom(
                                "array items must all be strings, all token ids \
                                 or all arrays of token ids",
                            ))
                        }
                    }
                }
                Ok(out)
            }
        }

        deserializer.deserialize_any(InputVisitor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: serde_json::Value) -> TextOrTokens {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn four_shapes_and_round_trip() {
        for (value, expected, len) in [
            (json!("hi"), TextOrTokens::Text("hi".into()), 1),
            (
                json!(["a", "b"]),
                TextOrTokens::TextBatch(vec!["a".into(), "b".into()]),
                2,
            ),
            (json!([1, 2, 3]), TextOrTokens::Tokens(vec![1, 2, 3]), 1),
            (
                json!([[1, 2], [3]]),
                TextOrTokens::TokenBatch(vec![vec![1, 2], vec![3]]),
                2,
            ),
            (json!([]), TextOrTokens::TextBatch(vec![]), 0),
        ] {
            let parsed = parse(value.clone());
            assert_eq!(parsed, expected);
            assert_eq!(parsed.len(), len);
            assert_eq!(parsed.items().len(), len);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
        }
    }

    #[test]
    fn items_and_texts() {
        let batch = parse(json!([[5], [6, 7]]));
        assert!(batch.is_tokens());
        assert_eq!(batch.texts(), None);
        let items: Vec<_> = batch.items().collect();
        assert_eq!(items, [InputItem::Tokens(&[5]), InputItem::Tokens(&[6, 7])]);
        let texts = parse(json!(["x", ""]));
        assert_eq!(texts.texts(), Some(vec!["x", ""]));
        assert!(!texts.is_empty());
    }

    #[test]
    fn rejects_bad_shapes() {
        for value in [
            json!(["a", 1]),
            json!([1, "a"]),
            json!([[1], 2]),
            json!([-1]),
            json!([[1, -1]]),
            json!([4294967296u64]),
            json!([1.5]),
            json!(5),
            json!({"text": "a"}),
            json!([["a"]]),
        ] {
            assert!(
                serde_json::from_value::<TextOrTokens>(value.clone()).is_err(),
                "{value}"
            );
        }
    }
}
