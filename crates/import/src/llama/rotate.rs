//! Orthogonal rotations for the int8 weight format (computational invariance, as in QuaRot).
//!
//! Per-row int8 activations lose most of their precision to a few outlier channels: a row's
//! scale is set by its largest magnitude. Rotating the residual stream by an orthogonal `R`
//! spreads every outlier over all channels without changing what the model computes: the
//! token embedding rows become `R·e`, RMSNorm commutes with `R` once its weight `γ` is folded
//! into the projections that read it (`W·diag(γ)·Rᵀ`), and the projections that write to the
//! residual stream become `R·W`. The SiLU-gated MLP activation is rotated online, in blocks
//! (`B`, a small Walsh–Hadamard matrix applied in the graph; the down projection becomes
//! `W·Bᵀ`). All of this happens at import, in f32, before the weights are quantized.
//!
//! A [`Rotation`] of length `n = m·q` (`q` the largest power of two dividing `n`, `m` odd)
//! flips signs (pseudo-random, fixed seed), applies a normalized Walsh–Hadamard transform to
//! each of the `m` chunks of `q` values, then an orthonormal DCT-II across the chunks: about
//! `n·(log₂ q + m)` operations per vector, and defined for every length.

/// An orthogonal transform of vectors of one length; see the module documentation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rotation {
    /// Chunk length (a power of two).
    q: usize,
    /// Number of chunks (odd).
    m: usize,
    /// ±1 per element, applied first.
    signs: Vec<f32>,
    /// The orthonormal DCT-II matrix across chunks, `[m, m]` row-major.
    dct: Vec<f32>,
}

impl Rotation {
    /// The rotation of length-`n` vectors (`n ≥ 1`) whose sign flips come from `seed`
    /// (`seed` 0: no sign flips, so a power-of-two `n` gives the plain, symmetric
    /// Walsh–Hadamard matrix).
    pub fn new(n: usize, seed: u64) -> Self {
        let n = n.max(1);
        let q = 1usize << n.trailing_zeros();
        let m = n / q;
        let mut state = seed;
        let signs = (0..n)
            .map(|_| {
                if seed == 0 {
                    return 1.0;
                }
                // xorshift64: a fixed, platform-independent sequence.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if state & 1 == 0 {
                    1.0
                } else {
                    -1.0
                }
            })
            .collect();
        let mut dct = Vec::with_capacity(m * m);
        for k in 0..m {
            let norm = if k == 0 {
                1.0 / m as f64
            } else {
                2.0 / m as f64
            }
            .sqrt();
            for i in 0..m {
                let angle = std::f64::consts::PI * ((2 * i + 1) * k) as f64 / (2 * m) as f64;
                dct.push((norm * angle.cos()) as f32);
            }
        }
        Self { q, m, signs, dct }
    }

    /// The vector length it rotates.
    pub fn len(&self) -> usize {
        self.q * self.m
    }

    /// `v ← R·v` for each consecutive chunk of [`Self::len`] values of `data` (a trailing
    /// partial chunk is left as it is).
    pub fn apply_chunks(&self, data: &mut [f32]) {
        let mut scratch = vec![0.0f32; if self.m > 1 { self.len() } else { 0 }];
        for v in data.chunks_exact_mut(self.len()) {
            self.apply(v, &mut scratch);
        }
    }

    /// `v ← R·v` for one vector of length [`Self::len`]; `scratch` has that length too
    /// (or is empty when `m = 1`).
    fn apply(&self, v: &mut [f32], scratch: &mut [f32]) {
        for (x, s) in v.iter_mut().zip(&self.signs) {
            *x *= s;
        }
        let norm = 1.0 / (self.q as f32).sqrt();
        for chunk in v.chunks_exact_mut(self.q) {
            let mut h = 1;
            while h < self.q {
                for block in chunk.chunks_exact_mut(2 * h) {
                    let (lo, hi) = block.split_at_mut(h);
                    for (a, b) in lo.iter_mut().zip(hi.iter_mut()) {
                        let (x, y) = (*a, *b);
                        *a = x + y;
                        *b = x - y;
                    }
                }
                h *= 2;
            }
            for x in chunk.iter_mut() {
                *x *= norm;
            }
        }
        if self.m == 1 {
            return;
        }
        scratch.fill(0.0);
        for (k, out) in scratch.chunks_exact_mut(self.q).enumerate() {
            let row = &self.dct[k * self.m..(k + 1) * self.m];
            for (c, chunk) in row.iter().zip(v.chunks_exact(self.q)) {
                for (o, x) in out.iter_mut().zip(chunk) {
                    *o += c * x;
                }
            }
        }
        v.copy_from_slice(scratch);
    }

    /// The dense matrix `Rᵀ`, `[n, n]` row-major: `x @ Rᵀ` rotates row vectors `x` (how the
    /// graph applies it with `MatMul`).
    pub fn transposed_matrix(&self) -> Vec<f32> {
        let n = self.len();
        // Row j of Rᵀ is column j of R, i.e. R applied to the unit vector e_j.
        let mut out = vec![0.0f32; n * n];
        for (j, row) in out.chunks_exact_mut(n).enumerate() {
            row[j] = 1.0;
        }
        self.apply_chunks(&mut out);
        out
    }

    /// The dense matrix `R`, `[n, n]` row-major: `x @ R` undoes [`Self::transposed_matrix`]
    /// for row vectors (`R` is orthogonal).
    pub fn matrix(&self) -> Vec<f32> {
        let n = self.len();
        super::pack::transpose(&self.transposed_matrix(), n, n)
    }
}

