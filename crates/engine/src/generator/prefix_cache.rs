//! The prompt cache: keys and values of prompt prefixes kept after their request ended, so
//! that a later prompt starting with the same tokens (a shared system prompt, the earlier turns
//! of a chat) copies them instead of computing them again.
//!
//! The cache holds blocks of [`BLOCK_TOKENS`] prompt positions. A block is named by its parent
//! block, which stands for every token before it, and by its own tokens, compared exactly: a
//! block is only ever found by a prompt whose whole prefix up to the block's end is the same.
//! Blocks live in one slab of `budget / block size` places whose pages become resident only
//! when first written; a block's size counts the real bytes of the cache's element type, so
//! the same budget holds twice as many float16 blocks as float32 ones. When the slab is full, the least recently used block without children
//! makes room, so a prefix is never evicted before its extensions and every block kept can be
//! reached from the start of a prompt.
//!
//! A prompt position's keys and values do not depend on how the prompt was cut into prefill
//! chunks (as long as no chunk runs a single token alone, which [`super::model`] avoids), so a
//! prompt that reuses cached blocks computes the same numbers as one that runs them all.

use std::collections::{BTreeSet, HashMap};

use super::kv_cache::KvShape;
use super::kv_element::KvElement;
use super::pages;

/// Prompt positions per cached block.
pub(crate) const BLOCK_TOKENS: usize = 16;

/// The parent of the blocks that start a prompt.
const ROOT: u32 = u32::MAX;

/// What names a block: its parent block and its tokens.
type BlockKey = (u32, [u32; BLOCK_TOKENS]);

/// A block in the slab.
#[derive(Debug)]
struct Block {
    key: BlockKey,
    /// Blocks whose parent this is.
    children: u32,
    /// The clock of its last use.
    last_used: u64,
}

/// Blocks of prompt keys and values (elements `E`), found by their prefix, evicted least
/// recently used.
#[derive(Debug)]
pub(crate) struct PrefixCache<E> {
    /// Elements of one block: `[tensor][head][position][dim]`.
    block_floats: usize,
    /// The keys and values of every place, one block after the other.
    slab: Vec<E>,
    /// The block at each place of the slab.
    blocks: Vec<Option<Block>>,
    /// The place of each block kept.
    index: HashMap<BlockKey, u32>,
    /// `(last_used, place)` of the blocks without children, least recently used first.
    leaves: BTreeSet<(u64, u32)>,
    /// Places of the slab never used yet.
    unused: Vec<u32>,
    /// Counts uses: a block's `last_used` is the clock of its last one.
    clock: u64,
}

impl<E: KvElement> PrefixCache<E> {
    /// A cache of at most `budget_bytes` of keys and values of positions shaped `shape`;
    /// `0` keeps nothing.
    pub(crate) fn new(shape: KvShape, budget_bytes: usize) -> Self {
        let block_floats = shape.tensors() * shape.heads * BLOCK_TOKENS * shape.head_dim;
        let block_bytes = (block_floats * std::mem::size_of::<E>()).max(1);
        let places = (budget_bytes / block_bytes).min(ROOT as usize);
        let mut slab = E::zeroed(places * block_floats);
        pages::give_back(&mut slab);
        Self {
            block_floats,
            slab,
            blocks: (0..places).map(|_| None).collect(),
            index: HashMap::new(),
            leaves: BTreeSet::new(),
            unused: (0..places as u32).rev().collect(),
            clock: 0,
        }
    }

    /// How many leading tokens of `prompt` the cache holds: whole blocks, and never the last
    /// token, whose logits the prompt's run must compute.
    pub(crate) fn cached_len(&self, prompt: &[u32]) -> usize {
        self.path(prompt, reusable_blocks(prompt.len())).len() * BLOCK_TOKENS
    }

