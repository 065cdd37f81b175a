//! The key/value cache of the running sequences, preallocated and updated in place.
//!
//! Each cache tensor (a key and a value per layer) is one zero-initialised buffer
//! `[rows, kv_heads, capacity, head_dim]`; its pages become resident only when written, and
//! those holding positions of a sequence that ended are given back to the operating system
//! ([`super::pages`]), so memory follows the positions cached now, not the most ever cached. A run binds a range of rows of every buffer
//! both as the graph's `past_key_values.*` input and as its `present.*` output, and ONNX
//! Runtime's `GroupQueryAttention` writes just the new positions there
//! (`docs/model-format.md`, in-place mode): a step never copies the cache.
//!
//! Rows are kept dense: every sequence slot in use owns one of the rows `0 .. in_use`, and
//! releasing a slot moves the last row's cached positions into the freed row. A decode step's
//! batch is then the contiguous rows `0 .. in_use`.
//!
//! The cache holds elements of the graph's cache tensors' type ([`KvElement`]: `f32` or
//! `f16`), so a float16 graph's cache takes half the memory of a float32 one.

use super::kv_element::KvElement;
use super::pages;

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
}

/// A row of the cache in use.
#[derive(Debug, Clone, Copy)]
struct Row {
    slot: usize,
    len: usize,
}

/// The cache buffers, of elements `E`, and which sequence slot owns each row.
#[derive(Debug)]
pub(crate) struct KvCache<E> {
    shape: KvShape,
    capacity: usize,
    /// One buffer per cache tensor, tensor `2 × layer` the keys and `2 × layer + 1` the values.
    buffers: Vec<Vec<E>>,
    /// The rows in use, in row order.
    rows: Vec<Row>,
    /// The row of each slot, if it has one.
    row_of_slot: Vec<Option<usize>>,
}

impl<E: KvElement> KvCache<E> {
    /// A cache of `max_rows` sequences of at most `capacity` positions each, none of it
    /// resident yet: whether the allocator hands out fresh zero pages or zeroes reused memory
    /// (which makes it resident), the pages are given back before the first use.
    pub(crate) fn new(shape: KvShape, max_rows: usize, capacity: usize) -> Self {
        let floats = max_rows * shape.heads * capacity * shape.head_dim;
        let zeroed = |_| {
            let mut buffer = E::zeroed(floats);
            pages::give_back(&mut buffer);
            buffer
        };
        Self {
            shape,
            capacity,
            buffers: (0..shape.tensors()).map(zeroed).collect(),
            rows: Vec::with_capacity(max_rows),
            row_of_slot: vec![None; max_rows],
        }
    }

    /// Positions per row.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The dimensions of a view of `rows` rows: `[rows, kv_heads, capacity, head_dim]`.
    pub(crate) fn view_dims(&self, rows: usize) -> [usize; 4] {
        [rows, self.shape.heads, self.capacity, self.shape.head_dim]
    }

    /// Rows in use.
    pub(crate) fn in_use(&self) -> usize {
        self.rows.len()
    }

    /// Positions cached in row `row`.
    pub(crate) fn row_len(&self, row: usize) -> usize {
        self.rows.get(row).map_or(0, |r| r.len)
    }

    /// The row of `slot`, giving it the next free row when it has none; `None` when the
    /// slot is out of range or every row is taken.
    pub(crate) fn row(&mut self, slot: usize) -> Option<usize> {
        match self.row_of_slot.get(slot)? {
            Some(row) => Some(*row),
            None if self.rows.len() < self.row_of_slot.len() => {
                let row = self.rows.len();
                self.rows.push(Row { slot, len: 0 });
                self.row_of_slot[slot] = Some(row);
                Some(row)
            }
            None => None,
        }
    }

    /// The row of `slot`, if it has one.
    pub(crate) fn row_of(&self, slot: usize) -> Option<usize> {
        self.row_of_slot.get(slot).copied().flatten()
    }