/// Rotates the columns of row-major `[rows, cols]` `data` by `rotation` (length `rows`):
/// `W ← R·W`.
pub(crate) fn rotate_columns(data: &mut [f32], rows: usize, cols: usize, rotation: &Rotation) {
    let mut t = super::pack::transpose(data, rows, cols);
    rotation.apply_chunks(&mut t);
    data.copy_from_slice(&super::pack::transpose(&t, cols, rows));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a @ b` for row-major square matrices of side `n`.
    fn matmul(a: &[f32], b: &[f32], n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; n * n];
        for i in 0..n {
            for k in 0..n {
                for j in 0..n {
                    out[i * n + j] += a[i * n + k] * b[k * n + j];
                }
            }
        }
        out
    }

    #[test]
    fn rotations_are_orthogonal_for_any_length() {
        for (n, seed) in [(1, 7), (8, 0), (12, 3), (24, 9), (36, 1)] {
            let rt = Rotation::new(n, seed).transposed_matrix();
            let r = super::super::pack::transpose(&rt, n, n);
            let product = matmul(&r, &rt, n);
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    let got = product[i * n + j];
                    assert!((got - want).abs() < 1e-5, "n {n}: R·Rᵀ[{i},{j}] = {got}");
                }
            }
        }
    }

    #[test]
    fn apply_matches_the_dense_matrix_and_keeps_the_norm() {
        let n = 24;
        let rotation = Rotation::new(n, 5);
        let rt = rotation.transposed_matrix();
        let x: Vec<f32> = (0..n).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let mut y = x.clone();
        rotation.apply_chunks(&mut y);
        for (j, yj) in y.iter().enumerate() {
            let dense: f32 = (0..n).map(|i| x[i] * rt[i * n + j]).sum();
            assert!((dense - yj).abs() < 1e-5);
        }
        let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>();
        assert!((norm(&x) - norm(&y)).abs() < 1e-3);
    }

    #[test]
    fn an_outlier_is_spread_over_every_channel() {
        let mut v = vec![0.0f32; 48];
        v[5] = 100.0;
        Rotation::new(48, 11).apply_chunks(&mut v);
        let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        assert!(max < 100.0 * 0.3, "largest magnitude after rotation {max}");
    }

    #[test]
    fn unsigned_power_of_two_rotation_is_the_symmetric_hadamard_matrix() {
        let rt = Rotation::new(4, 0).transposed_matrix();
        let r = super::super::pack::transpose(&rt, 4, 4);
        assert_eq!(r, rt);
        assert!(rt.iter().all(|x| (x.abs() - 0.5).abs() < 1e-6));
    }

    #[test]
    fn unsigned_hadamard_is_the_kronecker_product_of_smaller_ones() {
        // H_32 = H_4 ⊗ H_8: what lets the graph apply a large block as two small MatMuls.
        let (outer, inner) = (4, 8);
        let (h_outer, h_inner) = (
            Rotation::new(outer, 0).matrix(),
            Rotation::new(inner, 0).matrix(),
        );
        let h = Rotation::new(outer * inner, 0).matrix();
        let n = outer * inner;
        for i in 0..n {
            for j in 0..n {
                let want = h_outer[(i / inner) * outer + j / inner]
                    * h_inner[(i % inner) * inner + j % inner];
                assert!((h[i * n + j] - want).abs() < 1e-6, "[{i}, {j}]");
            }
        }
    }

    #[test]
    fn rotating_columns_rotates_each_column() {
        let rotation = Rotation::new(4, 2);
        let mut w: Vec<f32> = (0..12).map(|i| i as f32).collect();
        let original = w.clone();
        rotate_columns(&mut w, 4, 3, &rotation);
        for c in 0..3 {
            let mut col: Vec<f32> = (0..4).map(|r| original[r * 3 + c]).collect();
            rotation.apply_chunks(&mut col);
            for r in 0..4 {
                assert!((w[r * 3 + c] - col[r]).abs() < 1e-5);
            }
        }
    }
}
