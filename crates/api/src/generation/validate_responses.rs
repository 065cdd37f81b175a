//! The checks of a Responses API request (`POST /v1/responses`): its input becomes a
//! conversation and its tools, tool choice and text format those of a chat request, then the
//! shared checks of [`super`] apply.

use gateway_backend::Prompt;
use gateway_core::openai::{
    ChatMessage, FunctionCall, FunctionDefinition, JsonSchemaFormat, NamedFunction,
    NamedToolChoice, ResponseContent, ResponseFormat, ResponseInput, ResponseInputItem,
    ResponseRequest, ResponseToolChoice, Role, TextFormat, Tool, ToolCall, ToolChoice, ToolType,
};

use super::{
    chat_turns, check, invalid, structured, structured_params, CommonFields, GenerationRoute,
    Guided, PromptField, ValidatedGeneration,
};
use crate::error::ApiError;
use crate::routes::responses::{ResponseSettings, ResponsesFormat};

impl GenerationRoute for ResponseRequest {
    type Format = ResponsesFormat;

    fn model(&self) -> &str {
        &self.model
    }

    fn validate(&self) -> Result<ValidatedGeneration, ApiError> {
        response(self)
    }

    fn settings(&self) -> ResponseSettings {
        ResponseSettings::of(self)
    }
}

