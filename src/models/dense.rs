//! Dense (fully connected) layers, with the weight kept as `[out, in]`, in the model's dtype.
//!
//! Why not burn's `Linear`: on the flex CPU backend, a product with few rows (a decode step)
//! runs up to ~1.8× faster as `(W · xᵀ)ᵀ` than as `x · Wᵀ` (measured at 8 rows, 768×3072),
//! while many rows (a prefill) run as fast or faster as `x · Wᵀ`. Keeping `[out, in]` lets
//! each call take the faster order without storing the weight twice.
//!
//! LOW PRECISION: burn 0.22's flex has no fast f16/bf16/int8 matmul (it widens the whole
//! weight on every call), so on flex those dtypes keep the weight packed for our own
//! weight-only kernels (`kernels`), which read it once per call and sum in f32. On wgpu, f16
//! is a burn tensor of dtype F16 and the product runs in burn. The model code is the same
//! whichever path a layer takes.

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};

use super::kernels::PackedLinear;

/// Up to this many rows, `(W · xᵀ)ᵀ` is the faster order.
const FEW_ROWS: usize = 16;

/// `x · Wᵀ` for `x: [N, in]` and `w: [out, in]`, in whichever order is faster for `N`.
///
/// The reordering is for flex only. On wgpu, burn 0.22.1's fusion gets a one-row
/// `(W · xᵀ)ᵀ` followed by element-wise ops wrong: with `W: [32, 32]`, `+ bias` then `tanh`
/// (BERT's pooler), every output past the first four is wrong (Mesa lavapipe). It matches
/// tracel-ai/burn#5122 (fused autotune runs a vector–matrix kernel on a matrix–vector
/// product); `tests/suite/wgpu_parity.rs` catches it. So wgpu keeps `x · Wᵀ`.
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
    weight: Weight,
}

// One per layer, a few hundred in a model: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Weight {
    /// A burn tensor `[out, in]`: f32 on any backend, or f16 on wgpu (the input is cast to
    /// f16 for the product, the result back to f32).
    Tensor {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    /// flex, f16/bf16/int8: packed for the weight-only kernels (`k` = in, `n` = out).
    Packed {
        weight: PackedLinear,
        bias: Option<Vec<f32>>,
        device: Device,
    },
}

impl Dense {
    /// `weight: [out, in]`, in f32 or (on wgpu) f16.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Weight::Tensor { weight, bias },
        }
    }

    /// A layer over a packed weight, for flex.
    pub fn packed(weight: PackedLinear, bias: Option<Vec<f32>>, device: &Device) -> Self {
        Self {
            weight: Weight::Packed {
                weight,
                bias,
                device: device.clone(),
            },
        }
    }

    /// The weight's element type in memory: `f32`, `f16`, `bf16` or `int8`.
    pub fn dtype(&self) -> &'static str {
        match &self.weight {
            Weight::Tensor { weight, .. } if weight.dtype() == DType::F16 => "f16",
            Weight::Tensor { .. } => "f32",
            Weight::Packed { weight, .. } => weight.dtype().as_str(),
        }
    }

    /// Bytes the weight takes in memory.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Tensor { weight, .. } => weight.shape().num_elements() * weight.dtype().size(),
            Weight::Packed { weight, .. } => weight.bytes(),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        let x = x.reshape([rows, d_in]);
        let (y, d_out) = match &self.weight {
            Weight::Tensor { weight, bias } => {
                let [d_out, _] = weight.dims();
                let y = if weight.dtype() == DType::F32 {
                    times_transposed(x, weight.clone())
                } else {
                    let x = x.cast(FloatDType::F16);
                    times_transposed(x, weight.clone()).cast(FloatDType::F32)
                };
                let y = match bias {
                    Some(bias) => y + bias.clone().unsqueeze::<2>(),
                    None => y,
                };
                (y, d_out)
            }
            Weight::Packed {
                weight,
                bias,
                device,
            } => {
                let d_out = weight.n();
                // Zero-copy when `x` has no other owner (the usual case: a fresh activation).
                let data = x.into_data();
                let xs = data.as_slice::<f32>().expect("activations are f32");
                let mut out = vec![0.0f32; rows * d_out];
                weight.matmul(xs, rows, bias.as_deref(), &mut out);
                let y = Tensor::from_data(TensorData::new(out, [rows, d_out]), device);
                (y, d_out)
            }
        };
        dims[D - 1] = d_out;
        y.reshape(dims)
    }

    /// Rows `ids` of the weight (`[ids.len(), in]`, f32): a tied embedding's lookup.
    pub fn rows(&self, ids: &[u32]) -> Tensor<2> {
        match &self.weight {
            Weight::Tensor { weight, .. } => {
                let device = weight.device();
                let ids: Vec<i64> = ids.iter().map(|&i| i64::from(i)).collect();
                let n = ids.len();
                let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &device);
                weight.clone().select(0, ids).cast(FloatDType::F32)
            }
            Weight::Packed { weight, device, .. } => {
                let k = weight.k();
                let mut out = Vec::with_capacity(ids.len() * k);
                for &id in ids {
                    out.extend((0..k).map(|kk| weight.weight(kk, id as usize)));
                }
                Tensor::from_data(TensorData::new(out, [ids.len(), k]), device)
            }
        }
    }
}
