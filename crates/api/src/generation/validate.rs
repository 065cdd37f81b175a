//! Every check of a chat, completion or Responses API request, in one place, before anything
//! reaches a backend (the wire requests' [`GenerationRoute`] implementations): the wire
//! request becomes a [`ValidatedGeneration`] (the prompts, the checked
//! [`GenerationParams`], the field that holds the prompt) or a 400 that names its parameter.
//! Parameters this gateway does not implement are refused, never silently ignored. A Responses
//! API request is turned into the same checks in the child module `responses`.

use gateway_backend::{
    ChatTurn, Echo, Ending, Prompt, SamplingParams, ToolSpec, TurnFunctionCall, TurnToolCall,
};
use gateway_core::openai::{
    ChatCompletionRequest, ChatMessage, CompletionRequest, InputItem, Role,
};

use super::structured::{self, FieldConstraint, Guided, Structure, ToolOutput};
use super::GenerationRoute;
use crate::error::ApiError;
use crate::routes::chat::ChatFormat;
use crate::routes::completions::CompletionFormat;

#[path = "validate_responses.rs"]
mod responses;

/// Most choices per request (`n`).
pub const MAX_CHOICES: u32 = 8;
/// Most stop sequences.
pub const MAX_STOP_SEQUENCES: usize = 4;
/// Most stop token ids (vLLM's `stop_token_ids`).
pub const MAX_STOP_TOKEN_IDS: usize = 64;
/// Most alternatives per position with log-probabilities (chat `top_logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;
/// Most alternatives per position of legacy `logprobs`.
pub const MAX_LEGACY_LOGPROBS: u32 = 5;

/// The request field that holds the prompt, named by errors about the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptField {
    /// `messages` of a chat request.
    Messages,
    /// `prompt` of a completion request.
    Prompt,
    /// `input` of a Responses request.
    Input,
}

impl PromptField {
    /// The field's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Messages => "messages",
            Self::Prompt => "prompt",
            Self::Input => "input",
        }
    }
}

/// How every prompt of a request is continued.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationParams {
    /// Choices per prompt (`n`).
    pub choices: u32,
    /// Most tokens per choice; `None`: what the context leaves.
    pub max_tokens: Option<usize>,
    /// Sampling, with the seed drawn when the client sent none.
    pub sampling: SamplingParams,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Stop tokens, the minimum length and whether the end-of-sequence token ends a choice.
    pub ending: Ending,
    /// Whether the answer carries log-probabilities.
    pub logprobs: bool,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether a streamed answer ends with a usage chunk.
    pub include_usage: bool,
    /// What the output must look like, and the field that asked for it.
    pub constraint: Option<FieldConstraint>,
    /// Functions shown to the model.
    pub tools: Vec<ToolSpec>,
    /// How the output is read back (text or tool calls).
    pub tool_output: ToolOutput,
    /// Whether each choice's prompt comes back before its output (legacy `echo`).
    pub echo: Option<Echo>,
}

/// A chat or completion request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedGeneration {
    /// The prompts, each continued `params.choices` times; choices are prompt-major.
    pub prompts: Vec<Prompt>,
    /// Where the prompt came from, for errors about it.
    pub prompt_field: PromptField,
    /// How to continue them.
    pub params: GenerationParams,
}

/// The fields chat and completion requests share, as sent.
struct CommonFields<'a> {
    n: u32,
    max_tokens: Option<u32>,
    /// Whether `max_tokens` may be 0 (an echoed prompt scored without a completion).
    zero_max_tokens: bool,
    stop: &'a [String],
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<u32>,
    seed: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    min_p: Option<f32>,
    repetition_penalty: Option<f32>,
    stop_token_ids: &'a [u32],
    min_tokens: Option<u32>,
    ignore_eos: Option<bool>,
    top_logprobs: Option<u32>,
    stream: bool,
    include_usage: bool,
}

/// vLLM's guided decoding fields of a chat or completion request.
macro_rules! guided_fields {
    ($request:expr) => {
        Guided {
            json: $request.guided_json.as_ref(),
            choice: $request.guided_choice.as_deref(),
            regex: $request.guided_regex.as_deref(),
        }
    };
}

