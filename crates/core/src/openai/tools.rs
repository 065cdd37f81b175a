//! Tool calling and structured output in chat completions: tool definitions, `tool_choice`,
//! the tool calls of assistant messages (whole and as stream deltas), and `response_format`.

use std::fmt;

use serde::de::{self, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

/// The kind of a tool; only function tools exist in Chat Completions.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ToolType {
    /// `"function"`.
    #[default]
    Function,
}

/// A tool the model may call: `{"type": "function", "function": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Tool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// The function's definition.
    pub function: FunctionDefinition,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionDefinition {
    /// The function's name (`a-z`, `A-Z`, `0-9`, `_`, `-`, at most 64 characters upstream).
    pub name: String,
    /// What the function does, for the model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The arguments as a JSON Schema object; absent means no arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
    /// Whether the arguments must follow `parameters` exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`: a mode string or a named function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(ToolChoiceMode),
    /// `{"type": "function", "function": {"name": "..."}}`: this function must be called.
    Named(NamedToolChoice),
}

/// The string forms of [`ToolChoice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoiceMode {
    /// The model does not call tools.
    None,
    /// The model decides (the default when tools are given).
    Auto,
    /// The model must call at least one tool.
    Required,
}

/// A forced function call in [`ToolChoice::Named`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: ToolType,
    /// Which function.
    pub function: NamedFunction,
}

/// The function named by [`NamedToolChoice`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct NamedFunction {
    /// The function's name.
    pub name: String,
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ToolChoiceVisitor;

        impl<'de> Visitor<'de> for ToolChoiceVisitor {
            type Value = ToolChoice;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"none\", \"auto\", \"required\" or a named function object")
            }

            fn visit_str<E: de::Error>(self, value: &str) -> Result<ToolChoice, E> {
                ToolChoiceMode::deserialize(value.into_deserializer()).map(ToolChoice::Mode)
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolChoice, A::Error> {
                NamedToolChoice::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ToolChoice::Named)
            }
        }

        deserializer.deserialize_any(ToolChoiceVisitor)
    }
}

/// A tool call made by the assistant, in a response or in an assistant message of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCall {
    /// The call's id, echoed back by the `tool` message that answers it.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default)]
    pub kind: ToolType,
    /// The function called and its arguments.
    pub function: FunctionCall,
}

/// The function of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON text (which the model may have got wrong).
    pub arguments: String,
}

/// A piece of a tool call in a stream chunk; pieces with the same `index` concatenate.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallDelta {
    /// Which tool call of the choice this piece belongs to.
    pub index: u32,
    /// The call's id, in its first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in its first piece.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ToolType>,
    /// Name and/or a fragment of the arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionCallDelta {
    /// The function's name, in the first piece.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next fragment of the arguments' JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

/// `response_format`: plain text, any JSON object, or JSON following a schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// `{"type": "text"}` (the default).
    Text,
    /// `{"type": "json_object"}`: the output is a JSON object.
    JsonObject,
    /// `{"type": "json_schema", "json_schema": {...}}`: the output follows the schema.
    JsonSchema {
        /// The schema and its name.
        json_schema: JsonSchemaFormat,
    },
}

/// The `json_schema` of [`ResponseFormat::JsonSchema`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JsonSchemaFormat {
    /// The schema's name.
    pub name: String,
    /// What the output is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The JSON Schema itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<serde_json::Value>,
    /// Whether the output must follow the schema exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tool_choice_forms() {
        for (value, expected) in [
            (json!("none"), ToolChoice::Mode(ToolChoiceMode::None)),
            (json!("auto"), ToolChoice::Mode(ToolChoiceMode::Auto)),
            (
                json!("required"),
                ToolChoice::Mode(ToolChoiceMode::Required),
            ),
            (
                json!({"type": "function", "function": {"name": "get_weather"}}),
                ToolChoice::Named(NamedToolChoice {
                    kind: ToolType::Function,
                    function: NamedFunction {
                        name: "get_weather".into(),
                    },
                }),
            ),
        ] {
            let parsed: ToolChoice = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(parsed, expected);
            assert_eq!(serde_json::to_value(&parsed).unwrap(), value);
        }
        assert!(serde_json::from_value::<ToolChoice>(json!("sometimes")).is_err());
        assert!(serde_json::from_value::<ToolChoice>(json!(1)).is_err());
    }

    #[test]
    fn response_formats() {
        let text: ResponseFormat = serde_json::from_value(json!({"type": "text"})).unwrap();
        assert_eq!(text, ResponseFormat::Text);
        let object: ResponseFormat =
            serde_json::from_value(json!({"type": "json_object"})).unwrap();
        assert_eq!(object, ResponseFormat::JsonObject);
        let value = json!({"type": "json_schema", "json_schema": {
            "name": "math_response",
            "strict": true,
            "schema": {"type": "object", "properties": {"final_answer": {"type": "string"}},
                       "required": ["final_answer"], "additionalProperties": false}
        }});
        let schema: ResponseFormat = serde_json::from_value(value.clone()).unwrap();
        let ResponseFormat::JsonSchema { json_schema } = &schema else {
            panic!("not a json_schema format: {schema:?}");
        };
        assert_eq!(json_schema.name, "math_response");
        assert_eq!(json_schema.strict, Some(true));
        assert_eq!(serde_json::to_value(&schema).unwrap(), value);
    }

    #[test]
    fn tool_call_delta_skips_absent_fields() {
        let delta = ToolCallDelta {
            index: 0,
            function: Some(FunctionCallDelta {
                name: None,
                arguments: Some("{\"lo".into()),
            }),
            ..ToolCallDelta::default()
        };
        assert_eq!(
            serde_json::to_value(&delta).unwrap(),
            json!({"index": 0, "function": {"arguments": "{\"lo"}})
        );
    }
}
