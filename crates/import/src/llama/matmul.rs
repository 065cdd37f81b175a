//! The decoder graph's matrix products: `MatMulNBits` on ggml-style blocks, int8
//! `MatMulIntegerToFloat` on activations quantized per row, f32 `MatMul`, the fused projection
//! that picks among them for a weight format, and the int8 down projection's online rotation.

use super::super::error::ImportError;
use super::super::gguf::QK;
use super::super::graph::{Attr, MS_DOMAIN};
use super::super::onnx_proto::tensor_proto::DataType;
use super::recipe::{Activations, Layout, Part, Piece, Transform};
use super::rotate::Rotation;
use super::{Decoder, Rows, Side};

/// `accuracy_level` of every `MatMulNBits`: 4 = int8 activations, ONNX Runtime's fast CPU
/// kernel (llama.cpp's CPU dot products quantize activations the same way).
const ACCURACY_LEVEL: i64 = 4;

/// The floor of a row's largest activation magnitude before it becomes the int8 scale, so
/// an all-zero row quantizes to zeros instead of dividing by zero.
const TINY_MAGNITUDE: f32 = 1e-30;

/// The largest block of the int8 down projection's online input rotation, a Walsh–Hadamard
/// matrix: larger blocks spread outliers further (on SmolLM2, blocks of 512 instead of 64
/// bring the largest magnitude of the down projection's input from 3.8–4.6 to about 3.3
/// times its RMS).
const DOWN_ROTATION_BLOCK: usize = 4096;

/// The inner factor of the down rotation's block: `H_block = H_outer ⊗ H_inner`, applied as
/// `H_outer · X · H_inner` on each block reshaped to `[outer, inner]`, so a block costs
/// `inner + outer` multiply-adds per activation instead of `block`.
const DOWN_ROTATION_INNER: usize = 64;

/// A `MatMulNBits` matrix declared in the graph: the names of its inputs.
#[derive(Debug, Clone)]
pub(super) struct NbitsWeight {
    pub(super) quants: String,
    pub(super) scales: String,
    pub(super) mins_t: Option<String>,
    pub(super) bits: usize,
}

