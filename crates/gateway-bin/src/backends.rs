//! The one factory of backends: each configured model becomes the backend its `kind` names
//! (`onnx` or `upstream`). The ONNX Runtime library is loaded once, when the first ONNX model
//! needs it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use gateway_backend::Backend;
use gateway_engine::{
    load_backend, EmbedderConfig, GeneratorConfig, ModelSettings, OnnxRuntime, SessionConfig,
};

use gateway_upstream::UpstreamBackend;

use crate::config::{Config, ModelConfig, ModelSource};
use crate::upstream::UpstreamConfig;

/// Builds the backends of a configuration.
pub struct BackendFactory<'a> {
    config: &'a Config,
    onnx_runtime: Option<OnnxRuntime>,
}

impl<'a> BackendFactory<'a> {
    /// A factory for the models of `config`.
    pub fn new(config: &'a Config) -> Self {
        Self {
            config,
            onnx_runtime: None,
        }
    }

    /// The backend of `model`, by its kind.
    pub async fn build(&mut self, model: &ModelConfig) -> anyhow::Result<Arc<dyn Backend>> {
        match model.source()? {
            ModelSource::Onnx(path) => self.onnx(model, path).await,
            ModelSource::Upstream { id, upstream } => self.upstream(model, id, upstream),
        }
    }

    /// The upstream backend of `model`: its servers, balancing and token counter.
    fn upstream(
        &self,
        model: &ModelConfig,
        id: &str,
        upstream: &UpstreamConfig,
    ) -> anyhow::Result<Arc<dyn Backend>> {
        let context = || format!("model {id}");
        let card = upstream.card(id, model.plan.unwrap_or_default());
        let endpoints = upstream.endpoints(id).with_context(context)?;
        let settings = upstream.settings().with_context(context)?;
        let counter = upstream
            .token_counter(|path| self.config.in_data_dir(path))
            .with_context(context)?;
        let backend =
            UpstreamBackend::new(card, endpoints, settings, counter).with_context(context)?;
        Ok(Arc::new(backend))
    }

    /// Loads the ONNX model directory `path` of `model` on a blocking thread.
    async fn onnx(&mut self, model: &ModelConfig, path: &Path) -> anyhow::Result<Arc<dyn Backend>> {
        let runtime = self.onnx_runtime()?.clone();
        let dir = self.config.in_data_dir(path);
        let settings = onnx_settings(model, self.config);
        let load_dir = dir.clone();
        tokio::task::spawn_blocking(move || load_backend(&runtime, &load_dir, &settings))
            .await?
            .with_context(|| format!("cannot load the model in {}", dir.display()))
    }

    /// The ONNX Runtime library, loaded on first use.
    fn onnx_runtime(&mut self) -> anyhow::Result<&OnnxRuntime> {
        if self.onnx_runtime.is_none() {
            let runtime = OnnxRuntime::load(&library_path(self.config))?;
            tracing::info!(library = %runtime.library().display(), "ONNX Runtime loaded");
            self.onnx_runtime = Some(runtime);
        }
        self.onnx_runtime
            .as_ref()
            .context("the ONNX Runtime library is not loaded")
    }
}

/// The ONNX Runtime library: the configured path, else `ORT_DYLIB_PATH`, else the copy the
/// setup script puts into the data directory.
fn library_path(config: &Config) -> PathBuf {
    config
        .runtime
        .library
        .clone()
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| config.in_data_dir(Path::new("runtime/libonnxruntime.so")))
}

/// How the ONNX backend serves `model`, whichever kind its directory holds.
fn onnx_settings(model: &ModelConfig, config: &Config) -> ModelSettings {
    let session = SessionConfig {
        execution_provider: model.device,
        cuda_device_id: model.cuda_device_id,
        intra_threads: config.runtime.intra_threads(),
        intra_op_spinning: config.runtime.intra_op_spinning,
    };
    ModelSettings {
        embedder: EmbedderConfig {
            session,
            max_batch_tokens: model.max_batch_tokens,
            queue_capacity: model.queue_capacity,
            max_inputs: model.max_inputs,
            truncate: model.truncate,
        },
        generator: GeneratorConfig {
            session,
            max_batch_sequences: model.max_batch_sequences,
            max_context: model.max_context,
            kv_budget_tokens: model.kv_budget_tokens,
            prefill_chunk_tokens: model.prefill_chunk_tokens,
            prefill_chunk_tokens_while_decoding: model.prefill_chunk_tokens_while_decoding,
            queue_capacity: model.queue_capacity,
            prompt_cache_bytes: model.prompt_cache_mib.saturating_mul(1 << 20),
            special_tokens_in_content: model.special_tokens_in_content,
        },
    }
}