    /// Copies positions `start ..` of row `row` into `out`, laid out `[tensor][head][position]
    /// [dim]`; `out` holds a whole number of positions.
    pub(crate) fn read_positions(&self, row: usize, start: usize, out: &mut [E]) {
        let runs = self.position_runs(row, start, out.len());
        for ((tensor, range), out) in runs.zip(out.chunks_exact_mut(self.run_floats(out.len()))) {
            out.copy_from_slice(&self.buffers[tensor][range]);
        }
    }

    /// Writes `data`, laid out like [`Self::read_positions`] reads it, over positions
    /// `start ..` of row `row`.
    pub(crate) fn write_positions(&mut self, row: usize, start: usize, data: &[E]) {
        let runs: Vec<_> = self.position_runs(row, start, data.len()).collect();
        for ((tensor, range), data) in runs
            .into_iter()
            .zip(data.chunks_exact(self.run_floats(data.len())))
        {
            self.buffers[tensor][range].copy_from_slice(data);
        }
    }

    /// Elements of one (tensor, head) of a copy of `floats` elements in all.
    fn run_floats(&self, floats: usize) -> usize {
        floats / (self.shape.tensors() * self.shape.heads)
    }

    /// Where the (tensor, head) runs of a copy of `floats` elements from position `start` of
    /// row `row` lie, in `[tensor][head]` order.
    fn position_runs(
        &self,
        row: usize,
        start: usize,
        floats: usize,
    ) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let run = self.run_floats(floats);
        debug_assert!(
            run > 0
                && run.is_multiple_of(head_dim)
                && start * head_dim + run <= self.capacity * head_dim,
            "{floats} floats from position {start} are not whole positions inside the row"
        );
        let head_floats = self.capacity * head_dim;
        let first = row * self.row_floats() + start * head_dim;
        (0..self.shape.tensors()).flat_map(move |tensor| {
            (0..heads).map(move |head| {
                let begin = first + head * head_floats;
                (tensor, begin..begin + run)
            })
        })
    }

    /// Records `count` more positions written for `slot`.
    pub(crate) fn advance(&mut self, slot: usize, count: usize) {
        if let Some(&Some(row)) = self.row_of_slot.get(slot) {
            self.rows[row].len += count;
        }
    }

    /// Frees the row of `slot`, moving the last row into it to keep the rows dense, and gives
    /// back the memory of the positions no row holds any more.
    pub(crate) fn release(&mut self, slot: usize) {
        let Some(row) = self.row_of_slot.get_mut(slot).and_then(Option::take) else {
            return;
        };
        let last = self.rows.len() - 1;
        if row != last {
            self.copy_row(last, row);
            let moved = self.rows[last];
            self.rows[row] = moved;
            self.row_of_slot[moved.slot] = Some(row);
            self.give_back_after(row, moved.len);
        }
        self.give_back_after(last, 0);
        self.rows.pop();
    }

    /// Gives back the memory of the positions from `len` on of row `row`, head by head.
    fn give_back_after(&mut self, row: usize, len: usize) {
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let head_floats = self.capacity * head_dim;
        let row_start = row * self.row_floats();
        for buffer in &mut self.buffers {
            for head in 0..heads {
                let head_start = row_start + head * head_floats;
                pages::give_back(
                    &mut buffer[head_start + len * head_dim..head_start + head_floats],
                );
            }
        }
    }

    /// The elements of rows `first .. first + rows` of cache tensor `tensor`: the memory a run
    /// binds as that tensor's past and present.
    pub(crate) fn rows_mut(&mut self, tensor: usize, first: usize, rows: usize) -> &mut [E] {
        let stride = self.row_floats();
        &mut self.buffers[tensor][first * stride..(first + rows) * stride]
    }

    /// Elements of one row of one cache tensor.
    fn row_floats(&self) -> usize {
        self.shape.heads * self.capacity * self.shape.head_dim
    }

    /// Copies the cached positions of row `from` over row `to`, head by head.
    fn copy_row(&mut self, from: usize, to: usize) {
        let KvShape {
            heads, head_dim, ..
        } = self.shape;
        let used = self.rows[from].len * head_dim;
        let head_floats = self.capacity * head_dim;
        let stride = self.row_floats();
        for buffer in &mut self.buffers {
            for head in 0..heads {
                let src = from * stride + head * head_floats;
                let dst = to * stride + head * head_floats;
                buffer.copy_within(src..src + used, dst);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use half::f16;

    use super::*;

    const SHAPE: KvShape = KvShape {
        layers: 1,
        heads: 2,
        head_dim: 1,
    };

    /// Writes `len` positions of `row` as 100·slot + 10·head + position.
    fn fill(cache: &mut KvCache<f32>, slot: usize, len: usize) {
        let row = cache.row(slot).unwrap();
        let capacity = cache.capacity();
        for tensor in 0..SHAPE.tensors() {
            let data = cache.rows_mut(tensor, row, 1);
            for head in 0..SHAPE.heads {
                for position in 0..len {
                    data[head * capacity + position] = (100 * slot + 10 * head + position) as f32;
                }
            }
        }
        cache.advance(slot, len);
    }

    #[test]
    fn slots_take_dense_rows_in_order() {
        let mut cache = KvCache::<f32>::new(SHAPE, 3, 4);
        assert_eq!(cache.row(2), Some(0));
        assert_eq!(cache.row(0), Some(1));
        assert_eq!(cache.row(2), Some(0));
        assert_eq!(cache.row(1), Some(2));
        assert_eq!(cache.in_use(), 3);
        assert_eq!(cache.row(5), None);
    }

    #[test]
    fn release_moves_the_last_row_into_the_hole() {
        let mut cache = KvCache::new(SHAPE, 3, 4);
        fill(&mut cache, 0, 2);
        fill(&mut cache, 1, 1);
        fill(&mut cache, 2, 3);
        cache.release(0);
        assert_eq!(cache.in_use(), 2);
        assert_eq!(cache.row_len(0), 3);
        assert_eq!(cache.row(2), Some(0));
        assert_eq!(cache.row(1), Some(1));
        let moved = cache.rows_mut(1, 0, 1).to_vec();
        assert_eq!(&moved[0..3], &[200.0, 201.0, 202.0]);
        assert_eq!(&moved[4..7], &[210.0, 211.0, 212.0]);
        cache.release(1);
        cache.release(1);
        assert_eq!(cache.in_use(), 1);
        assert_eq!(cache.row(0), Some(1));
    }

    /// A shape whose heads span whole pages at the capacities the paging tests use.
    const PAGED_SHAPE: KvShape = KvShape {
        layers: 1,
        heads: 2,
        head_dim: 64,
    };

    /// Two rows of `4096 / size_of::<E>()` positions (256 KiB per head at 64 dims): the first
    /// 1,000 long, the second 10, elements made by `element`. Releasing the first moves the
    /// second into its place; the positions past the moved ones and the freed row are given
    /// back (read as zero) but for the partial pages at their ends.
    fn released_positions_are_given_back<E: KvElement>(element: impl Fn(f32) -> E) {
        let shape = PAGED_SHAPE;
        let size = std::mem::size_of::<E>();
        let capacity = 4096 / size;
        let page_elements = pages::page_size() / size;
        let mut cache = KvCache::<E>::new(shape, 2, capacity);
        for (slot, len) in [(0, 1000), (1, 10)] {
            let row = cache.row(slot).unwrap();
            for tensor in 0..shape.tensors() {
                cache
                    .rows_mut(tensor, row, 1)
                    .fill(element(1.0 + slot as f32));
            }
            cache.advance(slot, len);
        }
        cache.release(0);
        let (moved, zero) = (element(2.0), element(0.0));
        let head_elements = capacity * shape.head_dim;
        for tensor in 0..shape.tensors() {
            let rows = cache.rows_mut(tensor, 0, 2);
            for head in 0..shape.heads {
                let data = &rows[head * head_elements..(head + 1) * head_elements];
                assert!(data[..10 * shape.head_dim].iter().all(|&v| v == moved));
                let last_whole_page = head_elements - page_elements;
                assert!(data[100 * shape.head_dim..last_whole_page]
                    .iter()
                    .all(|&v| v == zero));
            }
            let freed_row = &rows[shape.heads * head_elements..];
            let resident = freed_row.iter().filter(|&&v| v != zero).count();
            assert!(
                resident < 2 * shape.heads * page_elements,
                "{resident} elements kept"
            );
        }
    }

    #[test]
    fn released_positions_are_given_back_and_live_ones_kept() {
        released_positions_are_given_back(|v: f32| v);
    }

    #[test]
    fn f16_released_positions_are_given_back_and_live_ones_kept() {
        released_positions_are_given_back(f16::from_f32);
    }

    #[test]
    fn positions_read_from_one_row_write_to_another_and_touch_nothing_else() {
        let mut cache = KvCache::new(SHAPE, 2, 4);
        fill(&mut cache, 0, 4);
        let mut copied = vec![0.0; SHAPE.tensors() * SHAPE.heads * 2];
        cache.read_positions(0, 1, &mut copied);
        assert_eq!(copied, [1.0, 2.0, 11.0, 12.0, 1.0, 2.0, 11.0, 12.0]);
        let row = cache.row(1).unwrap();
        cache.write_positions(row, 2, &copied);
        for tensor in 0..SHAPE.tensors() {
            assert_eq!(
                cache.rows_mut(tensor, 1, 1),
                [0.0, 0.0, 1.0, 2.0, 0.0, 0.0, 11.0, 12.0]
            );
            assert_eq!(
                cache.rows_mut(tensor, 0, 1),
                [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]
            );
        }
    }

    #[test]
    fn views_cover_whole_rows() {
        let mut cache = KvCache::<f32>::new(SHAPE, 3, 4);
        assert_eq!(cache.view_dims(2), [2, 2, 4, 1]);
        assert_eq!(cache.rows_mut(0, 1, 2).len(), 2 * 2 * 4);
    }

    /// The positions `0 .. len` of `slot` as [`KvCache::write_positions`] takes them, each
    /// element 100·slot + 20·tensor + 10·head + position (exact in f16).
    fn f16_positions(slot: usize, len: usize) -> Vec<f16> {
        (0..SHAPE.tensors())
            .flat_map(|tensor| {
                (0..SHAPE.heads).flat_map(move |head| {
                    (0..len).map(move |position| {
                        f16::from_f32((100 * slot + 20 * tensor + 10 * head + position) as f32)
                    })
                })
            })
            .collect()
    }

    /// Reads the first `len` positions of `row`.
    fn read_f16(cache: &KvCache<f16>, row: usize, len: usize) -> Vec<f16> {
        let mut out = vec![f16::ZERO; SHAPE.tensors() * SHAPE.heads * len];
        cache.read_positions(row, 0, &mut out);
        out
    }

    #[test]
    fn f16_positions_round_trip_move_on_release_and_reuse_freed_rows() {
        let mut cache = KvCache::<f16>::new(SHAPE, 3, 4);
        for (slot, len) in [(0, 2), (1, 1), (2, 3)] {
            let row = cache.row(slot).unwrap();
            cache.write_positions(row, 0, &f16_positions(slot, len));
            cache.advance(slot, len);
            assert_eq!(read_f16(&cache, row, len), f16_positions(slot, len));
        }
        cache.release(0);
        assert_eq!(cache.row(2), Some(0));
        assert_eq!(cache.row_len(0), 3);
        assert_eq!(read_f16(&cache, 0, 3), f16_positions(2, 3));
        assert_eq!(read_f16(&cache, 1, 1), f16_positions(1, 1));
        assert_eq!(cache.row(7), None);
        let row = cache.row(0).unwrap();
        assert_eq!(row, 2, "the freed row is reused");
        cache.write_positions(row, 0, &f16_positions(5, 4));
        cache.advance(0, 4);
        assert_eq!(read_f16(&cache, row, 4), f16_positions(5, 4));
        assert_eq!(cache.in_use(), 3);
    }
}
