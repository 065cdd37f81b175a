//! `[models.upstream]`: a model served by other OpenAI-compatible servers — its catalog card
//! (which no model directory holds), its servers with the model name each knows it by and
//! its key (from the environment or a secret file, never from the configuration file), and
//! the timeouts, health checks and circuit of the balancing.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use gateway_core::{ModelCard, ModelKind, ServicePlan};
use gateway_upstream::{Endpoint, Settings, TokenCounter};
use serde::Deserialize;

/// `[models.upstream]` of a `kind = "upstream"` model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// `chat` (chat and completions) or `embedding`.
    #[serde(rename = "type")]
    pub kind: ModelKind,
    /// Longest prompt plus completion the upstream accepts, in tokens.
    pub context_length: usize,
    /// Embedding models: the width of their vectors.
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// SPDX identifier of the model's license.
    #[serde(default = "default_license")]
    pub license: String,
    /// Where the weights come from (e.g. the Hugging Face page), for the catalog.
    #[serde(default)]
    pub source: String,
    /// The model's `tokenizer.json`, to count what the upstream does not report; default:
    /// `tiktoken`'s `o200k_base`. Relative paths are taken from the data directory.
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// The servers (at least one).
    pub servers: Vec<ServerConfig>,
    /// Longest wait for a connection, in milliseconds.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Longest wait for the first byte of an answer (a generation's first chunk), in seconds.
    #[serde(default = "default_first_byte_timeout_secs")]
    pub first_byte_timeout_secs: u64,
    /// Longest pause inside an answer, in seconds.
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
    /// How often each server's `/models` is checked, in milliseconds; 0: no checks.
    #[serde(default = "default_health_check_interval_ms")]
    pub health_check_interval_ms: u64,
    /// Failures in a row that open a server's circuit.
    #[serde(default = "default_failures_to_open")]
    pub failures_to_open: u32,
    /// How long an open circuit keeps a server out before a probe, in milliseconds.
    #[serde(default = "default_open_ms")]
    pub open_ms: u64,
    /// Most servers one request is tried on.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: usize,
    /// HTTP/2 with prior knowledge to plain `http://` servers (h2c); over TLS HTTP/2 is
    /// negotiated anyway.
    #[serde(default)]
    pub http2: bool,
}

/// `[[models.upstream.servers]]`: one server of the model.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Base URL of its OpenAI API, e.g. `http://10.0.0.5:8000/v1`.
    pub url: String,
    /// The name the server knows the model by; default: the model's id.
    #[serde(default)]
    pub model: Option<String>,
    /// Environment variable holding the server's API key.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// File holding the server's API key (e.g. a mounted secret).
    #[serde(default)]
    pub api_key_file: Option<PathBuf>,
}

fn default_license() -> String {
    "unknown".to_owned()
}
fn default_connect_timeout_ms() -> u64 {
    Settings::default().connect_timeout.as_millis() as u64
}
fn default_first_byte_timeout_secs() -> u64 {
    Settings::default().first_byte_timeout.as_secs()
}
fn default_idle_timeout_secs() -> u64 {
    Settings::default().idle_timeout.as_secs()
}
fn default_health_check_interval_ms() -> u64 {
    Settings::default().health_check_interval.as_millis() as u64
}
fn default_failures_to_open() -> u32 {
    Settings::default().failures_to_open
}
fn default_open_ms() -> u64 {
    Settings::default().open_for.as_millis() as u64
}
fn default_max_attempts() -> usize {
    Settings::default().max_attempts
}

impl UpstreamConfig {
    /// The catalog card of the model served as `id` under `plan`.
    pub fn card(&self, id: &str, plan: ServicePlan) -> ModelCard {
        ModelCard {
            id: id.to_owned(),
            kind: self.kind,
            plan,
            context_length: self.context_length,
            dimensions: self.dimensions,
            quantization: "upstream".to_owned(),
            license: self.license.clone(),
            source: self.source.clone(),
        }
    }

