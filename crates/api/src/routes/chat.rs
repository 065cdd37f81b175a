//! `POST /v1/chat/completions`: checks the request into a rendered, tokenized prompt with
//! checked sampling parameters (errors name the parameter), runs one generation per choice and
//! answers with the whole completion or a stream of chunks.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_core::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChatMessage, ChoiceLogprobs, ResponseFormat, ResponseMessage, Role,
    TokenLogprob as WireLogprob, TopLogprob, Usage,
};
use gateway_engine::{ChatTurn, FinishReason, TokenLogprob};

use super::completions::{finish_reason, request_id};
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::{self, SamplingFields, UsageMeter};
use crate::sse::{self, ChunkFormat};
use crate::state::AppState;

/// Handles `POST /v1/chat/completions`.
pub async fn create_chat_completion(
    State(state): State<Arc<AppState>>,
    ApiKey(key): ApiKey,
    headers: HeaderMap,
    OpenAiJson(request): OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let backend = Arc::clone(&state.models.permitted(&request.model, &key)?.backend);
    check_unsupported(&request)?;
    let turns = chat_turns(&request.messages)?;
    let prompt = backend.render_chat(&turns)?;
    let max_tokens = generation::max_tokens_for(
        backend.as_ref(),
        prompt.len(),
        request.effective_max_tokens(),
        "max_tokens",
        "messages",
    )?;
    let n = request.n();
    generation::check_choices(n, request.stop_sequences())?;
    let logprobs = request.logprobs.unwrap_or(false);
    if request.top_logprobs.is_some() && !logprobs {
        return Err(ApiError::InvalidParam {
            message: "'top_logprobs' needs 'logprobs' set to true".to_owned(),
            param: "top_logprobs".to_owned(),
        });
    }
    let sampling = generation::check_sampling(SamplingFields {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k,
        seed: request.seed,
        presence_penalty: request.presence_penalty,
        frequency_penalty: request.frequency_penalty,
        top_logprobs: logprobs.then(|| request.top_logprobs.unwrap_or(0)),
    })?;
    let prompt_tokens = prompt.len();
    let streams = generation::start(
        backend.as_ref(),
        &[(prompt, max_tokens)],
        n,
        sampling,
        request.stop_sequences(),
    )
    .await?;
    let mut meter = UsageMeter::new(
        Arc::clone(&state),
        &request.model,
        request_id(&headers),
        prompt_tokens,
    );
    let id = format!("chatcmpl-{}", uuid::Uuid::new_v4().simple());
    let created = chrono::Utc::now().timestamp();
    if request.is_stream() {
        let format = ChatFormat {
            id,
            created,
            model: request.model.clone(),
        };
        let events = generation::merge(streams);
        return Ok(sse::stream_response(
            format,
            n,
            events,
            meter,
            request.include_usage(),
        ));
    }
    let choices = generation::collect(streams, &mut meter).await?;
    let choices = choices
        .into_iter()
        .zip(0u32..)
        .map(|(choice, index)| ChatChoice {
            index,
            message: ResponseMessage::text(choice.text),
            logprobs: logprobs.then(|| wire_logprobs(choice.logprobs)),
            finish_reason: choice.finish.map(finish_reason),
        })
        .collect();
    let completion = ChatCompletion::new(id, created, request.model, choices, meter.usage());
    Ok(Json(completion).into_response())
}

/// Parameters this gateway does not implement are refused, never silently ignored.
fn check_unsupported(request: &ChatCompletionRequest) -> Result<(), ApiError> {
    let refuse = |param: &str, message: &str| {
        Err(ApiError::InvalidParam {
            message: message.to_owned(),
            param: param.to_owned(),
        })
    };
    if request
        .tools
        .as_ref()
        .is_some_and(|tools| !tools.is_empty())
    {
        return refuse("tools", "this model's chat template does not support tools");
    }
    if request.tool_choice.is_some() {
        return refuse(
            "tool_choice",
            "this model's chat template does not support tools",
        );
    }
    match &request.response_format {
        Some(ResponseFormat::JsonSchema { .. }) => {
            return refuse(
                "response_format",
                "response_format json_schema is not supported",
            )
        }
        Some(ResponseFormat::JsonObject) => {
            return refuse(
                "response_format",
                "response_format json_object is not supported",
            )
        }
        _ => {}
    }
    if request
        .logit_bias
        .as_ref()
        .is_some_and(|bias| !bias.is_empty())
    {
        return refuse("logit_bias", "logit_bias is not supported");
    }
    Ok(())
}

/// The messages as template turns; content parts must be text.
pub(crate) fn chat_turns(messages: &[ChatMessage]) -> Result<Vec<ChatTurn>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::InvalidParam {
            message: "'messages' must contain at least one message".to_owned(),
            param: "messages".to_owned(),
        });
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
                return Err(ApiError::InvalidParam {
                    message: format!(
                        "content parts of type '{}' are not supported by this model",
                        part.kind()
                    ),
                    param: format!("messages[{i}].content[{j}]"),
                });
            }
            let role = match message.role {
                Role::System | Role::Developer => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => {
                    return Err(ApiError::InvalidParam {
                        message: "tool messages are not supported by this model".to_owned(),
                        param: format!("messages[{i}].role"),
                    })
                }
            };
            Ok(ChatTurn {
                role: role.to_owned(),
                content: message.text().into_owned(),
            })
        })
        .collect()
}

/// The engine's log-probabilities in the chat wire shape.
fn wire_logprobs(logprobs: Vec<TokenLogprob>) -> ChoiceLogprobs {
    let content = logprobs
        .into_iter()
        .map(|lp| WireLogprob {
            token: lp.text,
            logprob: lp.logprob,
            bytes: Some(lp.bytes),
            top_logprobs: lp
                .top
                .into_iter()
                .map(|(token, bytes, logprob)| TopLogprob {
                    token,
                    logprob,
                    bytes: Some(bytes),
                })
                .collect(),
        })
        .collect();
    ChoiceLogprobs {
        content: Some(content),
        refusal: None,
    }
}

/// Chat completion chunks.
struct ChatFormat {
    id: String,
    created: i64,
    model: String,
}

impl ChatFormat {
    fn chunk(&self, choice: ChatChunkChoice) -> ChatCompletionChunk {
        ChatCompletionChunk::new(&self.id, self.created, &self.model, vec![choice])
    }
}

impl ChunkFormat for ChatFormat {
    fn opening(&self, index: u32) -> Option<axum::body::Bytes> {
        let delta = ChatDelta {
            role: Some(Role::Assistant),
            content: Some(String::new()),
            ..ChatDelta::default()
        };
        Some(sse::event(&self.chunk(ChatChunkChoice {
            index,
            delta,
            ..ChatChunkChoice::default()
        })))
    }

    fn delta(
        &self,
        index: u32,
        text: String,
        logprobs: Vec<TokenLogprob>,
        finish: Option<FinishReason>,
    ) -> axum::body::Bytes {
        let delta = ChatDelta {
            content: (!text.is_empty() || finish.is_none()).then_some(text),
            ..ChatDelta::default()
        };
        sse::event(&self.chunk(ChatChunkChoice {
            index,
            delta,
            logprobs: (!logprobs.is_empty()).then(|| wire_logprobs(logprobs)),
            finish_reason: finish.map(finish_reason),
        }))
    }

    fn usage(&self, usage: Usage) -> axum::body::Bytes {
        sse::event(&ChatCompletionChunk::usage_chunk(
            &self.id,
            self.created,
            &self.model,
            usage,
        ))
    }
}
