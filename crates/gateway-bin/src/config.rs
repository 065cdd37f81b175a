//! The gateway's configuration file (TOML). Every field has a default, so an empty file (or no
//! file) serves the bundled embedding model from the data directory. Unknown fields are errors
//! that name the field, so a typo fails at start. `docs/configuration.md` documents each field.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use gateway_api::ConnectionLimits;
use gateway_core::{ExecutionProvider, ServicePlan};
use gateway_engine::{EmbedderConfig, GeneratorConfig};
use serde::Deserialize;

use crate::catalog::DeprecationConfig;
use crate::logging::LoggingConfig;
use crate::metering::{LimitsConfig, MeteringConfig};
use crate::retention::RetentionConfig;

/// Id of the embedding model `gateway serve` serves when the configuration names none.
pub const DEFAULT_MODEL_ID: &str = "all-minilm-l6-v2";
/// Id of the chat model `gateway serve` serves when the configuration names none.
pub const DEFAULT_CHAT_MODEL_ID: &str = "smollm2-135m-instruct";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server settings.
    pub server: ServerConfig,
    /// ONNX Runtime settings shared by all local models.
    pub runtime: RuntimeConfig,
    /// The database of keys, principals and the audit log.
    pub database: DatabaseConfig,
    /// The models to serve.
    pub models: Vec<ModelConfig>,
    /// Prices, billing granularity, the cost header and the usage journal.
    pub metering: MeteringConfig,
    /// Rate limits per plan, burst, token weight and the Redis of shared budgets.
    pub limits: LimitsConfig,
    /// Where `serve` logs (standard error or daily files) and in which format.
    pub logging: LoggingConfig,
    /// How long personal data is kept and how often the retention job runs.
    pub retention: RetentionConfig,
}

/// The database of keys, principals and the audit log.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH?mode=rwc` or `postgres://…`; default: `gateway.db` in the data
    /// directory. `GATEWAY_DATABASE_URL` overrides it.
    pub url: Option<String>,
    /// How often `serve` checks that the database takes a write (`/readyz` reports the latest
    /// result), in seconds.
    pub write_check_interval_secs: u64,
    /// How long one write check may take before the database counts as not writable, in
    /// seconds.
    pub write_check_timeout_secs: u64,
    /// How long, in seconds, the server rides out a database that takes no writes: keys it
    /// verified before keep working, usage records wait in the journal, and `/readyz` stays
    /// ready; after it `/readyz` fails. 0: not ready at once.
    pub outage_grace_secs: u64,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            write_check_interval_secs: 5,
            write_check_timeout_secs: 10,
            outage_grace_secs: 60,
        }
    }
}

