//! Choosing the next token from a row of logits: repetition, presence and frequency
//! penalties, tokens held back until a minimum length, greedy choice at temperature 0,
//! otherwise temperature, top-k, top-p (nucleus) and min-p sampling with a seeded random
//! generator, and the log-probabilities of the chosen token and the likeliest alternatives.
//! A choice held to an output constraint has the tokens its grammar does not allow masked
//! first. Pure: the same parameters, seed and logits give the same tokens.

use std::collections::{HashMap, HashSet};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use gateway_backend::SamplingParams;

use super::constraint::TokenGrammar;
use crate::EngineError;

/// Temperatures at or below this are greedy.
const GREEDY_TEMPERATURE: f32 = 1e-5;

/// The chosen token, and its log-probabilities when the request asked for them.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sampled {
    /// The token id.
    pub(crate) token: u32,
    /// Its log-probabilities, computed only when asked for (they cost a pass of `exp` over
    /// the whole vocabulary).
    pub(crate) logprobs: Option<Logprobs>,
}

/// The log-probabilities of a chosen token.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Logprobs {
    /// The token's log-probability under the penalized distribution (temperature 1).
    pub(crate) logprob: f32,
    /// The `top_logprobs` likeliest tokens and their log-probabilities, likeliest first.
    pub(crate) top: Vec<(u32, f32)>,
}

/// The sampling state of one sequence: its parameters, random generator, the counts of the
/// tokens it has generated (for the penalties) and what it holds back until when.
#[derive(Debug)]
pub(crate) struct Sampler {
    params: SamplingParams,
    rng: StdRng,
    counts: HashMap<u32, u32>,
    /// The prompt's tokens, kept only for a repetition penalty.
    prompt_tokens: HashSet<u32>,
    /// Tokens never sampled while fewer than `min_tokens` have been generated.
    held_back: Vec<u32>,
    min_tokens: usize,
    generated: usize,
    /// The grammar the output must follow, if any.
    grammar: Option<TokenGrammar>,
}

impl Sampler {
    /// A sampler seeded with `params.seed`.
    pub(crate) fn new(params: SamplingParams) -> Self {
        Self {
            params,
            rng: StdRng::seed_from_u64(params.seed),
            counts: HashMap::new(),
            prompt_tokens: HashSet::new(),
            held_back: Vec::new(),
            min_tokens: 0,
            generated: 0,
            grammar: None,
        }
    }

    /// Samples only tokens that `grammar` allows, and has it follow each one.
    pub(crate) fn following(mut self, grammar: Option<TokenGrammar>) -> Self {
        self.grammar = grammar;
        self
    }

    /// Counts the tokens of `prompt` as seen, for the repetition penalty.
    pub(crate) fn with_prompt(mut self, prompt: &[u32]) -> Self {
        if self.params.repetition_penalty != 1.0 {
            self.prompt_tokens = prompt.iter().copied().collect();
        }
        self
    }

    /// Never samples `tokens` (the end-of-sequence and stop tokens) before `min_tokens`
    /// tokens have been generated.
    pub(crate) fn holding_back(mut self, tokens: Vec<u32>, min_tokens: usize) -> Self {
        self.held_back = tokens;
        self.min_tokens = min_tokens;
        self
    }

