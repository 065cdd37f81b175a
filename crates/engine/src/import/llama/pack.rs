//! Weight repacking for ONNX Runtime's `MatMulNBits` (`com.microsoft`): ggml blocks of 32
//! weights become `B` (uint8 `[N, K/32, 32·bits/8]`), `scales` (f32 `[N, K/32]`) and, for
//! Q4_1, the block offsets (f32, transposed to `[K/32, N]`); f32 weights are transposed to
//! `[K, N]` for `MatMul` or requantized to symmetric 4-bit blocks.
//!
//! `MatMulNBits` packs 4-bit neighbours into one byte (weight `2k` in the low nibble, `2k + 1`
//! in the high one) and reads `w = (q − zp)·scale` with the default zero point 8 (4-bit) or
//! 128 (8-bit). ggml's Q4 bytes hold weights `j` and `j + 16` instead, so the quants are
//! re-paired; Q8_0's signed quants are shifted by 128. No value changes: both are exact.
//! Q4_1's `w = d·q + m` is read as `d·(q − 8) + (m + 8·d)`: `MatMulNBits` with its default
//! zero point, plus a per-block offset `m + 8·d` the graph adds as
//! `ReduceSum(x per block) @ offsets`.

use super::super::gguf::{QuantizedBlocks, QK};

/// Bytes of one 4-bit block of 32 weights in `MatMulNBits` layout.
const Q4_BLOB: usize = QK / 2;

/// 32 quants (each in 0..16), weight order, as 16 `MatMulNBits` bytes.
fn pair_nibbles(q: &[u8; QK], out: &mut Vec<u8>) {
    out.extend(q.chunks_exact(2).map(|p| (p[0] & 0x0F) | (p[1] << 4)));
}

/// The `B` input of `MatMulNBits` for ggml blocks (row after row, as stored).
pub(crate) fn quants(blocks: &QuantizedBlocks) -> Vec<u8> {
    match blocks {
        QuantizedBlocks::Q4_0(b) => {
            let mut out = Vec::with_capacity(b.len() * Q4_BLOB);
            b.iter().for_each(|b| pair_nibbles(&b.quants(), &mut out));
            out
        }
        QuantizedBlocks::Q4_1(b) => {
            let mut out = Vec::with_capacity(b.len() * Q4_BLOB);
            b.iter().for_each(|b| pair_nibbles(&b.quants(), &mut out));
            out
        }
        QuantizedBlocks::Q8_0(b) => b
            .iter()
            .flat_map(|b| b.qs.map(|q| q.to_le_bytes()[0] ^ 0x80))
            .collect(),
    }
}

/// The `scales` input of `MatMulNBits` for ggml blocks: each block's `d`.
pub(crate) fn scales(blocks: &QuantizedBlocks) -> Vec<f32> {
    match blocks {
        QuantizedBlocks::Q4_0(b) => b.iter().map(|b| b.d.to_f32()).collect(),
        QuantizedBlocks::Q4_1(b) => b.iter().map(|b| b.d.to_f32()).collect(),
        QuantizedBlocks::Q8_0(b) => b.iter().map(|b| b.d.to_f32()).collect(),
    }
}

/// The block offsets `m + 8·d` of Q4_1 blocks of a `[rows, blocks_per_row·32]` tensor,
/// transposed to `[blocks_per_row, rows]`; `None` for other block types.
pub(crate) fn offsets_transposed(blocks: &QuantizedBlocks, rows: usize) -> Option<Vec<f32>> {
    let QuantizedBlocks::Q4_1(b) = blocks else {
        return None;
    };
    let per_row = b.len() / rows.max(1);
    let mut out = vec![0.0f32; b.len()];
    for (i, block) in b.iter().enumerate() {
        let (row, col) = (i / per_row, i % per_row);
        out[col * rows + row] = block.m.to_f32() + 8.0 * block.d.to_f32();
    }
    Some(out)
}

