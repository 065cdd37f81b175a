//! `POST /v1/chat/completions` (served by the shared generation pipeline, checked in
//! `generation::validate`) and its answers: the chat wire shapes, whole (`chat.completion`) or
//! as `chat.completion.chunk`s.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::{FinishReason, TokenLogprob};
use gateway_core::openai::{
    ChatChoice, ChatChunkChoice, ChatCompletion, ChatCompletionChunk, ChatCompletionRequest,
    ChatDelta, ChoiceLogprobs, FinishReason as WireFinish, FunctionCall, FunctionCallDelta,
    ResponseMessage, Role, TokenLogprob as WireLogprob, ToolCall, ToolCallDelta, ToolType,
    TopLogprob, Usage,
};

use super::finish_reason;
use crate::accounting::MeterSlot;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::structured::{read_tool_calls, HeldOutput, Release, ToolOutput};
use crate::generation::{self, AnswerFormat, AnswerMeta, Collected, Delta};
use crate::sse;
use crate::state::AppState;

/// Handles `POST /v1/chat/completions` with the shared generation pipeline.
#[utoipa::path(
    post,
    path = "/v1/chat/completions",
    tag = "model",
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, whole (`chat.completion`) or, with \
                                      `stream: true`, as server-sent events of \
                                      `chat.completion.chunk`s ending with `data: [DONE]`.",
         content(
             (ChatCompletion = "application/json"),
             (ChatCompletionChunk = "text/event-stream"),
         )),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_chat_completion(
    state: State<Arc<AppState>>,
    key: ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    body: OpenAiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    generation::handle(state, key, slot, headers, body).await
}

/// The backend's log-probabilities in the chat wire shape.
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

/// Chat completions and their chunks; an answer read as tool calls is held back while it may
/// be one ([`HeldOutput`]).
pub struct ChatFormat {
    answer: AnswerMeta,
    held: Vec<HeldOutput>,
}

impl ChatFormat {
    fn chunk(&self, choice: ChatChunkChoice) -> Bytes {
        let answer = &self.answer;
        sse::event(&ChatCompletionChunk::new(
            &answer.id,
            answer.created,
            &answer.model,
            vec![choice],
        ))
    }

    /// A chunk of choice `index` with `delta` and, on its last, why it ended.
    fn delta_chunk(&self, index: u32, delta: ChatDelta, finish: Option<WireFinish>) -> Bytes {
        self.chunk(ChatChunkChoice {
            index,
            delta,
            finish_reason: finish,
            ..ChatChunkChoice::default()
        })
    }

    /// The chunk of a text delta, as every answer without tools streams it.
    fn text_chunk(&self, delta: Delta) -> Bytes {
        let Delta {
            choice,
            text,
            logprobs,
            finish,
        } = delta;
        let delta = ChatDelta {
            content: (!text.is_empty() || finish.is_none()).then_some(text),
            ..ChatDelta::default()
        };
        self.chunk(ChatChunkChoice {
            index: choice,
            delta,
            logprobs: (!logprobs.is_empty()).then(|| wire_logprobs(logprobs)),
            finish_reason: finish.map(finish_reason),
        })
    }

    /// A new id for a tool call.
    fn call_id() -> String {
        format!("call_{}", uuid::Uuid::new_v4().simple())
    }

    /// The arguments of a forced function, streamed as they come in its one call.
    fn arguments_chunk(&self, delta: Delta) -> Bytes {
        let mut chunks = Vec::new();
        if !delta.text.is_empty() {
            let call = ToolCallDelta {
                index: 0,
                function: Some(FunctionCallDelta {
                    name: None,
                    arguments: Some(delta.text),
                }),
                ..ToolCallDelta::default()
            };
            let tool_calls = ChatDelta {
                tool_calls: Some(vec![call]),
                ..ChatDelta::default()
            };
            chunks.push(self.delta_chunk(delta.choice, tool_calls, None));
        }
        if let Some(reason) = delta.finish {
            let finish = match reason {
                FinishReason::Stop => WireFinish::ToolCalls,
                other => finish_reason(other),
            };
            chunks.push(self.delta_chunk(delta.choice, ChatDelta::default(), Some(finish)));
        }
        chunks.concat().into()
    }