    /// Chooses the next token from `logits` (one score per vocabulary entry) and remembers it;
    /// fails only when the grammar allows no token.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> Result<Sampled, EngineError> {
        let mut adjusted = None;
        if self.adjusts() {
            adjusted = Some(self.adjusted(logits));
        }
        if let Some(grammar) = &mut self.grammar {
            let masked = adjusted.get_or_insert_with(|| logits.to_vec());
            grammar.mask(masked)?;
        }
        let scores = adjusted.as_deref().unwrap_or(logits);
        let token = if self.params.temperature <= GREEDY_TEMPERATURE {
            argmax(scores)
        } else {
            self.draw(scores)
        };
        if let Some(grammar) = &mut self.grammar {
            grammar.accept(token as u32)?;
        }
        *self.counts.entry(token as u32).or_default() += 1;
        self.generated += 1;
        let logprobs = self.params.top_logprobs.map(|count| {
            let logprobs = log_softmax(scores);
            Logprobs {
                logprob: logprobs.get(token).copied().unwrap_or(f32::NEG_INFINITY),
                top: top_entries(&logprobs, count),
            }
        });
        Ok(Sampled {
            token: token as u32,
            logprobs,
        })
    }

    /// Whether `logits` need changing before the choice.
    fn adjusts(&self) -> bool {
        self.params.presence_penalty != 0.0
            || self.params.frequency_penalty != 0.0
            || self.params.repetition_penalty != 1.0
            || self.holds_back()
    }

    fn holds_back(&self) -> bool {
        self.generated < self.min_tokens && !self.held_back.is_empty()
    }

    /// `logits` with the repetition penalty on the tokens of the prompt and those generated
    /// so far, the presence and frequency penalties of the generated ones, and the held-back
    /// tokens out of reach.
    fn adjusted(&self, logits: &[f32]) -> Vec<f32> {
        let mut scores = logits.to_vec();
        let repetition = self.params.repetition_penalty;
        if repetition != 1.0 {
            let generated_only = self
                .counts
                .keys()
                .filter(|token| !self.prompt_tokens.contains(token));
            for &token in self.prompt_tokens.iter().chain(generated_only) {
                if let Some(score) = scores.get_mut(token as usize) {
                    *score = if *score > 0.0 {
                        *score / repetition
                    } else {
                        *score * repetition
                    };
                }
            }
        }
        let (presence, frequency) = (self.params.presence_penalty, self.params.frequency_penalty);
        for (&token, &count) in &self.counts {
            if let Some(score) = scores.get_mut(token as usize) {
                *score -= presence + frequency * count as f32;
            }
        }
        if self.holds_back() {
            for &token in &self.held_back {
                if let Some(score) = scores.get_mut(token as usize) {
                    *score = f32::NEG_INFINITY;
                }
            }
        }
        scores
    }

    /// Samples among the top-k / top-p candidates at the configured temperature.
    fn draw(&mut self, scores: &[f32]) -> usize {
        let mut candidates: Vec<usize> = (0..scores.len()).collect();
        let by_score = |a: &usize, b: &usize| scores[*b].total_cmp(&scores[*a]);
        let top_k = self.params.top_k;
        if top_k > 0 && top_k < candidates.len() {
            candidates.select_nth_unstable_by(top_k - 1, by_score);
            candidates.truncate(top_k);
        }
        let max = candidates
            .iter()
            .map(|&i| scores[i])
            .fold(f32::NEG_INFINITY, f32::max);
        let temperature = self.params.temperature;
        let mut weights: Vec<f64> = candidates
            .iter()
            .map(|&i| f64::from((scores[i] - max) / temperature).exp())
            .collect();
        if self.params.min_p > 0.0 {
            // The likeliest candidate weighs 1: keep those at least `min_p` times as likely.
            let min_p = f64::from(self.params.min_p);
            let kept: Vec<usize> = (0..candidates.len())
                .filter(|&k| weights[k] >= min_p)
                .collect();
            candidates = kept.iter().map(|&k| candidates[k]).collect();
            weights = kept.iter().map(|&k| weights[k]).collect();
        }
        if self.params.top_p < 1.0 {
            let mut order: Vec<usize> = (0..candidates.len()).collect();
            order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]));
            let total: f64 = weights.iter().sum();
            let mass = f64::from(self.params.top_p) * total;
            let mut cumulative = 0.0;
            let mut kept = Vec::new();
            for index in order {
                kept.push(index);
                cumulative += weights[index];
                if cumulative >= mass {
                    break;
                }
            }
            candidates = kept.iter().map(|&k| candidates[k]).collect();
            weights = kept.iter().map(|&k| weights[k]).collect();
        }
        let total: f64 = weights.iter().sum();
        let mut target = self.rng.random::<f64>() * total;
        for (&candidate, &weight) in candidates.iter().zip(&weights) {
            if target < weight {
                return candidate;
            }
            target -= weight;
        }
        candidates.last().copied().unwrap_or(0)
    }
}

/// The log-probability of `token` under the model's own distribution `logits` (temperature 1,
/// no penalty) and the `top` likeliest tokens, as a prompt token's is reported.
pub(crate) fn scored(logits: &[f32], token: u32, top: usize) -> Sampled {
    let logprobs = log_softmax(logits);
    Sampled {
        token,
        logprobs: Some(Logprobs {
            logprob: logprobs
                .get(token as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY),
            top: top_entries(&logprobs, top),
        }),
    }
}

/// Index of the largest score (the first one on ties).
fn argmax(scores: &[f32]) -> usize {
    let mut best = 0;
    for (index, score) in scores.iter().enumerate() {
        if score.total_cmp(&scores[best]).is_gt() {
            best = index;
        }
    }
    best
}

/// `log(softmax(scores))`, computed stably.
fn log_softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = scores
        .iter()
        .map(|&s| f64::from(s - max).exp())
        .sum::<f64>();
    let log_sum = sum.ln() as f32;
    scores.iter().map(|&s| s - max - log_sum).collect()
}

