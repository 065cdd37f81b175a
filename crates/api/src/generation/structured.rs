//! Structured outputs and tools: `response_format`, vLLM's `guided_json` / `guided_choice` /
//! `guided_regex` and `tools` / `tool_choice` become the backend's [`OutputConstraint`], the
//! [`ToolSpec`]s shown to the model and the [`ToolOutput`] that says how an answer is read back
//! ([`read_tool_calls`]): with a named function the output is its arguments, generated under
//! its parameter schema; with `required` it is `{"name", "arguments"}` under the union of the
//! functions' schemas; with `auto` the model may answer in text or with `<tool_call>` blocks
//! (the convention the engine describes to models whose template does not render tools).

use gateway_backend::{FinishReason, FunctionSpec, OutputConstraint, ToolSpec};
use gateway_core::openai::{ResponseFormat, Tool, ToolChoice, ToolChoiceMode};
use serde_json::{json, Value};

use crate::error::ApiError;

/// What opens a tool call in the text of an `auto` answer.
pub const TOOL_CALL_OPEN: &str = "<tool_call>";
/// What closes it.
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// How the output of a chat answer is read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolOutput {
    /// As text.
    #[default]
    Text,
    /// As the arguments of this function (a named `tool_choice`).
    Arguments {
        /// The function.
        name: String,
    },
    /// As one call `{"name", "arguments"}` of one of the functions (`required`).
    AnyCall,
    /// As text, or as `<tool_call>` blocks calling these functions (`auto`).
    Auto {
        /// The functions the model may call.
        names: Vec<String>,
    },
}

/// A constraint on the output and the request field it comes from, for errors about it.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConstraint {
    /// The constraint.
    pub constraint: OutputConstraint,
    /// The field that asked for it (`response_format`, `tool_choice`, `guided_json`, …).
    pub param: &'static str,
}

/// The structure of a chat request's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Structure {
    /// What the output must look like.
    pub constraint: Option<FieldConstraint>,
    /// The functions shown to the model.
    pub tools: Vec<ToolSpec>,
    /// How the output is read back.
    pub output: ToolOutput,
}

/// vLLM's guided decoding fields, as sent.
pub struct Guided<'a> {
    /// `guided_json`.
    pub json: Option<&'a Value>,
    /// `guided_choice`.
    pub choice: Option<&'a [String]>,
    /// `guided_regex`.
    pub regex: Option<&'a str>,
}

/// The constraint of vLLM's guided decoding fields; at most one may be given.
pub fn guided(fields: &Guided<'_>) -> Result<Option<FieldConstraint>, ApiError> {
    let mut found = Vec::new();
    if let Some(schema) = fields.json {
        let schema = match schema {
            Value::String(text) => serde_json::from_str(text).map_err(|_| {
                invalid(
                    "guided_json",
                    "'guided_json' must be a JSON schema or its JSON text",
                )
            })?,
            other => other.clone(),
        };
        found.push(field(OutputConstraint::JsonSchema(schema), "guided_json"));
    }
    if let Some(choices) = fields.choice {
        if choices.is_empty() {
            return Err(invalid(
                "guided_choice",
                "'guided_choice' must not be empty",
            ));
        }
        found.push(field(
            OutputConstraint::Choice(choices.to_vec()),
            "guided_choice",
        ));
    }
    if let Some(pattern) = fields.regex {
        found.push(field(
            OutputConstraint::Regex(pattern.to_owned()),
            "guided_regex",
        ));
    }
    one_of(found)
}

