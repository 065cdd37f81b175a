//! One forward pass of the decoder graph (`docs/model-format.md`): the [`StepModel`] the
//! scheduler drives, and its ONNX Runtime implementation, which runs prefill chunks and
//! decode steps against the in-place [`KvCache`] and keeps prompt prefixes in a
//! [`PrefixCache`].
//!
//! A prompt position's keys and values come out the same whatever chunk it runs in, except
//! in a run of one token alone (ONNX Runtime's matrix kernels take another path for one row).
//! So a one-token chunk runs with a filler token after it, like a row still reading its
//! prompt in a decode step: what a prompt computes never depends on where it was cut, or on
//! how much of it came from the prompt cache.
//!
//! The decoder is generic over the element type of the graph's cache tensors ([`KvElement`]),
//! which its loader reads from the graph; only the logits are always float32.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use ort::session::{OutputSelector, RunOptions, Session, SessionInputValue};
use ort::value::Tensor;

use super::kv_cache::{KvCache, KvShape};
use super::kv_element::KvElement;
use super::prefix_cache::PrefixCache;
use crate::EngineError;

/// The input naming the positions whose logits the graph computes.
const LOGITS_POSITIONS: &str = "logits_positions";

/// A decoder the scheduler can run, one sequence slot per running sequence.
pub(crate) trait StepModel {
    /// Runs prompt chunks `(slot, tokens)`, each after its sequence's cached positions, and
    /// returns the logits of each chunk's last token, in the order given. Several chunks run
    /// together only when each starts its sequence (nothing cached yet).
    fn prefill(&mut self, chunks: &[(usize, &[u32])]) -> Result<Logits, EngineError>;

    /// Runs one prompt chunk of `slot` like [`Self::prefill`] and returns the logits of every
    /// one of its positions, one row per token (for the log-probabilities of a prompt).
    fn prefill_every_position(
        &mut self,
        slot: usize,
        tokens: &[u32],
    ) -> Result<Logits, EngineError>;

    /// Runs one token for each `(slot, token)` (every slot already prefilled) and returns the
    /// logits of each, in the order given.
    fn decode(&mut self, rows: &[(usize, u32)]) -> Result<Logits, EngineError>;

    /// How many leading tokens of `prompt` the prompt cache holds (never all of them: the last
    /// token must run to give the logits).
    fn cached_prefix(&self, prompt: &[u32]) -> usize;

    /// Copies the prompt cache's prefix of `prompt` into `slot`, which holds nothing yet, and
    /// returns its length: the next chunk runs from there.
    fn reuse_prefix(&mut self, slot: usize, prompt: &[u32]) -> Result<usize, EngineError>;

    /// Keeps what `slot` computed for the first `upto` tokens of its `prompt` in the prompt
    /// cache, beyond the end of the request.
    fn keep_prefix(&mut self, slot: usize, prompt: &[u32], upto: usize);

    /// Bytes the prompt cache holds.
    fn prompt_cache_bytes(&self) -> usize;

    /// Forgets the cache of `slot`.
    fn release(&mut self, slot: usize);

    /// Time spent inside ONNX Runtime since the last call.
    fn take_run_time(&mut self) -> Duration;
}

/// The next-token logits of a decode step: one row per requested sequence.
#[derive(Debug, Clone)]
pub(crate) struct Logits {
    data: Vec<f32>,
    vocab: usize,
    /// The batch row holding each requested sequence's logits.
    rows: Vec<usize>,
}

impl Logits {
    /// Logits `[batch, vocab]` of which request `i` reads batch row `rows[i]`.
    pub(crate) fn new(data: Vec<f32>, vocab: usize, rows: Vec<usize>) -> Self {
        Self { data, vocab, rows }
    }

    /// The logits of request `index` (empty when out of range).
    pub(crate) fn row(&self, index: usize) -> &[f32] {
        self.rows
            .get(index)
            .and_then(|&row| self.data.get(row * self.vocab..(row + 1) * self.vocab))
            .unwrap_or_default()
    }
}

