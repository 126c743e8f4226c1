//! Dense (fully connected) layers, in the model's dtype.
//!
//! On the flex CPU backend every dtype, f32 included, keeps the weight packed for our own
//! kernels (`kernels`): burn 0.22's flex runs a few-row product (a decode step) on one thread
//! and widens f16/bf16/int8 weights whole on every call, while the kernels read the weight
//! from memory once per call (more than 5 rows go in blocks of 6 over tiles held in L2),
//! split the columns over the engine pool's threads and sum in f32 (gpt2 f32 decode:
//! 58.5 → 30.4 ms at batch 1, 99 → 48 ms at batch 8).
//! On wgpu the weight is a burn tensor `[out, in]` (f32, or F16 for f16) and the product runs
//! in burn. The model code is the same whichever path a layer takes.
//!
//! wgpu computes `x · Wᵀ`, never `(W · xᵀ)ᵀ`: burn 0.22.1's fusion gets a one-row
//! `(W · xᵀ)ᵀ` followed by element-wise ops wrong (with `W: [32, 32]`, `+ bias` then `tanh`,
//! BERT's pooler, every output past the first four is wrong on Mesa lavapipe; it matches
//! tracel-ai/burn#5122). `tests/suite/wgpu_parity.rs` would catch a return to it.

use burn::tensor::{DType, Device, FloatDType, Int, Tensor, TensorData};

use super::kernels::q4::{self, Activations, Q4Linear};
use super::kernels::{self, PackedLinear};

/// `x · Wᵀ + b` over the last dimension.
#[derive(Debug)]
pub struct Dense {
    weight: Weight,
}

// One per layer, a few hundred in a model: the variants' size difference costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Weight {
    /// wgpu: a burn tensor `[out, in]`, f32 or F16 (then the input is cast to f16 for the
    /// product and the result back to f32).
    Tensor {
        weight: Tensor<2>,
        bias: Option<Tensor<1>>,
    },
    /// flex, every dtype: packed for the kernels (`k` = in, `n` = out).
    Packed {
        weight: Kernel,
        bias: Option<Vec<f32>>,
        device: Device,
    },
}

/// A weight packed for one of our CPU kernels.
#[derive(Debug)]
pub enum Kernel {
    /// f32, f16, bf16, int8 and w8a8 (`kernels::PackedLinear`).
    Linear(PackedLinear),
    /// 4-bit blocks (`kernels::q4`), with f32 activations (`q4`) or int8 ones (`w4a8`).
    Q4(Q4Linear, Activations),
}

impl Kernel {
    fn k(&self) -> usize {
        match self {
            Self::Linear(w) => w.k(),
            Self::Q4(w, _) => w.k(),
        }
    }

    fn n(&self) -> usize {
        match self {
            Self::Linear(w) => w.n(),
            Self::Q4(w, _) => w.n(),
        }
    }

    fn weight(&self, kk: usize, j: usize) -> f32 {
        match self {
            Self::Linear(w) => w.weight(kk, j),
            Self::Q4(w, _) => w.weight(kk, j),
        }
    }
}

