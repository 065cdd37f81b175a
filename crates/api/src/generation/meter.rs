//! [`UsageMeter`]: records a generation request's usage exactly once, as its backend counted
//! it: when the answer is complete or failed, or when the meter is dropped (a client that went
//! away in the middle of a stream) with what the backend had counted by then. Recording
//! closes the request's [`Ticket`] (its usage record and the settling of its budget), counts
//! the tokens (prompt, of them cached, and completion) in the metrics and logs them.

use std::sync::Arc;

use gateway_backend::{Accuracy, Usage, UsageHandle};
use gateway_core::openai;
use gateway_metering::{Outcome, TokenCounts};

use crate::accounting::Ticket;
use crate::state::AppState;

/// Meters the usage of one request's generations (one per prompt).
pub struct UsageMeter {
    state: Arc<AppState>,
    model: String,
    request_id: String,
    /// The usage of each prompt's generation, as its backend keeps counting it (the final
    /// usage once the generation ended).
    generations: Vec<UsageHandle>,
    /// The admitted request, until its usage is recorded.
    ticket: Option<Ticket>,
}

impl UsageMeter {
    /// A meter for the request admitted as `ticket` on `model`, before any of its
    /// generations started.
    pub fn new(state: Arc<AppState>, ticket: Ticket, model: &str, request_id: String) -> Self {
        Self {
            state,
            model: model.to_owned(),
            request_id,
            generations: Vec::new(),
            ticket: Some(ticket),
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

    /// The usage as the wire shows it, with the prompt tokens taken from the backend's
    /// prompt cache in `prompt_tokens_details.cached_tokens`.
    pub fn wire_usage(&self) -> openai::Usage {
        let usage = self.usage();
        let count = |tokens: usize| u32::try_from(tokens).unwrap_or(u32::MAX);
        openai::Usage::new(count(usage.prompt_tokens), count(usage.completion_tokens))
            .with_cached_tokens(count(usage.cached_prompt_tokens))
    }

    /// Records the usage (once) of a request that ended with `outcome`. A request none of
    /// whose generations started leaves no record; its ticket gives the reservation back.
    pub fn record(&mut self, outcome: Outcome) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        if self.generations.is_empty() {
            return;
        }
        let usage = self.usage();
        let metrics = &self.state.metrics;
        metrics.add_prompt_tokens(&self.model, usage.prompt_tokens as u64);
        metrics.add_cached_prompt_tokens(&self.model, usage.cached_prompt_tokens as u64);
        metrics.add_completion_tokens(&self.model, usage.completion_tokens as u64);
        let exact = usage.accuracy == Accuracy::Exact;
        tracing::info!(
            request_id = %self.request_id,
            model = %self.model,
            prompt_tokens = usage.prompt_tokens,
            completion_tokens = usage.completion_tokens,
            cached_tokens = usage.cached_prompt_tokens,
            exact,
            outcome = outcome.as_str(),
            "usage"
        );
        let counts = TokenCounts {
            input: usage.prompt_tokens as u64,
            cached_input: usage.cached_prompt_tokens as u64,
            output: usage.completion_tokens as u64,
            exact,
        };
        ticket.close(counts, outcome);
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        self.record(Outcome::Cancelled);
    }
}