/// The decoder session and the cache of its slots, of elements `E`.
pub(crate) struct OnnxDecoder<E> {
    session: Session,
    cache: KvCache<E>,
    prefixes: PrefixCache<E>,
    vocab: usize,
    /// Whether the graph takes `logits_positions` (else it returns every position's logits).
    selects_positions: bool,
    /// `past_key_values.{i}.key|value`, in cache tensor order.
    past_names: Vec<String>,
    /// `present.{i}.key|value`, in cache tensor order.
    present_names: Vec<String>,
    /// Time inside `Session::run` not yet taken by [`StepModel::take_run_time`].
    run_time: Duration,
}

impl<E: KvElement> OnnxDecoder<E> {
    /// Wraps `session` with a cache of `slots` sequences of at most `capacity` positions and
    /// a prompt cache of `prompt_cache_bytes`.
    pub(crate) fn new(
        session: Session,
        shape: KvShape,
        vocab: usize,
        slots: usize,
        capacity: usize,
        prompt_cache_bytes: usize,
    ) -> Self {
        let names = |prefix: &str| {
            (0..shape.layers)
                .flat_map(|layer| ["key", "value"].map(|kind| format!("{prefix}.{layer}.{kind}")))
                .collect()
        };
        let selects_positions = session
            .inputs()
            .iter()
            .any(|input| input.name() == LOGITS_POSITIONS);
        Self {
            session,
            cache: KvCache::new(shape, slots, capacity),
            prefixes: PrefixCache::new(shape, prompt_cache_bytes),
            vocab,
            selects_positions,
            past_names: names("past_key_values"),
            present_names: names("present"),
            run_time: Duration::ZERO,
        }
    }

    /// Runs `new[r]` tokens for each cache row `first + r` (`ids` row-major, `width` per row,
    /// right-padded) and returns the logits of position `last[r]` of each row, `[rows, vocab]`,
    /// or with `every_position` (one row only) the logits of each of its positions,
    /// `[width, vocab]`.
    fn forward(
        &mut self,
        first: usize,
        ids: Vec<i64>,
        width: usize,
        new: &[usize],
        last: Vec<i64>,
        every_position: bool,
    ) -> Result<Vec<f32>, EngineError> {
        let rows = new.len();
        let lengths: Vec<usize> = (first..first + rows)
            .map(|row| self.cache.row_len(row))
            .collect();
        let total = lengths.iter().copied().max().unwrap_or(0) + width;
        if total > self.cache.capacity() {
            return Err(EngineError::KvCache(format!(
                "{total} positions exceed the capacity of {}",
                self.cache.capacity()
            )));
        }
        let mut mask = vec![0i64; rows * total];
        for (row, (len, count)) in lengths.iter().zip(new).enumerate() {
            mask[row * total..row * total + len + count].fill(1);
        }
        let wanted: Vec<i64> = if every_position {
            (0..width as i64).collect()
        } else {
            last.clone()
        };
        let per_row = wanted.len() / rows.max(1);
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(([rows, width], ids))?.into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(([rows, total], mask))?.into(),
            ),
        ];
        if self.selects_positions {
            inputs.push((
                LOGITS_POSITIONS.into(),
                Tensor::from_array(([rows, per_row], wanted))?.into(),
            ));
        }
        let dims = self.cache.view_dims(rows);
        let mut outputs = OutputSelector::default();
        for (tensor, (past, present)) in self.past_names.iter().zip(&self.present_names).enumerate()
        {
            let memory = self.cache.rows_mut(tensor, first, rows);
            let (input, output) = in_place::bind(memory, dims)?;
            inputs.push((past.as_str().into(), input.into()));
            outputs = outputs.preallocate(present.as_str(), output);
        }
        let options = RunOptions::new()?.with_outputs(outputs);
        let started = Instant::now();
        let outputs = self.session.run_with_options(inputs, &options);
        self.run_time += started.elapsed();
        let outputs = outputs?;
        let shape_error = || EngineError::OutputShape("bad output logits".to_owned());
        let (logit_dims, logits) = outputs
            .get("logits")
            .ok_or_else(shape_error)?
            .try_extract_tensor::<f32>()?;
        let positions = if self.selects_positions {
            per_row
        } else {
            width
        };
        if logit_dims[..] != [rows as i64, positions as i64, self.vocab as i64] {
            return Err(shape_error());
        }
        if positions == per_row {
            return Ok(logits.to_vec());
        }
        let vocab = self.vocab;
        Ok(last
            .iter()
            .enumerate()
            .flat_map(|(row, &position)| {
                let start = (row * positions + position as usize) * vocab;
                logits[start..start + vocab].iter().copied()
            })
            .collect())
    }
}