impl DatabaseConfig {
    /// The interval and the time limit of the write check; each must be at least 1 s.
    pub fn write_check(&self) -> anyhow::Result<(std::time::Duration, std::time::Duration)> {
        anyhow::ensure!(
            self.write_check_interval_secs > 0 && self.write_check_timeout_secs > 0,
            "database.write_check_interval_secs and write_check_timeout_secs must be at least 1"
        );
        Ok((
            std::time::Duration::from_secs(self.write_check_interval_secs),
            std::time::Duration::from_secs(self.write_check_timeout_secs),
        ))
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on; `GATEWAY_LISTEN` and `--listen` override it.
    pub listen: SocketAddr,
    /// Directory of the SQLite file, the ONNX Runtime library and imported models;
    /// `GATEWAY_DATA_DIR` overrides it.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Time limit for one request, in seconds.
    pub request_timeout_secs: u64,
    /// Time a connection has to send a request head (also while idle between requests), in
    /// seconds; then it is closed.
    pub header_read_timeout_secs: u64,
    /// Longest pause while a request body arrives, in seconds; then the request gets 408.
    pub body_read_timeout_secs: u64,
    /// Most client connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Failed management authentications one client address may make per minute; beyond
    /// them its management requests get 429 (no credential check, no audit event); 0: no
    /// limit.
    pub failed_management_authentications_per_minute: u64,
    /// Time after SIGTERM during which `/readyz` fails but new requests are still served, so
    /// that load balancers stop sending work before the listener closes, in seconds.
    pub drain_delay_secs: u64,
    /// Time given to in-flight requests after the listener closed, in seconds.
    pub shutdown_grace_secs: u64,
    /// Most choices (prompts × `n`) in one chat or completion request (at least 1); more are
    /// answered 400.
    pub max_choices_per_request: usize,
    /// Most chat, completion and embedding requests of one project in flight at once on this
    /// replica; more are answered 429. 0: no limit.
    pub max_concurrent_requests_per_project: usize,
    /// What a model API body with a field the API does not know gets: `refuse` (a 400 naming
    /// it, as OpenAI's API answers) or `ignore` (for legacy clients).
    pub unknown_request_fields: gateway_core::openai::UnknownFields,
}

impl ServerConfig {
    /// What one project may ask of the models at once; refuses 0 choices per request.
    pub fn fairness(&self) -> anyhow::Result<gateway_api::Fairness> {
        anyhow::ensure!(
            self.max_choices_per_request >= 1,
            "server.max_choices_per_request must be at least 1"
        );
        Ok(gateway_api::Fairness {
            max_choices_per_request: self.max_choices_per_request,
            max_concurrent_requests_per_project: self.max_concurrent_requests_per_project,
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            max_body_bytes: 8 * 1024 * 1024,
            request_timeout_secs: 120,
            header_read_timeout_secs: ConnectionLimits::default().header_read_timeout.as_secs(),
            body_read_timeout_secs: 30,
            max_connections: ConnectionLimits::default().max_connections,
            failed_management_authentications_per_minute: 30,
            drain_delay_secs: 0,
            shutdown_grace_secs: 30,
            max_choices_per_request: gateway_api::Fairness::default().max_choices_per_request,
            max_concurrent_requests_per_project: gateway_api::Fairness::default()
                .max_concurrent_requests_per_project,
            unknown_request_fields: gateway_core::openai::UnknownFields::Refuse,
        }
    }
}

/// ONNX Runtime settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Path of `libonnxruntime.so`. Default: `ORT_DYLIB_PATH`, else
    /// `<data_dir>/runtime/libonnxruntime.so`.
    pub library: Option<PathBuf>,
    /// Intra-op threads of each session; 0 uses the cores this process may run on.
    pub intra_threads: usize,
    /// Whether idle ONNX Runtime threads spin before sleeping. On (ONNX Runtime's default)
    /// measured as fast or faster here; off leaves idle CPU to other work on a shared machine.
    pub intra_op_spinning: bool,
    /// Worker threads of the async runtime (HTTP, key checks, streaming); 0 = one per four
    /// cores this process may run on, at least one, so they do not crowd ONNX Runtime's
    /// intra-op threads, which do the compute.
    pub async_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            library: None,
            intra_threads: 0,
            intra_op_spinning: true,
            async_threads: 0,
        }
    }
}

impl RuntimeConfig {
    /// Intra-op threads per session: the configured number, else the cores this process may
    /// run on.
    pub fn intra_threads(&self) -> usize {
        match self.intra_threads {
            0 => available_cores(),
            threads => threads,
        }
    }

    /// Worker threads of the async runtime: the configured number, else one per four cores.
    pub fn async_threads(&self) -> usize {
        match self.async_threads {
            0 => (available_cores() / 4).max(1),
            threads => threads,
        }
    }
}

/// The cores this process may run on (its CPU affinity and cgroup quota), at least one.
fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// What serves a model: the factory in `backends.rs` builds one backend per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Our ONNX Runtime engine, on a model directory written by `gateway models import`.
    #[default]
    Onnx,
    /// Other OpenAI-compatible servers, as `[models.upstream]` describes them.
    Upstream,
}

