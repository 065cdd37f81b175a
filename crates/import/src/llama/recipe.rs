//! What each weight of the decoder graph holds and where its data comes from.
//!
//! A [`Matrix`] is one weight matrix of the graph: the rows of one or more source tensors
//! stacked (q, k and v fused into one projection; gate and up likewise), stored in one
//! [`Layout`] chosen for all of them ([`Layout::choose`]). A matrix is declared as one or more
//! graph arrays (quants, scales, …); [`Fetcher`] computes all arrays of a matrix the first
//! time the graph writer asks for one of them and keeps the others until they are asked for,
//! so each source tensor is read and converted once. An int8 matrix may carry a
//! [`Transform`] (a folded norm weight and orthogonal rotations, see [`super::rotate`]),
//! applied to its f32 values before they are quantized.

use std::collections::HashMap;

use super::super::error::ImportError;
use super::super::gguf::QK;
use super::super::graph::WeightData;
use super::pack::{self, NbitsArrays};
use super::rotate::{rotate_columns, Rotation};
use super::source::{Stored, TensorSource};
use super::WeightFormat;

/// How one weight matrix is laid out in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Layout {
    /// `MatMulNBits` blocks of 32: `bits` 4 or 8; `mins` when some rows have Q4_1 block
    /// offsets.
    Nbits {
        /// 4 or 8.
        bits: usize,
        /// Whether the block offsets are stored (and added in the graph).
        mins: bool,
    },
    /// int8 quants with one f32 scale per output row (`MatMulIntegerToFloat`).
    Int8,
    /// Floats: f32, or f16 in an f16 graph (rounded when written).
    Float,
}

impl Layout {
    /// The layout of a matrix stacked from source tensors stored as `parts`, whose rows are
    /// `k` long, in weight format `format` (resolved by the caller; `Auto` counts as `Q4`,
    /// the CPU's choice).
    ///
    /// `Q4`: blocks are kept exactly where the sources allow: all Q4_0/Q4_1 → 4-bit; Q8_0
    /// with only Q4_0/Q4_1/Q8_0 → 8-bit (4-bit blocks widened); anything else is requantized
    /// to 4-bit (Q4_0/Q4_1 parts still exact). Rows not a multiple of 32 long, and matrices
    /// whose activations must stay f32 ([`Activations::Exact`]), stay f32.
    pub(super) fn choose(
        parts: &[Stored],
        format: WeightFormat,
        k: usize,
        activations: Activations,
    ) -> Self {
        match format {
            WeightFormat::F32 | WeightFormat::F16 => Self::Float,
            WeightFormat::Int8 => Self::Int8,
            WeightFormat::Q4 | WeightFormat::Auto
                if !k.is_multiple_of(QK) || activations == Activations::Exact =>
            {
                Self::Float
            }
            WeightFormat::Q4 | WeightFormat::Auto => {
                let any = |s: Stored| parts.contains(&s);
                let bits = if any(Stored::Q8_0) && !any(Stored::Float) {
                    8
                } else {
                    4
                };
                Self::Nbits {
                    bits,
                    mins: any(Stored::Q4_1),
                }
            }
        }
    }

    /// The layout of the token embedding table (`parts` stored, rows `k` long) in `format`.
    /// As [`Self::choose`], except that under `Int8` the table keeps ggml blocks of 32
    /// (4-bit where every part is Q4_0/Q4_1, 8-bit otherwise: exact for Q8_0, requantized
    /// from floats), so the gather and the tied head read the source's own values.
    pub(super) fn table(parts: &[Stored], format: WeightFormat, k: usize) -> Self {
        if format != WeightFormat::Int8 {
            return Self::choose(parts, format, k, Activations::Quantized);
        }
        if !k.is_multiple_of(QK) {
            return Self::Float;
        }
        let four_bit = parts
            .iter()
            .all(|s| matches!(s, Stored::Q4_0 | Stored::Q4_1));
        Self::Nbits {
            bits: if four_bit { 4 } else { 8 },
            mins: parts.contains(&Stored::Q4_1),
        }
    }
}