impl<E: KvElement> StepModel for OnnxDecoder<E> {
    fn prefill(&mut self, chunks: &[(usize, &[u32])]) -> Result<Logits, EngineError> {
        let mut rows = Vec::with_capacity(chunks.len());
        for &(slot, _) in chunks {
            let row = self
                .cache
                .row(slot)
                .ok_or_else(|| EngineError::KvCache(format!("no free row for slot {slot}")))?;
            rows.push(row);
        }
        let first = rows.first().copied().unwrap_or(0);
        let adjacent = rows.iter().enumerate().all(|(i, &row)| row == first + i);
        let fresh = rows.iter().all(|&row| self.cache.row_len(row) == 0);
        if !adjacent || (chunks.len() > 1 && !fresh) {
            return Err(EngineError::KvCache(
                "prompt chunks run together must start new sequences in adjacent rows".to_owned(),
            ));
        }
        let mut new: Vec<usize> = chunks.iter().map(|(_, tokens)| tokens.len()).collect();
        let last = new.iter().map(|&count| count as i64 - 1).collect();
        if new == [1] && self.cache.row_len(first) + 2 <= self.cache.capacity() {
            new[0] = 2;
        }
        let width = new.iter().copied().max().unwrap_or(0);
        let mut ids = vec![0i64; chunks.len() * width];
        for (row, (_, tokens)) in chunks.iter().enumerate() {
            for (id, &token) in ids[row * width..].iter_mut().zip(tokens.iter()) {
                *id = i64::from(token);
            }
        }
        let data = self.forward(first, ids, width, &new, last, false)?;
        for &(slot, tokens) in chunks {
            self.cache.advance(slot, tokens.len());
        }
        Ok(Logits::new(data, self.vocab, (0..chunks.len()).collect()))
    }

    fn prefill_every_position(
        &mut self,
        slot: usize,
        tokens: &[u32],
    ) -> Result<Logits, EngineError> {
        let row = self
            .cache
            .row(slot)
            .ok_or_else(|| EngineError::KvCache(format!("no free row for slot {slot}")))?;
        let ids = tokens.iter().map(|&token| i64::from(token)).collect();
        let data = self.forward(row, ids, tokens.len(), &[tokens.len()], Vec::new(), true)?;
        self.cache.advance(slot, tokens.len());
        Ok(Logits::new(data, self.vocab, (0..tokens.len()).collect()))
    }

    fn decode(&mut self, rows: &[(usize, u32)]) -> Result<Logits, EngineError> {
        let batch = self.cache.in_use();
        // Rows not decoding this step (still reading their prompt) run a filler token whose
        // key and value land after their cached positions, where their next chunk writes.
        let mut ids = vec![0i64; batch];
        let mut picks = Vec::with_capacity(rows.len());
        for &(slot, token) in rows {
            let row = self
                .cache
                .row(slot)
                .filter(|&row| row < batch)
                .ok_or_else(|| EngineError::KvCache(format!("slot {slot} was not prefilled")))?;
            ids[row] = i64::from(token);
            picks.push(row);
        }
        let data = self.forward(0, ids, 1, &vec![1; batch], vec![0; batch], false)?;
        for &(slot, _) in rows {
            self.cache.advance(slot, 1);
        }
        Ok(Logits::new(data, self.vocab, picks))
    }

