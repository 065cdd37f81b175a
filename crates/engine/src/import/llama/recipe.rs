//! What each weight of the decoder graph holds and where its data comes from: the layout
//! chosen per source tensor ([`Layout::choose`]) and the recipe that [`fetch`] follows when
//! the graph writer streams the weight out.

use super::super::error::ImportError;
use super::super::gguf::QK;
use super::super::graph::WeightData;
use super::source::{Stored, TensorSource};
use super::{pack, WeightFormat};

/// How one weight matrix is laid out in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `MatMulNBits` blocks of 32: `bits` 4 or 8; `mins` for Q4_1's block offsets;
    /// `requantize` when the blocks are computed from f32 values at import.
    Nbits {
        bits: usize,
        mins: bool,
        requantize: bool,
    },
    /// f32.
    Float,
}

impl Layout {
    /// The layout of a tensor stored as `stored` whose rows are `k` long.
    pub(super) fn choose(stored: Stored, format: WeightFormat, k: usize) -> Self {
        let nbits = |bits, mins, requantize| Self::Nbits {
            bits,
            mins,
            requantize,
        };
        match (format, stored) {
            (WeightFormat::F32, _) => Self::Float,
            (_, Stored::Q4_0) => nbits(4, false, false),
            (_, Stored::Q4_1) => nbits(4, true, false),
            (WeightFormat::Auto, Stored::Q8_0) => nbits(8, false, false),
            (WeightFormat::Auto, Stored::Float) => Self::Float,
            (WeightFormat::Q4, _) if k.is_multiple_of(QK) => nbits(4, false, true),
            (WeightFormat::Q4, _) => Self::Float,
        }
    }
}

/// Which array of a source tensor a graph weight holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    /// `MatMulNBits`' `B`.
    Quants,
    /// `MatMulNBits`' `scales`.
    Scales,
    /// Q4_1 block offsets `m + 8·d`, `[K/32, N]`.
    MinsT,
    /// The f32 matrix transposed to `[in, out]`.
    Transposed,
    /// The f32 tensor as stored.
    Plain,
}

/// Where a graph weight's data comes from.
#[derive(Debug, Clone)]
pub(super) struct Recipe {
    /// Source tensor (llama.cpp name).
    pub tensor: String,
    /// Which array of it.
    pub part: Part,
    /// Its layout.
    pub layout: Layout,
    /// Rows (`out`) of the source matrix.
    pub rows: usize,
    /// Columns (`in`) of the source matrix.
    pub cols: usize,
}

/// The data of one graph weight.
pub(super) fn fetch(src: &mut TensorSource, r: &Recipe) -> Result<WeightData, ImportError> {
    let requantize = matches!(
        r.layout,
        Layout::Nbits {
            requantize: true,
            ..
        }
    );
    Ok(match r.part {
        Part::Plain => WeightData::F32(src.read_f32(&r.tensor)?),
        Part::Transposed => {
            WeightData::F32(pack::transpose(&src.read_f32(&r.tensor)?, r.rows, r.cols))
        }
        Part::Quants if requantize => {
            WeightData::U8(pack::requantize_q4(&src.read_f32(&r.tensor)?).0)
        }
        Part::Scales if requantize => {
            WeightData::F32(pack::requantize_q4(&src.read_f32(&r.tensor)?).1)
        }
        Part::Quants => WeightData::U8(pack::quants(&src.read_quantized(&r.tensor)?)),
        Part::Scales => WeightData::F32(pack::scales(&src.read_quantized(&r.tensor)?)),
        Part::MinsT => {
            let blocks = src.read_quantized(&r.tensor)?;
            WeightData::F32(pack::offsets_transposed(&blocks, r.rows).ok_or_else(|| {
                ImportError::UnsupportedDtype {
                    name: r.tensor.clone(),
                    dtype: "block minimums of a type without them".to_owned(),
                }
            })?)
        }
    })
}
