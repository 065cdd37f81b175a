//! [`UpstreamBackend`]: the backend contract over a model's upstream servers. Chat and
//! completions are always streamed from the upstream (with its usage asked for) and relayed
//! chunk by chunk; embeddings are one request. What the upstream does not report is counted
//! with the model's [`TokenCounter`] and marked estimated.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use gateway_backend::{
    generation_channel, Accuracy, Backend, BackendError, Capabilities, EmbeddingInputs, Embeddings,
    Figure, GenerationRequest, GenerationStream, Health, Prompt, TokenCount, Usage,
};
use gateway_core::{ModelCard, ModelKind};

use crate::balancer::Balancer;
use crate::client::Client;
use crate::exchange::{next_data, Exchange, Started};
use crate::settings::{Endpoint, Settings, SettingsError};
use crate::tokens::TokenCounter;
use crate::{health, relay, wire};

/// Prompts longer than this (bytes) are counted on a blocking thread.
const COUNT_INLINE_BYTES: usize = 16 * 1024;

/// A model served by upstream OpenAI-compatible servers.
#[derive(Debug)]
pub struct UpstreamBackend {
    card: ModelCard,
    balancer: Arc<Balancer>,
    client: Client,
    settings: Settings,
    counter: TokenCounter,
}

impl UpstreamBackend {
    /// Serves `card` from `endpoints`, counting unreported tokens with `counter`; starts the
    /// health checks (so it must be called inside a Tokio runtime).
    pub fn new(
        card: ModelCard,
        endpoints: Vec<Endpoint>,
        settings: Settings,
        counter: TokenCounter,
    ) -> Result<Self, SettingsError> {
        if endpoints.is_empty() {
            return Err(SettingsError::NoServers);
        }
        let client = Client::new(&settings)?;
        let balancer = Arc::new(Balancer::new(endpoints, &settings));
        if !settings.health_check_interval.is_zero() {
            health::spawn(
                Arc::downgrade(&balancer),
                client.clone(),
                settings.health_check_interval,
            );
        }
        Ok(Self {
            card,
            balancer,
            client,
            settings,
            counter,
        })
    }

    fn exchange(&self) -> Exchange<'_> {
        Exchange {
            balancer: &self.balancer,
            client: &self.client,
            settings: &self.settings,
            model_id: &self.card.id,
        }
    }

    /// The estimated tokens of `prompt`, long ones counted off the async threads.
    async fn count_prompt(&self, prompt: &Prompt) -> TokenCount {
        let long = match prompt {
            Prompt::Chat(turns) => turns.iter().map(|t| t.content.len()).sum::<usize>(),
            Prompt::Text(text) => text.len(),
            Prompt::Tokens(_) => 0,
        } > COUNT_INLINE_BYTES;
        if !long {
            return self.counter.prompt(prompt);
        }
        let (counter, owned) = (self.counter.clone(), prompt.clone());
        tokio::task::spawn_blocking(move || counter.prompt(&owned))
            .await
            .unwrap_or_else(|_| prompt.estimated_tokens())
    }

    /// The rest of an embeddings answer, read within the idle timeout per piece.
    async fn read_answer(&self, started: &mut Started) -> Result<Vec<u8>, String> {
        let mut answer = started.first.to_vec();
        loop {
            match tokio::time::timeout(self.settings.idle_timeout, next_data(&mut started.body))
                .await
            {
                Ok(Ok(Some(piece))) => answer.extend_from_slice(&piece),
                Ok(Ok(None)) => return Ok(answer),
                Ok(Err(error)) => return Err(error.to_string()),
                Err(_) => return Err("the answer paused too long".to_owned()),
            }
        }
    }
}

#[async_trait]
impl Backend for UpstreamBackend {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn capabilities(&self) -> Capabilities {
        let generates = self.card.kind == ModelKind::Chat;
        Capabilities {
            chat: generates,
            completion: generates,
            embeddings: self.card.kind == ModelKind::Embedding,
            token_ids: true,
            logprobs: generates,
            constrained_output: generates,
            ..Capabilities::default()
        }
    }

    fn health(&self) -> Health {
        if self.balancer.available() > 0 {
            Health::Ready
        } else {
            Health::Unavailable("no upstream server of the model is reachable".to_owned())
        }
    }

    fn figures(&self) -> Vec<Figure> {
        let counters = self.balancer.counters();
        let count = |value: &std::sync::atomic::AtomicU64| value.load(Ordering::Relaxed) as f64;
        vec![
            Figure {
                name: "upstream_attempts",
                help: "Requests sent to upstream servers (each attempt).",
                value: count(&counters.attempts),
            },
            Figure {
                name: "upstream_failures",
                help: "Upstream attempts that failed (no answer, a timeout, a 5xx, a 429).",
                value: count(&counters.failures),
            },
            Figure {
                name: "upstream_retries",
                help: "Attempts on another upstream server after one failed.",
                value: count(&counters.retries),
            },
            Figure {
                name: "upstream_servers_available",
                help: "Upstream servers passing their health check with a closed circuit.",
                value: self.balancer.available() as f64,
            },
            Figure {
                name: "upstream_circuits_open",
                help: "Upstream servers whose circuit is open.",
                value: self.balancer.open_circuits() as f64,
            },
        ]
    }