    fn cached_prefix(&self, prompt: &[u32]) -> usize {
        self.prefixes.cached_len(prompt)
    }

    fn reuse_prefix(&mut self, slot: usize, prompt: &[u32]) -> Result<usize, EngineError> {
        let row = self
            .cache
            .row(slot)
            .filter(|&row| self.cache.row_len(row) == 0)
            .ok_or_else(|| EngineError::KvCache(format!("slot {slot} has no empty row")))?;
        let cache = &mut self.cache;
        let reused = self.prefixes.reuse(prompt, |start, data| {
            cache.write_positions(row, start, data)
        });
        self.cache.advance(slot, reused);
        Ok(reused)
    }

    fn keep_prefix(&mut self, slot: usize, prompt: &[u32], upto: usize) {
        let Some(row) = self.cache.row_of(slot) else {
            return;
        };
        let computed = upto.min(self.cache.row_len(row));
        let cache = &self.cache;
        self.prefixes.keep(prompt, computed, |start, out| {
            cache.read_positions(row, start, out);
        });
    }

    fn prompt_cache_bytes(&self) -> usize {
        self.prefixes.bytes()
    }

    fn release(&mut self, slot: usize) {
        self.cache.release(slot);
    }

    fn take_run_time(&mut self) -> Duration {
        std::mem::take(&mut self.run_time)
    }
}

/// ONNX Runtime tensors over cache memory, without copies.
#[allow(unsafe_code)]
mod in_place {
    use std::ptr::NonNull;

    use ort::memory::{Allocator, MemoryInfo};
    use ort::value::DynValue;
    use ort::AsPointer;

    use super::KvElement;
    use crate::EngineError;

    /// Two tensors of shape `dims` over `memory`: the `past` input and the `present` output
    /// of one cache tensor, so that `GroupQueryAttention` sees one shared buffer and writes
    /// only the new positions into it.
    ///
    /// The values borrow `memory` without a lifetime: the caller drops both before it touches
    /// `memory` again (they live only for one run, inside `OnnxDecoder::forward`).
    pub(super) fn bind<E: KvElement>(
        memory: &mut [E],
        dims: [usize; 4],
    ) -> Result<(DynValue, DynValue), EngineError> {
        if dims.iter().product::<usize>() != memory.len() {
            return Err(EngineError::KvCache(format!(
                "a view of {dims:?} does not cover {} elements",
                memory.len()
            )));
        }
        let shape = dims.map(|d| d as i64);
        let data = memory.as_mut_ptr();
        let bytes = std::mem::size_of_val(memory);
        Ok((tensor(data, bytes, &shape)?, tensor(data, bytes, &shape)?))
    }

    /// A tensor of elements `E` over `bytes` bytes at `data`.
    fn tensor<E: KvElement>(
        data: *mut E,
        bytes: usize,
        shape: &[i64; 4],
    ) -> Result<DynValue, EngineError> {
        let info = MemoryInfo::default();
        let mut value = std::ptr::null_mut();
        // SAFETY: `data` points to `bytes` bytes of initialised `E`s that outlive the value
        // (see `bind`), `shape` describes exactly that many elements, and `E::ONNX_TYPE` is
        // the element type whose layout `E` has. ONNX Runtime does not
        // take ownership of `data`: releasing the value leaves the memory alone.
        let status = unsafe {
            (ort::api().CreateTensorWithDataAsOrtValue)(
                info.ptr(),
                data.cast(),
                bytes,
                shape.as_ptr(),
                shape.len(),
                E::ONNX_TYPE,
                &mut value,
            )
        };
        // SAFETY: `status` was just returned by the ONNX Runtime API.
        unsafe { ort::Error::result_from_status(status) }?;
        let value = NonNull::new(value)
            .ok_or_else(|| EngineError::KvCache("ONNX Runtime returned no tensor".to_owned()))?;
        // SAFETY: `value` is a valid tensor created above, owned by nobody else; the default
        // allocator is the CPU allocator its memory info describes.
        Ok(unsafe { DynValue::from_ptr(value, Some(&Allocator::default())) })
    }
}