impl Decoder<'_> {
    /// Declares the `MatMulNBits` arrays of `[n, k]` matrix `matrix` under `base` names.
    pub(super) fn nbits_weight(
        &mut self,
        matrix: usize,
        base: &str,
        bits: usize,
        mins: bool,
    ) -> NbitsWeight {
        let Some(m) = self.matrices.get(matrix) else {
            return NbitsWeight {
                quants: String::new(),
                scales: String::new(),
                mins_t: None,
                bits,
            };
        };
        let (n, kb) = (m.rows(), m.cols / QK);
        let quants = self.declare(
            matrix,
            Part::Quants,
            format!("{base}.quants"),
            &[n, kb, QK * bits / 8],
            DataType::Uint8,
        );
        let scales = self.declare(
            matrix,
            Part::Scales,
            format!("{base}.scales"),
            &[n, kb],
            DataType::Float,
        );
        let mins_t = mins.then(|| {
            self.declare(
                matrix,
                Part::MinsT,
                format!("{base}.mins_t"),
                &[kb, n],
                DataType::Float,
            )
        });
        NbitsWeight {
            quants,
            scales,
            mins_t,
            bits,
        }
    }

    /// `x @ Wᵀ` for a `MatMulNBits` `[n, k]` matrix, plus for Q4_1 blocks
    /// `ReduceSum(x per block) @ offsets`.
    pub(super) fn nbits_matmul(
        &mut self,
        x: &str,
        w: &NbitsWeight,
        k: usize,
        n: usize,
        out: &str,
    ) -> String {
        let attrs = [
            ("K", Attr::Int(k as i64)),
            ("N", Attr::Int(n as i64)),
            ("bits", Attr::Int(w.bits as i64)),
            ("block_size", Attr::Int(QK as i64)),
            ("accuracy_level", Attr::Int(ACCURACY_LEVEL)),
        ];
        let y = format!("{out}/nbits");
        self.g.node_in(
            MS_DOMAIN,
            "MatMulNBits",
            &[&y],
            &[x, &w.quants, &w.scales],
            &attrs,
        );
        let Some(mins_t) = &w.mins_t else {
            return y;
        };
        let blocks = self.ints(&[0, 0, (k / QK) as i64, QK as i64]);
        let last = self.ints(&[-1]);
        let r = self
            .g
            .node("Reshape", &format!("{out}/blocks"), &[x, &blocks], &[]);
        let sums = self.g.node(
            "ReduceSum",
            &format!("{out}/block_sums"),
            &[&r, &last],
            &[("keepdims", Attr::Int(0))],
        );
        let m = self
            .g
            .node("MatMul", &format!("{out}/mins"), &[&sums, mins_t], &[]);
        self.g.node("Add", out, &[&y, &m], &[])
    }

    /// 128 as uint8 `[batch, rows, 1]`: the zero point of the per-row `QuantizeLinear`
    /// (which wants it shaped like its scales), built once per kind of rows.
    pub(super) fn zero_point(&mut self, rows: Rows) -> String {
        if let Some(zp) = self.zero_points.get(&rows) {
            return zp.clone();
        }
        let (input, tag) = match rows {
            Rows::Sequence => ("input_ids", "sequence"),
            Rows::Positions => ("logits_positions", "positions"),
        };
        let scalar = self.scalar_u8("const/uint8_zero_point", 128);
        let one = self.ints(&[1]);
        let shape = self.g.node("Shape", &format!("{tag}/shape"), &[input], &[]);
        let shape = self.g.node(
            "Concat",
            &format!("{tag}/row_scale_shape"),
            &[&shape, &one],
            &[("axis", Attr::Int(0))],
        );
        let zp = self.g.node(
            "Expand",
            &format!("{tag}/row_zero_points"),
            &[&scalar, &shape],
            &[],
        );
        self.zero_points.insert(rows, zp.clone());
        zp
    }

    /// Per-row quantization of activation `x` (f32 `[batch, rows, k]`), emitted once per
    /// activation: `s = max(max|x_row|, tiny) / 127` (`[batch, rows, 1]`) and
    /// `x_q = QuantizeLinear(x, s, 128)` = `uint8(round(x / s) + 128)` (half to even; one
    /// block of `k` per row). Returns (quants, scales).
    pub(super) fn quantize_rows(&mut self, x: &str, k: usize, rows: Rows) -> (String, String) {
        if let Some(q) = self.quantized.get(x) {
            return q.clone();
        }
        let abs = self.g.node("Abs", &format!("{x}/abs"), &[x], &[]);
        let last = self.ints(&[-1]);
        let max = self.g.node(
            "ReduceMax",
            &format!("{x}/row_max"),
            &[&abs, &last],
            &[("keepdims", Attr::Int(1))],
        );
        let tiny = self.scalar_f32("const/tiny_magnitude", TINY_MAGNITUDE);
        let floor = self
            .g
            .node("Max", &format!("{x}/row_max_floor"), &[&max, &tiny], &[]);
        let i8_max = self.scalar_f32("const/int8_max", 127.0);
        let scale = self
            .g
            .node("Div", &format!("{x}/row_scale"), &[&floor, &i8_max], &[]);
        let zp = self.zero_point(rows);
        let quants = self.g.node(
            "QuantizeLinear",
            &format!("{x}/quants"),
            &[x, &scale, &zp],
            &[("axis", Attr::Int(-1)), ("block_size", Attr::Int(k as i64))],
        );
        let q = (quants, scale);
        self.quantized.insert(x.to_owned(), q.clone());
        q
    }

    /// `x @ W` for int8 `W` (`[k, n]`, named `weight`) with per-column scales `scales`:
    /// `MatMulIntegerToFloat(x_q, W, s_row, scales, 128)`, which scales each output row by its
    /// `s_row` (a non-scalar `a_scale` is applied per row) and each column by its weight
    /// scale.
    pub(super) fn int8_matmul(
        &mut self,
        x: &str,
        (k, rows): (usize, Rows),
        weight: &str,
        scales: &str,
        out: &str,
    ) -> String {
        let (quants, row_scales) = self.quantize_rows(x, k, rows);
        let zp = self.scalar_u8("const/uint8_zero_point", 128);
        self.g.node_in(
            MS_DOMAIN,
            "MatMulIntegerToFloat",
            &[out],
            &[&quants, weight, &row_scales, scales, &zp],
            &[],
        );
        out.to_owned()
    }

    /// The projection `x @ Wᵀ (+ b)` of the source tensors `{part}.weight` (`[n_part, k]`)
    /// stacked in the order given (one fused projection, output width `Σ n_part`); `name`
    /// names the graph's weights and nodes. Biases (`{part}.bias`), where any part has one,
    /// are stacked likewise (zeros for the parts without). `side` says which int8 rotations
    /// fold into the weights; `rows` what the rows of `x` are; `activations` whether `q4`
    /// may round them to int8.
    pub(super) fn projection(
        &mut self,
        x: &str,
        name: &str,
        parts: &[(&str, usize)],
        (k, rows, activations): (usize, Rows, Activations),
        side: &Side,
    ) -> Result<String, ImportError> {
        let mut pieces = Vec::with_capacity(parts.len());
        for (part, n) in parts {
            let tensor = format!("{part}.weight");
            let stored = self.src.require(&tensor, &[*n, k])?;
            pieces.push(Piece {
                tensor,
                rows: *n,
                stored: Some(stored),
            });
        }
        let stored: Vec<_> = pieces.iter().filter_map(|p| p.stored).collect();
        let layout = Layout::choose(&stored, self.format, k, activations);
        let n: usize = parts.iter().map(|(_, n)| n).sum();
        let transform = self.transform(side);
        let matrix = self.matrix(pieces, k, layout, transform);
        let base = format!("{name}.weight");
        let out = format!("{name}/out");
        let y = match layout {
            Layout::Nbits { bits, mins } => {
                let w = self.nbits_weight(matrix, &base, bits, mins);
                self.nbits_matmul(x, &w, k, n, &out)
            }
            Layout::Int8 => {
                let w = self.declare(
                    matrix,
                    Part::Int8Transposed,
                    format!("{base}.int8"),
                    &[k, n],
                    DataType::Int8,
                );
                let s = self.declare(
                    matrix,
                    Part::Int8Scales,
                    format!("{base}.scales"),
                    &[n],
                    DataType::Float,
                );
                self.int8_matmul(x, (k, rows), &w, &s, &out)
            }
            Layout::Float => {
                let w = self.declare(
                    matrix,
                    Part::Transposed,
                    format!("{base}.T"),
                    &[k, n],
                    self.float,
                );
                self.g.node("MatMul", &out, &[x, &w], &[])
            }
        };
        let biases: Vec<Piece> = parts
            .iter()
            .map(|(part, rows)| {
                let tensor = format!("{part}.bias");
                let stored = self.src.meta(&tensor).map(|m| m.stored);
                Piece {
                    tensor,
                    rows: *rows,
                    stored,
                }
            })
            .collect();
        if biases.iter().all(|b| b.stored.is_none()) {
            return Ok(y);
        }
        for b in biases.iter().filter(|b| b.stored.is_some()) {
            self.src.require(&b.tensor, &[b.rows])?;
        }
        // A bias adds to the projection's output: rotated with it when it is the residual.
        let rotation = match side {
            Side::Writes(_) => self.residual_rotation.clone(),
            Side::Reads(_) => None,
        };
        let transform = Transform {
            rotate_columns: rotation,
            ..Transform::default()
        };
        let matrix = self.matrix(biases, 1, Layout::Float, transform);
        let b = self.declare(
            matrix,
            Part::Plain,
            format!("{name}.bias"),
            &[n],
            self.float,
        );
        Ok(self
            .g
            .node("Add", &format!("{name}/biased"), &[&y, &b], &[]))
    }
}