    async fn count_prompt_tokens(&self, prompt: &Prompt) -> Result<TokenCount, BackendError> {
        Ok(self.count_prompt(prompt).await)
    }

    async fn generate(&self, request: GenerationRequest) -> Result<GenerationStream, BackendError> {
        let prompt_tokens = self.count_prompt(&request.prompt).await;
        let body = wire::generation_body(&request);
        let started = self
            .exchange()
            .start(wire::generation_path(&request.prompt), body)
            .await?;
        let (sinks, stream) = generation_channel(request.choices, prompt_tokens);
        let estimates = relay::Estimates {
            prompt: prompt_tokens,
            counter: self.counter.clone(),
        };
        tokio::spawn(relay::run(
            started,
            sinks,
            estimates,
            self.settings.idle_timeout,
        ));
        Ok(stream)
    }

    async fn embed(&self, inputs: EmbeddingInputs) -> Result<Embeddings, BackendError> {
        let body = wire::embedding_body(&inputs);
        let mut started = self.exchange().start("/embeddings", body).await?;
        let broken = |reason: String| {
            tracing::warn!(model = %self.card.id, %reason, "upstream embeddings answer unusable");
            BackendError::Unavailable {
                reason: "the model's server gave no usable answer".to_owned(),
            }
        };
        let answer = match self.read_answer(&mut started).await {
            Ok(answer) => answer,
            Err(reason) => {
                started.lease.failed(self.balancer.counters());
                return Err(broken(reason));
            }
        };
        started.lease.succeeded();
        let answer: wire::EmbeddingAnswer =
            serde_json::from_slice(&answer).map_err(|error| broken(error.to_string()))?;
        let vectors = in_input_order(answer.data, inputs.len()).map_err(broken)?;
        let usage = match answer.usage {
            Some(usage) => Usage {
                prompt_tokens: usage.prompt_tokens,
                completion_tokens: 0,
                cached_prompt_tokens: 0,
                accuracy: Accuracy::Exact,
            },
            None => estimated_input_usage(&inputs, &self.counter),
        };
        Ok(Embeddings { vectors, usage })
    }
}

/// The vectors of an answer in the order of the inputs; each input must have exactly one.
fn in_input_order(items: Vec<wire::EmbeddingItem>, inputs: usize) -> Result<Vec<Vec<f32>>, String> {
    let mut vectors: Vec<Option<Vec<f32>>> = vec![None; inputs];
    for item in items {
        let slot = vectors
            .get_mut(item.index)
            .ok_or_else(|| format!("a vector for input {} of {inputs}", item.index))?;
        if slot.replace(item.embedding).is_some() {
            return Err(format!("two vectors for input {}", item.index));
        }
    }
    vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| vector.ok_or_else(|| format!("no vector for input {index}")))
        .collect()
}

/// The estimated tokens of embedding inputs whose server reported none.
fn estimated_input_usage(inputs: &EmbeddingInputs, counter: &TokenCounter) -> Usage {
    let prompt =
        match inputs {
            EmbeddingInputs::Texts(texts) => texts.iter().map(|text| counter.count(text)).fold(
                TokenCount::exact(0),
                |sum, count| TokenCount {
                    tokens: sum.tokens + count.tokens,
                    accuracy: sum.accuracy.and(count.accuracy),
                },
            ),
            EmbeddingInputs::Tokens(tokens) => TokenCount::exact(tokens.iter().map(Vec::len).sum()),
        };
    Usage {
        prompt_tokens: prompt.tokens,
        completion_tokens: 0,
        cached_prompt_tokens: 0,
        accuracy: prompt.accuracy,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn vectors_come_back_in_input_order_once_each() {
        let item = |index, value| wire::EmbeddingItem {
            index,
            embedding: vec![value],
        };
        let ordered = in_input_order(vec![item(1, 1.0), item(0, 0.0)], 2).unwrap();
        assert_eq!(ordered, vec![vec![0.0], vec![1.0]]);
        assert!(in_input_order(vec![item(0, 0.0)], 2).is_err());
        assert!(in_input_order(vec![item(0, 0.0), item(0, 1.0)], 2).is_err());
        assert!(in_input_order(vec![item(2, 0.0)], 2).is_err());
    }

    #[test]
    fn unreported_embedding_usage_is_estimated_except_for_token_ids() {
        let counter = TokenCounter::tiktoken().unwrap();
        let texts = EmbeddingInputs::Texts(vec!["hello world".into(), "again".into()]);
        let usage = estimated_input_usage(&texts, &counter);
        assert_eq!(
            (usage.prompt_tokens, usage.accuracy),
            (3, Accuracy::Estimated)
        );
        let tokens = EmbeddingInputs::Tokens(vec![vec![1, 2], vec![3]]);
        assert_eq!(
            estimated_input_usage(&tokens, &counter).accuracy,
            Accuracy::Exact
        );
    }
}
