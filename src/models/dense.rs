//! Dense (fully connected) layers, with the weight kept as `[out, in]`.
//!
//! Why not burn's `Linear`: on the flex CPU backend, a product with few rows (a decode step)
//! runs up to ~1.8× faster as `(W · xᵀ)ᵀ` than as `x · Wᵀ` (measured at 8 rows, 768×3072),
//! while many rows (a prefill) run as fast or faster as `x · Wᵀ`. Keeping `[out, in]` lets
//! each call take the faster order without storing the weight twice.

use burn::tensor::{Device, Tensor};

/// Up to this many rows, `(W · xᵀ)ᵀ` is the faster order.
const FEW_ROWS: usize = 16;

/// `x · Wᵀ` for `x: [N, in]` and `w: [out, in]`, in whichever order is faster for `N`.
///
/// The reordering is for flex only. On wgpu, burn 0.22.1's fusion gets a one-row
/// `(W · xᵀ)ᵀ` followed by element-wise ops wrong: with `W: [32, 32]`, `+ bias` then `tanh`
/// (BERT's pooler), every output past the first four is wrong (Mesa lavapipe). It matches
/// tracel-ai/burn#5122 (fused autotune runs a vector–matrix kernel on a matrix–vector
/// product); `tests/wgpu_parity.rs` catches it. So wgpu keeps `x · Wᵀ`.
pub fn times_transposed(x: Tensor<2>, w: Tensor<2>) -> Tensor<2> {
    if x.dims()[0] <= FEW_ROWS && x.device() == Device::flex() {
        w.matmul(x.transpose()).transpose()
    } else {
        x.matmul(w.transpose())
    }
}

/// `x · Wᵀ + b` over the last dimension.
#[derive(Debug)]
pub struct Dense {
    /// `[out, in]`.
    weight: Tensor<2>,
    /// `[out]`.
    bias: Tensor<1>,
}

impl Dense {
    pub fn new(weight: Tensor<2>, bias: Tensor<1>) -> Self {
        Self { weight, bias }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        let [d_out, _] = self.weight.dims();
        let y = times_transposed(x.reshape([rows, d_in]), self.weight.clone())
            + self.bias.clone().unsqueeze::<2>();
        dims[D - 1] = d_out;
        y.reshape(dims)
    }
}
