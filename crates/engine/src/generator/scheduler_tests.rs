//! Scheduler tests with a fake decoder: each row's next token is its last token + 1 (bytes),
//! and `e` is followed by the end-of-turn token.
#![allow(clippy::unwrap_used, clippy::panic)]

use std::collections::{HashMap, HashSet};

use super::*;
use crate::generator::detokenize::tests::ByteDecoder;
use crate::generator::model::Logits;
use crate::generator::prefix_cache::BLOCK_TOKENS;
use gateway_backend::{generation_channel, GenerationEvent, GenerationStream, TokenCount};

const EOS: u32 = 256;
const VOCAB: usize = 301;

#[derive(Default)]
struct FakeModel {
    last: HashMap<usize, u32>,
    /// Each run's rows as (slot, tokens added).
    runs: Vec<Vec<(usize, usize)>>,
    /// The prompt prefixes kept, whole blocks.
    kept: HashSet<Vec<u32>>,
    /// Each prefix taken from the kept ones as (slot, tokens).
    reused: Vec<(usize, usize)>,
}

impl FakeModel {
    /// The fake logits after `last`: a peak at the next byte, or at the end-of-turn token.
    fn logits_after(last: u32) -> Vec<f32> {
        let next = if last == u32::from(b'e') {
            EOS
        } else {
            last + 1
        };
        let mut logits = vec![0.0; VOCAB];
        logits[next as usize] = 10.0;
        logits
    }
}

impl StepModel for FakeModel {
    fn prefill(&mut self, chunks: &[(usize, &[u32])]) -> Result<Logits, EngineError> {
        self.runs
            .push(chunks.iter().map(|&(slot, t)| (slot, t.len())).collect());
        let mut data = Vec::with_capacity(chunks.len() * VOCAB);
        for &(slot, tokens) in chunks {
            let last = *tokens.last().unwrap();
            self.last.insert(slot, last);
            data.extend(Self::logits_after(last));
        }
        Ok(Logits::new(data, VOCAB, (0..chunks.len()).collect()))
    }

    fn prefill_every_position(
        &mut self,
        slot: usize,
        tokens: &[u32],
    ) -> Result<Logits, EngineError> {
        self.runs.push(vec![(slot, tokens.len())]);
        let mut data = Vec::with_capacity(tokens.len() * VOCAB);
        for &token in tokens {
            data.extend(Self::logits_after(token));
        }
        self.last.insert(slot, *tokens.last().unwrap());
        Ok(Logits::new(data, VOCAB, (0..tokens.len()).collect()))
    }

    fn decode(&mut self, rows: &[(usize, u32)]) -> Result<Logits, EngineError> {
        self.runs
            .push(rows.iter().map(|&(slot, _)| (slot, 1)).collect());
        let mut data = Vec::with_capacity(rows.len() * VOCAB);
        for &(slot, token) in rows {
            self.last.insert(slot, token);
            data.extend(Self::logits_after(token));
        }
        Ok(Logits::new(data, VOCAB, (0..rows.len()).collect()))
    }

    fn cached_prefix(&self, prompt: &[u32]) -> usize {
        (1..=prompt.len().saturating_sub(1) / BLOCK_TOKENS)
            .rev()
            .map(|blocks| blocks * BLOCK_TOKENS)
            .find(|&len| self.kept.contains(&prompt[..len]))
            .unwrap_or(0)
    }

    fn reuse_prefix(&mut self, slot: usize, prompt: &[u32]) -> Result<usize, EngineError> {
        let len = self.cached_prefix(prompt);
        if len > 0 {
            self.last.insert(slot, prompt[len - 1]);
            self.reused.push((slot, len));
        }
        Ok(len)
    }

    fn keep_prefix(&mut self, _slot: usize, prompt: &[u32], upto: usize) {
        for blocks in 1..=upto / BLOCK_TOKENS {
            self.kept.insert(prompt[..blocks * BLOCK_TOKENS].to_vec());
        }
    }

    fn prompt_cache_bytes(&self) -> usize {
        self.kept.len()
    }

    fn release(&mut self, slot: usize) {
        self.last.remove(&slot);
    }

