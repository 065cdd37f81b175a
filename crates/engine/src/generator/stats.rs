//! Where a decoder's scheduler spends its time: counters the scheduler thread adds to after
//! every step and anyone may read, so the share of a step spent outside ONNX Runtime
//! (scheduling, sampling, detokenizing, sending) can be watched on a live server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gateway_backend::Figure;

/// Cumulative figures of a decoder's scheduler since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct StepStats {
    /// Scheduler steps that ran at least one forward pass.
    pub(crate) steps: u64,
    /// Sequence rows of all decode runs (a step decoding 16 sequences adds 16).
    pub(crate) decode_rows: u64,
    /// Prompt tokens run through prefill chunks.
    pub(crate) prefill_tokens: u64,
    /// Prompt tokens copied from the prompt cache instead of being run.
    pub(crate) cached_tokens: u64,
    /// Bytes of keys and values the prompt cache holds now.
    pub(crate) prompt_cache_bytes: u64,
    /// Seconds spent in those steps, everything included.
    pub(crate) step_seconds: f64,
    /// Seconds of those steps spent inside ONNX Runtime's `run`.
    pub(crate) onnx_seconds: f64,
}

/// The counters behind [`StepStats`], shared between the scheduler thread and readers.
#[derive(Debug, Default)]
pub(crate) struct StepCounters {
    steps: AtomicU64,
    decode_rows: AtomicU64,
    prefill_tokens: AtomicU64,
    cached_tokens: AtomicU64,
    prompt_cache_bytes: AtomicU64,
    step_nanos: AtomicU64,
    onnx_nanos: AtomicU64,
}

/// What one scheduler step did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StepRecord {
    pub(crate) decode_rows: usize,
    pub(crate) prefill_tokens: usize,
    /// Prompt tokens copied from the prompt cache.
    pub(crate) cached_tokens: usize,
    /// What the prompt cache holds after the step.
    pub(crate) prompt_cache_bytes: usize,
    pub(crate) onnx: Duration,
}

impl StepCounters {
    /// Adds one step that took `elapsed` in all.
    pub(crate) fn record(&self, record: &StepRecord, elapsed: Duration) {
        let add = |counter: &AtomicU64, value: u64| counter.fetch_add(value, Ordering::Relaxed);
        add(&self.steps, 1);
        add(&self.decode_rows, record.decode_rows as u64);
        add(&self.prefill_tokens, record.prefill_tokens as u64);
        add(&self.cached_tokens, record.cached_tokens as u64);
        self.prompt_cache_bytes
            .store(record.prompt_cache_bytes as u64, Ordering::Relaxed);
        add(&self.step_nanos, nanos(elapsed));
        add(&self.onnx_nanos, nanos(record.onnx));
    }

    /// The figures so far.
    pub(crate) fn snapshot(&self) -> StepStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        StepStats {
            steps: read(&self.steps),
            decode_rows: read(&self.decode_rows),
            prefill_tokens: read(&self.prefill_tokens),
            cached_tokens: read(&self.cached_tokens),
            prompt_cache_bytes: read(&self.prompt_cache_bytes),
            step_seconds: read(&self.step_nanos) as f64 / 1e9,
            onnx_seconds: read(&self.onnx_nanos) as f64 / 1e9,
        }
    }
}

impl StepStats {
    /// The figures as `/metrics` shows them (`gateway_engine_<name>`).
    pub(crate) fn figures(&self) -> Vec<Figure> {
        let figure = |name, help, value| Figure { name, help, value };
        vec![
            figure(
                "steps",
                "Scheduler steps run since start",
                self.steps as f64,
            ),
            figure(
                "decode_rows",
                "Sequence rows of all decode steps since start",
                self.decode_rows as f64,
            ),
            figure(
                "prefill_tokens",
                "Prompt tokens prefilled since start",
                self.prefill_tokens as f64,
            ),
            figure(
                "prompt_cache_hit_tokens",
                "Prompt tokens copied from the prompt cache instead of being run since start",
                self.cached_tokens as f64,
            ),
            figure(
                "prompt_cache_bytes",
                "Bytes of prompt keys and values the prompt cache holds",
                self.prompt_cache_bytes as f64,
            ),
            figure(
                "step_seconds",
                "Seconds spent in scheduler steps since start",
                self.step_seconds,
            ),
            figure(
                "onnx_seconds",
                "Seconds of scheduler steps spent inside ONNX Runtime since start",
                self.onnx_seconds,
            ),
        ]
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_add_up() {
        let counters = StepCounters::default();
        let record = StepRecord {
            decode_rows: 16,
            prefill_tokens: 0,
            cached_tokens: 0,
            prompt_cache_bytes: 4096,
            onnx: Duration::from_millis(30),
        };
        counters.record(&record, Duration::from_millis(32));
        counters.record(
            &StepRecord {
                decode_rows: 0,
                prefill_tokens: 100,
                cached_tokens: 32,
                prompt_cache_bytes: 8192,
                onnx: Duration::from_millis(90),
            },
            Duration::from_millis(91),
        );
        let stats = counters.snapshot();
        assert_eq!(
            (
                stats.steps,
                stats.decode_rows,
                stats.prefill_tokens,
                stats.cached_tokens,
                stats.prompt_cache_bytes
            ),
            (2, 16, 100, 32, 8192)
        );
        assert!((stats.step_seconds - 0.123).abs() < 1e-9);
        assert!((stats.onnx_seconds - 0.120).abs() < 1e-9);
        let figures = stats.figures();
        assert_eq!(figures[1].name, "decode_rows");
        assert_eq!(figures[1].value, 16.0);
    }
}
