//! A fixed-latency OpenAI-compatible server: the upstream of the gateway's overhead benchmark
//! (`bench/overhead.sh`) and of tests of the gateway's upstream backend.
//!
//! It answers every chat, completion and embedding request after a set delay, with
//! deterministic content, so that a request sent through the gateway and the same request sent
//! here directly differ only by what the gateway adds. It does no per-request logging and keeps
//! its work per request to parsing the body and formatting a few hundred bytes.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions`, `POST /v1/embeddings`,
//! `GET /v1/models`, `GET /health`. Any model name is accepted and echoed back.
//!
//! - Not streamed: the answer (`chat.completion` / `text_completion`) comes after `--delay-ms`.
//!   Each choice's content is `word0 word1 …`, one word per token, `--chunks` tokens (fewer when
//!   `max_tokens` / `max_completion_tokens` is smaller; then `finish_reason` is `length`).
//! - Streamed (`"stream": true`): the response head comes at once; after `--delay-ms` the first
//!   chunk (for chat the role chunk, `delta: {role: "assistant", content: ""}`), then one chunk
//!   per token, each `--chunk-delay-ms` after the previous, then per choice a chunk with the
//!   `finish_reason`, then, when the request asked for `stream_options.include_usage`, the usage
//!   chunk (`choices: []`; the other chunks then carry `usage: null`, as OpenAI's do), then
//!   `data: [DONE]`. `n` (and a completion's list of prompts) give choices `0..prompts × n`.
//! - Usage: `prompt_tokens` is the number of whitespace-separated words of every message
//!   content (text parts included) or prompt (a token array counts its length),
//!   `completion_tokens` the tokens generated over all choices. `--no-usage` leaves usage out
//!   of every answer (no `usage` field, no usage chunk), like servers that report none.
//! - Embeddings: `input` as a string, a list of strings, a token array or a list of them;
//!   `--dimensions` floats per input, deterministic for its text and normalized to length 1;
//!   `encoding_format: "base64"` is honoured.
//!
//! Once it listens it prints one line, `{"base_url": "http://ADDR/v1"}`, on standard output.
//! It stops on SIGTERM, Ctrl-C or when its standard input closes (the process that started it
//! is gone).
//!
//! Usage: `fixed_upstream [--listen ADDR] [--delay-ms D] [--chunks K] [--chunk-delay-ms C]
//! [--threads T] [--dimensions N] [--model NAME]… [--no-usage]`; defaults `127.0.0.1:0` (a free
//! port), 20, 4, 0, 1 worker thread, 8, `fixed`.

use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::Router;
use base64::Engine as _;
use futures::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

/// Most choices (prompts × `n`) one request may ask for.
const MAX_CHOICES: usize = 128;

/// What the command line set.
#[derive(Debug, Clone)]
struct Settings {
    /// Address to listen on.
    listen: String,
    /// Time before the answer, or before a stream's first chunk.
    delay: Duration,
    /// Tokens (stream chunks) per choice.
    chunks: usize,
    /// Time between two chunks of a stream.
    chunk_delay: Duration,
    /// Worker threads of the async runtime.
    threads: usize,
    /// Floats per embedding.
    dimensions: usize,
    /// Model ids `/v1/models` lists.
    models: Vec<String>,
    /// Whether answers leave usage out.
    no_usage: bool,
}

impl Settings {
    /// Reads the arguments after the program name.
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let mut settings = Self {
            listen: "127.0.0.1:0".to_owned(),
            delay: Duration::from_millis(20),
            chunks: 4,
            chunk_delay: Duration::ZERO,
            threads: 1,
            dimensions: 8,
            models: Vec::new(),
            no_usage: false,
        };
        while let Some(flag) = args.next() {
            if flag == "--no-usage" {
                settings.no_usage = true;
                continue;
            }
            const VALUED: [&str; 7] = [
                "--listen",
                "--delay-ms",
                "--chunks",
                "--chunk-delay-ms",
                "--threads",
                "--dimensions",
                "--model",
            ];
            if !VALUED.contains(&flag.as_str()) {
                return Err(format!("unknown argument {flag}"));
            }
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || {
                value
                    .parse::<u64>()
                    .map_err(|error| format!("{flag} {value}: {error}"))
            };
            match flag.as_str() {
                "--listen" => settings.listen = value.clone(),
                "--delay-ms" => settings.delay = Duration::from_millis(number()?),
                "--chunks" => settings.chunks = to_usize(number()?)?,
                "--chunk-delay-ms" => settings.chunk_delay = Duration::from_millis(number()?),
                "--threads" => settings.threads = to_usize(number()?)?.max(1),
                "--dimensions" => settings.dimensions = to_usize(number()?)?.max(1),
                "--model" => settings.models.push(value.clone()),
                _ => {} // not among VALUED: refused above
            }
        }
        if settings.models.is_empty() {
            settings.models.push("fixed".to_owned());
        }
        Ok(settings)
    }
}