/// What a projection may do to its activations under `q4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Activations {
    /// Round them to int8 per block of 32 (`MatMulNBits`' fast kernel).
    Quantized,
    /// Keep them f32: the matrix is stored dequantized (exactly, from the source's blocks)
    /// and multiplied by an f32 `MatMul`, whose rows do not depend on the rows beside them
    /// (`MatMulNBits` on f32 activations takes another kernel for one row than for several).
    Exact,
}

/// Which array of a [`Matrix`] a graph weight holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Part {
    /// `MatMulNBits`' `B`, `[N, K/32, 32·bits/8]`.
    Quants,
    /// `MatMulNBits`' `scales`, `[N, K/32]`.
    Scales,
    /// The block offsets, transposed: `[K/32, N]`.
    MinsT,
    /// int8 quants transposed to `[K, N]` (a projection's `B`).
    Int8Transposed,
    /// The int8 scales, one per row of the matrix (per output column of the projection).
    Int8Scales,
    /// The f32 matrix transposed to `[K, N]`.
    Transposed,
    /// The f32 values as stored (parts concatenated; a missing part reads as zeros).
    Plain,
}

/// One source tensor's share of a [`Matrix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Piece {
    /// Source tensor (llama.cpp name).
    pub tensor: String,
    /// Its rows.
    pub rows: usize,
    /// How it is stored (`None`: absent, read as zeros; only for [`Part::Plain`]).
    pub stored: Option<Stored>,
}

/// What is done to a matrix's f32 values (`[rows, cols]`, `W` of `y = W·x`) before they are
/// stored, in this order.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Transform {
    /// Multiply column `j` by element `j` of this 1-D source tensor (a folded norm weight):
    /// `W ← W·diag(γ)`.
    pub scale_columns: Option<String>,
    /// Rotate each row, in chunks of the rotation's length: `W ← W·Rᵀ` (per block).
    pub rotate_rows: Option<Rotation>,
    /// Rotate each column (length `rows`): `W ← R·W`.
    pub rotate_columns: Option<Rotation>,
}

/// A weight matrix of the graph: source tensors' rows stacked, in one layout.
#[derive(Debug, Clone)]
pub(super) struct Matrix {
    /// The source tensors, in row order.
    pub pieces: Vec<Piece>,
    /// Row length (`K`, the projection's input width).
    pub cols: usize,
    /// The layout of all its arrays.
    pub layout: Layout,
    /// Applied to the f32 values first (f32 and int8 arrays only).
    pub transform: Transform,
    /// The graph weights declared for it, by part.
    pub arrays: Vec<(Part, String)>,
}

impl Matrix {
    /// Total rows (`N`, the projection's output width).
    pub fn rows(&self) -> usize {
        self.pieces.iter().map(|p| p.rows).sum()
    }
}

/// Computes the data of graph weights, one matrix at a time.
#[derive(Debug)]
pub(super) struct Fetcher<'a> {
    /// Where tensors are read from.
    src: &'a mut TensorSource,
    /// The matrices, indexed by [`Recipe::matrix`].
    matrices: &'a [Matrix],
    /// Arrays computed with an earlier one of their matrix and not asked for yet.
    pending: HashMap<String, WeightData>,
}

/// Where one graph weight's data comes from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Recipe {
    /// Index of its matrix.
    pub matrix: usize,
    /// Which array of it.
    pub part: Part,
}

impl<'a> Fetcher<'a> {
    /// A fetcher of `matrices`' arrays from `src`.
    pub fn new(src: &'a mut TensorSource, matrices: &'a [Matrix]) -> Self {
        Self {
            src,
            matrices,
            pending: HashMap::new(),
        }
    }

    /// The data of graph weight `name`, which `recipe` describes.
    pub fn fetch(&mut self, name: &str, recipe: Recipe) -> Result<WeightData, ImportError> {
        if let Some(data) = self.pending.remove(name) {
            return Ok(data);
        }
        let matrix =
            self.matrices
                .get(recipe.matrix)
                .ok_or_else(|| ImportError::MissingTensor {
                    name: name.to_owned(),
                })?;
        let mut computed = compute(self.src, matrix, recipe.part)?;
        let mut wanted = None;
        for (part, array) in &matrix.arrays {
            let Some(data) = computed.remove(part) else {
                continue;
            };
            if array == name {
                wanted = Some(data);
            } else {
                self.pending.insert(array.clone(), data);
            }
        }
        wanted.ok_or_else(|| ImportError::MissingTensor {
            name: name.to_owned(),
        })
    }
}

