//! Continuous batching. The scheduler owns the running sequences of one model and, at every
//! step: admits waiting requests while a sequence slot and the KV-cache token budget allow
//! (a request reserves its prompt plus `max_tokens`; requests wait in a [`FairQueue`] that
//! takes the tenants in turn), drops sequences whose client went away, runs one prefill chunk
//! of the oldest sequence still reading its prompt (so a long prompt never stalls the others
//! for more than a chunk), then one decode step for every sequence that is generating. Each
//! new token is sampled, detokenized, checked against stop strings and sent to its choice's
//! sink.
//!
//! When a sequence's prompt is first up, the prefix the prompt cache holds is copied into its
//! row instead of being run, and every chunk run is offered to the prompt cache: sequences
//! admitted together with the same system prompt find it cached once the first has run it.

use std::sync::Arc;
use std::time::Instant;

use gateway_backend::{
    ChoiceSink, Echo, EchoedPrompt, Ending, FinishReason, SamplingParams, TokenLogprob,
};

use super::constraint::TokenGrammar;
use super::detokenize::{Detokenizer, TokenDecoder};
use super::fair_queue::FairQueue;
use super::model::StepModel;
use super::sampler::{scored, Sampled, Sampler};
use super::stats::{StepCounters, StepRecord};
use super::stop::StopMatcher;
use crate::EngineError;

/// One queued choice of a generation and where its output goes.
pub(crate) struct Job {
    /// The prompt's token ids, checked against the vocabulary and the context.
    pub(crate) prompt: Vec<u32>,
    /// Most tokens to generate.
    pub(crate) max_tokens: usize,
    /// How to sample this choice.
    pub(crate) sampling: SamplingParams,
    /// Strings that end the choice.
    pub(crate) stop: Vec<String>,
    /// Tokens that end the choice, and from when.
    pub(crate) ending: Ending,
    /// The grammar the choice's output follows, if any.
    pub(crate) grammar: Option<TokenGrammar>,
    /// Whether the prompt is sent back before the output, and with which log-probabilities.
    pub(crate) echo: Option<Echo>,
    /// Where the choice's tokens go.
    pub(crate) sink: ChoiceSink,
}

/// The limits the scheduler keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SchedulerLimits {
    /// Most sequences in the running batch.
    pub(crate) max_sequences: usize,
    /// Most tokens (prompt + `max_tokens`) reserved by the running sequences together.
    pub(crate) kv_budget_tokens: usize,
    /// Most prompt tokens run in one prefill chunk while no sequence is generating.
    pub(crate) prefill_chunk: usize,
    /// Most prompt tokens run in one prefill chunk while some sequence is generating: the
    /// longest pause a new prompt adds to the running streams' next token.
    pub(crate) prefill_chunk_while_decoding: usize,
}

/// The tokenizer side of the scheduler: turning tokens into text and the end-of-turn tokens.
pub(crate) struct Vocabulary<D> {
    pub(crate) decoder: D,
    pub(crate) eos: Vec<u32>,
}

/// A running sequence.
struct Sequence {
    slot: usize,
    /// Where the tokens go; taken when the sequence ends.
    sink: Option<ChoiceSink>,
    prompt: Vec<u32>,
    prefilled: usize,
    /// Whether the prompt cache was asked for its prefix (and the sink told the answer).
    looked_up: bool,
    reserved: usize,
    max_tokens: usize,
    generated: usize,
    next: Option<u32>,
    sampler: Sampler,
    detokenizer: Detokenizer,
    stop: StopMatcher,
    /// The tokens that end the sequence: the end-of-sequence tokens (unless ignored) and the
    /// request's stop tokens.
    stop_tokens: Vec<u32>,
    /// The prompt to send back before the output, and its log-probabilities so far.
    echo: Option<(Echo, Vec<TokenLogprob>)>,
    done: bool,
}

impl Sequence {
    /// Whether its prompt's every position is scored (echo with log-probabilities).
    fn scores_prompt(&self) -> bool {
        self.echo
            .as_ref()
            .is_some_and(|(echo, _)| echo.logprobs.is_some())
    }
}

