//! `POST /v1/responses`, the Responses API (served by the shared generation pipeline, checked
//! in `generation::validate`), and its answers: the whole response object, or the server-sent
//! events the SDKs read (`response.created`, `response.output_text.delta`,
//! `response.function_call_arguments.delta`, …, `response.completed`). Nothing is kept: every
//! response says `store: false`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use gateway_backend::FinishReason;
use gateway_core::openai::{
    IncompleteDetails, OutputItem, OutputText, ResponseObject, ResponseRequest, ResponseStatus,
    ResponseTool, ResponseToolChoice, ResponseUsage, TextOptions, ToolChoiceMode, Usage,
};
use serde_json::{json, Map, Value};

use crate::accounting::MeterSlot;
use crate::error::ApiError;
use crate::extract::{ApiKey, OpenAiJson};
use crate::generation::structured::{read_tool_calls, HeldOutput, ReadCall, Release, ToolOutput};
use crate::generation::{self, AnswerFormat, AnswerMeta, Collected, Delta};
use crate::state::AppState;

/// Handles `POST /v1/responses` with the shared generation pipeline.
#[utoipa::path(
    post,
    path = "/v1/responses",
    tag = "model",
    request_body = ResponseRequest,
    responses(
        (status = 200, description = "The response, whole or, with `stream: true`, as \
                                      server-sent events ending with `response.completed` \
                                      (or `response.incomplete`).",
         content(
             (ResponseObject = "application/json"),
             (gateway_core::openai::ResponseEvent = "text/event-stream"),
         )),
        crate::openapi::ModelErrors,
    ),
    security(("api_key" = []))
)]
pub async fn create_response(
    state: State<Arc<AppState>>,
    key: ApiKey,
    slot: MeterSlot,
    headers: HeaderMap,
    body: OpenAiJson<ResponseRequest>,
) -> Result<Response, ApiError> {
    generation::handle(state, key, slot, headers, body).await
}

/// What a response echoes of its request.
#[derive(Debug, Clone, Default)]
pub struct ResponseSettings {
    instructions: Option<String>,
    max_output_tokens: Option<u32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    tools: Vec<ResponseTool>,
    tool_choice: Option<ResponseToolChoice>,
    parallel_tool_calls: Option<bool>,
    text: Option<TextOptions>,
    metadata: Option<BTreeMap<String, String>>,
    user: Option<String>,
}

impl ResponseSettings {
    /// The settings of `request`.
    pub fn of(request: &ResponseRequest) -> Self {
        Self {
            instructions: request.instructions.clone(),
            max_output_tokens: request.max_output_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            tools: request.tools.clone().unwrap_or_default(),
            tool_choice: request.tool_choice.clone(),
            parallel_tool_calls: request.parallel_tool_calls,
            text: request.text.clone(),
            metadata: request.metadata.clone(),
            user: request.user.clone(),
        }
    }
}

/// The response object and its stream events.
pub struct ResponsesFormat {
    answer: AnswerMeta,
    settings: ResponseSettings,
    /// The next event's `sequence_number`.
    sequence: u64,
    /// The output held back while it may be a tool call.
    held: HeldOutput,
    /// The message's id once it was opened, and its text so far.
    message: Option<(String, String)>,
    /// The streamed output items that ended.
    done: Vec<OutputItem>,
    /// The forced function's call while its arguments stream: id, call id, arguments.
    forced_call: Option<(String, String, String)>,
    /// Why the output ended.
    finish: Option<FinishReason>,
}

impl ResponsesFormat {
    /// The response object with `output` and `usage`.
    fn object(
        &self,
        output: Vec<OutputItem>,
        status: ResponseStatus,
        usage: Option<ResponseUsage>,
    ) -> ResponseObject {
        let settings = &self.settings;
        ResponseObject {
            id: self.answer.id.clone(),
            object: "response".to_owned(),
            created_at: self.answer.created,
            status,
            incomplete_details: (status == ResponseStatus::Incomplete).then(|| IncompleteDetails {
                reason: "max_output_tokens".to_owned(),
            }),
            error: None,
            model: self.answer.model.clone(),
            output,
            usage,
            store: false,
            previous_response_id: None,
            instructions: settings.instructions.clone(),
            max_output_tokens: settings.max_output_tokens,
            temperature: settings.temperature,
            top_p: settings.top_p,
            tools: settings.tools.clone(),
            tool_choice: settings
                .tool_choice
                .clone()
                .unwrap_or(ResponseToolChoice::Mode(ToolChoiceMode::Auto)),
            parallel_tool_calls: settings.parallel_tool_calls.unwrap_or(true),
            text: settings.text.clone().unwrap_or_default(),
            metadata: settings.metadata.clone().unwrap_or_default(),
            user: settings.user.clone(),
        }
    }

