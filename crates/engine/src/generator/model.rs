//! One forward pass of the decoder graph (`docs/model-format.md`): the [`StepModel`] the
//! scheduler drives, and its ONNX Runtime implementation, which builds the right-padded
//! inputs from the [`KvCache`], runs the session and keeps the new cache positions.

use std::borrow::Cow;

use ort::session::{Session, SessionInputValue};
use ort::value::Tensor;

use super::kv_cache::{KvCache, KvShape, Present};
use crate::EngineError;

/// A decoder the scheduler can run, one sequence slot per running sequence.
pub(crate) trait StepModel {
    /// Runs `tokens` of the sequence in `slot` after its cached positions (all rows of a run
    /// add the same number of tokens) and returns, per row, the logits of its last token.
    fn run(&mut self, rows: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>, EngineError>;

    /// Forgets the cache of `slot`.
    fn release(&mut self, slot: usize);
}

/// The decoder session and the cache of its slots.
pub(crate) struct OnnxDecoder {
    session: Session,
    cache: KvCache,
    shape: KvShape,
    vocab: usize,
    /// `past_key_values.{i}.key|value`, in cache tensor order.
    past_names: Vec<String>,
    /// `present.{i}.key|value`, in cache tensor order.
    present_names: Vec<String>,
}

impl OnnxDecoder {
    /// Wraps `session` with a cache of `slots` sequences.
    pub(crate) fn new(session: Session, shape: KvShape, vocab: usize, slots: usize) -> Self {
        let names = |prefix: &str| {
            (0..shape.layers)
                .flat_map(|layer| ["key", "value"].map(|kind| format!("{prefix}.{layer}.{kind}")))
                .collect()
        };
        Self {
            session,
            cache: KvCache::new(shape, slots),
            shape,
            vocab,
            past_names: names("past_key_values"),
            present_names: names("present"),
        }
    }
}

impl StepModel for OnnxDecoder {
    fn run(&mut self, rows: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>, EngineError> {
        let batch = rows.len();
        let new = rows.first().map_or(0, |(_, tokens)| tokens.len());
        let slots: Vec<usize> = rows.iter().map(|&(slot, _)| slot).collect();
        let lengths: Vec<usize> = slots.iter().map(|&slot| self.cache.len(slot)).collect();
        let past = lengths.iter().copied().max().unwrap_or(0);
        let total = past + new;
        let mut ids = Vec::with_capacity(batch * new);
        let mut mask = vec![0i64; batch * total];
        for (row, (_, tokens)) in rows.iter().enumerate() {
            ids.extend(tokens.iter().map(|&t| i64::from(t)));
            mask[row * total..row * total + lengths[row] + new].fill(1);
        }
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let mut inputs: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = vec![
            (
                "input_ids".into(),
                Tensor::from_array(([batch, new], ids))?.into(),
            ),
            (
                "attention_mask".into(),
                Tensor::from_array(([batch, total], mask))?.into(),
            ),
        ];
        for (tensor, name) in self.past_names.iter().enumerate() {
            let data = self.cache.gather(tensor, &slots, past);
            let value = Tensor::from_array(([batch, heads, past, head_dim], data))?;
            inputs.push((name.as_str().into(), value.into()));
        }
        let outputs = self.session.run(inputs)?;
        let shape_error = |name: &str| EngineError::OutputShape(format!("bad output {name}"));
        let (dims, logits) = outputs
            .get("logits")
            .ok_or_else(|| shape_error("logits"))?
            .try_extract_tensor::<f32>()?;
        if dims[..] != [batch as i64, new as i64, self.vocab as i64] {
            return Err(shape_error("logits"));
        }
        let last = (0..batch)
            .map(|row| {
                let start = (row * new + new - 1) * self.vocab;
                logits[start..start + self.vocab].to_vec()
            })
            .collect();
        for (tensor, name) in self.present_names.iter().enumerate() {
            let (dims, data) = outputs
                .get(name.as_str())
                .ok_or_else(|| shape_error(name))?
                .try_extract_tensor::<f32>()?;
            if dims[..] != [batch as i64, heads as i64, total as i64, head_dim as i64] {
                return Err(shape_error(name));
            }
            for (row, (&slot, &from)) in slots.iter().zip(&lengths).enumerate() {
                let present = Present {
                    data,
                    total,
                    row,
                    from,
                    count: new,
                };
                self.cache.append(tensor, slot, &present);
            }
        }
        Ok(last)
    }

    fn release(&mut self, slot: usize) {
        self.cache.clear(slot);
    }
}