/// The running batch of one model.
pub(crate) struct Scheduler<M, D> {
    model: M,
    vocab: Vocabulary<D>,
    limits: SchedulerLimits,
    running: Vec<Sequence>,
    free_slots: Vec<usize>,
    reserved: usize,
    counters: Arc<StepCounters>,
}

impl<M: StepModel, D: TokenDecoder> Scheduler<M, D> {
    /// A scheduler with no running sequence, adding the figures of its steps to `counters`.
    pub(crate) fn new(
        model: M,
        vocab: Vocabulary<D>,
        limits: SchedulerLimits,
        counters: Arc<StepCounters>,
    ) -> Self {
        Self {
            model,
            vocab,
            limits,
            running: Vec::new(),
            free_slots: (0..limits.max_sequences).rev().collect(),
            reserved: 0,
            counters,
        }
    }

    /// Serves jobs until the queue is closed and empty and nothing runs.
    pub(crate) fn run(mut self, jobs: &FairQueue<Job>) {
        loop {
            if self.running.is_empty() && !jobs.wait() {
                break;
            }
            let started = Instant::now();
            self.admit(jobs);
            let record = self.step();
            if record.decode_rows + record.prefill_tokens > 0 {
                self.counters.record(&record, started.elapsed());
            }
        }
    }

    /// Moves waiting jobs into the batch, the tenants in turn, while a slot and the token
    /// budget allow; a job that does not fit stops admission and is first the next time.
    /// Jobs whose client went away are dropped.
    pub(crate) fn admit(&mut self, jobs: &FairQueue<Job>) {
        while let Some(job) = jobs.take_if(|job| job.sink.is_closed() || self.fits(job)) {
            if !job.sink.is_closed() {
                self.start(job);
            }
        }
    }

    /// The tokens a job reserves: its prompt and `max_tokens`.
    fn reserve(job: &Job) -> usize {
        job.prompt.len() + job.max_tokens
    }

    /// Whether a slot is free and the job's reservation fits the token budget.
    fn fits(&self, job: &Job) -> bool {
        !self.free_slots.is_empty()
            && self.reserved + Self::reserve(job) <= self.limits.kv_budget_tokens
    }

    /// Puts `job` into the batch; the caller checked that it [fits](Self::fits).
    fn start(&mut self, job: Job) {
        let Some(slot) = self.free_slots.pop() else {
            return;
        };
        let reserve = Self::reserve(&job);
        self.reserved += reserve;
        let mut stop_tokens = job.ending.stop_token_ids;
        if !job.ending.ignore_eos {
            stop_tokens.extend(&self.vocab.eos);
        }
        self.running.push(Sequence {
            slot,
            sink: Some(job.sink),
            prefilled: 0,
            looked_up: false,
            reserved: reserve,
            max_tokens: job.max_tokens,
            generated: 0,
            next: None,
            sampler: Sampler::new(job.sampling)
                .with_prompt(&job.prompt)
                .holding_back(stop_tokens.clone(), job.ending.min_tokens)
                .following(job.grammar),
            detokenizer: Detokenizer::default(),
            stop: StopMatcher::new(&job.stop),
            stop_tokens,
            echo: job.echo.map(|echo| (echo, Vec::new())),
            done: false,
            prompt: job.prompt,
        });
    }

    /// Number of sequences in the batch.
    #[cfg(test)]
    pub(crate) fn running(&self) -> usize {
        self.running.len()
    }

    /// One scheduling step: drop cancelled sequences, one prefill chunk, one decode step.
    /// Returns what it ran.
    pub(crate) fn step(&mut self) -> StepRecord {
        for sequence in &mut self.running {
            sequence.done |= sequence.sink.as_ref().is_none_or(ChoiceSink::is_closed);
        }
        self.retire();
        let (prefill_tokens, cached_tokens) = self.prefill_chunk();
        let decode_rows = self.decode();
        self.retire();
        StepRecord {
            decode_rows,
            prefill_tokens,
            cached_tokens,
            prompt_cache_bytes: self.model.prompt_cache_bytes(),
            onnx: self.model.take_run_time(),
        }
    }