    /// One event: `event: <type>` and its JSON with the next sequence number.
    fn event(&mut self, kind: &str, fields: Value) -> Bytes {
        let mut body = Map::new();
        body.insert("type".to_owned(), json!(kind));
        body.insert("sequence_number".to_owned(), json!(self.sequence));
        if let Value::Object(fields) = fields {
            body.extend(fields);
        }
        self.sequence += 1;
        let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".to_owned());
        Bytes::from(format!("event: {kind}\ndata: {json}\n\n"))
    }

    /// The status of output that ended for `finish`.
    fn status(finish: Option<FinishReason>) -> ResponseStatus {
        match finish {
            Some(FinishReason::Length) => ResponseStatus::Incomplete,
            _ => ResponseStatus::Completed,
        }
    }

    /// Opens the message (its item and its text part) unless it is open.
    fn open_message(&mut self, events: &mut Vec<Bytes>) {
        if self.message.is_some() {
            return;
        }
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let item = OutputItem::Message {
            id: id.clone(),
            status: ResponseStatus::InProgress,
            role: "assistant".to_owned(),
            content: Vec::new(),
        };
        let output_index = self.done.len();
        events.push(self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": item}),
        ));
        events.push(self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": output_index, "content_index": 0,
                   "part": OutputText::new("")}),
        ));
        self.message = Some((id, String::new()));
    }

    /// Streams `text` of the message, and closes it when `finish` is given.
    fn message_events(&mut self, text: String, finish: Option<FinishReason>) -> Vec<Bytes> {
        let mut events = Vec::new();
        self.open_message(&mut events);
        let output_index = self.done.len();
        let Some((id, _)) = self.message.clone() else {
            return events;
        };
        if !text.is_empty() {
            events.push(self.event(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": output_index, "content_index": 0,
                       "delta": text, "logprobs": []}),
            ));
            if let Some((_, whole)) = &mut self.message {
                whole.push_str(&text);
            }
        }
        if finish.is_some() {
            let whole = self
                .message
                .take()
                .map(|(_, text)| text)
                .unwrap_or_default();
            let location = json!({"item_id": id, "output_index": output_index, "content_index": 0});
            let mut done = location.clone();
            done["text"] = json!(whole);
            done["logprobs"] = json!([]);
            events.push(self.event("response.output_text.done", done));
            let mut part = location;
            part["part"] = json!(OutputText::new(whole.clone()));
            events.push(self.event("response.content_part.done", part));
            let item = OutputItem::Message {
                id,
                status: Self::status(finish),
                role: "assistant".to_owned(),
                content: vec![OutputText::new(whole)],
            };
            events.push(self.event(
                "response.output_item.done",
                json!({"output_index": output_index, "item": item}),
            ));
            self.done.push(item);
        }
        events
    }

    /// The events of whole function calls read at the end of the output.
    fn call_events(&mut self, calls: Vec<ReadCall>) -> Vec<Bytes> {
        let mut events = Vec::new();
        for call in calls {
            let (id, call_id) = new_call_ids();
            let output_index = self.done.len();
            let opened = function_call(&id, &call_id, &call.name, "", ResponseStatus::InProgress);
            events.push(self.event(
                "response.output_item.added",
                json!({"output_index": output_index, "item": opened}),
            ));
            let location = json!({"item_id": id, "output_index": output_index});
            let mut delta = location.clone();
            delta["delta"] = json!(call.arguments);
            events.push(self.event("response.function_call_arguments.delta", delta));
            let mut done = location;
            done["arguments"] = json!(call.arguments);
            events.push(self.event("response.function_call_arguments.done", done));
            let item = function_call(
                &id,
                &call_id,
                &call.name,
                &call.arguments,
                ResponseStatus::Completed,
            );
            events.push(self.event(
                "response.output_item.done",
                json!({"output_index": output_index, "item": item}),
            ));
            self.done.push(item);
        }
        events
    }

    /// The events of a forced function's arguments, streamed as they come.
    fn forced_events(&mut self, name: &str, delta: Delta) -> Vec<Bytes> {
        let mut events = Vec::new();
        let output_index = self.done.len();
        let Some((id, call_id, mut arguments)) = self.forced_call.take() else {
            return events;
        };
        if !delta.text.is_empty() {
            arguments.push_str(&delta.text);
            events.push(self.event(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": output_index, "delta": delta.text}),
            ));
        }
        if delta.finish.is_none() {
            self.forced_call = Some((id, call_id, arguments));
            return events;
        }
        events.push(self.event(
            "response.function_call_arguments.done",
            json!({"item_id": id, "output_index": output_index, "arguments": arguments}),
        ));
        let item = function_call(&id, &call_id, name, &arguments, Self::status(delta.finish));
        events.push(self.event(
            "response.output_item.done",
            json!({"output_index": output_index, "item": item}),
        ));
        self.done.push(item);
        events
    }

    /// The output items of a whole answer.
    fn output(&self, choice: &Collected) -> Vec<OutputItem> {
        let calls = match choice.finish {
            Some(FinishReason::Stop) => read_tool_calls(&self.answer.tool_output, &choice.text),
            _ => None,
        };
        match calls {
            Some(calls) => calls
                .into_iter()
                .map(|call| {
                    let (id, call_id) = new_call_ids();
                    function_call(
                        &id,
                        &call_id,
                        &call.name,
                        &call.arguments,
                        ResponseStatus::Completed,
                    )
                })
                .collect(),
            None => vec![OutputItem::Message {
                id: format!("msg_{}", uuid::Uuid::new_v4().simple()),
                status: Self::status(choice.finish),
                role: "assistant".to_owned(),
                content: vec![OutputText::new(choice.text.clone())],
            }],
        }
    }
}