    /// Hands each cached block of `prompt`'s prefix to `write` with the position it starts at,
    /// marks them used, and returns the tokens handed over (see [`Self::cached_len`]).
    pub(crate) fn reuse(&mut self, prompt: &[u32], mut write: impl FnMut(usize, &[E])) -> usize {
        let path = self.path(prompt, reusable_blocks(prompt.len()));
        for (block, &place) in path.iter().enumerate() {
            write(block * BLOCK_TOKENS, self.data(place));
        }
        self.touch_path(&path);
        path.len() * BLOCK_TOKENS
    }

    /// Keeps the whole blocks of `prompt`'s first `upto` positions that the cache lacks, each
    /// read by `read` (its start position and where to put it), evicting the least recently
    /// used blocks without children to make room; stops where no room can be made.
    pub(crate) fn keep(
        &mut self,
        prompt: &[u32],
        upto: usize,
        mut read: impl FnMut(usize, &mut [E]),
    ) {
        let blocks = upto.min(prompt.len()) / BLOCK_TOKENS;
        let mut path = Vec::with_capacity(blocks);
        let mut parent = ROOT;
        for (block, tokens) in prompt.as_chunks().0.iter().take(blocks).enumerate() {
            let key = (parent, *tokens);
            let place = match self.index.get(&key) {
                Some(&place) => place,
                None => {
                    let Some(place) = self.free_place(&path) else {
                        break;
                    };
                    let range = self.range(place);
                    read(block * BLOCK_TOKENS, &mut self.slab[range]);
                    self.insert(place, key);
                    place
                }
            };
            path.push(place);
            parent = place;
        }
        self.touch_path(&path);
    }

    /// Bytes of keys and values the cached blocks hold.
    pub(crate) fn bytes(&self) -> usize {
        self.index.len() * self.block_floats * std::mem::size_of::<E>()
    }

    /// The places of the cached blocks that start `prompt`, at most `most` of them.
    fn path(&self, prompt: &[u32], most: usize) -> Vec<u32> {
        let mut path = Vec::new();
        let mut parent = ROOT;
        for tokens in prompt.as_chunks().0.iter().take(most) {
            let Some(&place) = self.index.get(&(parent, *tokens)) else {
                break;
            };
            path.push(place);
            parent = place;
        }
        path
    }

    /// Marks the blocks of `path` used, the last first, so that each parent counts as used
    /// more recently than its children.
    fn touch_path(&mut self, path: &[u32]) {
        for &place in path.iter().rev() {
            self.clock += 1;
            let clock = self.clock;
            let Some(block) = self.blocks[place as usize].as_mut() else {
                continue;
            };
            if block.children == 0 {
                self.leaves.remove(&(block.last_used, place));
                self.leaves.insert((clock, place));
            }
            block.last_used = clock;
        }
    }

    /// A place for a new block: an unused one, else that of the least recently used block
    /// without children outside `path` (the prefix the new block extends).
    fn free_place(&mut self, path: &[u32]) -> Option<u32> {
        if let Some(place) = self.unused.pop() {
            return Some(place);
        }
        let &(last_used, place) = self
            .leaves
            .iter()
            .find(|(_, place)| !path.contains(place))?;
        self.leaves.remove(&(last_used, place));
        let block = self.blocks[place as usize].take()?;
        self.index.remove(&block.key);
        let parent = block.key.0;
        if let Some(parent_block) = self
            .blocks
            .get_mut(parent as usize)
            .and_then(Option::as_mut)
        {
            parent_block.children -= 1;
            if parent_block.children == 0 {
                self.leaves.insert((parent_block.last_used, parent));
            }
        }
        Some(place)
    }

    /// Records the block `key` whose data was just written at `place`.
    fn insert(&mut self, place: u32, key: BlockKey) {
        let parent = key.0;
        if let Some(parent_block) = self
            .blocks
            .get_mut(parent as usize)
            .and_then(Option::as_mut)
        {
            if parent_block.children == 0 {
                self.leaves.remove(&(parent_block.last_used, parent));
            }
            parent_block.children += 1;
        }
        self.clock += 1;
        self.blocks[place as usize] = Some(Block {
            key,
            children: 0,
            last_used: self.clock,
        });
        self.leaves.insert((self.clock, place));
        self.index.insert(key, place);
    }

