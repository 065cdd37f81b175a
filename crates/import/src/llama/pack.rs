//! Weight packing for the decoder graph's three weight formats.
//!
//! - `MatMulNBits` (`com.microsoft`): ggml blocks of 32 weights become `B` (uint8
//!   `[N, K/32, 32·bits/8]`), `scales` (f32 `[N, K/32]`) and, for Q4_1, per-block offsets
//!   (f32, transposed to `[K/32, N]` by the caller). `MatMulNBits` packs 4-bit neighbours into
//!   one byte (weight `2k` in the low nibble, `2k + 1` in the high one) and reads
//!   `w = (q − zp)·scale` with the default zero point 8 (4-bit) or 128 (8-bit). ggml's Q4
//!   bytes hold weights `j` and `j + 16` instead, so the quants are re-paired; Q8_0's signed
//!   quants are shifted by 128, and Q4 blocks widened to 8 bits as `q + 120`. No value
//!   changes: all of these are exact. Q4_1's `w = d·q + m` is read as
//!   `d·(q − 8) + (m + 8·d)`: `MatMulNBits` with its default zero point, plus a per-block
//!   offset `m + 8·d` the graph adds as `ReduceSum(x per block) @ offsets`. Weights without
//!   exact blocks are requantized (symmetric blocks of 32, ggml's Q4_0 / Q8_0 rules).
//! - int8 (`MatMulIntegerToFloat`): symmetric per-row quantization of `f32` weights,
//!   `scale = max|w_row| / 127`, `q = round(w / scale)` in `−127..=127`; a projection stores
//!   the quants transposed (`[K, N]`) so each output column has its own scale.
//! - f32: weights transposed to `[K, N]` for `MatMul`.

use super::super::gguf::{QuantizedBlocks, QK};

/// The largest int8 quant magnitude (symmetric: −127..=127, −128 unused).
const INT8_MAX: f32 = 127.0;

/// `MatMulNBits` arrays of a `[rows, cols]` matrix (cols a multiple of 32), row-major.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct NbitsArrays {
    /// `B`: per row, `cols / 32` blobs of `32·bits/8` bytes.
    pub quants: Vec<u8>,
    /// One scale per block, `[rows, cols / 32]`.
    pub scales: Vec<f32>,
    /// One additive offset per block (`m + 8·d` for Q4_1 blocks, else 0), `[rows, cols / 32]`.
    pub offsets: Vec<f32>,
}

impl NbitsArrays {
    /// Appends the rows of `other`.
    pub(crate) fn append(&mut self, other: Self) {
        self.quants.extend(other.quants);
        self.scales.extend(other.scales);
        self.offsets.extend(other.offsets);
    }
}

/// 32 quants (each in 0..16), weight order, as 16 `MatMulNBits` bytes.
fn pair_nibbles(q: &[u8; QK], out: &mut Vec<u8>) {
    out.extend(q.chunks_exact(2).map(|p| (p[0] & 0x0F) | (p[1] << 4)));
}

/// 4-bit quants (zero point 8) widened to 8-bit quants (zero point 128).
fn widen(q: [u8; QK]) -> [u8; QK] {
    q.map(|q| q + 120)
}

/// The exact `MatMulNBits` arrays (`bits` 4 or 8) of ggml blocks, or `None` when the blocks
/// do not fit in `bits` (Q8_0 as 4-bit).
pub(crate) fn repack(blocks: &QuantizedBlocks, bits: usize) -> Option<NbitsArrays> {
    let mut out = NbitsArrays::default();
    let four = bits == 4;
    let mut push = |q: [u8; QK], d: f32, offset: f32| {
        if four {
            pair_nibbles(&q, &mut out.quants);
        } else {
            out.quants.extend(widen(q));
        }
        out.scales.push(d);
        out.offsets.push(offset);
    };
    match blocks {
        QuantizedBlocks::Q4_0(b) => b.iter().for_each(|b| push(b.quants(), b.d.to_f32(), 0.0)),
        QuantizedBlocks::Q4_1(b) => b.iter().for_each(|b| {
            let d = b.d.to_f32();
            push(b.quants(), d, b.m.to_f32() + 8.0 * d);
        }),
        QuantizedBlocks::Q8_0(b) if !four => {
            for b in b {
                out.quants.extend(b.qs.map(|q| q.to_le_bytes()[0] ^ 0x80));
                out.scales.push(b.d.to_f32());
                out.offsets.push(0.0);
            }
        }
        QuantizedBlocks::Q8_0(_) => return None,
    }
    Some(out)
}