/// A count from the command line as a `usize`.
fn to_usize(value: u64) -> Result<usize, String> {
    usize::try_from(value).map_err(|error| error.to_string())
}

/// What the handlers share.
struct Upstream {
    /// The command line's settings.
    settings: Settings,
    /// The token texts: `word0`, ` word1`, … (`settings.chunks` of them).
    tokens: Vec<String>,
    /// Counter behind the answers' ids.
    next_id: AtomicU64,
    /// `/v1/models`, serialized once.
    models: Bytes,
}

impl Upstream {
    /// A fresh answer id with `prefix`.
    fn id(&self, prefix: &str) -> String {
        format!(
            "{prefix}-fixed{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

/// The fields of a chat or completion request this server reads (others are ignored).
#[derive(Debug, Deserialize)]
struct GenerationRequest {
    /// Echoed back as the answer's model.
    model: String,
    /// Chat: the messages, whose contents count as prompt tokens.
    #[serde(default)]
    messages: Option<Vec<Value>>,
    /// Completions: a string, a list of strings, a token array or a list of them.
    #[serde(default)]
    prompt: Option<Value>,
    /// Whether to stream.
    #[serde(default)]
    stream: Option<bool>,
    /// Stream options (`include_usage`).
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// Choices per prompt.
    #[serde(default)]
    n: Option<u64>,
    /// Most tokens per choice.
    #[serde(default)]
    max_tokens: Option<u64>,
    /// Most tokens per choice (the newer name).
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// `stream_options` of a request.
#[derive(Debug, Deserialize)]
struct StreamOptions {
    /// Whether a usage chunk ends the stream.
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The fields of an embeddings request this server reads.
#[derive(Debug, Deserialize)]
struct EmbeddingRequest {
    /// Echoed back as the answer's model.
    model: String,
    /// A string, a list of strings, a token array or a list of them.
    input: Value,
    /// `float` (default) or `base64`.
    #[serde(default)]
    encoding_format: Option<String>,
}

/// Chat or legacy completion: what differs between the two in the answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

fn main() -> Result<(), Box<dyn Error>> {
    let settings = Settings::parse(std::env::args().skip(1))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run(settings));
    // The read of standard input blocks a thread of the blocking pool until input closes:
    // waiting for it, as dropping the runtime does, would keep a stopped server alive.
    runtime.shutdown_background();
    result
}

/// Listens, announces the address and serves until told to stop.
async fn run(settings: Settings) -> Result<(), Box<dyn Error>> {
    let tokens = (0..settings.chunks)
        .map(|i| {
            if i == 0 {
                "word0".to_owned()
            } else {
                format!(" word{i}")
            }
        })
        .collect();
    let models: Vec<Value> = settings
        .models
        .iter()
        .map(|id| json!({"id": id, "object": "model", "created": 0, "owned_by": "fixed-upstream"}))
        .collect();
    let models = Bytes::from(serde_json::to_vec(
        &json!({"object": "list", "data": models}),
    )?);
    let listener = tokio::net::TcpListener::bind(&settings.listen).await?;
    let local = listener.local_addr()?;
    let state = Arc::new(Upstream {
        settings,
        tokens,
        next_id: AtomicU64::new(0),
        models,
    });
    let router = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completion))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(list_models))
        .route("/health", get(health))
        .with_state(state);
    // Registered before the address is announced, so that a SIGTERM sent right after it
    // already stops the server gracefully.
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    println!("{}", json!({"base_url": format!("http://{local}/v1")}));
    // Streams write small chunks one after the other: without TCP_NODELAY, Nagle's algorithm
    // would hold each behind the acknowledgement of the previous one.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    axum::serve(listener, router)
        .with_graceful_shutdown(stopped(terminate))
        .await?;
    Ok(())
}

/// Resolves on SIGTERM (`terminate`), Ctrl-C or when standard input closes.
async fn stopped(mut terminate: tokio::signal::unix::Signal) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 64];
    let closed = async move { while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {} };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        () = closed => {}
    }
}

/// `GET /health`.
async fn health() -> Response {
    json_response(StatusCode::OK, Bytes::from_static(b"{\"status\":\"ok\"}"))
}

/// `GET /v1/models`.
async fn list_models(State(upstream): State<Arc<Upstream>>) -> Response {
    json_response(StatusCode::OK, upstream.models.clone())
}

/// `POST /v1/chat/completions`.
async fn chat(State(upstream): State<Arc<Upstream>>, body: Bytes) -> Response {
    generate(&upstream, Kind::Chat, &body).await
}