/// The arrays of `m` that are computed together with `part`.
fn compute(
    src: &mut TensorSource,
    m: &Matrix,
    part: Part,
) -> Result<HashMap<Part, WeightData>, ImportError> {
    let (rows, cols) = (m.rows(), m.cols);
    let mut out = HashMap::new();
    match part {
        Part::Plain => {
            out.insert(Part::Plain, WeightData::F32(transformed_f32(src, m)?));
        }
        Part::Transposed => {
            let values = transformed_f32(src, m)?;
            let t = pack::transpose(&values, rows, cols);
            out.insert(Part::Transposed, WeightData::F32(t));
        }
        Part::Int8Transposed | Part::Int8Scales => {
            let (quants, scales) = pack::quantize_int8_rows(&transformed_f32(src, m)?, cols);
            let t = pack::transpose(&quants, rows, cols);
            out.insert(Part::Int8Transposed, WeightData::I8(t));
            out.insert(Part::Int8Scales, WeightData::F32(scales));
        }
        Part::Quants | Part::Scales | Part::MinsT => {
            let Layout::Nbits { bits, .. } = m.layout else {
                return Err(layout_error(m));
            };
            let arrays = stacked_nbits(src, m, bits)?;
            let kb = cols / QK;
            let offsets = pack::transpose(&arrays.offsets, rows, kb);
            out.insert(Part::Quants, WeightData::U8(arrays.quants));
            out.insert(Part::Scales, WeightData::F32(arrays.scales));
            out.insert(Part::MinsT, WeightData::F32(offsets));
        }
    }
    Ok(out)
}

/// The f32 values of `m`'s pieces, rows stacked; an absent piece reads as zeros.
fn stacked_f32(src: &mut TensorSource, m: &Matrix) -> Result<Vec<f32>, ImportError> {
    let mut out = Vec::with_capacity(m.rows() * m.cols);
    for piece in &m.pieces {
        if piece.stored.is_some() {
            out.extend(src.read_f32(&piece.tensor)?);
        } else {
            out.resize(out.len() + piece.rows * m.cols, 0.0);
        }
    }
    Ok(out)
}

/// The f32 values of `m` with its [`Transform`] applied.
fn transformed_f32(src: &mut TensorSource, m: &Matrix) -> Result<Vec<f32>, ImportError> {
    let mut values = stacked_f32(src, m)?;
    let t = &m.transform;
    if let Some(gamma) = &t.scale_columns {
        let gamma = src.read_f32(gamma)?;
        for row in values.chunks_exact_mut(m.cols) {
            for (w, g) in row.iter_mut().zip(&gamma) {
                *w *= g;
            }
        }
    }
    if let Some(rotation) = &t.rotate_rows {
        rotation.apply_chunks(&mut values);
    }
    if let Some(rotation) = &t.rotate_columns {
        rotate_columns(&mut values, m.rows(), m.cols, rotation);
    }
    Ok(values)
}

/// The `MatMulNBits` arrays (`bits` 4 or 8) of `m`'s pieces, rows stacked: exact repacks of
/// ggml blocks where they fit, requantized blocks otherwise.
fn stacked_nbits(
    src: &mut TensorSource,
    m: &Matrix,
    bits: usize,
) -> Result<NbitsArrays, ImportError> {
    let mut out = NbitsArrays::default();
    for piece in &m.pieces {
        let blocks = match piece.stored {
            Some(Stored::Q4_0 | Stored::Q4_1 | Stored::Q8_0) => {
                pack::repack(&src.read_quantized(&piece.tensor)?, bits)
            }
            _ => None,
        };
        let arrays = match blocks {
            Some(arrays) => arrays,
            None => pack::requantize(&src.read_f32(&piece.tensor)?, bits),
        };
        out.append(arrays);
    }
    Ok(out)
}

/// The error for an array asked of a matrix whose layout has no such array.
fn layout_error(m: &Matrix) -> ImportError {
    ImportError::UnsupportedDtype {
        name: m
            .pieces
            .first()
            .map_or_else(String::new, |p| p.tensor.clone()),
        dtype: format!("{:?} arrays of a {:?} matrix", Part::Quants, m.layout),
    }
}