    /// The keys and values of the block at `place`.
    fn data(&self, place: u32) -> &[E] {
        &self.slab[self.range(place)]
    }

    /// Where the block at `place` lies in the slab.
    fn range(&self, place: u32) -> std::ops::Range<usize> {
        let start = place as usize * self.block_floats;
        start..start + self.block_floats
    }
}

/// Whole blocks of a prompt of `len` tokens that may come from the cache: all but its last
/// token must be covered.
fn reusable_blocks(len: usize) -> usize {
    len.saturating_sub(1) / BLOCK_TOKENS
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use half::f16;

    use super::*;

    const SHAPE: KvShape = KvShape {
        layers: 1,
        heads: 1,
        head_dim: 1,
    };
    /// Floats of one block of [`SHAPE`]: keys and values of 16 positions.
    const FLOATS: usize = 2 * BLOCK_TOKENS;
    const BLOCK_BYTES: usize = FLOATS * 4;

    fn cache(blocks: usize) -> PrefixCache<f32> {
        PrefixCache::new(SHAPE, blocks * BLOCK_BYTES)
    }

    fn prompt(first: u32, len: usize) -> Vec<u32> {
        (first..first + len as u32).collect()
    }

    /// Keeps `prompt`'s whole blocks, each filled with the position it starts at.
    fn keep(cache: &mut PrefixCache<f32>, prompt: &[u32]) -> Vec<usize> {
        let mut read = Vec::new();
        cache.keep(prompt, prompt.len(), |start, out| {
            out.fill(start as f32);
            read.push(start);
        });
        read
    }

    fn reuse(cache: &mut PrefixCache<f32>, prompt: &[u32]) -> Vec<(usize, f32)> {
        let mut written = Vec::new();
        cache.reuse(prompt, |start, data| {
            assert_eq!(data.len(), FLOATS);
            written.push((start, data[0]));
        });
        written
    }

    #[test]
    fn a_prompt_reuses_the_whole_blocks_of_its_prefix_and_runs_its_last_token() {
        let mut cache = cache(8);
        let first = prompt(0, 50);
        assert_eq!(keep(&mut cache, &first), [0, 16, 32]);
        assert_eq!(cache.cached_len(&first), 48);
        assert_eq!(
            reuse(&mut cache, &first),
            [(0, 0.0), (16, 16.0), (32, 32.0)]
        );
        assert_eq!(cache.cached_len(&first[..48]), 32, "its last token runs");
        assert_eq!(cache.cached_len(&first[..49]), 48);
        let mut other = first.clone();
        other[20] = 999;
        assert_eq!(cache.cached_len(&other), 16, "a difference ends the match");
        assert_eq!(cache.cached_len(&prompt(1, 50)), 0);
        assert_eq!(keep(&mut cache, &first), Vec::<usize>::new(), "kept once");
        assert_eq!(cache.bytes(), 3 * BLOCK_BYTES);
    }

    #[test]
    fn the_same_tokens_after_another_prefix_are_another_block() {
        let mut cache = cache(8);
        let shared_tail = prompt(100, 16);
        let first = [prompt(0, 16), shared_tail.clone(), vec![1]].concat();
        let second = [prompt(50, 16), shared_tail, vec![1]].concat();
        keep(&mut cache, &first);
        assert_eq!(cache.cached_len(&second), 0);
        assert_eq!(keep(&mut cache, &second), [0, 16]);
        assert_eq!(cache.cached_len(&first), 32);
        assert_eq!(cache.cached_len(&second), 32);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_leaf_and_never_a_parent_first() {
        let mut cache = cache(2);
        let long = prompt(0, 33);
        keep(&mut cache, &long);
        let other = prompt(500, 17);
        reuse(&mut cache, &long);
        keep(&mut cache, &other);
        assert_eq!(cache.cached_len(&long), 16, "its leaf went first");
        assert_eq!(cache.cached_len(&other), 16);
        reuse(&mut cache, &other);
        keep(&mut cache, &prompt(900, 17));
        assert_eq!(cache.cached_len(&long), 0, "then the parent, now a leaf");
        assert_eq!(cache.cached_len(&other), 16);
        assert_eq!(cache.bytes(), 2 * BLOCK_BYTES);
    }

    #[test]
    fn keeping_a_prompt_never_evicts_the_prefix_it_extends() {
        let mut cache = cache(1);
        let long = prompt(0, 50);
        assert_eq!(keep(&mut cache, &long), [0], "no room for the second block");
        assert_eq!(cache.cached_len(&long), 16);
        assert_eq!(cache.bytes(), BLOCK_BYTES);
    }

    #[test]
    fn a_budget_under_one_block_keeps_nothing() {
        let mut cache = PrefixCache::new(SHAPE, BLOCK_BYTES - 1);
        let long = prompt(0, 50);
        assert!(keep(&mut cache, &long).is_empty());
        assert_eq!(reuse(&mut cache, &long), []);
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn a_partial_block_is_not_kept() {
        let mut cache = cache(4);
        let long = prompt(0, 40);
        cache.keep(&long, 31, |_, _| {});
        assert_eq!(cache.cached_len(&long), 16);
    }

    /// Keeps `prompt`'s whole blocks in an f16 cache, each element of a block the position
    /// it starts at plus its index in the block.
    fn keep_f16(cache: &mut PrefixCache<f16>, prompt: &[u32]) -> Vec<usize> {
        let mut read = Vec::new();
        cache.keep(prompt, prompt.len(), |start, out| {
            for (index, element) in out.iter_mut().enumerate() {
                *element = f16::from_f32((start + index) as f32);
            }
            read.push(start);
        });
        read
    }

    #[test]
    fn f16_blocks_round_trip_and_places_are_reused_after_eviction() {
        let mut cache = PrefixCache::<f16>::new(SHAPE, 2 * FLOATS * 2);
        let first = prompt(0, 33);
        assert_eq!(keep_f16(&mut cache, &first), [0, 16]);
        let mut written = Vec::new();
        let reused = cache.reuse(&first, |start, data| {
            let expected: Vec<f16> = (start..start + FLOATS)
                .map(|value| f16::from_f32(value as f32))
                .collect();
            assert_eq!(data, expected);
            written.push(start);
        });
        assert_eq!((reused, written), (32, vec![0, 16]));
        let other = prompt(500, 17);
        assert_eq!(keep_f16(&mut cache, &other), [0], "a place made free");
        assert_eq!(cache.cached_len(&first), 16);
        assert_eq!(cache.cached_len(&other), 16);
        cache.reuse(&other, |start, data| {
            assert_eq!(
                (start, data[0], data[FLOATS - 1]),
                (0, f16::ZERO, f16::from_f32(31.0))
            );
        });
        assert_eq!(cache.bytes(), 2 * FLOATS * 2);
    }

    #[test]
    fn a_budget_holds_twice_as_many_f16_blocks_as_f32_ones() {
        let long = prompt(0, 100);
        let mut wide = cache(3);
        assert_eq!(keep(&mut wide, &long), [0, 16, 32]);
        let mut narrow = PrefixCache::<f16>::new(SHAPE, 3 * BLOCK_BYTES);
        assert_eq!(keep_f16(&mut narrow, &long), [0, 16, 32, 48, 64, 80]);
        assert_eq!(wide.cached_len(&long), 48);
        assert_eq!(narrow.cached_len(&long), 96);
        assert_eq!(narrow.bytes(), wide.bytes());
        assert_eq!(narrow.bytes(), 3 * BLOCK_BYTES);
    }
}