/// `POST /v1/completions`.
async fn completion(State(upstream): State<Arc<Upstream>>, body: Bytes) -> Response {
    generate(&upstream, Kind::Completion, &body).await
}

/// A JSON answer with `status`.
fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// An OpenAI-shaped 400 answer.
fn bad_request(message: &str) -> Response {
    let error = json!({"error": {
        "message": message, "type": "invalid_request_error", "param": null, "code": null,
    }});
    json_response(
        StatusCode::BAD_REQUEST,
        Bytes::from(error.to_string().into_bytes()),
    )
}

/// Seconds since the Unix epoch.
fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Whitespace-separated words of the text in `value` (strings, text parts, nested lists),
/// numbers counting one each (token arrays).
fn words(value: &Value) -> u64 {
    match value {
        Value::String(text) => text.split_whitespace().count() as u64,
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(words).sum(),
        Value::Object(fields) => fields
            .get("content")
            .or_else(|| fields.get("text"))
            .map_or(0, words),
        Value::Null | Value::Bool(_) => 0,
    }
}

/// The prompts of a completion request: one per string or token array.
fn prompt_count(prompt: &Value) -> usize {
    match prompt {
        Value::Array(items) if items.iter().all(|item| !item.is_number()) => items.len().max(1),
        _ => 1,
    }
}

/// Answers a chat or completion request.
async fn generate(upstream: &Upstream, kind: Kind, body: &[u8]) -> Response {
    let request: GenerationRequest = match serde_json::from_slice(body) {
        Ok(request) => request,
        Err(error) => return bad_request(&format!("invalid request body: {error}")),
    };
    let (prompt_tokens, prompts) = match kind {
        Kind::Chat => match &request.messages {
            Some(messages) => (messages.iter().map(words).sum::<u64>(), 1),
            None => return bad_request("'messages' is required"),
        },
        Kind::Completion => match &request.prompt {
            Some(prompt) => (words(prompt), prompt_count(prompt)),
            None => return bad_request("'prompt' is required"),
        },
    };
    let n = usize::try_from(request.n.unwrap_or(1)).unwrap_or(usize::MAX);
    let choices = prompts.saturating_mul(n);
    if n == 0 || choices > MAX_CHOICES {
        return bad_request(&format!("'n' must make 1 to {MAX_CHOICES} choices"));
    }
    let settings = &upstream.settings;
    let limit = request.max_completion_tokens.or(request.max_tokens);
    let generated = limit.map_or(settings.chunks, |limit| {
        settings
            .chunks
            .min(usize::try_from(limit).unwrap_or(usize::MAX))
    });
    let finish = if generated < settings.chunks {
        "length"
    } else {
        "stop"
    };
    let completion_tokens = (generated * choices) as u64;
    let usage = (!settings.no_usage).then(|| {
        json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        })
    });
    let answer = Answer {
        kind,
        id: upstream.id(match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        }),
        created: now(),
        model: request.model,
    };
    if request.stream.unwrap_or(false) {
        let include_usage = request
            .stream_options
            .and_then(|options| options.include_usage)
            .unwrap_or(false);
        let usage = usage.filter(|_| include_usage);
        return stream(upstream, &answer, choices, generated, finish, usage);
    }
    let text: String = upstream.tokens[..generated].concat();
    let choices: Vec<Value> = (0..choices)
        .map(|index| match kind {
            Kind::Chat => json!({
                "index": index,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            }),
            Kind::Completion => json!({
                "index": index, "text": text, "logprobs": null, "finish_reason": finish,
            }),
        })
        .collect();
    let mut object = answer.envelope(choices, false);
    if let (Some(usage), Value::Object(fields)) = (usage, &mut object) {
        fields.insert("usage".to_owned(), usage);
    }
    let bytes = Bytes::from(object.to_string().into_bytes());
    if !settings.delay.is_zero() {
        tokio::time::sleep(settings.delay).await;
    }
    json_response(StatusCode::OK, bytes)
}

/// What every object of one answer shares.
struct Answer {
    /// Chat or completion.
    kind: Kind,
    /// The answer's id.
    id: String,
    /// Its creation time (Unix seconds).
    created: u64,
    /// The requested model.
    model: String,
}

impl Answer {
    /// The answer object (or, with `chunk`, a stream chunk) holding `choices`.
    fn envelope(&self, choices: Vec<Value>, chunk: bool) -> Value {
        let object = match (self.kind, chunk) {
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
            (Kind::Completion, _) => "text_completion",
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": choices,
        })
    }

    /// One chunk of choice `index`: a chat delta, or a completion's text.
    fn choice(&self, index: usize, delta: Value, text: &str, finish: Option<&str>) -> Value {
        match self.kind {
            Kind::Chat => json!({
                "index": index, "delta": delta, "logprobs": null, "finish_reason": finish,
            }),
            Kind::Completion => json!({
                "index": index, "text": text, "logprobs": null, "finish_reason": finish,
            }),
        }
    }
}