/// The [`CommonFields`] of a chat or completion request (two wire types with the same field
/// names), with its own `max_tokens` and `top_logprobs`.
macro_rules! common_fields {
    ($request:expr, $max_tokens:expr, $top_logprobs:expr) => {
        CommonFields {
            n: $request.n(),
            max_tokens: $max_tokens,
            zero_max_tokens: false,
            stop: $request.stop_sequences(),
            temperature: $request.temperature,
            top_p: $request.top_p,
            top_k: $request.top_k,
            seed: $request.seed,
            presence_penalty: $request.presence_penalty,
            frequency_penalty: $request.frequency_penalty,
            min_p: $request.min_p,
            repetition_penalty: $request.repetition_penalty,
            stop_token_ids: $request.stop_token_ids.as_deref().unwrap_or_default(),
            min_tokens: $request.min_tokens,
            ignore_eos: $request.ignore_eos,
            top_logprobs: $top_logprobs,
            stream: $request.is_stream(),
            include_usage: $request.include_usage(),
        }
    };
}

impl GenerationRoute for ChatCompletionRequest {
    type Format = ChatFormat;

    fn model(&self) -> &str {
        &self.model
    }

    fn validate(&self) -> Result<ValidatedGeneration, ApiError> {
        chat(self)
    }

    fn settings(&self) {}
}

impl GenerationRoute for CompletionRequest {
    type Format = CompletionFormat;

    fn model(&self) -> &str {
        &self.model
    }

    fn validate(&self) -> Result<ValidatedGeneration, ApiError> {
        completion(self)
    }

    fn settings(&self) {}
}

/// Checks a chat request.
fn chat(request: &ChatCompletionRequest) -> Result<ValidatedGeneration, ApiError> {
    if request
        .logit_bias
        .as_ref()
        .is_some_and(|bias| !bias.is_empty())
    {
        return Err(invalid("logit_bias", "logit_bias is not supported"));
    }
    let structure = structured::chat_structure(
        request.tools.as_deref(),
        request.tool_choice.as_ref(),
        request.response_format.as_ref(),
        &guided_fields!(request),
    )?;
    let turns = chat_turns(&request.messages)?;
    let logprobs = request.logprobs.unwrap_or(false);
    if request.top_logprobs.is_some() && !logprobs {
        return Err(invalid(
            "top_logprobs",
            "'top_logprobs' needs 'logprobs' set to true",
        ));
    }
    let top_logprobs = logprobs.then(|| request.top_logprobs.unwrap_or(0));
    if logprobs && structure.output != ToolOutput::Text {
        return Err(invalid(
            "logprobs",
            "'logprobs' cannot be combined with tool calls",
        ));
    }
    let params = check(common_fields!(
        request,
        request.effective_max_tokens(),
        top_logprobs
    ))?;
    let params = structured_params(params, structure)?;
    Ok(ValidatedGeneration {
        prompts: vec![Prompt::Chat(turns)],
        prompt_field: PromptField::Messages,
        params,
    })
}

/// Checks a legacy completion request.
fn completion(request: &CompletionRequest) -> Result<ValidatedGeneration, ApiError> {
    if request.suffix.as_deref().is_some_and(|s| !s.is_empty()) {
        return Err(invalid("suffix", "suffix is not supported"));
    }
    if request.best_of.is_some_and(|b| b != request.n()) {
        return Err(invalid("best_of", "best_of other than n is not supported"));
    }
    if request.logit_bias.as_ref().is_some_and(|b| !b.is_empty()) {
        return Err(invalid("logit_bias", "logit_bias is not supported"));
    }
    if request.logprobs.is_some_and(|l| l > MAX_LEGACY_LOGPROBS) {
        return Err(invalid(
            "logprobs",
            format!("'logprobs' must be at most {MAX_LEGACY_LOGPROBS}"),
        ));
    }
    if request.prompt.is_empty() {
        return Err(invalid("prompt", "'prompt' must not be empty"));
    }
    let prompts = request
        .prompt
        .items()
        .map(|item| match item {
            InputItem::Text(text) => Prompt::Text(text.to_owned()),
            InputItem::Tokens(tokens) => Prompt::Tokens(tokens.to_vec()),
        })
        .collect();
    let echo = request.echo.unwrap_or(false);
    let params = check(CommonFields {
        zero_max_tokens: echo,
        ..common_fields!(request, Some(request.max_tokens()), request.logprobs)
    })?;
    let params = GenerationParams {
        echo: echo.then(|| Echo {
            logprobs: request.logprobs.map(|top| top as usize),
        }),
        ..params
    };
    let structure = Structure {
        constraint: structured::guided(&guided_fields!(request))?,
        ..Structure::default()
    };
    let params = structured_params(params, structure)?;
    Ok(ValidatedGeneration {
        prompts,
        prompt_field: PromptField::Prompt,
        params,
    })
}

