//! Scaled dot-product attention shared by GPT-2 and BERT, and the masks that feed it.

use burn::tensor::activation::softmax;
use burn::tensor::{Device, Tensor, TensorData};

/// Added to the score of a key a query must not see. Like transformers' `finfo.min`, it is
/// finite, so a row with every key masked (a left-padding query) still softmaxes to numbers.
const MASKED: f32 = f32::MIN;

/// `[B, T, C]` → `[B, H, T, C / H]`.
pub fn split_heads(x: Tensor<3>, n_head: usize) -> Tensor<4> {
    let [b, t, c] = x.dims();
    x.reshape([b, t, n_head, c / n_head]).swap_dims(1, 2)
}

/// `[B, H, T, D]` → `[B, T, H * D]`.
pub fn merge_heads(x: Tensor<4>) -> Tensor<3> {
    let [b, h, t, d] = x.dims();
    x.swap_dims(1, 2).reshape([b, t, h * d])
}

/// softmax(q·kᵀ · scale + bias)·v, with `bias` broadcast over heads (`[B, 1, T, S]`).
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
    bias: Option<&Tensor<4>>,
) -> Tensor<4> {
    let mut scores = q.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
    if let Some(bias) = bias {
        scores = scores + bias.clone();
    }
    softmax(scores, 3).matmul(v)
}

/// Which rows of a step's `[B·T, width]` activations hold real tokens (padding's do not). On
/// the host the dense layers run on the real rows alone, so that a short input batched with a
/// long one costs its own length; the attention reads them back in their places.
pub(crate) struct RealRows {
    /// Per row of the step, whether it holds a real token.
    real: Vec<bool>,
    count: usize,
}

impl RealRows {
    pub(crate) fn new(real: Vec<bool>) -> Self {
        let count = real.iter().filter(|&&r| r).count();
        Self { real, count }
    }

    /// Real rows of the step.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    fn all(&self) -> bool {
        self.count == self.real.len()
    }

    /// The real rows of `x` (`[B·T, width]`: activations, or the step's ids with `width` 1),
    /// in order: `x` itself when every row is real.
    pub(crate) fn gather<T: Copy>(&self, x: Vec<T>, width: usize) -> Vec<T> {
        if self.all() {
            return x;
        }
        x.chunks_exact(width)
            .zip(&self.real)
            .filter(|(_, &real)| real)
            .flat_map(|(row, _)| row)
            .copied()
            .collect()
    }

    /// The real rows back in their places among all the step's rows, padding's rows zero:
    /// `rows` itself when every row is real.
    pub(crate) fn scatter(&self, rows: Vec<f32>, width: usize) -> Vec<f32> {
        if self.all() {
            return rows;
        }
        let mut out = vec![0.0f32; self.real.len() * width];
        let mut from = rows.chunks_exact(width);
        for (to, _) in out
            .chunks_exact_mut(width)
            .zip(&self.real)
            .filter(|(_, &real)| real)
        {
            to.copy_from_slice(from.next().expect("one row a real token"));
        }
        out
    }
}

/// Rows of `parts` side by side: row `r` of the result is row `r` of each part in turn
/// (separate q, k and v projections laid out as a fused one, as the host's attention reads
/// them). `widths` are the parts' row widths.
pub(crate) fn side_by_side<const N: usize>(parts: [&[f32]; N], widths: [usize; N]) -> Vec<f32> {
    let rows = parts[0].len() / widths[0];
    let mut out = Vec::with_capacity(rows * widths.iter().sum::<usize>());
    for r in 0..rows {
        for (part, &width) in parts.iter().zip(&widths) {
            out.extend_from_slice(&part[r * width..][..width]);
        }
    }
    out
}

/// An additive attention bias `[B, 1, T, S]` from a host-side rule `allowed(b, t, s)`.
pub fn attention_bias(
    [b, t, s]: [usize; 3],
    allowed: impl Fn(usize, usize, usize) -> bool,
    device: &Device,
) -> Tensor<4> {
    let mut values = Vec::with_capacity(b * t * s);
    for row in 0..b {
        for query in 0..t {
            for key in 0..s {
                values.push(if allowed(row, query, key) {
                    0.0
                } else {
                    MASKED
                });
            }
        }
    }
    Tensor::from_data(TensorData::new(values, [b, 1, t, s]), device)
}
