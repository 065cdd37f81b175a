//! ggml block formats: dequantization to `f32` of F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K and
//! Q6_K, and typed views of the Q4_0 / Q4_1 / Q8_0 blocks that the graph writer repacks for
//! `MatMulNBits` without going through `f32`.

use half::{bf16, f16};

use super::types::GgmlType;

/// Weights per block of the 32-weight formats (Q4_0, Q4_1, Q8_0).
pub const QK: usize = 32;
/// Weights per K-quant super-block (Q4_K, Q6_K).
pub const QK_K: usize = 256;

/// One Q4_0 block: 32 weights `w = d·(q − 8)`, `q` in 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_0 {
    /// Scale.
    pub d: f16,
    /// Packed quants: byte `j` holds weight `j` in its low nibble and weight `j + 16` in its
    /// high nibble (ggml's order, not `MatMulNBits`' order of adjacent pairs).
    pub qs: [u8; 16],
}

/// One Q4_1 block: 32 weights `w = d·q + m`, `q` in 0..16.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ4_1 {
    /// Scale.
    pub d: f16,
    /// Minimum (the value of `q = 0`).
    pub m: f16,
    /// Packed quants, in the same nibble order as [`BlockQ4_0::qs`].
    pub qs: [u8; 16],
}

/// One Q8_0 block: 32 weights `w = d·q`, `q` a signed byte.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockQ8_0 {
    /// Scale.
    pub d: f16,
    /// Quants, in weight order.
    pub qs: [i8; 32],
}

/// The 4-bit quants of a Q4_0/Q4_1 block in weight order (each in 0..16).
fn unpack_nibbles(qs: &[u8; 16]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for (j, byte) in qs.iter().enumerate() {
        q[j] = byte & 0x0F;
        q[j + 16] = byte >> 4;
    }
    q
}

/// The 16 bytes at `bytes[at..at + 16]`.
fn sixteen(bytes: &[u8], at: usize) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[at..at + 16]);
    out
}

/// The little-endian f16 at `bytes[at..at + 2]`.
fn half_at(bytes: &[u8], at: usize) -> f16 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]])
}

impl BlockQ4_0 {
    /// Bytes per block in the file.
    pub const BYTES: usize = 18;

    /// Parses one block from exactly [`Self::BYTES`] bytes.
    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Self {
        Self {
            d: half_at(bytes, 0),
            qs: sixteen(bytes, 2),
        }
    }

    /// The quants in weight order, each in 0..16 (zero point 8).
    pub fn quants(&self) -> [u8; QK] {
        unpack_nibbles(&self.qs)
    }

    /// The 32 weights.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        self.quants().map(|q| (f32::from(q) - 8.0) * d)
    }
}

impl BlockQ4_1 {
    /// Bytes per block in the file.
    pub const BYTES: usize = 20;

    /// Parses one block from exactly [`Self::BYTES`] bytes.
    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Self {
        Self {
            d: half_at(bytes, 0),
            m: half_at(bytes, 2),
            qs: sixteen(bytes, 4),
        }
    }

    /// The quants in weight order, each in 0..16.
    pub fn quants(&self) -> [u8; QK] {
        unpack_nibbles(&self.qs)
    }

    /// The 32 weights.
    pub fn dequantize(&self) -> [f32; QK] {
        let (d, m) = (self.d.to_f32(), self.m.to_f32());
        self.quants().map(|q| f32::from(q) * d + m)
    }
}

impl BlockQ8_0 {
    /// Bytes per block in the file.
    pub const BYTES: usize = 34;

    /// Parses one block from exactly [`Self::BYTES`] bytes.
    pub fn from_bytes(bytes: &[u8; Self::BYTES]) -> Self {
        let mut qs = [0i8; QK];
        for (q, b) in qs.iter_mut().zip(&bytes[2..]) {
            *q = i8::from_le_bytes([*b]);
        }
        Self {
            d: half_at(bytes, 0),
            qs,
        }
    }