    /// How the backend treats its servers.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        anyhow::ensure!(self.max_attempts >= 1, "max_attempts must be at least 1");
        anyhow::ensure!(
            self.first_byte_timeout_secs > 0 && self.idle_timeout_secs > 0,
            "first_byte_timeout_secs and idle_timeout_secs must be at least 1"
        );
        Ok(Settings {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
            first_byte_timeout: Duration::from_secs(self.first_byte_timeout_secs),
            idle_timeout: Duration::from_secs(self.idle_timeout_secs),
            health_check_interval: Duration::from_millis(self.health_check_interval_ms),
            failures_to_open: self.failures_to_open,
            open_for: Duration::from_millis(self.open_ms),
            max_attempts: self.max_attempts,
            http2_prior_knowledge: self.http2,
        })
    }

    /// The servers, with their keys read from the environment or their files; `id` is the
    /// model's id, the default upstream model name.
    pub fn endpoints(&self, id: &str) -> anyhow::Result<Vec<Endpoint>> {
        anyhow::ensure!(
            !self.servers.is_empty(),
            "an upstream model needs at least one server"
        );
        self.servers
            .iter()
            .map(|server| {
                let key = server.api_key()?;
                let model = server.model.clone().unwrap_or_else(|| id.to_owned());
                Ok(Endpoint::new(&server.url, model, key)?)
            })
            .collect()
    }

    /// The counter of unreported tokens: the configured tokenizer (resolved with `resolve`),
    /// else `tiktoken`.
    pub fn token_counter(
        &self,
        resolve: impl Fn(&std::path::Path) -> PathBuf,
    ) -> anyhow::Result<TokenCounter> {
        Ok(match &self.tokenizer {
            Some(path) => TokenCounter::from_file(&resolve(path))?,
            None => TokenCounter::tiktoken()?,
        })
    }
}

impl ServerConfig {
    /// The key from the environment variable or the file named, if any (surrounding white
    /// space dropped); both named is an error.
    fn api_key(&self) -> anyhow::Result<Option<String>> {
        match (&self.api_key_env, &self.api_key_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!(
                    "server {}: name api_key_env or api_key_file, not both",
                    self.url
                )
            }
            (Some(name), None) => std::env::var(name)
                .map(|key| Some(key.trim().to_owned()))
                .with_context(|| {
                    format!(
                        "server {}: environment variable {name} is not set",
                        self.url
                    )
                }),
            (None, Some(path)) => std::fs::read_to_string(path)
                .map(|key| Some(key.trim().to_owned()))
                .with_context(|| format!("server {}: cannot read {}", self.url, path.display())),
            (None, None) => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> UpstreamConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn servers_take_their_keys_from_files_and_default_to_the_model_id() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key");
        std::fs::write(&secret, "sk-file\n").unwrap();
        let config = parse(&format!(
            r#"
            type = "chat"
            context_length = 4096
            [[servers]]
            url = "http://127.0.0.1:9001/v1"
            api_key_file = "{}"
            [[servers]]
            url = "https://gpu.example/v1"
            model = "meta-llama/Llama-3.1-8B-Instruct"
            "#,
            secret.display()
        ));
        let endpoints = config.endpoints("llama").unwrap();
        assert_eq!(endpoints.len(), 2);
        let shown = format!("{endpoints:?}");
        assert!(
            shown.contains("\"llama\"") && shown.contains("Llama-3.1-8B"),
            "{shown}"
        );
        assert!(!shown.contains("sk-file"), "{shown}");
        let card = config.card("llama", ServicePlan::Plus);
        assert_eq!((card.kind, card.context_length), (ModelKind::Chat, 4096));
        assert_eq!(config.settings().unwrap(), Settings::default());
    }

    #[test]
    fn keys_in_the_file_itself_and_missing_variables_are_refused() {
        let inline = toml::from_str::<UpstreamConfig>(
            "type = \"chat\"\ncontext_length = 1\n[[servers]]\nurl = \"http://h/v1\"\napi_key = \"sk\"\n",
        );
        assert!(inline.unwrap_err().to_string().contains("api_key"));
        let config = parse(
            "type = \"chat\"\ncontext_length = 1\n[[servers]]\nurl = \"http://h/v1\"\napi_key_env = \"GATEWAY_TEST_UNSET_KEY\"\n",
        );
        let error = format!("{:#}", config.endpoints("m").unwrap_err());
        assert!(error.contains("GATEWAY_TEST_UNSET_KEY"), "{error}");
        let none = parse("type = \"chat\"\ncontext_length = 1\nservers = []\n");
        assert!(none.endpoints("m").is_err());
    }
}