/// `params` with the output's `structure`; a minimum length cannot be combined with a
/// constraint (a complete output may have to end before it).
fn structured_params(
    params: GenerationParams,
    structure: Structure,
) -> Result<GenerationParams, ApiError> {
    if let Some(constraint) = &structure.constraint {
        if params.ending.min_tokens > 0 {
            return Err(invalid(
                "min_tokens",
                format!(
                    "'min_tokens' cannot be combined with '{}'",
                    constraint.param
                ),
            ));
        }
    }
    Ok(GenerationParams {
        constraint: structure.constraint,
        tools: structure.tools,
        tool_output: structure.output,
        ..params
    })
}

/// The messages as template turns; content parts must be text.
pub fn chat_turns(messages: &[ChatMessage]) -> Result<Vec<ChatTurn>, ApiError> {
    if messages.is_empty() {
        return Err(invalid(
            "messages",
            "'messages' must contain at least one message",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, message)| {
            if let Some((j, part)) = message
                .content
                .as_ref()
                .and_then(|content| content.first_non_text_part())
            {
                return Err(invalid(
                    format!("messages[{i}].content[{j}]"),
                    format!(
                        "content parts of type '{}' are not supported by this model",
                        part.kind()
                    ),
                ));
            }
            let role = match message.role {
                Role::System | Role::Developer => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            if message.role == Role::Tool && message.tool_call_id.is_none() {
                return Err(invalid(
                    format!("messages[{i}].tool_call_id"),
                    "a tool message needs the 'tool_call_id' of the call it answers",
                ));
            }
            let mut turn = ChatTurn::new(role, message.text());
            turn.tool_call_id = message.tool_call_id.clone();
            turn.tool_calls = turn_tool_calls(message);
            Ok(turn)
        })
        .collect()
}

/// The tool calls of an assistant message as a template reads them (the arguments as JSON
/// where they parse).
fn turn_tool_calls(message: &ChatMessage) -> Vec<TurnToolCall> {
    let calls = message.tool_calls.as_deref().unwrap_or_default();
    calls
        .iter()
        .map(|call| TurnToolCall {
            id: call.id.clone(),
            kind: "function",
            function: TurnFunctionCall {
                name: call.function.name.clone(),
                arguments: serde_json::from_str(&call.function.arguments)
                    .unwrap_or_else(|_| serde_json::Value::String(call.function.arguments.clone())),
            },
        })
        .collect()
}

/// Checks the fields chat and completions share; a missing seed is drawn at random.
fn check(fields: CommonFields<'_>) -> Result<GenerationParams, ApiError> {
    if fields.n == 0 || fields.n > MAX_CHOICES {
        return Err(invalid(
            "n",
            format!(
                "{} is not a valid value for 'n': it must be between 1 and {MAX_CHOICES}",
                fields.n
            ),
        ));
    }
    if fields.stop.len() > MAX_STOP_SEQUENCES {
        return Err(invalid(
            "stop",
            format!("at most {MAX_STOP_SEQUENCES} stop sequences are allowed"),
        ));
    }
    if fields.max_tokens == Some(0) && !fields.zero_max_tokens {
        return Err(invalid(
            "max_tokens",
            "'max_tokens' must be at least 1 (0 only with 'echo')",
        ));
    }
    Ok(GenerationParams {
        choices: fields.n,
        max_tokens: fields.max_tokens.map(|m| m as usize),
        sampling: check_sampling(&fields)?,
        stop: fields.stop.to_vec(),
        ending: check_ending(&fields)?,
        logprobs: fields.top_logprobs.is_some(),
        stream: fields.stream,
        include_usage: fields.include_usage,
        constraint: None,
        tools: Vec::new(),
        tool_output: ToolOutput::Text,
        echo: None,
    })
}

fn check_sampling(fields: &CommonFields<'_>) -> Result<SamplingParams, ApiError> {
    in_range("temperature", fields.temperature, 0.0, 2.0)?;
    in_range("top_p", fields.top_p, 0.0, 1.0)?;
    in_range("presence_penalty", fields.presence_penalty, -2.0, 2.0)?;
    in_range("frequency_penalty", fields.frequency_penalty, -2.0, 2.0)?;
    in_range("min_p", fields.min_p, 0.0, 1.0)?;
    in_range("repetition_penalty", fields.repetition_penalty, 0.0, 2.0)?;
    if fields.top_p == Some(0.0) {
        return Err(invalid("top_p", "'top_p' must be greater than 0"));
    }
    if fields.repetition_penalty == Some(0.0) {
        return Err(invalid(
            "repetition_penalty",
            "'repetition_penalty' must be greater than 0",
        ));
    }
    if let Some(top) = fields.top_logprobs.filter(|&t| t > MAX_TOP_LOGPROBS) {
        return Err(invalid(
            "top_logprobs",
            format!("{top} is not a valid value for 'top_logprobs': at most {MAX_TOP_LOGPROBS}"),
        ));
    }
    Ok(SamplingParams {
        temperature: fields.temperature.unwrap_or(1.0),
        top_p: fields.top_p.unwrap_or(1.0),
        top_k: fields.top_k.unwrap_or(0) as usize,
        seed: fields
            .seed
            .map_or_else(rand::random, |seed| u64::from_ne_bytes(seed.to_ne_bytes())),
        presence_penalty: fields.presence_penalty.unwrap_or(0.0),
        frequency_penalty: fields.frequency_penalty.unwrap_or(0.0),
        top_logprobs: fields.top_logprobs.map(|t| t as usize),
        min_p: fields.min_p.unwrap_or(0.0),
        repetition_penalty: fields.repetition_penalty.unwrap_or(1.0),
    })
}

/// Checks vLLM's `stop_token_ids`, `min_tokens` and `ignore_eos`.
fn check_ending(fields: &CommonFields<'_>) -> Result<Ending, ApiError> {
    if fields.stop_token_ids.len() > MAX_STOP_TOKEN_IDS {
        return Err(invalid(
            "stop_token_ids",
            format!("at most {MAX_STOP_TOKEN_IDS} stop token ids are allowed"),
        ));
    }
    let min_tokens = fields.min_tokens.unwrap_or(0);
    if fields.max_tokens.is_some_and(|max| min_tokens > max) {
        return Err(invalid(
            "min_tokens",
            "'min_tokens' must not be greater than 'max_tokens'",
        ));
    }
    Ok(Ending {
        stop_token_ids: fields.stop_token_ids.to_vec(),
        min_tokens: min_tokens as usize,
        ignore_eos: fields.ignore_eos.unwrap_or(false),
    })
}

fn in_range(param: &str, value: Option<f32>, low: f32, high: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(low..=high).contains(&v) => Err(invalid(
            param,
            format!("{v} is not a valid value for '{param}': it must be between {low} and {high}"),
        )),
        _ => Ok(()),
    }
}

/// Refuses a request whose prompts × `n` exceed `max_choices`, before anything is queued;
/// the error names `n` when there is one prompt, else the prompt field.
pub fn check_choices(generation: &ValidatedGeneration, max_choices: usize) -> Result<(), ApiError> {
    let prompts = generation.prompts.len();
    let n = generation.params.choices as usize;
    let choices = prompts.saturating_mul(n);
    if choices <= max_choices {
        return Ok(());
    }
    let param = if prompts > 1 {
        generation.prompt_field.name()
    } else {
        "n"
    };
    Err(invalid(
        param,
        format!(
            "this request asks for {choices} choices ({prompts} prompts × n = {n}); at most \
             {max_choices} are allowed per request"
        ),
    ))
}

fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParam {
        message: message.into(),
        param: param.into(),
    }
}
