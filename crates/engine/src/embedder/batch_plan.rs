//! Planning of ONNX Runtime runs: the sequences waiting in the queue are sorted by length and
//! cut into batches whose padded size stays within the token budget, so short inputs are not
//! padded to the length of long ones.

/// Splits sequences of the given `lengths` into batches, each a list of indices into `lengths`.
/// A batch's padded size (rows × longest row) stays within `max_batch_tokens`, except a single
/// sequence longer than the budget, which runs alone.
pub(crate) fn plan_batches(lengths: &[usize], max_batch_tokens: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&index| lengths[index]);
    let mut batches = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for index in order {
        // Sorted ascending, so this sequence is the longest of the batch if it joins.
        let padded = (current.len() + 1) * lengths[index];
        if !current.is_empty() && padded > max_batch_tokens {
            batches.push(std::mem::take(&mut current));
        }
        current.push(index);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_size(batch: &[usize], lengths: &[usize]) -> usize {
        batch.len() * batch.iter().map(|&i| lengths[i]).max().unwrap_or(0)
    }

    #[test]
    fn every_sequence_is_planned_once() {
        let lengths = [5, 200, 7, 3, 256, 12, 9, 1];
        let batches = plan_batches(&lengths, 300);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
    }

    #[test]
    fn batches_respect_the_token_budget() {
        let lengths = [5, 200, 7, 3, 256, 12, 9, 1, 30, 31, 32];
        for budget in [256, 300, 512, 4096] {
            for batch in plan_batches(&lengths, budget) {
                assert!(
                    padded_size(&batch, &lengths) <= budget,
                    "{batch:?} over {budget}"
                );
            }
        }
    }

    #[test]
    fn similar_lengths_share_a_batch() {
        let lengths = [10, 250, 11, 251];
        let batches = plan_batches(&lengths, 600);
        assert_eq!(batches, vec![vec![0, 2], vec![1, 3]]);
    }

    #[test]
    fn an_oversized_sequence_runs_alone() {
        let batches = plan_batches(&[1000, 2], 100);
        assert_eq!(batches, vec![vec![1], vec![0]]);
    }

    #[test]
    fn nothing_to_plan() {
        assert!(plan_batches(&[], 100).is_empty());
    }
}