/// One served model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// What serves the model (`onnx`, the default, or `upstream`).
    #[serde(default)]
    pub kind: BackendKind,
    /// `onnx` models: the model directory written by `gateway models import`; relative paths
    /// are taken from the data directory.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// `upstream` models: the card, servers and balancing of the model.
    #[serde(default)]
    pub upstream: Option<crate::upstream::UpstreamConfig>,
    /// Id clients use; default: the id in the model card.
    #[serde(default)]
    pub id: Option<String>,
    /// Service plan the model is billed and limited under (`base`, `plus`, `premium`);
    /// default: the plan in the model card.
    #[serde(default)]
    pub plan: Option<ServicePlan>,
    /// Catalog: the name shown to people; default: the id.
    #[serde(default)]
    pub displayed_name: Option<String>,
    /// Catalog: what the model is for; default: its kind and id.
    #[serde(default)]
    pub description: Option<String>,
    /// Catalog: its Hugging Face name; default: from the card's source.
    #[serde(default)]
    pub hugging_face_name: Option<String>,
    /// Catalog: where the weights come from; default: the card's source.
    #[serde(default)]
    pub url: Option<String>,
    /// Catalog: tags; default: the model's kind.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// The model's announced retirement.
    #[serde(default)]
    pub deprecation: Option<DeprecationConfig>,
    /// Execution provider (`cpu` or `cuda`).
    #[serde(default)]
    pub device: ExecutionProvider,
    /// CUDA device ordinal when `device = "cuda"`.
    #[serde(default)]
    pub cuda_device_id: i32,
    /// Largest padded batch of one run, in tokens.
    #[serde(default = "default_max_batch_tokens")]
    pub max_batch_tokens: usize,
    /// Requests that may wait before new ones get 503.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// Most inputs in one embeddings request.
    #[serde(default = "default_max_inputs")]
    pub max_inputs: usize,
    /// Cut inputs over the context length instead of answering 400.
    #[serde(default)]
    pub truncate: bool,
    /// Chat models: most sequences in the running batch.
    #[serde(default = "default_max_batch_sequences")]
    pub max_batch_sequences: usize,
    /// Chat models: longest sequence (prompt + completion) served, in tokens; the model's
    /// context length if smaller.
    #[serde(default = "default_max_context")]
    pub max_context: usize,
    /// Chat models: tokens (prompt + `max_tokens` of every running sequence) the KV cache
    /// may hold at once; requests beyond it wait in the queue.
    #[serde(default = "default_kv_budget_tokens")]
    pub kv_budget_tokens: usize,
    /// Chat models: most prompt tokens run in one prefill chunk while no sequence is
    /// generating.
    #[serde(default = "default_prefill_chunk_tokens")]
    pub prefill_chunk_tokens: usize,
    /// Chat models: most prompt tokens run in one prefill chunk while sequences are
    /// generating (the longest pause a new prompt adds to their next token).
    #[serde(default = "default_prefill_chunk_tokens_while_decoding")]
    pub prefill_chunk_tokens_while_decoding: usize,
    /// Chat models: MiB of prompt keys and values kept after their requests, reused by later
    /// prompts that start with the same tokens (0 turns the prompt cache off).
    #[serde(default = "default_prompt_cache_mib")]
    pub prompt_cache_mib: usize,
    /// Chat models: let special-token text in messages become control tokens (off: it is
    /// encoded as plain text).
    #[serde(default)]
    pub special_tokens_in_content: bool,
}

/// What serves a configured model, checked.
pub enum ModelSource<'a> {
    /// The ONNX engine on this model directory (relative to the data directory).
    Onnx(&'a Path),
    /// Upstream servers.
    Upstream {
        /// The id clients use.
        id: &'a str,
        /// The servers and their card.
        upstream: &'a crate::upstream::UpstreamConfig,
    },
}

fn default_max_batch_sequences() -> usize {
    GeneratorConfig::default().max_batch_sequences
}

fn default_max_context() -> usize {
    GeneratorConfig::default().max_context
}

fn default_kv_budget_tokens() -> usize {
    GeneratorConfig::default().kv_budget_tokens
}

fn default_prefill_chunk_tokens() -> usize {
    GeneratorConfig::default().prefill_chunk_tokens
}

fn default_prefill_chunk_tokens_while_decoding() -> usize {
    GeneratorConfig::default().prefill_chunk_tokens_while_decoding
}

/// The engine's default prompt cache, in MiB.
fn default_prompt_cache_mib() -> usize {
    GeneratorConfig::default().prompt_cache_bytes >> 20
}

fn default_max_batch_tokens() -> usize {
    EmbedderConfig::default().max_batch_tokens
}