/// Under int8, rotates the MLP activation `act` (`[…, ffn]`) in blocks of a Walsh–Hadamard
/// matrix `B` (the largest power of two dividing `ffn`, at most [`DOWN_ROTATION_BLOCK`]), so
/// the down projection's per-row scales are not set by outlier channels; returns the
/// activation to project and `B` (which the down weights fold in). `B = H_outer ⊗ H_inner`
/// (Sylvester's construction), so each block, reshaped to `[outer, inner]`, becomes
/// `H_outer · X · H_inner` (two `MatMul`s; both factors are symmetric). Other formats, and
/// widths without an even block, pass through.
pub(super) fn rotate_blocks(
    d: &mut Decoder<'_>,
    act: &str,
    ffn: usize,
    prefix: &str,
) -> (String, Option<Rotation>) {
    let block = 1usize
        << ffn
            .trailing_zeros()
            .min(DOWN_ROTATION_BLOCK.trailing_zeros());
    if d.residual_rotation.is_none() || block < 2 {
        return (act.to_owned(), None);
    }
    let inner = block.min(DOWN_ROTATION_INNER);
    let outer = block / inner;
    let hadamard = |d: &mut Decoder<'_>, n: usize| {
        let name = format!("const/hadamard_{n}");
        if d.scalars.insert(name.clone()) {
            let side = n as i64;
            d.g.const_f32(&name, &[side, side], &Rotation::new(n, 0).matrix());
        }
        name
    };
    let (h_inner, h_outer) = (hadamard(d, inner), hadamard(d, outer));
    let shape = [0, 0, (ffn / block) as i64, outer as i64, inner as i64];
    let blocks = d.ints(&shape);
    let flat = d.ints(&[0, 0, ffn as i64]);
    let mut r = d.g.node(
        "Reshape",
        &format!("{prefix}/act_blocks"),
        &[act, &blocks],
        &[],
    );
    r = d.g.node(
        "MatMul",
        &format!("{prefix}/act_rotated_inner"),
        &[&r, &h_inner],
        &[],
    );
    if outer > 1 {
        r = d.g.node(
            "MatMul",
            &format!("{prefix}/act_rotated"),
            &[&h_outer, &r],
            &[],
        );
    }
    let r =
        d.g.node("Reshape", &format!("{prefix}/act_rot"), &[&r, &flat], &[]);
    (r, Some(Rotation::new(block, 0)))
}