/// Checks a Responses API request: its input becomes a conversation, its tools, tool choice
/// and text format those of a chat request. Nothing is stored, so what needs a stored
/// response is refused.
fn response(request: &ResponseRequest) -> Result<ValidatedGeneration, ApiError> {
    refuse_stored_state(request)?;
    let tools = request
        .tools
        .as_deref()
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool.kind != "function" {
                return Err(invalid(
                    format!("tools[{i}].type"),
                    format!(
                        "tools of type '{}' are not supported; use 'function'",
                        tool.kind
                    ),
                ));
            }
            Ok(Tool {
                kind: ToolType::Function,
                function: FunctionDefinition {
                    name: tool.name.clone(),
                    description: tool.description.clone(),
                    parameters: tool.parameters.clone(),
                    strict: tool.strict,
                },
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let tool_choice = request.tool_choice.as_ref().map(|choice| match choice {
        ResponseToolChoice::Mode(mode) => ToolChoice::Mode(*mode),
        ResponseToolChoice::Function { name, .. } => ToolChoice::Named(NamedToolChoice {
            kind: ToolType::Function,
            function: NamedFunction { name: name.clone() },
        }),
    });
    let format = request
        .text
        .as_ref()
        .and_then(|text| text.format.as_ref())
        .map(response_format);
    let no_guidance = Guided {
        json: None,
        choice: None,
        regex: None,
    };
    let structure = structured::chat_structure(
        Some(&tools),
        tool_choice.as_ref(),
        format.as_ref(),
        &no_guidance,
    )?;
    let turns = chat_turns(&response_messages(request)?)?;
    let params = check(CommonFields {
        n: 1,
        max_tokens: request.max_output_tokens,
        zero_max_tokens: false,
        stop: &[],
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: None,
        seed: None,
        presence_penalty: None,
        frequency_penalty: None,
        min_p: None,
        repetition_penalty: None,
        stop_token_ids: &[],
        min_tokens: None,
        ignore_eos: None,
        top_logprobs: None,
        stream: request.stream.unwrap_or(false),
        include_usage: true,
    })?;
    let params = structured_params(params, structure)?;
    Ok(ValidatedGeneration {
        prompts: vec![Prompt::Chat(turns)],
        prompt_field: PromptField::Input,
        params,
    })
}

/// Refuses what needs a stored response or conversation: this service keeps none.
fn refuse_stored_state(request: &ResponseRequest) -> Result<(), ApiError> {
    let why = "this service stores no responses or conversations (no customer content is \
               kept); send the whole conversation as 'input' instead";
    if request.previous_response_id.is_some() {
        return Err(invalid("previous_response_id", why));
    }
    if request.conversation.is_some() {
        return Err(invalid("conversation", why));
    }
    if request.background == Some(true) {
        return Err(invalid("background", why));
    }
    Ok(())
}

/// `text.format` as a chat `response_format`.
fn response_format(format: &TextFormat) -> ResponseFormat {
    match format {
        TextFormat::Text => ResponseFormat::Text,
        TextFormat::JsonObject => ResponseFormat::JsonObject,
        TextFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => ResponseFormat::JsonSchema {
            json_schema: JsonSchemaFormat {
                name: name.clone(),
                description: description.clone(),
                schema: schema.clone(),
                strict: *strict,
            },
        },
    }
}

/// The instructions and input of a Responses request as chat messages: function calls join
/// the assistant message before them, their outputs become tool messages.
fn response_messages(request: &ResponseRequest) -> Result<Vec<ChatMessage>, ApiError> {
    let mut messages: Vec<ChatMessage> = request
        .instructions
        .iter()
        .map(|instructions| ChatMessage::system(instructions.clone()))
        .collect();
    match &request.input {
        ResponseInput::Text(text) => messages.push(ChatMessage::user(text.clone())),
        ResponseInput::Items(items) => {
            if items.is_empty() {
                return Err(invalid("input", "'input' must not be empty"));
            }
            for (i, item) in items.iter().enumerate() {
                add_input_item(&mut messages, i, item)?;
            }
        }
    }
    Ok(messages)
}

/// Adds input item `i` to `messages`.
fn add_input_item(
    messages: &mut Vec<ChatMessage>,
    i: usize,
    item: &ResponseInputItem,
) -> Result<(), ApiError> {
    let required = |value: &Option<String>, field: &str| {
        value.clone().ok_or_else(|| {
            invalid(
                format!("input[{i}].{field}"),
                format!("'{field}' is required"),
            )
        })
    };
    match item.kind.as_deref().unwrap_or("message") {
        "message" => {
            let role = match required(&item.role, "role")?.as_str() {
                "user" => Role::User,
                "assistant" => Role::Assistant,
                "system" => Role::System,
                "developer" => Role::Developer,
                _ => {
                    return Err(invalid(
                        format!("input[{i}].role"),
                        "'role' must be user, assistant, system or developer",
                    ))
                }
            };
            messages.push(ChatMessage::new(
                role,
                input_text(i, item.content.as_ref())?,
            ));
        }
        "function_call" => {
            let call = ToolCall {
                id: required(&item.call_id, "call_id")?,
                kind: ToolType::Function,
                function: FunctionCall {
                    name: required(&item.name, "name")?,
                    arguments: required(&item.arguments, "arguments")?,
                },
            };
            match messages.last_mut() {
                Some(last) if last.role == Role::Assistant => {
                    last.tool_calls.get_or_insert_with(Vec::new).push(call);
                }
                _ => messages.push(ChatMessage {
                    content: None,
                    tool_calls: Some(vec![call]),
                    ..ChatMessage::assistant("")
                }),
            }
        }
        "function_call_output" => {
            let output = required(&item.output, "output")?;
            messages.push(ChatMessage::tool(
                required(&item.call_id, "call_id")?,
                output,
            ));
        }
        other => {
            return Err(invalid(
                format!("input[{i}].type"),
                format!("input items of type '{other}' are not supported"),
            ))
        }
    }
    Ok(())
}

/// The text of input message `i`'s content: text parts only.
fn input_text(i: usize, content: Option<&ResponseContent>) -> Result<String, ApiError> {
    match content {
        None => Err(invalid(
            format!("input[{i}].content"),
            "'content' is required",
        )),
        Some(ResponseContent::Text(text)) => Ok(text.clone()),
        Some(ResponseContent::Parts(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match (part.kind.as_str(), &part.text) {
                    ("input_text" | "output_text" | "text", Some(text)) => {
                        texts.push(text.as_str())
                    }
                    _ => {
                        return Err(invalid(
                            format!("input[{i}].content[{j}]"),
                            format!(
                                "content parts of type '{}' are not supported by this model",
                                part.kind
                            ),
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
    }
}