fn default_queue_capacity() -> usize {
    EmbedderConfig::default().queue_capacity
}

fn default_max_inputs() -> usize {
    EmbedderConfig::default().max_inputs
}

impl ModelConfig {
    /// What serves the model, with what that kind needs: the directory of an `onnx` model,
    /// the `[models.upstream]` table and the id of an `upstream` one.
    pub fn source(&self) -> anyhow::Result<ModelSource<'_>> {
        match (self.kind, &self.path, &self.upstream, &self.id) {
            (BackendKind::Onnx, Some(path), None, _) => Ok(ModelSource::Onnx(path)),
            (BackendKind::Onnx, _, _, _) => {
                anyhow::bail!("an onnx model needs a path and no [models.upstream]")
            }
            (BackendKind::Upstream, None, Some(upstream), Some(id)) => {
                Ok(ModelSource::Upstream { id, upstream })
            }
            (BackendKind::Upstream, _, _, _) => {
                anyhow::bail!("an upstream model needs an id and [models.upstream], and no path")
            }
        }
    }

    /// The bundled default embedding model, as imported by the setup script.
    pub fn bundled() -> Self {
        Self::bundled_at(DEFAULT_MODEL_ID)
    }

    /// The bundled default chat model, as imported by the setup script.
    pub fn bundled_chat() -> Self {
        Self::bundled_at(DEFAULT_CHAT_MODEL_ID)
    }

    fn bundled_at(id: &str) -> Self {
        Self {
            kind: BackendKind::Onnx,
            path: Some(PathBuf::from("models").join(id)),
            upstream: None,
            id: None,
            plan: None,
            displayed_name: None,
            description: None,
            hugging_face_name: None,
            url: None,
            tags: None,
            deprecation: None,
            device: ExecutionProvider::Cpu,
            cuda_device_id: 0,
            max_batch_tokens: default_max_batch_tokens(),
            queue_capacity: default_queue_capacity(),
            max_inputs: default_max_inputs(),
            truncate: false,
            max_batch_sequences: default_max_batch_sequences(),
            max_context: default_max_context(),
            kv_budget_tokens: default_kv_budget_tokens(),
            prefill_chunk_tokens: default_prefill_chunk_tokens(),
            prefill_chunk_tokens_while_decoding: default_prefill_chunk_tokens_while_decoding(),
            prompt_cache_mib: default_prompt_cache_mib(),
            special_tokens_in_content: false,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: ServerConfig::default(),
            runtime: RuntimeConfig::default(),
            database: DatabaseConfig::default(),
            models: vec![ModelConfig::bundled(), ModelConfig::bundled_chat()],
            metering: MeteringConfig::default(),
            limits: LimitsConfig::default(),
            logging: LoggingConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl Config {
    /// Reads `path`, or the embedded defaults when `path` is `None`.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read configuration {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid configuration {}", path.display()))
    }

    /// Parses the TOML text of a configuration file.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// The file (or defaults) at `path` with the environment's overrides applied:
    /// `GATEWAY_LISTEN`, `GATEWAY_DATA_DIR` and `GATEWAY_DATABASE_URL`.
    pub fn load_with_env(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut config = Self::load(path)?;
        if let Ok(listen) = std::env::var("GATEWAY_LISTEN") {
            config.server.listen = listen
                .parse::<SocketAddr>()
                .with_context(|| format!("GATEWAY_LISTEN={listen} is not an address"))?;
        }
        if let Ok(dir) = std::env::var("GATEWAY_DATA_DIR") {
            config.server.data_dir = PathBuf::from(dir);
        }
        if let Ok(url) = std::env::var("GATEWAY_DATABASE_URL") {
            config.database.url = Some(url);
        }
        Ok(config)
    }

    /// The database URL: the configured one, else the SQLite file `gateway.db` in the data
    /// directory (created on first use).
    pub fn database_url(&self) -> String {
        match &self.database.url {
            Some(url) => url.clone(),
            None => format!(
                "sqlite://{}?mode=rwc",
                self.server.data_dir.join("gateway.db").display()
            ),
        }
    }

    /// Resolves a path from the configuration against the data directory.
    pub fn in_data_dir(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.server.data_dir.join(path)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_defaults() {
        let config = Config::parse("").unwrap();
        assert_eq!(config.server.listen.port(), 8080);
        assert!(config.runtime.intra_op_spinning);
        assert_eq!(config.models.len(), 2);
        assert_eq!(
            config.models[1].path,
            Some(PathBuf::from("models/smollm2-135m-instruct"))
        );
        assert_eq!(
            config.models[0].path,
            Some(PathBuf::from("models/all-minilm-l6-v2"))
        );
    }

    #[test]
    fn a_full_file_parses() {
        let config = Config::parse(
            r#"
            [server]
            listen = "0.0.0.0:9000"
            data_dir = "/srv/gateway"
            max_body_bytes = 1024
            request_timeout_secs = 5
            shutdown_grace_secs = 2
            max_choices_per_request = 16
            max_concurrent_requests_per_project = 0
            unknown_request_fields = "ignore"

            [runtime]
            library = "/opt/ort/libonnxruntime.so"
            intra_threads = 4

            [database]
            url = "postgres://gateway@db/gateway"

            [[models]]
            kind = "onnx"
            path = "/models/minilm"
            id = "minilm"
            device = "cuda"
            cuda_device_id = 1
            max_batch_tokens = 4096
            queue_capacity = 8
            max_inputs = 16
            truncate = true
            "#,
        )
        .unwrap();
        assert_eq!(config.server.listen.port(), 9000);
        let fairness = config.server.fairness().unwrap();
        assert_eq!(fairness.max_choices_per_request, 16);
        assert_eq!(fairness.max_concurrent_requests_per_project, 0);
        assert_eq!(
            config.server.unknown_request_fields,
            gateway_core::openai::UnknownFields::Ignore
        );
        assert_eq!(config.runtime.intra_threads, 4);
        assert_eq!(config.database_url(), "postgres://gateway@db/gateway");
        let model = &config.models[0];
        assert_eq!(model.device, ExecutionProvider::Cuda);
        assert_eq!(model.kind, BackendKind::Onnx);
        assert_eq!(model.id.as_deref(), Some("minilm"));
        assert!(model.truncate);
        let Ok(ModelSource::Onnx(path)) = model.source() else {
            panic!("an onnx model")
        };
        assert_eq!(config.in_data_dir(path), PathBuf::from("/models/minilm"));
    }

    #[test]
    fn upstream_models_need_an_id_and_their_table() {
        let config = Config::parse(
            r#"
            [[models]]
            kind = "upstream"
            id = "llama"
            [models.upstream]
            type = "chat"
            context_length = 8192
            [[models.upstream.servers]]
            url = "http://127.0.0.1:8000/v1"
            "#,
        )
        .unwrap();
        let Ok(ModelSource::Upstream { id, upstream }) = config.models[0].source() else {
            panic!("an upstream model")
        };
        assert_eq!((id, upstream.context_length), ("llama", 8192));
        let no_id = Config::parse(
            "[[models]]\nkind = \"upstream\"\n[models.upstream]\ntype = \"chat\"\ncontext_length = 1\nservers = []\n",
        )
        .unwrap();
        assert!(no_id.models[0].source().is_err());
        let no_path = Config::parse("[[models]]\nid = \"x\"\n").unwrap();
        assert!(no_path.models[0].source().is_err());
    }

    #[test]
    fn unknown_fields_are_named() {
        let error = Config::parse("[server]\nlisten_addr = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(format!("{error:#}").contains("listen_addr"), "{error:#}");
    }

    #[test]
    fn relative_model_paths_live_in_the_data_dir() {
        let config = Config::default();
        assert_eq!(
            config.in_data_dir(Path::new("models/x")),
            PathBuf::from("data/models/x")
        );
    }

    #[test]
    fn the_database_defaults_to_sqlite_in_the_data_dir() {
        let mut config = Config::parse("[server]\ndata_dir = \"/srv/gw\"\n").unwrap();
        assert_eq!(
            config.database_url(),
            "sqlite:///srv/gw/gateway.db?mode=rwc"
        );
        config.server.data_dir = PathBuf::from("data");
        assert_eq!(config.database_url(), "sqlite://data/gateway.db?mode=rwc");
    }
}