/// Symmetric requantization of row-major f32 weights (rows a multiple of 32 long) to
/// `MatMulNBits` blocks, as ggml does it: 4-bit like Q4_0 (per block `d = v / −8` where `v`
/// is the value of largest magnitude, `q = clamp(round(w/d) + 8, 0, 15)`), 8-bit like Q8_0
/// (`d = max|w| / 127`, `q = round(w/d) + 128`). Scales are rounded to f16 as ggml stores
/// them; offsets are zero.
pub(crate) fn requantize(values: &[f32], bits: usize) -> NbitsArrays {
    let n_blocks = values.len() / QK;
    let mut out = NbitsArrays {
        quants: Vec::with_capacity(n_blocks * QK * bits / 8),
        scales: Vec::with_capacity(n_blocks),
        offsets: vec![0.0; n_blocks],
    };
    for block in values.chunks_exact(QK) {
        let extreme = block
            .iter()
            .copied()
            .fold(0.0f32, |m, v| if v.abs() > m.abs() { v } else { m });
        let d = if bits == 4 {
            extreme / -8.0
        } else {
            extreme.abs() / INT8_MAX
        };
        let inv = if d == 0.0 { 0.0 } else { 1.0 / d };
        let mut q = [0u8; QK];
        if bits == 4 {
            for (q, w) in q.iter_mut().zip(block) {
                // In 0..=15 after the clamp, so the cast is exact.
                *q = (w * inv + 8.5).clamp(0.0, 15.0) as u8;
            }
            pair_nibbles(&q, &mut out.quants);
        } else {
            for (q, w) in q.iter_mut().zip(block) {
                // In 1..=255 after the clamp, so the cast is exact.
                *q = ((w * inv).round() + 128.0).clamp(1.0, 255.0) as u8;
            }
            out.quants.extend(q);
        }
        // The scale as ggml stores it (f16), so GGUF and requantized imports agree.
        out.scales.push(half::f16::from_f32(d).to_f32());
    }
    out
}

/// Symmetric int8 quantization of each row of row-major `[rows, cols]` weights:
/// `scale = max|w| / 127` (0 for an all-zero row, whose quants are then 0) and
/// `q = round(w / scale)` (half away from zero), in `−127..=127`. Returns the quants
/// (row-major, same shape) and one scale per row.
pub(crate) fn quantize_int8_rows(values: &[f32], cols: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = cols.max(1);
    let mut quants = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / cols);
    for row in values.chunks(cols) {
        let max = row.iter().fold(0.0f32, |m, w| m.max(w.abs()));
        let scale = max / INT8_MAX;
        // In −127..=127 after the clamp, so the cast is exact.
        quants.extend(row.iter().map(|w| {
            if scale > 0.0 {
                (w / scale).round().clamp(-INT8_MAX, INT8_MAX) as i8
            } else {
                0
            }
        }));
        scales.push(scale);
    }
    (quants, scales)
}