    fn take_run_time(&mut self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

fn scheduler(max_sequences: usize, prefill_chunk: usize) -> Scheduler<FakeModel, ByteDecoder> {
    scheduler_with(max_sequences, prefill_chunk, prefill_chunk)
}

fn scheduler_with(
    max_sequences: usize,
    prefill_chunk: usize,
    prefill_chunk_while_decoding: usize,
) -> Scheduler<FakeModel, ByteDecoder> {
    let limits = SchedulerLimits {
        max_sequences,
        kv_budget_tokens: 64,
        prefill_chunk,
        prefill_chunk_while_decoding,
    };
    let vocab = Vocabulary {
        decoder: ByteDecoder,
        eos: vec![EOS],
    };
    Scheduler::new(FakeModel::default(), vocab, limits, Arc::default())
}

fn job(prompt: &str, max_tokens: usize, stop: &[&str]) -> (Job, GenerationStream) {
    let (mut jobs, stream) = choices(prompt, 1, max_tokens, stop);
    (jobs.remove(0), stream)
}

/// The `n` choices of one greedy generation of `prompt`, and its stream.
fn choices(prompt: &str, n: u32, max_tokens: usize, stop: &[&str]) -> (Vec<Job>, GenerationStream) {
    let prompt: Vec<u32> = prompt.bytes().map(u32::from).collect();
    let (sinks, stream) = generation_channel(n, TokenCount::exact(prompt.len()));
    let jobs = sinks
        .into_iter()
        .map(|sink| Job {
            prompt: prompt.clone(),
            max_tokens,
            sampling: SamplingParams {
                temperature: 0.0,
                ..SamplingParams::default()
            },
            stop: stop.iter().map(|s| (*s).to_owned()).collect(),
            ending: Ending::default(),
            grammar: None,
            echo: None,
            sink,
        })
        .collect();
    (jobs, stream)
}

/// The text, finish reason and token counts a stream got so far.
fn outcome(stream: &mut GenerationStream) -> (String, Option<(FinishReason, usize, usize)>) {
    let mut text = String::new();
    let mut finish = None;
    let mut end = None;
    while let Some(event) = stream.try_next() {
        match event {
            GenerationEvent::Token { text: piece, .. } => text.push_str(&piece),
            GenerationEvent::Finished { reason, tail, .. } => {
                text.push_str(&tail);
                finish = Some(reason);
            }
            GenerationEvent::Done { usage } => {
                end = finish.map(|reason| (reason, usage.prompt_tokens, usage.completion_tokens));
            }
            GenerationEvent::Failed { error, .. } => panic!("{error}"),
            GenerationEvent::Prompt { .. } => {}
        }
    }
    (text, end)
}

/// The prompt a stream got back, if any, and the rest of its outcome.
fn echoed(stream: &mut GenerationStream) -> Option<gateway_backend::EchoedPrompt> {
    let mut echoed = None;
    while let Some(event) = stream.try_next() {
        if let GenerationEvent::Prompt { prompt, .. } = event {
            echoed = Some(prompt);
            break;
        }
    }
    echoed
}

/// A queue of 64 jobs and the one tenant of most tests.
fn queue() -> (FairQueue<Job>, Arc<str>) {
    (FairQueue::new(64), Arc::from("tenant"))
}

fn run_all(scheduler: &mut Scheduler<FakeModel, ByteDecoder>, jobs: Vec<Job>) {
    let (queue, tenant) = queue();
    for job in jobs {
        queue.push(&tenant, job).unwrap();
    }
    for _ in 0..32 {
        scheduler.admit(&queue);
        scheduler.step();
    }
}

#[test]
fn generates_until_the_end_of_turn_token() {
    let mut s = scheduler(4, 16);
    let (first, mut a) = job("a", 10, &[]);
    let (second, mut b) = job("ab", 2, &[]);
    let (third, mut c) = job("a", 10, &["d"]);
    run_all(&mut s, vec![first, second, third]);
    assert_eq!(
        outcome(&mut a),
        ("bcde".into(), Some((FinishReason::Stop, 1, 5)))
    );
    assert_eq!(
        outcome(&mut b),
        ("cd".into(), Some((FinishReason::Length, 2, 2)))
    );
    assert_eq!(
        outcome(&mut c),
        ("bc".into(), Some((FinishReason::Stop, 1, 3)))
    );
    assert_eq!(s.running(), 0);
}

#[test]
fn stop_tokens_min_tokens_and_ignore_eos_end_choices_as_asked() {
    let mut s = scheduler(4, 16);
    let with = |prompt: &str, max_tokens: usize, ending: Ending| {
        let (mut job, stream) = job(prompt, max_tokens, &[]);
        job.ending = ending;
        (job, stream)
    };
    let (stop_token, mut a) = with(
        "a",
        10,
        Ending {
            stop_token_ids: vec![u32::from(b'c')],
            ..Ending::default()
        },
    );
    let (ignore_eos, mut b) = with(
        "a",
        5,
        Ending {
            ignore_eos: true,
            ..Ending::default()
        },
    );
    let (min_tokens, mut c) = with(
        "d",
        3,
        Ending {
            min_tokens: 3,
            ..Ending::default()
        },
    );
    run_all(&mut s, vec![stop_token, ignore_eos, min_tokens]);
    assert_eq!(
        outcome(&mut a),
        ("b".into(), Some((FinishReason::Stop, 1, 2))),
        "the stop token ends the choice and is not part of it"
    );
    assert_eq!(
        outcome(&mut b),
        ("bcde".into(), Some((FinishReason::Length, 1, 5))),
        "the end-of-turn token is generated without text and does not end the choice"
    );
    let (text, finish) = outcome(&mut c);
    assert!(text.starts_with('e') && text.len() == 3, "{text:?}");
    assert_eq!(
        finish,
        Some((FinishReason::Length, 1, 3)),
        "the end-of-turn token is held back for 3 tokens"
    );
}

#[test]
fn long_prompts_are_prefilled_in_chunks_between_decode_steps() {
    let mut s = scheduler(4, 2);
    let (short, _a) = job("a", 10, &[]);
    let (long, _b) = job("aaaab", 10, &[]);
    run_all(&mut s, vec![short, long]);
    let runs = &s.model.runs;
    // The short prompt's prefill and first decode step, then the long prompt's chunks
    // alternate with decode steps of the short one, then both decode together.
    let expected = [
        vec![(0, 1)],
        vec![(0, 1)],
        vec![(1, 2)],
        vec![(0, 1)],
        vec![(1, 2)],
        vec![(0, 1)],
        vec![(1, 1)],
        vec![(0, 1), (1, 1)],
    ];
    assert_eq!(&runs[..8], &expected);
}

#[test]
fn new_prompts_that_fit_the_chunk_budget_are_prefilled_together() {
    let mut s = scheduler(4, 8);
    let (a, mut a_events) = job("a", 2, &[]);
    let (b, _b) = job("abc", 2, &[]);
    let (c, _c) = job("ab", 2, &[]);
    let (d, _d) = job("abcd", 2, &[]);
    run_all(&mut s, vec![a, b, c, d]);
    // Rows × longest prompt within 8: a, b and c (3 × 3) do not fit, a and b (2 × 3) do.
    assert_eq!(&s.model.runs[0], &[(0, 1), (1, 3)]);
    assert_eq!(&s.model.runs[1], &[(0, 1), (1, 1)]);
    assert_eq!(&s.model.runs[2], &[(2, 2), (3, 4)]);
    assert_eq!(
        outcome(&mut a_events),
        ("bc".into(), Some((FinishReason::Length, 1, 2)))
    );
}

#[test]
fn prompts_arriving_while_others_generate_get_the_smaller_chunk() {
    let mut s = scheduler_with(4, 8, 2);
    let (jobs, tenant) = queue();
    // "aaab" generates c, d, e and the end of turn: three decode steps after its prefill's.
    let (first, _a) = job("aaab", 10, &[]);
    jobs.push(&tenant, first).unwrap();
    s.admit(&jobs);
    s.step();
    // Alone, the whole prompt runs at once (budget 8), then its first decode step.
    assert_eq!(&s.model.runs[..2], &[vec![(0, 4)], vec![(0, 1)]]);
    let (second, _b) = job("abcde", 10, &[]);
    jobs.push(&tenant, second).unwrap();
    s.admit(&jobs);
    for _ in 0..3 {
        s.step();
    }
    // While the first generates, the new prompt runs 2 tokens per step between its steps.
    let chunks: Vec<_> = s.model.runs[2..].iter().filter(|r| r[0].0 == 1).collect();
    assert_eq!(chunks, [&vec![(1, 2)], &vec![(1, 2)], &vec![(1, 1)]]);
}

#[test]
fn a_full_batch_queues_and_a_dropped_stream_frees_its_slot() {
    let mut s = scheduler(1, 16);
    let (jobs, tenant) = queue();
    let (first, a) = job("a", 50, &[]);
    let (second, mut b) = job("a", 2, &[]);
    jobs.push(&tenant, first).unwrap();
    jobs.push(&tenant, second).unwrap();
    s.admit(&jobs);
    s.step();
    assert_eq!(s.running(), 1);
    assert_eq!(outcome(&mut b), (String::new(), None));
    drop(a);
    s.step();
    assert_eq!(s.running(), 0);
    for _ in 0..4 {
        s.admit(&jobs);
        s.step();
    }
    assert_eq!(
        outcome(&mut b),
        ("bc".into(), Some((FinishReason::Length, 1, 2)))
    );
}

#[test]
fn the_token_budget_limits_admission() {
    let mut s = scheduler(4, 16);
    let (jobs, tenant) = queue();
    let (big, _a) = job("a", 60, &[]);
    let (next, _b) = job("a", 10, &[]);
    jobs.push(&tenant, big).unwrap();
    jobs.push(&tenant, next).unwrap();
    s.admit(&jobs);
    assert_eq!(s.running(), 1);
}

#[test]
fn a_single_request_is_admitted_before_a_thousand_queued_by_another_tenant() {
    // One slot: the flood's first job runs; when it ends, the single job is next.
    let mut s = scheduler(1, 16);
    let jobs = FairQueue::new(2048);
    let (flood, single): (Arc<str>, Arc<str>) = (Arc::from("flood"), Arc::from("single"));
    let mut flood_streams = Vec::new();
    for _ in 0..1000 {
        let (job, stream) = job("a", 2, &[]);
        jobs.push(&flood, job).unwrap();
        flood_streams.push(stream);
    }
    let (alone, mut alone_events) = job("b", 2, &[]);
    jobs.push(&single, alone).unwrap();
    let mut steps = 0;
    while outcome(&mut alone_events).1.is_none() {
        s.admit(&jobs);
        s.step();
        steps += 1;
        assert!(steps < 20, "the single request waited behind the flood");
    }
    let finished = flood_streams
        .iter_mut()
        .map(|stream| outcome(stream).1)
        .filter(Option::is_some)
        .count();
    assert_eq!(
        finished, 1,
        "exactly one flood job ran before the single one"
    );
    assert_eq!(jobs.len(), 999);
}

#[test]
fn a_job_waiting_for_budget_is_not_overtaken() {
    // Budget 64: the big job (61) runs; the next big one of another tenant waits for it, and
    // a small job behind it does not overtake it.
    let mut s = scheduler(4, 16);
    let jobs = FairQueue::new(64);
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let (first, _first) = job("a", 60, &[]);
    let (second, _second) = job("a", 60, &[]);
    let (small, _small) = job("a", 2, &[]);
    jobs.push(&a, first).unwrap();
    jobs.push(&b, second).unwrap();
    jobs.push(&a, small).unwrap();
    s.admit(&jobs);
    assert_eq!(s.running(), 1);
    assert_eq!(jobs.len(), 2);
}

#[test]
fn echoed_prompts_are_scored_position_by_position_across_chunks() {
    let mut s = scheduler(4, 2);
    let (mut scored, mut scored_events) = job("abc", 2, &[]);
    scored.echo = Some(Echo { logprobs: Some(1) });
    let (mut text_only, mut text_events) = job("ab", 0, &[]);
    text_only.echo = Some(Echo { logprobs: None });
    let (plain, _plain_events) = job("a", 1, &[]);
    run_all(&mut s, vec![scored, text_only, plain]);
    // The scored prompt runs alone, in chunks of 2, every position's logits asked for.
    assert_eq!(&s.model.runs[0], &[(0, 2)]);
    assert_eq!(&s.model.runs[1], &[(0, 1)]);
    let prompt = echoed(&mut scored_events).unwrap_or_else(|| panic!("no prompt"));
    assert_eq!(prompt.text, "abc");
    assert_eq!(prompt.first_token.as_deref(), Some("a"));
    let texts: Vec<&str> = prompt.logprobs.iter().map(|lp| lp.text.as_str()).collect();
    assert_eq!(texts, ["b", "c"]);
    // Each token was the fake model's peak (10 over 300 zeros): log(e^10 / (e^10 + 300)).
    let expected = 10.0 - (10f32.exp() + 300.0).ln();
    for logprob in &prompt.logprobs {
        assert!((logprob.logprob - expected).abs() < 1e-4, "{logprob:?}");
        assert_eq!(logprob.top.len(), 1);
    }
    assert_eq!(
        outcome(&mut scored_events),
        ("de".into(), Some((FinishReason::Length, 3, 2)))
    );
    let prompt = echoed(&mut text_events).unwrap_or_else(|| panic!("no prompt"));
    assert_eq!((prompt.text.as_str(), prompt.first_token), ("ab", None));
    assert!(prompt.logprobs.is_empty());
    assert_eq!(
        outcome(&mut text_events),
        (String::new(), Some((FinishReason::Length, 2, 0)))
    );
}

/// A scheduler of 4 sequences, chunks of 64 tokens and room for long prompts.
fn caching_scheduler() -> Scheduler<FakeModel, ByteDecoder> {
    let mut s = scheduler(4, 64);
    s.limits.kv_budget_tokens = 1024;
    s
}

/// A 40-token shared prefix and then `tail`.
fn shared_prefix(tail: &str) -> String {
    format!("{}{tail}", "s".repeat(40))
}

/// The prompt tokens a finished stream took from the prompt cache.
fn cached_tokens(stream: &mut GenerationStream) -> usize {
    let (_, end) = outcome(stream);
    assert!(end.is_some(), "the stream did not finish");
    stream.usage().cached_prompt_tokens
}

#[test]
fn a_prompt_starting_like_an_earlier_one_runs_only_its_uncached_part() {
    let mut s = caching_scheduler();
    let (first, mut a) = job(&shared_prefix("a"), 2, &[]);
    run_all(&mut s, vec![first]);
    assert_eq!(s.model.runs[0], [(0, 41)]);
    assert_eq!(cached_tokens(&mut a), 0);
    let runs_before = s.model.runs.len();
    let (second, mut b) = job(&shared_prefix("ab"), 2, &[]);
    run_all(&mut s, vec![second]);
    assert_eq!(s.model.reused, [(0, 32)], "two whole blocks of 16");
    assert_eq!(s.model.runs[runs_before], [(0, 10)]);
    let (text, end) = outcome(&mut b);
    assert_eq!(
        (text.as_str(), end),
        ("cd", Some((FinishReason::Length, 42, 2)))
    );
    assert_eq!(b.usage().cached_prompt_tokens, 32);
}

#[test]
fn sequences_admitted_together_find_the_prefix_the_first_one_ran() {
    let mut s = caching_scheduler();
    let (jobs, streams): (Vec<Job>, Vec<GenerationStream>) = ["a", "b", "c", "d"]
        .iter()
        .map(|tail| job(&shared_prefix(tail), 2, &[]))
        .unzip();
    run_all(&mut s, jobs);
    assert_eq!(s.model.runs[0], [(0, 41)], "too long to run together");
    assert_eq!(s.model.reused, [(1, 32), (2, 32), (3, 32)]);
    let cached: Vec<usize> = streams
        .into_iter()
        .map(|mut s| cached_tokens(&mut s))
        .collect();
    assert_eq!(cached, [0, 32, 32, 32]);
}

#[test]
fn prompts_scored_at_every_position_run_whole() {
    let mut s = caching_scheduler();
    let (first, _a) = job(&shared_prefix("a"), 2, &[]);
    run_all(&mut s, vec![first]);
    let (mut scored, mut b) = job(&shared_prefix("b"), 2, &[]);
    scored.echo = Some(Echo { logprobs: Some(0) });
    run_all(&mut s, vec![scored]);
    assert!(s.model.reused.is_empty());
    assert_eq!(cached_tokens(&mut b), 0);
}

#[test]
fn a_new_prompt_with_a_cached_prefix_is_not_run_with_fresh_ones() {
    let mut s = caching_scheduler();
    let (first, _a) = job(&"s".repeat(17), 1, &[]);
    run_all(&mut s, vec![first]);
    let runs_before = s.model.runs.len();
    let (fresh, mut fresh_events) = job("zz", 1, &[]);
    let (cached, mut cached_events) = job(&format!("{}a", "s".repeat(16)), 1, &[]);
    run_all(&mut s, vec![fresh, cached]);
    assert_eq!(
        s.model.runs[runs_before],
        [(0, 2)],
        "alone, though both fit"
    );
    assert_eq!(s.model.reused, [(1, 16)]);
    assert_eq!(s.model.runs[runs_before + 1], [(1, 1)]);
    assert_eq!(cached_tokens(&mut fresh_events), 0);
    assert_eq!(cached_tokens(&mut cached_events), 16);
}

#[test]
fn the_choices_of_one_prompt_report_what_every_one_of_them_was_spared() {
    let mut s = caching_scheduler();
    let (jobs, mut cold) = choices(&shared_prefix("a"), 2, 2, &[]);
    run_all(&mut s, jobs);
    assert_eq!(
        s.model.reused,
        [(1, 32)],
        "the second choice copies what the first ran"
    );
    assert_eq!(cached_tokens(&mut cold), 0, "the first choice ran it all");
    let (jobs, mut warm) = choices(&shared_prefix("a"), 2, 2, &[]);
    run_all(&mut s, jobs);
    assert_eq!(cached_tokens(&mut warm), 32);
}