/// The structure of a chat request with these fields.
pub fn chat_structure(
    tools: Option<&[Tool]>,
    tool_choice: Option<&ToolChoice>,
    response_format: Option<&ResponseFormat>,
    guided_fields: &Guided<'_>,
) -> Result<Structure, ApiError> {
    let mut constraints: Vec<FieldConstraint> = guided(guided_fields)?.into_iter().collect();
    constraints.extend(response_format_constraint(response_format)?);
    let tools = tools.unwrap_or_default();
    let specs = tools.iter().map(tool_spec).collect::<Result<Vec<_>, _>>()?;
    let names: Vec<String> = tools
        .iter()
        .map(|tool| tool.function.name.clone())
        .collect();
    let choice = tool_choice
        .cloned()
        .unwrap_or(ToolChoice::Mode(if tools.is_empty() {
            ToolChoiceMode::None
        } else {
            ToolChoiceMode::Auto
        }));
    let (output, shown) = match choice {
        ToolChoice::Mode(ToolChoiceMode::None) => (ToolOutput::Text, Vec::new()),
        _ if tools.is_empty() => {
            return Err(invalid("tool_choice", "'tool_choice' needs 'tools'"));
        }
        ToolChoice::Mode(ToolChoiceMode::Auto) if constraints.is_empty() => {
            (ToolOutput::Auto { names }, specs)
        }
        ToolChoice::Mode(ToolChoiceMode::Auto) => (ToolOutput::Text, specs),
        ToolChoice::Mode(ToolChoiceMode::Required) => {
            constraints.push(field(any_call_schema(&specs), "tool_choice"));
            (ToolOutput::AnyCall, specs)
        }
        ToolChoice::Named(named) => {
            let name = named.function.name;
            let spec = specs
                .iter()
                .find(|spec| spec.function.name == name)
                .ok_or_else(|| {
                    invalid(
                        "tool_choice",
                        "'tool_choice' names a function that is not among 'tools'",
                    )
                })?;
            let schema = OutputConstraint::JsonSchema(spec.function.parameters.clone());
            constraints.push(field(schema, "tool_choice"));
            (ToolOutput::Arguments { name }, specs)
        }
    };
    Ok(Structure {
        constraint: one_of(constraints)?,
        tools: shown,
        output,
    })
}

/// The constraint of `response_format` (none for text).
fn response_format_constraint(
    format: Option<&ResponseFormat>,
) -> Result<Option<FieldConstraint>, ApiError> {
    Ok(match format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => {
            Some(field(OutputConstraint::JsonObject, "response_format"))
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let schema = json_schema.schema.clone().unwrap_or_else(|| json!({}));
            if !schema.is_object() && !schema.is_boolean() {
                return Err(invalid(
                    "response_format",
                    "'response_format.json_schema.schema' must be a JSON schema object",
                ));
            }
            Some(field(
                OutputConstraint::JsonSchema(schema),
                "response_format",
            ))
        }
    })
}

/// A tool as the backend shows it; a function without parameters takes an empty object.
fn tool_spec(tool: &Tool) -> Result<ToolSpec, ApiError> {
    let function = &tool.function;
    let valid_name = !function.name.is_empty()
        && function.name.len() <= 64
        && function
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !valid_name {
        return Err(invalid(
            "tools",
            "function names must be 1 to 64 characters of a-z, A-Z, 0-9, '_' and '-'",
        ));
    }
    let parameters = function
        .parameters
        .clone()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    if !parameters.is_object() {
        return Err(invalid(
            "tools",
            "a function's 'parameters' must be a JSON schema object",
        ));
    }
    Ok(ToolSpec {
        kind: "function",
        function: FunctionSpec {
            name: function.name.clone(),
            description: function.description.clone(),
            parameters,
        },
    })
}