    /// The 32 weights.
    pub fn dequantize(&self) -> [f32; QK] {
        let d = self.d.to_f32();
        self.qs.map(|q| f32::from(q) * d)
    }
}

/// Parses `bytes` (a whole number of blocks of `N` bytes) into blocks.
pub(super) fn parse_blocks<const N: usize, B>(bytes: &[u8], parse: fn(&[u8; N]) -> B) -> Vec<B> {
    bytes
        .chunks_exact(N)
        .filter_map(|c| <&[u8; N]>::try_from(c).ok())
        .map(parse)
        .collect()
}

/// Appends the weights of `bytes` (a whole number of `ty` blocks) to `out`; `false` when `ty`
/// is not one this module dequantizes.
pub(super) fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut Vec<f32>) -> bool {
    match ty {
        GgmlType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        GgmlType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        GgmlType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        GgmlType::Q4_0 => {
            for b in parse_blocks(bytes, BlockQ4_0::from_bytes) {
                out.extend(b.dequantize());
            }
        }
        GgmlType::Q4_1 => {
            for b in parse_blocks(bytes, BlockQ4_1::from_bytes) {
                out.extend(b.dequantize());
            }
        }
        GgmlType::Q8_0 => {
            for b in parse_blocks(bytes, BlockQ8_0::from_bytes) {
                out.extend(b.dequantize());
            }
        }
        GgmlType::Q4K => bytes
            .chunks_exact(144)
            .for_each(|b| dequantize_q4_k(b, out)),
        GgmlType::Q6K => bytes
            .chunks_exact(210)
            .for_each(|b| dequantize_q6_k(b, out)),
        _ => return false,
    }
    true
}

/// Scale and minimum `j` (0..8) of a Q4_K block's 12 packed 6-bit scale bytes.
fn q4_k_scale_min(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// One Q4_K super-block (144 bytes: f16 `d`, f16 `dmin`, 12 scale bytes, 128 quant bytes):
/// 8 sub-blocks of 32 weights `w = d·sc·q − dmin·m`.
fn dequantize_q4_k(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 0).to_f32();
    let dmin = half_at(block, 2).to_f32();
    let scales = &block[4..16];
    let qs = &block[16..144];
    // Each 32-byte chunk of quants holds two sub-blocks: low nibbles, then high nibbles.
    for (chunk, q) in qs.chunks_exact(32).enumerate() {
        for (half, shift) in [(0, 0u8), (1, 4u8)] {
            let (sc, m) = q4_k_scale_min(2 * chunk + half, scales);
            let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
            out.extend(
                q.iter()
                    .map(|b| f32::from((b >> shift) & 0x0F) * scale - min),
            );
        }
    }
}

/// One Q6_K super-block (210 bytes: 128 bytes of low 4 bits, 64 bytes of high 2 bits, 16
/// signed scales, f16 `d`): 16 sub-blocks of 16 weights `w = d·sc·(q − 32)`.
fn dequantize_q6_k(block: &[u8], out: &mut Vec<f32>) {
    let d = half_at(block, 208).to_f32();
    let start = out.len();
    out.resize(start + QK_K, 0.0);
    let y = &mut out[start..];
    // Two halves of 128 weights, each from 64 bytes of `ql`, 32 of `qh` and 8 scales.
    for n in 0..2 {
        let ql = &block[64 * n..64 * n + 64];
        let qh = &block[128 + 32 * n..128 + 32 * n + 32];
        let sc = &block[192 + 8 * n..192 + 8 * n + 8];
        let y = &mut y[128 * n..128 * n + 128];
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0x0F) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, q) in q.iter().enumerate() {
                let scale = f32::from(i8::from_le_bytes([sc[is + 2 * k]]));
                y[l + 32 * k] = d * scale * (f32::from(*q) - 32.0);
            }
        }
    }
}