impl Dense {
    /// A layer over a burn tensor `weight: [out, in]` (f32 or F16), for wgpu.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Weight::Tensor { weight, bias },
        }
    }

    /// A layer over a packed weight, for flex.
    pub fn packed(weight: Kernel, bias: Option<Vec<f32>>, device: &Device) -> Self {
        Self {
            weight: Weight::Packed {
                weight,
                bias,
                device: device.clone(),
            },
        }
    }

    /// The weight's dtype: `f32`, `f16`, `bf16`, `int8`, `w8a8`, `q4` or `w4a8`.
    pub fn dtype(&self) -> &'static str {
        match &self.weight {
            Weight::Tensor { weight, .. } if weight.dtype() == DType::F16 => "f16",
            Weight::Tensor { .. } => "f32",
            Weight::Packed {
                weight: Kernel::Linear(weight),
                ..
            } => weight.dtype().as_str(),
            Weight::Packed {
                weight: Kernel::Q4(_, Activations::F32),
                ..
            } => "q4",
            Weight::Packed {
                weight: Kernel::Q4(_, Activations::Int8),
                ..
            } => "w4a8",
        }
    }

    /// Inputs per row (`in`).
    pub fn in_features(&self) -> usize {
        match &self.weight {
            Weight::Tensor { weight, .. } => weight.dims()[1],
            Weight::Packed { weight, .. } => weight.k(),
        }
    }

    /// Outputs per row (`out`).
    pub fn out_features(&self) -> usize {
        match &self.weight {
            Weight::Tensor { weight, .. } => weight.dims()[0],
            Weight::Packed { weight, .. } => weight.n(),
        }
    }

    /// Bytes the weight takes in memory.
    pub fn weight_bytes(&self) -> usize {
        match &self.weight {
            Weight::Tensor { weight, .. } => weight.shape().num_elements() * weight.dtype().size(),
            Weight::Packed {
                weight: Kernel::Linear(weight),
                ..
            } => weight.bytes(),
            Weight::Packed {
                weight: Kernel::Q4(weight, _),
                ..
            } => weight.bytes(),
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let Weight::Tensor { weight, bias } = &self.weight else {
            // A packed layer takes the host path, as several layers over one input do.
            let [y] = Self::forward_fused([self], x);
            return y;
        };
        let mut dims = x.dims();
        let d_in = dims[D - 1];
        let rows = dims[..D - 1].iter().product();
        let x = x.reshape([rows, d_in]);
        let [d_out, _] = weight.dims();
        let y = if weight.dtype() == DType::F32 {
            x.matmul(weight.clone().transpose())
        } else {
            let x = x.cast(FloatDType::F16);
            x.matmul(weight.clone().transpose()).cast(FloatDType::F32)
        };
        let y = match bias {
            Some(bias) => y + bias.clone().unsqueeze::<2>(),
            None => y,
        };
        dims[D - 1] = d_out;
        y.reshape(dims)
    }

    /// [`forward`](Self::forward) of several layers over the same `x` (an encoder layer's q, k
    /// and v). Layers packed for the CPU kernels go through
    /// [`forward_rows_fused`](Self::forward_rows_fused): `x` leaves burn once and is prepared
    /// once for all of them. The same results as one `forward` each.
    pub fn forward_fused<const N: usize, const D: usize>(
        layers: [&Dense; N],
        x: Tensor<D>,
    ) -> [Tensor<D>; N] {
        let all_packed = layers
            .iter()
            .all(|layer| matches!(layer.weight, Weight::Packed { .. }));
        let device = match layers.first().map(|layer| &layer.weight) {
            Some(Weight::Packed { device, .. }) if all_packed => device.clone(),
            _ => return layers.map(|layer| layer.forward(x.clone())),
        };
        let dims = x.dims();
        let rows = dims[..D - 1].iter().product();
        // Zero-copy when `x` has no other owner (the usual case: a fresh activation).
        let data = x.into_data();
        let x = data.as_slice().expect("activations are f32");
        let outs = Self::forward_rows_fused(layers, x, rows);
        let mut outs = outs.into_iter();
        layers.map(|layer| {
            let d_out = layer.out_features();
            let mut shape = dims;
            shape[D - 1] = d_out;
            let out = outs.next().expect("one output a layer");
            Tensor::<2>::from_data(TensorData::new(out, [rows, d_out]), &device).reshape(shape)
        })
    }

    /// `forward` on the host: `x` is `[rows, in]`, the result `[rows, out]`. Only for a layer
    /// packed for the CPU kernels (flex), where decode steps run on the host.
    pub fn forward_rows(&self, x: &[f32], rows: usize) -> Vec<f32> {
        let Weight::Packed { weight, bias, .. } = &self.weight else {
            panic!("host rows are for layers packed for the CPU kernels")
        };
        let mut out = vec![0.0f32; rows * weight.n()];
        match weight {
            Kernel::Linear(w) => w.matmul(x, rows, bias.as_deref(), &mut out),
            Kernel::Q4(w, activations) => {
                w.matmul(*activations, x, rows, bias.as_deref(), &mut out)
            }
        }
        out
    }

    /// [`forward_rows`](Self::forward_rows) of several layers over the same `x` (a layer's q,
    /// k and v projections; its gate and up). Layers packed alike (one dtype, the same `in`)
    /// run as one product (`kernels::matmul_many`, `q4::matmul_many`: `x` prepared once, one
    /// parallel pass); others one call each. The same results either way.
    pub fn forward_rows_fused<const N: usize>(
        layers: [&Dense; N],
        x: &[f32],
        rows: usize,
    ) -> [Vec<f32>; N] {
        let packed = layers.map(|layer| match &layer.weight {
            Weight::Packed { weight, bias, .. } => Some((weight, bias.as_deref())),
            Weight::Tensor { .. } => None,
        });
        let alike = |a: &Kernel, b: &Kernel| match (a, b) {
            (Kernel::Linear(a), Kernel::Linear(b)) => a.dtype() == b.dtype() && a.k() == b.k(),
            (Kernel::Q4(a, x), Kernel::Q4(b, y)) => x == y && a.k() == b.k(),
            _ => false,
        };
        let fusable = match packed.first() {
            Some(Some((first, _))) => packed
                .iter()
                .all(|p| p.is_some_and(|(w, _)| alike(first, w))),
            _ => false,
        };
        if !fusable {
            return layers.map(|layer| layer.forward_rows(x, rows));
        }
        let packed = packed.map(|p| p.expect("every layer is packed"));
        let first = packed[0].0;
        let mut outs = packed.map(|(w, _)| vec![0.0f32; rows * w.n()]);
        let mut free = outs.iter_mut();
        let mut out = || free.next().expect("one output a layer").as_mut_slice();
        match first {
            Kernel::Linear(_) => kernels::matmul_many(
                x,
                rows,
                packed.map(|(w, bias)| {
                    let Kernel::Linear(w) = w else {
                        unreachable!("the layers are alike")
                    };
                    (w, bias, out())
                }),
            ),
            Kernel::Q4(_, activations) => q4::matmul_many(
                *activations,
                x,
                rows,
                packed.map(|(w, bias)| {
                    let Kernel::Q4(w, _) = w else {
                        unreachable!("the layers are alike")
                    };
                    (w, bias, out())
                }),
            ),
        }
        outs
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
                let out = self.rows_on_host(ids);
                Tensor::from_data(TensorData::new(out, [ids.len(), k]), device)
            }
        }
    }

    /// `rows` on the host (`[ids.len() · in]`), for a layer packed for the CPU kernels.
    pub fn rows_on_host(&self, ids: &[u32]) -> Vec<f32> {
        let Weight::Packed { weight, .. } = &self.weight else {
            panic!("host rows are for layers packed for the CPU kernels")
        };
        let k = weight.k();
        let mut out = Vec::with_capacity(ids.len() * k);
        for &id in ids {
            out.extend((0..k).map(|kk| weight.weight(kk, id as usize)));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Device, Tensor, TensorData};

    use super::{Dense, Kernel};
    use crate::models::kernels::q4::{Activations, Q4Linear};
    use crate::models::kernels::{PackedLinear, SourceLayout};
    use crate::models::Dtype;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| (((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 1000) as f32 / 500.0 - 1.0)
            .collect()
    }

    fn linear(k: usize, n: usize, dtype: Dtype, seed: u32, device: &Device) -> Dense {
        let w = values(k * n, seed);
        let packed = PackedLinear::pack_f32(&w, k, n, SourceLayout::InOut, dtype);
        Dense::packed(Kernel::Linear(packed), Some(values(n, seed + 1)), device)
    }

    fn bits(t: Tensor<3>) -> (Vec<usize>, Vec<u32>) {
        let dims = t.dims().to_vec();
        let data = t.into_data();
        let bits = data.as_slice::<f32>().unwrap().iter().map(|v| v.to_bits());
        (dims, bits.collect())
    }

    #[test]
    fn forward_fused_gives_each_layer_the_bits_of_its_own_forward() {
        let device = Device::flex();
        let k = 64;
        let x = Tensor::<3>::from_data(TensorData::new(values(2 * 5 * k, 7), [2, 5, k]), &device);
        let q4 = |n, seed| {
            let w = values(k * n, seed);
            let packed = Q4Linear::quantize(&w, k, n, SourceLayout::InOut);
            Dense::packed(Kernel::Q4(packed, Activations::Int8), None, &device)
        };
        // Alike layers run as one product; a mixed set falls back to one call each.
        let sets = [
            [
                linear(k, 48, Dtype::W8a8, 1, &device),
                linear(k, 16, Dtype::W8a8, 3, &device),
                linear(k, 16, Dtype::W8a8, 5, &device),
            ],
            [q4(48, 11), q4(16, 13), q4(16, 15)],
            [
                linear(k, 48, Dtype::F32, 21, &device),
                q4(16, 23),
                linear(k, 16, Dtype::W8a8, 25, &device),
            ],
        ];
        for (set, layers) in sets.iter().enumerate() {
            let layers = [&layers[0], &layers[1], &layers[2]];
            let fused = Dense::forward_fused(layers, x.clone());
            for (i, (layer, got)) in layers.iter().zip(fused).enumerate() {
                let want = layer.forward(x.clone());
                assert_eq!(bits(got), bits(want), "set {set}, layer {i}");
            }
        }
    }
}
