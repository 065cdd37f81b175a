//! Pooling of an encoder's token vectors into one sentence vector per row, and L2 normalisation.

use gateway_core::model_dir::Pooling;

/// The `last_hidden_state` of one batch: `rows × width × hidden` floats, row-major, where each
/// row's first `lengths[row]` positions are real tokens and the rest padding.
pub(crate) struct HiddenStates<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) width: usize,
    pub(crate) hidden: usize,
}

impl HiddenStates<'_> {
    fn token(&self, row: usize, position: usize) -> &[f32] {
        let start = (row * self.width + position) * self.hidden;
        &self.data[start..start + self.hidden]
    }

    /// One sentence vector per row, pooled over that row's real tokens.
    pub(crate) fn pool(
        &self,
        lengths: &[usize],
        pooling: Pooling,
        normalize: bool,
    ) -> Vec<Vec<f32>> {
        lengths
            .iter()
            .enumerate()
            .map(|(row, &length)| {
                let mut vector = match pooling {
                    Pooling::Cls => self.token(row, 0).to_vec(),
                    Pooling::Mean => self.mean(row, length),
                };
                if normalize {
                    l2_normalize(&mut vector);
                }
                vector
            })
            .collect()
    }

    fn mean(&self, row: usize, length: usize) -> Vec<f32> {
        let mut sum = vec![0.0f32; self.hidden];
        for position in 0..length {
            for (total, value) in sum.iter_mut().zip(self.token(row, position)) {
                *total += value;
            }
        }
        let count = length.max(1) as f32;
        sum.iter_mut().for_each(|value| *value /= count);
        sum
    }
}

/// Scales `vector` to unit length; a zero vector stays zero.
pub(crate) fn l2_normalize(vector: &mut [f32]) {
    let norm = vector.iter().map(|value| value * value).sum::<f32>().sqrt();
    if norm > 0.0 {
        vector.iter_mut().for_each(|value| *value /= norm);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two rows of width 3, hidden 2; row 0 has 2 real tokens, row 1 has 1.
    const DATA: [f32; 12] = [
        1.0, 2.0, 3.0, 4.0, 99.0, 99.0, 5.0, 6.0, 99.0, 99.0, 99.0, 99.0,
    ];

    fn states() -> HiddenStates<'static> {
        HiddenStates {
            data: &DATA,
            width: 3,
            hidden: 2,
        }
    }

    #[test]
    fn mean_pooling_ignores_padding() {
        let pooled = states().pool(&[2, 1], Pooling::Mean, false);
        assert_eq!(pooled, vec![vec![2.0, 3.0], vec![5.0, 6.0]]);
    }

    #[test]
    fn cls_pooling_takes_the_first_token() {
        let pooled = states().pool(&[2, 1], Pooling::Cls, false);
        assert_eq!(pooled, vec![vec![1.0, 2.0], vec![5.0, 6.0]]);
    }

    #[test]
    fn normalisation_gives_unit_vectors() {
        let pooled = states().pool(&[2, 1], Pooling::Mean, true);
        for vector in pooled {
            let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-6);
        }
        let mut zero = vec![0.0, 0.0];
        l2_normalize(&mut zero);
        assert_eq!(zero, vec![0.0, 0.0]);
    }
}