/// The `count` largest entries of `logprobs` with their indices, largest first.
fn top_entries(logprobs: &[f32], count: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<usize> = (0..logprobs.len()).collect();
    let by_value = |a: &usize, b: &usize| logprobs[*b].total_cmp(&logprobs[*a]);
    if count > 0 && count < order.len() {
        order.select_nth_unstable_by(count - 1, by_value);
        order.truncate(count);
    }
    order.sort_by(by_value);
    order.truncate(count);
    order.into_iter().map(|i| (i as u32, logprobs[i])).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::panic)]

    use super::*;

    fn params(temperature: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            ..SamplingParams::default()
        }
    }

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.0, 0.5, 2.9];

    fn pick(sampler: &mut Sampler, logits: &[f32]) -> Sampled {
        sampler
            .sample(logits)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn temperature_zero_is_greedy_with_logprobs() {
        let mut sampler = Sampler::new(SamplingParams {
            top_logprobs: Some(2),
            ..params(0.0)
        });
        let sampled = pick(&mut sampler, &LOGITS);
        assert_eq!(sampled.token, 1);
        let expected = log_softmax(&LOGITS);
        let logprobs = sampled.logprobs.unwrap_or_else(|| panic!("no logprobs"));
        assert!((logprobs.logprob - expected[1]).abs() < 1e-6);
        assert_eq!(logprobs.top, vec![(1, expected[1]), (4, expected[4])]);
        let total: f32 = expected.iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
    }

    #[test]
    fn logprobs_are_computed_only_when_asked_for() {
        let mut sampler = Sampler::new(params(0.0));
        assert_eq!(
            pick(&mut sampler, &LOGITS),
            Sampled {
                token: 1,
                logprobs: None
            }
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_tokens() {
        let run = |seed| {
            let mut sampler = Sampler::new(SamplingParams {
                seed,
                ..params(1.5)
            });
            (0..32)
                .map(|_| pick(&mut sampler, &LOGITS).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn top_k_and_top_p_restrict_the_candidates() {
        let mut top_k = Sampler::new(SamplingParams {
            top_k: 2,
            ..params(5.0)
        });
        assert!((0..200).all(|_| [1, 4].contains(&pick(&mut top_k, &LOGITS).token)));
        let mut top_p = Sampler::new(SamplingParams {
            top_p: 0.01,
            ..params(1.0)
        });
        assert!((0..50).all(|_| pick(&mut top_p, &LOGITS).token == 1));
    }

    #[test]
    fn penalties_push_repeated_tokens_down() {
        let mut presence = Sampler::new(SamplingParams {
            presence_penalty: 2.0,
            ..params(0.0)
        });
        let tokens: Vec<u32> = (0..3).map(|_| pick(&mut presence, &LOGITS).token).collect();
        assert_eq!(tokens, vec![1, 4, 2]);
        let mut frequency = Sampler::new(SamplingParams {
            frequency_penalty: 0.15,
            ..params(0.0)
        });
        let tokens: Vec<u32> = (0..3)
            .map(|_| pick(&mut frequency, &LOGITS).token)
            .collect();
        assert_eq!(tokens, vec![1, 4, 1]);
    }

    #[test]
    fn min_p_keeps_the_tokens_nearly_as_likely_as_the_best() {
        // At temperature 1 token 4 is 0.90 times as likely as token 1, the others at most 0.37.
        let mut sampler = Sampler::new(SamplingParams {
            min_p: 0.5,
            ..params(1.0)
        });
        let drawn: HashSet<u32> = (0..300)
            .map(|_| pick(&mut sampler, &LOGITS).token)
            .collect();
        assert_eq!(drawn, HashSet::from([1, 4]));
    }

    #[test]
    fn the_repetition_penalty_covers_the_prompt_and_the_output() {
        let penalized = SamplingParams {
            repetition_penalty: 1.5,
            ..params(0.0)
        };
        let mut from_prompt = Sampler::new(penalized).with_prompt(&[1]);
        assert_eq!(pick(&mut from_prompt, &LOGITS).token, 4, "3.0 / 1.5 < 2.9");
        let mut from_output = Sampler::new(penalized).with_prompt(&[]);
        let tokens: Vec<u32> = (0..2)
            .map(|_| pick(&mut from_output, &LOGITS).token)
            .collect();
        assert_eq!(tokens, vec![1, 4]);
        let mut negative = Sampler::new(SamplingParams {
            repetition_penalty: 2.0,
            ..params(0.0)
        })
        .with_prompt(&[1]);
        let scores = [-1.0, -0.5, -2.0, -0.9, -3.0];
        assert_eq!(pick(&mut negative, &scores).token, 3, "-0.5 × 2 < -0.9");
    }

    #[test]
    fn a_prompt_token_is_scored_under_the_plain_distribution() {
        let scored = scored(&LOGITS, 2, 1);
        let expected = log_softmax(&LOGITS);
        let logprobs = scored.logprobs.unwrap_or_else(|| panic!("no logprobs"));
        assert_eq!((scored.token, logprobs.logprob), (2, expected[2]));
        assert_eq!(logprobs.top, vec![(1, expected[1])]);
    }

    #[test]
    fn held_back_tokens_wait_for_the_minimum_length() {
        let mut sampler = Sampler::new(params(0.0)).holding_back(vec![1, 4], 2);
        let tokens: Vec<u32> = (0..3).map(|_| pick(&mut sampler, &LOGITS).token).collect();
        assert_eq!(tokens, vec![2, 2, 1]);
    }
}
