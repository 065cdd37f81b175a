//! [`UsageMeter`]: meters and logs a generation request's usage exactly once, as its backend
//! counted it: when the answer is complete, or when the meter is dropped (a client that went
//! away in the middle of a stream, a failure) with what the backend had counted by then.

use std::sync::Arc;

use gateway_backend::{Accuracy, Usage, UsageHandle};
use gateway_core::openai;

use crate::state::AppState;

/// Meters the usage of one request's generations (one per prompt).
pub struct UsageMeter {
    state: Arc<AppState>,
    model: String,
    request_id: String,
    /// The usage of each prompt's generation, as its backend keeps counting it (the final
    /// usage once the generation ended).
    generations: Vec<UsageHandle>,
    recorded: bool,
}

impl UsageMeter {
    /// A meter for a request on `model`, before any of its generations started.
    pub fn new(state: Arc<AppState>, model: &str, request_id: String) -> Self {
        Self {
            state,
            model: model.to_owned(),
            request_id,
            generations: Vec::new(),
            recorded: false,
        }
    }

    /// Counts the generation of the next prompt, which started and counts into `running`.
    pub fn track(&mut self, running: UsageHandle) {
        self.generations.push(running);
    }

    /// The request's usage: each prompt's final usage, or its count so far.
    pub fn usage(&self) -> Usage {
        self.generations
            .iter()
            .map(UsageHandle::usage)
            .fold(None, |sum: Option<Usage>, usage| {
                Some(sum.map_or(usage, |sum| sum.plus(usage)))
            })
            .unwrap_or_default()
    }

    /// The id of the request, as the client was told it.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The usage as the wire shows it.
    pub fn wire_usage(&self) -> openai::Usage {
        let usage = self.usage();
        let count = |tokens: usize| u32::try_from(tokens).unwrap_or(u32::MAX);
        openai::Usage::new(count(usage.prompt_tokens), count(usage.completion_tokens))
    }

    /// Meters and logs the usage (once).
    pub fn record(&mut self) {
        if std::mem::replace(&mut self.recorded, true) {
            return;
        }
        let usage = self.usage();
        let metrics = &self.state.metrics;
        metrics.add_prompt_tokens(&self.model, usage.prompt_tokens as u64);
        metrics.add_completion_tokens(&self.model, usage.completion_tokens as u64);
        tracing::info!(
            request_id = %self.request_id,
            model = %self.model,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            exact = usage.accuracy == Accuracy::Exact,
            "usage"
        );
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        self.record();
    }
}