/// Symmetric 4-bit quantization of row-major f32 weights (rows a multiple of 32 long), as
/// ggml's Q4_0 does it: per block, `d = v / −8` where `v` is the value of largest magnitude,
/// `q = clamp(round(w/d) + 8, 0, 15)`. Returns `MatMulNBits`' `B` bytes and scales.
pub(crate) fn requantize_q4(values: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let n_blocks = values.len() / QK;
    let mut bytes = Vec::with_capacity(n_blocks * Q4_BLOB);
    let mut scales = Vec::with_capacity(n_blocks);
    for block in values.chunks_exact(QK) {
        let extreme = block
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = extreme / -8.0;
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut q = [0u8; QK];
        for (q, w) in q.iter_mut().zip(block) {
            // In 0..=15 after the clamp, so the cast is exact.
            *q = (w * inv + 8.5).clamp(0.0, 15.0) as u8;
        }
        pair_nibbles(&q, &mut bytes);
        // The scale as ggml stores it (f16), so GGUF and requantized imports agree.
        scales.push(half::f16::from_f32(d).to_f32());
    }
    (bytes, scales)
}

/// Row-major `[rows, cols]` to `[cols, rows]`.
pub(crate) fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; data.len()];
    for (r, row) in data.chunks_exact(cols).enumerate().take(rows) {
        for (c, v) in row.iter().enumerate() {
            out[c * rows + r] = *v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::super::super::gguf::{BlockQ4_0, BlockQ4_1, BlockQ8_0};
    use super::*;
    use half::f16;

    /// Dequantizes `MatMulNBits` 4-bit data as ONNX Runtime reads it.
    fn nbits4(bytes: &[u8], scales: &[f32], zp: f32) -> Vec<f32> {
        bytes
            .chunks_exact(Q4_BLOB)
            .zip(scales)
            .flat_map(|(blk, s)| {
                blk.iter()
                    .flat_map(|b| [b & 0x0F, b >> 4])
                    .map(move |q| (f32::from(q) - zp) * s)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn q4_0_repacks_exactly() {
        let qs: [u8; 16] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5A);
        let block = BlockQ4_0 {
            d: f16::from_f32(0.25),
            qs,
        };
        let blocks = QuantizedBlocks::Q4_0(vec![block]);
        let got = nbits4(&quants(&blocks), &scales(&blocks), 8.0);
        assert_eq!(got, block.dequantize().to_vec());
    }

    #[test]
    fn q4_1_repacks_with_offsets() {
        let block = |m: f32| BlockQ4_1 {
            d: f16::from_f32(0.5),
            m: f16::from_f32(m),
            qs: std::array::from_fn(|i| (i as u8).wrapping_mul(17)),
        };
        let blocks = QuantizedBlocks::Q4_1(vec![block(1.0), block(2.0), block(3.0), block(4.0)]);
        let offsets = offsets_transposed(&blocks, 2).unwrap();
        // Rows [b(1), b(2)] and [b(3), b(4)]: transposed to [[1, 3], [2, 4]], plus 8·d = 4.
        assert_eq!(offsets, vec![5.0, 7.0, 6.0, 8.0]);
        let got = nbits4(&quants(&blocks), &scales(&blocks), 8.0);
        let want: Vec<f32> = block(1.0).dequantize().iter().map(|w| w - 5.0).collect();
        assert_eq!(&got[..QK], want.as_slice());
    }

    #[test]
    fn q8_0_shifts_by_128() {
        let block = BlockQ8_0 {
            d: f16::from_f32(2.0),
            qs: std::array::from_fn(|i| i as i8 - 16),
        };
        let blocks = QuantizedBlocks::Q8_0(vec![block]);
        let got: Vec<f32> = quants(&blocks)
            .iter()
            .map(|&q| (f32::from(q) - 128.0) * 2.0)
            .collect();
        assert_eq!(got, block.dequantize().to_vec());
    }

    #[test]
    fn requantized_weights_stay_close() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.4)
            .collect();
        let (bytes, scales) = requantize_q4(&values);
        let back = nbits4(&bytes, &scales, 8.0);
        let max_err = values
            .iter()
            .zip(&back)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(max_err < 0.05, "max error {max_err}");
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
    }
}