/// A new function call's item id and call id.
fn new_call_ids() -> (String, String) {
    let id = uuid::Uuid::new_v4().simple();
    (format!("fc_{id}"), format!("call_{id}"))
}

fn function_call(
    id: &str,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: ResponseStatus,
) -> OutputItem {
    OutputItem::FunctionCall {
        id: id.to_owned(),
        call_id: call_id.to_owned(),
        name: name.to_owned(),
        arguments: arguments.to_owned(),
        status,
    }
}

/// The Responses API's usage of the gateway's usage, cached prompt tokens included.
fn response_usage(usage: &Usage) -> ResponseUsage {
    ResponseUsage::new(usage.prompt_tokens, usage.completion_tokens)
        .with_cached_tokens(usage.cached_tokens())
}

impl AnswerFormat for ResponsesFormat {
    const ID_PREFIX: &'static str = "resp_";
    type Settings = ResponseSettings;

    fn new(answer: AnswerMeta, settings: ResponseSettings) -> Self {
        Self {
            answer,
            settings,
            sequence: 0,
            held: HeldOutput::default(),
            message: None,
            done: Vec::new(),
            forced_call: None,
            finish: None,
        }
    }

    fn opening(&mut self, _choice: u32) -> Option<Bytes> {
        let response = self.object(Vec::new(), ResponseStatus::InProgress, None);
        let mut events = vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ];
        if let ToolOutput::Arguments { name } = &self.answer.tool_output {
            let (id, call_id) = new_call_ids();
            let item = function_call(&id, &call_id, name, "", ResponseStatus::InProgress);
            events.push(self.event(
                "response.output_item.added",
                json!({"output_index": 0, "item": item}),
            ));
            self.forced_call = Some((id, call_id, String::new()));
        }
        Some(events.concat().into())
    }

    fn delta(&mut self, delta: Delta) -> Bytes {
        self.finish = delta.finish.or(self.finish);
        let events = match self.answer.tool_output.clone() {
            ToolOutput::Text => self.message_events(delta.text, delta.finish),
            ToolOutput::Arguments { name } => self.forced_events(&name, delta),
            output @ (ToolOutput::AnyCall | ToolOutput::Auto { .. }) => {
                match self.held.push(&output, &delta.text, delta.finish) {
                    Release::Nothing => Vec::new(),
                    Release::Text(text) => self.message_events(text, delta.finish),
                    Release::Calls(calls) => self.call_events(calls),
                }
            }
        };
        events.concat().into()
    }

    fn closing(&mut self, usage: Usage, _include_usage: bool) -> Bytes {
        let status = Self::status(self.finish);
        let output = std::mem::take(&mut self.done);
        let response = self.object(output, status, Some(response_usage(&usage)));
        let kind = match status {
            ResponseStatus::Incomplete => "response.incomplete",
            _ => "response.completed",
        };
        self.event(kind, json!({"response": response}))
    }

    fn whole(&self, choices: Vec<Collected>, usage: Usage) -> Response {
        let Some(choice) = choices.first() else {
            let empty = self.object(
                Vec::new(),
                ResponseStatus::Completed,
                Some(response_usage(&usage)),
            );
            return Json(empty).into_response();
        };
        let status = Self::status(choice.finish);
        let response = self.object(self.output(choice), status, Some(response_usage(&usage)));
        Json(response).into_response()
    }
}