    /// Copies the prompt cache's prefix of sequence `index`'s prompt into its row (nothing
    /// for a prompt whose every position is scored) and reports it to its sink; returns the
    /// tokens copied.
    fn reuse_cached_prefix(&mut self, index: usize) -> usize {
        let sequence = &self.running[index];
        let reused = if sequence.scores_prompt() {
            Ok(0)
        } else {
            self.model.reuse_prefix(sequence.slot, &sequence.prompt)
        };
        let sequence = &mut self.running[index];
        match reused {
            Ok(tokens) => {
                sequence.prefilled = tokens;
                note_cached(sequence, tokens);
                tokens
            }
            Err(error) => {
                fail(sequence, error);
                0
            }
        }
    }

    /// Runs the next prompt chunk of the oldest sequence still reading its prompt, together
    /// with the whole prompts of the sequences admitted after it when they all fit the chunk
    /// budget (right-padded: rows × longest prompt; a smaller budget while other sequences
    /// generate, so their next token waits less); returns the prompt tokens run and those
    /// taken from the prompt cache.
    fn prefill_chunk(&mut self) -> (usize, usize) {
        let Some(first) = self
            .running
            .iter()
            .position(|s| !s.done && s.prefilled < s.prompt.len())
        else {
            return (0, 0);
        };
        let cached = if !self.running[first].looked_up {
            self.reuse_cached_prefix(first)
        } else {
            0
        };
        if self.running[first].done {
            return (0, cached);
        }
        let decoding = self.running.iter().any(|s| !s.done && s.next.is_some());
        let budget = if decoding {
            self.limits.prefill_chunk_while_decoding
        } else {
            self.limits.prefill_chunk
        }
        .max(1);
        if self.running[first].scores_prompt() {
            return (self.prefill_scored(first, budget), cached);
        }
        let indices = self.prefill_batch(first, budget);
        for &index in &indices[1..] {
            note_cached(&mut self.running[index], 0);
        }
        let chunks: Vec<(usize, &[u32])> = indices
            .iter()
            .map(|&i| {
                let sequence = &self.running[i];
                let end = (sequence.prefilled + budget).min(sequence.prompt.len());
                (sequence.slot, &sequence.prompt[sequence.prefilled..end])
            })
            .collect();
        let count = chunks.iter().map(|(_, chunk)| chunk.len()).sum();
        let ends: Vec<usize> = indices
            .iter()
            .zip(&chunks)
            .map(|(&i, (_, chunk))| self.running[i].prefilled + chunk.len())
            .collect();
        match self.model.prefill(&chunks) {
            Ok(logits) => {
                for (position, (&index, end)) in indices.iter().zip(ends).enumerate() {
                    let sequence = &mut self.running[index];
                    sequence.prefilled = end;
                    self.model.keep_prefix(sequence.slot, &sequence.prompt, end);
                    if end == sequence.prompt.len() {
                        self.emit(index, logits.row(position));
                    }
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for &index in &indices {
                    fail(&mut self.running[index], shared(&error));
                }
            }
        }
        (count, cached)
    }

    /// Runs the next prompt chunk of sequence `index` with every position's logits, and
    /// scores each prompt token after the first under the logits before it; returns the
    /// prompt tokens run.
    fn prefill_scored(&mut self, index: usize, budget: usize) -> usize {
        let sequence = &self.running[index];
        let (start, slot) = (sequence.prefilled, sequence.slot);
        let end = (start + budget).min(sequence.prompt.len());
        let chunk = sequence.prompt[start..end].to_vec();
        let logits = match self.model.prefill_every_position(slot, &chunk) {
            Ok(logits) => logits,
            Err(error) => {
                fail(&mut self.running[index], error);
                return chunk.len();
            }
        };
        let decoder = &self.vocab.decoder;
        let sequence = &mut self.running[index];
        for position in start..end {
            let row = logits.row(position - start);
            let (Some(&next), Some((echo, scored_tokens))) =
                (sequence.prompt.get(position + 1), sequence.echo.as_mut())
            else {
                continue;
            };
            let top = echo.logprobs.unwrap_or(0);
            match token_logprob(decoder, &scored(row, next, top)) {
                Ok(logprob) => scored_tokens.extend(logprob),
                Err(error) => {
                    fail(sequence, error);
                    return chunk.len();
                }
            }
        }
        sequence.prefilled = end;
        if end == sequence.prompt.len() {
            let last = logits.row(end - start - 1).to_vec();
            self.emit(index, &last);
        }
        chunk.len()
    }

    /// The sequences to prefill in one run, starting at `first`: only it, unless it starts
    /// its prompt and that fits `budget`; then also the following sequences (all new, none
    /// scoring its prompt, none finding a prefix in the prompt cache) while rows × longest
    /// prompt stays within `budget`.
    fn prefill_batch(&self, first: usize, budget: usize) -> Vec<usize> {
        let mut batch = vec![first];
        let head = &self.running[first];
        if head.prefilled > 0 || head.prompt.len() > budget {
            return batch;
        }
        let mut longest = head.prompt.len();
        for (index, sequence) in self.running.iter().enumerate().skip(first + 1) {
            let widest = longest.max(sequence.prompt.len());
            if sequence.prefilled > 0
                || sequence.done
                || sequence.scores_prompt()
                || widest * (batch.len() + 1) > budget
                || self.model.cached_prefix(&sequence.prompt) > 0
            {
                break;
            }
            batch.push(index);
            longest = widest;
        }
        batch
    }

    /// Runs one decode step of every sequence that is generating; returns their number.
    fn decode(&mut self) -> usize {
        let indices: Vec<usize> = (0..self.running.len())
            .filter(|&i| !self.running[i].done && self.running[i].next.is_some())
            .collect();
        if indices.is_empty() {
            return 0;
        }
        let rows: Vec<(usize, u32)> = indices
            .iter()
            .map(|&i| {
                (
                    self.running[i].slot,
                    self.running[i].next.unwrap_or_default(),
                )
            })
            .collect();
        match self.model.decode(&rows) {
            Ok(logits) => {
                for (position, &index) in indices.iter().enumerate() {
                    self.emit(index, logits.row(position));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for &index in &indices {
                    fail(&mut self.running[index], shared(&error));
                }
            }
        }
        indices.len()
    }

    /// Samples the next token of sequence `index` from `logits` and reports it; the first
    /// time, sends the prompt back first when asked to, and ends a choice of no tokens.
    fn emit(&mut self, index: usize, logits: &[f32]) {
        let decoder = &self.vocab.decoder;
        let sequence = &mut self.running[index];
        if let Some((echo, logprobs)) = sequence.echo.take() {
            if let Err(error) = send_prompt(sequence, decoder, echo, logprobs) {
                return fail(sequence, error);
            }
        }
        if sequence.max_tokens == 0 {
            return finish(sequence, decoder, FinishReason::Length, false);
        }
        let sampled = match sequence.sampler.sample(logits) {
            Ok(sampled) => sampled,
            Err(error) => return fail(sequence, error),
        };
        sequence.generated += 1;
        let ends = sequence.stop_tokens.contains(&sampled.token);
        let released = if ends || self.vocab.eos.contains(&sampled.token) {
            None
        } else {
            match sequence.detokenizer.push(decoder, sampled.token) {
                Ok(text) => Some(sequence.stop.push(&text)),
                Err(error) => return fail(sequence, error),
            }
        };
        let logprob = match token_logprob(decoder, &sampled) {
            Ok(logprob) => logprob,
            Err(error) => return fail(sequence, error),
        };
        let stopped = released.as_ref().is_some_and(|r| r.stopped);
        let text = released.map(|r| r.text).unwrap_or_default();
        let sent = sequence
            .sink
            .as_ref()
            .is_some_and(|sink| sink.token(text, logprob));
        if !sent {
            sequence.done = true;
        } else if ends || stopped {
            finish(sequence, decoder, FinishReason::Stop, stopped);
        } else if sequence.generated >= sequence.max_tokens {
            finish(sequence, decoder, FinishReason::Length, false);
        } else {
            sequence.next = Some(sampled.token);
        }
    }

    /// Removes finished and cancelled sequences and frees their slots and budget.
    fn retire(&mut self) {
        let (done, running): (Vec<Sequence>, Vec<Sequence>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|s| s.done);
        self.running = running;
        for sequence in done {
            self.model.release(sequence.slot);
            self.free_slots.push(sequence.slot);
            self.reserved -= sequence.reserved;
        }
    }
}

/// Sends `sequence`'s prompt back: its text and, when asked for, its tokens' `logprobs`.
fn send_prompt(
    sequence: &mut Sequence,
    decoder: &dyn TokenDecoder,
    echo: Echo,
    logprobs: Vec<TokenLogprob>,
) -> Result<(), EngineError> {
    let first_token = match (echo.logprobs, sequence.prompt.first()) {
        (Some(_), Some(&first)) => Some(decoder.decode(&[first])?),
        _ => None,
    };
    let prompt = EchoedPrompt {
        text: decoder.decode(&sequence.prompt)?,
        first_token,
        logprobs,
    };
    let listening = sequence
        .sink
        .as_ref()
        .is_some_and(|sink| sink.prompt(prompt));
    sequence.done |= !listening;
    Ok(())
}

/// Ends `sequence` normally with the text still held back (none after a stop string).
fn finish(
    sequence: &mut Sequence,
    decoder: &dyn TokenDecoder,
    mut reason: FinishReason,
    stopped_by_string: bool,
) {
    let mut tail = String::new();
    if !stopped_by_string {
        let rest = match sequence.detokenizer.finish(decoder) {
            Ok(rest) => rest,
            Err(error) => return fail(sequence, error),
        };
        let released = sequence.stop.push(&rest);
        tail = released.text;
        if released.stopped {
            reason = FinishReason::Stop;
        } else {
            tail.push_str(&sequence.stop.finish());
        }
    }
    if let Some(sink) = sequence.sink.take() {
        sink.finish(reason, tail);
    }
    sequence.done = true;
}

/// Records and reports that `tokens` of `sequence`'s prompt came from the prompt cache.
fn note_cached(sequence: &mut Sequence, tokens: usize) {
    sequence.looked_up = true;
    if let Some(sink) = &sequence.sink {
        sink.report_cached_prompt(tokens);
    }
}

/// Ends `sequence` with an error.
fn fail(sequence: &mut Sequence, error: EngineError) {
    tracing::error!(%error, "generation failed");
    if let Some(sink) = sequence.sink.take() {
        sink.fail(error.into());
    }
    sequence.done = true;
}

/// A copy of a run's error for each of its rows.
fn shared(error: &Arc<EngineError>) -> EngineError {
    match error.as_ref() {
        EngineError::Inference(inner) => EngineError::Inference(Arc::clone(inner)),
        other => EngineError::OutputShape(other.to_string()),
    }
}

/// The log-probabilities of a sampled token as the API reports them, when asked for.
fn token_logprob(
    decoder: &dyn TokenDecoder,
    sampled: &Sampled,
) -> Result<Option<TokenLogprob>, EngineError> {
    let Some(logprobs) = &sampled.logprobs else {
        return Ok(None);
    };
    let text = decoder.decode(&[sampled.token])?;
    let top = logprobs
        .top
        .iter()
        .map(|&(token, logprob)| {
            let text = decoder.decode(&[token])?;
            Ok((text.clone(), text.into_bytes(), logprob))
        })
        .collect::<Result<_, EngineError>>()?;
    Ok(Some(TokenLogprob {
        bytes: text.clone().into_bytes(),
        text,
        logprob: logprobs.logprob,
        top,
    }))
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
