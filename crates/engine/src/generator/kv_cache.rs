//! The key/value cache of the running sequences, one entry per sequence slot.
//!
//! Each slot keeps, per layer, its keys and its values position-major (`[len, kv_heads,
//! head_dim]`), growing by the positions each run adds. A run's `past_key_values.*` inputs are
//! built by copying the slots of the batch's rows into `[batch, kv_heads, past, head_dim]`
//! tensors, right-padded with zeros to the longest row, and the new positions are copied back
//! from `present.*` afterwards. Cost: every decode step copies the whole cache of the batch
//! twice over (in, and the ONNX Runtime output back out, of which only the new positions are
//! kept): `batch × past × layers × 2 × kv_heads × head_dim × 4` bytes in. Simple and correct;
//! a cache that ONNX Runtime reads in place (I/O binding of preallocated buffers) would avoid it.

/// The dimensions of the cache of one position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KvShape {
    /// Transformer layers.
    pub(crate) layers: usize,
    /// Key/value heads per layer.
    pub(crate) heads: usize,
    /// Width of one head.
    pub(crate) head_dim: usize,
}

impl KvShape {
    /// Number of cache tensors of a run: a key and a value per layer.
    pub(crate) fn tensors(&self) -> usize {
        self.layers * 2
    }

    fn position_width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The caches of every sequence slot.
#[derive(Debug)]
pub(crate) struct KvCache {
    shape: KvShape,
    /// `slots[slot][tensor]`, tensor `2 × layer` the keys and `2 × layer + 1` the values.
    slots: Vec<Vec<Vec<f32>>>,
}

impl KvCache {
    /// An empty cache of `slots` sequences.
    pub(crate) fn new(shape: KvShape, slots: usize) -> Self {
        Self {
            shape,
            slots: vec![vec![Vec::new(); shape.tensors()]; slots],
        }
    }

    /// Positions cached for `slot`.
    pub(crate) fn len(&self, slot: usize) -> usize {
        self.slots
            .get(slot)
            .and_then(|tensors| tensors.first())
            .map_or(0, |data| data.len() / self.shape.position_width())
    }

    /// Forgets the cache of `slot` and returns its memory.
    pub(crate) fn clear(&mut self, slot: usize) {
        if let Some(tensors) = self.slots.get_mut(slot) {
            for data in tensors {
                *data = Vec::new();
            }
        }
    }

    /// The `past` input for cache tensor `tensor` of a batch whose rows are the sequences in
    /// `rows`: `[rows, heads, past, head_dim]`, each row's positions first, zeros after.
    pub(crate) fn gather(&self, tensor: usize, rows: &[usize], past: usize) -> Vec<f32> {
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let mut out = vec![0.0; rows.len() * heads * past * head_dim];
        for (row, &slot) in rows.iter().enumerate() {
            let data = &self.slots[slot][tensor];
            let len = (data.len() / self.shape.position_width()).min(past);
            for position in 0..len {
                for head in 0..heads {
                    let src = (position * heads + head) * head_dim;
                    let dst = ((row * heads + head) * past + position) * head_dim;
                    out[dst..dst + head_dim].copy_from_slice(&data[src..src + head_dim]);
                }
            }
        }
        out
    }

    /// Appends positions `from .. from + count` of row `row` of a `present` output
    /// (`[batch, heads, total, head_dim]`) for cache tensor `tensor` to `slot`.
    pub(crate) fn append(&mut self, tensor: usize, slot: usize, present: &Present<'_>) {
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let data = &mut self.slots[slot][tensor];
        data.reserve(present.count * heads * head_dim);
        for position in present.from..present.from + present.count {
            for head in 0..heads {
                let src = ((present.row * heads + head) * present.total + position) * head_dim;
                data.extend_from_slice(&present.data[src..src + head_dim]);
            }
        }
    }
}

/// The positions of one row of a `present` output to keep.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Present<'a> {
    /// The output, `[batch, heads, total, head_dim]`.
    pub(crate) data: &'a [f32],
    /// Its third dimension.
    pub(crate) total: usize,
    /// The row.
    pub(crate) row: usize,
    /// First position to keep.
    pub(crate) from: usize,
    /// Positions to keep.
    pub(crate) count: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: KvShape = KvShape {
        layers: 1,
        heads: 2,
        head_dim: 1,
    };

    #[test]
    fn appended_positions_come_back_right_padded() {
        let mut cache = KvCache::new(SHAPE, 2);
        // present [2 rows, 2 heads, 3 positions, 1]: value = 100·row + 10·head + position.
        let data: Vec<f32> = (0..2)
            .flat_map(|r| {
                (0..2).flat_map(move |h| (0..3).map(move |p| (100 * r + 10 * h + p) as f32))
            })
            .collect();
        let present = |row, count| Present {
            data: &data,
            total: 3,
            row,
            from: 0,
            count,
        };
        cache.append(0, 0, &present(0, 3));
        cache.append(0, 1, &present(1, 1));
        assert_eq!((cache.len(0), cache.len(1)), (3, 1));
        let past = cache.gather(0, &[1, 0], 3);
        assert_eq!(
            past,
            vec![100.0, 0.0, 0.0, 110.0, 0.0, 0.0, 0.0, 1.0, 2.0, 10.0, 11.0, 12.0]
        );
        cache.clear(0);
        assert_eq!(cache.len(0), 0);
    }
}