/// The schema of one call `{"name", "arguments"}` of any of `specs`.
fn any_call_schema(specs: &[ToolSpec]) -> OutputConstraint {
    let calls: Vec<Value> = specs
        .iter()
        .map(|spec| {
            json!({
                "type": "object",
                "properties": {
                    "name": {"const": spec.function.name},
                    "arguments": spec.function.parameters,
                },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    OutputConstraint::JsonSchema(match <[Value; 1]>::try_from(calls) {
        Ok([only]) => only,
        Err(calls) => json!({ "anyOf": calls }),
    })
}

fn field(constraint: OutputConstraint, param: &'static str) -> FieldConstraint {
    FieldConstraint { constraint, param }
}

/// The only constraint of `found`; a 400 naming the second when there are several.
fn one_of(found: Vec<FieldConstraint>) -> Result<Option<FieldConstraint>, ApiError> {
    let mut found = found.into_iter();
    let first = found.next();
    match (&first, found.next()) {
        (Some(first), Some(second)) => Err(invalid(
            second.param,
            format!(
                "'{}' cannot be combined with '{}'",
                second.param, first.param
            ),
        )),
        _ => Ok(first),
    }
}

/// A function call read from an answer: the function's name and its arguments as JSON text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadCall {
    /// The function.
    pub name: String,
    /// Its arguments, as JSON text.
    pub arguments: String,
}

/// The tool calls of a complete answer `text`, read as `output` says; `None` when the answer
/// is text (or, cut short, not a complete call).
pub fn read_tool_calls(output: &ToolOutput, text: &str) -> Option<Vec<ReadCall>> {
    match output {
        ToolOutput::Text => None,
        ToolOutput::Arguments { name } => {
            let arguments: Value = serde_json::from_str(text).ok()?;
            Some(vec![ReadCall {
                name: name.clone(),
                arguments: arguments.to_string(),
            }])
        }
        ToolOutput::AnyCall => Some(vec![read_call(text, None)?]),
        ToolOutput::Auto { names } => read_tagged_calls(text, names),
    }
}

/// `{"name", "arguments"}` as a call, of one of `names` when given.
fn read_call(text: &str, names: Option<&[String]>) -> Option<ReadCall> {
    let call: Value = serde_json::from_str(text.trim()).ok()?;
    let name = call.get("name")?.as_str()?;
    if names.is_some_and(|names| !names.iter().any(|known| known == name)) {
        return None;
    }
    let arguments = call.get("arguments").cloned().unwrap_or_else(|| json!({}));
    Some(ReadCall {
        name: name.to_owned(),
        arguments: arguments.to_string(),
    })
}

/// The `<tool_call>` blocks of `text` when it is nothing else (a last block may lack its
/// closing tag); each must call one of `names`.
fn read_tagged_calls(text: &str, names: &[String]) -> Option<Vec<ReadCall>> {
    let mut rest = text.trim();
    let mut calls = Vec::new();
    while !rest.is_empty() {
        let body = rest.strip_prefix(TOOL_CALL_OPEN)?;
        let (call, after) = body.split_once(TOOL_CALL_CLOSE).unwrap_or((body, ""));
        calls.push(read_call(call, Some(names))?);
        rest = after.trim_start();
    }
    (!calls.is_empty()).then_some(calls)
}

/// What a streamed answer that may call tools shows next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Nothing yet: the output so far may be a call.
    Nothing,
    /// Text, streamed as it comes from here on.
    Text(String),
    /// The calls of the whole answer, read at its end.
    Calls(Vec<ReadCall>),
}

/// The output of a streamed choice that may call tools: held back while it may be a call,
/// text once it cannot be, read into calls at its end.
#[derive(Debug, Default)]
pub struct HeldOutput {
    held: String,
    text: bool,
}

impl HeldOutput {
    /// Takes the next `piece` of output, read as `output` says; `end` is why the choice ended,
    /// on its last piece. Only a choice that stopped by itself can be a call.
    pub fn push(&mut self, output: &ToolOutput, piece: &str, end: Option<FinishReason>) -> Release {
        if self.text {
            return Release::Text(piece.to_owned());
        }
        self.held.push_str(piece);
        let opening = self.held.trim_start();
        let may_be_call =
            TOOL_CALL_OPEN.starts_with(opening) || opening.starts_with(TOOL_CALL_OPEN);
        if matches!(output, ToolOutput::Auto { .. }) && !may_be_call {
            self.text = true;
            return Release::Text(std::mem::take(&mut self.held));
        }
        let Some(end) = end else {
            return Release::Nothing;
        };
        let held = std::mem::take(&mut self.held);
        let calls = match end {
            FinishReason::Stop => read_tool_calls(output, &held),
            FinishReason::Length => None,
        };
        calls.map_or(Release::Text(held), Release::Calls)
    }
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParam {
        message: message.into(),
        param: param.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use gateway_core::openai::{
        FunctionDefinition, JsonSchemaFormat, NamedFunction, NamedToolChoice, ToolType,
    };

    use super::*;

    fn weather() -> Tool {
        Tool {
            kind: ToolType::Function,
            function: FunctionDefinition {
                name: "get_weather".to_owned(),
                description: None,
                parameters: Some(
                    json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                ),
                strict: None,
            },
        }
    }

    const NO_GUIDANCE: Guided<'static> = Guided {
        json: None,
        choice: None,
        regex: None,
    };

    #[test]
    fn tool_choices_become_constraints_and_readers() {
        let tools = [weather()];
        let auto = chat_structure(Some(&tools), None, None, &NO_GUIDANCE).unwrap();
        assert_eq!(
            auto.output,
            ToolOutput::Auto {
                names: vec!["get_weather".to_owned()]
            }
        );
        assert!(auto.constraint.is_none());
        assert_eq!(auto.tools.len(), 1);
        let named = ToolChoice::Named(NamedToolChoice {
            kind: ToolType::Function,
            function: NamedFunction {
                name: "get_weather".to_owned(),
            },
        });
        let forced = chat_structure(Some(&tools), Some(&named), None, &NO_GUIDANCE).unwrap();
        assert_eq!(
            forced.constraint.map(|c| c.constraint),
            Some(OutputConstraint::JsonSchema(
                tools[0].function.parameters.clone().unwrap()
            ))
        );
        let required = ToolChoice::Mode(ToolChoiceMode::Required);
        let any = chat_structure(Some(&tools), Some(&required), None, &NO_GUIDANCE).unwrap();
        assert_eq!(any.output, ToolOutput::AnyCall);
        let none = ToolChoice::Mode(ToolChoiceMode::None);
        let off = chat_structure(Some(&tools), Some(&none), None, &NO_GUIDANCE).unwrap();
        assert_eq!((off.output, off.tools.len()), (ToolOutput::Text, 0));
    }

    #[test]
    fn conflicting_and_unknown_choices_are_refused() {
        let unknown = ToolChoice::Named(NamedToolChoice {
            kind: ToolType::Function,
            function: NamedFunction {
                name: "nope".to_owned(),
            },
        });
        let error =
            chat_structure(Some(&[weather()]), Some(&unknown), None, &NO_GUIDANCE).unwrap_err();
        assert!(error.to_string().contains("not among"), "{error}");
        let required = ToolChoice::Mode(ToolChoiceMode::Required);
        assert!(chat_structure(None, Some(&required), None, &NO_GUIDANCE).is_err());
        let format = ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: "x".to_owned(),
                description: None,
                schema: Some(json!({"type": "object"})),
                strict: Some(true),
            },
        };
        let both = Guided {
            regex: Some("a+"),
            ..NO_GUIDANCE
        };
        assert!(chat_structure(None, None, Some(&format), &both).is_err());
        let structure = chat_structure(None, None, Some(&format), &NO_GUIDANCE).unwrap();
        assert_eq!(
            structure.constraint.map(|c| c.param),
            Some("response_format")
        );
    }

    #[test]
    fn streamed_output_is_held_while_it_may_be_a_call() {
        let auto = ToolOutput::Auto {
            names: vec!["f".to_owned()],
        };
        let mut text = HeldOutput::default();
        assert_eq!(text.push(&auto, " <tool", None), Release::Nothing);
        assert_eq!(
            text.push(&auto, "box>", None),
            Release::Text(" <toolbox>".to_owned())
        );
        assert_eq!(
            text.push(&auto, " more", None),
            Release::Text(" more".to_owned())
        );
        let mut call = HeldOutput::default();
        assert_eq!(
            call.push(&auto, "<tool_call>{\"name\": \"f\", ", None),
            Release::Nothing
        );
        let end = call.push(
            &auto,
            "\"arguments\": {}}</tool_call>",
            Some(FinishReason::Stop),
        );
        assert!(
            matches!(end, Release::Calls(ref calls) if calls[0].name == "f"),
            "{end:?}"
        );
        let mut cut = HeldOutput::default();
        let end = cut.push(
            &ToolOutput::AnyCall,
            "{\"name\": \"f\"}",
            Some(FinishReason::Length),
        );
        assert_eq!(end, Release::Text("{\"name\": \"f\"}".to_owned()));
    }

    #[test]
    fn calls_are_read_back() {
        let names = vec!["get_weather".to_owned()];
        let auto = ToolOutput::Auto { names };
        let text = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
        let calls = read_tool_calls(&auto, text).unwrap();
        assert_eq!(calls[0].name, "get_weather");
        assert_eq!(
            serde_json::from_str::<Value>(&calls[0].arguments).unwrap(),
            json!({"city": "Paris"})
        );
        assert!(read_tool_calls(&auto, "It is sunny.").is_none());
        assert!(read_tool_calls(&auto, "<tool_call>{\"name\": \"other\"}</tool_call>").is_none());
        let any =
            read_tool_calls(&ToolOutput::AnyCall, r#"{"name": "f", "arguments": {}}"#).unwrap();
        assert_eq!(
            (any[0].name.as_str(), any[0].arguments.as_str()),
            ("f", "{}")
        );
        let named = ToolOutput::Arguments {
            name: "f".to_owned(),
        };
        assert!(read_tool_calls(&named, "{\"a\": 1").is_none());
    }
}