/// `data: JSON\n\n` of a stream chunk; with `usage_null` the chunk carries `usage: null`.
fn event(mut chunk: Value, usage_null: bool) -> Bytes {
    if let (true, Value::Object(fields)) = (usage_null, &mut chunk) {
        fields.insert("usage".to_owned(), Value::Null);
    }
    let mut bytes = b"data: ".to_vec();
    // Writing a `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(&mut bytes, &chunk);
    bytes.extend_from_slice(b"\n\n");
    Bytes::from(bytes)
}

/// The streamed answer: every event is built before the response starts; the stream only
/// waits between them.
fn stream(
    upstream: &Upstream,
    answer: &Answer,
    choices: usize,
    generated: usize,
    finish: &str,
    usage: Option<Value>,
) -> Response {
    let usage_null = usage.is_some();
    // Each step: the events sent together, and the time to wait before them.
    let mut steps: Vec<(Duration, Vec<Bytes>)> = Vec::with_capacity(generated + 3);
    let settings = &upstream.settings;
    let chunk_of = |choices: Vec<Value>| event(answer.envelope(choices, true), usage_null);
    if answer.kind == Kind::Chat {
        let role = (0..choices)
            .map(|index| {
                let delta = json!({"role": "assistant", "content": ""});
                chunk_of(vec![answer.choice(index, delta, "", None)])
            })
            .collect();
        steps.push((settings.delay, role));
    }
    for (position, token) in upstream.tokens[..generated].iter().enumerate() {
        let wait = if position == 0 && answer.kind == Kind::Completion {
            settings.delay
        } else {
            settings.chunk_delay
        };
        let events = (0..choices)
            .map(|index| {
                let delta = json!({"content": token});
                chunk_of(vec![answer.choice(index, delta, token, None)])
            })
            .collect();
        steps.push((wait, events));
    }
    let mut last: Vec<Bytes> = (0..choices)
        .map(|index| chunk_of(vec![answer.choice(index, json!({}), "", Some(finish))]))
        .collect();
    if let Some(usage) = usage {
        let mut chunk = answer.envelope(Vec::new(), true);
        if let Value::Object(fields) = &mut chunk {
            fields.insert("usage".to_owned(), usage);
        }
        last.push(event(chunk, false));
    }
    last.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let first_wait = if steps.is_empty() {
        settings.delay
    } else {
        Duration::ZERO
    };
    steps.push((first_wait, last));
    let events = futures::stream::iter(steps).then(|(wait, events)| async move {
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok::<_, std::convert::Infallible>(Bytes::from(events.concat()))
    });
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

/// `POST /v1/embeddings`.
async fn embeddings(State(upstream): State<Arc<Upstream>>, body: Bytes) -> Response {
    let request: EmbeddingRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => return bad_request(&format!("invalid request body: {error}")),
    };
    let inputs: Vec<&Value> = match &request.input {
        Value::Array(items) if items.is_empty() => return bad_request("'input' must not be empty"),
        Value::Array(items) if items.iter().all(|item| !item.is_number()) => items.iter().collect(),
        input @ (Value::String(_) | Value::Array(_)) => vec![input],
        _ => return bad_request("'input' must be a string, a list of strings or token arrays"),
    };
    let base64 = match request.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => return bad_request(&format!("unknown encoding_format {other}")),
    };
    let dimensions = upstream.settings.dimensions;
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = vector(&input.to_string(), dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    let mut object = json!({"object": "list", "data": data, "model": request.model});
    if !upstream.settings.no_usage {
        let tokens: u64 = inputs.iter().map(|input| words(input)).sum();
        if let Value::Object(fields) = &mut object {
            let usage = json!({"prompt_tokens": tokens, "total_tokens": tokens});
            fields.insert("usage".to_owned(), usage);
        }
    }
    let bytes = Bytes::from(object.to_string().into_bytes());
    if !upstream.settings.delay.is_zero() {
        tokio::time::sleep(upstream.settings.delay).await;
    }
    json_response(StatusCode::OK, bytes)
}

/// A deterministic unit vector of `dimensions` floats for `text`: an FNV-1a hash of the text,
/// spread over the components with SplitMix64.
fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut values: Vec<f32> = (0..dimensions as u64)
        .map(|component| {
            let mut z = seed.wrapping_add(component.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    let norm = values.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        values.iter_mut().for_each(|x| *x /= norm);
    }
    values
}