    /// A delta of an answer that may call tools: held back while it may be a call, streamed
    /// as text once it cannot, read into calls at its end.
    fn held_chunk(&mut self, delta: Delta) -> Bytes {
        let index = delta.choice as usize;
        if self.held.len() <= index {
            self.held.resize_with(index + 1, HeldOutput::default);
        }
        let release = self.held[index].push(&self.answer.tool_output, &delta.text, delta.finish);
        match release {
            Release::Nothing => Bytes::new(),
            Release::Text(text) => self.text_chunk(Delta { text, ..delta }),
            Release::Calls(calls) => {
                let calls = calls
                    .into_iter()
                    .zip(0u32..)
                    .map(|(call, index)| ToolCallDelta {
                        index,
                        id: Some(Self::call_id()),
                        kind: Some(ToolType::Function),
                        function: Some(FunctionCallDelta {
                            name: Some(call.name),
                            arguments: Some(call.arguments),
                        }),
                    })
                    .collect();
                let tool_calls = ChatDelta {
                    tool_calls: Some(calls),
                    ..ChatDelta::default()
                };
                let calls = self.delta_chunk(delta.choice, tool_calls, None);
                let finish = Some(WireFinish::ToolCalls);
                let end = self.delta_chunk(delta.choice, ChatDelta::default(), finish);
                [calls, end].concat().into()
            }
        }
    }

    /// A choice's whole message: its tool calls when it made some, else its text.
    fn message(&self, choice: &Collected) -> (ResponseMessage, Option<WireFinish>) {
        let calls = match choice.finish {
            Some(FinishReason::Stop) => read_tool_calls(&self.answer.tool_output, &choice.text),
            _ => None,
        };
        match calls {
            Some(calls) => {
                let calls = calls
                    .into_iter()
                    .map(|call| ToolCall {
                        id: Self::call_id(),
                        kind: ToolType::Function,
                        function: FunctionCall {
                            name: call.name,
                            arguments: call.arguments,
                        },
                    })
                    .collect();
                (
                    ResponseMessage::tool_calls(calls),
                    Some(WireFinish::ToolCalls),
                )
            }
            None => (
                ResponseMessage::text(choice.text.clone()),
                choice.finish.map(finish_reason),
            ),
        }
    }
}

impl AnswerFormat for ChatFormat {
    const ID_PREFIX: &'static str = "chatcmpl-";

    type Settings = ();

    fn new(answer: AnswerMeta, (): ()) -> Self {
        Self {
            answer,
            held: Vec::new(),
        }
    }

    fn opening(&mut self, choice: u32) -> Option<Bytes> {
        let delta = match &self.answer.tool_output {
            ToolOutput::Arguments { name } => ChatDelta {
                role: Some(Role::Assistant),
                tool_calls: Some(vec![ToolCallDelta {
                    index: 0,
                    id: Some(Self::call_id()),
                    kind: Some(ToolType::Function),
                    function: Some(FunctionCallDelta {
                        name: Some(name.clone()),
                        arguments: Some(String::new()),
                    }),
                }]),
                ..ChatDelta::default()
            },
            _ => ChatDelta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..ChatDelta::default()
            },
        };
        Some(self.delta_chunk(choice, delta, None))
    }

    fn delta(&mut self, delta: Delta) -> Bytes {
        match self.answer.tool_output {
            ToolOutput::Text => self.text_chunk(delta),
            ToolOutput::Arguments { .. } => self.arguments_chunk(delta),
            ToolOutput::AnyCall | ToolOutput::Auto { .. } => self.held_chunk(delta),
        }
    }

    fn closing(&mut self, usage: Usage, include_usage: bool) -> Bytes {
        let answer = &self.answer;
        let chunk =
            ChatCompletionChunk::usage_chunk(&answer.id, answer.created, &answer.model, usage);
        sse::closing(include_usage.then(|| sse::event(&chunk)))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let choices = choices
            .into_iter()
            .zip(0u32..)
            .map(|(choice, index)| {
                let (message, finish_reason) = self.message(&choice);
                ChatChoice {
                    index,
                    message,
                    logprobs: self.answer.logprobs.then(|| wire_logprobs(choice.logprobs)),
                    finish_reason,
                }
            })
            .collect();
        let answer = &self.answer;
        let completion =
            ChatCompletion::new(&answer.id, answer.created, &answer.model, choices, usage);
        Json(completion).into_response()
    }
}