/// Row-major `[rows, cols]` to `[cols, rows]`.
pub(crate) fn transpose<T: Copy + Default>(data: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = vec![T::default(); data.len()];
    for (r, row) in data.chunks_exact(cols.max(1)).enumerate().take(rows) {
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

    /// Dequantizes `MatMulNBits` data as ONNX Runtime reads it, plus the block offsets.
    fn nbits(a: &NbitsArrays, bits: usize) -> Vec<f32> {
        let blob = QK * bits / 8;
        let zp = if bits == 4 { 8.0 } else { 128.0 };
        a.quants
            .chunks_exact(blob)
            .zip(a.scales.iter().zip(&a.offsets))
            .flat_map(|(blk, (s, o))| {
                let q: Vec<u8> = if bits == 4 {
                    blk.iter().flat_map(|b| [b & 0x0F, b >> 4]).collect()
                } else {
                    blk.to_vec()
                };
                q.into_iter()
                    .map(move |q| (f32::from(q) - zp) * s + o)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    fn q4_0() -> BlockQ4_0 {
        BlockQ4_0 {
            d: f16::from_f32(0.25),
            qs: std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0x5A),
        }
    }

    fn q4_1(m: f32) -> BlockQ4_1 {
        BlockQ4_1 {
            d: f16::from_f32(0.5),
            m: f16::from_f32(m),
            qs: std::array::from_fn(|i| (i as u8).wrapping_mul(17)),
        }
    }

    fn q8_0() -> BlockQ8_0 {
        BlockQ8_0 {
            d: f16::from_f32(2.0),
            qs: std::array::from_fn(|i| i as i8 - 16),
        }
    }

    #[test]
    fn q4_blocks_repack_exactly_at_4_and_8_bits() {
        for bits in [4, 8] {
            let blocks = QuantizedBlocks::Q4_0(vec![q4_0()]);
            let got = nbits(&repack(&blocks, bits).unwrap(), bits);
            assert_eq!(got, q4_0().dequantize().to_vec(), "{bits} bits");
            let blocks = QuantizedBlocks::Q4_1(vec![q4_1(1.0), q4_1(-3.0)]);
            let arrays = repack(&blocks, bits).unwrap();
            assert_eq!(arrays.offsets, vec![5.0, 1.0]);
            let want: Vec<f32> = [q4_1(1.0), q4_1(-3.0)]
                .iter()
                .flat_map(BlockQ4_1::dequantize)
                .collect();
            assert_eq!(nbits(&arrays, bits), want, "{bits} bits");
        }
    }

    #[test]
    fn q8_0_shifts_by_128_and_does_not_fit_4_bits() {
        let blocks = QuantizedBlocks::Q8_0(vec![q8_0()]);
        let got = nbits(&repack(&blocks, 8).unwrap(), 8);
        assert_eq!(got, q8_0().dequantize().to_vec());
        assert!(repack(&blocks, 4).is_none());
    }

    #[test]
    fn requantized_weights_stay_close() {
        let values: Vec<f32> = (0..64)
            .map(|i| ((i * 7) % 13) as f32 / 13.0 - 0.4)
            .collect();
        for (bits, tolerance) in [(4, 0.05), (8, 0.003)] {
            let back = nbits(&requantize(&values, bits), bits);
            let max_err = values
                .iter()
                .zip(&back)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(max_err < tolerance, "{bits} bits: max error {max_err}");
        }
    }

    #[test]
    fn int8_rows_scale_by_their_largest_magnitude() {
        // Scales 0.5 and 0.25 (exact in binary), so every quotient below is exact.
        let values = [63.5, -31.75, 0.0, 0.25, -31.75, 0.125, 6.25, 12.5];
        let (q, scales) = quantize_int8_rows(&values, 4);
        assert_eq!(scales, vec![0.5, 0.25]);
        // −63.5 and 0.5 round half away from zero.
        assert_eq!(q, vec![127, -64, 0, 1, -127, 1, 25, 50]);
        for (row, s) in q.chunks(4).zip(&scales) {
            assert!(row.iter().all(|q| (-127..=127).contains(q)));
            assert!(*s > 0.0);
        }
    }

    #[test]
    fn int8_rows_round_trip_within_half_a_step() {
        let values: Vec<f32> = (0..96)
            .map(|i| ((i * 29) % 41) as f32 / 7.0 - 3.0)
            .collect();
        let (q, scales) = quantize_int8_rows(&values, 32);
        for ((w, q), i) in values.iter().zip(&q).zip(0..) {
            let s = scales[i / 32];
            assert!(
                (w - f32::from(*q) * s).abs() <= 0.5 * s * 1.0001,
                "{w} vs {q}·{s}"
            );
        }
    }

    #[test]
    fn int8_zero_rows_get_zero_scales_and_quants() {
        let values = [0.0, 0.0, 0.0, 254.0, -127.0, 0.0];
        let (q, scales) = quantize_int8_rows(&values, 3);
        assert_eq!(scales, vec![0.0, 2.0]);
        assert_eq!(q, vec![0, 0, 0, 127, -64, 0]);
        assert!(q.iter().all(|&q| q != i8::MIN));
    }

    #[test]
    fn transpose_swaps_axes() {
        assert_eq!(
            transpose(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], 2, 3),
            vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert_eq!(transpose(&[1i8, 2, 3, 4], 2, 2), vec![1, 3, 2, 4]);
    }
}
